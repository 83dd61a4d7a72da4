"""CoDeNet's detection accelerator on an embedded FPGA (Ultra96, ZU3EG).

Dong, Wang, Huang et al., "CoDeNet: Efficient Deployment of Input-Adaptive Object
Detection on Embedded FPGAs", FPGA'21. Two engines run the network layer by layer:

- a 1x1 (pointwise) engine of pw_in x pw_out MACs: one output pixel's
  pw_in x pw_out slice per cycle, so cycles = pixels x ceil(K/pw_in) x ceil(N/pw_out);
- a 3x3 depthwise / deformable engine of dw_channels x dw_taps MACs:
  cycles = pixels x ceil(N/dw_channels) x ceil(K/dw_taps). Deformable taps read
  input-dependent line-buffer positions, modelled as `deform_cycle_factor` x the
  cycles of the regular depthwise engine.

Each layer streams its weights and feature maps through DDR (each feature map is
written once and read once by the next layer, at act_bits), overlapping with
compute: cycles = max(compute, memory) + a fixed per-layer overhead. Layers named in
`cpu_layers` (CoDeNet's first, 3-channel convolution) run on the ARM Cortex-A53 at
`cpu_macs_per_s`.

Data movement that is not a convolution, from CoDeNet's network code (Zhen-Dong/CoDeNet
lib/models/networks/shufflenetv2_dcn.py), each a DDR pass after its layer while the engines
wait (serial cycles = bytes / DDR bytes per cycle, `move_cycles` in the breakdown):

- ShuffleNetV2 channel split / concat / shuffle (BaseNode.forward): in a stride-1 unit the
  untouched half x1 goes straight to the output, which `channel_shuffle` interleaves with the
  computed half. Writing the computed half to interleaved addresses makes the concat free, but
  x1 still has to be copied into its interleaved places: one read + one write of
  pixels x channels at act_bits, charged to the unit's last layer (`*.b2.5` of a unit without a
  `b1` branch). Stride-2 units compute both halves and write them interleaved: no copy.
- Nearest x2 upsampling after each deformable block of the head (`_make_deconv_layer`,
  nn.Upsample(scale_factor=2, mode='nearest')): the 4x larger map is written once and read
  by the next layer once, 8 x pixels x channels extra bytes, charged to `*.conv_channel`.
- max-pool: only in the maxpool=True variant of layer0, which runs on the ARM with it.
- AXI interface stalls: part of ddr_efficiency (achieved/peak DDR bandwidth through the HP ports).
Both passes can be switched off (`shuffle_copy_pass`, `upsample_pass`) to see their cost.
"""
from __future__ import annotations

import numpy as np

from hwmodels.interface import COMPUTE, MEMORY, OTHER, CostTable, HardwareModel
from hwmodels.ops import Ops, bits_table
from hwmodels.spec import Param
from hwmodels.workload import Workload

SCHEMA = {
    "clock_hz": Param(float, "accelerator clock (Hz)", min=1e6, max=2e9),
    "pw_in": Param(int, "1x1 engine: input channels per cycle", min=1),
    "pw_out": Param(int, "1x1 engine: output channels per cycle", min=1),
    "dw_channels": Param(int, "3x3 depthwise engine: channels per cycle", min=1),
    "dw_taps": Param(int, "3x3 depthwise engine: kernel taps per channel per cycle", min=1),
    "deform_cycle_factor": Param(float, "deformable conv cycles / regular depthwise cycles (irregular access)",
                                 min=1.0),
    "act_bits": Param(int, "feature-map precision in DDR (bits)", min=1, max=32),
    "max_weight_bits": Param(float, "widest weight code the engines multiply", min=1, max=16),
    "weight_families": Param(list, "format families the engines support", default=["int", "ternary", "binary"]),
    "ddr_bytes_per_s": Param(float, "peak DDR bandwidth of the board (B/s)", min=1e6),
    "ddr_efficiency": Param(float, "achieved / peak DDR bandwidth", min=0.01, max=1.0),
    "layer_overhead_cycles": Param(int, "fixed per-layer cycles (line-buffer fill, instruction setup)", min=0),
    "cpu_layers": Param(list, "layer names that run on the ARM CPU", default=[]),
    "cpu_macs_per_s": Param(float, "ARM CPU MAC rate on those layers (MAC/s)", min=1e6),
    "shuffle_copy_pass": Param(int, "1 = copy the untouched half of each stride-1 ShuffleNet unit into the "
                               "shuffled output through DDR; 0 = free (e.g. a shuffle-aware address generator)",
                               min=0, max=1, default=1),
    "upsample_pass": Param(int, "1 = nearest x2 upsampling of the head through DDR; 0 = fused into the next "
                           "layer's line buffer", min=0, max=1, default=1),
    "static_power_w": Param(float, "board power independent of activity (W)", min=0.0),
    "ddr_energy_j_per_byte": Param(float, "DDR access energy (J/byte)", min=0.0),
    "mac_energy_j": Param(float, "energy of one 4x8-bit MAC on the fabric (J)", min=0.0),
}


