"""The Python API: `search` a model on a hardware target under a budget, get a `Plan`.

    from dse import search, Budget, Plan

    plan = search(model="resnet-50", hw="systolic", budget=Budget.bits(4), overrides={"rows": 32})
    plan.totals["latency_s"], plan.layers[0].format
    plan.save("plan.json")

Every argument is a typed value (a `Budget`, dicts for hardware overrides and solver options, a
`Workload`); an invalid one raises `QuantDSEError` naming the parameter. Command-line text
(``3.7bits``, ``--set rows=32``) is read only by the CLI modules (`dse.search`, `dse.pareto`,
`experiments.sweep`), which build the same `SearchRequest` and call `run`.
"""
from __future__ import annotations

from typing import Mapping

from quantcore.errors import QuantDSEError
from dse.budget import Budget
from dse.pipeline import SearchRequest, prepare, solve_prepared
from dse.plan import Plan, make_plan
from hwmodels.workload import Workload


def run(request: SearchRequest, progress: bool = False) -> dict:
    """Run the whole pipeline for a request and return the plan document (a dict, as written to file).

    :param progress: a bar on stderr while the solver works, for solvers that report it (nas), when
        stderr is a terminal.
    """
    from dse.progress import solver_progress

    limits, budget_doc = request.limits()
    prepared = prepare(request)
    with solver_progress(request.method, enabled=progress) as callback:
        problem, result = solve_prepared(prepared, limits, **({"progress": callback} if callback else {}))
    return make_plan(prepared, problem, result, budget_doc)


def search(model: object, hw: object, budget: Budget | None = None, *,
           overrides: Mapping[str, object] | None = None, workload: Workload | None = None, method: str = "ilp",
           formats: tuple | list | None = None, sensitivity: str | None = None, calib: str | None = None,
           max_latency_ms: float | None = None, max_energy_mj: float | None = None,
           max_memory_gb: float | None = None, max_ttft_ms: float | None = None, max_tpot_ms: float | None = None,
           options: Mapping[str, object] | None = None, seed: int = 0, policy: str | None = None,
           include: tuple = (), activations: tuple | list | None = None,
           kv_formats: tuple | list | None = None) -> Plan:
    """Pick a number format per layer of `model` for target `hw` under `budget`; return the `Plan`.

    :param model: a catalog name (``python -m dse.models --list``), a config.json or safetensors path,
        or a torch ``nn.Module``; None: the built-in default (llama-2-7b).
    :param hw: a target name (``python -m hwmodels.list``), a spec .toml path, or a `HardwareSpec`.
    :param budget: ``Budget.bits(3.7)`` (average effective bits per weight), ``Budget.gb(3.5)``,
        ``Budget.ms(12)``, ``Budget.mj(5)`` or ``Budget.tokens_per_s(2000)`` (a minimum throughput);
        may be None when a ``max_*`` limit is given.
    :param overrides: hardware spec params for a co-design point, e.g. ``{"rows": 32, "dataflow": "os"}``.
    :param workload: ``Workload(phase="decode", batch=1, seq=2048)``, a whole request
        ``Workload(phase="generate", seq=512, output_len=128)``, on ``devices=2, parallel="tp"``;
        None: the model kind decides.
    :param method: a solver name: ilp, lagrangian, baq, nas, greedy, uniform, or a plugin's (rl).
    :param formats: candidate format names; None: the default candidates.
    :param sensitivity: weights, prior, hessian, fisher, output or a .json table; None: weights
        when the model has them, else prior.
    :param calib: calibration texts for hessian / fisher / output (None: the shipped set).
    :param max_latency_ms: a further latency limit (every limit holds).
    :param max_energy_mj: a further energy limit.
    :param max_memory_gb: a further weight-memory limit.
    :param max_ttft_ms: a time-to-first-token SLO (a prefill or a whole request, ``phase="generate"``).
    :param max_tpot_ms: a time-per-output-token SLO (a decode step or a whole request).
    :param options: the solver's options, e.g. ``{"time_limit": 10.0}`` for ilp
        (``dse.solvers.options(method)`` lists them).
    :param seed: seed of every random choice.
    :param policy: ``method="rl"``: a policy folder or zoo name.
    :param include: ``("embeddings",)`` to search the token embedding too.
    :param activations: activation suffixes the search chooses among per layer, ``("", "-a8", "-a4")``
        (`dse.precision.parse_activations("16,8,4")` reads the CLI's text); None: as the formats name them.
    :param kv_formats: KV-cache formats searched per K and V tensor, ``("fp16", "int8", "int4-g64")``;
        None: the cache is fixed at the workload's kv_bits.
    :raises QuantDSEError: bad input (naming the parameter) or no plan within the limits.
    """
    if budget is not None and not isinstance(budget, Budget):
        raise QuantDSEError(f"must be a Budget (Budget.bits(3.7), Budget.gb(3.5), Budget.ms(12), Budget.mj(5)), "
                            f"got {budget!r}", param="budget")
    if workload is not None and not isinstance(workload, Workload):
        raise QuantDSEError(f"must be a hwmodels.workload.Workload, got {workload!r}", param="workload")
    request = SearchRequest(
        hw=hw, model=model, budget=budget, method=method, sensitivity=sensitivity, calib=calib,
        workload=workload if workload is not None else Workload.unset(),
        formats=tuple(formats) if formats is not None else None, max_latency_ms=max_latency_ms,
        max_energy_mj=max_energy_mj, max_memory_gb=max_memory_gb, max_ttft_ms=max_ttft_ms, max_tpot_ms=max_tpot_ms,
        seed=seed, policy=policy,
        overrides=overrides if overrides is not None else {}, solver_options=options if options is not None else {},
        include=tuple(include), activations=tuple(activations) if activations is not None else None,
        kv_formats=tuple(kv_formats) if kv_formats is not None else None)
    return Plan.from_dict(run(request))


def export(plan: Plan | dict, to: str, out: str | None = None, nearest: bool = False) -> str:
    """The file quantizer `to` reads for `plan` (what ``python -m dse.export`` writes), as text.

    :param plan: a `Plan` (or its JSON document).
    :param to: an export target: llamacpp, gptqmodel, llmcompressor, compressed-tensors, autoround, modelopt.
    :param out: also write it here, atomically.
    :param nearest: map a format the target cannot write to its nearest one (else that is an error).
    """
    from quantcore.formats import get_format
    from quantcore.io import atomic_write_text, dumps
    from dse.export import target_module
    from dse.export.base import resolve

    doc = plan.to_dict() if isinstance(plan, Plan) else Plan.from_dict(plan).to_dict()
    module = target_module(to)
    resolved = resolve(doc, f"of {doc['model']}", module.NAME, [get_format(f) for f in module.FORMATS], nearest,
                       embeddings=getattr(module, "EMBEDDINGS", False))
    content, _ = module.write(resolved)
    text = content if isinstance(content, str) else dumps(content)
    if out is not None:
        atomic_write_text(out, text)
    return text
