"""The systolic family against three oracles.

1. A cycle-stepped reference array (below): operands move one PE per cycle through
   registers, the product is checked numerically, and the cycle in which the last output
   leaves is counted. The analytic compute cycles must match it exactly (hypothesis).
2. SCALE-Sim v3 itself (the installed `scalesim`), run on small GEMMs for every dataflow.
3. Energy per action by hand from the Horowitz 45 nm numbers and Accelergy's node scaling.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from hypothesis import given, settings, strategies as st

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from hwmodels.energy_tables import load_table, tech_energy_scale
from hwmodels.families.systolic import compute_cycles, mac_precision
from hwmodels.ops import Ops
from hwmodels.registry import load_model
from hwmodels.workload import Workload

sys.path.insert(0, str(Path(__file__).parent))


# ----------------------------------------------------------------- reference array
#
# Conventions (SCALE-Sim's, made physical): the array is R x C; a partial tile is padded
# with zeros to the full array and streamed like a full one; folds run back to back.
# Cycle numbers start at 0 and the count is the last cycle + 1.

def _os_fold(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Output stationary: a (R x T) enters row i from the left skewed by i, b (T x C) enters
    column j from the top skewed by j; PE(i, j) accumulates; an output leaves when its PE has
    done its T-th MAC (SCALE-Sim adds no drain time in os)."""
    R, T = a.shape
    C = b.shape[1]
    a_reg = [[None] * C for _ in range(R)]
    b_reg = [[None] * C for _ in range(R)]
    acc = np.zeros((R, C))
    done = np.zeros((R, C), int)
    cycle, last = 0, -1
    while done.min() < T:
        a_reg = [[(a[i, cycle - i] if 0 <= cycle - i < T else None)] + a_reg[i][:-1] for i in range(R)]
        top = [(b[cycle - j, j] if 0 <= cycle - j < T else None) for j in range(C)]
        b_reg = [top] + b_reg[:-1]
        for i in range(R):
            for j in range(C):
                if a_reg[i][j] is not None and b_reg[i][j] is not None:
                    acc[i, j] += a_reg[i][j] * b_reg[i][j]
                    done[i, j] += 1
                    if done[i, j] == T:
                        last = cycle
        cycle += 1
    return acc, last + 1


def _stationary_fold(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, int]:
    """Weight/input stationary: the stationary tile s (R x C) shifts in from the top, one row
    per cycle (R cycles); then row t of x (T x R) enters row i from the left at cycle
    R + t + i, moves right one PE per cycle, and partial sums move down one PE per cycle; the
    result (t, j) leaves the bottom of column j."""
    T, R = x.shape
    C = s.shape[1]
    held = [[None] * C for _ in range(R)]
    cycle = 0
    for r in reversed(range(R)):              # preload: after R shifts row i holds s[i]
        held = [list(s[r])] + held[:-1]
        cycle += 1
    assert all(held[i][j] == s[i, j] for i in range(R) for j in range(C))
    x_reg = [[None] * C for _ in range(R)]
    p_reg = [[None] * C for _ in range(R)]    # (t, partial sum) leaving each PE downwards
    out = np.zeros((T, C))
    emitted, last = 0, -1
    while emitted < T * C:
        k = cycle - R
        x_reg = [[((k - i, x[k - i, i]) if 0 <= k - i < T else None)] + x_reg[i][:-1] for i in range(R)]
        new_p = [[None] * C for _ in range(R)]
        for i in range(R):
            for j in range(C):
                if x_reg[i][j] is None:
                    continue
                t, value = x_reg[i][j]
                above = (t, 0.0) if i == 0 else p_reg[i - 1][j]
                assert above is not None and above[0] == t   # the psum meets its input
                new_p[i][j] = (t, above[1] + value * held[i][j])
        p_reg = new_p
        for j in range(C):
            if p_reg[R - 1][j] is not None:
                t, value = p_reg[R - 1][j]
                out[t, j] = value
                emitted += 1
                last = cycle
        cycle += 1
    return out, last + 1


def _pad(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape)
    out[: x.shape[0], : x.shape[1]] = x
    return out


