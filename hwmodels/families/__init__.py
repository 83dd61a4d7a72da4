"""Hardware families: the model module behind each spec's `family` key.

Targets are data (``hwmodels/specs/*.toml``) read into a validated `HardwareSpec`; each spec
names a *family*, one model module here that turns a batch of GEMM-like ops x a list of
formats into a `CostTable` of arrays. `FAMILIES` imports a module on first use, so listing
targets stays fast; each defines a `Model` class (a `HardwareModel` subclass with its `SCHEMA`).
Other packages add families through the ``quantdse.families`` entry-point group (a module
with `Model`, or the class itself).
"""
from __future__ import annotations

from quantcore.registry import Registry
from hwmodels.params import Param

#: params every target may set, whatever its family
COMMON_SCHEMA = {
    "memory_capacity_bytes": Param(float, "device memory that holds the weights (0 = not modelled)", min=0.0,
                                   default=0.0),
    "allow_offload": Param(bool, "weights may exceed the memory left after the KV cache and activations "
                                 "(offloaded or sharded): dse.search adds no device memory limit", default=False),
    "interconnect": Param(str, "the device-to-device link, in words (e.g. NVLink 3); '' = none", default=""),
    "link_bytes_per_s": Param(float, "device-to-device bandwidth per direction (B/s) that --devices N "
                                     "all-reduces and sends over; 0 = one device only", min=0.0, default=0.0),
    "link_latency_s": Param(float, "time of one step of a collective (one hop of a ring) on that link", min=0.0,
                            max=1e-3, default=0.0),
    "host_link_bytes_per_s": Param(float, "host-to-device bandwidth per direction (B/s): what offloaded weights "
                                          "stream over each pass (allow_offload); 0 = not modelled", min=0.0,
                                   default=0.0),
}

FAMILIES = Registry("hardware family", {
    "gpu": "hwmodels.families.gpu",
    "fpga_llm": "hwmodels.families.fpga_llm",
    "codenet": "hwmodels.families.codenet",
    "bitserial": "hwmodels.families.bitserial",
    "systolic": "hwmodels.families.systolic",
    "cpu": "hwmodels.families.cpu",
    "local": "hwmodels.families.local",
}, group="quantdse.families")


def family_names() -> list[str]:
    return sorted(FAMILIES.names())


def family_class(family: str):
    """The `HardwareModel` subclass of a family; an unknown name lists the families."""
    target = FAMILIES.get(family)
    return getattr(target, "Model", target)


def family_schema(family: str) -> dict:
    return {**COMMON_SCHEMA, **family_class(family).SCHEMA}
