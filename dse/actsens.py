"""Calibration sensitivity of runtime tensors: layer inputs (activation precision) and the K/V cache.

A *site* is a tensor the model computes and a kernel would quantize: a searched layer's input
(its format's ``-aN``) or a key / value projection's output (a ``.k_cache`` / ``.v_cache`` item).
Each site has variants (an activation precision, a K/V format), each a numpy quantizer of
``[rows, width]``; E = Q(X) - X is its perturbation. The three sources of dse.calibsens extend to
sites with the same loss L (self-distillation, 2 (1 - mean cosine to fp)) and the same units:

- ``hessian``: 1/2 (Tr(H_X) / n_X) ||E||^2, H_X the Gauss-Newton Hessian block of the site's tensor
  over the calibration tokens (Hutchinson, as for weights, through a zero tensor added to the site
  so its gradient is the tensor's), n_X its element count (real tokens x width);
- ``fisher``: 1/2 sum F (.) E^2, F the diagonal Fisher of the same sampled-target loss as for weights,
  per element of the site's tensor, accumulated batch by batch against that batch's E;
- ``output``: for a layer's input with its weight format, the exact change of the layer's output
  with both quantized, ||Q_a(X) Q(W)^T - X W^T||^2 / ||Y||^2 = (||X dW^T||^2 + ||E Wq^T||^2 +
  2 <X dW^T, E Wq^T>) / ||Y||^2 from the Grams X^T X, E^T E and X^T E; for a K/V item, the measured
  relative change of its attention module's output, the module run again with only that item quantized.

hessian and fisher add the site's error to the weight's (the additive, per-layer model all three
sources already rest on); output measures the pair jointly.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Site:
    """A runtime tensor: `name` its table row, `module` whose input ("input") or output ("output") it is."""

    name: str
    module: object
    kind: str
    variants: dict = field(default_factory=dict)  # label -> fn(numpy [rows, width]) -> quantized
    attention: object = None  # output sites: the attention module whose output the output source compares


def input_sites(modules: dict, specs) -> list[Site]:
    """One site per layer input, a variant per ActSpec (labels: ActSpec.label)."""
    from quantcore.quantizers.activation import quantize_activation

    variants = {s.label: (lambda x, s=s: quantize_activation(x, s)) for s in specs}
    return [Site(name, mod, "input", dict(variants)) for name, mod in modules.items()] if variants else []


def cache_sites(model, kv_formats) -> list[Site]:
    """One site per K/V cache item of a transformers model, a variant per catalog Format (labels: names)."""
    from dse.runtimequant import kv_items
    from quantcore.quantizers.activation import quantize_heads

    out = []
    for name, (proj, head_dim) in kv_items(model).items():
        variants = {f.name: (lambda x, f=f, hd=head_dim: quantize_heads(x, f, hd)) for f in kv_formats}
        out.append(Site(name, proj, "output", variants, model.get_submodule(name.rsplit(".", 1)[0])))
    return out


def _rows(x, keep):
    """[tokens, width] of the real tokens (all rows of a 2-D tensor)."""
    if x.dim() > 2:
        return x[keep] if keep is not None else x.reshape(-1, x.shape[-1])
    return x


def _errors(site: Site, x):
    """{label: E = Q(x) - x as a torch tensor shaped like x} (quantized over all tokens, as evaluation does)."""
    import torch

    k = x.shape[-1]
    flat = x.detach().reshape(-1, k).float().numpy()
    return {label: (torch.from_numpy(fn(flat)) - torch.from_numpy(flat)).reshape(x.shape)
            for label, fn in site.variants.items()}


@contextmanager
def _probes(sites, record: dict):
    """Adds a zero tensor z (requires grad) to every site's tensor each forward: record[name] = (z, x detached)."""
    import torch

    def pre(site):
        def fn(mod, args):
            z = torch.zeros_like(args[0], requires_grad=True)
            record[site.name] = (z, args[0].detach())
            return (args[0] + z,) + tuple(args[1:])
        return fn

    def post(site):
        def fn(mod, args, out):
            z = torch.zeros_like(out, requires_grad=True)
            record[site.name] = (z, out.detach())
            return out + z
        return fn

    handles = [s.module.register_forward_pre_hook(pre(s)) if s.kind == "input" else
               s.module.register_forward_hook(post(s)) for s in sites]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def site_gradient_errors(source: str, sites, forward, batches, n_texts: int, token_mask=None, seed: int = 0,
                         samples: int = 1) -> dict:
    """{site: {label: error}} for source hessian (Hutchinson, Gauss-Newton) or fisher (sampled targets).

    samples: probes (hessian) or noise draws (fisher) per batch."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    trace = {s.name: 0.0 for s in sites}
    elements = {s.name: 0 for s in sites}
    sq = {s.name: {label: 0.0 for label in s.variants} for s in sites}       # hessian: sum ||E||^2 (real tokens)
    fisher = {s.name: {label: 0.0 for label in s.variants} for s in sites}   # fisher: sum F E^2
    by_name = {s.name: s for s in sites}
    record: dict = {}
    with _probes(sites, record):
        for b in batches:
            keep = token_mask(b) if token_mask is not None else None
            errors = None
            if source == "fisher":
                with torch.no_grad():
                    ref = forward(b).detach()
            for _ in range(samples):
                record.clear()
                out = forward(b)
                if errors is None:
                    errors = {n: _errors(by_name[n], x) for n, (_, x) in record.items()}
                    for n, (_, x) in record.items():
                        rows = _rows(x, keep)
                        elements[n] += rows.numel()
                        for label, e in errors[n].items():
                            sq[n][label] += float((_rows(e, keep).double() ** 2).sum())
                names = list(record)
                if source == "hessian":
                    u = torch.randint(0, 2, out.shape, generator=gen).to(out.dtype) * 2 - 1
                    target = (out * u).sum()
                else:
                    noise = torch.randn(ref.shape, generator=gen, dtype=ref.dtype) * np.sqrt(0.5)
                    target = ((out - (ref + noise)) ** 2).sum()
                grads = torch.autograd.grad(target, [record[n][0] for n in names], allow_unused=True,
                                            materialize_grads=True)
                for n, g in zip(names, grads):
                    g2 = g.detach().double() ** 2
                    if source == "hessian":
                        trace[n] += 2.0 * float(g2.sum()) / (samples * n_texts)
                    else:
                        for label, e in errors[n].items():
                            fisher[n][label] += float((g2 * e.double() ** 2).sum()) / (samples * n_texts)
    if source == "fisher":
        return {n: {label: 0.5 * v for label, v in row.items()} for n, row in fisher.items()}
    return {n: {label: 0.5 * trace[n] / elements[n] * v if elements[n] else 0.0 for label, v in row.items()}
            for n, row in sq.items()}


def _inference_pass(handles, forward, batches, token_mask, current: dict) -> None:
    """Run every batch without gradients, current["keep"] its real tokens, then remove the hooks `handles`."""
    import torch

    try:
        with torch.inference_mode():
            for b in batches:
                current["keep"] = token_mask(b) if token_mask is not None else None
                forward(b)
    finally:
        for h in handles:
            h.remove()


def input_site_grams(sites, forward, batches, token_mask=None) -> dict:
    """{site: {label: (E^T E, X^T E)}} over the real tokens, float64, for the output source's joint error."""
    acc: dict = {s.name: {} for s in sites}
    current: dict = {}

    def hook(site):
        def fn(mod, args):
            x = args[0]
            rows = _rows(x, current.get("keep")).double()
            for label, e in _errors(site, x).items():
                er = _rows(e, current.get("keep")).double()
                ee, xe = er.T @ er, rows.T @ er
                old = acc[site.name].get(label)
                acc[site.name][label] = (ee, xe) if old is None else (old[0] + ee, old[1] + xe)
        return fn

    _inference_pass([s.module.register_forward_pre_hook(hook(s)) for s in sites], forward, batches, token_mask,
                    current)
    return acc


