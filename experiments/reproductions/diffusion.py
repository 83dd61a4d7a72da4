"""Published diffusion-model figures, recomputed from the format catalog and the GPU model.

- SVDQuant (Li et al., ICLR 2025, arXiv:2411.05007), abstract: on the 16 GB laptop RTX 4090,
  SVDQuant "reduce[s] the memory usage for the 12B FLUX.1 models by 3.5x, achieving 3.0x
  speedup over the 4-bit weight-only quantized baseline". We run `dse.search --hw
  rtx4090-laptop --model flux.1-dev --budget 4.5bits` (the catalog's default candidates) and
  compare its transformer stage with the same transformer in BF16 (memory) and with every
  transformer layer in NF4 weight-only (W4A16, the diffusers/bitsandbytes baseline), per
  denoising step at 1024x1024. Nunchaku's own layer assignment (its src/FluxModel.h: W4A4
  GEMMs in the blocks, AWQ W4A16 for the adaLN linears, embedders and final projection left
  in BF16 by transformer_flux.py) is reported beside it in the note.

No constant of the GPU model or of rtx4090-laptop.toml was set from SVDQuant's figures: the
spec comes from NVIDIA's data sheet and the desktop card's estimates (their sources say so).
"""
from __future__ import annotations

#: every constant these rows use beyond the spec files, with its source document
PROVENANCE = {
    "lowrank_rank": "code: mit-han-lab/nunchaku nunchaku/models/transformers/transformer_flux.py SVD_RANK = 32 "
                    "(commit 17008728c3e8b1ef37388cba43f987df0e939ef6)",
    "nunchaku_layers": "code: mit-han-lab/nunchaku src/FluxModel.h (commit 2a19d5dfb28396c906591731e73a4e6a4cfc58d4): "
                       "JointTransformerBlock / FluxSingleTransformerBlock GEMMs are GEMM_W4A4, "
                       "AdaLayerNormZero(Single).linear is GEMV_AWQ (W4A16)",
    "w4a16_baseline": "paper: SVDQuant Sec. 5 compares against the NF4 weight-only (W4A16) FLUX.1 of diffusers / "
                      "bitsandbytes",
    "resolution_steps": "code: diffusers FluxPipeline defaults, 1024x1024 (steps cancel in both ratios)",
}
SVDQUANT = "SVDQuant (Li et al., ICLR 2025, arXiv:2411.05007), abstract"
HW = "rtx4090-laptop"


def _prepared(formats: tuple | None = None, budget: str = "4.5bits"):
    from dse.pipeline import SearchRequest, prepare

    return prepare(SearchRequest(hw=HW, model="flux.1-dev", budget=budget, formats=formats))


def _stage_totals(prepared, choice) -> dict:
    """Transformer-stage bytes and latency for a format index per searched layer (`choice(layer)`),
    plus the stage's 16-bit parts (its attention) that no assignment changes."""
    from dse.diffusion import pipeline_doc

    layers = []
    for i, layer in enumerate(prepared.layers):
        f = choice(layer)
        layers.append({"name": layer.name, "format": prepared.formats[f].name, "bits": float(prepared.bits[i, f]),
                       "params": layer.params, "memory_bytes": float(prepared.bits[i, f]) * layer.params / 8.0,
                       "latency_s": float(prepared.costs.latency_s[i, f]),
                       "energy_j": float(prepared.costs.energy_j[i, f])})
    stage = {s["stage"]: s for s in pipeline_doc(prepared, layers)["stages"]}["transformer"]
    return stage


def _searched():
    """(prepared tables with the baselines' formats too, the search plan's format index per layer)."""
    from dse.diffusion import DIFFUSION_SEARCH_FORMATS
    from dse.pipeline import solve_prepared
    from dse.budget import parse_budget

    formats = tuple(DIFFUSION_SEARCH_FORMATS) + ("bf16",)
    prepared = _prepared(formats)
    kind, si, _ = parse_budget("4.5bits")
    # the search runs over the catalog's default candidates only: bf16 is there for the baseline
    allowed = prepared.formats.index(next(f for f in prepared.formats if f.name == "bf16"))
    prepared.costs.supported[:, allowed] = False
    _, result = solve_prepared(prepared, {kind: si})
    prepared.costs.supported[:, allowed] = True
    return prepared, {l.name: int(result.assignment[i]) for i, l in enumerate(prepared.layers)}


def _index(prepared, name: str) -> int:
    return [f.name for f in prepared.formats].index(name)


def _nunchaku(prepared, layer) -> int:
    """Nunchaku's FLUX.1 assignment: block GEMMs W4A4 + rank 32, adaLN AWQ W4A16, the rest BF16."""
    if layer.attrs.get("stage") != "transformer" or layer.block is None:
        return _index(prepared, "bf16")
    return _index(prepared, "int4-g64" if layer.role == "adaln" else "int4-g64-r32-a4")


