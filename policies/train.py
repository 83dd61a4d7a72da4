"""`python -m policies.train`: train the SAC allocation agent and ship its actor (safetensors + JSON).

    python -m policies.train --seed 0 --out policies/zoo/ramp-sac --timesteps 100 --gamma 0 --bc-episodes 300

Soft Actor-Critic (stable-baselines3) on the randomised mix of `policies.pool`:
catalog models x hardware targets x format subsets x sensitivity sources x budgets.
Deterministic for a seed on one machine: one torch thread, seeded SB3, numpy and env.
gamma = 1 by default: the objective is the undiscounted sum of layer errors. Because the
env's reward is already the exact advantage of a step over following the forecast,
gamma = 0 is also principled: the critic then learns that one-step advantage and the
actor a one-step improvement of the forecast. The actor starts at the forecast (mean head
zeroed); `--bc-episodes N` first fits it to the ILP's deviations from the forecast on N
training episodes. The shipped command above is pretraining only (100 SAC steps make no
update): every longer SAC run so far did worse than the forecast (README, "The RL agent").
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from policies.env import DEVIATION_COST, AllocationEnv, FeatureScaler, Rollout
from policies.pool import HELD_OUT, TRAIN_FORMATS, TRAIN_HARDWARE, TRAIN_MODELS, build_pool, sample_episode
from policies.policy import actor_tensors, save_policy

HIDDEN = [64, 64]
BC_EPOCHS = 20
LOG_STD_INIT = -1.0  # initial exploration: pre-tanh std e**-1, so ~3/4 of sampled actions stay in the dead zone
SCALER_EPISODES = 48


def fit_scaler(pool, seed: int) -> FeatureScaler:
    """Feature mean and std over rollouts of random actions on random training episodes."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for _ in range(SCALER_EPISODES):
        r = Rollout(sample_episode(rng, pool))
        while not r.done:
            rows.append(r.features())
            r.step(float(rng.random()))
    return FeatureScaler.fit(np.array(rows))


def _progress_callback(total: int):
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Progress(BaseCallback):
        def _on_training_start(self):
            self.bar = tqdm(total=total, desc="SAC", unit="step", file=sys.stderr, mininterval=1.0)

        def _on_step(self) -> bool:
            self.bar.update(1)
            return True

        def _on_training_end(self):
            self.bar.close()

    return Progress()


def start_at_forecast(model, log_std: float = LOG_STD_INIT) -> None:
    """Zero the actor's mean head and set its log-std to `log_std` (small): a fresh policy then plays
    action 0.5 everywhere, i.e. follows the env's forecast exactly (the strong baseline),
    and SAC only learns deviations from it (a residual policy)."""
    import torch

    with torch.no_grad():
        model.actor.mu.weight.zero_()
        model.actor.mu.bias.zero_()
        model.actor.log_std.weight.zero_()
        model.actor.log_std.bias.fill_(log_std)


def ilp_demonstrations(pool, scaler: FeatureScaler, seed: int, episodes: int, window: int):
    """(obs, action) pairs that steer each step from the forecast toward the exact ILP plan.

    RAMP-style pretraining with an oracle available only at training time: on each
    training episode the ILP plan is solved; at every layer the label is 1 if the ILP's
    format lies costlier on the hull than the forecast's point, 0 if cheaper, 0.5 if equal,
    and the episode proceeds with that action (so the states are those the labels lead to).
    """
    from dse.solvers import solve

    rng = np.random.default_rng(seed + 2)
    xs, ys = [], []
    for _ in range(episodes):
        ep = sample_episode(rng, pool, window)
        res = solve(ep.problem, "ilp")
        if res.assignment is None:
            continue
        r = Rollout(ep)
        while not r.done:
            l = r.l
            h = ep.hull[l]
            here = ep.hull_position(l, r.balance())
            there = int(np.searchsorted(ep.c[l, h], ep.c[l, res.assignment[l]] * (1 + 1e-9))) - 1
            a = 0.5 + 0.5 * float(np.sign(there - here))
            xs.append(scaler(r.features()))
            ys.append(a)
            r.step(a)
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32)