def joint_output_error(w, wq, gram, ee, xe, y2: float) -> float:
    """(||X dW^T||^2 + ||E Wq^T||^2 + 2 <X dW^T, E Wq^T>) / ||Y||^2 with dW = wq - w (float64 [out, k])."""
    if y2 <= 0:
        return 0.0
    dw = wq - w
    total = ((dw @ gram) * dw).sum() + ((wq @ ee) * wq).sum() + 2.0 * ((dw @ xe) * wq).sum()
    return max(float(total) / y2, 0.0)


def cache_output_errors(sites, forward, batches, token_mask=None) -> dict:
    """{item: {label: ||A_q - A||^2 / ||A||^2}}: A the attention module's output over the real tokens,
    A_q the same module run again on the same inputs with only that K/V item quantized."""
    from dse.runtimequant import fake_quantize

    num = {s.name: {label: 0.0 for label in s.variants} for s in sites}
    den = {s.name: 0.0 for s in sites}
    current: dict = {"busy": False}

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    def hook(site):
        def fn(mod, args, kwargs, out):
            if current["busy"]:
                return None
            keep = current.get("keep")
            ref = _rows(first(out), keep).double()
            den[site.name] += float((ref ** 2).sum())
            current["busy"] = True
            try:
                for label, q in site.variants.items():
                    h = site.module.register_forward_hook(lambda m, a, o, q=q: fake_quantize(o, q))
                    try:
                        got = _rows(first(mod(*args, **kwargs)), keep).double()
                    finally:
                        h.remove()
                    num[site.name][label] += float(((got - ref) ** 2).sum())
            finally:
                current["busy"] = False
            return None
        return fn

    _inference_pass([s.attention.register_forward_hook(hook(s), with_kwargs=True) for s in sites], forward, batches,
                    token_mask, current)
    return {n: {label: v / den[n] if den[n] > 0 else 0.0 for label, v in row.items()} for n, row in num.items()}
