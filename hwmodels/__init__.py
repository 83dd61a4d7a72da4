"""Cycle-level cost models of hardware targets.

Targets are data (``hwmodels/specs/*.toml``) read into a validated `HardwareSpec`;
each spec names a *family*, one model module in ``hwmodels/families/`` that turns
a batch of GEMM-like ops x a list of formats into a `CostTable` of arrays.
"""
from hwmodels.interface import CostTable, HardwareModel, BOUND_NAMES
from hwmodels.ops import Ops, ops_for_graph
from hwmodels.spec import HardwareSpec, load_spec, list_specs, apply_overrides
from hwmodels.workload import Workload
from hwmodels.registry import load_model

__all__ = [
    "CostTable", "HardwareModel", "BOUND_NAMES", "Ops", "ops_for_graph", "HardwareSpec",
    "load_spec", "list_specs", "apply_overrides", "Workload", "load_model",
]
