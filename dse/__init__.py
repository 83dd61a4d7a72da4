"""quantdse: hardware-aware design-space exploration for quantized neural networks.

    from dse import search, Budget, Plan

    plan = search(model="resnet-50", hw="systolic", budget=Budget.bits(4), overrides={"rows": 32})
    print(plan.totals["latency_s"], plan.layers[0].format)

`search` is `dse.api.search` (called through the `dse.search` module, which is also the
command ``python -m dse.search``: calling the module calls the function). Names load on first
use, so the commands start fast.
"""
from dse.version import __version__

_LAZY = {"Budget": ("dse.budget", "Budget"), "Plan": ("dse.plan", "Plan"), "PlanLayer": ("dse.plan", "PlanLayer"),
         "SearchRequest": ("dse.pipeline", "SearchRequest"), "Workload": ("hwmodels.workload", "Workload"),
         "search": ("dse.search", None)}

__all__ = ["search", "Budget", "Plan", "PlanLayer", "SearchRequest", "Workload", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'dse' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value
