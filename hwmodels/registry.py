"""Hardware families: the model module behind each spec's `family` key.

Modules are imported lazily so listing targets stays fast. Each family module
defines a `Model` class (a `HardwareModel` subclass with its `SCHEMA`).
"""
from __future__ import annotations

import importlib

from quantcore.errors import QuantDSEError
from hwmodels.spec import HardwareSpec, Param, apply_overrides, load_spec

#: params every target may set, whatever its family
COMMON_SCHEMA = {
    "memory_capacity_bytes": Param(float, "device memory that holds the weights (0 = not modelled)", min=0.0,
                                   default=0.0),
    "allow_offload": Param(bool, "weights may exceed the memory left after the KV cache and activations "
                                 "(offloaded or sharded): dse.search adds no device memory limit", default=False),
}

FAMILIES = {
    "gpu": "hwmodels.families.gpu",
    "fpga_llm": "hwmodels.families.fpga_llm",
    "codenet": "hwmodels.families.codenet",
    "bitserial": "hwmodels.families.bitserial",
    "systolic": "hwmodels.families.systolic",
    "cpu": "hwmodels.families.cpu",
    "local": "hwmodels.families.local",
}

#: analytic target to compare a measured CUDA device with, by a substring of its name
GPU_TARGETS = (("H200", "h200"), ("H100", "h100-sxm"), ("A100", "a100-80gb"))


def family_names() -> list[str]:
    return sorted(FAMILIES)


def family_class(family: str):
    if family not in FAMILIES:
        raise QuantDSEError(f"unknown hardware family {family!r}: use one of {', '.join(family_names())}")
    return importlib.import_module(FAMILIES[family]).Model


def family_schema(family: str) -> dict:
    return {**COMMON_SCHEMA, **family_class(family).SCHEMA}


def load_model(hw: str | HardwareSpec, overrides: list[str] | None = None):
    """A ready cost model for a target name, spec path or spec, with `--set` overrides."""
    spec = hw if isinstance(hw, HardwareSpec) else load_spec(hw)
    spec = apply_overrides(spec, overrides)
    return family_class(spec.family)(spec)


def target_for_gpu(gpu: str) -> str | None:
    """The analytic target of a CUDA device, by its name (torch's or NVML's), or None."""
    return next((t for key, t in GPU_TARGETS if key in gpu), None)
