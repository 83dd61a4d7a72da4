"""BitMoD (HPCA'25) accelerator results: speedup and energy against ANT, OliVe and FP16.

Setup as in the paper's simulator (abdelfattah-lab/BitMoD-HPCA-25, bitmod_sim/test_*.py):
six LLMs, batch 1, context 256; "discriminative" = one 256-token prefill, "generative" =
that prefill plus 20 decode steps at context 256 (sim/plot/speedup_plot.ipynb,
num_token_generate = 20). Every nn.Linear (lm_head included) and the two attention
matmuls per layer (full score matrix, KV cache as the weight operand) are costed; the
embedding gather is not (the simulator has no gather op).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import gmean

from quantcore.formats import Format, get_format
from quantcore.models import load_graph
from hwmodels import provenance
from hwmodels.ops import Ops, attention_rows, ops_for_graph
from hwmodels.registry import load_model
from hwmodels.workload import Workload

MODELS = ("opt-1.3b", "phi-2", "yi-6b", "llama-2-7b", "llama-2-13b", "llama-3-8b")
CONTEXT = 256
DECODE_TOKENS = 20
#: weight bits per model of the baselines, bitmod_sim/test_ant.py and test_olive.py
ANT_BITS = {"opt-1.3b": 5, "phi-2": 5, "yi-6b": 5.25, "llama-2-7b": 5, "llama-2-13b": 4, "llama-3-8b": 5}
OLIVE_BITS = {"opt-1.3b": 4, "phi-2": 4, "yi-6b": 4, "llama-2-7b": 4, "llama-2-13b": 4, "llama-3-8b": 4.5}
#: KV-cache bits: 8 for BitMoD (test_bitmod.py), 16 for the others
KV_BITS = {"bitmod": 8, "ant": 16, "olive": 16, "bitmod-fp16": 16}
SIM_SOURCE = "BitMoD-HPCA-25 artifact sim/plot/speedup_plot.ipynb (data behind the paper's speedup figure)"


def plain_format(name: str, bits: float, family: str = "int") -> Format:
    """A weight/KV format stored at exactly `bits` bits (the simulator's w_prec / kv_prec)."""
    return dataclasses.replace(get_format("int4"), name=name, family=family, weight_bits=bits,
                               group_size=None, scale_bits=0, zero_bits=0, description=name)


def bitmod_format(bits: int) -> Format:
    """BitMoD weights from the catalog: `bits`-bit payload, group 128, 8 bits of per-group scale
    + datatype metadata -> bits + 0.0625 (test_bitmod.py: 4.0625 / 3.0625)."""
    return get_format(f"bitmod{bits}-g128")


def design_formats(design: str, model: str, weight_bits: int) -> tuple[Format, Format]:
    """(weight format, KV format) a design runs `model` with."""
    kv = get_format("fp16") if KV_BITS[design] == 16 else plain_format("kv-int8", 8)
    if design == "bitmod":
        return bitmod_format(weight_bits), kv
    if design == "ant":
        return plain_format(f"ant-w{ANT_BITS[model]}", ANT_BITS[model]), kv
    if design == "olive":
        return plain_format(f"olive-w{OLIVE_BITS[model]}", OLIVE_BITS[model]), kv
    return get_format("fp16"), kv


def simulator_ops(graph, workload: Workload) -> tuple[Ops, Ops]:
    """(linear + lm-head ops, attention ops) as the simulator lays them out: the full
    score matrix in prefill (no causal halving), one GEMM per KV head."""
    linear = ops_for_graph(graph, workload)
    rows = []
    for layer in graph.layers:
        if layer.kind == "attention":
            kv_heads = int(layer.attrs.get("kv_heads", layer.attrs.get("heads", 1)))
            for r in attention_rows(layer, workload):
                rows.append(r[:5] + (float(workload.batch * kv_heads),) + r[6:])
    return linear, Ops.from_rows(rows)


@provenance.cached
def pass_cost(design: str, model: str, phase: str, weight_bits: int) -> tuple[float, float]:
    """(cycles, energy J) of one pass: prefill of CONTEXT tokens or one decode step."""
    hw = load_model(design)
    fmt, kv = design_formats(design, model, weight_bits)
    wl = Workload(phase=phase, batch=1, seq=CONTEXT, kv_bits=KV_BITS[design])
    linear, attn = simulator_ops(load_graph(model), wl)
    a = hw.cost(linear, [fmt], wl)
    b = hw.cost(attn, [kv], wl)
    return float(a.cycles.sum() + b.cycles.sum()), float(a.energy_j.sum() + b.energy_j.sum())


def task_cost(design: str, model: str, task: str, weight_bits: int) -> tuple[float, float]:
    """(cycles, energy) of a discriminative task (prefill) or a generative one (+20 decodes)."""
    c, e = pass_cost(design, model, "prefill", weight_bits)
    if task == "generative":
        dc, de = pass_cost(design, model, "decode", weight_bits)
        c, e = c + DECODE_TOKENS * dc, e + DECODE_TOKENS * de
    return c, e


#: BitMoD weight bits per task (paper Sec. VI: 4-bit discriminative, 3-bit generative)
TASK_BITS = {"discriminative": 4, "generative": 3}


def ratios(baseline: str, tasks: tuple, index: int) -> np.ndarray:
    """baseline cost / BitMoD cost for each (task, model); index 0 cycles, 1 energy."""
    out = []
    for task in tasks:
        for model in MODELS:
            bits = TASK_BITS[task]
            out.append(task_cost(baseline, model, task, bits)[index] / task_cost("bitmod", model, task, bits)[index])
    return np.array(out)


SETUP = "six LLMs (OPT-1.3B, Phi-2, Yi-6B, Llama-2-7B/13B, Llama-3-8B), batch 1, context 256, iso-area arrays"


def speedup_vs_ant() -> dict:
    r = ratios("ant", ("discriminative", "generative"), 0)
    return {"refs": ["bitmod"], "ours": float(gmean(r)), "published": 1.69,
            "source": "BitMoD (HPCA'25, arXiv 2411.11745) abstract: 1.69x over ANT, 1.48x over OliVe",
            "setup": SETUP + "; mean over 6 models x {discriminative W4, generative W3}",
            "note": "geometric mean over the 12 (model, task) speedups; the artifact's plot averages them "
                    "arithmetically (1.691 vs geometric 1.688 on its own data)"}


def speedup_vs_olive() -> dict:
    r = ratios("olive", ("discriminative", "generative"), 0)
    return {"refs": ["bitmod"], "ours": float(gmean(r)), "published": 1.48,
            "source": "BitMoD (HPCA'25, arXiv 2411.11745) abstract: 1.69x over ANT, 1.48x over OliVe",
            "setup": SETUP + "; mean over 6 models x {discriminative W4, generative W3}",
            "note": "geometric mean over the 12 (model, task) speedups"}


def speedup_vs_fp16_discriminative() -> dict:
    r = ratios("bitmod-fp16", ("discriminative",), 0)
    return {"refs": ["bitmod"], "ours": float(gmean(r)), "published": 2.82, "source": SIM_SOURCE,
            "setup": SETUP + "; 256-token prefill, BitMoD W4 (4.0625 bits)",
            "note": "published = mean of the artifact's per-model cycle ratios cycle_fp16_d / cycle_bitmod_agg_d; "
                    "those come from the older sim/ code, whose prefill attention multiplies every query "
                    "head with the full hidden size at 16-bit weights (8 bit-planes on BitMoD); we follow "
                    "the corrected bitmod_sim/, so our prefill cycles are ~25% lower for every design "
                    "and BitMoD's ratio rises"}


def speedup_vs_fp16_generative() -> dict:
    r = ratios("bitmod-fp16", ("generative",), 0)
    return {"refs": ["bitmod"], "ours": float(gmean(r)), "published": 4.18, "source": SIM_SOURCE,
            "setup": SETUP + "; prefill + 20 decode steps, BitMoD W3 (3.0625 bits), KV 8-bit",
            "note": "published = mean of (20 x decode + prefill) cycle ratios in the artifact; it runs the "
                    "prefill of this task at W4, we at W3 (same compute cycles: ceil(3/2) = ceil(4/2))"}


def energy_vs_fp16() -> dict:
    r = ratios("bitmod-fp16", ("generative",), 1)
    return {"refs": ["bitmod"], "quantity": "energy", "ours": float(gmean(r)), "published": 4.15,
            "source": "BitMoD-HPCA-25 artifact sim/plot/energy_plot.ipynb (data behind the paper's energy "
                      "figure): 1 / efficiency_generate, BitMoD-LY",
            "setup": SETUP + "; generative task (prefill + 20 decodes), total energy incl. DRAM",
            "note": "buffer energies from our own CACTI 7 runs with the simulator's SRAM configuration; the "
                    "artifact's prefill (older sim/ attention, see the speedup notes) weighs more on BitMoD"}


REPRODUCTIONS = {
    "bitmod_speedup_vs_ant": speedup_vs_ant,
    "bitmod_speedup_vs_olive": speedup_vs_olive,
    "bitmod_speedup_vs_fp16_discriminative": speedup_vs_fp16_discriminative,
    "bitmod_speedup_vs_fp16_generative": speedup_vs_fp16_generative,
    "bitmod_energy_vs_fp16": energy_vs_fp16,
}
