"""CPU family (T-MAC LUT kernels and llama.cpp dequant kernels).

Oracles: a hand calculation of one small GEMV, and a step-by-step reference loop over
(token, row block, k group, bit plane) per thread -- written independently of the
closed-form model -- that must agree exactly on small shapes.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from hwmodels.ops import Ops
from hwmodels.registry import load_model
from hwmodels.workload import Workload

WL = Workload("decode", 1, 64)


def _cost(hw, fmt, m, k, n, *sets):
    model = load_model(hw, list(sets))
    return model, model.cost(Ops.gemm(m, k, n), [get_format(fmt)], WL).row(0, 0)


def test_hand_calculated_tmac_gemv():
    # M2 Ultra, 1 thread, int2-g32 (symmetric) GEMV 1 x 64 x 32.
    # rows 32 -> 2 blocks of 16 (one NEON tbl looks up 16 rows); k groups 64/4 = 16; 2 bit planes
    # tbl = 2 * 16 * 2 = 64 -> 64 * 3.875 = 248
    # chunks of 32 row-planes x 16 k groups: 32 rows * 2 planes / 32 = 2 -> 2 * 14 = 28 (no zero point)
    # plane combine: 32 rows * 2 ops per plane * 2 planes = 128; tables: 16 * 28 = 448
    # ops = 248 + 28 + 128 + 448 = 852; 4 SIMD/cycle -> 213, times the measured/counted 0.76 -> 161.88
    # bytes = 64*32 weights * (2 + 16/32) bits / 8 = 640, + activations (64 + 32) * 2 B = 832
    # plus the 48 us per weight GEMM outside the kernel: 4.8e-5 * 3.49e9 = 167,520 cycles
    _, row = _cost("m2-ultra", "int2-g32", 1, 64, 32)
    assert row["breakdown"]["lut_lookups"] == 1 * 32 * 16 * 2
    assert row["breakdown"]["lut_tables"] == 16
    assert row["bytes"] == 832
    assert row["breakdown"]["compute_cycles"] == pytest.approx(161.88)
    assert row["breakdown"]["memory_cycles"] == pytest.approx(832 / 102e9 * 3.49e9)
    assert row["cycles"] == pytest.approx(161.88 + 167_520.0) and row["bound"] == "compute"
    assert row["latency_s"] == pytest.approx(161.88 / 3.49e9 + 4.8e-5)
    # asymmetric: the zero point is added to the plane-0 vectors only, 4 / 2 = 2 FMAs per chunk -> +4 ops
    _, asym = _cost("m2-ultra", "int2-g32-asym", 1, 64, 32)
    assert asym["breakdown"]["compute_cycles"] == pytest.approx(214.0 * 0.76)
    # 4 planes: zero point 4 / 4 = 1 per chunk; tbl 128 * 3.875 = 496, chunks 4 * 15 = 60,
    # combine 32 * 2 * 4 = 256, tables 448 -> 1260 / 4 = 315
    _, w4 = _cost("m2-ultra", "int4-g32-asym", 1, 64, 32)
    assert w4["breakdown"]["compute_cycles"] == pytest.approx(315.0 * 0.76)
    # the counted kernel alone (no measured scale, no time outside the kernel) is the plain count
    _, bare = _cost("m2-ultra", "int2-g32", 1, 64, 32, "tmac_time_scale=1", "op_overhead_s=0")
    assert bare["cycles"] == pytest.approx(213.0)


def test_hand_calculated_llamacpp_q4_0_gemv():
    # q4_0 on llama.cpp: per 16 weights 1 unpack + 1 `sub 8` + 1 sdot = 3 ops; per 32-block 5 ops
    # row of k=64: 64*3/16 + 2*5 = 22 ops; 32 rows -> 704 ops / 4 per cycle = 176 cycles (the T-MAC
    # time scale does not apply); + 48 us outside the kernel
    _, row = _cost("m2-ultra-llamacpp", "q4_0", 1, 64, 32)
    assert row["breakdown"]["dequant_cycles"] == pytest.approx(176.0)
    assert row["breakdown"]["lut_lookups"] == 0
    assert row["latency_s"] == pytest.approx(176.0 / 3.49e9 + 4.8e-5)


def _reference_tmac(p, m, k, n, bits, asym):
    """Stepped T-MAC: thread 0 builds every table (the INIT phase of T-MAC's llama.cpp fork), then threads
    take row blocks round-robin; one step per tbl, per chunk of 32 row-planes x 16 k groups of the
    thread's rows, per output row's plane combine. The op ends when the slowest thread does."""
    T, simd = p["threads"], p["simd_bytes"]
    ops = [0.0] * T
    init = sum(p["tmac_ops_per_table"] for tok in range(m) for g in range(math.ceil(k / 4)))
    blocks = math.ceil(n / simd)
    for tok in range(m):
        for blk in range(blocks):
            for g in range(math.ceil(k / 4)):
                for b in range(bits):
                    ops[blk % T] += p["tmac_ops_per_tbl"]
    for t in range(T):
        row_planes = len(range(t, blocks, T)) * simd * bits
        for tok in range(m):
            for _ in range(math.ceil(row_planes / 32)):
                for _ in range(0, math.ceil(k / 4), 16):
                    ops[t] += p["tmac_ops_per_chunk"] + (4 / bits if asym else 0)
            ops[t] += row_planes * 2
    return (init + max(ops)) / p["simd_issue_per_cycle"] * p["tmac_time_scale"]


def _reference_llamacpp(p, m, k, n, fmt):
    """Step per (row, quantization group): unpack+offset+MAC per 16-weight vector, group ops. The MAC is
    one sdot, or without the dot-product extension ggml_vdotq_s32's smull, smull2, 2 saddlp, 2 add."""
    T, simd = p["threads"], p["simd_bytes"]
    mac = 1 if p["dotprod"] else 6
    per_vec = {2: 7 / 4 + mac + (1 if fmt.symmetric else 0),
               3: 7 / 4 + 3 + mac + (1 if fmt.symmetric else 0),
               4: 1 + mac + (1 if fmt.symmetric else 0)}[math.ceil(fmt.weight_bits)]
    ops = [0.0] * T
    for tok in range(m):
        for row in range(n):
            for start in range(0, k, fmt.group_size):
                length = min(fmt.group_size, k - start)
                ops[row % T] += length * per_vec / simd + p["dequant_ops_per_group"]
    return max(ops) / p["simd_issue_per_cycle"]


shapes = st.tuples(st.integers(1, 3), st.integers(1, 24).map(lambda v: 4 * v), st.integers(1, 70),
                   st.integers(1, 4))


@settings(max_examples=40, deadline=None)
@given(shapes, st.sampled_from(["binary", "ternary", "int2-g32", "int3-g32", "int4-g32", "int2-g32-asym"]))
def test_tmac_matches_reference_loop(shape, fmt_name):
    m, k, n, threads = shape
    model, row = _cost("m2-ultra", fmt_name, m, k, n, f"threads={threads}")
    fmt = get_format(fmt_name)
    bits = math.ceil(fmt.weight_bits)
    ref = _reference_tmac(model.spec, m, k, n, bits, not fmt.symmetric)
    assert row["breakdown"]["compute_cycles"] == pytest.approx(ref, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(shapes, st.sampled_from(["int2-g32", "int3-g32", "int4-g32", "int4-g32-asym"]), st.booleans())
def test_llamacpp_matches_reference_loop(shape, fmt_name, dotprod):
    m, k, n, threads = shape
    model, row = _cost("m2-ultra-llamacpp", fmt_name, m, k, n, f"threads={threads}", f"dotprod={dotprod}")
    ref = _reference_llamacpp(model.spec, m, k, n, get_format(fmt_name))
    assert row["breakdown"]["compute_cycles"] == pytest.approx(ref, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["m2-ultra", "m2-ultra-llamacpp", "rpi5", "rpi5-llamacpp"]),
       st.integers(1, 64), st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 4),
       st.sampled_from(["int2-g128", "int4-g128", "q2_k", "q4_0", "fp16", "nf4", "int8"]))
