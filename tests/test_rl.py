"""The RAMP-style SAC agent: env contract, budget safety, shipping without pickle, use from dse.search.

Oracles: `Problem.violations` (the constraint check every solver is held to) for budget
safety; the exact ILP for plan quality; a uniformly random policy for learning.
"""
import json
import pickle
import shutil

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from dse.search import main as search_main
from policies.env import AllocationEnv, Rollout
from policies.episode import Episode
from policies.measured import SHIFTS
from policies.policy import load_policy
from quantcore.cli import run_cli
from tests.problems import random_problem

KINDS = ("bits", "memory", "latency", "energy")


def _feasible_episode(seed, L, F, kinds, tightness):
    rng = np.random.default_rng(seed)
    ep = Episode(random_problem(rng, L, F, kinds=kinds, tightness=tightness))
    return ep


def test_env_passes_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    ep = _feasible_episode(0, 9, 5, ("bits", "latency"), 0.5)
    check_env(AllocationEnv(ep), skip_render_check=True)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), L=st.integers(1, 12), F=st.integers(1, 9),
       kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True),
       tightness=st.floats(0.0, 1.0), actions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_no_episode_ends_over_budget(seed, L, F, kinds, tightness, actions):
    ep = _feasible_episode(seed, L, F, tuple(kinds), tightness)
    if not ep.feasible:  # some limit below what any assignment reaches: nothing to check
        assert ep.problem.infeasible_message() or ep.problem.violations(np.zeros(L, dtype=int)) is not None
        return
    r = Rollout(ep)
    i = 0
    while not r.done:
        r.step(actions[i % len(actions)])
        i += 1
    assert ep.problem.violations(r.assignment) == []


