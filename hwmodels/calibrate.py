"""`python -m hwmodels.calibrate`: measure real torch kernels here, fit them, report the error.

    python -m hwmodels.calibrate --hw local [--quick] [--threads N] [--json]
    python -m hwmodels.calibrate --hw local --device cuda --json      # on a machine with a GPU
    python -m hwmodels.calibrate --hw a100-80gb --from measurements.json [--out derived.toml]

`--hw local` times each kernel of `hwmodels.measure.KERNELS` on a designed set of shapes
(`design`: a grid plus random draws from the realistic LLM/CNN range) in several passes (each
shape's time: the median of its calls within a pass, the minimum over passes: the machine is
shared, and a pass that ran while another process held a core shows whole scheduler time
slices, ~8 ms, on every call), and a STREAM copy that bounds the fitted bandwidths. It fits the
parametric model of `hwmodels.fit` per kernel (variants -- the LLC reread term, the largest M
of the GEMV-like sub-fit -- chosen by cross-validation on the fit rows alone) and reports the
MAPE on HELDOUT shapes per kernel drawn at random (seeded) from the same range, never used in
the fit, next to their pass-to-pass noise. On 2 idle cores: full 2-3 min, --quick under a minute (longer
when other processes share the cores: the passes are CPU-bound).
Results go to a cache file keyed by a machine fingerprint (CPU model, cores, torch version,
threads, device), outside the repository: $QUANTDSE_CACHE_DIR, else
$XDG_CACHE_HOME/quantdse, else ~/.cache/quantdse. Shapes that crashed a kernel are kept
there and skipped by later calibrations.

`--device cuda` measures torch's CUDA kernels the same way and prints, per kernel, the
ratio of the matching analytic GPU target's prediction (a100-80gb, h100-sxm) to the
measurement. Without a GPU it says so and exits 0.

`--from FILE` fits the efficiency/overhead params of an analytic target (the float params
of its family schema named "*efficiency*" or "*overhead*") to the user's own
measurements, [{"gemm": [M, K, N], "format": "int4-g128", "seconds": 1.2e-5}, ...],
through that family's cost(), and writes a derived spec (`extends = TARGET`) to --out, or to
fitted-spec.toml in the current folder.

This module is the command only; the work lives apart: `hwmodels.shapes` (which shapes),
`hwmodels.local_calibration` (measure and fit), `hwmodels.kernelfit` (one kernel's fit),
`hwmodels.calibration_cache` (where results live), `hwmodels.cuda_compare` (CUDA against the
analytic target) and `hwmodels.derive` (`--from`).
"""
from __future__ import annotations

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import check_outputs, dumps
from quantcore.limits import RANGES, check_cap, int_flag
from hwmodels.cuda_compare import compare_with_target
from hwmodels.derive import DEFAULT_OUT, derive_spec
from hwmodels.fit import bandwidth_bounds
from hwmodels.local_calibration import calibrate


