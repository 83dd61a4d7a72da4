"""The SAC agent zero-shot on held-out models: objective relative to the exact ILP, beside greedy, BAQ and NAS.

    python bench/rl.py [--policy PATH] [--hw a100-80gb] [--budgets 2.6,3.2,3.7,4.5] [--quick]
    python bench/rl.py --measured [--seeds 0,1,2] [--episodes 192] [--budgets 3.0,3.5,4.0]

--measured: the measured-reward mode (policies/measured.py) on all-minilm-l6-v2 instead,
once per seed (each seed also draws its own split of reward and held-out texts), through
dse.search as `--reward measured` runs it: the measured cosine of the ILP plan, the forecast,
the fine-tuned policy's deterministic plan and the best exploration episode on the held-out
texts, and of the ILP and fine-tuned plans on the reward texts.

--oracle: two more rows, "forecast+upgrade" (the forecast, then greedy upgrades: the
polish's first step) and "one-step oracle" (at each layer the best of actions 0, 0.5, 1,
each scored by the exact error of its forecast completion: the policy a perfect gamma-0
critic would give), and the size of the one-step advantages it finds.

--quick: the first two held-out models and (unless --budgets) budgets 2.6,3.7 only (12 problems, a few
minutes on a loaded machine instead of about 15).

Held-out models (never in the training mix, policies.pool.HELD_OUT) on one target,
each with its data-free prior table and with a random table (policies.pool's synthetic
tables, seeded here, never seen in training), at several average-bit budgets and one
latency limit. Prints, per method, the median and worst objective / ILP objective and
whether any plan broke a limit; the rollout time per model; the policy's training time.
"forecast only" is the ablation that always plays action 0.5 (the env's balance-price
forecast, no learned deviation): what the learned policy adds or loses against it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from quantcore.errors import QuantDSEError
from dse.pipeline import SearchRequest, prepare
from dse.api import run
from dse.budget import Budget
from dse.solvers import greedy, solve
from policies.policy import load_policy
from policies.pool import random_limits, synthetic_errors, sub_problem
from policies.env import Rollout
from policies.episode import Episode, layer_infos
from policies.solver import rollout, solve as rl_solve

MODELS = ("llama-3-8b", "qwen2.5-7b", "mistral-7b", "mixtral-8x7b")
BASELINES = ("greedy", "baq", "nas")


class _Forecast:
    """The ablation: action 0.5 at every step (the env's forecast, no learned deviation)."""

    def __init__(self, policy):
        self.scaler = policy.scaler

    def act(self, obs) -> float:
        return 0.5


def one_step_oracle(ep: Episode) -> tuple[np.ndarray, list]:
    """The plan of a perfect one-step critic over actions (0, 0.5, 1), and each step's best advantage > 0."""
    r = Rollout(ep)
    gains = []
    while not r.done:
        base, best, best_a = r.forecast_error(), 0.0, 0.5
        for a in (0.0, 1.0):
            _, advantage = r.copy().step_advantage(a)
            if advantage > best + 1e-12 * base:
                best, best_a = advantage, a
        if best > 0:
            gains.append(best)
        r.step(best_a)
    return r.assignment, gains


def cases(hw: str, budgets, seed: int, models=MODELS):
    """(label, problem, layers) for every model x table x budget."""
    rng = np.random.default_rng(seed)
    for model in models:
        prepared = prepare(SearchRequest(hw=hw, model=model))
        base = prepared.problem({})
        rows, cols = np.arange(base.shape[0]), np.arange(base.shape[1])
        for table in ("prior", "random"):
            error = None if table == "prior" else synthetic_errors(rng, base)
            for b in budgets:
                yield f"{model} {table} {b}bits", sub_problem(base, rows, cols, error, {"bits": b}), prepared.layers
            limits = random_limits(rng, sub_problem(base, rows, cols, error), ["latency"])
            yield f"{model} {table} latency", sub_problem(base, rows, cols, error, limits), prepared.layers


def measured(args) -> None:
    """--measured: the fine-tuned price-shift agent vs the ILP plan on held-out texts, per seed and budget."""
    rows = []
    for budget in args.budgets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            t0 = time.perf_counter()
            plan = run(SearchRequest(hw=args.hw, model="all-minilm-l6-v2", budget=Budget.bits(float(budget)),
                                     method="rl-measured", seed=seed, policy=args.policy,
                                     solver_options={"episodes": args.episodes}))
            rows.append((budget, seed, plan["solver"], time.perf_counter() - t0))
    i0 = rows[0][2]
    print(f"measured reward on all-minilm-l6-v2 @ {args.hw}: {args.episodes} SAC episodes per run, cosine to fp on "
          f"{i0['heldout_texts']} held-out texts (reward texts: {i0['reward_texts']}); policy {i0['policy']}")
    print(f"  {'bits':>5s} {'seed':>4s} {'ilp':>8s} {'forecast':>9s} {'rl':>8s} {'best ep':>8s}   reward texts: "
          f"{'ilp':>7s} {'rl':>7s}   mean reward, 1st / last quarter  seconds")
    for budget, seed, i, sec in rows:
        print(f"  {budget:>5s} {seed:4d} {i['ilp_measured_heldout']:8.4f} {i['forecast_measured_heldout']:9.4f} "
              f"{i['measured_heldout']:8.4f} {i['best_episode_measured_heldout']:8.4f}   {'':13s} "
              f"{i['ilp_measured']:7.4f} {i['measured']:7.4f}   {100 * i['reward_first_quarter']:+8.1f} / "
              f"{100 * i['reward_last_quarter']:+6.1f} % of ILP loss  {sec:5.0f}")
    gain = np.array([i["measured_heldout"] - i["ilp_measured_heldout"] for _, _, i, _ in rows])
    vs_forecast = np.array([i["measured_heldout"] - i["forecast_measured_heldout"] for _, _, i, _ in rows])
    print(f"rl - ilp on held-out texts: median {np.median(gain):+.4f}, worst {gain.min():+.4f}, rl better in "
          f"{int((gain > 0).sum())} of {len(gain)} runs; rl - forecast: median {np.median(vs_forecast):+.4f}, "
          f"worst {vs_forecast.min():+.4f}; median {np.median([r[3] for r in rows]):.0f} s per run")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.rl", description=__doc__.split("\n")[0])
    p.add_argument("--policy")
    p.add_argument("--hw", default="a100-80gb")
    p.add_argument("--budgets", help="average bits, comma-separated (default 2.6,3.2,3.7,4.5; --measured: "
                   "3.0,3.5,4.0; --quick: 2.6,3.7)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 held-out models (and budgets 2.6,3.7: 12 problems)")
    p.add_argument("--measured", action="store_true", help="the measured-reward mode on all-minilm-l6-v2 instead")
    p.add_argument("--seeds", default="0,1,2", help="--measured: fine-tuning seeds")
    p.add_argument("--episodes", type=int, default=192, help="--measured: SAC episodes per run")
    p.add_argument("--oracle", action="store_true", help="add forecast+upgrade and the one-step oracle (slow)")
    args = p.parse_args(argv)
    if args.measured:
        args.budgets = args.budgets or "3.0,3.5,4.0"
        measured(args)
        return 0
    models = MODELS[:2] if args.quick else MODELS
    args.budgets = args.budgets or ("2.6,3.7" if args.quick else "2.6,3.2,3.7,4.5")
    policy = load_policy(args.policy)
    extra = ("forecast+upgrade", "one-step oracle") if args.oracle else ()
    ratios: dict = {m: [] for m in ("rl raw", "rl polished", "forecast only", *extra, *BASELINES)}
    helpful: list = []
    over: dict = {m: 0 for m in ratios}
    rollout_s: dict = {}
    n = 0
    for label, problem, layers in cases(args.hw, [float(b) for b in args.budgets.split(",")], args.seed, models):
        ilp = solve(problem, "ilp").objective
        res = rl_solve(problem, policy=policy, layers=layers)
        rollout_s.setdefault(label.split()[0], []).append(res.info["rollout_seconds"])
        ep = Episode(problem, layer_infos(layers), reference=1.0)
        plans = {"rl raw": res.info["raw_assignment"], "rl polished": res.assignment,
                 "forecast only": rollout(_Forecast(policy), ep)}
        if args.oracle:
            plans["forecast+upgrade"] = greedy.upgrade(problem, plans["forecast only"], 2.0)
            plans["one-step oracle"], gains = one_step_oracle(ep)
            helpful.append((label, np.median(gains) / ilp if gains else 0.0, len(gains), ep.L))
        for m in BASELINES:
            try:
                plans[m] = solve(problem, m, seed=0).assignment
            except QuantDSEError:  # baq takes bits or memory budgets only
                continue
        for m, a in plans.items():
            ratios[m].append(problem.objective(a) / ilp)
            over[m] += bool(problem.violations(a))
        n += 1
    print(f"zero-shot on {len(models)} held-out models x (prior, random table) x {args.budgets} bits + 1 latency "
          f"limit on {args.hw}: {n} problems; objective / ILP objective")
    w = max(14, *(len(m) for m in ratios))
    print(f"  {'method':{w}s} {'plans':>6s} {'median':>8s} {'mean':>8s} {'worst':>8s} {'within 1%':>10s} "
          f"{'within 2%':>10s} {'over budget':>12s}")
    for m, r in ratios.items():
        r = np.array(r)
        print(f"  {m:{w}s} {len(r):6d} {np.median(r):8.4f} {r.mean():8.4f} {r.max():8.4f} {np.mean(r <= 1.01):10.0%} "
              f"{np.mean(r <= 1.02):10.0%} {over[m]:12d}")
    for label, g, n, L in helpful:
        print(f"  one-step oracle, {label}: {n} helpful deviations of {L} steps, median advantage {g:.2g} x ILP "
              f"objective = {g * L:.3g} reward units")
    print("rollout seconds (median per model): "
          + ", ".join(f"{k} {np.median(v):.3f}" for k, v in rollout_s.items()))
    t = policy.meta.get("training", {})
    print(f"policy {policy.name} ({policy.hash}): trained {t.get('timesteps')} steps in {t.get('seconds')} s "
          f"(seed {t.get('seed')}, {t.get('torch_threads')} torch thread)")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"bench time {time.perf_counter() - t0:.0f} s")
    raise SystemExit(code)