def test_shaped_rewards_telescope_to_the_total_error():
    """Potential-based shaping: the episode's rewards sum to -L * (total - forecast at the start) / reference
    minus the deviation costs, whatever the actions (hand-derived telescoping sum)."""
    from policies.env import DEVIATION_COST

    ep = _feasible_episode(5, 12, 6, ("bits",), 0.4)
    env = AllocationEnv(ep)
    env.reset(seed=0)
    start = env.rollout.forecast_error()
    rng = np.random.default_rng(1)
    total, dev, done = 0.0, 0.0, False
    while not done:
        a = float(rng.random())
        _, r, done, _, info = env.step([a])
        total += r
        dev += DEVIATION_COST * (2 * a - 1) ** 2
    expect = -ep.L * (ep.problem.objective(info["assignment"]) - start) / ep.reference - dev
    assert total == pytest.approx(expect, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("kinds", [("bits",), ("bits", "latency")])
def test_following_the_forecast_earns_zero_and_a_deviation_its_exact_effect(kinds):
    """The potential is the forecast's own completion: action 0.5 pays exactly 0 at every step, and one
    deviation followed by the forecast pays -L * (its plan's error - the forecast plan's) / reference
    minus the deviation cost (oracle: the two plans' totals from Problem.objective)."""
    from policies.env import DEVIATION_COST

    ep = _feasible_episode(7, 14, 6, kinds, 0.4)
    for dev_at, dev_a in ((None, 0.5), (3, 0.0), (5, 1.0)):
        env = AllocationEnv(ep)
        env.reset(seed=0)
        rewards, done = [], False
        while not done:
            a = dev_a if env.rollout.l == dev_at else 0.5
            _, r, done, _, info = env.step([a])
            rewards.append(r)
        if dev_at is None:
            assert rewards == pytest.approx([0.0] * ep.L, abs=1e-12)
            forecast = ep.problem.objective(info["assignment"])
        else:
            got = ep.problem.objective(info["assignment"])
            expect = -ep.L * (got - forecast) / ep.reference - DEVIATION_COST
            assert rewards[dev_at] == pytest.approx(expect, rel=1e-9, abs=1e-12)
            assert all(r == pytest.approx(0.0, abs=1e-12) for i, r in enumerate(rewards) if i != dev_at)


def test_rollout_is_deterministic_and_feasible_on_a_held_out_model():
    from dse.pipeline import SearchRequest, prepare
    from dse.solvers import solve
    from policies.solver import solve as rl_solve

    prepared = prepare(SearchRequest(hw="a100-80gb", model="qwen2.5-7b"))
    problem = prepared.problem({"bits": 3.7})
    a = rl_solve(problem, layers=prepared.layers)
    b = rl_solve(problem, layers=prepared.layers)
    assert np.array_equal(a.assignment, b.assignment)
    assert np.array_equal(a.info["raw_assignment"], b.info["raw_assignment"])
    assert problem.violations(a.info["raw_assignment"]) == [] and problem.violations(a.assignment) == []
    assert a.objective <= a.info["raw_objective"]
    ilp = solve(problem, "ilp").objective
    assert a.objective >= ilp * (1 - 1e-9)  # the ILP is exact: nothing beats it
    assert a.objective <= 1.02 * ilp


def test_loading_never_unpickles(monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    policy = load_policy()
    assert policy.name == "ramp-sac" and len(policy.hash) == 16
    assert 0.0 <= policy.act(np.zeros(len(policy.scaler.mean), dtype=np.float32)) <= 1.0


@pytest.mark.parametrize("damage", ["truncate", "flip", "json"])
def test_damaged_policy_is_one_line_error(tmp_path, capsys, damage):
    from policies.policy import ZOO

    folder = tmp_path / "p"
    shutil.copytree(ZOO / load_policy().name, folder)
    blob = (folder / "policy.safetensors").read_bytes()
    if damage == "truncate":
        (folder / "policy.safetensors").write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        (folder / "policy.safetensors").write_bytes(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:])
    else:
        (folder / "policy.json").write_text('{"schema": "quantdse.policy/1", "name": 3', encoding="utf-8")
    code = run_cli(search_main, ["--hw", "a100-80gb", "--model", "opt-1.3b", "--budget", "4bits", "--method", "rl",
                                 "--policy", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")


def test_search_cli_plans_llama2_7b_within_budget(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert run_cli(search_main, ["--hw", "a100-80gb", "--model", "llama-2-7b", "--budget", "3.7bits",
                                 "--method", "rl", "--out", str(out), "--json"]) == 0
    plan = json.loads(out.read_text())
    s = plan["solver"]
    assert plan["method"] == "rl" and plan["totals"]["effective_bits"] <= 3.7 * (1 + 1e-9)
    assert s["policy"] == "ramp-sac" and len(s["policy_hash"]) == 16 and s["polish"] is True
    assert s["polished_objective"] <= s["raw_objective"]
    assert s["objective"] == pytest.approx(s["polished_objective"], rel=1e-9)
    capsys.readouterr()
    assert run_cli(search_main, ["--hw", "a100-80gb", "--model", "llama-2-7b", "--budget", "3.7bits",
                                 "--method", "rl", "--set", "polish=false", "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)["solver"]
    assert raw["polish"] is False and raw["objective"] == pytest.approx(s["raw_objective"], rel=1e-12)


def test_polish_key_is_rejected_for_other_methods(capsys):
    code = run_cli(search_main, ["--hw", "a100-80gb", "--model", "opt-1.3b", "--budget", "4bits",
                                 "--set", "polish=false"])
    assert code == 2 and "applies to --method rl only" in capsys.readouterr().err


def test_untrained_actor_follows_the_forecast_exactly():
    """The residual design: a fresh actor (mean head zeroed) plays 0.5, so its plan is the forecast-only plan."""
    import torch
    from stable_baselines3 import SAC

    from policies.policy import Policy, actor_tensors
    from policies.solver import rollout
    from policies.train import HIDDEN, start_at_forecast

    torch.manual_seed(0)
    eps = [_feasible_episode(s, 12, 6, kinds, 0.4) for s, kinds in ((1, ("bits",)), (2, ("bits", "latency")))]
    model = SAC("MlpPolicy", AllocationEnv(eps[0]), policy_kwargs={"net_arch": list(HIDDEN)}, seed=0, device="cpu")
    start_at_forecast(model)
    tensors, hidden = actor_tensors(model)
    assert np.abs(tensors["hidden.0.weight"]).max() > 0  # the hidden layers keep their random init
    policy = Policy(tensors, AllocationEnv(eps[0]).scaler, {"name": "t", "hash": "0", "architecture": {"hidden": hidden}})
    for ep in eps:
        forecast = _mean_raw_objective([(ep.problem, ())], lambda r: 0.5)[0]
        assert policy.act(np.ones(len(tensors["hidden.0.weight"][0]), np.float32)) == 0.5
        assert ep.problem.objective(rollout(policy, ep)) == forecast


def test_deterministic_rollout_deviates_only_past_the_confidence_gate():
    """Mean actions within 0.4 of 0.5 play the forecast; beyond it they act as in the env."""
    from policies.solver import ROLLOUT_DEAD_ZONE, rollout

    class Constant:
        scaler = AllocationEnv(_feasible_episode(0, 4, 3, ("bits",), 0.4)).scaler

        def __init__(self, a):
            self.a = a

        def act(self, obs):
            return self.a

    ep = _feasible_episode(4, 16, 6, ("bits",), 0.5)
    forecast = _mean_raw_objective([(ep.problem, ())], lambda r: 0.5)[0]
    for a in (0.5 - ROLLOUT_DEAD_ZONE + 0.01, 0.5 + ROLLOUT_DEAD_ZONE - 0.01):
        assert ep.problem.objective(rollout(Constant(a), ep)) == forecast
    for a in (0.0, 1.0):
        assert ep.problem.objective(rollout(Constant(a), ep)) == _mean_raw_objective([(ep.problem, ())], lambda r: a)[0]
    assert _mean_raw_objective([(ep.problem, ())], lambda r: 0.0)[0] != forecast  # the check can tell them apart


def _mean_raw_objective(problems, act):
    out = []
    for problem, ep_args in problems:
        r = Rollout(Episode(problem, *ep_args))
        while not r.done:
            r.step(act(r))
        out.append(problem.objective(r.assignment))
    return np.array(out)


@pytest.mark.slow
def test_short_training_is_deterministic_and_beats_a_random_policy():
    from dse.pipeline import SearchRequest, prepare
    from policies.policy import Policy, actor_tensors
    from policies.train import train

    kw = dict(seed=3, timesteps=1500, models=("opt-1.3b", "resnet-50"), hardware=("a100-80gb",), progress=False)
    model, scaler, record = train(**kw)
    tensors, hidden = actor_tensors(model)
    model2, _, _ = train(**kw)
    tensors2, _ = actor_tensors(model2)
    assert all(np.array_equal(tensors[k], tensors2[k]) for k in tensors)
    policy = Policy(tensors, scaler, {"name": "t", "hash": "0", "architecture": {"hidden": hidden}})
    prepared = prepare(SearchRequest(hw="a100-80gb", model="llama-3-8b"))
    problems = [(prepared.problem({"bits": b}), ()) for b in (2.6, 3.3, 4.1, 5.0)]
    trained = _mean_raw_objective(problems, lambda r: policy.act(policy.scaler(r.features())))
    rng = np.random.default_rng(0)
    random = np.mean([_mean_raw_objective(problems, lambda r: float(rng.random())) for _ in range(3)], axis=0)
    assert (trained / random).mean() < 1.0


@pytest.mark.slow
def test_measured_reward_mode_reports_both_metrics(tmp_path, capsys):
    """Train for 2 episodes on the real MiniLM; the returned plan is the better of the learned and the ILP plan
    on the held-out texts, and its reported metric matches dse.evaluate's own on the same reward texts."""
    from dse.evaluate import Evaluator

    out = tmp_path / "plan.json"
    code = run_cli(search_main, ["--hw", "a100-80gb", "--model", "all-minilm-l6-v2", "--budget", "3.5bits",
                                 "--method", "rl", "--reward", "measured", "--set", "episodes=2", "--set", "texts=8",
                                 "--set", "holdout=16", "--out", str(out)])
    assert code == 0
    plan = json.loads(out.read_text())
    s = plan["solver"]
    assert plan["totals"]["effective_bits"] <= 3.5 * (1 + 1e-9)
    assert s["reward"] == "measured" and s["metric"] == "cosine" and s["episodes"] == 2
    assert 0 < s["measured_heldout"] <= 1 and 0 < s["ilp_measured_heldout"] <= 1
    assert 0 < s["forecast_measured_heldout"] <= 1 and 0 < s["best_episode_measured_heldout"] <= 1
    shifts = [s[f"shift_{k}"] for k in SHIFTS]
    assert all(-1 <= z <= 1 for z in shifts)  # the learned prices, in z = 2 * action - 1 units
    assert "held-out texts" in capsys.readouterr().out
    # the reported reward-text metric is the evaluator's own for that plan, on the same 8 texts
    from dse.calibration import read_texts

    texts = read_texts(None)
    order = np.random.default_rng(0).permutation(len(texts))
    ev = Evaluator("all-minilm-l6-v2", [texts[i] for i in sorted(order[:8])])
    formats = {l["name"]: l["format"] for l in plan["layers"]}
    returned = s["measured"] if s["returned"] == "rl" else s["ilp_measured"]
    assert ev.metrics(formats)["cosine"] == pytest.approx(returned, abs=1e-6)
    # never a worse plan than the ILP's on the held-out texts, and the margin is the one reported
    assert s["returned_margin_heldout"] == pytest.approx(s["measured_heldout"] - s["ilp_measured_heldout"])
    assert (s["returned"] == "rl") == (s["returned_margin_heldout"] > 0)


def _shift_env(seed=0, L=14, F=6, kinds=("bits",), tightness=0.4):
    from policies.episode import LayerInfo
    from policies.measured import PriceShiftEnv

    problem = random_problem(np.random.default_rng(seed), L, F, kinds=kinds, tightness=tightness)
    roles = ("q", "k", "v", "o", "up", "down", "")
    infos = [LayerInfo(role=roles[i % len(roles)]) for i in range(L)]
    return PriceShiftEnv(problem, infos, load_policy()), infos


def test_price_shift_env_passes_the_checker_and_action_half_is_the_shipped_rollout():
    """Measured mode's one-step env: gymnasium's checker; at action 0.5 the table is unchanged, so the plan is
    exactly the shipped policy's own rollout (`policies.solver.rollout`) on the problem."""
    from gymnasium.utils.env_checker import check_env
    from policies.solver import rollout

    env, infos = _shift_env()
    check_env(env, skip_render_check=True)
    want = rollout(load_policy(), Episode(env.problem, infos, reference=1.0))
    assert np.array_equal(env.plan(np.full(len(SHIFTS), 0.5)), want)


def test_price_shift_weights_by_hand():
    """attn_out = 1 multiplies the o-projection rows by 10**SHIFT_DECADES and nothing else; depth = 1 tilts the
    first layer by 10**-SHIFT_DECADES and the last by 10**+SHIFT_DECADES (hand-computed)."""
    from policies.measured import SHIFT_DECADES

    env, infos = _shift_env(L=7)
    a = np.full(len(SHIFTS), 0.5)
    a[SHIFTS.index("attn_out")] = 1.0
    want = np.where([i.role == "o" for i in infos], 10.0 ** SHIFT_DECADES, 1.0)
    assert np.allclose(env.weights(a), want)
    a = np.full(len(SHIFTS), 0.5)
    a[SHIFTS.index("depth")] = 1.0
    assert np.allclose(env.weights(a), 10.0 ** (SHIFT_DECADES * np.linspace(-1, 1, 7)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=2, unique=True),
       tightness=st.floats(0.05, 1.0),
       action=st.lists(st.floats(0.0, 1.0), min_size=len(SHIFTS), max_size=len(SHIFTS)))
def test_every_price_shift_plan_is_within_budget(seed, kinds, tightness, action):
    env, _ = _shift_env(seed, L=9, F=5, kinds=tuple(kinds), tightness=tightness)
    assume(env.episode.feasible)
    _, _, done, _, info = env.step(np.array(action, dtype=np.float32))
    assert done and env.problem.violations(info["assignment"]) == []


@pytest.mark.slow
def test_price_shift_sac_learns_a_hidden_reweighting():
    """A non-additive stand-in with a known answer: the reward is the error under a hidden table (the proxy
    table with its attention-out and MLP-out rows x 30, the pooler's x 0.01). Oracle: the exact ILP on the hidden
    table. After 96 SAC episodes the fine-tuned actor's plan is better on the hidden table than the ILP plan of
    the proxy table and than the forecast; and training is deterministic for a seed."""
    import dataclasses

    from dse.budget import Budget
    from dse.pipeline import SearchRequest, prepare
    from dse.solvers import solve
    from policies.episode import layer_infos
    from policies.measured import PriceShiftEnv, learn_shifts

    prepared = prepare(SearchRequest(hw="a100-80gb", model="all-minilm-l6-v2", budget=Budget.bits(3.5)))
    problem = prepared.problem({"bits": 3.5})
    infos = layer_infos(prepared.layers)
    hidden = np.array([30.0 if i.role in ("o", "dense", "down", "fc2") and "pooler" not in n else
                       0.01 if "pooler" in n else 1.0 for i, n in zip(infos, problem.layer_names)])
    truth = dataclasses.replace(problem, error=problem.error * hidden[:, None])
    best = solve(truth, "ilp").objective
    proxy_ilp = truth.objective(solve(problem, "ilp").assignment)

    def run(seed):
        env = PriceShiftEnv(problem, infos, load_policy(), lambda a: -100.0 * (truth.objective(a) / proxy_ilp - 1))
        forecast = truth.objective(env.plan(np.full(len(SHIFTS), 0.5)))
        return forecast, learn_shifts(env, 96, seed), env

    forecast, action, env = run(0)
    learned = truth.objective(env.plan(action))
    assert best <= learned < min(proxy_ilp, forecast)
    assert (proxy_ilp - learned) > 0.5 * (proxy_ilp - best)  # seed 0: 80 % of the gap to the optimum closed
    assert np.array_equal(action, run(0)[1])