def clone(model, xs: np.ndarray, ys: np.ndarray, seed: int, epochs: int = BC_EPOCHS) -> float:
    """Fit the actor's deterministic action to the demonstrations (MSE, Adam); returns the final loss.

    Targets 0 / 0.5 / 1 are pulled in to 0.1 / 0.5 / 0.9 so tanh need not saturate
    (0.1 and 0.9 are well outside the dead zone 0.3-0.7, so they still move a hull step).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(xs)
    y = torch.as_tensor(0.5 + 0.8 * (ys - 0.5)) * 2.0 - 1.0  # in the actor's [-1, 1] units
    opt = torch.optim.Adam(model.actor.parameters(), lr=1e-3)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 256):
            idx = perm[i:i + 256]
            mean_actions, _, _ = model.actor.get_action_dist_params(x[idx])
            loss = torch.mean((torch.tanh(mean_actions[:, 0]) - y[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return float(loss.detach())


def train(seed: int = 0, timesteps: int = 40000, models=TRAIN_MODELS, hardware=TRAIN_HARDWARE,
          formats=TRAIN_FORMATS, pairs: int | None = None, progress: bool = True, window: int | None = None,
          ent_coef="auto_0.1", gamma: float = 1.0, deviation_cost: float = DEVIATION_COST, bc_episodes: int = 0):
    """Train SAC; returns (sb3 model, scaler, training record)."""
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.utils import set_random_seed

    from policies.pool import WINDOW

    started = time.perf_counter()
    torch.set_num_threads(1)
    set_random_seed(seed)
    torch.manual_seed(seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = lambda xs: tqdm(xs, desc="prepare tables", file=sys.stderr)  # noqa: E731
    pool = build_pool(seed, models, hardware, formats, pairs=pairs, progress=bar)
    scaler = fit_scaler(pool, seed)
    win = window or WINDOW
    env = AllocationEnv(lambda rng: sample_episode(rng, pool, win), scaler, deviation_cost=deviation_cost)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": list(HIDDEN)}, learning_rate=3e-4,
                buffer_size=max(timesteps, 1000), learning_starts=min(1000, max(timesteps // 10, 100)),
                batch_size=128, gamma=gamma, ent_coef=ent_coef, train_freq=1, gradient_steps=1, seed=seed,
                device="cpu", verbose=0)
    start_at_forecast(model)
    bc = None
    if bc_episodes:
        xs, ys = ilp_demonstrations(pool, scaler, seed, bc_episodes, win)
        bc = {"episodes": bc_episodes, "samples": len(ys), "deviations": float(np.mean(ys != 0.5)),
              "final_loss": round(clone(model, xs, ys, seed), 5), "epochs": BC_EPOCHS}
    if timesteps:
        model.learn(total_timesteps=timesteps, callback=_progress_callback(timesteps) if progress else None)
    record = {"seed": seed, "timesteps": timesteps, "seconds": round(time.perf_counter() - started, 1),
              "torch_threads": 1, "models": [e.name for e in pool], "formats": list(formats),
              "held_out": list(HELD_OUT), "algorithm": "SAC (stable-baselines3)",
              "hyperparameters": {"hidden": HIDDEN, "learning_rate": 3e-4, "batch_size": 128, "gamma": gamma,
                                  "ent_coef": ent_coef, "deviation_cost": deviation_cost,
                                  "window": win, "actor_init": "mean head zero (forecast)",
                                  "log_std_init": LOG_STD_INIT, "behaviour_cloning": bc}}
    return model, scaler, record


def build_parser() -> ArgumentParser:
    from quantcore.limits import RANGES, float_flag, int_flag

    p = ArgumentParser(prog="policies.train", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int_flag(*RANGES["seed"]), default=0)
    p.add_argument("--out", required=True, help="folder to write policy.safetensors and policy.json into")
    p.add_argument("--timesteps", type=int_flag(*RANGES["timesteps"]), default=40000,
                   help="environment steps (one step = one layer)")
    p.add_argument("--name", help="policy name (default: the --out folder's name)")
    p.add_argument("--gamma", type=float_flag(0.0, 1.0), default=1.0,
                   help="discount in [0, 1] (the shaped reward is already an advantage)")
    p.add_argument("--deviation-cost", type=float_flag(0.0, 1e6), default=DEVIATION_COST,
                   help="per-step reward cost of leaving the forecast, times (2a - 1)**2")
    p.add_argument("--bc-episodes", type=int_flag(*RANGES["episodes"]), default=0,
                   help="behaviour-clone the actor toward the ILP on this many training episodes first")
    p.add_argument("--models", help="comma-separated catalog models to train on (default: the training mix)")
    return p


def check_out_folder(out: str) -> Path:
    """The --out folder, checked before any training (an empty --out is refused by the parser):
    not a file, in a folder that exists, its two files writable there."""
    from quantcore.io import check_outputs

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise QuantDSEError(f"--out {out} is a file: give a folder for policy.safetensors and policy.json")
    parent = folder.parent if str(folder.parent) else Path(".")
    if not folder.exists() and not parent.is_dir():
        raise QuantDSEError(f"--out {out}: its parent folder {parent} does not exist: create it first")
    if folder.is_dir():
        check_outputs([folder / "policy.safetensors", folder / "policy.json"])
    return folder


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    folder = check_out_folder(args.out)
    name = args.name if args.name is not None else folder.resolve().name
    if not name.strip():
        raise QuantDSEError("--name is empty: give the policy a name, or leave --name out")
    models = tuple(m.strip() for m in args.models.split(",")) if args.models is not None else TRAIN_MODELS
    if not all(models):
        raise QuantDSEError(f"--models {args.models!r} has an empty name: give comma-separated catalog names")
    held = sorted(set(models) & set(HELD_OUT))
    if held:
        raise QuantDSEError(f"--models includes held-out {', '.join(held)}: they are kept for zero-shot checks")
    model, scaler, record = train(args.seed, args.timesteps, models=models, gamma=args.gamma,
                                   deviation_cost=args.deviation_cost, bc_episodes=args.bc_episodes,
                                   progress=sys.stderr.isatty())
    tensors, hidden = actor_tensors(model)
    path = save_policy(folder, tensors, hidden, scaler, name, record)
    print(f"policy {name} written to {path.parent} ({record['timesteps']} steps, {record['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
