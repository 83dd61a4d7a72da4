"""The search pipeline as typed steps: ingest -> sensitivity -> problem -> solve -> plan.

`prepare()` does the expensive part once (model, hardware tables, sensitivity);
`Prepared.problem(limits)` then builds a Problem for any budget in microseconds,
which is what Pareto sweeps reuse.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

import numpy as np

from dse.budget import MAX_SI, UNITS, Budget
from dse.device import bits_memory_bound, device_memory_limit, infeasible_hint, max_weight_bytes, runnable
from quantcore.errors import QuantDSEError
from dse.problem import Problem
from dse.sensitivity import SENSITIVITY_SOURCES, Sensitivity, compute_sensitivity, file_formats, read_sensitivity_file
from hwmodels.interface import CostTable
from hwmodels.memory import free_memory
from hwmodels.ops import bits_table, ops_for_graph
from hwmodels.registry import load_model as load_hardware
from hwmodels.spec import load_spec
from hwmodels.wholemodel import serving_tables
from hwmodels.workload import Workload


@dataclass(frozen=True)
class SearchRequest:
    """One search, as typed values: what `dse.search` (the function and the command) runs.

    :param hw: a target name (``python -m hwmodels.list``), a spec .toml path, or a `HardwareSpec`.
    :param model: a catalog name, a config.json / safetensors path, or an nn.Module; None: the built-in default.
    :param budget: the limit the plan reports (`Budget.bits(3.7)`, ...); None: the first max_* given.
    :param method: a registered solver (``dse.solvers.SOLVERS``).
    :param sensitivity: weights, prior, hessian, fisher, output or a .json path; None: weights when the
        model has them, else prior.
    :param calib: calibration texts for hessian / fisher / output (None: the shipped set).
    :param workload: phase, batch, sequence; None fields: the model kind decides.
    :param formats: candidate format names; None: the default candidates.
    :param max_latency_ms: a further latency limit (every limit holds).
    :param max_energy_mj: a further energy limit.
    :param max_memory_gb: a further weight-memory limit.
    :param max_ttft_ms: a time-to-first-token SLO (--phase prefill or generate).
    :param max_tpot_ms: a time-per-output-token SLO (--phase decode or generate).
    :param overrides: hardware spec params, ``{"rows": 32}``; checked against the family's schema.
    :param seed: seed of every random choice.
    :param policy: ``method="rl"``: a policy folder or zoo name (None: the shipped default).
    :param solver_options: options the method declares, ``{"time_limit": 10.0}``; an unknown one is an error.
    :param include: ``("embeddings",)``: search the token embedding too.
    :param activations: activation suffixes each weight candidate is expanded into (``("", "-a8", "-a4")``,
        dse.precision.parse_activations); None: the candidates as named.
    :param kv_formats: KV-cache candidates searched per K and V tensor (dse.kvcache); None: the cache is fixed
        at the workload's kv_bits.
    """

    hw: object
    model: object = None
    budget: Budget | None = None
    method: str = "ilp"
    sensitivity: str | None = None
    calib: str | None = None
    workload: Workload = field(default_factory=Workload.unset)
    formats: tuple | None = None
    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    max_memory_gb: float | None = None
    max_ttft_ms: float | None = None
    max_tpot_ms: float | None = None
    overrides: Mapping[str, object] = field(default_factory=dict)
    seed: int = 0
    policy: str | None = None
    solver_options: Mapping[str, object] = field(default_factory=dict)
    include: tuple = ()
    target: str | None = None  # --for: a deployment target (dse.export.targets): formats, runtime, tied layers
    activations: tuple | None = None
    kv_formats: tuple | None = None

    def __post_init__(self):
        # stored as tuples of (name, value) pairs, in the order given, so a request stays hashable and frozen
        object.__setattr__(self, "overrides", _pairs(self.overrides, "overrides"))
        object.__setattr__(self, "solver_options", _pairs(self.solver_options, "solver_options"))
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise QuantDSEError(f"must be a Budget (Budget.bits(3.7), Budget.gb(3.5), Budget.ms(12), Budget.mj(5)), "
                                f"got {self.budget!r}", param="budget")
        if self.formats is not None:
            object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "include", tuple(self.include))
        for name in ("activations", "kv_formats"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def override_dict(self) -> dict:
        """The hardware overrides as a dict."""
        return dict(self.overrides)

    def limits(self) -> tuple[dict, dict]:
        """(limits in SI by kind, the budget as written {"kind", "value", "text"}).

        Without a budget, the first max_* limit given is the budget the plan reports.
        Also validates the method name and its options, before any expensive work.
        """
        from dse.solvers import check_method, check_options

        check_method(self.method)
        check_options(self.method, dict(self.solver_options))
        limits: dict = {}
        budget_doc: dict = {}
        if self.budget is not None:
            limits[self.budget.kind] = self.budget.si
            budget_doc = self.budget.as_dict()
        for param, value, unit in (("max_latency_ms", self.max_latency_ms, "ms"),
                                   ("max_energy_mj", self.max_energy_mj, "mJ"),
                                   ("max_memory_gb", self.max_memory_gb, "GB"),
                                   ("max_ttft_ms", self.max_ttft_ms, "ms"), ("max_tpot_ms", self.max_tpot_ms, "ms")):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise QuantDSEError(f"must be a number, got {value!r}", param=param)
            if not math.isfinite(value) or value <= 0:
                raise QuantDSEError(f"must be a positive finite number, got {value}", param=param)
            kind, factor = UNITS[unit]
            if value * factor > MAX_SI[kind]:
                raise QuantDSEError(f"is out of range: a {kind} limit must be at most {MAX_SI[kind] / factor:g} {unit}",
                                    param=param)
            limit = Budget(value, unit)
            kind = param.removeprefix("max_").removesuffix("_ms") if param in SLO_FLAGS else limit.kind
            limits[kind] = min(limit.si, limits.get(kind, np.inf))
            if not budget_doc:
                budget_doc = {**limit.as_dict(), "kind": kind}
        if not limits:
            raise QuantDSEError("no budget given: give budget=Budget.bits(3.7) (or .gb, .ms, .mj, .tokens_per_s) or "
                                "one of max_latency_ms / max_energy_mj / max_memory_gb / max_ttft_ms / max_tpot_ms")
        return limits, budget_doc


#: the serving SLO parameters (their limit kinds are ttft and tpot)
SLO_FLAGS = ("max_ttft_ms", "max_tpot_ms")


def _pairs(values, param: str) -> tuple:
    """A mapping of name -> value (or the (name, value) pairs a request stores) as a tuple of pairs."""
    if isinstance(values, Mapping):
        items = tuple(values.items())
    elif isinstance(values, tuple) and all(isinstance(item, tuple) and len(item) == 2 for item in values):
        items = values  # a request's own pairs, as dataclasses.replace passes them back
    else:
        raise QuantDSEError(f"must be a dict of name -> value, e.g. {{'rows': 32}}, got {values!r}", param=param)
    for key, _ in items:
        if not isinstance(key, str) or not key:
            raise QuantDSEError(f"names must be non-empty strings, got {key!r}", param=param)
    return items


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
    kv: object = None  # dse.kvcache.KVTable: K/V cache items searched as rows after the layers; None: fixed cache
    serving: object = None  # hwmodels.wholemodel.ServingCost: the first-token / per-token split, output tokens

    def device_limit(self, limits: dict) -> float | None:
        """The device's free memory as a limit in bytes, where the weights under `limits` could exceed it."""
        cache = 0.0 if self.kv is None else float(self.kv.memory.max(axis=1).sum())
        bound = bits_memory_bound(limits, self.largest_memory + cache, float(sum(l.params for l in self.layers)),
                                  self.fixed_memory + cache)
        return device_memory_limit(self.hardware, self.free_memory, bound)

    def serving_totals(self, assignment, extra_latency_s: float = 0.0, extra_per_pass_s: float = 0.0) -> dict:
        """tokens_per_s, ttft_s, tpot_s of one format per row (empty for models that make no tokens);
        extra_*: seconds the tables do not hold (offloaded weights), as hwmodels.wholemodel.serving_totals."""
        from hwmodels.wholemodel import serving_totals

        if self.serving is None or self.graph.config.get("arch", "decoder") != "decoder":
            return {}
        a = np.asarray(assignment)
        if self.kv is None:
            return serving_totals(self.serving, a, extra_latency_s, extra_per_pass_s)
        # K/V rows searched (one decode step or one prefill, one device): the token's time is the pass's
        _, arrays = self.arrays()
        total = float(arrays["latency_s"][np.arange(len(a)), a].sum()) + self.fixed_latency_s + extra_latency_s
        token = "ttft_s" if self.workload.phase == "prefill" else "tpot_s"
        return {token: total - extra_latency_s + extra_per_pass_s,
                "tokens_per_s": self.serving.output_tokens / total if total > 0 else 0.0}

    def arrays(self) -> tuple[list, dict]:
        """(format names, the Problem's [rows, formats] arrays): the layers, then the K/V cache items."""
        mask = self.costs.supported & np.isfinite(self.sensitivity.errors)
        arrays = dict(error=np.nan_to_num(self.sensitivity.errors, nan=np.inf),
                      params=np.array([l.params for l in self.layers]), bits=self.bits,
                      latency_s=self.costs.latency_s, energy_j=self.costs.energy_j, mask=mask)
        names = [f.name for f in self.formats]
        if self.kv is not None:
            from dse.precision import with_kv_rows

            names, arrays = with_kv_rows(names, arrays, self.kv)
        return names, arrays

    def problem(self, limits: dict) -> Problem:
        limits, sources = serving_limits(self, limits)
        device = self.device_limit(limits)
        if device is not None:
            limits["memory"], sources["memory"] = device, "device"
        names, arrays = self.arrays()
        serving = {k: v for k, v in (("ttft", self.serving.ttft), ("tpot", self.serving.tpot)) if v is not None} \
            if self.serving is not None else {}
        if self.kv is not None:  # one pass: its first or next token takes the whole pass, K/V rows included
            serving = {k: (arrays["latency_s"], self.fixed_latency_s) for k in serving}
        return Problem(
            layer_names=[l.name for l in self.layers] + ([it.name for it in self.kv.items] if self.kv else []),
            format_names=names, **arrays,
            limits=dict(limits), fixed_memory=self.fixed_memory, fixed_latency_s=self.fixed_latency_s,
            fixed_energy_j=self.fixed_energy_j, sources=sources, serving=serving)


