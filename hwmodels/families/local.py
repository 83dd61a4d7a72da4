"""The machine this runs on: latency from fits to real torch CPU kernels timed here.

`python -m hwmodels.calibrate --hw local` times torch's kernels on a designed grid of shapes
and fits a parametric roofline per kernel (`hwmodels.fit`); this model evaluates those fits.
Which kernel runs a format:

    fp32                   torch.mm, fp32            bf16        torch.mm, bf16
    int8 (W8A16)           torch._weight_int8pack_mm (int8 weights per channel, bf16 activations)
    int8-a8 (W8A8)         torch._int_mm (int8 x int8 -> int32; activation quantization not timed)
    int4-g32/g64/g128      torch._weight_int4pack_mm_for_cpu (bf16 scale + zero per group, so the
                           -asym variants run the same kernel; K must be a multiple of the group)

Other formats are unsupported. fp16: torch has no fast CPU fp16 GEMM (measured here: 0.28
GFLOP/s for 64x2048x2048 against 67 for bf16), so fp16 *weights* are unsupported; the KV cache
and embeddings, which the plan does not choose and `hwmodels.wholemodel` passes as fp16, are
costed with the bf16 kernels (a CPU deployment keeps them in bf16: same bytes). Op kinds:
linear / lm-head / attention use the GEMM fits (the GEMV fit at M = 1); embeddings the
measured gather; float convs the measured 3x3 conv2d (a 1x1 conv is costed by the same fit
in GEMM terms, an approximation); quantized convs run as im2col (a gather-speed copy of
M x K activations) + the GEMM kernel.

The breakdown gives the fit's two roofline terms (compute_s, memory_s; latency combines them
with the fitted p-norm, so they do not add up), its fixed overhead_s and the im2col copy.

Energy is an estimate, not a measurement: threads x `core_power_w` x latency (no RAPL
counters are readable in a VM). Cycles are latency x `clock_hz`, for reporting only.

No calibration yet: the decision is to run the quick one automatically (a one-line notice on
stderr, under a minute on 2 idle cores, cached; `python -m hwmodels.calibrate --hw local` runs the full one), so
`--hw local` works out of the box. `--set auto_calibrate=false` exits 2 instead, naming the
command to run.
"""
from __future__ import annotations

import sys

import numpy as np

from quantcore.errors import QuantDSEError

from hwmodels.interface import COMPUTE, MEMORY, OTHER, CostTable, HardwareModel
from hwmodels.ops import Ops, bits_table
from hwmodels.spec import Param
from hwmodels.workload import Workload

SCHEMA = {
    "threads": Param(int, "torch intra-op threads the kernels run with (0 = torch's default); "
                          "each thread count has its own calibration", min=0, max=1024, default=0),
    "core_power_w": Param(float, "power of one busy core (W): an estimate for the energy column", min=0.01,
                          max=100.0),
    "clock_hz": Param(float, "nominal core clock, only to report latency as cycles (Hz)", min=1e8, max=7e9),
    "auto_calibrate": Param(bool, "with no cached calibration, run the quick one (true) or stop with the "
                                  "command to run (false)", default=True),
}

FLOAT_KERNELS = {"fp32": "mm-fp32", "bf16": "mm-bf16", "fp16": "mm-bf16"}
CONV_KERNELS = {"fp32": "conv3x3-fp32", "bf16": "conv3x3-bf16", "fp16": "conv3x3-bf16"}
INT4_GROUPS = (32, 64, 128)


def gemm_kernel(fmt) -> str | None:
    """The measured GEMM kernel that runs weight format `fmt`, or None (unsupported)."""
    if fmt.family == "float":
        return FLOAT_KERNELS.get(fmt.weight_name)
    if fmt.family != "int":
        return None
    if fmt.weight_bits == 8 and fmt.group_size is None and fmt.symmetric:
        return {16: "int8pack-mm", 8: "int-mm"}.get(fmt.act_bits)
    if fmt.weight_bits == 4 and fmt.group_size in INT4_GROUPS and fmt.act_bits == 16:
        return f"int4pack-mm-g{fmt.group_size}"
    return None


def calibration_problem(doc) -> str | None:
    """Why a calibration document read back from the cache cannot cost anything (None when it can)."""
    from hwmodels.fit import params_problem

    fp = doc.get("fingerprint") if isinstance(doc, dict) else None
    threads = fp.get("threads") if isinstance(fp, dict) else None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        return "fingerprint.threads is not a thread count"
    kernels = doc.get("kernels")
    if not isinstance(kernels, dict):
        return "kernels is not an object"
    for name, entry in kernels.items():
        fits = entry.get("fits") if isinstance(entry, dict) else None
        if not isinstance(fits, dict):
            return f"kernel {str(name)[:40]} has no fits"
        split = entry.get("gemv_max_m", 1)
        if isinstance(split, bool) or not isinstance(split, int) or split < 1:
            return f"kernel {str(name)[:40]}: gemv_max_m is not a whole number >= 1"
        for regime, params in fits.items():
            problem = params_problem(params)
            if problem:
                return f"kernel {str(name)[:40]} {str(regime)[:10]}: {problem}"
    return None


