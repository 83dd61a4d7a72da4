"""The exact multiple-choice knapsack solver against scipy.optimize.milp (an independent MIP solver)."""
import numpy as np
import pytest

from dse.problem import Problem
from dse.solvers import ilp, mck
from problems import random_problem
from test_ilp import scipy_optimum


def _with_twins(rng, p):
    """The same problem with some layers copied (identical layers: the class-merged HiGHS path)."""
    L = p.shape[0]
    src = np.concatenate([np.arange(L), rng.integers(0, L, rng.integers(1, L + 1))])
    take = lambda a: np.asarray(a)[src]  # noqa: E731
    return Problem([f"l{i}" for i in range(len(src))], p.format_names, take(p.error), take(p.params), take(p.bits),
                   take(p.latency_s), take(p.energy_j), take(p.mask), dict(p.limits))


def _problems(count=240):
    """Seeded random problems: one budget of each kind, sizes 2..80 layers x 2..10 formats, some with twins."""
    rng = np.random.default_rng(20)
    for i in range(count):
        L, F = int(rng.integers(2, 81)), int(rng.integers(2, 11))
        kind = ("bits", "latency", "energy", "memory")[i % 4]
        p = random_problem(rng, L, F, (kind,), tightness=float(rng.uniform(0.02, 0.9)))
        yield i, (_with_twins(rng, p) if i % 5 == 0 else p)


def test_agrees_with_scipy_milp_on_at_least_200_random_problems():
    checked = 0
    for i, p in _problems():
        ours, ref = mck.solve(p), scipy_optimum(p)
        if ours.status == "infeasible":  # twins copied in after the limit was drawn can overshoot it
            assert ref.status == 2, i  # scipy: infeasible too
            continue
        assert ref.success, i
        assert ours.status == "optimal" and ours.gap == 0.0, (i, ours.message)
        assert not p.violations(ours.assignment), i
        assert ours.objective == pytest.approx(ref.fun, rel=1e-9, abs=1e-12), (i, ours.info)
        checked += 1
    assert checked >= 200


@pytest.mark.parametrize("seed", range(6))
def test_several_budgets_go_to_highs_and_agree_with_scipy(seed):
    p = random_problem(np.random.default_rng(seed), 60, 6, ("bits", "latency", "energy"), tightness=0.4)
    ours, ref = ilp.solve(p), scipy_optimum(p)
    assert ours.status == "optimal" and ours.info["proved_by"] == "highs"
    assert ours.objective == pytest.approx(ref.fun, rel=1e-9)


def test_says_which_step_proved_the_result():
    p = random_problem(np.random.default_rng(1), 40, 6, ("bits",), tightness=0.3)
    r = ilp.solve(p)
    assert r.method == "ilp" and r.info["solver"] == "mck" and r.info["proved_by"].startswith("mck")
    loose = random_problem(np.random.default_rng(1), 40, 6, ("bits",), tightness=1.0)
    assert ilp.solve(loose).info["proved_by"] == "mck: every best-error format fits"


def test_a_core_too_large_for_the_dp_is_closed_by_highs_from_the_incumbent():
    p = random_problem(np.random.default_rng(4), 120, 8, ("bits",), tightness=0.3)
    forced = mck.solve(p, max_core=0)
    assert forced.status == "optimal" and forced.info["proved_by"] == "highs"
    assert forced.objective == pytest.approx(mck.solve(p).objective, rel=1e-12)


def test_infeasible_is_a_status_naming_the_smallest_feasible():
    bits = np.array([[4.0, 8.0], [3.0, 8.0]])
    p = Problem(["a", "b"], ["x", "y"], np.ones((2, 2)), [1, 3], bits, np.zeros((2, 2)), np.zeros((2, 2)),
                np.ones((2, 2), bool), {"bits": 3.0})
    r = mck.solve(p)
    assert r.status == "infeasible" and not r.success and "3.2500bits" in r.message


def test_mostly_identical_layers_go_to_highs_on_class_counts_and_agree_with_scipy():
    base = random_problem(np.random.default_rng(8), 6, 5, ("bits",), tightness=0.4)
    src = np.repeat(np.arange(6), 10)  # 60 layers, 6 classes
    take = lambda a: np.asarray(a)[src]  # noqa: E731
    p = Problem([f"l{i}" for i in range(60)], base.format_names, take(base.error), take(base.params),
                take(base.bits), take(base.latency_s), take(base.energy_j), take(base.mask), dict(base.limits))
    ours, ref = mck.solve(p), scipy_optimum(p)
    assert ours.info["proved_by"] == "highs" and ours.info["layer_classes"] == 6
    assert ours.status == "optimal" and ours.objective == pytest.approx(ref.fun, rel=1e-9)
