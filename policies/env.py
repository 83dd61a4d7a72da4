"""The allocation environment (gymnasium): an episode walks a Problem's layers in order.

Step l chooses layer l's format. The action (one float in [0, 1]) picks a point on the
layer's (cost, error) hull, ordered by cost (so by effective bits), relative to a
forecast: the hull point the layer takes at the balance price b (feature 26: the price
at which the layers still to come, all priced alike, would just fit the room left).
The action moves round((2 * action - 1) * STEPS) hull points from the forecast (0.3 to
0.7: the forecast itself; above: the next costlier hull point, less error; below: the
next cheaper one), and
the format then comes through the budget-safe projection of `policies.episode`, so no
episode can end over any limit (bits, memory, latency, energy). The forecast is what a
receding-horizon Lagrangian would do; the agent learns when to deviate from it.

Observation: N_FEATURES floats, the same size for any number of candidate formats.
The per-format error and cost rows enter through summaries of the layer's
(cost, error) hull in the normalised units of `policies.episode`:

 0 position         layer index / (L - 1)
 1-4 role           one-hot: attention in (q/k/v), attention out (o), MLP in (gate/up/fc1),
                    MLP out (down/fc2); all zero for other kinds (lm-head, conv, ...)
 5 relative size    log10(params / mean params of the model's layers)
 6 log params       log10(params)
 7 fan-in           log10(k), the grouping axis (0 when unknown)
 8 fan-out          log10(n)
 9 weight tails     log1p(excess kurtosis of the weights), 0 without weights
10 has weights      1 when 9 comes from real weights
11 sensitivity      log10(layer's error range / mean error range)
12 cost share       log10(layer's normalised cost range / mean cost range)
13 first price      log10 slope of the layer's first hull segment (price below which it leaves
                    its cheapest format)
14 last price       log10 slope of its last hull segment (price below which it takes its best)
15 hull size        log2(formats on the hull)
16 layers left      (L - l) / L
17 params left      share of the weights in layers l..
18 budget left      headroom above the fallback still unspent, as a fraction of what the
                    layers l.. could use (min over limits)
19 bits so far      where the layers done sit between their cheapest and costliest bits
20 budget           feature 18 at the start of the episode (how tight the budget is)
21 last action      the previous action (0.5 at step 0)
22 pace             log10 of (what layers l.. would spend above the fallback at the last
                    step's balance price) / (the headroom left), max over limits (at step 0:
                    the price 10**feature 24)
23-25 price spread  cost-weighted 25/50/75 % quantiles of every hull segment's log10 slope
26 balance          the balance price b above, as a number in [0, 1] (`policies.episode`)

Reward: the terminal reward is -L * (total error) / reference, where reference is the
greedy plan's total error of the same problem and L the number of layers (fixed
normalisations: a step's reward is then about -1 on every model, the scale SAC's
entropy temperature is tuned for; at -1/L per step the entropy bonus drowns the error).
It is paid out as it accrues: step l gives -L * error[l, f] / reference. The sum is the
terminal reward exactly, so this part leaves the optimal policy unchanged and only
gives the critic a dense signal. On top, potential-based shaping (Ng, Harada and
Russell, ICML 1999; gamma = 1, potential 0 at the end, so the optimal policy is again
unchanged) with potential -L * forecast_error(s) / reference, where forecast_error is
the error the layers still to come add if the episode follows the forecast from s (an
exact completion with action 0.5, not an estimate): step l pays
-L * (error[l, f] + forecast_error(s') - forecast_error(s)) / reference. Following the
forecast therefore earns exactly 0 at every step, and a deviation earns its exact
advantage over the forecast plan (if the forecast takes over after it) at once, not tens
of steps later: a well-conditioned signal, and with gamma = 0 the learned policy is a
one-step policy improvement of the forecast (a rollout algorithm, Bertsekas).
(An earlier version used the forecast's unconstrained price choices as the potential;
its bias made cheaper deviations look good and SAC collapsed to the cheap end.)
One shaping term does change the optimum: each step also pays
-DEVIATION_COST * (2 * action - 1)**2, a small price on leaving the forecast. A hull step
changes the error in jumps, so the critic's gradient in the action is flat inside a
step and noisy at its edges; this term gives the actor a smooth pull to the forecast
and leaves it only where the critic sees a real gain. With `reward_fn`, steps pay
0 and the last step pays reward_fn(assignment) (the measured-metric mode).
"""
from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np

from policies.episode import MU_LO, ROLE_INDEX, Episode, action_for_price, suffix_sums