def _report_text(doc: dict) -> str:
    fp = doc["fingerprint"]
    lines = [f"local target: {fp['cpu']}, {fp['threads']} threads, torch {fp['torch']}, device {fp['device']}"
             f" ({'quick' if doc['quick'] else 'full'} calibration, {doc['seconds']:.1f} s)",
             f"cache: {doc.get('path', '')}",
             f"STREAM copy bandwidth: {(doc.get('stream_bytes_per_s') or 0) / 1e9:.1f} GB/s",
             f"{'kernel':22s} {'n_fit':>5s} {'fit MAPE':>9s} {'held-out':>9s} {'held MAPE':>9s} {'noise':>6s}"
             "  peak GFLOP/s  GB/s"]
    for name, k in doc["kernels"].items():
        p = k["fits"].get("gemm") or k["fits"].get("all") or k["fits"]["gemv"]
        bw = (k["fits"].get("gemv") or p)["bytes_per_s"]  # GEMV: where the bandwidth is identifiable
        held = "n/a" if k["heldout_mape"] is None else f"{k['heldout_mape']:.1f}%"
        noise = "n/a" if k.get("heldout_noise") is None else f"{k['heldout_noise']:.1f}%"
        at_bound = bool(doc.get("stream_bytes_per_s")) and any(
            abs(bw / b - 1) < 0.01 for b in bandwidth_bounds(doc["stream_bytes_per_s"]))
        lines.append(f"{name:22s} {k['n_fit']:5d} {k['fit_mape'] or 0:8.1f}% {k['n_heldout']:9d} {held:>9s} {noise:>6s}  "
                     f"{p.get('peak_flops_per_s', 0) / 1e9:11.1f}  {bw / 1e9:5.1f}{'*' if at_bound else ''}")
    lines.append("noise: median pass-to-pass variation of the held-out timings; GB/s: the GEMV (or only) fit's "
                 "bandwidth, * = at its STREAM-derived bound (that fit is not memory-bound)")
    rejected: dict = {}
    for c in doc["crashed"]:
        if c["returncode"]:
            lines.append(f"crashed (avoided from now on): {c['kernel']} {c['shape']} exit {c['returncode']}")
        else:  # the kernel raised (e.g. CUDA _int_mm needs M > 16): one line a kernel
            rejected.setdefault(c["kernel"], []).append(c)
    for name, rows in rejected.items():
        lines.append(f"rejected by the kernel (avoided from now on): {name}, {len(rows)} shapes, e.g. "
                     f"{rows[0]['shape']}: {rows[0].get('stderr', '')[:80]}")
    cmp = doc.get("comparison")
    if cmp:
        lines.append(f"analytic {cmp['target']} (runtime={cmp['runtime']}) / measured, median ratio: all shapes, "
                     f"and calls over {cmp['long_call_s'] * 1e6:.0f} us (eager launch under ~20 %)")
        for name, c in cmp["kernels"].items():
            long = "n/a" if c["long_median_ratio"] is None else f"{c['long_median_ratio']:.2f}x"
            lines.append(f"  {name:22s} {c['format']:10s} {c['median_ratio']:.2f}x "
                         f"[{c['min_ratio']:.2f} .. {c['max_ratio']:.2f}] over {c['n']} shapes; "
                         f"long {long} over {c['n_long']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = ArgumentParser(prog="hwmodels.calibrate", description=__doc__.split("\n")[0])
    p.add_argument("--hw", required=True, help="local (measure here), or an analytic target with --from")
    p.add_argument("--quick", action="store_true", help="small grid (<1 min on 2 idle cores), for tests and first runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int_flag(*RANGES["seed"]), default=0,
                   help="seed of the held-out shapes and the random weights")
    p.add_argument("--from", dest="source", metavar="FILE", help="measurements JSON to fit an analytic target to")
    p.add_argument("--out", help=f"derived spec path for --from (default {DEFAULT_OUT} in the current folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads < 0:
        raise QuantDSEError(f"--threads must be >= 0, got {args.threads}")
    check_cap("threads", args.threads, "--threads")
    check_outputs([args.out], [args.source, args.hw])

    if args.source:
        report = derive_spec(args.hw, args.source, args.out)
        if args.json:
            print(dumps(report), end="")
        else:
            print(f"{report['hardware']}: fitted {', '.join(report['params'])} to {report['n']} measurements; "
                  f"MAPE {report['mape_before']:.1f}% -> {report['mape_after']:.1f}%; wrote {report['out']}")
            for k, v in report["params"].items():
                print(f"  {k:28s} {report['initial'][k]:.6g} -> {v:.6g}")
        return 0
    if args.hw != "local":
        raise QuantDSEError(f"--hw {args.hw}: only the local target is measured; for an analytic target "
                            "pass --from measurements.json")
    if args.out is not None:
        raise QuantDSEError("--out goes with --from (a derived spec); the local calibration is cached")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            message = "no CUDA device here (torch.cuda.is_available() is False): skipping the CUDA calibration"
            print(dumps({"skipped": message}), end="") if args.json else print(message)
            return 0
    doc = calibrate(quick=args.quick, threads=args.threads, device=args.device, seed=args.seed,
                    progress=not args.no_progress)
    if args.device == "cuda":
        doc["comparison"] = compare_with_target(doc)
    if args.json:
        print(dumps({k: v for k, v in doc.items() if k != "measurements"}), end="")
    else:
        print(_report_text(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
