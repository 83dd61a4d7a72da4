"""Calibration sensitivity: `--sensitivity hessian|fisher|output`, measured on a real torch model.

No labels are needed. The loss is a self-distillation loss against the fp model's own outputs,

    L(W) = (1/N) sum_i ||f(x_i; W) - f(x_i; W0)||^2,

f = the sentence embedding (mean-pooled, L2-normalised), so L = 2 (1 - mean cosine to fp):
the `dse.evaluate` metric. At W0 the loss and its gradient are zero and its Hessian is the
Gauss-Newton matrix H = (2/N) sum_i J_i^T J_i, so a second-order Taylor expansion predicts
the loss a perturbation dW adds: dL ~= 1/2 dW^T H dW. The hessian and fisher tables are that
prediction (in units of L; half of it is the predicted drop of mean cosine):

- ``hessian`` (HAWQ-V3): 1/2 * (Tr(H_l) / n_l) * ||Q(W_l) - W_l||^2 -- the Hutchinson estimate
  of the trace of layer l's Hessian block, normalised by the layer's parameter count n_l as
  HAWQ-V2/V3 do (the average eigenvalue), times the format's squared weight perturbation.
  `hutchinson_traces` says how the probes are computed (Gauss-Newton, exact at W0).
- ``fisher``: 1/2 * sum_j F_jj (Q(W) - W)_j^2 with F the diagonal Fisher information of a
  Gaussian observation model around the fp embeddings: squared gradients of the loss against
  targets drawn as f(x; W0) + eps, eps ~ N(0, I/2), whose expectation is diag(H) exactly. (The
  empirical Fisher proper needs labels; with the fp model's own outputs as labels its
  gradients are identically zero.) Independent eps per text make the squared gradient of a
  whole batch an unbiased estimate of the per-text sum, so one backward serves a batch.
- ``output``: the measured change of the layer's own output when only that layer is
  quantized, ||X dW^T||^2 / ||Y||^2 over the calibration tokens (X the layer's inputs,
  Y = X W^T + b its outputs, both captured with forward hooks; exact, via the input Gram
  matrix X^T X). Relative, so every layer's noise-to-signal ratio counts alike.

A format's activation suffix (``-aN``) and the K/V cache items (``<attention>.k_cache`` /
``.v_cache``, with `kv_formats`) are measured through hooks on the same calibration texts, in the
same units: dse.actsens says how.

Tables are cached as dse.sensitivity/1 JSON under $QUANTDSE_CACHE_DIR (else ~/.cache/quantdse),
keyed by (source, model files, calibration texts, formats, settings): a second search is instant.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, dumps, load_json

SOURCES = ("hessian", "fisher", "output")
#: Hutchinson probes per calibration batch (hessian); noise draws per batch (fisher)
HUTCHINSON_PROBES = 1
FISHER_DRAWS = 1
#: texts per batch for the gradient-based sources
CALIB_BATCH = 32
#: bump when the definition of a table changes (old cache entries are then ignored)
CACHE_VERSION = 3  # 2: output Grams keyed by the input tensor itself (1 could mix layers up); 3: -aN and K/V rows

DESCRIPTIONS = {
    "hessian": "HAWQ-V3: 1/2 Tr(H_l)/n_l x ||Q(W)-W||^2, Hutchinson trace of the self-distillation loss Hessian "
               "on calibration texts",
    "fisher": "1/2 sum F_jj (Q(W)-W)_j^2, diagonal Fisher of the self-distillation loss (sampled Gaussian targets) "
              "on calibration texts",
    "output": "||X (Q(W)-W)^T||^2 / ||Y||^2: measured relative change of each layer's output on calibration texts "
              "(hooks), only that layer quantized",
}


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=None)


# ------------------------------------------------------------------ statistics (any torch model)

def hutchinson_traces(modules: dict, forward, batches, n_texts: int, probes: int = HUTCHINSON_PROBES,
                      seed: int = 0, method: str = "gn") -> dict:
    """{name: Tr(H_l)} of the self-distillation loss, H_l = the Hessian block of module l's weight.

    forward(batch) -> outputs [n, d] (with grad); batches: the calibration data; n_texts: N.
    method "hvp" is HAWQ's estimator: a Rademacher v over all weights, v_l . (Hv)_l by double
    backprop. method "gn" (default, one backward per probe instead of a double backward, ~4x
    cheaper on MiniLM) uses that at W0 the loss has zero residual, so H = (2/N) J^T J exactly
    and Tr(H_l) = (2/N) E ||(J^T u)_l||^2 for a Rademacher u over the outputs: Hutchinson's
    estimator on J J^T, which has the same trace. Independent u per text keep it unbiased
    when a batch's texts share one backward.
    """
    import torch

    if method not in ("gn", "hvp"):
        raise ValueError(f"method must be gn or hvp, not {method!r}")
    params = [m.weight for m in modules.values()]
    gen = torch.Generator().manual_seed(seed)
    sums = {name: 0.0 for name in modules}
    with _progress(len(batches) * probes, "hessian (Hutchinson)") as bar:
        for b in batches:
            if method == "hvp":
                with torch.no_grad():
                    ref = forward(b).detach()
            for _ in range(probes):
                out = forward(b)
                if method == "gn":
                    u = torch.randint(0, 2, out.shape, generator=gen).to(out.dtype) * 2 - 1
                    grads = torch.autograd.grad((out * u).sum(), params, allow_unused=True, materialize_grads=True)
                    for name, g in zip(modules, grads):
                        sums[name] += 2.0 * float((g.double() ** 2).sum()) / (probes * n_texts)
                else:
                    loss = ((out - ref) ** 2).sum() / n_texts
                    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True,
                                                materialize_grads=True)
                    vs = [torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1 for p in params]
                    gv = sum((g * v).sum() for g, v in zip(grads, vs))
                    hv = torch.autograd.grad(gv, params, allow_unused=True, materialize_grads=True) \
                        if gv.requires_grad else [torch.zeros_like(p) for p in params]
                    for name, v, h in zip(modules, vs, hv):
                        sums[name] += float((v * h).sum()) / probes
                bar.update()
    return sums


def fisher_diagonals(modules: dict, forward, batches, n_texts: int, draws: int = FISHER_DRAWS,
                     seed: int = 0) -> dict:
    """{name: diag F as a tensor shaped like the weight}; E[F] = diag of the loss Hessian."""
    import torch

    params = [m.weight for m in modules.values()]
    gen = torch.Generator().manual_seed(seed)
    acc = [torch.zeros_like(p) for p in params]
    with _progress(len(batches) * draws, "fisher") as bar:
        for b in batches:
            with torch.no_grad():
                ref = forward(b).detach()
            for _ in range(draws):
                target = ref + torch.randn(ref.shape, generator=gen, dtype=ref.dtype) * np.sqrt(0.5)
                loss = ((forward(b) - target) ** 2).sum()
                grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
                for a, g in zip(acc, grads):
                    a += g.detach() ** 2 / (draws * n_texts)
                bar.update()
    return dict(zip(modules, acc))


def output_grams(modules: dict, forward, batches, token_mask=None) -> dict:
    """{name: (X^T X, sum ||Y||^2)} over the calibration tokens, captured by forward hooks.

    token_mask(batch) -> bool [n, t] of real tokens (padding is left out), or None for 2-D inputs.
    Layers fed the same tensor (q, k, v) share one Gram matrix; each batch's float32 Gram is
    summed in float64. The same tensor means the same object: a freed input's memory is reused
    for later ones of its shape, so an address alone would hand a layer another layer's Gram.
    """
    import weakref

    import torch

    grams: dict = {}
    ysq = {name: 0.0 for name in modules}
    current: dict = {}

    def hook(name):
        def fn(mod, inputs, output):
            x, y = inputs[0], output
            key = id(x)  # the weak reference below tells a reused id apart
            if x.dim() > 2:
                keep = current.get("mask")
                y = y[keep] if keep is not None else y.reshape(-1, y.shape[-1])
            seen = current["grams"].get(key)
            if seen is None or seen[0]() is not x:
                rows = x
                if x.dim() > 2:
                    rows = x[keep] if keep is not None else x.reshape(-1, x.shape[-1])
                seen = current["grams"][key] = (weakref.ref(x), (rows.T @ rows).double())
            g = seen[1]
            grams[name] = g if name not in grams else grams[name] + g
            ysq[name] += float((y.double() ** 2).sum())
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        with torch.inference_mode(), _progress(len(batches), "output (hooks)") as bar:
            for b in batches:
                current["mask"] = token_mask(b) if token_mask is not None else None
                current["grams"] = {}
                forward(b)
                bar.update()
    finally:
        for h in handles:
            h.remove()
    return {n: (grams[n], ysq[n]) for n in modules}


# ------------------------------------------------------------------ error tables

def _delta(w, fmt):
    """Q(W) - W as float64 tensor, for a torch weight."""
    import torch

    from dse.hfmodel import quantize_weight

    w2 = w.detach().reshape(w.shape[0], -1).numpy()
    return torch.from_numpy(np.asarray(quantize_weight(w, fmt), dtype=np.float64) - w2.astype(np.float64))


def error_table(source: str, modules: dict, stats: dict, formats) -> dict:
    """{name: [error per format]} from one source's statistics."""
    out = {}
    with _progress(len(modules), f"{source} errors") as bar:
        for name, mod in modules.items():
            row = []
            for fmt in formats:
                d = _delta(mod.weight, fmt)
                if source == "hessian":
                    row.append(0.5 * stats[name] / d.numel() * float((d ** 2).sum()))
                elif source == "fisher":
                    row.append(0.5 * float((stats[name].double().reshape(d.shape) * d ** 2).sum()))
                else:
                    gram, y2 = stats[name]
                    d32 = d.float()
                    row.append(float(((d32 @ gram.float()) * d32).double().sum()) / y2 if y2 > 0 else 0.0)
            out[name] = [max(v, 0.0) for v in row]
            bar.update()
    return out