N_FEATURES = 27
STEPS = 1.25  # the action moves round((2a - 1) * STEPS) hull points off the forecast: -1, 0 or +1
DEVIATION_COST = 0.1  # per-step reward cost of leaving the forecast, times (2a - 1)**2
FEATURE_NAMES = ("position", "role_attn_in", "role_attn_out", "role_mlp_in", "role_mlp_out", "relative_size",
                 "log_params", "fan_in", "fan_out", "weight_tails", "has_weights", "sensitivity", "cost_share",
                 "first_price", "last_price", "hull_size", "layers_left", "params_left", "budget_left",
                 "bits_so_far", "budget", "last_action", "pace", "price_q25", "price_q50", "price_q75", "balance")
CLIP = 10.0


class Rollout:
    """The state of one episode: spend per limit, choices so far, and the features of the current layer."""

    def __init__(self, ep: Episode):
        self.ep = ep
        self.l = 0
        self.used = np.zeros(len(ep.rhs))
        self.assignment = np.zeros(ep.L, dtype=np.int64)
        self.t0 = ep.slack(0, self.used)
        self.last_action = 0.5
        self.last_balance = 10.0 ** ep.slope_quantiles[1]  # a price
        params = ep.problem.params
        self._params_left = suffix_sums(params) / params.sum()
        self._mean_params = float(params.mean())
        self._mean_err = max(float(ep.err_range.mean()), 1e-300)
        self._mean_cost = max(float(ep.cost_range.mean()), 1e-300)
        bits = ep.problem.masked(ep.problem.bits)
        self._b_lo = params * bits.min(1)
        self._b_hi = params * np.where(ep.problem.mask, ep.problem.bits, -np.inf).max(1)
        self._b_used = 0.0
        self._balance = None
        self._tail = None
        self._static = self._static_features()

    def _static_features(self) -> np.ndarray:
        """Features 0-15 and 23-25 of every layer (they do not depend on the choices)."""
        ep = self.ep
        L = ep.L
        out = np.zeros((L, N_FEATURES))
        out[:, 0] = np.arange(L) / max(L - 1, 1)
        params = ep.problem.params
        for i, info in enumerate(ep.infos):
            g = ROLE_INDEX.get(info.role)
            if g is not None:
                out[i, 1 + g] = 1.0
            k = info.k or np.sqrt(params[i])
            n = info.n or params[i] / max(k, 1)
            out[i, 7], out[i, 8] = np.log10(max(k, 1)), np.log10(max(n, 1))
            if np.isfinite(info.kurtosis):
                out[i, 9], out[i, 10] = np.log1p(max(info.kurtosis, 0.0)), 1.0
        out[:, 5] = np.log10(np.maximum(params, 1) / max(self._mean_params, 1))
        out[:, 6] = np.log10(np.maximum(params, 1))
        out[:, 11] = np.log10(np.maximum(ep.err_range, 1e-12 * self._mean_err) / self._mean_err)
        out[:, 12] = np.log10(np.maximum(ep.cost_range, 1e-12 * self._mean_cost) / self._mean_cost)
        out[:, 13], out[:, 14] = ep.first_slope, ep.last_slope
        out[:, 15] = np.log2(ep.hull_points)
        out[:, 23:26] = ep.slope_quantiles
        return out

    def features(self) -> np.ndarray:
        ep, l = self.ep, min(self.l, self.ep.L - 1)
        x = self._static[l].copy()
        x[16] = (ep.L - self.l) / ep.L
        x[17] = self._params_left[self.l]
        x[18] = ep.slack(self.l, self.used) if self.l < ep.L else 0.0
        done_lo, done_hi = self._b_lo[:self.l].sum(), self._b_hi[:self.l].sum()
        x[19] = (self._b_used - done_lo) / (done_hi - done_lo) if done_hi > done_lo else 0.0
        x[20] = self.t0
        x[21] = self.last_action
        x[22] = self._pace()
        x[26] = action_for_price(max(self.balance(), 10.0 ** MU_LO))
        return np.clip(x, -CLIP, CLIP)

    def _pace(self) -> float:
        ep, l = self.ep, self.l
        if l >= ep.L or not len(ep.rhs):
            return 0.0
        pick = ep.choices_at(self.last_balance, l)
        rows = np.arange(l, ep.L)
        fb = ep.fallback[l:]
        worst = -3.0
        for k, coef in enumerate(ep.coefs):
            extra = float((coef[rows, pick] - coef[rows, fb]).sum())
            room = float(ep.rhs[k] - self.used[k] - ep.reserve[k, l])
            scale = 1e-9 * ep.R[k]
            worst = max(worst, float(np.log10((max(extra, 0.0) + scale) / (max(room, 0.0) + scale))))
        return float(np.clip(worst, -3.0, 3.0))

    def balance(self) -> float:
        """The balance price of the current layer (cached: features and step both need it)."""
        if self._balance is None or self._balance[0] != self.l:
            self._balance = (self.l, self.ep.balance_price(self.l, self.used))
        return self._balance[1]

    def forecast_error(self) -> float:
        """Error layers l.. add if the episode follows the forecast from here (0 at the end): the potential.

        An exact completion, not an estimate: the same steps `step(0.5)` would take
        (balance price, its hull point, the projection). Cached per layer.
        """
        ep, l = self.ep, self.l
        if l >= ep.L:
            return 0.0
        if self._tail is not None and self._tail[0] == l:
            return self._tail[1]
        used = self.used.copy()
        total = 0.0
        for i in range(l, ep.L):
            mu = self.balance() if i == l else ep.balance_price(i, used)
            f = ep.project(i, int(ep.hull[i][ep.hull_position(i, mu)]), used)
            total += float(ep.problem.error[i, f])
            for k, coef in enumerate(ep.coefs):
                used[k] += coef[i, f]
        self._tail = (l, total)
        return total

    def target(self, action: float) -> int:
        """The hull point (a format index) an action asks for, before the projection."""
        ep, l = self.ep, self.l
        h = ep.hull[l]
        pos = ep.hull_position(l, self.balance()) + int(round((2.0 * float(np.clip(action, 0, 1)) - 1.0) * STEPS))
        return int(h[min(max(pos, 0), len(h) - 1)])

    def step(self, action: float) -> int:
        """Apply an action to the current layer; returns the format index chosen."""
        ep, l = self.ep, self.l
        f = ep.project(l, self.target(action), self.used)
        balance = self.balance()
        self.assignment[l] = f
        for k, coef in enumerate(ep.coefs):
            self.used[k] += coef[l, f]
        self._b_used += ep.problem.params[l] * ep.problem.bits[l, f]
        self.last_action = float(np.clip(action, 0.0, 1.0))
        self.last_balance = balance
        self.l += 1
        return f

    def step_advantage(self, action: float) -> tuple[int, float]:
        """`step`, and the step's exact advantage over the forecast: the forecast completion's error before
        it minus (the error of the format chosen + the forecast completion's error after it)."""
        before = self.forecast_error()
        f = self.step(action)
        return f, before - (float(self.ep.problem.error[self.l - 1, f]) + self.forecast_error())

    def copy(self) -> "Rollout":
        """An independent rollout at the same state (the per-layer caches stay valid: keyed by layer)."""
        other = copy.copy(self)
        other.used, other.assignment = self.used.copy(), self.assignment.copy()
        return other

    @property
    def done(self) -> bool:
        return self.l >= self.ep.L


