"""CoDeNet's detection accelerator on an embedded FPGA (Ultra96, ZU3EG), as its HLS code runs.

Huang, Wang, Dong et al., "CoDeNet: Efficient Deployment of Input-Adaptive Object Detection
on Embedded FPGAs", FPGA'21; hardware in hqjenny/CoDeNet (hls/top/conv.h, deform.cpp) and
the board driver sw/codenet.ipynb. One accelerator call runs a 1x1 convolution and then a
3x3 depthwise (deformable) convolution as an HLS DATAFLOW region (either can be skipped);
the driver calls it once per (1x1[, 3x3]) pair, from Python through PYNQ.

Cycles per call, counted from the HLS loops (e = `loop_entry_cycles`, the fill and drain a
pipelined loop pays each time it is entered, because its outer loops are not pipelined):

- 1x1 (conv1x1_v4): per pixel, a read loop of ceil(K/16) then, for each of ceil(N/16)
  output groups, a MAC loop of ceil(K/16): pixels x (K16 + e + N16 x (K16 + e)); its
  weights are copied on chip first (K16 x N16 x 16 cycles).
- 3x3 (conv_3x3_linebuffer, the slower of its processes): per *input* pixel a read loop
  of ceil(C/16) into the 15-row line buffer and, per output pixel, a window loop of
  ceil(C/16); a strided layer reads all its input pixels. Deformable windows run the same
  loop with the offset read from a stream (`deform_cycle_factor` = 1 in that code).
- a 3x3 that follows its 1x1 in the same call overlaps it (dataflow): the pair takes the
  longer of the two, so the 3x3 adds max(0, t3 - t1).
- every call streams its input and output maps through DDR; the call takes
  max(compute, DDR) + `call_overhead_s` (PYNQ register writes and done polling).
- the first layer runs on the ARM at `cpu_macs_per_s` (`cpu_layers`).
- what the driver does in numpy on the ARM, serial to the engines: concat + channel
  shuffle of every ShuffleNet unit's two halves (`arm_shuffle_s_per_byte` x its output
  bytes, charged to the unit's `*.b2.5`) and the nearest x2 upsampling after each head
  block (`arm_upsample_s_per_byte` x the 4x map, charged to the block's last layer).
  `shuffle_copy_pass` / `upsample_pass` = 0 make them free (e.g. done in hardware).
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
    "deform_cycle_factor": Param(float, "deformable window cycles / regular depthwise window cycles", min=1.0),
    "loop_entry_cycles": Param(float, "cycles a pipelined HLS loop pays per entry beyond its trip count", min=0.0),
    "call_overhead_s": Param(float, "time per accelerator call outside the engines (driver, polling) (s)",
                             min=0.0),
    "max_calls_channels": Param(int, "output channels per call; wider 1x1 layers take several calls", min=1,
                                default=512),
    "act_bits": Param(int, "feature-map precision in DDR (bits)", min=1, max=32),
    "max_weight_bits": Param(float, "widest weight code the engines multiply", min=1, max=16),
    "weight_families": Param(list, "format families the engines support", default=["int", "ternary", "binary"]),
    "ddr_bytes_per_s": Param(float, "peak DDR bandwidth of the board (B/s)", min=1e6),
    "ddr_efficiency": Param(float, "achieved / peak DDR bandwidth", min=0.01, max=1.0),
    "cpu_layers": Param(list, "layer names that run on the ARM CPU", default=[]),
    "cpu_macs_per_s": Param(float, "ARM CPU MAC rate on those layers (MAC/s)", min=1e6),
    "arm_shuffle_s_per_byte": Param(float, "ARM time per output byte of a ShuffleNet concat + shuffle (s/B)",
                                    min=0.0),
    "arm_upsample_s_per_byte": Param(float, "ARM time per output byte of a nearest x2 upsampling (s/B)", min=0.0),
    "shuffle_copy_pass": Param(int, "1 = concat + shuffle on the ARM after each unit (as deployed); 0 = free",
                               min=0, max=1, default=1),
    "upsample_pass": Param(int, "1 = x2 upsampling on the ARM after each head block (as deployed); 0 = free",
                           min=0, max=1, default=1),
    "static_power_w": Param(float, "board power independent of activity (W)", min=0.0),
    "ddr_energy_j_per_byte": Param(float, "DDR access energy (J/byte)", min=0.0),
    "mac_energy_j": Param(float, "energy of one 4x8-bit MAC on the fabric (J)", min=0.0),
}


def _ceil_div(a, b):
    return -(-a // b)


class Model(HardwareModel):
    """Cycle-level cost of CoDeNet's two-engine accelerator; see the module docstring."""

    ENERGY_PARAMS = ("static_power_w", "ddr_energy_j_per_byte", "mac_energy_j")
    SCHEMA = SCHEMA
    DESCRIPTION = "cycle-level: CoDeNet 1x1 + 3x3 depthwise/deformable engines, DDR, first layer on ARM"
    #: where the energy figures come from (plans carry it as provenance.energy_basis)
    ENERGY_BASIS = "estimate: static board power x time + DDR pJ/byte + fabric MAC energy, none measured on the board"

    def supports(self, fmt) -> bool:
        p = self.spec.params
        return fmt.family in p["weight_families"] and fmt.weight_bits <= p["max_weight_bits"]

    def _layout(self, ops: Ops) -> dict:
        """Per-op arrays the cycle count needs: roles, the input pixels of a 3x3 (its
        predecessor's output pixels), whether it shares its 1x1's call, and CPU layers."""
        kinds = np.array(ops.kinds)
        roles = np.array(ops.roles if len(ops.roles) == len(ops) else ("",) * len(ops))
        names = list(ops.names)
        on_cpu = np.array([n in self.spec.params["cpu_layers"] for n in names], dtype=bool)
        deform = kinds == "deform-conv"
        depthwise = deform | (roles == "dwconv")
        prev = np.concatenate([[0], np.arange(len(ops) - 1)]) if len(ops) else np.zeros(0, np.int64)
        first = np.arange(len(ops)) == 0
        in_px = np.where(depthwise & ~first, np.maximum(ops.m[prev], ops.m), ops.m)
        fused = depthwise & ~first & ~depthwise[prev] & ~on_cpu[prev] & (ops.n[prev] == ops.n)
        return {"kinds": kinds, "deform": deform, "depthwise": depthwise, "prev": prev, "in_px": in_px,
                "fused": fused, "on_cpu": on_cpu, "names": names}

    def _alone_cycles(self, ops: Ops, lay: dict) -> np.ndarray:
        """[L] engine cycles of each op as if it ran alone (module docstring)."""
        p = self.spec.params
        e = p["loop_entry_cycles"]
        m, k, n = (x.astype(np.int64) for x in (ops.m, ops.k, ops.n))
        k16, n16 = _ceil_div(k, p["pw_in"]), _ceil_div(n, p["pw_out"])
        pw = m * (k16 + e + n16 * (k16 + e)) + k16 * n16 * p["pw_in"]
        c16 = _ceil_div(n, p["dw_channels"]) * _ceil_div(k, p["dw_taps"])
        window = np.where(lay["deform"], p["deform_cycle_factor"], 1.0) * m * (c16 + e)
        dw = lay["in_px"] * (c16 + e) + window
        cycles = np.where(lay["depthwise"], dw, pw).astype(np.float64)
        return np.where((lay["kinds"] == "embedding") | lay["on_cpu"], 0.0, np.ceil(cycles))

    def compute_cycles(self, ops: Ops, lay: dict | None = None) -> np.ndarray:
        """[L] engine cycles; a 3x3 in its 1x1's call adds only what the pair's overlap leaves.
        lay: `_layout(ops)` where the caller has it."""
        lay = self._layout(ops) if lay is None else lay
        alone = self._alone_cycles(ops, lay)
        return np.where(lay["fused"], np.maximum(0.0, alone - alone[lay["prev"]]), alone)

    def calls(self, ops: Ops, lay: dict | None = None) -> np.ndarray:
        """[L] accelerator calls per op: 0 for a 3x3 sharing its 1x1's call and for CPU layers.
        lay: `_layout(ops)` where the caller has it."""
        lay = self._layout(ops) if lay is None else lay
        per = np.where(lay["depthwise"], 1, _ceil_div(ops.n.astype(np.int64), self.spec.params["max_calls_channels"]))
        return np.where(lay["fused"] | lay["on_cpu"] | (lay["kinds"] == "embedding"), 0, per)

    def arm_seconds(self, ops: Ops) -> np.ndarray:
        """[L] ARM numpy time after each op (concat + shuffle, x2 upsampling), module docstring."""
        p = self.spec.params
        names = list(ops.names)
        act = p["act_bits"] / 8.0
        unit_end = np.array([n.endswith(".b2.5") for n in names])
        blocks = {}
        for i, n in enumerate(names):
            if n.startswith("deconv_layers."):
                blocks[n.split(".")[1]] = i  # last op of each head block
        block_end = np.zeros(len(ops), bool)
        block_end[list(blocks.values())] = True
        shuffle = p["shuffle_copy_pass"] * p["arm_shuffle_s_per_byte"] * np.where(unit_end, 2.0 * ops.m * ops.n * act, 0)
        upsample = p["upsample_pass"] * p["arm_upsample_s_per_byte"] * np.where(block_end, 4.0 * ops.m * ops.n * act, 0)
        return shuffle + upsample

    def _cost(self, ops: Ops, formats: list, workload: Workload) -> CostTable:
        p = self.spec.params
        L, F = len(ops), len(formats)
        lay = self._layout(ops)
        on_cpu = lay["on_cpu"][:, None]
        compute = self.compute_cycles(ops, lay)[:, None]

        bpw = bits_table(ops.k, formats)
        weight_bytes = ops.weight_elems[:, None] * bpw / 8.0
        # each call reads its input map and writes its output map; a fused 3x3's input stays on chip
        act = p["act_bits"] / 8.0
        in_channels = np.where(lay["depthwise"], ops.n, ops.k)
        fmap_bytes = (np.where(lay["fused"], 0.0, lay["in_px"] * in_channels) + ops.m * ops.n)[:, None] * act
        nbytes = weight_bytes + fmap_bytes
        per_cycle = p["ddr_bytes_per_s"] * p["ddr_efficiency"] / p["clock_hz"]
        memory = np.ceil(nbytes / per_cycle)
        overhead = np.ceil(self.calls(ops, lay) * p["call_overhead_s"] * p["clock_hz"])[:, None]
        arm = np.ceil(self.arm_seconds(ops) * p["clock_hz"])[:, None]
        fpga = np.maximum(compute, memory) + overhead + arm
        macs = ops.macs[:, None]
        cpu = np.ceil(macs / p["cpu_macs_per_s"] * p["clock_hz"])  # CPU time in accelerator cycles
        cycles = np.where(on_cpu, cpu, fpga)
        bound = np.where(on_cpu, OTHER, np.where(compute >= memory, COMPUTE, MEMORY))
        latency = cycles / p["clock_hz"]
        energy = (p["static_power_w"] * latency + p["ddr_energy_j_per_byte"] * nbytes
                  + p["mac_energy_j"] * macs)
        shape = (L, F)

        def full(x):
            return np.broadcast_to(np.where(on_cpu, 0.0, x), shape).astype(np.float64)

        return CostTable(
            cycles=cycles, latency_s=latency, energy_j=energy, bytes=np.broadcast_to(nbytes, shape).copy(),
            bound=np.broadcast_to(bound, shape).astype(np.int8), supported=np.ones(shape, bool),
            breakdown={"compute_cycles": full(compute), "memory_cycles": full(memory),
                       "call_cycles": full(overhead), "arm_cycles": full(arm),
                       "cpu_cycles": np.broadcast_to(np.where(on_cpu, cpu, 0.0), shape).astype(np.float64)})
