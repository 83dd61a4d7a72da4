"""`python -m experiments.reproduce [NAME ...] [--json] [--plot PNG]`: our figure next to the paper's.

Every row says whether it is an `independent` check (no constant of the model was set from
that figure or its source's other figures) or `calibration` (it was, or an input such as
board power is given), and the tolerance its test holds it to: 15 % unless the row names
a `miss` that explains a larger error.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
import sys

from quantcore.io import dumps
from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
import experiments.reproductions as _pkg


def registry() -> dict:
    """All reproductions from experiments/reproductions/*.py, by name."""
    found = {}
    for info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{_pkg.__name__}.{info.name}")
        found.update(getattr(module, "REPRODUCTIONS", {}))
    return dict(sorted(found.items()))


CHECKS = ("independent", "calibration")
BAND = 0.15  # the +-15 % every independent figure should meet


def run(names: list[str] | None = None) -> list[dict]:
    table = registry()
    chosen = names or list(table)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        raise QuantDSEError(f"unknown reproduction {unknown[0]!r}: choose from {', '.join(table)}")
    rows = []
    for name in chosen:
        got = table[name]()
        if got.get("check") not in CHECKS:
            raise QuantDSEError(f"reproduction {name!r} lacks check = independent|calibration: label it")
        got.setdefault("tolerance", BAND)
        if got["tolerance"] > BAND and "miss" not in got:
            raise QuantDSEError(f"reproduction {name!r} widens its tolerance without a 'miss' note: explain it")
        ours = float(got["ours"])
        published = got["published"]
        known = published is not None and math.isfinite(float(published)) and float(published) != 0
        # a figure the paper does not give (or we could not find) is null, never a made-up number
        rows.append({"name": name, "ours": ours, "published": float(published) if known else None,
                     "ratio": ours / float(published) if known else None,
                     "source": got["source"], **{k: v for k, v in got.items()
                                                 if k not in ("ours", "published", "source")}})
    return rows


def main(argv=None) -> int:
    parser = ArgumentParser(prog="experiments.reproduce", description=__doc__)
    parser.add_argument("names", nargs="*", help="reproductions to run (default: all)")
    parser.add_argument("--json", action="store_true", help="machine-readable list on stdout")
    parser.add_argument("--list", action="store_true", help="list the names and exit")
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
    print(f"{'name':45s} {'ours':>10s} {'published':>10s} {'ratio':>7s}  {'check':11s} source")
    for r in rows:
        pub = f"{r['published']:10.4g}" if r["published"] is not None else f"{'n/a':>10s}"
        ratio = f"{r['ratio']:7.3f}" if r["ratio"] is not None else f"{'n/a':>7s}"
        flag = "*" if r["ratio"] is not None and abs(r["ratio"] - 1) > BAND else " "
        print(f"{r['name']:45s} {r['ours']:10.4g} {pub} {ratio}{flag} {r['check']:11s} {r['source'][:60]}")
    indep = [r for r in rows if r["check"] == "independent" and r["ratio"] is not None]
    if indep:
        errors = sorted(abs(r["ratio"] - 1) for r in indep)
        inside = sum(e <= BAND for e in errors)
        print(f"{len(indep)} independent checks: {inside} within +-{BAND:.0%}, median error "
              f"{errors[len(errors) // 2]:.1%}, worst {errors[-1]:.1%}; * = outside +-{BAND:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
