"""The GEMMs of one generated image: a diffusion pipeline's layers under its workload.

Per image (batch b, resolution H x W, `steps` denoising steps, CFG doubling the denoiser's batch
where the pipeline runs it):

- denoiser (runs "step"): every layer `steps` times, M = b x cfg x tokens, where tokens are the
  latent patches (H/8/2 x W/8/2 for FLUX.1: the VAE's 8x down-sampling, then 2x2 packing), the
  T5 sequence, both (joint attention), or one row per sample (timestep, guidance, adaLN);
- text encoders (runs "prompt"): once, M = b x cfg x their sequence (the negative prompt too);
- VAE decoder (runs "image"): once, M = b x its feature map (latent x hw_scale, squared).

Self-attention runs over the same tokens, every head attending to all of them (no causal mask);
cross-attention (PixArt) from the image tokens to the text tokens.
"""
from __future__ import annotations

import dataclasses

from quantcore.errors import QuantDSEError
from quantcore.limits import RANGES, check_int


def diffusion_workload(workload, graph, notes: list | None):
    """`workload` completed with the pipeline's defaults (steps, CFG, resolution); flags that do not
    apply to image generation (--seq, --kv-bits, --phase decode/prefill) are errors or notes."""
    cfg = graph.config
    if workload.phase not in (None, "denoise"):
        raise QuantDSEError(f"{graph.name} is a text-to-image pipeline: it runs --phase denoise (the default); "
                            f"drop --phase {workload.phase}")
    ignored = [f"--seq {workload.seq}" for _ in [0] if workload.seq is not None]
    ignored += [f"--kv-bits {workload.kv_bits}" for _ in [0] if workload.kv_bits not in (None, 16)]
    if ignored and notes is not None:
        notes.append(f"{graph.name} generates images: {', '.join(ignored)} does not apply (ignored; the text "
                     f"length is the pipeline's {cfg['text_tokens']} tokens)")
    hw = tuple(workload.image_hw or cfg["resolution"])
    step = cfg["vae_scale_factor"] * cfg["patch"]
    for side in hw:
        check_int(side, "--resolution", *RANGES["resolution"])
        if side % step:
            raise QuantDSEError(f"--resolution {'x'.join(map(str, hw))}: each side must be a multiple of {step} "
                                f"(the VAE's {cfg['vae_scale_factor']}x down-sampling times the denoiser's {cfg['patch']}x: its "
                                  "patch or UNet levels)")
    return dataclasses.replace(workload, phase="denoise", batch=workload.batch or 1, seq=1, kv_bits=16,
                               image_hw=hw, steps=workload.steps or cfg["steps"],
                               cfg=cfg["cfg"] if workload.cfg is None else workload.cfg)


def token_counts(graph, workload) -> dict:
    """Rows one sample puts through a layer, by its `tokens` tag."""
    cfg = graph.config
    h, w = (int(x) // cfg["vae_scale_factor"] for x in workload.image_hw)
    image = (h // cfg["patch"]) * (w // cfg["patch"])
    return {"image": image, "text": cfg["text_tokens"], "joint": image + cfg["text_tokens"], "vector": 1,
            "latent": h * w}


def _mult(layer, workload) -> tuple[int, float]:
    """(samples per execution, executions per image) of a layer."""
    runs = layer.attrs.get("runs", "step")
    guided = 2 if workload.cfg and runs in ("step", "prompt") else 1
    return workload.batch * guided, float(workload.steps if runs == "step" else 1)


def _rows_of(layer, graph, workload, tokens: dict) -> int:
    if layer.attrs.get("tokens") == "prompt":
        return int(layer.attrs["seq"])
    if layer.attrs.get("tokens") == "map":  # a UNet level: one row per pixel of its feature map
        h, w = (int(x) // graph.config["vae_scale_factor"] for x in workload.image_hw)
        s = float(layer.attrs.get("hw_scale", 1))
        return max(1, int(h * s)) * max(1, int(w * s))
    return tokens[layer.attrs.get("tokens", "image")]


def layer_row(layer, graph, workload, tokens: dict | None = None) -> tuple:
    """The Ops row (name, kind, m, k, n, count, weight_elems, role) of one pipeline layer."""
    tokens = tokens or token_counts(graph, workload)
    samples, runs = _mult(layer, workload)
    if layer.kind in ("conv", "deform-conv") and "tokens" in layer.attrs:  # a patch-embedding conv: one row per patch
        m = samples * _rows_of(layer, graph, workload, tokens)
        return (layer.name, layer.kind, m, layer.k, layer.n, runs, float(layer.params), layer.role)
    if layer.kind in ("conv", "deform-conv"):
        h, w = (int(x) // graph.config["vae_scale_factor"] for x in workload.image_hw)
        s = float(layer.attrs.get("hw_scale", 1))
        m = samples * max(1, int(h * s)) * max(1, int(w * s))
        return (layer.name, layer.kind, m, layer.k, layer.n, runs, float(layer.params), layer.role)
    if layer.kind == "embedding":
        m = samples * _rows_of(layer, graph, workload, tokens)
        return (layer.name, layer.kind, m, 1, layer.n, runs, float(m) * layer.n, layer.role)
    m = samples * _rows_of(layer, graph, workload, tokens)
    return (layer.name, layer.kind, m, layer.k, layer.n, runs, float(layer.params), layer.role)


def attention_rows(layer, graph, workload, tokens: dict | None = None) -> list[tuple]:
    """QK^T and PV of one attention layer: every token attends to every token of its sequence."""
    tokens = tokens or token_counts(graph, workload)
    samples, runs = _mult(layer, workload)
    q = _rows_of(layer, graph, workload, tokens)
    kv = tokens[layer.attrs["kv_tokens"]] if "kv_tokens" in layer.attrs else q  # cross-attention: the text
    heads, head_dim = int(layer.attrs.get("heads", 1)), int(layer.attrs.get("head_dim", 64))
    count = runs * samples * heads
    return [(f"{layer.name}.qk", "attention", q, head_dim, kv, count, float(head_dim) * kv, "qk"),
            (f"{layer.name}.pv", "attention", q, kv, head_dim, count, float(head_dim) * kv, "pv")]


def activation_bytes(graph, workload, act_bytes: int = 2) -> float:
    """The largest layer's input + output activations of one execution (16-bit)."""
    tokens = token_counts(graph, workload)
    peak = 0.0
    for layer in graph.layers:
        if layer.kind == "attention":
            continue
        _, _, m, k, n, _, _, _ = layer_row(layer, graph, workload, tokens)
        cin = int(layer.shape[1]) if layer.kind == "conv" else k
        peak = max(peak, float(m) * (cin + n))
    return peak * act_bytes


def stage_of(name: str) -> str:
    """The component folder a pipeline layer belongs to (its name's first part)."""
    return name.split(".", 1)[0]
