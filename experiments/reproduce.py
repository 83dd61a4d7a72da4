"""`python -m experiments.reproduce [NAME ...] [--json]`: our figure next to the paper's."""
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


def run(names: list[str] | None = None) -> list[dict]:
    table = registry()
    chosen = names or list(table)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        raise QuantDSEError(f"unknown reproduction {unknown[0]!r}: choose from {', '.join(table)}")
    rows = []
    for name in chosen:
        got = table[name]()
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
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(registry()))
        return 0
    rows = run(args.names)
    if args.json:
        sys.stdout.write(dumps(rows))
        return 0
    print(f"{'name':45s} {'ours':>12s} {'published':>12s} {'ratio':>7s}  source")
    for r in rows:
        pub = f"{r['published']:12.4g}" if r["published"] is not None else f"{'n/a':>12s}"
        ratio = f"{r['ratio']:7.3f}" if r["ratio"] is not None else f"{'n/a':>7s}"
        print(f"{r['name']:45s} {r['ours']:12.4g} {pub} {ratio}  {r['source']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
