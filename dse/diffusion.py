"""Text-to-image plans: the candidate formats, the per-stage costs and the per-image figures.

A diffusion pipeline's plan costs one image (`hwmodels.diffusion_ops`): the denoiser over all
its steps, the text encoders and the VAE decoder once. The plan's `pipeline` section splits
the totals by stage and states seconds and joules per image and images per second.
"""
from __future__ import annotations

#: candidates when --formats is not given: SVDQuant's W4A4 with its rank-32 16-bit branch (its
#: default rank, Li et al. 2024 Sec. 5.1) and without, in int4 (before Blackwell) and NVFP4
#: (Blackwell; a target runs the ones it has tensor cores for), weight-only 4/8-bit (W4A16 as
#: AWQ/NF4 baselines), W8A8, fp8 and 16-bit
DIFFUSION_SEARCH_FORMATS = ("int4-g64-r32-a4", "int4-g64-a4", "nvfp4-r32-a4", "nvfp4-a4", "int4-g64", "int4-g128",
                            "nf4", "int8-a8", "int8", "fp8-e4m3-a8", "fp16")
STAGE_LABELS = {"transformer": "transformer", "unet": "UNet", "text_encoder": "text encoder",
                "text_encoder_2": "text encoder 2",
                "vae": "VAE decoder"}


def is_pipeline(graph) -> bool:
    return graph.config.get("arch") == "diffusion"


def pipeline_doc(prepared, layers: list[dict]) -> dict:
    """The plan's `pipeline` section: per stage searched + fixed costs, and the per-image totals."""
    from hwmodels.diffusion_ops import stage_of as _stage
    from hwmodels.ops import fixed_ops_for_graph
    from hwmodels.wholemodel import fixed_costs

    graph, w = prepared.graph, prepared.workload
    emb, att = fixed_costs(prepared.hardware, graph, w)
    fixed: dict = {}
    emb_ops, att_ops = fixed_ops_for_graph(graph, w)
    for table, ops in ((emb, emb_ops), (att, att_ops)):
        if table is None:
            continue
        for i, name in enumerate(ops.names):
            f = fixed.setdefault(_stage(name), {"latency_s": 0.0, "energy_j": 0.0})
            f["latency_s"] += float(table.latency_s[i, 0])
            f["energy_j"] += float(table.energy_j[i, 0])
    fixed_params: dict = {}
    for l in graph.layers:
        if not l.quantizable and l.params:
            fixed_params[_stage(l.name)] = fixed_params.get(_stage(l.name), 0) + l.params
    stages = []
    for stage in graph.config.get("stages", []):
        mine = [l for l in layers if _stage(l["name"]) == stage]
        params = sum(l["params"] for l in mine)
        fx = fixed.get(stage, {"latency_s": 0.0, "energy_j": 0.0})
        formats: dict = {}
        for l in mine:
            formats[l["format"]] = formats.get(l["format"], 0) + l["params"]
        stages.append({
            "stage": stage, "layers": len(mine), "params": int(params),
            "bits": float(sum(l["bits"] * l["params"] for l in mine) / params) if params else 0.0,
            "format": max(formats, key=formats.get) if formats else "",
            "memory_bytes": float(sum(l["memory_bytes"] for l in mine) + 2.0 * fixed_params.get(stage, 0)),
            "latency_s": float(sum(l["latency_s"] for l in mine) + fx["latency_s"]),
            "energy_j": float(sum(l["energy_j"] for l in mine) + fx["energy_j"]),
            "runs": "per step" if stage == graph.config.get("denoiser", "transformer") else "once"})
    return {"steps": w.steps, "cfg": w.cfg, "resolution": list(w.image_hw), "batch": w.batch, "stages": stages}


def per_image(plan: dict) -> dict:
    """Seconds and joules per image and images per second, from the plan's totals (one batch)."""
    t, batch = plan["totals"], plan["pipeline"]["batch"]
    return {"seconds_per_image": t["latency_s"] / batch, "joules_per_image": t["energy_j"] / batch,
            "images_per_s": batch / t["latency_s"] if t["latency_s"] > 0 else float("inf")}


def stage_lines(plan: dict) -> list[str]:
    """One line per stage (its majority format, bits, memory, time and energy per image)."""
    from dse.texttable import table as _table

    rows = [["stage", "layers", "params", "format (majority)", "bits", "memory", "s/image", "J/image", "runs"]]
    batch = plan["pipeline"]["batch"]
    for s in plan["pipeline"]["stages"]:
        rows.append([STAGE_LABELS.get(s["stage"], s["stage"]), str(s["layers"]), f"{s['params'] / 1e9:.2f} B",
                     s["format"], f"{s['bits']:.3f}", f"{s['memory_bytes'] / 1e9:.2f} GB",
                     f"{s['latency_s'] / batch:.3f}", f"{s['energy_j'] / batch:.1f}", s["runs"]])
    return _table(rows)


def image_line(plan: dict) -> str:
    f = per_image(plan)
    return (f"  per image    {f['seconds_per_image']:.2f} s   {f['joules_per_image']:.0f} J   "
            f"{f['images_per_s']:.3f} images/s (attention and 16-bit parts included)")