def test_never_faster_than_memory_roofline(hw, m, k, n, threads, fmt_name):
    model = load_model(hw, [f"threads={threads}"])
    p = model.spec
    row = model.cost(Ops.gemm(m, k, n), [get_format(fmt_name)], WL).row(0, 0)
    bandwidth = min(threads * p["core_bytes_per_s"], p["dram_bytes_per_s"])
    weight_bytes = k * n * get_format(fmt_name).bits_per_weight(k) / 8
    assert row["bytes"] >= weight_bytes
    assert row["latency_s"] >= row["bytes"] / bandwidth * (1 - 1e-12)


def test_thread_scaling_direction():
    fmts = [get_format(f) for f in ("int2-g128", "int4-g128", "q4_0", "fp16")]
    ops = Ops.gemm(1, 4096, 11008)
    lat = [load_model("m2-ultra", [f"threads={t}"]).cost(ops, fmts, WL).latency_s[0] for t in (1, 2, 4, 8, 16)]
    assert all(np.all(a >= b) for a, b in zip(lat, lat[1:]))
    assert np.all(lat[1] < lat[0])          # 1 -> 2 threads: compute-bound at 1 thread, so faster
    # a memory-bound op stops scaling once the cores' bandwidth reaches the chip's DRAM peak
    model8 = load_model("rpi5", ["threads=4"])
    model2 = load_model("rpi5", ["threads=3"])  # 2 x 9.26 GB/s already exceeds the 13.23 GB/s all-core rate
    big = Ops.gemm(1, 4096, 4096)
    fp16 = [get_format("fp16")]
    assert model8.cost(big, fp16, WL).latency_s[0, 0] == pytest.approx(model2.cost(big, fp16, WL).latency_s[0, 0])


