"""`python -m experiments.joint_wa`: a joint weight/activation plan against the best 8-bit-activation plan.

    python -m experiments.joint_wa --out joint-wa.json --plot joint-wa.png

On all-minilm-l6-v2 (the real weights) and a100-80gb (prefill of 32 sequences x 128 tokens),
two families of plans are searched by `dse.search`'s ILP at each latency budget:

- ``joint``: the solver picks each layer's weight format *and* activation precision among
  16 / 8 / 4 bits (candidates JOINT: W16A16, W8A16, W4A16, W8A8, W4A8, W4A4);
- ``a8``: 8-bit activations everywhere, the solver picks only the weight format (candidates A8).

Sensitivity is `hessian` unless --sensitivity says otherwise, measured with each -aN variant's
activations quantized (dse.actsens), on two thirds of the shipped calibration texts; every plan is
then measured by `dse.evaluate.Evaluator` on the other third (held-out): mean cosine of each
text's embedding to the fp32 model's, and nearest-neighbour agreement. Latency is the a100-80gb
cost model's prediction of the plan (the cost the budget binds). The document written to --out
carries the date, the device each number comes from and the command.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_text, dumps

MODEL = "all-minilm-l6-v2"
HW = "a100-80gb"
BATCH, SEQ = 32, 128
JOINT = ("fp16", "int8", "int4-g128", "int8-a8", "int4-a8", "int4-g128-a8", "int4-a4", "int4-g128-a4")
A8 = ("int8-a8", "int4-a8", "int4-g128-a8")
BUDGETS_MS = (0.66, 0.70, 0.74, 0.78, 0.80, 0.84, 0.88, 0.92, 0.96, 1.00, 1.06)
QUICK_BUDGETS_MS = (0.70, 0.80, 0.92)


def split_texts(texts: list[str]) -> tuple[list[str], list[str]]:
    """(calibration, held-out): every third text is held out, as bench/evaluate.py splits them."""
    return [t for i, t in enumerate(texts) if i % 3 != 2], [t for i, t in enumerate(texts) if i % 3 == 2]


def act_mix(formats: list[str], params: list[int]) -> dict:
    """Share of searched weights whose layer runs with 16 / 8 / 4-bit activations."""
    from quantcore.formats import get_format

    total = float(sum(params)) or 1.0
    out = {16: 0.0, 8: 0.0, 4: 0.0}
    for f, p in zip(formats, params):
        out[get_format(f).act_bits] += p / total
    return {f"a{k}": round(v, 4) for k, v in out.items()}


def run_family(name, candidates, budgets, sensitivity, calib_path, evaluator, measured: dict) -> list[dict]:
    """One row per budget: the plan's predicted latency and its measured metrics (measured: {plan: metrics},
    shared across calls, so a plan that several budgets return is measured once)."""
    from dse import Budget, search
    from hwmodels.workload import Workload

    rows = []
    for ms in budgets:
        row = {"family": name, "budget_ms": ms}
        try:
            plan = search(model=MODEL, hw=HW, budget=Budget.ms(ms), workload=Workload(phase="prefill", batch=BATCH,
                                                                                     seq=SEQ),
                          formats=list(candidates), sensitivity=sensitivity, calib=calib_path)
        except QuantDSEError as exc:
            row.update(feasible=False, why=" ".join(str(exc).split())[:160])
            rows.append(row)
            continue
        formats = {l.name: l.format for l in plan.layers}
        key = tuple(sorted(formats.items()))
        if key not in measured:
            measured[key] = evaluator.metrics(formats)
        m = measured[key]
        names = list(formats)
        counts: dict = {}
        for f in formats.values():
            counts[f] = counts.get(f, 0) + 1
        row.update(feasible=True, latency_ms=plan.totals["latency_s"] * 1e3,
                   predicted_error=plan.totals["error"], cosine=m["cosine"], min_cosine=m["min_cosine"],
                   nn_agreement=m["nn_agreement"], formats=dict(sorted(counts.items())),
                   activation_share=act_mix([formats[n] for n in names], [l.params for l in plan.layers]))
        rows.append(row)
    return rows


#: 1 - cosine below this is drawn at it (a plan equal to fp up to float rounding)
FLOOR = 1e-6


def plot(doc: dict, path: str) -> None:
    """1 - cosine (log) against predicted latency: the joint plans, and the 8-bit-activation plan carried
    as a dashed line across the budgets above its cost (more budget does not change it)."""
    from matplotlib.ticker import FuncFormatter

    from dse.figures import new_figure, write_figure

    fig = new_figure(figsize=(6.6, 4.3))
    ax = fig.add_subplot()
    pts = {fam: sorted((p["latency_ms"], max(1.0 - p["cosine"], FLOOR)) for p in doc["points"]
                       if p["family"] == fam and p["feasible"]) for fam in ("joint", "a8")}
    if pts["joint"]:
        ax.plot(*zip(*pts["joint"]), "o-", color="C0", label="joint W/A plan (activations 16/8/4 bits per layer)")
    if pts["a8"]:
        x0, y0 = pts["a8"][0]
        top = max(p["budget_ms"] for p in doc["points"])
        ax.plot([x0, top], [y0, y0], "--", color="C3", label="best weight-only plan, 8-bit activations (any budget)")
        ax.plot([x0], [y0], "s", color="C3")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(f"predicted latency on {HW}, prefill {BATCH} x {SEQ} tokens (ms)")
    ax.set_ylabel("1 - mean cosine to fp32 embeddings (held-out)")
    ax.set_title(f"{MODEL}: joint W/A vs 8-bit-activation plans (sensitivity {doc['sensitivity']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    write_figure(fig, path)


def compare(points: list[dict]) -> list[dict]:
    """Per budget where both families have a plan: the two measured cosines and which is higher."""
    by = {(p["family"], p["budget_ms"]): p for p in points if p["feasible"]}
    out = []
    for ms in sorted({p["budget_ms"] for p in points}):
        j, a = by.get(("joint", ms)), by.get(("a8", ms))
        if j and a:
            out.append({"budget_ms": ms, "joint": j["cosine"], "a8": a["cosine"],
                        "joint_latency_ms": j["latency_ms"], "a8_latency_ms": a["latency_ms"],
                        "winner": ("joint" if j["cosine"] > a["cosine"] else
                                   "a8" if a["cosine"] > j["cosine"] else "tie")})
    return out


def markdown_table(doc: dict) -> str:
    """The points of a document as the Markdown table docs/activations.md shows (one row per budget)."""
    by = {(p["family"], p["budget_ms"]): p for p in doc["points"]}
    win = {c["budget_ms"]: c["winner"] for c in doc["comparison"]}
    lines = ["| budget (ms) | joint: latency (ms) | joint: cosine | joint: activations a16/a8/a4 (% of weights) "
             "| a8: latency (ms) | a8: cosine | higher cosine |",
             "|---:|---:|---:|---:|---:|---:|:---|"]
    for ms in sorted({p["budget_ms"] for p in doc["points"]}):
        cells = [f"{ms:.4f}"]
        for fam in ("joint", "a8"):
            p = by.get((fam, ms))
            if p is None or not p["feasible"]:
                cells += ["no plan", "-"] + (["-"] if fam == "joint" else [])
                continue
            cells += [f"{p['latency_ms']:.4f}", f"{p['cosine']:.5f}"]
            if fam == "joint":
                cells.append("/".join(f"{100 * p['activation_share'][k]:.0f}" for k in ("a16", "a8", "a4")))
        cells.append(win.get(ms, "-"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="experiments.joint_wa", description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("--out", required=True, help="the JSON document to write (points, comparison, provenance)")
    p.add_argument("--plot", help="also draw the figure (png)")
    p.add_argument("--sensitivity", default="hessian", choices=("hessian", "fisher", "output"),
                   help="calibration sensitivity the searches use (default hessian)")
    p.add_argument("--quick", action="store_true", help=f"three budgets ({', '.join(map(str, QUICK_BUDGETS_MS))} ms)")
    return p


def main(argv=None) -> int:
    import datetime
    import platform

    from dse.calibration import read_texts
    from dse.evaluate import Evaluator

    args = build_parser().parse_args(argv)
    if args.plot:
        from dse.figures import figure_type

        figure_type(args.plot)  # a bad name fails before minutes of work
    calib, held = split_texts(read_texts(None))
    budgets = QUICK_BUDGETS_MS if args.quick else BUDGETS_MS
    with tempfile.TemporaryDirectory() as tmp:
        calib_path = str(Path(tmp) / "calib.txt")
        Path(calib_path).write_text("\n".join(calib) + "\n", encoding="utf-8")
        ev = Evaluator(MODEL, held)
        points, measured = [], {}
        for fam, cands in (("joint", JOINT), ("a8", A8)):
            points += run_family(fam, cands, budgets, args.sensitivity, calib_path, ev, measured)
        a8 = [p["latency_ms"] for p in points if p["family"] == "a8" and p["feasible"]]
        if a8:  # equal cost exactly: both families at the cheapest 8-bit-activation plan's latency
            equal = min(a8) * (1 + 1e-9)
            budgets = tuple(sorted({*budgets, equal}))
            for fam, cands in (("joint", JOINT), ("a8", A8)):
                points += run_family(fam, cands, [equal], args.sensitivity, calib_path, ev, measured)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    doc = {"schema": "quantdse.joint_wa/1", "date": datetime.date.today().isoformat(),
           "command": f"python -m experiments.joint_wa {argv_text}".strip(),
           "device": {"latency": f"{HW} cost model (hwmodels, predicted)",
                      "metric": f"measured: fp32 torch on {platform.machine()} CPU, dse.evaluate fake quantization"},
           "model": MODEL, "hardware": HW, "workload": {"phase": "prefill", "batch": BATCH, "seq": SEQ},
           "sensitivity": args.sensitivity, "calibration_texts": len(calib), "held_out_texts": len(held),
           "candidates": {"joint": list(JOINT), "a8": list(A8)}, "points": points, "comparison": compare(points)}
    atomic_write_text(args.out, dumps(doc))
    if args.plot:
        plot(doc, args.plot)
    print(f"{MODEL} on {HW}, prefill {BATCH}x{SEQ}; sensitivity {args.sensitivity}; "
          f"cosine on {len(held)} held-out texts")
    print(f"{'budget':>10} {'joint ms':>9} {'joint cos':>10} {'a8 ms':>7} {'a8 cos':>8}  winner")
    by = {(p["family"], p["budget_ms"]): p for p in points}
    for ms in budgets:
        j, a = by[("joint", ms)], by[("a8", ms)]
        jt = f"{j['latency_ms']:9.3f} {j['cosine']:10.5f}" if j["feasible"] else f"{'-':>9} {'no plan':>10}"
        at = f"{a['latency_ms']:7.3f} {a['cosine']:8.5f}" if a["feasible"] else f"{'-':>7} {'no plan':>8}"
        win = next((c["winner"] for c in doc["comparison"] if c["budget_ms"] == ms), "-")
        print(f"{ms:8.4f}ms {jt} {at}  {win}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
