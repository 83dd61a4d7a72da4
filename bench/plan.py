"""The plan contract's cost on the largest catalog model (deepseek-v3, 45k searched layers):
building its LayerGraph, checking its plan against the schema (every write and read does), and
the round trip through `Plan`. Prints the median of 3 runs of each, in seconds.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dse import Budget, Plan, search  # noqa: E402
from dse.plan import plan_problems  # noqa: E402
from quantcore.models import load_graph  # noqa: E402
from quantcore.models.graph import LayerGraph  # noqa: E402


def _median(fn) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    graph = load_graph("deepseek-v3")
    plan = search("deepseek-v3", "h200", Budget.bits(4), overrides={"allow_offload": True})
    doc, text = plan.to_dict(), plan.to_json()
    assert plan_problems(doc) == []
    rows = [("LayerGraph of deepseek-v3", len(graph), lambda: LayerGraph(graph.name, graph.layers, graph.config)),
            ("plan check (schema, finite, unique)", len(plan.layers), lambda: plan_problems(doc)),
            ("Plan.from_json (parse + check)", len(plan.layers), lambda: Plan.from_json(text)),
            ("Plan.to_json (check + dump)", len(plan.layers), plan.to_json)]
    print(f"{'step':38s} {'entries':>8s} {'median s':>9s}")
    for label, n, fn in rows:
        print(f"{label:38s} {n:8d} {_median(fn):9.3f}")


if __name__ == "__main__":
    main()
