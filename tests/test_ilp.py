"""The ILP against independent solvers: brute force (small) and scipy.optimize.milp (larger)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import LinearConstraint, milp

from dse.problem import Problem
from problems import brute_force, random_problem
from dse.solvers.ilp import solve, undominated_mask


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 4),
       st.sampled_from([("bits",), ("latency",), ("bits", "energy"), ("memory", "latency", "energy")]))
def test_ilp_matches_brute_force(seed, L, F, kinds):
    p = random_problem(np.random.default_rng(seed), L, F, kinds)
    best = brute_force(p)
    r = solve(p)
    if best is None:
        assert r.status == "infeasible" and not r.success
    else:
        assert r.status == "optimal"
        assert not p.violations(r.assignment)
        assert r.objective == pytest.approx(best, rel=1e-9, abs=1e-12)


def scipy_optimum(p):
    """The same problem solved by scipy's HiGHS-backed milp on the one-hot encoding."""
    L, F = p.shape
    c = np.where(p.mask, p.error, 0.0).ravel()
    one_hot = np.zeros((L, L * F))
    for l in range(L):
        one_hot[l, l * F:(l + 1) * F] = 1
    cons = [LinearConstraint(one_hot, 1, 1)]
    for con in p.constraints():
        cons.append(LinearConstraint(np.where(p.mask, con.coef, 0.0).ravel()[None, :], -np.inf, con.rhs))
    ub = p.mask.ravel().astype(float)
    from scipy.optimize import Bounds
    res = milp(c, integrality=np.ones(L * F), bounds=Bounds(0, ub), constraints=cons,
               options={"mip_rel_gap": 1e-12})
    return res


@pytest.mark.parametrize("seed", range(4))
def test_ilp_matches_scipy_milp_on_226_layers(seed):
    p = random_problem(np.random.default_rng(seed), 226, 8, ("bits", "latency"), tightness=0.35)
    ours = solve(p)
    ref = scipy_optimum(p)
    assert ref.success and ours.status == "optimal"
    assert ours.objective == pytest.approx(ref.fun, rel=1e-7)
    assert not p.violations(ours.assignment)


def test_cbc_fallback_agrees_with_highs():
    p = random_problem(np.random.default_rng(7), 40, 6, ("bits",), tightness=0.3)
    assert solve(p, solver="cbc").objective == pytest.approx(solve(p, solver="highs").objective, rel=1e-9)


def test_dominated_formats_are_dropped_exactly():
    # format 1 is worse in error and bits than format 0 in layer 0: dropped; layer 1 keeps both
    err = np.array([[1.0, 2.0], [1.0, 0.5]])
    bits = np.array([[4.0, 8.0], [4.0, 8.0]])
    p = Problem(["a", "b"], ["x", "y"], err, [1, 1], bits, np.zeros((2, 2)), np.zeros((2, 2)),
                np.ones((2, 2), bool), {"bits": 6.0})
    assert undominated_mask(p).tolist() == [[True, False], [True, True]]


def test_infeasible_budget_names_the_smallest_feasible():
    bits = np.array([[4.0, 8.0], [3.0, 8.0]])
    p = Problem(["a", "b"], ["x", "y"], np.ones((2, 2)), [1, 3], bits, np.zeros((2, 2)), np.zeros((2, 2)),
                np.ones((2, 2), bool), {"bits": 3.0})
    r = solve(p)
    assert r.status == "infeasible"
    # smallest average: (4*1 + 3*3) / 4 = 3.25 bits
    assert "3.2500bits" in r.message


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_a_run_stopped_by_its_time_limit_says_so(solver):
    # 600 distinct layers with near-tied formats: branch and bound cannot prove optimality in 0.05 s
    p = random_problem(np.random.default_rng(3), 600, 8, ("bits", "latency"), tightness=0.4)
    r = solve(p, solver=solver, time_limit=0.05)
    assert r.status in ("time_limit", "error")
    if r.status == "time_limit":
        assert not p.violations(r.assignment)


def test_large_single_budget_is_handed_to_lagrangian_and_says_so():
    p = random_problem(np.random.default_rng(5), 300, 6, ("bits",), tightness=0.4)
    r = solve(p, solver="highs", max_classes=100)
    assert r.info["switched_to"] == "lagrangian" and "300 distinct layers > 100" in r.message
    assert r.objective == pytest.approx(solve(p).objective, rel=1e-9)