def serving_limits(prepared: Prepared, limits: dict) -> tuple[dict, dict]:
    """(limits the Problem takes, where each came from): a minimum throughput becomes a latency limit
    (the workload's output tokens / tok/s); a TTFT or TPOT limit where the workload has no such token is
    an error that says which phase has one."""
    limits, sources = dict(limits), {}
    phase = prepared.workload.phase
    if "throughput" in limits:
        serving = prepared.serving
        if serving is None or not serving.output_tokens or prepared.graph.config.get("arch", "decoder") != "decoder":
            raise QuantDSEError(f"a tok/s budget applies to decoder LLMs; {prepared.graph.name} produces no tokens: "
                                "use a latency budget (ms)")
        latency = serving.output_tokens / limits.pop("throughput")
        if latency < limits.get("latency", np.inf):
            limits["latency"], sources["latency"] = latency, "throughput"
    for kind, phases in (("ttft", "prefill or generate"), ("tpot", "decode or generate")):
        if kind in limits and getattr(prepared.serving, kind, None) is None:
            raise QuantDSEError(f"--max-{kind}-ms applies to --phase {phases}, not {phase}: change --phase or drop it")
    return limits, sources


def _kv_formats(request: SearchRequest) -> list:
    """The K/V cache formats `--kv-formats` names (catalog Formats); empty when the cache is not searched."""
    from dse.kvcache import kv_format_list

    return kv_format_list(",".join(request.kv_formats)) if request.kv_formats else []