def _rows():
    prepared, plan = _searched()
    searched = _stage_totals(prepared, lambda l: plan[l.name])
    bf16 = _stage_totals(prepared, lambda l: _index(prepared, "bf16"))
    nf4 = _stage_totals(prepared, lambda l: _index(prepared, "nf4") if l.attrs.get("stage") == "transformer"
                        else plan[l.name])
    nunchaku = _stage_totals(prepared, lambda l: _nunchaku(prepared, l))
    return searched, bf16, nf4, nunchaku


def svdquant_flux_memory_vs_bf16_laptop4090() -> dict:
    searched, bf16, _, nunchaku = _rows()
    return {"check": "independent", "ours": bf16["memory_bytes"] / searched["memory_bytes"], "published": 3.5,
            "source": f"{SVDQUANT}: FLUX.1 memory usage reduced 3.5x on the 16 GB laptop RTX 4090",
            "setup": f"{HW}, flux.1-dev transformer stage, the plan of dse.search --budget 4.5bits "
                     f"({searched['bits']:.3f} bits/weight in the stage) vs every transformer layer in BF16",
            "provenance": PROVENANCE,
            "note": f"weights only (16-bit parts and biases included, activations not): searched "
                    f"{searched['memory_bytes'] / 1e9:.2f} GB vs BF16 {bf16['memory_bytes'] / 1e9:.2f} GB; "
                    f"Nunchaku's own assignment gives {bf16['memory_bytes'] / nunchaku['memory_bytes']:.2f}x "
                    f"({nunchaku['memory_bytes'] / 1e9:.2f} GB). The paper's 3.5x is measured memory (its "
                    "model-size figure is 3.6x)"}


def svdquant_flux_speedup_vs_w4a16_laptop4090() -> dict:
    searched, _, nf4, nunchaku = _rows()
    return {"check": "independent", "ours": nf4["latency_s"] / searched["latency_s"], "published": 3.0,
            "source": f"{SVDQUANT}: 3.0x speedup over the 4-bit weight-only quantized baseline on the 16 GB laptop "
                      "RTX 4090",
            "setup": f"{HW}, flux.1-dev transformer stage at 1024x1024 (4096 image + 512 text tokens), per image, "
                     "the dse.search --budget 4.5bits plan vs NF4 weight-only (W4A16) on every transformer layer; "
                     "attention (16-bit) included in both",
            "provenance": PROVENANCE,
            "tolerance": 0.25,
            "miss": "2.4x against 3.0x: the 16-bit attention, costed as two unfused GEMMs (QK^T, PV) by the GPU "
                    "model rather than as a FlashAttention kernel, takes ~9.5 s of the ~15 s per image in both "
                    "plans; the GEMMs alone speed up ~4.8x. Not tuned: no constant was changed to meet the figure",
            "note": f"searched {searched['latency_s']:.2f} s vs W4A16 {nf4['latency_s']:.2f} s per image (28 steps); "
                    f"Nunchaku's own assignment: {nf4['latency_s'] / nunchaku['latency_s']:.2f}x"}


REPRODUCTIONS = {
    "svdquant_flux_memory_vs_bf16_laptop4090": svdquant_flux_memory_vs_bf16_laptop4090,
    "svdquant_flux_speedup_vs_w4a16_laptop4090": svdquant_flux_speedup_vs_w4a16_laptop4090,
}


# ---- BinaryDM (Zheng et al., arXiv:2404.05662): W1A4 on LDM-4 LSUN-Bedrooms 256x256
#
# The model is the catalog's ldm-4-bedrooms (274,056,163 parameters = 1045.4 MiB in fp32, the
# paper's "FP 1045.4 MB"). Counting, as BiBench and BiDM (the same group) count: storage is
# bits of every parameter (fp32 where not binarized; the per-output-channel scales of each binary
# basis at their stored width), MiB; OPs are multiply-accumulates, a binarized one counted as
# weight bits x activation bits / 64 of a full-precision one (BOPs / 64). Which layers stay fp32 and
# which get the second basis is read from the released code (Xingyu-Zheng/BinaryDM
# openaimodel_ours.py, UNetModel.__init__): bnn_modules[0, 1, 2, -1] (time_embed.0, time_embed.2,
# input_blocks.0.0, out.2) full precision; order 2 (two bases: our binary2) in input_blocks 1-5 and
# output_blocks 6-11 (the two high-resolution levels), order 1 (binary) elsewhere.

BINARYDM_CODE = ("code: Xingyu-Zheng/BinaryDM openaimodel_ours.py UNetModel.__init__ (full-precision "
                 "bnn_modules[0,1,2,-1], order 1 in the middle block and the two low-resolution levels) and "
                 "ours_util.py BNNConv2d/BNNLinear (per-output-channel scale per basis), commit ce7a7a5")
BINARYDM_V1 = "BinaryDM arXiv:2404.05662v1, Table (LDM-4 LSUN-Bedrooms, W1A4)"
FP_LAYERS = ("time_embed.0", "time_embed.2", "input_blocks.0.0", "out.2")


