"""The bit-serial PE-array family (BitMoD, ANT, OliVe, FP16 baseline).

Oracles: a cycle-stepped reference that walks the array tile by tile and bit-plane by
bit-plane and streams operands through the buffers chunk by chunk (exact agreement on
small shapes), hand calculations from the BitMoD simulator's formulas, and the
simulator's constants.
"""
from __future__ import annotations

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

PREFILL = Workload(phase="prefill", batch=1, seq=256)
DECODE = Workload(phase="decode", batch=1, seq=256)


def stepped_reference(m, k, n, payload_bits, storage_bits, rows, cols, dot, bits_per_cycle,
                      bit_serial, pe_weight_bits, wbuf, abuf, dram_bits):
    """Walk the output-stationary array: returns (compute cycles, DRAM bytes, memory cycles).

    Compute: every token tile x output tile x dot-product step x bit-plane is one cycle.
    DRAM: operands stream through the buffers; when neither fits, the cheaper of
    "all weights again per input chunk" and "all inputs again per weight chunk" is taken.
    """
    planes = max(1, math.ceil(math.floor(payload_bits) / bits_per_cycle)) if bit_serial \
        else max(1, math.ceil(payload_bits / pe_weight_bits))
    cycles = 0
    for t0 in range(0, m, cols):
        for c0 in range(0, n, rows):
            for i0 in range(0, k, dot):
                for plane in range(planes):
                    cycles += 1
    row_bytes = math.ceil(k * storage_bits / 8)
    w = sum(row_bytes for _ in range(n))
    i = sum(k * 16 // 8 for _ in range(m))
    o = sum(n * 16 // 8 for _ in range(m))
    fetched = 0
    if w > wbuf and i > abuf:
        # plan A: for each input chunk, stream all weights; plan B: for each weight chunk, all inputs
        plan_a = sum(w for _ in range(0, i, abuf)) + i
        plan_b = sum(i for _ in range(0, math.ceil(w / wbuf))) + w
        fetched = plan_a if plan_a < plan_b else plan_b
    else:
        fetched = w + i
    total = fetched + o
    return cycles, total, (total * 8) // dram_bits


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 70), k=st.integers(1, 300), n=st.integers(1, 90),
       rows=st.integers(1, 17), cols=st.integers(1, 9), dot=st.sampled_from([1, 2, 4, 8]),
       bpc=st.integers(1, 4), serial=st.booleans(), fmt=st.sampled_from(["int4-g128", "int3-g64", "int8", "fp16", "int2-g32"]),
       wbuf=st.integers(64, 4000), abuf=st.integers(64, 4000), dram=st.sampled_from([64, 128, 256, 512]))
def test_matches_cycle_stepped_reference(m, k, n, rows, cols, dot, bpc, serial, fmt, wbuf, abuf, dram):
    sets = [f"rows={rows}", f"cols={cols}", f"dot_width={dot}", f"bits_per_cycle={bpc}",
            f"bit_serial={serial}", "pe_weight_bits=8", f"weight_buffer_bytes={wbuf}",
            f"act_buffer_bytes={abuf}", f"dram_bits_per_cycle={dram}"]
    model = load_model("bitmod", sets)
    f = get_format(fmt)
    table = model.cost(Ops.gemm(m, k, n), [f], PREFILL)
    compute, dram_bytes, memory = stepped_reference(m, k, n, f.weight_bits, f.bits_per_weight(k), rows, cols,
                                                    dot, bpc, serial, 8, wbuf, abuf, dram)
    assert table.breakdown["compute_cycles"][0, 0] == compute
    assert table.bytes[0, 0] == dram_bytes
    assert table.breakdown["memory_cycles"][0, 0] == memory
    assert table.cycles[0, 0] == max(compute, memory)


def test_hand_calculation_prefill_compute_bound():
    # 256 x 4096 x 4096 at W4 on the 32x32 BitMoD array: ceil(4096/4) * ceil(4096/32) * ceil(256/32) tiles
    # x ceil(4/2) bit-planes = 1024 * 128 * 8 * 2 (BitMoD simulator _calc_tile_fc x pe_latency)
    t = load_model("bitmod").cost(Ops.gemm(256, 4096, 4096), [get_format("int4-g128")], PREFILL)
    assert t.cycles[0, 0] == 1024 * 128 * 8 * 2 == 2_097_152
    assert t.bound[0, 0] == 0
    # PE energy = 0.56 pJ x 1.5 (P&R) x 1024 PEs x compute cycles
    assert t.breakdown["pe_energy_j"][0, 0] == pytest.approx(0.56e-12 * 1.5 * 1024 * 2_097_152)


