"""Measured-reward mode (beyond RAMP): fine-tune the shipped policy on a real model's end metric.

    python -m dse.search --hw a100-80gb --model all-minilm-l6-v2 --budget 3.5bits --method rl --reward measured

The ILP is exact only because the error is a sum of per-layer errors. Here the reward
is not additive: it is the measured embedding fidelity (dse.evaluate.Evaluator, cosine
to the fp model) of all-MiniLM-L6-v2 after fake quantization with the episode's plan.

- The shipped calibration texts are split (seeded) into `texts` for the reward and
  `holdout` others for the report, so the comparison is not scored on the texts the
  search selected on.
- Reward, paid at the end of each episode: 100 x (metric - metric of the ILP plan),
  sign-flipped when lower is better (percentage points above the ILP; 0 = as good).
- SAC starts from the shipped actor (critics fresh) and runs `episodes` episodes on
  this one problem; every plan is budget-safe by the env's projection. The plan
  returned is the best measured one among the shipped policy's rollout, every
  fine-tuning episode and the fine-tuned policy's deterministic rollout (the ILP plan
  itself is not a candidate).
- The solver section reports the metric of that plan and of the ILP plan, on the
  reward texts and on the held-out texts.
"""
from __future__ import annotations

import time

import numpy as np

from quantcore.errors import QuantDSEError
from dse.solvers.result import SolveResult
from policies.env import AllocationEnv
from policies.episode import Episode, layer_infos
from policies.policy import load_policy
from policies.solver import rollout

OPTION_DEFAULTS = {"episodes": 16, "texts": 32, "holdout": 96}


def _int_option(opts: dict, key: str) -> int:
    value = opts.get(key, OPTION_DEFAULTS[key])
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise QuantDSEError(f"--set {key}={value}: use a whole number >= 1")
    return n


class MeasuredMetric:
    """The evaluator on the reward texts and on held-out texts, with a cache per plan."""

    def __init__(self, model, problem, n_texts: int, n_holdout: int, seed: int):
        from dse.calibration import read_texts
        from dse.evaluate import Evaluator, embedding_metrics

        texts = read_texts(None)
        if n_texts + n_holdout > len(texts):
            raise QuantDSEError(f"texts + holdout = {n_texts + n_holdout} exceeds the {len(texts)} shipped "
                                "calibration texts: lower --set texts or --set holdout")
        order = np.random.default_rng(seed).permutation(len(texts))
        self.ev = Evaluator(model, [texts[i] for i in sorted(order[:n_texts])])
        held = [texts[i] for i in sorted(order[n_texts:n_texts + n_holdout])]
        self._held_batches = self.ev.encoder.batches(held)
        self._held_ref = self.ev.encoder.embed(self._held_batches)
        self._embedding_metrics = embedding_metrics
        self.problem = problem
        self.sign = 1.0 if self.ev.higher_is_better else -1.0
        self.name = self.ev.metric_name
        self.n_texts, self.n_holdout = n_texts, n_holdout
        self.cache: dict = {}

    def formats(self, assignment) -> dict:
        return {n: self.problem.format_names[int(f)] for n, f in zip(self.problem.layer_names, assignment)}

    def train(self, assignment) -> float:
        key = tuple(int(f) for f in assignment)
        if key not in self.cache:
            self.cache[key] = float(self.ev.metrics(self.formats(assignment))[self.name])
        return self.cache[key]

    def heldout(self, assignment) -> float:
        with self.ev.apply(self.formats(assignment)) as encoder:
            emb = encoder.embed(self._held_batches)
        return float(self._embedding_metrics(emb, self._held_ref)[self.name])


def _load_actor(model, policy) -> None:
    """Copy the shipped actor's tensors into an SB3 SAC actor of the same architecture."""
    import torch

    linears = [m for m in model.actor.latent_pi if m.__class__.__name__ == "Linear"]
    with torch.no_grad():
        for i, lin in enumerate(linears):
            lin.weight.copy_(torch.from_numpy(policy.tensors[f"hidden.{i}.weight"]))
            lin.bias.copy_(torch.from_numpy(policy.tensors[f"hidden.{i}.bias"]))
        model.actor.mu.weight.copy_(torch.from_numpy(policy.tensors["mu.weight"]))
        model.actor.mu.bias.copy_(torch.from_numpy(policy.tensors["mu.bias"]))


def finetune(problem, ilp_assignment, model_name, policy=None, layers=None, weights=None, seed: int = 0,
             **options) -> SolveResult:
    """Fine-tune on the measured metric (module docstring); returns the best measured plan."""
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.utils import set_random_seed
    from tqdm import tqdm

    started = time.perf_counter()
    episodes, n_texts, n_hold = (_int_option(options, k) for k in ("episodes", "texts", "holdout"))
    pol = policy if hasattr(policy, "act") else load_policy(policy)
    metric = MeasuredMetric(model_name, problem, n_texts, n_hold, seed)
    ep = Episode(problem, layer_infos(layers, weights) if layers is not None else None, reference=1.0)
    ilp_train = metric.train(ilp_assignment)
    raw = rollout(pol, ep)
    candidates = {"shipped policy": raw}
    bar = tqdm(total=episodes, desc="measured fine-tuning", unit="episode")

    def reward(assignment):
        m = metric.train(assignment)
        candidates[f"episode {len(candidates)}"] = assignment
        bar.update(1)
        return 100.0 * metric.sign * (m - ilp_train)

    torch.set_num_threads(1)
    set_random_seed(seed)
    env = AllocationEnv(ep, pol.scaler, reward_fn=reward)
    env.reset(seed=seed)
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": list(pol.meta["architecture"]["hidden"])},
                learning_rate=3e-4, buffer_size=episodes * ep.L + 1, learning_starts=ep.L, batch_size=64,
                gamma=0.99, seed=seed, device="cpu", verbose=0)
    _load_actor(model, pol)
    model.learn(total_timesteps=episodes * ep.L)
    bar.close()
    env.reward_fn = None  # the deterministic rollout below is scored with the others
    obs, _ = env.reset()
    done = False
    while not done:  # the fine-tuned actor, deterministically (its reward is measured too)
        action, _ = model.predict(obs, deterministic=True)
        obs, _, done, _, info = env.step(action)
    candidates["fine-tuned policy"] = info["assignment"]
    scored = {k: metric.sign * metric.train(a) for k, a in candidates.items()}
    best_key = max(scored, key=lambda k: (scored[k], -list(scored).index(k)))
    best = np.asarray(candidates[best_key])
    info = {"reward": "measured", "metric": metric.name, "episodes": episodes, "best_plan": best_key,
            "reward_texts": n_texts, "heldout_texts": n_hold, "evaluations": len(metric.cache),
            "measured": metric.train(best), "measured_heldout": metric.heldout(best),
            "ilp_measured": ilp_train, "ilp_measured_heldout": metric.heldout(ilp_assignment),
            "shipped_policy_measured": metric.train(raw), "policy": pol.name, "policy_hash": pol.hash,
            "ilp_objective": problem.objective(ilp_assignment)}
    better = metric.sign * (info["measured_heldout"] - info["ilp_measured_heldout"]) > 0
    message = (f"measured {metric.name} on {n_hold} held-out texts: rl {info['measured_heldout']:.5f} vs ilp "
               f"{info['ilp_measured_heldout']:.5f} ({'rl better' if better else 'ilp better or equal'}); "
               f"on the {n_texts} reward texts rl {info['measured']:.5f} vs ilp {ilp_train:.5f}")
    return SolveResult("feasible", best, problem.objective(best), float("nan"), time.perf_counter() - started, "rl",
                       message, info=info)