class Model(HardwareModel):
    """This machine's CPU, from fits to its measured torch kernels."""

    ENERGY_PARAMS = ("core_power_w",)
    SCHEMA = SCHEMA
    DESCRIPTION = "measured torch CPU kernels, parametric fit (python -m hwmodels.calibrate --hw local)"
    #: where the energy figures come from (plans carry it as provenance.energy_basis)
    ENERGY_BASIS = "estimate: busy threads x per-core share of the CPU's TDP"

    def __init__(self, spec):
        super().__init__(spec)
        self._calibration = None

    @property
    def calibration(self) -> dict:
        """The cached calibration for this machine and thread count (loaded or made on first use)."""
        if self._calibration is None:
            from hwmodels.calibrate import calibrate, ensure_calibration

            doc = ensure_calibration(self.spec["threads"], self.spec["auto_calibrate"])
            problem = calibration_problem(doc)
            if problem is not None:  # the cache is outside data like any input
                if not self.spec["auto_calibrate"]:
                    raise QuantDSEError(f"the cached calibration of --hw local is not usable ({problem}): "
                                        "run python -m hwmodels.calibrate --hw local")
                print(f"notice: the cached calibration of --hw local is not usable ({problem}): "
                      "running the quick one again", file=sys.stderr)
                doc = calibrate(quick=True, threads=self.spec["threads"], progress=False)
            self._calibration = doc
        return self._calibration

    @property
    def threads(self) -> int:
        return int(self.calibration["fingerprint"]["threads"])

    def supports(self, fmt) -> bool:
        return gemm_kernel(fmt) is not None

    def _parts(self, kernel: str, m, k, n):
        from hwmodels.calibrate import kernel_parts
        from hwmodels.measure import KERNELS

        entry = self.calibration["kernels"].get(kernel)
        if entry is None:  # e.g. every shape of it crashed
            inf = np.full(np.shape(m), np.inf)
            return inf, inf, inf, inf
        return kernel_parts(entry, KERNELS[kernel], m, k, n)

    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        from hwmodels.measure import KERNELS

        L, F = len(ops), len(formats)
        kinds = np.array(ops.kinds, dtype=object)
        m, k, n = (a.astype(np.float64) for a in (ops.m, ops.k, ops.n))
        emb = kinds == "embedding"
        conv = (kinds == "conv") | (kinds == "deform-conv")
        chosen = ~emb & ~np.isin(kinds, ("attention",))  # ops whose format the plan chooses
        shape = (L, F)
        overhead, compute, memory, total, nbytes = (np.zeros(shape) for _ in range(5))
        im2col = np.zeros(shape)
        supported = np.ones(shape, dtype=bool)
        for j, fmt in enumerate(formats):
            name = gemm_kernel(fmt)
            if name is None:
                supported[:, j] = False
                continue
            if fmt.weight_name == "fp16":
                supported[chosen, j] = False
            if fmt.group_size:  # _weight_int4pack_mm_for_cpu: "expect K to be divisible by qGroupSize"
                supported[(ops.k % fmt.group_size != 0) & ~emb, j] = False
            cols = [overhead[:, j], compute[:, j], memory[:, j], total[:, j]]
            gemm_rows = ~emb & ~(conv & (fmt.family == "float"))
            if gemm_rows.any():
                parts = self._parts(name, m[gemm_rows], k[gemm_rows], n[gemm_rows])
                for col, val in zip(cols, parts):
                    col[gemm_rows] = val
                nbytes[gemm_rows, j] = KERNELS[name].bytes(m[gemm_rows], k[gemm_rows], n[gemm_rows])
            float_conv = conv & (fmt.family == "float")
            if float_conv.any():
                cname = CONV_KERNELS[fmt.weight_name]
                parts = self._parts(cname, m[float_conv], k[float_conv], n[float_conv])
                for col, val in zip(cols, parts):
                    col[float_conv] = val
                nbytes[float_conv, j] = KERNELS[cname].bytes(m[float_conv], k[float_conv], n[float_conv])
            gather = KERNELS["gather-bf16"]
            quant_conv = conv & (fmt.family != "float")
            if quant_conv.any():  # im2col: write and read back M x K activations at gather speed
                copy_bytes = 2.0 * m[quant_conv] * k[quant_conv] * KERNELS[name].act_bytes
                extra = self._gather_seconds(copy_bytes, m[quant_conv], k[quant_conv])
                im2col[quant_conv, j] = extra
                total[quant_conv, j] += extra
                nbytes[quant_conv, j] += copy_bytes
            if emb.any():  # a gather of M rows of N elements in this format
                bits = bits_table(n[emb], [fmt])[:, 0]
                row_bytes = ops.weight_elems[emb] * bits / 8.0
                out_bytes = m[emb] * n[emb] * gather.out_bytes
                t = self._gather_seconds(row_bytes + out_bytes, m[emb], n[emb])
                overhead[emb, j] = self._gather_seconds(0.0, 0.0, 0.0)
                memory[emb, j] = t - overhead[emb, j]
                total[emb, j] = t
                nbytes[emb, j] = row_bytes + out_bytes
        stacked = np.stack([compute, memory, overhead + im2col])
        bound = np.argmax(stacked, axis=0).astype(np.int8)
        bound = np.choose(bound, [COMPUTE, MEMORY, OTHER]).astype(np.int8)
        p = self.spec.params
        energy = self.threads * p["core_power_w"] * total
        return CostTable(cycles=total * p["clock_hz"], latency_s=total, energy_j=energy, bytes=nbytes,
                         bound=bound, supported=supported,
                         breakdown={"compute_s": compute, "memory_s": memory, "overhead_s": overhead,
                                    "im2col_s": im2col})

    def _gather_seconds(self, nbytes, rows, width):
        """Seconds to gather `rows` rows of `width` elements moving `nbytes`, by the measured gather's fit."""
        from hwmodels.fit import predict

        entry = self.calibration["kernels"].get("gather-bf16")
        if entry is None:
            return np.full(np.shape(nbytes), np.inf)
        rows = np.asarray(rows, dtype=np.float64)
        return predict(entry["fits"]["all"], rows, 1.0, np.asarray(width, dtype=np.float64), 0.0 * rows,
                       np.asarray(nbytes, dtype=np.float64))
