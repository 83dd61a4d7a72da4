"""`python -m hwmodels.gpu_energy`: a GPU's measured time and board energy per pass, beside the model's.

    python -m hwmodels.gpu_energy --measure --out gpu_energy.json     # on a machine with an NVIDIA GPU
    python -m hwmodels.gpu_energy --compare tests/data/gpu_energy_h200.json [--hw h200]

Why: the GPU family's energy constants (idle and per-SM power, J per DRAM byte, J per
tensor FLOP) are estimates, and the one published power reading they were once checked
against (a V100 decode) was in view when they were chosen. A card's own energy counter
(NVML's total energy, board level, mJ) is a reading none of them was set from.

Workloads, each one CUDA graph replayed for at least `--seconds`:
- `decode`: the linear layers of Llama-2-7B for one token (every weight read once from HBM:
  memory-bound), as `hwmodels.ops.ops_for_graph` lists them for a decode step;
- `prefill-512`: the same layers for 512 prompt tokens (the lm-head on the last token only,
  as serving engines do): compute-bound;
- `gemm-8192`: one 8192 x 8192 x 8192 GEMM.
Weights are bf16 (uniform random: zeros would draw less power), one tensor per layer (13 GB
for Llama-2-7B), so a pass never hits in the L2. Energy per pass is the counter's difference
over the replays divided by their count; time per pass the same from the wall clock after a
synchronize. Idle board power is read the same way with nothing running (reported, not used).
"""
from __future__ import annotations

import time

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, check_outputs, dumps, load_json
from quantcore.limits import float_flag
from hwmodels.registry import target_for_gpu

SCHEMA = "quantdse.gpu-energy/1"
MODEL = "llama-2-7b"
#: workload name -> (phase, prompt tokens) of the Llama-2-7B linear layers, or a square GEMM's side
WORKLOADS = {"decode": ("decode", 1), "prefill-512": ("prefill", 512), "gemm-8192": ("gemm", 8192)}


def gemm_ops(workload: str):
    """Ops of every GEMM one pass of `workload` runs (what is measured and costed)."""
    from hwmodels.ops import Ops, ops_for_graph

    phase, size = WORKLOADS[workload]
    if phase == "gemm":
        return Ops.gemm(size, size, size)
    from quantcore.models import load_graph
    from hwmodels.workload import Workload

    return ops_for_graph(load_graph(MODEL), Workload(phase=phase, seq=size))


# ------------------------------------------------------------------ measuring (needs torch + CUDA + NVML)

def _energy_reader():
    """A function returning the board's energy counter in joules (NVML, since the driver loaded)."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    return handle, (lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3)


def _replay(torch, read_j, step, seconds: float) -> dict:
    """Replay `step` until `seconds` passed; time and energy per call."""
    step()
    torch.cuda.synchronize()
    calls, t0, e0 = 0, time.perf_counter(), read_j()
    while time.perf_counter() - t0 < seconds:
        for _ in range(8):
            step()
        calls += 8
        torch.cuda.synchronize()
    t1, e1 = time.perf_counter(), read_j()
    return {"calls": calls, "seconds_per_pass": (t1 - t0) / calls, "joules_per_pass": (e1 - e0) / calls,
            "mean_power_w": (e1 - e0) / (t1 - t0)}


def _measure_pass(torch, pynvml, handle, read_j, ops, seconds: float) -> dict:
    """Time and energy of one pass of `ops` (bf16, one weight tensor per GEMM) as a CUDA graph."""
    shapes = list(zip(ops.m, ops.k, ops.n))
    weights = [torch.empty(int(k), int(n), dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
               for _, k, n in shapes]
    inputs = [torch.empty(int(m), int(k), dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
              for m, k, _ in shapes]
    outputs = [torch.empty(int(m), int(n), dtype=torch.bfloat16, device="cuda") for m, _, n in shapes]

    def one_pass():
        for x, w, y in zip(inputs, weights, outputs):
            torch.mm(x, w, out=y)

    one_pass()  # warm-up: cuBLAS picks its kernels before the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        one_pass()
    row = _replay(torch, read_j, graph.replay, seconds)
    row["sm_clock_mhz_after"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
    row["gemms"] = len(shapes)
    row["weight_bytes"] = float(sum(int(k) * int(n) * 2 for _, k, n in shapes))
    return row


def measure(seconds: float = 5.0) -> dict:
    """Measure every workload on GPU 0; the document `--compare` reads."""
    import pynvml
    import torch

    if not torch.cuda.is_available():
        raise QuantDSEError("no CUDA device here (torch.cuda.is_available() is False): run --measure on a GPU machine")
    handle, read_j = _energy_reader()
    torch.manual_seed(0)
    doc = {"schema": SCHEMA, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "driver": pynvml.nvmlSystemGetDriverVersion(), "model": MODEL,
           "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workloads": {}}
    torch.cuda.synchronize()
    time.sleep(1.0)
    t0, e0 = time.perf_counter(), read_j()
    time.sleep(seconds)
    doc["idle_power_w"] = (read_j() - e0) / (time.perf_counter() - t0)
    for name in WORKLOADS:
        doc["workloads"][name] = _measure_pass(torch, pynvml, handle, read_j, gemm_ops(name), seconds)
        torch.cuda.empty_cache()  # the pass's tensors died with _measure_pass: free them before the next
    return doc


# ------------------------------------------------------------------ comparing with the analytic model

def predict(model, workload: str) -> dict:
    """A loaded cost model's latency (s) and energy (J) for one pass of `workload` in bf16."""
    from quantcore.formats import get_format
    from hwmodels.workload import Workload

    table = model.cost(gemm_ops(workload), [get_format("bf16")], Workload())
    return {"seconds_per_pass": float(table.latency_s[:, 0].sum()), "joules_per_pass": float(table.energy_j[:, 0].sum())}


