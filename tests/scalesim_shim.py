"""Run the installed SCALE-Sim v3 (`scalesim` 3.0.0) on one GEMM, for peer tests and the benchmark.

SCALE-Sim 3.0.0 predates numpy 2: `double_buffered_scratchpad.service_memory_requests` ends
with ``int(max(ofmap_serviced_cycles))`` over 1-element arrays, which numpy 2 refuses. The
shim makes `write_buffer.service_writes` return a flat array (so each serviced cycle is a
scalar) while SCALE-Sim runs, and restores it afterwards. Nothing else is changed.

SCALE-Sim writes its reports into a folder: give it a temporary directory.
"""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path

CONFIG = """[general]
run_name = run

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {sram_kb}
FilterSramSzkB: {sram_kb}
OfmapSramSzkB: {sram_kb}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks: 1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


@contextlib.contextmanager
def numpy2_compat():
    """Flatten write_buffer.service_writes' (n, 1) result while SCALE-Sim runs (numpy 2)."""
    from scalesim.memory import write_buffer as wb

    original = wb.write_buffer.service_writes

    def service_writes(self, incoming_requests_arr_np, incoming_cycles_arr_np):
        return original(self, incoming_requests_arr_np, incoming_cycles_arr_np).reshape(-1)

    wb.write_buffer.service_writes = service_writes
    try:
        yield
    finally:
        wb.write_buffer.service_writes = original


def run_gemm(m: int, k: int, n: int, rows: int, cols: int, dataflow: str, workdir: Path,
             sram_kb: int = 1024) -> dict:
    """SCALE-Sim's COMPUTE_REPORT row for the GEMM M x K x N (topology row ``M, N, K``).

    Returns {"total_cycles", "stall_cycles", "total_cycles_incl_prefetch", "demand_cycles"};
    demand_cycles is the number of rows of SCALE-Sim's ofmap demand matrix (one per cycle),
    the cycle count its memory system steps through. Large SRAMs and
    CALC (estimated) bandwidth keep stalls at zero so the compute model is what is compared.
    """
    from scalesim.scale_sim import scalesim

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "run.cfg"
    cfg.write_text(CONFIG.format(rows=rows, cols=cols, dataflow=dataflow, sram_kb=sram_kb))
    topo = workdir / "gemm.csv"
    topo.write_text(f"Layer, M, N, K,\ng0, {m}, {n}, {k},\n")
    layout = workdir / "layout.csv"   # required by the reader, unused without custom layouts
    layout.write_text("Layer, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                      f"Stride Height, Stride Width,\ng0, {m}, {k}, 1, {k}, 1, {n}, 1, 1,\n")
    with numpy2_compat():
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                       layout=str(layout), input_type_gemm=True)
        sim.run_scale(top_path=str(workdir / "out"))
    layer = sim.runner.single_layer_sim_object_list[0]
    demand_cycles = int(layer.compute_system.get_ofmap_demand_mat().shape[0])
    with open(workdir / "out" / "run" / "COMPUTE_REPORT.csv", newline="") as fh:
        rows_ = [[c.strip() for c in r] for r in csv.reader(fh)]
    header, values = rows_[0], rows_[1]
    row = dict(zip(header, values))
    return {"total_cycles": int(row["Total Cycles"]), "stall_cycles": int(row["Stall Cycles"]),
            "total_cycles_incl_prefetch": int(row["Total Cycles (incl. prefetch)"]),
            "demand_cycles": demand_cycles}
