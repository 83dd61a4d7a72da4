"""Speed of the cost models: table evaluations per second, whole-model cost, SCALE-Sim beside ours.

    python bench/cost_model.py [--ops 2000] [--formats 20] [--repeats 5] [--seed 0]

Prints, for every hardware target that loads, (layer x format) evaluations per second of
`load_model(name).cost(ops, formats, workload)` (target >= 1e6/s on one core); the time of
`hwmodels.wholemodel.model_cost` for Llama-2-7B decode (target < 5 ms); and SCALE-Sim v3's
time on one GEMM next to the systolic model's, with the ratio. Times are medians over repeats.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quantcore.cli import ArgumentParser, run_cli  # noqa: E402

# Reduction/output sizes of real transformer layers (Llama/Mistral/OPT/Phi hidden and MLP
# dims): real models have few distinct k, which the models exploit (bits_per_weight per k).
DIMS = (768, 1024, 2048, 2560, 3072, 4096, 5120, 8192, 11008, 13824, 14336)
FORMATS = ("fp16", "bf16", "int8", "int8-a8", "int6-g128", "int5-g128", "int4-g128", "int4-g64",
           "int4-g32", "int4-g128-a8", "int3-g128", "int3-g64", "int2-g64", "fp8-e4m3", "nf4",
           "mxfp4", "nvfp4", "q4_k", "q4_0", "q8_0")


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def random_ops(n_ops: int, seed: int):
    from hwmodels.ops import Ops

    rng = np.random.default_rng(seed)
    k = rng.choice(DIMS, n_ops)
    n = rng.choice(DIMS, n_ops)
    m = rng.choice([1, 16, 128, 512, 2048], n_ops)
    rows = [(f"op{i}", "linear", int(m[i]), int(k[i]), int(n[i]), 1.0, float(k[i]) * n[i], "")
            for i in range(n_ops)]
    return Ops.from_rows(rows)


def bench_tables(n_ops: int, n_formats: int, repeats: int, seed: int) -> None:
    from quantcore.formats import get_format
    from quantcore.errors import QuantDSEError
    from hwmodels.registry import load_model
    from hwmodels.spec import list_specs
    from hwmodels.workload import Workload

    ops = random_ops(n_ops, seed)
    formats = [get_format(f) for f in FORMATS[:n_formats]]
    workload = Workload(phase="prefill", batch=1, seq=512)
    print(f"cost tables: {n_ops} ops x {len(formats)} formats, median of {repeats}")
    for name in list_specs():
        try:
            model = load_model(name)
        except (QuantDSEError, ImportError, AttributeError) as exc:
            print(f"  {name:22s} skipped: {exc}")
            continue
        try:
            sec = median_seconds(lambda: model.cost(ops, formats, workload), repeats)
        except Exception as exc:  # another family's bug must not hide the other figures
            print(f"  {name:22s} failed: {type(exc).__name__}: {exc}")
            continue
        rate = n_ops * len(formats) / sec
        flag = "ok" if rate >= 1e6 else "BELOW 1e6/s"
        print(f"  {name:22s} {sec * 1e3:8.2f} ms  {rate:12.3e} evals/s  {flag}")


def bench_wholemodel(repeats: int) -> None:
    try:
        from quantcore.formats import get_format
        from quantcore.models import load_graph
        from hwmodels.registry import load_model
        from hwmodels.wholemodel import model_cost
        from hwmodels.workload import Workload
    except ImportError as exc:
        print(f"whole model: skipped ({exc})")
        return
    graph = load_graph("llama-2-7b")
    fmt = get_format("int4-g128")
    workload = Workload(phase="decode", batch=1, seq=2048)
    from quantcore.errors import QuantDSEError
    from hwmodels.spec import list_specs

    for hw in list_specs():
        try:
            model = load_model(hw)
            sec = median_seconds(lambda: model_cost(model, graph, fmt, workload), repeats)
        except QuantDSEError as exc:
            print(f"whole model: {hw}: skipped ({exc})")
            continue
        flag = "ok" if sec < 5e-3 else "ABOVE 5 ms"
        print(f"whole model: llama-2-7b decode int4-g128 on {hw:22s} {sec * 1e3:7.3f} ms  {flag}")


def bench_scalesim(repeats: int) -> None:
    try:
        import scalesim  # noqa: F401
    except ImportError:
        print("scalesim: not installed, skipped")
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from scalesim_shim import run_gemm
    from quantcore.formats import get_format
    from hwmodels.ops import Ops
    from hwmodels.registry import load_model
    from hwmodels.workload import Workload

    m, k, n, rows, cols, df = 256, 256, 256, 32, 32, "os"
    with tempfile.TemporaryDirectory() as tmp:
        peer_sec = median_seconds(lambda: run_gemm(m, k, n, rows, cols, df, Path(tmp)), repeats)
        peer = run_gemm(m, k, n, rows, cols, df, Path(tmp))
    model = load_model("systolic", [f"rows={rows}", f"cols={cols}", f"dataflow={df}"])
    ops, fmts, wl = Ops.gemm(m, k, n), [get_format("int8-a8")], Workload()
    ours_sec = median_seconds(lambda: model.cost(ops, fmts, wl), max(repeats, 20))
    ours = model.cost(ops, fmts, wl).breakdown["compute_cycles"][0, 0]
    print(f"scalesim vs ours: GEMM {m}x{k}x{n} on {rows}x{cols} {df}: SCALE-Sim {peer_sec * 1e3:.1f} ms "
          f"({peer['demand_cycles']} cycles), ours {ours_sec * 1e6:.1f} us ({ours:.0f} cycles), "
          f"ratio {peer_sec / ours_sec:.0f}x")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="bench/cost_model.py", description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--formats", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bench_tables(args.ops, min(args.formats, len(FORMATS)), args.repeats, args.seed)
    bench_wholemodel(args.repeats)
    bench_scalesim(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
