"""`python -m dse.models --list [--json]` / `python -m dse.models MODEL [--json]`."""
from __future__ import annotations

import json
import sys

from quantcore.cli import ArgumentParser, run_cli
from quantcore.models.registry import list_catalog
from quantcore.models.load import load_graph


def _table(graph) -> str:
    rows = [f"{graph.name}: {graph.params:,} parameters ({graph.extra_params:,} outside layers), "
            f"{len(graph)} layers, source {graph.source}",
            f"{'name':60s} {'kind':12s} {'role':8s} {'shape':>22s} {'params':>14s}"]
    for layer in graph:
        rows.append(f"{layer.name:60s} {layer.kind:12s} {layer.role:8s} {str(list(layer.shape)):>22s} "
                    f"{layer.params:>14,d}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="dse.models", description="Show a model's layer graph, or list the catalog.")
    parser.add_argument("model", nargs="?", help="catalog name, config.json, safetensors file or folder")
    parser.add_argument("--list", action="store_true", help="list the built-in catalog")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    args = parser.parse_args(argv)
    if args.list or args.model is None:
        names = list_catalog()
        print(json.dumps({"models": names}, indent=2) if args.json else "\n".join(names))
        return 0
    graph = load_graph(args.model)
    print(json.dumps(graph.as_dict(), indent=1, default=list) if args.json else _table(graph))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