def _binarydm_format(name: str, two_bases: bool) -> str:
    if name in FP_LAYERS:
        return "fp32"
    parts = name.split(".")
    if two_bases and parts[0] in ("input_blocks", "output_blocks"):
        level = int(parts[1]) // 3 if parts[0] == "input_blocks" else 3 - int(parts[1]) // 3
        if level in (0, 1):
            return "binary2-a4"
    return "binary-a4"


def binarydm_savings(two_bases: bool) -> tuple[float, float]:
    """(storage saving, OPs saving) of W1A4 BinaryDM over the fp32 LDM-4, from the format catalog."""
    from quantcore.formats import get_format
    from quantcore.models import load_graph
    from quantcore.models.cnn import macs

    graph = load_graph("ldm-4-bedrooms")
    bits, ops = 32.0 * graph.extra_params, 0.0
    for layer in graph.quantizable():
        fmt = get_format(_binarydm_format(layer.name, two_bases))
        out_h, out_w = layer.attrs.get("out_hw", (1, 1))
        layer_macs = layer.k * layer.n * int(out_h) * int(out_w)
        bits += fmt.bits_per_weight(layer.k) * layer.params
        ops += layer_macs * (1.0 if not fmt.is_quantized else fmt.weight_bits * fmt.act_bits / 64.0)
    return 32.0 * graph.params / bits, macs(graph) / ops


def _binarydm_row(published: float, source: str, two_bases: bool, which: str, **extra) -> dict:
    storage, ops = binarydm_savings(two_bases)
    ours = storage if which == "storage" else ops
    fmt = "binary2-a4 on the code's two-basis layers, binary-a4 elsewhere" if two_bases else "binary-a4 everywhere"
    return {"check": "independent", "ours": ours, "published": published, "source": source,
            "setup": f"ldm-4-bedrooms, {fmt}, fp32 head and tail; {which} saving over fp32 "
                     f"(storage {storage:.2f}x, OPs {ops:.2f}x)",
            "provenance": {"layers": BINARYDM_CODE, "model": "catalog ldm-4-bedrooms (make_ldm_spec.py)",
                           "scales": "format catalog: one fp16 scale per output channel per basis"}, **extra}


def binarydm_ldm4_storage_w1a4_baseline() -> dict:
    return _binarydm_row(1045.4 / 37.3, f"{BINARYDM_V1}: FP 1045.4 MB, binarized baseline W1A4 37.3 MB", False,
                         "storage")


def binarydm_ldm4_storage_w1a4() -> dict:
    return _binarydm_row(1045.4 / 42.1, f"{BINARYDM_V1}: FP 1045.4 MB, BinaryDM W1.1A4 42.1 MB (24.8x in its "
                         "abstract)", True, "storage")


def binarydm_ldm4_ops_w1a4() -> dict:
    return _binarydm_row(9.3, "BinaryDM arXiv:2404.05662v1, abstract: W1.1A4 BinaryDM 9.3x OPs savings", True, "ops")


def binarydm_abstract_storage_27x() -> dict:
    return _binarydm_row(27.1, "BinaryDM arXiv:2404.05662 (v2 abstract, as the issue quotes it): 16.0x FLOPs and "
                         "27.1x storage savings with W1A4", True, "storage", tolerance=0.15,
                         miss="not reproduced exactly: the version of the paper with 27.1x places its multi-basis "
                              "layers differently from the released code (whose placement gives v1's 42.1 MB); its "
                              "table was not available to us, so no placement was fitted to the figure")


def binarydm_abstract_flops_16x() -> dict:
    from quantcore.formats import get_format

    fmt = get_format("binary-a4")
    per_op = 64.0 / (fmt.weight_bits * fmt.act_bits)
    storage, whole = binarydm_savings(False)
    return {"check": "independent", "ours": per_op, "published": 16.0,
            "source": "BinaryDM arXiv:2404.05662 (v2 abstract, as the issue quotes it): 16.0x FLOPs savings with W1A4",
            "setup": "format catalog binary-a4: a W1A4 multiply-accumulate is 1 x 4 / 64 of an fp32 one (BOPs / 64)",
            "provenance": {"convention": "BiBench (Qin et al., ICML 2023) OPs = BOPs / 64 + FLOPs"},
            "note": f"the per-op saving of the binarized layers; over the whole ldm-4-bedrooms with its fp32 head "
                    f"and tail it is {whole:.2f}x (one basis everywhere), and lower with two bases"}


REPRODUCTIONS.update({
    "binarydm_ldm4_storage_w1a4_baseline": binarydm_ldm4_storage_w1a4_baseline,
    "binarydm_ldm4_storage_w1a4": binarydm_ldm4_storage_w1a4,
    "binarydm_ldm4_ops_w1a4": binarydm_ldm4_ops_w1a4,
    "binarydm_abstract_storage_27x": binarydm_abstract_storage_27x,
    "binarydm_abstract_flops_16x": binarydm_abstract_flops_16x,
})
