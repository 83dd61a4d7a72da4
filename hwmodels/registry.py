"""Cost models by target: `load_model("u280", {"hbm_channels": 16})` -> a ready `HardwareModel`.

The families themselves are registered in `hwmodels.families` (re-exported here).
"""
from __future__ import annotations

from hwmodels.families import COMMON_SCHEMA, FAMILIES, family_class, family_names, family_schema
from hwmodels.spec import HardwareSpec, apply_overrides, load_spec

#: analytic target to compare a measured CUDA device with, by a substring of its name
GPU_TARGETS = (("H200", "h200"), ("H100", "h100-sxm"), ("A100", "a100-80gb"))


def load_model(hw: str | HardwareSpec, overrides=None):
    """A ready cost model for a target name, spec path or spec, with overrides
    (``{"rows": 32}``, or the command line's ``["rows=32"]``; see `apply_overrides`)."""
    spec = hw if isinstance(hw, HardwareSpec) else load_spec(hw)
    spec = apply_overrides(spec, overrides)
    return family_class(spec.family)(spec)


def target_for_gpu(gpu: str) -> str | None:
    """The analytic target of a CUDA device, by its name (torch's or NVML's), or None."""
    return next((t for key, t in GPU_TARGETS if key in gpu), None)


__all__ = ["COMMON_SCHEMA", "FAMILIES", "family_class", "family_names", "family_schema", "load_model",
           "target_for_gpu"]