def reference_gemm(A: np.ndarray, B: np.ndarray, R: int, C: int, dataflow: str) -> tuple[np.ndarray, int]:
    """A @ B on an R x C array stepped cycle by cycle; returns (product, cycles)."""
    M, K = A.shape
    N = B.shape[1]
    out = np.zeros((M, N))
    cycles = 0
    if dataflow == "os":
        for m0 in range(0, M, R):
            for n0 in range(0, N, C):
                tile, t = _os_fold(_pad(A[m0:m0 + R], (R, K)), _pad(B[:, n0:n0 + C], (K, C)))
                out[m0:m0 + R, n0:n0 + C] += tile[: min(R, M - m0), : min(C, N - n0)]
                cycles += t
    elif dataflow == "ws":       # weights B[k-block, n-block] stationary, rows of A stream
        for n0 in range(0, N, C):
            for k0 in range(0, K, R):
                tile, t = _stationary_fold(_pad(A[:, k0:k0 + R], (M, R)), _pad(B[k0:k0 + R, n0:n0 + C], (R, C)))
                out[:, n0:n0 + C] += tile[:, : min(C, N - n0)]
                cycles += t
    else:                        # is: A[m-block, k-block]^T stationary, columns of B stream
        for m0 in range(0, M, C):
            for k0 in range(0, K, R):
                tile, t = _stationary_fold(_pad(B[k0:k0 + R].T, (N, R)), _pad(A[m0:m0 + C, k0:k0 + R].T, (R, C)))
                out[m0:m0 + C] += tile.T[: min(C, M - m0)]
                cycles += t
    return out, cycles


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 9), n=st.integers(1, 9),
       rows=st.integers(1, 5), cols=st.integers(1, 5), dataflow=st.sampled_from(["os", "ws", "is"]),
       seed=st.integers(0, 2**31 - 1))
def test_analytic_cycles_equal_cycle_stepped_reference(m, k, n, rows, cols, dataflow, seed):
    rng = np.random.default_rng(seed)
    A = rng.integers(-4, 5, (m, k)).astype(float)
    B = rng.integers(-4, 5, (k, n)).astype(float)
    product, cycles = reference_gemm(A, B, rows, cols, dataflow)
    np.testing.assert_array_equal(product, A @ B)          # the reference really computes
    assert int(compute_cycles(m, k, n, rows, cols, dataflow)) == cycles


def test_reference_hand_case():
    # os, 2x2 array, M=K=N=2: one fold, last MAC at PE(1,1) in cycle T-1+1+1 = 3 -> 4 cycles
    A = np.array([[1.0, 2], [3, 4]])
    product, cycles = reference_gemm(A, A, 2, 2, "os")
    np.testing.assert_array_equal(product, A @ A)
    assert cycles == 4 == 2 + 2 + 2 - 2


# ----------------------------------------------------------------- SCALE-Sim peer

PEER_SHAPES = [(10, 7, 6), (5, 9, 3), (17, 4, 11), (33, 20, 9)]
PEER_ARRAYS = [(4, 4), (3, 2), (8, 4)]


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("rows,cols", PEER_ARRAYS)
def test_compute_cycles_equal_scalesim(dataflow, rows, cols, tmp_path):
    require("scalesim")
    from scalesim_shim import run_gemm

    for i, (m, k, n) in enumerate(PEER_SHAPES):
        peer = run_gemm(m, k, n, rows, cols, dataflow, tmp_path / str(i))
        ours = int(compute_cycles(m, k, n, rows, cols, dataflow))
        assert peer["stall_cycles"] == 0
        assert ours == peer["demand_cycles"]           # cycles SCALE-Sim steps through
        assert ours == peer["total_cycles"] + 1        # its report: index of the last cycle


@pytest.mark.slow
@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_compute_cycles_equal_scalesim_larger(dataflow, tmp_path):
    require("scalesim")
    from scalesim_shim import run_gemm

    for i, (m, k, n, r, c) in enumerate([(64, 64, 64, 16, 16), (100, 37, 50, 32, 8), (128, 256, 64, 32, 32)]):
        peer = run_gemm(m, k, n, r, c, dataflow, tmp_path / str(i))
        assert int(compute_cycles(m, k, n, r, c, dataflow)) == peer["demand_cycles"] == peer["total_cycles"] + 1


def test_model_reports_scalesim_compute_cycles_through_set():
    model = load_model("systolic", ["rows=4", "cols=4", "dataflow=ws"])
    table = model.cost(Ops.gemm(10, 7, 6), [get_format("fp16")], Workload())
    assert table.breakdown["compute_cycles"][0, 0] == 80   # ceil(7/4)*ceil(6/4) * (2*4+4+10-2)
    assert table.cycles[0, 0] >= 80


# ----------------------------------------------------------------- energy by hand

def test_energy_table_at_45nm_is_horowitz():
    t = load_table("horowitz45", 45.0)
    assert t.mac_pj["int8"] == pytest.approx(0.2 + 0.1)     # int8 mult + int32 add
    assert t.mac_pj["fp16"] == pytest.approx(1.1 + 0.9)     # fp16 mult + fp32 add
    assert t.mac_pj["fp32"] == pytest.approx(3.7 + 0.9)
    assert t.sram_pj_per_byte(8) == pytest.approx(10 / 8)   # 8 KB, 64-bit access 10 pJ
    assert t.sram_pj_per_byte(32) == pytest.approx(20 / 8)
    assert t.sram_pj_per_byte(16) == pytest.approx(10 * math.sqrt(2) / 8)   # log-log midpoint


