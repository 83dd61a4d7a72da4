"""The search pipeline as typed steps: ingest -> sensitivity -> problem -> solve -> plan.

`prepare()` does the expensive part once (model, hardware tables, sensitivity);
`Prepared.problem(limits)` then builds a Problem for any budget in microseconds,
which is what Pareto sweeps reuse.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dse.budget import limit_from_flag, parse_budget
from dse.device import bits_memory_bound, device_memory_limit, infeasible_hint, max_weight_bytes, runnable
from quantcore.errors import QuantDSEError
from dse.problem import Problem
from dse.sensitivity import SOURCES, Sensitivity, compute_sensitivity, file_formats, read_sensitivity_file
from hwmodels.interface import CostTable
from hwmodels.memory import free_memory
from hwmodels.ops import bits_table, ops_for_graph
from hwmodels.registry import load_model as load_hardware
from hwmodels.wholemodel import fixed_costs
from hwmodels.workload import Workload


@dataclass(frozen=True)
class SearchRequest:
    """Everything `dse.search` takes from its command line."""

    hw: str
    model: object = None  # catalog name, path, or nn.Module; None = the built-in default
    budget: str | None = None
    method: str = "ilp"
    sensitivity: str | None = None  # None: weights when the model has them, else prior
    calib: str | None = None  # calibration texts for hessian/fisher/output (None: the shipped set)
    workload: Workload = field(default_factory=Workload.unset)  # None fields: the model kind decides
    formats: tuple | None = None
    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    max_memory_gb: float | None = None
    overrides: tuple = ()
    seed: int = 0
    policy: str | None = None  # --method rl: a policy folder or zoo name (None: the shipped default)
    solver_options: tuple = ()  # KEY=VALUE strings for the solver (--set keys the hardware does not define)
    reward: str = "error"  # --method rl: "measured" fine-tunes the policy on the real model's end metric
    include: tuple = ()  # "embeddings": search the token embedding too
    target: str | None = None  # --for: a deployment target (dse.export.targets): formats, runtime, tied layers

    def limits(self) -> tuple[dict, dict]:
        """(limits in SI by kind, the budget as written {"kind", "value", "text"}).

        Without --budget, the first --max-* flag given is the budget the plan reports.
        Also validates the method name, before any expensive work.
        """
        from dse.solvers import check_method

        check_method(self.method)
        limits: dict = {}
        budget_doc: dict = {}
        if self.budget is not None:
            kind, si, value = parse_budget(self.budget)
            limits[kind] = si
            budget_doc = {"kind": kind, "value": value, "text": str(self.budget).strip()}
        for flag, value, factor, kind, unit in (("--max-latency-ms", self.max_latency_ms, 1e-3, "latency", "ms"),
                                                ("--max-energy-mj", self.max_energy_mj, 1e-3, "energy", "mJ"),
                                                ("--max-memory-gb", self.max_memory_gb, 1e9, "memory", "GB")):
            si = limit_from_flag(flag, value, factor, kind, f" {unit}")
            if si is not None:
                limits[kind] = min(si, limits.get(kind, np.inf))
                if not budget_doc:
                    budget_doc = {"kind": kind, "value": float(value), "text": f"{value:g}{unit}"}
        if not limits:
            raise QuantDSEError("no budget given: pass --budget (e.g. 3.7bits, 3.5GB, 12ms, 5mJ) "
                                "or one of --max-latency-ms / --max-energy-mj / --max-memory-gb")
        return limits, budget_doc


@dataclass
class Prepared:
    """Model, hardware and tables ready for solving: everything but the limits."""

    request: SearchRequest
    graph: object
    layers: list
    formats: list
    hardware: object
    sensitivity: Sensitivity
    costs: CostTable
    bits: np.ndarray
    fixed_memory: float
    fixed_latency_s: float
    fixed_energy_j: float
    workload: Workload  # the workload costed (request.workload completed for the model kind)
    dropped: tuple = ()  # candidate formats the target cannot run
    free_memory: object = None  # hwmodels.memory.FreeMemory, or None where the spec models no memory
    largest_memory: float = 0.0  # bytes of the weights with every layer at its largest candidate
    notes: list = field(default_factory=list)  # what the user is told on stderr and in the plan
    ties: list = field(default_factory=list)  # [[row indices]] that take one format (--for: fused layers)

    def device_limit(self, limits: dict) -> float | None:
        """The device's free memory as a limit in bytes, where the weights under `limits` could exceed it."""
        bound = bits_memory_bound(limits, self.largest_memory, float(sum(l.params for l in self.layers)),
                                  self.fixed_memory)
        return device_memory_limit(self.hardware, self.free_memory, bound)

    def problem(self, limits: dict) -> Problem:
        mask = self.costs.supported & np.isfinite(self.sensitivity.errors)
        limits, sources = dict(limits), {}
        device = self.device_limit(limits)
        if device is not None:
            limits["memory"], sources["memory"] = device, "device"
        return Problem(
            layer_names=[l.name for l in self.layers], format_names=[f.name for f in self.formats],
            error=np.nan_to_num(self.sensitivity.errors, nan=np.inf), params=np.array([l.params for l in self.layers]),
            bits=self.bits, latency_s=self.costs.latency_s, energy_j=self.costs.energy_j, mask=mask,
            limits=dict(limits), fixed_memory=self.fixed_memory, fixed_latency_s=self.fixed_latency_s,
            fixed_energy_j=self.fixed_energy_j, sources=sources)