def _ceil_div(a, b):
    return -(-a // b)


class Model(HardwareModel):
    """Cycle-level cost of CoDeNet's two-engine accelerator; see the module docstring."""

    SCHEMA = SCHEMA
    DESCRIPTION = "cycle-level: CoDeNet 1x1 + 3x3 depthwise/deformable engines, DDR, first layer on ARM"

    def supports(self, fmt) -> bool:
        p = self.spec.params
        return fmt.family in p["weight_families"] and fmt.weight_bits <= p["max_weight_bits"]

    def compute_cycles(self, ops: Ops) -> np.ndarray:
        """[L] engine cycles (deformable factor applied; 0 for CPU layers and gathers)."""
        p = self.spec.params
        m, k, n = (x.astype(np.int64) for x in (ops.m, ops.k, ops.n))
        kinds = np.array(ops.kinds)
        roles = np.array(ops.roles if len(ops.roles) == len(ops) else ("",) * len(ops))
        deform = kinds == "deform-conv"
        depthwise = deform | (roles == "dwconv")
        pw = m * _ceil_div(k, p["pw_in"]) * _ceil_div(n, p["pw_out"])
        dw = m * _ceil_div(n, p["dw_channels"]) * _ceil_div(k, p["dw_taps"])
        cycles = np.where(depthwise, dw, pw).astype(np.float64)
        cycles = np.where(deform, np.ceil(cycles * p["deform_cycle_factor"]), cycles)
        return np.where(kinds == "embedding", 0.0, cycles)

    def move_bytes(self, ops: Ops) -> np.ndarray:
        """[L] DDR bytes of the non-convolution passes after each layer (module docstring)."""
        p = self.spec.params
        names = list(ops.names)
        units_with_b1 = {n.split(".b1.")[0] for n in names if ".b1." in n}
        act = p["act_bits"] / 8.0
        fmap = ops.m * ops.n * act
        shuffle = np.array([n.endswith(".b2.5") and n.split(".b2.")[0] not in units_with_b1 for n in names])
        upsample = np.array([n.startswith("deconv_layers.") and n.endswith(".conv_channel") for n in names])
        return (p["shuffle_copy_pass"] * np.where(shuffle, 2.0 * fmap, 0.0)
                + p["upsample_pass"] * np.where(upsample, 8.0 * fmap, 0.0))

    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        p = self.spec.params
        L, F = len(ops), len(formats)
        on_cpu = np.array([name in p["cpu_layers"] for name in ops.names], dtype=bool)[:, None]
        compute = self.compute_cycles(ops)[:, None]

        bpw = bits_table(ops.k, formats)
        weight_bytes = ops.weight_elems[:, None] * bpw / 8.0
        fmap_bytes = (2.0 * ops.m * ops.n * p["act_bits"] / 8.0)[:, None]  # written once, read once
        nbytes = weight_bytes + fmap_bytes
        per_cycle = p["ddr_bytes_per_s"] * p["ddr_efficiency"] / p["clock_hz"]
        memory = np.ceil(nbytes / per_cycle)

        moved = self.move_bytes(ops)[:, None]
        move = np.ceil(moved / per_cycle)
        nbytes = nbytes + moved
        fpga = np.maximum(compute, memory) + move + p["layer_overhead_cycles"]
        macs = ops.macs[:, None]
        cpu = np.ceil(macs / p["cpu_macs_per_s"] * p["clock_hz"])  # CPU time in accelerator cycles
        cycles = np.where(on_cpu, cpu, fpga)
        bound = np.where(on_cpu, OTHER, np.where(compute >= memory, COMPUTE, MEMORY))
        latency = cycles / p["clock_hz"]
        energy = (p["static_power_w"] * latency + p["ddr_energy_j_per_byte"] * nbytes
                  + p["mac_energy_j"] * macs)
        shape = (L, F)
        return CostTable(
            cycles=cycles, latency_s=latency, energy_j=energy, bytes=np.broadcast_to(nbytes, shape).copy(),
            bound=np.broadcast_to(bound, shape).astype(np.int8), supported=np.ones(shape, bool),
            breakdown={"compute_cycles": np.broadcast_to(np.where(on_cpu, 0.0, compute), shape).astype(np.float64),
                       "memory_cycles": np.where(on_cpu, 0.0, memory),
                       "move_cycles": np.broadcast_to(np.where(on_cpu, 0.0, move), shape).astype(np.float64),
                       "cpu_cycles": np.broadcast_to(np.where(on_cpu, cpu, 0.0), shape).astype(np.float64)})
