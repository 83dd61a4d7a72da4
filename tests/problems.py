"""Random allocation problems and a brute-force oracle, shared by the solver tests."""
import itertools

import numpy as np

from dse.problem import Problem


def random_problem(rng, L, F, kinds=("bits",), tightness=None):
    err = rng.random((L, F)) * rng.lognormal(0, 1, (L, 1))
    bits = rng.choice([2.125, 3.125, 4.125, 4.25, 8.0, 16.0], size=(L, F))
    lat = rng.random((L, F))
    en = rng.random((L, F))
    mask = rng.random((L, F)) < 0.85
    mask[np.arange(L), rng.integers(0, F, L)] = True
    params = rng.integers(1, 1000, L)
    p0 = Problem([f"l{i}" for i in range(L)], [f"f{j}" for j in range(F)], err, params, bits, lat, en, mask, {})
    limits = {}
    for kind in kinds:
        lo, hi = p0.masked(p0.coef(kind)).min(1).sum(), p0.masked(p0.coef(kind), -np.inf).max(1).sum()
        t = rng.uniform(-0.1, 1.0) if tightness is None else tightness
        rhs = lo + t * (hi - lo)
        limits[kind] = rhs / params.sum() if kind == "bits" else rhs
    return Problem(p0.layer_names, p0.format_names, err, params, bits, lat, en, mask, limits)


def brute_force(p):
    best = None
    for a in itertools.product(range(p.shape[1]), repeat=p.shape[0]):
        a = np.array(a)
        if not p.violations(a):
            o = p.objective(a)
            best = o if best is None or o < best else best
    return best