def _candidate_formats(request: SearchRequest, layers, graph) -> tuple[list, tuple | None]:
    """(the candidate formats, what read_sensitivity_file returned where they come from a sensitivity file)."""
    from quantcore.formats import DEFAULT_SEARCH_FORMATS, get_format, parse_format_list

    if request.formats:
        return parse_format_list(",".join(request.formats)), None
    sens = request.sensitivity
    if sens is not None and sens not in SOURCES and not sens.startswith("imatrix:"):
        file = read_sensitivity_file(sens, layers, [l.name for l in graph.layers])
        return [get_format(name) for name in file_formats(file[0])], file
    return [get_format(name) for name in DEFAULT_SEARCH_FORMATS], None


def prepare(request: SearchRequest) -> Prepared:
    """Load the model and hardware, cost every (layer, format), compute sensitivity.

    Formats the target cannot run are dropped (with a note) before sensitivity is
    computed; the device's free memory becomes a limit where the weights could exceed it.
    """
    from quantcore.models import DEFAULT_MODEL, load_graph
    from quantcore.models.graph import include_layers

    request = for_target(request)
    hardware = load_hardware(request.hw, list(request.overrides))
    graph = include_layers(load_graph(request.model if request.model is not None else DEFAULT_MODEL), request.include)
    layers = graph.quantizable()
    if not layers:
        raise QuantDSEError(f"model {graph.name} has no quantizable layers (linear/conv): check --model")
    notes = list(getattr(graph, "notes", ()))
    workload_notes: list = []  # what of the workload does not apply; noted after the dropped formats
    workload = request.workload.for_model(graph, workload_notes)
    formats, file = _candidate_formats(request, layers, graph)
    ops = ops_for_graph(graph, workload, layers)
    costs = hardware.cost(ops, formats, workload)
    keep, dropped, note = runnable(formats, costs, hardware, lambda fmts: hardware.cost(ops, fmts, workload))
    if note:
        notes.append(note)
        formats, costs = [formats[j] for j in keep], costs.take(keep)
    source = request.sensitivity or ("weights" if graph.weights is not None else "prior")
    sensitivity = compute_sensitivity(graph, layers, formats, source, model=request.model, calib=request.calib,
                                      seed=request.seed, file=file)
    prepared = _costed(request, hardware, graph, layers, formats, sensitivity, workload=workload, costs=costs,
                       dropped=dropped, notes=notes + workload_notes)
    if request.target:
        from dse.export.targets import get_target, tied_groups

        prepared.ties = tied_groups([l.name for l in layers], get_target(request.target).fuse)
    return prepared


def for_target(request: SearchRequest) -> SearchRequest:
    """The request with its deployment target's formats and runtime filled in (`--for`)."""
    if not request.target:
        return request
    import dataclasses

    from dse.export.targets import get_target, target_formats
    from hwmodels.registry import load_model

    target = get_target(request.target)
    supported = target_formats(target)
    formats = supported
    if request.formats:
        from quantcore.formats import get_format

        names = [get_format(f).name for f in request.formats]
        bad = [n for n in names if n not in supported]
        if bad:
            raise QuantDSEError(f"--for {target.name} cannot deploy {', '.join(bad)}: drop them from --formats "
                                f"(it deploys {', '.join(supported)})")
        formats = tuple(names)
    overrides = tuple(request.overrides)
    set_runtime = [o for o in overrides if o.split("=", 1)[0].strip() == "runtime"]
    if set_runtime and set_runtime[-1].split("=", 1)[1].strip() != target.runtime:
        raise QuantDSEError(f"--for {target.name} runs on the {target.runtime} runtime, not "
                            f"{set_runtime[-1].split('=', 1)[1].strip()}: drop --set runtime=... or pick another --for")
    if not set_runtime and hasattr(load_model(request.hw, list(overrides)), "runtime"):  # GPU families
        overrides += (f"runtime={target.runtime}",)
    return dataclasses.replace(request, formats=formats, overrides=overrides)


