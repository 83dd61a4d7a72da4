"""Solvers against brute force (small), the exact ILP, and hand-made oracles."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from quantcore.errors import QuantDSEError
from dse.problem import Problem
from problems import brute_force, random_problem
from dse.solvers import baq, greedy, ilp, lagrangian, nas, uniform


FAST_NAS = dict(steps=20, bisections=4)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 4),
       st.sampled_from([("bits",), ("latency",), ("bits", "memory")]))
def test_every_method_against_brute_force_one_budget(seed, L, F, kinds):
    p = random_problem(np.random.default_rng(seed), L, F, kinds)
    best = brute_force(p)
    exact = [lagrangian.solve(p), ilp.solve(p)]
    heuristics = [greedy.solve(p), uniform.solve(p), nas.solve(p, **FAST_NAS)]
    if "latency" not in kinds:
        heuristics.append(baq.solve(p))
    if best is None:
        assert all(r.status == "infeasible" and not r.success for r in exact + heuristics)
        return
    for r in exact:
        assert r.status == "optimal", r.method
        assert r.objective == pytest.approx(best, rel=1e-9, abs=1e-12), r.method
        assert not p.violations(r.assignment)
    for r in heuristics:
        if r.method == "uniform" and not r.success:
            continue  # no single format may fit although a mix does
        assert r.success, r.method
        assert not p.violations(r.assignment), r.method
        assert r.objective >= best * (1 - 1e-12) - 1e-12, r.method
        assert r.objective == pytest.approx(p.objective(r.assignment))


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(2, 4))
def test_several_budgets_ilp_never_worse_and_heuristics_feasible(seed, L, F):
    p = random_problem(np.random.default_rng(seed), L, F, ("bits", "latency", "energy"))
    best = brute_force(p)
    opt = ilp.solve(p)
    for r in (greedy.solve(p), uniform.solve(p), nas.solve(p, **FAST_NAS)):
        if r.success:
            assert not p.violations(r.assignment), r.method
            assert opt.objective <= r.objective * (1 + 1e-12) + 1e-12, r.method
        else:
            assert r.status == "infeasible"
    if best is None:
        assert opt.status == "infeasible"


def reference_greedy(p):
    """One upgrade at a time, best error decrease per extra cost that fits (HAWQ-style), one budget."""
    c = p.constraints()[0]
    rows = np.arange(p.shape[0])
    cost = p.masked(c.coef)
    a = np.where(cost == cost.min(1, keepdims=True), p.masked(p.error), np.inf).argmin(1)
    err = p.masked(p.error)
    while True:
        d_e = err[rows, a][:, None] - err
        d_c = c.coef - c.coef[rows, a][:, None]
        ok = p.mask & (d_e > 0) & (d_c <= c.rhs - c.coef[rows, a].sum())
        if not ok.any():
            return a
        ratio = np.where(ok, np.where(d_c > 0, d_e / np.where(d_c > 0, d_c, 1), np.inf), -np.inf)
        key = np.where(ratio == ratio.max(), d_e, -np.inf)  # free moves: biggest decrease first
        l, f = np.unravel_index(key.argmax(), key.shape)
        a[l] = f


@pytest.mark.parametrize("seed", range(6))
def test_greedy_rounds_match_one_move_at_a_time(seed):
    rng = np.random.default_rng(seed)
    p = random_problem(rng, 60, 6, ("bits",), tightness=rng.uniform(0.1, 0.8))
    assert greedy.solve(p).objective == pytest.approx(p.objective(reference_greedy(p)), rel=1e-12)


def test_uniform_is_best_single_format_by_hand():
    # formats x (4 bits), y (8 bits); z allowed only in layer 1; budget 6 bits average
    err = np.array([[5.0, 1.0, 9.0], [4.0, 2.0, 0.5]])
    bits = np.array([[4.0, 8.0, 16.0], [4.0, 8.0, 16.0]])
    mask = np.array([[True, True, False], [True, True, True]])
    p = Problem(["a", "b"], ["x", "y", "z"], err, [1, 1], bits, np.zeros((2, 3)), np.zeros((2, 3)), mask,
                {"bits": 6.0})
    r = uniform.solve(p)
    # all-x: 4 bits, error 9; all-y: 8 bits, over; all-z: layer a takes y (nearest allowed), 12 bits, over
    assert r.info["format"] == "x" and r.objective == 9.0
    assert uniform.assignment_for(p, 2).tolist() == [1, 2]


def test_baq_fits_the_generating_theta():
    # error = params * s_l * 2^(-1.95 bits): the fit must return 1.95 (the generator's value)
    rng = np.random.default_rng(0)
    L, bits_row = 50, np.array([2.0, 3.0, 4.0, 6.0, 8.0])
    params = rng.integers(100, 10_000, L).astype(float)
    s = rng.lognormal(0, 1, L)
    err = params[:, None] * s[:, None] * 2.0 ** (-1.95 * bits_row)[None, :]
    bits = np.tile(bits_row, (L, 1))
    p = Problem([f"l{i}" for i in range(L)], [f"int{b:g}" for b in bits_row], err, params, bits,
                np.zeros_like(err), np.zeros_like(err), np.ones_like(err, bool), {"bits": 4.0})
    r = baq.solve(p)
    assert r.info["theta"] == pytest.approx(1.95, rel=1e-12)
    assert r.info["theta_by_family"]["int"] == pytest.approx(1.95, rel=1e-12)
    assert not p.violations(r.assignment)
    # the closed form: R_j - R_ref = log2(s_j / GM_w(s)) / theta before rounding; sensitive layers get more bits
    chosen = bits[np.arange(L), r.assignment]
    assert np.corrcoef(np.log(s), chosen)[0, 1] > 0.8


def test_baq_fits_each_family_its_own_theta_and_allocates_with_it():
    # Two families generated with different slopes: error = params * s_l * c_fam * 2^(-theta_fam * bits).
    # Layers 0..7 may use only int formats, layers 8..15 only nf ones (no cross-family free moves for
    # the fix-up), plus a lossless bf16 everywhere (one width, no error: no slope of its own).
    thetas, offset = {"int": 2.0, "nf": 1.0}, {"int": 1.0, "nf": 0.3}
    widths = [2.0, 3.0, 4.0, 5.0, 6.0]
    log2_s = np.array([0.2, 0.8, 1.4, 2.3])
    log2_s = np.concatenate([log2_s, -log2_s])            # pairs s, 1/s: GM(s) = 1 in each family
    names = [f"{fam}{w:g}" for fam in thetas for w in widths] + ["bf16"]
    fam_of = [fam for fam in thetas for _ in widths] + ["bf"]
    bits_row = np.array(widths * 2 + [16.0])
    L, F = 2 * len(log2_s), len(names)
    layer_fam = ["int"] * len(log2_s) + ["nf"] * len(log2_s)
    s = 2.0 ** np.concatenate([log2_s, log2_s])
    params = np.tile(np.array([1000.0, 3000.0, 500.0, 2000.0]), 4)  # equal within each pair s, 1/s
    err = np.zeros((L, F))
    mask = np.zeros((L, F), bool)
    for j, fam in enumerate(fam_of[:-1]):
        err[:, j] = params * s * offset[fam] * 2.0 ** (-thetas[fam] * bits_row[j])
        mask[:, j] = [lf == fam for lf in layer_fam]
    mask[:, -1] = True
    bits = np.tile(bits_row, (L, 1))
    zeros = np.zeros_like(err)
    p = Problem([f"l{i}" for i in range(L)], names, err, params, bits, zeros, zeros, mask, {"bits": 4.0})
    r = baq.solve(p)
    assert r.info["theta_by_family"]["int"] == pytest.approx(2.0, rel=1e-9)
    assert r.info["theta_by_family"]["nf"] == pytest.approx(1.0, rel=1e-9)
    assert "bf" not in r.info["theta_by_family"]                     # fell back to the pooled theta
    assert 1.0 < r.info["theta"] < 2.0                                # pooled: a mix of both slopes

    def by_hand(theta_of):
        # BAQ per family: R_l = 4 + log2(s_l / GM(s)) / theta_fam, rounded to the nearest width
        rate = 4.0 + np.concatenate([log2_s / theta_of["int"], log2_s / theta_of["nf"]])
        width = np.array(widths)[np.abs(np.array(widths)[None, :] - rate[:, None]).argmin(1)]
        return [f"{fam}{w:g}" for fam, w in zip(layer_fam, width)]

    # symmetric rates round to exactly 4 bits on average: nothing for the fix-up to change
    assert r.info["layers_changed_by_fixup"] == 0
    assert [names[j] for j in r.assignment] == by_hand(thetas)
    pooled = {fam: r.info["theta"] for fam in thetas}
    assert by_hand(pooled) != by_hand(thetas)                         # the pooled slope would allocate otherwise


def test_baq_and_lagrangian_reject_what_they_do_not_handle():
    p = random_problem(np.random.default_rng(1), 4, 3, ("bits", "latency"), tightness=0.5)
    with pytest.raises(QuantDSEError, match="baq allocates under a bits or memory budget only.*ilp, nas or greedy"):
        baq.solve(p)
    with pytest.raises(QuantDSEError, match="lagrangian handles one budget.*ilp, nas or greedy"):
        lagrangian.solve(p)


def test_nas_is_deterministic_with_a_seed():
    p = random_problem(np.random.default_rng(3), 40, 5, ("bits",), tightness=0.4)
    a, b = nas.solve(p, seed=7, steps=30), nas.solve(p, seed=7, steps=30)
    assert np.array_equal(a.assignment, b.assignment) and a.info == b.info


def test_lagrangian_certificate_on_a_realistic_table():
    # above max_core the result carries a gap: bound <= exact optimum (ILP) <= objective
    from bench.solvers import synthetic_problem

    p = synthetic_problem(226, budget_bits=3.7, seed=1)
    opt = ilp.solve(p)
    r = lagrangian.solve(p, max_core=10, repair_layers=8)
    assert r.status == "feasible" and not p.violations(r.assignment)
    assert r.bound <= opt.objective * (1 + 1e-9) and opt.objective <= r.objective * (1 + 1e-9)
    assert r.gap == pytest.approx((r.objective - r.bound) / r.objective)
    full = lagrangian.solve(p)
    assert full.status == "optimal" and full.objective == pytest.approx(opt.objective, rel=1e-7)