def _candidate_formats(request: SearchRequest, layers, graph) -> tuple[list, tuple | None]:
    """(the candidate formats, what read_sensitivity_file returned where they come from a sensitivity file)."""
    from quantcore.formats import DEFAULT_SEARCH_FORMATS, get_format, parse_format_list

    if request.formats:
        return parse_format_list(",".join(request.formats)), None
    sens = request.sensitivity
    if sens is not None and sens not in SENSITIVITY_SOURCES and not sens.startswith("imatrix:"):
        if not (sens.endswith(".json") or Path(sens).is_file()):
            SENSITIVITY_SOURCES.check(sens)  # neither a source nor a file: the names, with close matches
        file = read_sensitivity_file(sens, layers, [l.name for l in graph.layers], kv_searched=bool(request.kv_formats))
        return [get_format(name) for name in file_formats(file[0])], file
    if graph.config.get("arch") == "diffusion":
        from dse.diffusion import DIFFUSION_SEARCH_FORMATS

        return [get_format(name) for name in DIFFUSION_SEARCH_FORMATS], None
    return [get_format(name) for name in DEFAULT_SEARCH_FORMATS], None


@dataclass(frozen=True)
class ModelWork:
    """A model as every design point reads it: done once per model, whatever the hardware."""

    graph: object
    layers: list
    candidates: list  # the candidate formats before any target drops the ones it cannot run
    file: tuple | None  # what read_sensitivity_file returned, where --sensitivity is a file


