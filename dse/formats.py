"""`python -m dse.formats [--k K] [--json]`: list the number formats and their effective bits per weight.

The catalog itself lives in `quantcore.formats`, below both `hwmodels` and `dse`.
"""
from __future__ import annotations

from quantcore.cli import ArgumentParser, run_cli
from quantcore.formats import NOMINAL_K, check_k, list_formats
from quantcore.io import dumps


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="dse.formats", description="List the number formats and their effective bits per weight.")
    parser.add_argument("--k", type=int, default=NOMINAL_K, help="row length (input dim) for the bits column (default 4096)")
    parser.add_argument("--json", action="store_true", help="print a JSON list on stdout")
    args = parser.parse_args(argv)
    k = check_k(args.k)
    rows = []
    for fmt in list_formats():
        d = fmt.as_dict()
        d["bits"] = fmt.bits_per_weight(k)
        rows.append(d)
    if args.json:
        print(dumps(rows), end="")
        return 0
    print(f"{'name':<16} {'family':<8} {'bits@k=' + str(k):>12} {'payload':>7} {'group':>6} {'sym':>4} "
          f"{'scale':>5} {'zero':>4}  description")
    for d in rows:
        group = "row" if d["group_size"] is None else str(d["group_size"])
        print(f"{d['name']:<16} {d['family']:<8} {d['bits']:>12.4f} {d['weight_bits']:>7g} {group:>6} "
              f"{'y' if d['symmetric'] else 'n':>4} {d['scale_bits']:>5} {d['zero_bits']:>4}  {d['description']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