def layer_statistics(source: str, modules: dict, forward, batches, n_texts: int, token_mask=None, seed: int = 0):
    if source == "hessian":
        return hutchinson_traces(modules, forward, batches, n_texts, seed=seed)
    if source == "fisher":
        return fisher_diagonals(modules, forward, batches, n_texts, seed=seed)
    return output_grams(modules, forward, batches, token_mask)


# ------------------------------------------------------------------ the real model, cached

def cache_problem(doc, names: list[str], formats: list[str], kv_names=(), kv_formats=()) -> str | None:
    """Why a cached table cannot stand for this run (None when it can): the layers and formats
    this run searches (and its K/V items and their formats), each error a finite number >= 0,
    the token count a count."""
    if not isinstance(doc, dict) or doc.get("schema") != "dse.sensitivity/1":
        return 'not a "dse.sensitivity/1" document'
    tokens = doc.get("tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        return '"tokens" is not a count'
    layers = doc.get("layers")
    if not isinstance(layers, dict) or sorted(layers) != sorted([*names, *kv_names]):
        return "its layers are not this model's searched layers"
    kv_names = set(kv_names)
    for name, row in layers.items():
        if not isinstance(row, dict) or sorted(row) != sorted(kv_formats if name in kv_names else formats):
            return f"layer {name} does not have exactly this run's formats"
        for fmt, value in row.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                return f"layer {name} format {fmt} has error {str(value)[:20]}, not a finite number >= 0"
    return None


def _cache_path(source, encoder, texts, formats, seed, kv_formats=()):
    from dse.calibration import texts_digest
    from hwmodels.calibration_cache import cache_dir
    from quantcore.quantizers.activation import act_spec

    acts = sorted({spec.label for f in formats for spec in [act_spec(f)] if spec is not None})
    key = json.dumps({"v": CACHE_VERSION, "source": source, "model": encoder.digest, "texts": texts_digest(texts),
                      "formats": [f.name for f in formats], "acts": acts, "kv": [f.name for f in kv_formats],
                      "seed": seed, "batch": CALIB_BATCH, "probes": HUTCHINSON_PROBES, "draws": FISHER_DRAWS})
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / "sensitivity" / f"{encoder.name}-{source}-{digest}.json"


def runtime_errors(source: str, encoder, modules: dict, stats: dict, formats, kv_formats, batches, n_texts: int,
                   weight_rows: dict, seed: int = 0) -> dict:
    """{row: {format: error}} for the -aN formats of every layer and for every K/V item (dse.actsens).

    weight_rows: {layer: {weight format name: error}}, what error_table gave for the weight alone."""
    from dse import actsens
    from dse.hfmodel import quantize_weight
    from quantcore.formats import get_format
    from quantcore.quantizers.activation import act_spec

    forward, mask = encoder.embed_batch, (lambda b: b.mask.bool())
    samples = HUTCHINSON_PROBES if source == "hessian" else FISHER_DRAWS
    specs = {f.name: act_spec(f) for f in formats}
    out: dict = {}
    sites = actsens.input_sites(modules, sorted({s for s in specs.values() if s is not None}, key=lambda s: s.label))
    if sites and source == "output":
        grams = actsens.input_site_grams(sites, forward, batches, mask)
        for name, mod in modules.items():
            w = mod.weight.detach().reshape(mod.weight.shape[0], -1).double()
            gram, y2 = stats[name]
            out[name] = {}
            for f in formats:
                if specs[f.name] is not None:
                    wq = torch_from(quantize_weight(mod.weight, get_format(f.weight_name)))
                    ee, xe = grams[name][specs[f.name].label]
                    out[name][f.name] = actsens.joint_output_error(w, wq, gram, ee, xe, y2)
    elif sites:
        site = actsens.site_gradient_errors(source, sites, forward, batches, n_texts, mask, seed, samples)
        out = {name: {f.name: weight_rows[name][f.weight_name] + site[name][specs[f.name].label]
                      for f in formats if specs[f.name] is not None} for name in modules}
    if kv_formats:
        caches = actsens.cache_sites(encoder.model, kv_formats)
        if source == "output":
            out.update(actsens.cache_output_errors(caches, forward, batches, mask))
        else:
            out.update(actsens.site_gradient_errors(source, caches, forward, batches, n_texts, mask, seed + 1,
                                                    samples))
    return out


def torch_from(array):
    """A float64 torch tensor of a numpy array."""
    import torch

    return torch.from_numpy(np.asarray(array, dtype=np.float64))


def calibration_table(source: str, model, formats, calib=None, seed: int = 0, kv_formats=()) -> tuple[dict, dict]:
    """({layer: {format: error}}, info) for a real model on calibration texts (cached).

    Formats with ``-aN`` are measured with the layer's input quantized too; kv_formats (catalog
    Formats) add a row per K/V cache item (``<attention>.k_cache`` / ``.v_cache``) with one
    column per K/V format."""
    from dse.calibration import read_texts
    from dse.hfmodel import load_encoder
    from dse.runtimequant import kv_items
    from quantcore.formats import get_format

    if source not in SOURCES:
        raise QuantDSEError(f"unknown calibration source {source!r}: use {', '.join(SOURCES)}")
    if model is None or not isinstance(model, (str, bytes)) and not hasattr(model, "__fspath__"):
        raise QuantDSEError(f"--sensitivity {source} needs a model with real weights (a catalog name such as "
                            "all-minilm-l6-v2, or a checkpoint folder)")
    texts = read_texts(calib)
    encoder = load_encoder(str(model))
    kv_formats = list(kv_formats)
    path = _cache_path(source, encoder, texts, formats, seed, kv_formats)
    _, names, modules = encoder.searched_modules()
    kv_names = list(kv_items(encoder.model)) if kv_formats else []
    fnames, kvnames = [f.name for f in formats], [f.name for f in kv_formats]
    info = {"texts": len(texts), "cache": str(path), "cached": False}
    if path.exists():
        try:
            doc = load_json(path, "sensitivity cache", note=False)
            problem = cache_problem(doc, names, fnames, kv_names, kvnames)
        except (OSError, QuantDSEError) as exc:
            problem = str(exc) if isinstance(exc, QuantDSEError) else f"{exc.strerror or exc}"
        if problem is None:
            info.update(cached=True, tokens=doc["tokens"])
            return doc["layers"], info
        # the cache is data from outside like any input: a bad entry is measured again, and said so
        print(f"notice: sensitivity cache {path} is not usable ({' '.join(problem.split())[:160]}): measuring again",
              file=sys.stderr)
    batches = encoder.batches(texts, CALIB_BATCH)
    info["tokens"] = encoder.tokens(batches)
    forward = encoder.embed_batch
    requires = [p.requires_grad for p in encoder.model.parameters()]
    for p in encoder.model.parameters():  # only the searched weights need gradients
        p.requires_grad_(False)
    for m in modules.values():
        m.weight.requires_grad_(True)
    weight_formats = list({get_format(f.weight_name).name: get_format(f.weight_name) for f in formats}.values())
    try:
        stats = layer_statistics(source, modules, forward, batches, len(texts),
                                 token_mask=lambda b: b.mask.bool(), seed=seed)
        rows = error_table(source, modules, stats, weight_formats)
        weight_rows = {n: dict(zip([f.name for f in weight_formats], r)) for n, r in rows.items()}
        for p in encoder.model.parameters():
            p.requires_grad_(False)
        extra = runtime_errors(source, encoder, modules, stats, formats, kv_formats, batches, len(texts),
                               weight_rows, seed)
    finally:
        for p, r in zip(encoder.model.parameters(), requires):
            p.requires_grad_(r)
    table = {n: {f.name: extra.get(n, {}).get(f.name, weight_rows[n][f.weight_name]) for f in formats}
             if n in weight_rows else {f.name: 0.0 for f in formats} for n in names}
    table.update({n: {f: float(extra[n][f]) for f in kvnames} for n in kv_names})
    doc = {"schema": "dse.sensitivity/1", "source": source, "description": DESCRIPTIONS[source],
           "model": encoder.name, "texts": len(texts), "tokens": info["tokens"], "seed": seed, "layers": table}
    try:  # a cache that cannot be written costs the next run time, not this run its result
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps(doc))
    except (OSError, QuantDSEError) as exc:
        why = str(exc) if isinstance(exc, QuantDSEError) else exc.strerror or str(exc)
        print(f"notice: sensitivity cache {path} not written ({' '.join(why.split())[:160]})", file=sys.stderr)
    return table, info