def read_measurement(path: str) -> dict:
    doc = load_json(path, "GPU energy measurement")
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("workloads"), dict):
        raise QuantDSEError(f"{path} is not a {SCHEMA} document: write one with python -m hwmodels.gpu_energy --measure")
    unknown = sorted(set(doc["workloads"]) - set(WORKLOADS))
    if unknown:
        raise QuantDSEError(f"{path}: unknown workloads {', '.join(unknown)}: expected {', '.join(WORKLOADS)}")
    for name, row in doc["workloads"].items():
        for key, (lo, hi) in READING_RANGES.items():
            _check_number(path, f"workloads.{name}.{key}", row.get(key) if isinstance(row, dict) else None, lo, hi)
    for key, (lo, hi) in BOARD_RANGES.items():
        if key in doc:
            _check_number(path, key, doc[key], lo, hi)
    if not isinstance(doc.get("gpu", ""), str):
        raise QuantDSEError(f"{path}: gpu must be the card's name as text, got {str(doc['gpu'])[:40]}")
    return doc


#: plausible ranges of a reading (a pass of these workloads takes > 1 us and < a day): a
#: denormal or zero time would make every ratio and power infinite
READING_RANGES = {"seconds_per_pass": (1e-6, 1e5), "joules_per_pass": (1e-9, 1e9)}
BOARD_RANGES = {"idle_power_w": (0.0, 1e5), "power_limit_w": (0.0, 1e5)}


def _check_number(path: str, key: str, v, lo: float, hi: float) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise QuantDSEError(f"{path}: {key} must be a number in [{lo:g}, {hi:g}], got {str(v)[:40]}: "
                            "measure again with python -m hwmodels.gpu_energy --measure")


def compare(doc: dict, hw: str | None = None) -> dict:
    """{workload: {measured, predicted, ratios}} against `hw` (default: the target named like the card)."""
    hw = hw or target_for_gpu(str(doc.get("gpu", "")))
    if hw is None:
        raise QuantDSEError(f"no analytic target for GPU {doc.get('gpu')!r}: pass --hw")
    from hwmodels.registry import load_model

    model = load_model(hw)  # once: every workload is costed on the same target
    out = {"hw": hw, "gpu": doc.get("gpu"), "workloads": {}}
    for name, row in doc["workloads"].items():
        pred = predict(model, name)
        out["workloads"][name] = {
            "measured": {k: row[k] for k in ("seconds_per_pass", "joules_per_pass")}, "predicted": pred,
            "time_ratio": pred["seconds_per_pass"] / row["seconds_per_pass"],
            "energy_ratio": pred["joules_per_pass"] / row["joules_per_pass"],
            "measured_power_w": row["joules_per_pass"] / row["seconds_per_pass"],
            "predicted_power_w": pred["joules_per_pass"] / pred["seconds_per_pass"]}
    return out


def _report(cmp: dict, doc: dict) -> str:
    lines = [f"{cmp['gpu']} measured (NVML board energy) vs analytic {cmp['hw']}, bf16, per pass; "
             f"idle {doc.get('idle_power_w', float('nan')):.0f} W measured",
             f"{'workload':12s} {'ms meas':>9s} {'ms model':>9s} {'ratio':>6s} {'J meas':>8s} {'J model':>8s} "
             f"{'ratio':>6s} {'W meas':>7s} {'W model':>7s}"]
    for name, c in cmp["workloads"].items():
        m, p = c["measured"], c["predicted"]
        lines.append(f"{name:12s} {m['seconds_per_pass'] * 1e3:9.3f} {p['seconds_per_pass'] * 1e3:9.3f} "
                     f"{c['time_ratio']:6.2f} {m['joules_per_pass']:8.3f} {p['joules_per_pass']:8.3f} "
                     f"{c['energy_ratio']:6.2f} {c['measured_power_w']:7.0f} {c['predicted_power_w']:7.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = ArgumentParser(prog="hwmodels.gpu_energy", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--measure", action="store_true", help="measure on this machine's GPU (needs torch with CUDA, pynvml)")
    mode.add_argument("--compare", metavar="FILE", help="a measurement document to set beside the analytic model")
    p.add_argument("--out", help="with --measure: where to write the measurement document")
    p.add_argument("--hw", help="with --compare: analytic target (default: named like the measured card)")
    p.add_argument("--seconds", type=float_flag(0.5, 120.0), default=5.0, help="replay time per workload (default 5)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    check_outputs([args.out], [args.compare])
    if args.measure:
        doc = measure(args.seconds)
        text = dumps(doc)
        if args.out:
            atomic_write_text(args.out, text)
        cmp = compare(doc) if target_for_gpu(doc["gpu"]) else None
    else:
        doc = read_measurement(args.compare)
        cmp = compare(doc, args.hw)
    if args.json:
        print(dumps({"measurement": doc, "comparison": cmp}), end="")
    elif cmp:
        print(_report(cmp, doc))
    else:
        print(dumps(doc), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
