"""`python -m hwmodels.list [--json]`: the hardware targets and their specs."""
from __future__ import annotations

import sys

from quantcore.io import dumps
from quantcore.cli import ArgumentParser, run_cli
from hwmodels.spec import list_specs, load_spec


def main(argv=None) -> int:
    parser = ArgumentParser(prog="hwmodels.list", description=__doc__)
    parser.add_argument("--json", action="store_true", help="specs as a JSON list on stdout")
    args = parser.parse_args(argv)
    specs = [load_spec(name) for name in list_specs()]
    if args.json:
        sys.stdout.write(dumps([s.as_dict() for s in specs]))
        return 0
    width = max((len(s.name) for s in specs), default=4)
    for s in specs:
        print(f"{s.name:{width}s}  {s.family:9s}  {s.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