#: SearchRequest fields that change only the solve, not the prepared tables
SOLVE_ONLY = frozenset({"budget", "method", "max_latency_ms", "max_energy_mj", "max_memory_gb", "max_ttft_ms",
                        "max_tpot_ms", "policy", "solver_options", "reward"})
#: the fields that change the model's graph, candidates and sensitivity (not the hardware or workload)
MODEL_FIELDS = ("model", "include", "formats", "sensitivity", "calib", "seed", "activations", "kv_formats")


def _frozen(value):
    """A hashable stand-in for a request value (dicts and lists become sorted / plain tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _key(request: SearchRequest, names) -> tuple:
    return tuple((name, _frozen(getattr(request, name))) for name in names)


class Cache:
    """Prepared work shared by many searches (a sweep's points), keyed on every input that changes it.

    Created by whoever runs the searches and passed to its workers; nothing is kept anywhere else:
    - the model (graph, layers, candidate formats): by model, include, formats, sensitivity source;
    - sensitivity: by those, calibration, seed and the formats the design can run;
    - a design's Prepared (hardware tables): by every request field but the solve-only ones;
    - a solve: by method, seed and the problem's arrays, since equal problems have equal optima.
    Designs and solves are kept for the `designs` / `solves` most recent (least recently used out).
    """

    def __init__(self, designs: int = 64, solves: int = 4096):
        self._models: dict = {}
        self._sensitivity: dict = {}
        self._tables: dict = {}  # specs by target, ops by (model, workload), bits by (model, formats)
        self._designs: OrderedDict = OrderedDict()
        self._solves: OrderedDict = OrderedDict()
        self._limits = {"designs": designs, "solves": solves}
        self.hits = {"designs": 0, "solves": 0}

    def __getstate__(self) -> dict:
        """A copy for a worker process: the sensitivity tables and solves; each worker reads its own graphs (they
        do not pickle) and costs its own designs."""
        return {**self.__dict__, "_models": {}, "_designs": OrderedDict(), "_tables": {}}

    def warm(self, request: SearchRequest) -> None:
        """Prepare `request`'s design now, so that copies handed to workers carry its sensitivity.

        A request that fails here is left for the worker to fail on and report."""
        try:
            self.prepared(request)
        except QuantDSEError:
            pass

    def _recent(self, table: OrderedDict, name: str, key, make):
        if key in table:
            table.move_to_end(key)
            self.hits[name] += 1
            return table[key]
        value = table[key] = make()
        if len(table) > self._limits[name]:
            table.popitem(last=False)
        return value

    def model(self, request: SearchRequest) -> ModelWork:
        key = _key(request, MODEL_FIELDS)
        if key not in self._models:
            self._models[key] = _model_work(request)
        return self._models[key]

    def sensitivity(self, request: SearchRequest, work: ModelWork, formats: list) -> Sensitivity:
        key = (_key(request, MODEL_FIELDS), tuple(f.name for f in formats))
        if key not in self._sensitivity:
            graph = work.graph
            source = request.sensitivity or ("weights" if graph.weights is not None else "prior")
            self._sensitivity[key] = compute_sensitivity(graph, work.layers, formats, source, model=request.model,
                                                         calib=request.calib, seed=request.seed, file=work.file,
                                                         kv_formats=_kv_formats(request))
        return self._sensitivity[key]

    def table(self, key, make):
        """make() once per key: the pieces of a design that depend on only a few of its inputs."""
        if key not in self._tables:
            self._tables[key] = make()
        return self._tables[key]

    def prepared(self, request: SearchRequest) -> Prepared:
        request = for_target(request)
        names = [f.name for f in fields(request) if f.name not in SOLVE_ONLY]
        return self._recent(self._designs, "designs", _key(request, names), lambda: _design(request, self))

    def solve(self, problem: Problem, method: str, seed: int, options: tuple, run):
        """run() for a problem not solved before by this method and seed, else its earlier result."""
        digest = hashlib.blake2b(digest_size=16)
        for arr in (problem.error, problem.mask, *(c.coef for c in problem.constraints())):
            digest.update(np.ascontiguousarray(arr).tobytes())
        key = (method, seed, options, problem.shape, tuple((c.kind, c.rhs) for c in problem.constraints()),
               digest.hexdigest())
        return self._recent(self._solves, "solves", key, run)


def for_target(request: SearchRequest) -> SearchRequest:
    """The request with its deployment target's formats and runtime filled in (`--for`)."""
    if not request.target:
        return request
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
    overrides = dict(request.overrides)
    runtime = overrides.get("runtime")
    if runtime is not None and str(runtime).strip() != target.runtime:
        raise QuantDSEError(f"--for {target.name} runs on the {target.runtime} runtime, not "
                            f"{str(runtime).strip()}: drop --set runtime=... or pick another --for")
    if runtime is None and hasattr(load_model(request.hw, list(request.overrides)), "runtime"):  # GPU families
        overrides["runtime"] = target.runtime
    return dataclasses.replace(request, formats=formats, overrides=overrides)



def _model_work(request: SearchRequest) -> ModelWork:
    from quantcore.models import DEFAULT_MODEL, load_graph
    from quantcore.models.graph import include_layers

    graph = include_layers(load_graph(request.model if request.model is not None else DEFAULT_MODEL), request.include)
    layers = graph.quantizable()
    if not layers:
        raise QuantDSEError(f"model {graph.name} has no quantizable layers (linear/conv): check --model")
    candidates, file = _candidate_formats(request, layers, graph)
    if request.activations:
        from dse.precision import expand_activations

        candidates = expand_activations(candidates, request.activations)
    return ModelWork(graph, layers, candidates, file)


def prepare(request: SearchRequest, cache: Cache | None = None) -> Prepared:
    """Load the model and hardware, cost every (layer, format), compute sensitivity.

    Formats the target cannot run are dropped (with a note) before sensitivity is
    computed; the device's free memory becomes a limit where the weights could exceed it.
    cache: shares the model, sensitivity and designs with other searches (a sweep); None: a fresh one.
    """
    return (cache or Cache()).prepared(request)


def _design(request: SearchRequest, cache: Cache) -> Prepared:
    """One design: each step once (workload, one cost table that also says what runs, fixed costs)."""
    work = cache.model(request)
    graph, layers = work.graph, work.layers
    model_key = _key(request, MODEL_FIELDS)
    spec = cache.table(("spec", _frozen(request.hw)), lambda: load_spec(request.hw))
    hardware = load_hardware(spec, list(request.overrides))
    notes = list(getattr(graph, "notes", ()))
    workload_notes: list = []  # what of the workload does not apply; noted after the dropped formats
    workload = request.workload.for_model(graph, workload_notes)
    if request.kv_formats and (workload.phase == "generate" or (workload.devices or 1) > 1):  # before any costing
        raise QuantDSEError("--kv-formats searches the cache of one pass on one device: use --phase decode or "
                            "prefill and one device, or --kv-bits for a whole request or several devices")
    ops = cache.table(("ops", model_key, workload), lambda: ops_for_graph(graph, workload, layers))
    formats = work.candidates  # each design filters the original candidates: none is lost to another design
    serving = serving_tables(hardware, graph, layers, formats, workload, ops=ops)
    costs = serving.layers
    keep, dropped, note = runnable(formats, costs, hardware,
                                   lambda fmts: serving_tables(hardware, graph, layers, fmts, workload, ops=ops).layers)
    if note:
        from dse.precision import check_asked

        check_asked(request, dropped, hardware.name, layers)
        notes.append(note)
        formats, serving = [formats[j] for j in keep], serving.take(keep)
        costs = serving.layers
    sensitivity = cache.sensitivity(request, work, formats)
    if work.file is None and any(f.act_bits < 16 for f in formats) and \
            graph.config.get("arch", "decoder") in ("decoder", "encoder"):  # the prior's sources are LLM papers
        from dse.precision import with_activation_prior

        sensitivity = with_activation_prior(sensitivity, layers, formats)
    bits = cache.table(("bits", model_key, tuple(f.name for f in formats)),
                       lambda: bits_table(np.array([l.row for l in layers], dtype=np.int64), formats,
                                          np.array([l.n for l in layers])))
    fixed_params = sum(l.params for l in graph.layers if not l.quantizable)  # embeddings, routers: 16-bit
    fixed_memory = 2.0 * (fixed_params + graph.extra_params)
    fixed_latency, fixed_energy = serving.fixed["latency_s"], serving.fixed["energy_j"]
    kv = None
    fm = free_memory(hardware.spec, graph, workload)
    if request.kv_formats:  # the cache is searched: its attention and memory leave the fixed part
        from dse.kvcache import kv_table

        kv = kv_table(graph, hardware, workload, _kv_formats(request), notes,
                      errors=getattr(sensitivity, "kv_errors", None))
        attention = serving.parts["attention"]
        fixed_latency -= float(attention.get("latency_s", 0.0))
        fixed_energy -= float(attention.get("energy_j", 0.0))
        fm = None if fm is None else dataclasses.replace(fm, kv_cache=0.0)
    params = np.array([l.params for l in layers], dtype=np.float64)
    largest = max_weight_bytes(bits, params, costs.supported & np.isfinite(sensitivity.errors), fixed_memory)
    prepared = Prepared(request, graph, layers, formats, hardware, sensitivity, costs, bits,
                        fixed_memory=fixed_memory, fixed_latency_s=fixed_latency, fixed_energy_j=fixed_energy,
                        workload=workload, dropped=dropped, free_memory=fm,
                        largest_memory=largest, notes=notes + workload_notes, kv=kv, serving=serving)
    check_costs(prepared)
    if request.target:  # the layers the runtime fuses take one format
        from dse.export.targets import get_target, tied_groups

        prepared.ties = tied_groups([l.name for l in layers], get_target(request.target).fuse)
    if kv is not None:  # a runtime with one KV type for the model: its items take one format
        from dse.kvcache import tie_groups

        prepared.ties = list(prepared.ties) + tie_groups(kv.items, kv.scope, len(layers))
    return prepared


def check_costs(prepared: Prepared) -> None:
    """Every predicted cost must be finite and non-negative: no input may buy a plan with
    negative or infinite latency, energy or memory (a defence behind the input checks)."""
    ok = prepared.costs.supported
    tables = {"latency": prepared.costs.latency_s[ok], "energy": prepared.costs.energy_j[ok],
              "bits": prepared.bits[ok],
              "fixed": np.array([prepared.fixed_memory, prepared.fixed_latency_s, prepared.fixed_energy_j])}
    kv = prepared.kv
    if kv is not None:  # the searched cache's tables, where the target runs them
        tables["KV cache"] = np.concatenate([kv.latency_s[kv.supported], kv.energy_j[kv.supported], kv.memory.ravel()])
    bad = [name for name, values in tables.items() if not (np.isfinite(values).all() and (values >= 0).all())]
    if bad:
        raise QuantDSEError(f"predicted {', '.join(bad)} of {prepared.graph.name} on {prepared.hardware.name} "
                            "are not finite and non-negative: check the model's config values and --set overrides")


def solver_options(prepared: Prepared, method: str) -> dict:
    """The request's solver options (for its own method), plus what a solver may read from the run
    (dse.solvers.CONTEXT: the RL agent reads the layers, their weights, its policy and the model name)."""
    req = prepared.request
    model = req.model if isinstance(req.model, str) else prepared.graph.name
    context = {"layers": prepared.layers, "weights": prepared.graph.weights, "policy": req.policy, "model": model}
    return {**context, **(dict(req.solver_options) if method == req.method else {})}


def solve_prepared(prepared: Prepared, limits: dict, method: str | None = None, seed: int | None = None,
                   cache: Cache | None = None, **options):
    """(problem, result) for one set of limits; infeasibility is a one-line QuantDSEError.

    cache: reuses the result of an equal problem solved before by the same method and seed
    (not for --method rl, whose policy reads more than the problem).
    options: passed to the solver (e.g. `progress`, a callback solvers that report progress call).
    """
    from dse.solvers import solve

    from dse.problem import tie

    problem = prepared.problem(limits)
    from dse.solvers import reads_run

    if prepared.kv is not None and reads_run(method or prepared.request.method):
        raise QuantDSEError(f"--method {method or prepared.request.method} reads the model's layers and cannot "
                            "search --kv-formats: use --method ilp (or fix the cache with --kv-bits)")
    solved, rows = tie(problem, prepared.ties)  # fused layers: one decision each
    message = solved.infeasible_message(lambda kinds: infeasible_hint(prepared, solved, kinds))
    if message:
        raise QuantDSEError(message)
    method = method or prepared.request.method
    seed = prepared.request.seed if seed is None else seed
    extra = solver_options(prepared, method)
    run = lambda: solve(solved, method=method, seed=seed, **extra, **options)  # noqa: E731

    user_options = method == prepared.request.method and prepared.request.solver_options
    reusable = cache is not None and not user_options and not options and not reads_run(method)
    result = cache.solve(solved, method, seed, (), run) if reusable else run()
    if not result.success:
        raise QuantDSEError(f"{method} found no plan: {result.message or result.status}")
    result = dataclasses.replace(result, assignment=np.asarray(result.assignment)[rows])  # a cached result stays as solved
    broken = problem.violations(result.assignment)
    if broken:  # a solver bug, not bad input: keep the traceback
        raise AssertionError(f"{method} returned an over-budget plan: {broken}")
    totals = problem.totals(result.assignment)
    if not all(np.isfinite(v) and v >= 0 for v in totals.values()):  # check_costs makes this a bug
        raise AssertionError(f"{method} returned a plan with totals {totals}")
    return problem, result