def test_tmac_cost_linear_in_bits_and_kernel_choice():
    model = load_model("m2-ultra")
    fmts = [get_format(f) for f in ("binary", "int2-g128", "int4-g128", "fp16", "nf4", "int8")]
    assert [model.kernel_for(f) for f in fmts] == ["tmac"] * 3 + ["llamacpp"] * 3
    t = model.cost(Ops.gemm(1, 4096, 4096), fmts, WL)
    lookups = t.breakdown["lut_lookups"][0, :3]
    assert list(lookups / lookups[0]) == [1, 2, 4]
    # attention over the KV cache never uses the LUT kernel
    att = Ops.from_rows([("a.qk", "attention", 1, 128, 64, 1.0, 128 * 64.0, "qk")])
    assert model.cost(att, [get_format("int4-g64")], WL).breakdown["lut_lookups"][0, 0] == 0


def test_tmac_beats_llamacpp_at_low_bits_single_thread():
    # T-MAC's claim (README, kernel-level figure, NUM_THREADS=1): LUT beats dequant at 2 bits
    ops = Ops.gemm(1, 4096, 4096)
    tmac = load_model("m2-ultra").cost(ops, [get_format("q2_k")], WL).latency_s[0, 0]
    llama = load_model("m2-ultra-llamacpp").cost(ops, [get_format("q2_k")], WL).latency_s[0, 0]
    assert tmac < llama


def test_prefill_gemm_scales_with_tokens():
    model = load_model("m2-ultra")
    f = [get_format("int2-g128")]
    one = model.cost(Ops.gemm(1, 4096, 4096), f, WL).breakdown["compute_cycles"][0, 0]
    many = model.cost(Ops.gemm(256, 4096, 4096), f, WL).breakdown["compute_cycles"][0, 0]
    assert many == pytest.approx(256 * one)


def test_threads_above_cores_is_an_error():
    with pytest.raises(QuantDSEError, match="threads=5 exceeds cores=4"):
        load_model("rpi5", ["threads=5"])
    with pytest.raises(QuantDSEError, match="kernel must be one of"):
        load_model("rpi5", ["kernel=blas"])


