"""The training mix: catalog models x hardware targets, prepared once, then randomised per episode.

Each episode draws one prepared (model, target) table, a random subset of its
candidate formats, a window of its layers (long models are cut to WINDOW layers so
episodes stay short), a sensitivity source (the model's own: weights where it has
them, else the data-free prior; or a synthetic table drawn for this episode) and a
budget: one or two limits (bits, memory, latency, energy) placed at a random
fraction of the way from their smallest feasible value to their largest useful one.
The policy therefore never sees one table twice and cannot memorise it.

HELD_OUT models never enter the mix: the zero-shot checks (tests, bench/rl.py) use them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.problem import Problem
from policies.episode import Episode, layer_infos

HELD_OUT = ("llama-3-8b", "qwen2.5-7b", "mixtral-8x7b", "mistral-7b", "deepseek-v3")
TRAIN_MODELS = ("llama-2-7b", "llama-2-13b", "opt-1.3b", "opt-6.7b", "phi-2", "yi-6b", "bert-base-uncased",
                "all-minilm-l6-v2", "resnet-50", "codenet-a", "codenet-c")
TRAIN_HARDWARE = ("a100-80gb", "h100-sxm", "rtx4090", "u280", "rpi5", "m2-ultra", "systolic", "bitmod")
TRAIN_FORMATS = ("int2-g64", "int2-g128", "int3-g128", "int3-g64", "int3-g32", "int4-g128", "int4-g64", "int4-g32",
                 "int5-g128", "int6-g128", "int8", "fp16", "nf4", "fp8-e4m3", "mxfp4", "fp6-e3m2")
WINDOW = 96
LIMIT_KINDS = ("bits", "memory", "latency", "energy")


@dataclass
class Entry:
    """One prepared (model, target): its unconstrained problem and layer infos."""

    name: str
    problem: Problem
    infos: list


def build_pool(seed: int, models=TRAIN_MODELS, hardware=TRAIN_HARDWARE, formats=TRAIN_FORMATS,
               pairs: int | None = None, progress=None) -> list[Entry]:
    """Prepare every model on a seeded draw of targets (one target per model, all when pairs=None)."""
    from dse.pipeline import SearchRequest, prepare

    rng = np.random.default_rng(seed)
    combos = [(m, hardware[int(rng.integers(len(hardware)))]) for m in models]
    if pairs is not None:
        combos = [combos[i] for i in rng.choice(len(combos), size=min(pairs, len(combos)), replace=False)]
    out = []
    for model, hw in (progress(combos) if progress else combos):
        prepared = prepare(SearchRequest(hw=hw, model=model, formats=tuple(formats)))
        problem = prepared.problem({})
        out.append(Entry(f"{model}@{hw}", problem, layer_infos(prepared.layers, prepared.graph.weights)))
    return out


def synthetic_errors(rng, problem: Problem) -> np.ndarray:
    """A random error table shaped like real ones: params x 2**(-slope * bits), per-layer and per-cell noise."""
    L, _ = problem.shape
    slope = rng.uniform(1.4, 2.2)
    layer = rng.lognormal(0.0, rng.uniform(0.2, 2.0), size=(L, 1))
    cell = rng.lognormal(0.0, rng.uniform(0.0, 0.5), size=problem.shape)
    return problem.params[:, None] * layer * cell * np.exp2(-slope * np.minimum(problem.bits, 16.0))


def random_limits(rng, problem: Problem, kinds) -> dict:
    """Each kind's limit at a random point between its smallest feasible value and its largest useful one."""
    limits = {}
    for kind in kinds:
        coef = problem.coef(kind)
        lo = problem.smallest_limit(kind)
        hi_sum = float(np.where(problem.mask, coef, -np.inf).max(1).sum())
        hi = hi_sum / problem.params.sum() if kind == "bits" else hi_sum + (lo - problem.masked(coef).min(1).sum())
        t = rng.uniform(0.02, 0.95) if len(kinds) == 1 else rng.uniform(0.2, 1.0)
        limits[kind] = lo + t * (hi - lo)
    return limits


def sub_problem(problem: Problem, rows, cols, error=None, limits=None) -> Problem:
    """Rows (layers) x cols (formats) of a problem, optionally with another error table and limits."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    pick = lambda a: a[np.ix_(rows, cols)]  # noqa: E731
    err = problem.error if error is None else error
    return Problem([problem.layer_names[i] for i in rows], [problem.format_names[j] for j in cols], pick(err),
                   problem.params[rows], pick(problem.bits), pick(problem.latency_s), pick(problem.energy_j),
                   pick(problem.mask), limits or {})


def sample_episode(rng, pool: list[Entry], window: int = WINDOW) -> Episode:
    """One randomised training episode (see the module docstring)."""
    while True:
        entry = pool[int(rng.integers(len(pool)))]
        base = entry.problem
        L, F = base.shape
        n = int(rng.integers(min(L, 8), min(L, window) + 1))
        start = int(rng.integers(0, L - n + 1))
        rows = np.arange(start, start + n)
        cols = np.sort(rng.choice(F, size=int(rng.integers(3, F + 1)), replace=False))
        error = synthetic_errors(rng, base) if rng.random() < 0.5 else None
        mask = base.mask[np.ix_(rows, cols)]
        if not mask.any(axis=1).all():
            continue  # a layer with no allowed format among these columns: draw again
        free = sub_problem(base, rows, cols, error)
        kinds = ["bits"] if rng.random() < 0.55 else [LIMIT_KINDS[int(rng.integers(1, 4))]]
        if rng.random() < 0.2:
            kinds.append(LIMIT_KINDS[int(rng.integers(2, 4))])
        kinds = list(dict.fromkeys(kinds))
        problem = sub_problem(base, rows, cols, error, random_limits(rng, free, kinds))
        ep = Episode(problem, [entry.infos[i] for i in rows])
        if ep.feasible:
            return ep