def test_hand_calculation_decode_memory_bound():
    # GEMV 1 x 4096 x 4096, int3-g128 = 3.125 bits: weights ceil(4096*3.125/8)*4096 = 6,553,600 B,
    # input 8192 B, output 8192 B; 256 bits per cycle -> floor(6,569,984 * 8 / 256) = 205,312 cycles.
    # compute on the 64x16 decode array: 1024 * 64 * 1 tiles x 2 planes = 131,072 cycles.
    t = load_model("bitmod").cost(Ops.gemm(1, 4096, 4096), [get_format("int3-g128")], DECODE)
    assert t.breakdown["compute_cycles"][0, 0] == 131_072
    assert t.bytes[0, 0] == 6_569_984
    assert t.cycles[0, 0] == 205_312
    assert t.bound[0, 0] == 1
    assert t.latency_s[0, 0] == pytest.approx(205_312 / 1e9)
    # DRAM energy: 1200 pJ per 64 bits
    assert t.breakdown["dram_energy_j"][0, 0] == pytest.approx(6_569_984 * 8 / 64 * 1200e-12)


def test_fp16_baseline_and_iso_area_shapes():
    fp16 = load_model("bitmod-fp16")
    t = fp16.cost(Ops.gemm(256, 4096, 4096), [get_format("fp16"), get_format("int4-g128")], PREFILL)
    # 4096 * ceil(4096/32) * ceil(256/24) = 4096 * 128 * 11, one cycle per MAC
    assert t.cycles[0, 0] == 4096 * 128 * 11
    assert not t.supported[0, 1] and np.isinf(t.cycles[0, 1])
    olive = load_model("olive")
    assert olive.array_shape(DECODE) == (72, 16) and olive.array_shape(PREFILL) == (36, 32)


def test_set_overrides_change_the_cost():
    ops, f = Ops.gemm(256, 4096, 4096), [get_format("int4-g128")]
    base = load_model("bitmod").cost(ops, f, PREFILL)
    wider = load_model("bitmod", ["rows=64"]).cost(ops, f, PREFILL)
    assert wider.breakdown["compute_cycles"][0, 0] * 2 == base.breakdown["compute_cycles"][0, 0]
    four = load_model("bitmod", ["bits_per_cycle=4"]).cost(ops, f, PREFILL)
    assert four.breakdown["compute_cycles"][0, 0] * 2 == base.breakdown["compute_cycles"][0, 0]
    gemv = Ops.gemm(1, 4096, 4096)
    slow = load_model("bitmod").cost(gemv, f, DECODE)
    fast = load_model("bitmod", ["dram_bits_per_cycle=512"]).cost(gemv, f, DECODE)
    assert fast.breakdown["memory_cycles"][0, 0] == slow.breakdown["memory_cycles"][0, 0] // 2
    deq = load_model("bitmod", ["dequant_cycles_per_group=1"]).cost(ops, f, PREFILL)
    # one extra cycle per (output tile, group of 128): 128 * 8 * 32
    assert deq.breakdown["dequant_cycles"][0, 0] == 128 * 8 * 32
    with pytest.raises(QuantDSEError, match="rows must be >= 1"):
        load_model("bitmod", ["rows=0"])


def test_energy_breakdown_sums_and_counts():
    ops = Ops.from_rows([("a", "linear", 256, 2048, 8192, 1.0, 2048.0 * 8192, ""),
                         ("b", "attention", 4, 64, 256, 32.0, 64.0 * 256, "qk"),
                         ("e", "embedding", 256, 1, 2048, 1.0, 256.0 * 2048, "embed")])
    fmts = [get_format(n) for n in ("int4-g128", "int8", "fp16")]
    for hw in ("bitmod", "ant", "olive"):
        t = load_model(hw).cost(ops, fmts, PREFILL)
        parts = sum(t.breakdown[k] for k in ("pe_energy_j", "sram_read_energy_j", "sram_write_energy_j",
                                             "dram_energy_j"))
        np.testing.assert_allclose(parts, t.energy_j, rtol=1e-12)
        assert (t.energy_j > 0).all()
        one = load_model(hw).cost(Ops.from_rows([("b", "attention", 4, 64, 256, 1.0, 64.0 * 256, "qk")]), fmts,
                                  PREFILL)
        np.testing.assert_allclose(t.cycles[1], 32 * one.cycles[0])  # count multiplies
    # the embedding gather does no MACs: only its rows come from DRAM
    assert t.breakdown["compute_cycles"][2, 2] == 0 and t.bytes[2, 2] == 256 * 2048 * 2


def test_cacti_table_is_used_for_buffer_reads():
    model = load_model("bitmod")
    # 512-bit port: CACTI 0.19092 nJ per read (spec table point)
    assert model.sram_energy(np.array(512.0), "sram_read_j") == pytest.approx(0.19092e-9)
    t = model.cost(Ops.gemm(32, 4, 32), [get_format("int4-g128")], PREFILL)
    # one tile; weight port 4 * ceil(4/4)*4... int4 payload -> 4*4*32/2 = 256 bits, activation port 4*16*32/2 = 1024
    expected = model.sram_energy(np.array(256.0), "sram_read_j") + model.sram_energy(np.array(1024.0), "sram_read_j")
    assert t.breakdown["sram_read_energy_j"][0, 0] == pytest.approx(float(expected))
