"""`python -m experiments.reproduce [NAME ...] [--json] [--plot PNG]`: our figure next to the paper's.

A row is `independent` when no hardware constant it used cites the row's own documents (its
`refs`, keys of docs/references.md), and `calibration` otherwise. The label is computed, never
written on a row: every cost model the row builds is recorded (`hwmodels.provenance`), and each
constant's `[sources]` text says, by citing `[key]`, which documents' figures its value was
fitted to, read from or chosen beside. A row that measures time ignores its targets' energy-only
constants. The summary counts independent rows within +-15 % and +-25 %; a row measuring the
same setup as another (`same_setup_as`) is shown but counted once.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
import statistics
import sys

from quantcore.io import dumps
from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from hwmodels import provenance
import experiments.reproductions as _pkg


def registry() -> dict:
    """All reproductions from experiments/reproductions/*.py, by name."""
    found = {}
    for info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{_pkg.__name__}.{info.name}")
        found.update(getattr(module, "REPRODUCTIONS", {}))
    return dict(sorted(found.items()))


CHECKS = ("independent", "calibration")
BAND, WIDE = 0.15, 0.25  # the bands the summary counts independent rows in
#: keys a reproduction may not return: the label and any tolerance are never written on a row
COMPUTED = ("check", "why_calibration", "tolerance", "miss")
QUANTITIES = ("time", "energy")


def label(used_specs, refs, quantity: str = "time") -> dict:
    """{"check", "why_calibration"} from the constants of `used_specs` that cite any of `refs`."""
    deps = provenance.dependencies(used_specs, refs, quantity)
    if deps:
        return {"check": "calibration", "why_calibration": "uses " + ", ".join(deps)}
    return {"check": "independent"}


def _target(spec) -> str:
    """How a row built a target: its name, and the GPU runtime profile it ran."""
    runtime = spec.params.get("runtime")
    return f"{spec.name} runtime={runtime}" if isinstance(runtime, str) else spec.name


def _row(name: str, fn) -> dict:
    with provenance.recording() as used:
        got = fn()
    written = [k for k in COMPUTED if k in got]
    if written:
        raise QuantDSEError(f"reproduction {name!r} writes {written[0]!r}: labels and tolerances are computed "
                            f"from the constants' provenance; remove it and name the row's documents in 'refs'")
    refs = got.get("refs")
    if not refs or not all(isinstance(r, str) and r for r in refs):
        raise QuantDSEError(f"reproduction {name!r} lacks 'refs': name its documents' keys (docs/references.md)")
    quantity = got.get("quantity", "time")
    if quantity not in QUANTITIES:
        raise QuantDSEError(f"reproduction {name!r}: quantity must be time or energy, got {quantity!r}")
    ours = float(got["ours"])
    published = got["published"]
    known = published is not None and math.isfinite(float(published)) and float(published) != 0
    # a figure the paper does not give (or we could not find) is null, never a made-up number
    return {"name": name, "ours": ours, "published": float(published) if known else None,
            "ratio": ours / float(published) if known else None, "source": got["source"],
            "refs": list(refs), "quantity": quantity, **label(used, refs, quantity),
            "uses": sorted({_target(spec) for spec in used}),
            **{k: v for k, v in got.items() if k not in ("ours", "published", "source", "refs", "quantity")}}


def run(names: list[str] | None = None) -> list[dict]:
    table = registry()
    chosen = names or list(table)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        raise QuantDSEError(f"unknown reproduction {unknown[0]!r}: choose from {', '.join(table)}")
    return [_row(name, table[name]) for name in chosen]


def counts(rows: list[dict]) -> dict:
    """The strict counts: rows by label, and independent rows (each setup once) by error band."""
    known = [r for r in rows if r["ratio"] is not None]
    indep = [r for r in known if r["check"] == "independent" and not r.get("same_setup_as")]
    errors = sorted(abs(r["ratio"] - 1) for r in indep)
    return {"rows": len(rows), "independent": sum(r["check"] == "independent" for r in rows),
            "calibration": sum(r["check"] == "calibration" for r in rows), "counted": len(indep),
            "within_15": sum(e <= BAND for e in errors), "within_25": sum(e <= WIDE for e in errors),
            "median_error": statistics.median(errors) if errors else None, "worst_error": errors[-1] if errors else None}


def summary(rows: list[dict]) -> str:
    """The strict counts as the README and docs/fidelity.md quote them."""
    c = counts(rows)
    line = (f"{c['rows']} rows: {c['independent']} independent, {c['calibration']} calibration "
            f"(labels computed from provenance)")
    if c["counted"]:
        line += (f"\n{c['counted']} independent setups: {c['within_15']} within +-15%, {c['within_25']} within "
                 f"+-25%, median error {c['median_error']:.1%}, worst {c['worst_error']:.1%}")
    return line


def markdown(rows: list[dict]) -> str:
    """Every row as two Markdown tables (independent, calibration), worst error first (docs/fidelity.md)."""
    def line(r, last):
        twin = " (same setup as another row)" if r.get("same_setup_as") else ""
        return (f"| `{r['name']}`{twin} | {r['ours']:.4g} | {r['published']:.4g} | {(r['ratio'] - 1) * 100:+.1f} % | "
                f"{last(r)} |")

    known = sorted((r for r in rows if r["ratio"] is not None), key=lambda r: -abs(r["ratio"] - 1))
    out = []
    for check, head, last in (("independent", "documents", lambda r: ", ".join(r["refs"])),
                              ("calibration", "constants citing its documents",
                               lambda r: r["why_calibration"].removeprefix("uses "))):
        mine = [r for r in known if r["check"] == check]
        out += [f"{check.capitalize()} ({len(mine)}), worst first:", "",
                f"| row | ours | published | error | {head} |", "| --- | ---: | ---: | ---: | --- |"]
        out += [line(r, last) for r in mine] + [""]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = ArgumentParser(prog="experiments.reproduce", description=__doc__)
    parser.add_argument("names", nargs="*", help="reproductions to run (default: all)")
    parser.add_argument("--json", action="store_true", help="machine-readable list on stdout")
    parser.add_argument("--list", action="store_true", help="list the names and exit")
    parser.add_argument("--markdown", action="store_true", help="every row as Markdown tables (docs/fidelity.md)")
    parser.add_argument("--plot", metavar="FILE", help="also draw ours vs published (log-log, +-15 %% band): "
                        ".png, .jpg, .svg or .pdf")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(registry()))
        return 0
    if args.plot:
        from dse.figures import figure_type
        from quantcore.io import check_outputs

        figure_type(args.plot)  # before the work: an unsupported extension or a path that cannot be written fails now
        check_outputs([args.plot])
    rows = run(args.names)
    if args.plot:
        from experiments.reproduce_plot import plot

        plot(rows, args.plot, BAND)
    if args.json:
        sys.stdout.write(dumps(rows))
        return 0
    if args.markdown:
        print(markdown(rows))
        return 0
    print(f"{'name':52s} {'ours':>10s} {'published':>10s} {'error':>8s}  {'check':11s} refs")
    for r in rows:
        pub = f"{r['published']:10.4g}" if r["published"] is not None else f"{'n/a':>10s}"
        err = f"{r['ratio'] - 1:+8.1%}" if r["ratio"] is not None else f"{'n/a':>8s}"
        flag = "*" if r["ratio"] is not None and abs(r["ratio"] - 1) > BAND else " "
        twin = " (same setup as another row)" if r.get("same_setup_as") else ""
        print(f"{r['name']:52s} {r['ours']:10.4g} {pub} {err}{flag} {r['check']:11s} {','.join(r['refs'])}{twin}")
    print(summary(rows) + f"; * = outside +-{BAND:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