def with_hardware(prepared: Prepared, request: SearchRequest) -> Prepared:
    """`prepare(request)` for the same model, formats and sensitivity as `prepared`, reusing them.

    Only the hardware tables are recomputed (target, `--set` overrides, workload), so a
    co-design sweep computes a model's graph and sensitivity once, not per design point.
    """
    return _costed(request, load_hardware(request.hw, list(request.overrides)), prepared.graph, prepared.layers,
                   prepared.formats, prepared.sensitivity, notes=list(getattr(prepared.graph, "notes", ())))


def _costed(request: SearchRequest, hardware, graph, layers, formats, sensitivity, workload=None, costs=None,
            dropped=(), notes=None) -> Prepared:
    """workload: request.workload completed for the model (None: completed here, its notes added to `notes`)."""
    notes = list(notes or [])
    if workload is None:
        workload = request.workload.for_model(graph, notes)
    if costs is None:
        costs = hardware.cost(ops_for_graph(graph, workload, layers), formats, workload)
    bits = bits_table(np.array([l.row for l in layers], dtype=np.int64), formats)
    emb, att = fixed_costs(hardware, graph, workload)
    fixed_params = sum(l.params for l in graph.layers if not l.quantizable)  # embeddings, routers: 16-bit
    fixed_memory = 2.0 * (fixed_params + graph.extra_params)
    fixed_latency = sum(float(t.latency_s.sum()) for t in (emb, att) if t is not None)
    fixed_energy = sum(float(t.energy_j.sum()) for t in (emb, att) if t is not None)
    params = np.array([l.params for l in layers], dtype=np.float64)
    largest = max_weight_bytes(bits, params, costs.supported & np.isfinite(sensitivity.errors), fixed_memory)
    prepared = Prepared(request, graph, layers, formats, hardware, sensitivity, costs, bits,
                        fixed_memory=fixed_memory, fixed_latency_s=fixed_latency, fixed_energy_j=fixed_energy,
                        workload=workload, dropped=dropped, free_memory=free_memory(hardware.spec, graph, workload),
                        largest_memory=largest, notes=list(notes or []))
    check_costs(prepared)
    return prepared


def check_costs(prepared: Prepared) -> None:
    """Every predicted cost must be finite and non-negative: no input may buy a plan with
    negative or infinite latency, energy or memory (a defence behind the input checks)."""
    ok = prepared.costs.supported
    tables = {"latency": prepared.costs.latency_s[ok], "energy": prepared.costs.energy_j[ok],
              "bits": prepared.bits[ok],
              "fixed": np.array([prepared.fixed_memory, prepared.fixed_latency_s, prepared.fixed_energy_j])}
    bad = [name for name, values in tables.items() if not (np.isfinite(values).all() and (values >= 0).all())]
    if bad:
        raise QuantDSEError(f"predicted {', '.join(bad)} of {prepared.graph.name} on {prepared.hardware.name} "
                            "are not finite and non-negative: check the model's config values and --set overrides")


def solver_options(prepared: Prepared, method: str) -> dict:
    """Extra options for solvers that take them: the RL agent reads the layers, weights and its policy."""
    bare = [kv for kv in prepared.request.solver_options if "=" not in kv]
    if bare:
        raise QuantDSEError(f"--set {bare[0].strip()} has no value: write KEY=VALUE, e.g. --set polish=false")
    opts = {k.strip(): v.strip() for k, v in (kv.split("=", 1) for kv in prepared.request.solver_options)}
    if method != "rl":
        if opts and prepared.request.method != "rl":
            raise QuantDSEError(f"--set {', '.join(opts)} applies to --method rl only: drop it or use --method rl")
        return {}
    return {"layers": prepared.layers, "weights": prepared.graph.weights, "policy": prepared.request.policy, **opts}


def solve_prepared(prepared: Prepared, limits: dict, method: str | None = None, seed: int | None = None,
                   **options):
    """(problem, result) for one set of limits; infeasibility is a one-line QuantDSEError.

    options: passed to the solver (e.g. `progress`, a callback solvers that report progress call).
    """
    from dse.solvers import solve

    from dse.problem import tie

    problem = prepared.problem(limits)
    solved, rows = tie(problem, prepared.ties)  # fused layers: one decision each
    message = solved.infeasible_message(lambda kinds: infeasible_hint(prepared, solved, kinds))
    if message:
        raise QuantDSEError(message)
    method = method or prepared.request.method
    result = solve(solved, method=method, seed=prepared.request.seed if seed is None else seed,
                   **solver_options(prepared, method), **options)
    if not result.success:
        raise QuantDSEError(f"{method} found no plan: {result.message or result.status}")
    result.assignment = np.asarray(result.assignment)[rows]
    broken = problem.violations(result.assignment)
    if broken:  # a solver bug, not bad input: keep the traceback
        raise AssertionError(f"{method} returned an over-budget plan: {broken}")
    totals = problem.totals(result.assignment)
    if not all(np.isfinite(v) and v >= 0 for v in totals.values()):  # check_costs makes this a bug
        raise AssertionError(f"{method} returned a plan with totals {totals}")
    return problem, result