def test_node_scaling_matches_accelergy_rule():
    # hwcomponents: poly(node) = a Vdd^2 + b Vdd + c at Vdd 0.8; 45 -> 7 nm
    p45 = 1.103 * 0.64 - 0.362 * 0.8 + 0.2767
    p7 = 0.1776 * 0.64 - 0.09097 * 0.8 + 0.02447
    assert tech_energy_scale(45, 7) == pytest.approx(p7 / p45)
    # 28 nm lies between 32 and 20 nm: linear in nm between their polynomials
    p32 = 0.9559 * 0.64 - 0.7823 * 0.8 + 0.471
    p20 = 0.373 * 0.64 - 0.1582 * 0.8 + 0.04104
    assert tech_energy_scale(45, 28) == pytest.approx((p32 + (p20 - p32) * (32 - 28) / 12) / p45)
    assert load_table("horowitz45", 7).mac_pj["int8"] == pytest.approx(0.3 * p7 / p45)
    with pytest.raises(QuantDSEError, match="tech_nm 3"):
        tech_energy_scale(45, 3)


def test_gemm_energy_by_hand():
    """One op, everything fits on chip: every operand crosses DRAM once."""
    model = load_model("systolic", ["rows=4", "cols=4", "dataflow=os"])
    m, k, n = 8, 16, 12
    fmt = get_format("int8-a8")
    table = model.cost(Ops.gemm(m, k, n), [fmt], Workload())
    wbytes = k * n * fmt.bits_per_weight(k) / 8            # int8 + fp16 scale per output channel
    dram = m * k + wbytes + m * n                            # 1-byte activations and outputs
    assert table.bytes[0, 0] == pytest.approx(dram)
    # 64 KiB SRAMs: log-log between 32 KB (20 pJ) and 1 MB (100 pJ): 20 * 5^(log2(64/32)/log2(1024/32))
    sram_pb = 20 * 5 ** (1 / 5) / 8
    assert load_table("horowitz45", 45).sram_pj_per_byte(64) == pytest.approx(sram_pb)
    # os: ifmap read once per N block (3), filter once per M block (2), fills written once
    sram_bytes = m * k * 3 + wbytes * 2 + m * n + (m * k + wbytes)
    expected = (m * k * n * 0.3 + sram_bytes * sram_pb + dram * 8 * 20.3) * 1e-12
    assert table.energy_j[0, 0] == pytest.approx(expected)


def test_double_buffered_stalls_by_hand():
    """GEMV 1 x 64 x 64 in fp16 on a 4x4 os array: 16 folds of 4+4+64-2 = 70 cycles."""
    model = load_model("systolic", ["rows=4", "cols=4", "dataflow=os", "dram_bytes_per_cycle=4"])
    table = model.cost(Ops.gemm(1, 64, 64), [get_format("fp16")], Workload())
    folds, c = 16, 70
    dram = 1 * 64 * 2 + 64 * 64 * 2 + 1 * 64 * 2           # everything fits: each operand once
    fill = dram / folds / 4                                  # 132 cycles per fold > 70
    assert table.breakdown["compute_cycles"][0, 0] == folds * c
    assert table.breakdown["dram_stall_cycles"][0, 0] == pytest.approx(fill + (folds - 1) * (fill - c))
    assert table.cycles[0, 0] == pytest.approx(folds * c + fill + (folds - 1) * (fill - c))
    assert table.bound[0, 0] == 1
    fast = load_model("systolic", ["rows=4", "cols=4", "dataflow=os", "dram_bytes_per_cycle=100"])
    t2 = fast.cost(Ops.gemm(1, 64, 64), [get_format("fp16")], Workload())
    assert t2.cycles[0, 0] == pytest.approx(folds * c + dram / folds / 100)   # only the first fill shows
    assert t2.bound[0, 0] == 0


def test_lower_weight_bits_move_fewer_bytes():
    model = load_model("systolic")
    fmts = [get_format(f) for f in ("fp16", "int8", "int4-g128")]
    table = model.cost(Ops.gemm(1, 4096, 4096), fmts, Workload())
    assert table.bytes[0, 0] > table.bytes[0, 1] > table.bytes[0, 2]
    assert table.bound[0, 0] == 1                           # a GEMV is DRAM bound
    assert np.all(table.cycles >= table.breakdown["compute_cycles"])


def test_mac_precision_choice():
    assert mac_precision(get_format("int4-g128")) == "fp16"        # W4A16: dequantize to fp16
    assert mac_precision(get_format("int4-g128-a8")) == "int8"
    assert mac_precision(get_format("int4-a4")) == "int4"
    assert mac_precision(get_format("fp8-e4m3-a8")) == "fp8"
    assert mac_precision(get_format("fp32")) == "fp32"


def test_bad_override_is_one_line_error():
    with pytest.raises(QuantDSEError, match="dataflow must be one of os, ws, is"):
        load_model("systolic", ["dataflow=rs"])
    with pytest.raises(QuantDSEError, match="rows must be >= 1"):
        load_model("systolic", ["rows=0"])