class FeatureScaler:
    """obs = clip((features - mean) / std): fitted on training rollouts, shipped in the policy's JSON."""

    def __init__(self, mean=None, std=None):
        self.mean = np.zeros(N_FEATURES) if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = np.ones(N_FEATURES) if std is None else np.asarray(std, dtype=np.float64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / self.std, -CLIP, CLIP).astype(np.float32)

    @classmethod
    def fit(cls, samples: np.ndarray) -> "FeatureScaler":
        std = samples.std(axis=0)
        return cls(samples.mean(axis=0), np.where(std > 1e-6, std, 1.0))

    def as_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}


class AllocationEnv(gym.Env):
    """Gymnasium env over episodes drawn by `sampler(rng) -> Episode` (or one fixed Episode).

    reward_fn: None for the error reward (module docstring); else a function of the
    final assignment, paid at the last step (steps before pay 0).
    """

    metadata = {"render_modes": []}

    def __init__(self, sampler, scaler: FeatureScaler | None = None, reward_fn=None,
                 deviation_cost: float = DEVIATION_COST):
        super().__init__()
        self.deviation_cost = deviation_cost
        self.sampler = sampler if callable(sampler) else (lambda rng, ep=sampler: ep)
        self.scaler = scaler or FeatureScaler()
        self.reward_fn = reward_fn
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, (N_FEATURES,), np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.rollout: Rollout | None = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        ep = (options or {}).get("episode") or self.sampler(self.np_random)
        if not ep.feasible:
            raise ValueError("episode has no assignment within its limits")
        self.rollout = Rollout(ep)
        return self.scaler(self.rollout.features()), {}

    def step(self, action):
        r = self.rollout
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if self.reward_fn is None:
            _, advantage = r.step_advantage(a)
            reward = r.ep.L / r.ep.reference * advantage - self.deviation_cost * (2 * a - 1) ** 2
        else:
            r.step(a)
            reward = float(self.reward_fn(r.assignment.copy())) if r.done else 0.0
        done = r.done
        info = {"assignment": r.assignment.copy()} if done else {}
        return self.scaler(r.features()), reward, done, False, info