#: T-MAC README 'Kernel-level Speedup' figure (assets/gemv_t1.png), M2 row, NUM_THREADS=1, digitised from the
#: image's pixels against its own y ticks: GEMV (rows x k) -> (T-MAC 2-bit, T-MAC 4-bit, llama.cpp Q4_0) in ms
KERNEL_FIGURE_M2 = {(11008, 4096): (0.328, 0.672, 1.094), (4096, 11008): (0.330, 0.670, 1.121),
                    (5120, 5120): (0.196, 0.394, 0.651), (13824, 5120): (0.595, 1.060, 1.767),
                    (5120, 13824): (0.526, 1.043, 1.733)}


@pytest.mark.parametrize("shape", sorted(KERNEL_FIGURE_M2))
def test_llamacpp_q4_0_kernel_count_meets_tmac_kernel_figure(shape):
    """Independent: no llama.cpp constant came from this figure; digitising is good to ~2 %, so +-5 %.
    The time outside the kernel (op_overhead_s) is not in a kernel benchmark: set to 0."""
    n, k = shape
    model = load_model("m2-ultra-llamacpp", ["op_overhead_s=0"])
    ms = model.cost(Ops.gemm(1, k, n), [get_format("q4_0")], WL).latency_s[0, 0] * 1e3
    assert ms == pytest.approx(KERNEL_FIGURE_M2[shape][2], rel=0.05)


@pytest.mark.parametrize("shape", sorted(KERNEL_FIGURE_M2))
def test_tmac_kernel_is_linear_in_planes_as_the_figure(shape):
    """Calibration consistency: tmac_time_scale (0.76) is the median measured/counted ratio of these ten
    points, so each is within 15 % of it, and W4/W2 is ~2 in both (a kernel linear in bit planes)."""
    n, k = shape
    model = load_model("m2-ultra", ["op_overhead_s=0"])
    w2, w4 = model.cost(Ops.gemm(1, k, n), [get_format("int2-g128"), get_format("int4-g128")], WL).latency_s[0] * 1e3
    fig2, fig4, _ = KERNEL_FIGURE_M2[shape]
    assert w2 == pytest.approx(fig2, rel=0.15) and w4 == pytest.approx(fig4, rel=0.15)
    assert w4 / w2 == pytest.approx(2.0, rel=0.02)
    assert fig4 / fig2 == pytest.approx(2.0, rel=0.12)


#: the same figure's RBP row (Raspberry Pi 5, NUM_THREADS=1): GEMV (rows x k) -> (T-MAC 2-bit, 4-bit) in ms
KERNEL_FIGURE_RPI5 = {(4096, 4096): (0.494, 0.949), (11008, 4096): (1.199, 2.500), (4096, 11008): (1.215, 2.465),
                      (5120, 5120): (0.734, 1.448), (13824, 5120): (1.968, 3.989), (5120, 13824): (1.978, 3.956)}


@pytest.mark.parametrize("shape", sorted(KERNEL_FIGURE_RPI5))
def test_rpi5_tmac_kernels_stream_at_the_measured_core_bandwidth(shape):
    """Independent: rpi5.toml core_bytes_per_s (9.26 GB/s) is a read-only kernel measured on a Pi 5
    (llama.cpp issue #26484), not read from this figure. Each of T-MAC's twelve GEMVs moves its bytes at
    9.05-10.0 GB/s, at 2 and 4 bits alike (memory-bound), within 10 % of it, and our time is within 10 %
    of the figure's."""
    n, k = shape
    model = load_model("rpi5")
    table = model.cost(Ops.gemm(1, k, n), [get_format("int2-g128"), get_format("int4-g128")], WL)
    for j, published_ms in enumerate(KERNEL_FIGURE_RPI5[shape]):
        assert table.bytes[0, j] / (published_ms * 1e-3) == pytest.approx(model.spec["core_bytes_per_s"], rel=0.10)
        assert table.latency_s[0, j] * 1e3 == pytest.approx(published_ms, rel=0.10)
