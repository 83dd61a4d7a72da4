"""`--set` co-design knobs on every family: clock, bandwidth and array size move the cost the right way.

The oracle is first principles: a compute-bound op's time scales as 1/clock and 1/(array size);
a memory-bound op's time as 1/bandwidth; no knob gives a super-linear speed-up, and fixed
overheads keep the gain below the ideal factor of 2.
"""
import pytest

from quantcore.formats import get_format
from hwmodels.ops import Ops
from hwmodels.registry import load_model
from hwmodels.workload import Workload

# target, format, compute-bound GEMM, memory-bound GEMM, clock knob, bandwidth knob,
# array knobs (doubled together), the ideal speed-up factor of doubling them
CASES = [
    ("u280", "int8-a8", (2048, 4096, 4096), (1, 4096, 4096), "clock_hz", "hbm_channel_bytes_per_s",
     ["mm_m", "dsp_count"], 0.5),  # a bigger MM unit needs the DSPs to feed it
    ("ultra96-codenet", "int4", (4096, 256, 256), (1, 4096, 4096), "clock_hz", "ddr_bytes_per_s", ["pw_out"], 0.5),
    ("bitmod", "int4-g128", (256, 4096, 4096), (1, 4096, 4096), "clock_hz", "dram_bits_per_cycle", ["rows"], 0.5),
    ("systolic", "int8-a8", (512, 512, 512), (1, 4096, 4096), "clock_hz", "dram_bytes_per_cycle",
     ["rows", "cols"], 0.25),
    ("a100-80gb", "fp16", (8192, 8192, 8192), (1, 4096, 4096), "sustained_clock_hz", "dram_bytes_per_s",
     ["sm_count"], 0.5),
    ("m2-ultra", "int2-g128", (1, 4096, 4096), (1, 4096, 4096), "clock_hz", "core_bytes_per_s", ["threads"], 0.5),
]
#: settings that make the compute-bound case compute-bound (SCALE-Sim's default DRAM of
#: 10 words/cycle starves a 32x32 array on any GEMM that does not fit its 64 KB SRAMs)
BASE = {"systolic": ["dram_bytes_per_cycle=1000"]}
#: the memory-bound case's format where it differs: one T-MAC thread is compute-bound on low-bit
#: weights (T-MAC's point), an fp16 GEMV is bound by the core's bandwidth
MEMORY_FORMAT = {"m2-ultra": "fp16"}
#: settings that make the memory-bound case memory-bound: CoDeNet's HLS loops (17 cycles per loop
#: entry) outlast the Ultra96's 8.5 GB/s DDR on every layer shape, so its bandwidth knob is tested
#: on a board with 1 GB/s
MEMORY_BASE = {"ultra96-codenet": ["ddr_bytes_per_s=1e9"]}


def latency(hw, overrides, fmt, gemm, phase="prefill"):
    if phase == "prefill":
        overrides = BASE.get(hw, []) + overrides
    model = load_model(hw, overrides)
    table = model.cost(Ops.gemm(*gemm), [get_format(fmt)], Workload(phase=phase, seq=max(gemm[0], 1)))
    assert table.supported[0, 0], (hw, fmt)
    return float(table.latency_s[0, 0]), int(table.bound[0, 0])


def knob_value(hw, key):
    return load_model(hw).spec[key]


@pytest.mark.parametrize("hw,fmt,compute_gemm,memory_gemm,clock,bandwidth,array,ideal", CASES)
def test_clock_speeds_up_compute_bound(hw, fmt, compute_gemm, memory_gemm, clock, bandwidth, array, ideal):
    base, bound = latency(hw, [], fmt, compute_gemm)
    assert bound == 0, f"{hw}: {compute_gemm} should be compute-bound"
    fast, _ = latency(hw, [f"{clock}={2 * knob_value(hw, clock)}"], fmt, compute_gemm)
    assert 0.5 * base * (1 - 1e-9) <= fast < 0.8 * base


@pytest.mark.parametrize("hw,fmt,compute_gemm,memory_gemm,clock,bandwidth,array,ideal", CASES)
def test_bandwidth_speeds_up_memory_bound(hw, fmt, compute_gemm, memory_gemm, clock, bandwidth, array, ideal):
    fmt = MEMORY_FORMAT.get(hw, fmt)
    slow = MEMORY_BASE.get(hw, [])
    base, bound = latency(hw, slow, fmt, memory_gemm, phase="decode")
    assert bound == 1, f"{hw}: {memory_gemm} should be memory-bound"
    bw = 2 * (float(slow[0].split("=")[1]) if slow else knob_value(hw, bandwidth))
    fast, _ = latency(hw, slow + [f"{bandwidth}={bw}"], fmt, memory_gemm, phase="decode")
    assert 0.5 * base * (1 - 1e-9) <= fast < 0.8 * base


@pytest.mark.parametrize("hw,fmt,compute_gemm,memory_gemm,clock,bandwidth,array,ideal", CASES)
def test_bigger_array_speeds_up_compute_bound(hw, fmt, compute_gemm, memory_gemm, clock, bandwidth, array, ideal):
    base, _ = latency(hw, [], fmt, compute_gemm)
    overrides = [f"{key}={2 * knob_value(hw, key)}" for key in array]
    fast, _ = latency(hw, overrides, fmt, compute_gemm)
    assert ideal * base * (1 - 1e-9) <= fast < 0.8 * base


def test_systolic_dataflow_is_a_knob():
    """64x512x64 on the 32x32 array, by SCALE-Sim v3's fold formula (systolic_compute_{os,ws,is}.py):
    os: Sr=M, Sc=N, T=K: 2x2 folds of (32 + 32 + 512 - 2) = 2296 cycles;
    ws: Sr=K, Sc=N, T=M: 16x2 folds of (2*32 + 32 + 64 - 2) = 5056; is: Sr=K, Sc=M, T=N: the same 5056."""
    expected = {"os": 2296, "ws": 5056, "is": 5056}
    for dataflow, cycles in expected.items():
        model = load_model("systolic", [f"dataflow={dataflow}"])
        table = model.cost(Ops.gemm(64, 512, 64), [get_format("int8-a8")], Workload(phase="prefill", seq=64))
        assert table.breakdown["compute_cycles"][0, 0] == cycles, dataflow
