"""A shipped policy: the SAC actor as safetensors plus a JSON, rebuilt in code -- never unpickled.

stable-baselines3's own .zip stores spaces and schedules with cloudpickle, which runs
code on load. We keep only the deterministic actor: an MLP (ReLU hidden layers) whose
output goes through tanh and is mapped to [0, 1], the action space of
`policies.env.AllocationEnv`. Files in a policy folder:

    policy.safetensors   tensors "hidden.<i>.weight", "hidden.<i>.bias", "mu.weight", "mu.bias"
    policy.json          {"schema": "quantdse.policy/1", "name", "architecture": {"features",
                         "hidden", "activation", "output"}, "feature_names", "normalisation":
                         {"mean", "std"}, "training": {...}, "hash", "safetensors_sha256"}

Loading checks the JSON, the SHA-256 of the tensor file, and every tensor's shape
against the architecture; anything off is one QuantDSEError line (exit 2 at the CLI).
Inference is numpy: a 7B model's 225 layers take a few milliseconds of matrix products.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_files, dumps, load_json
from policies.env import FEATURE_NAMES, N_FEATURES, FeatureScaler

SCHEMA = "quantdse.policy/1"
ZOO = Path(__file__).resolve().parent / "zoo"
DEFAULT_POLICY = "ramp-sac"


class Policy:
    """The deterministic actor: obs (scaled features) -> action in [0, 1]."""

    def __init__(self, tensors: dict, scaler: FeatureScaler, meta: dict):
        self.tensors = tensors
        self.scaler = scaler
        self.meta = meta
        n = len(meta["architecture"]["hidden"])
        self._layers = [(tensors[f"hidden.{i}.weight"], tensors[f"hidden.{i}.bias"]) for i in range(n)]
        self._mu = (tensors["mu.weight"], tensors["mu.bias"])

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def hash(self) -> str:
        return self.meta["hash"]

    def act(self, obs: np.ndarray) -> float:
        h = np.asarray(obs, dtype=np.float32)
        for w, b in self._layers:
            h = np.maximum(w @ h + b, 0.0)
        w, b = self._mu
        return float((np.tanh(w @ h + b)[0] + 1.0) / 2.0)


def actor_tensors(sac_model) -> tuple[dict, list[int]]:
    """The actor's weights of a stable-baselines3 SAC model, under our tensor names."""
    actor = sac_model.actor
    linears = [m for m in actor.latent_pi if m.__class__.__name__ == "Linear"]
    tensors = {}
    for i, lin in enumerate(linears):
        tensors[f"hidden.{i}.weight"] = lin.weight.detach().cpu().numpy().astype(np.float32)
        tensors[f"hidden.{i}.bias"] = lin.bias.detach().cpu().numpy().astype(np.float32)
    tensors["mu.weight"] = actor.mu.weight.detach().cpu().numpy().astype(np.float32)
    tensors["mu.bias"] = actor.mu.bias.detach().cpu().numpy().astype(np.float32)
    return tensors, [int(lin.out_features) for lin in linears]


def save_policy(out: str | Path, tensors: dict, hidden: list[int], scaler: FeatureScaler, name: str,
                training: dict) -> Path:
    """Write policy.safetensors and policy.json into folder `out` (each atomically); returns the JSON path."""
    from safetensors.numpy import save

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    blob = save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())})
    digest = hashlib.sha256(blob).hexdigest()
    meta = {"schema": SCHEMA, "name": name,
            "architecture": {"features": N_FEATURES, "hidden": list(hidden), "activation": "relu",
                             "output": "(tanh + 1) / 2"},
            "feature_names": list(FEATURE_NAMES), "normalisation": scaler.as_dict(), "training": training,
            "hash": digest[:16], "safetensors_sha256": digest}
    # both files or neither: a policy.json beside another run's tensors would fail its SHA-256 check
    atomic_write_files([(out / "policy.safetensors", blob), (out / "policy.json", dumps(meta))])
    return out / "policy.json"


def resolve(path: str | Path | None) -> Path:
    """A policy folder, its policy.json, or a name in policies/zoo -> the policy.json path."""
    p = Path(path) if path is not None else ZOO / DEFAULT_POLICY
    if not p.exists() and path is not None and (ZOO / str(path)).exists():
        p = ZOO / str(path)
    if p.is_dir():
        p = p / "policy.json"
    if not p.is_file():
        raise QuantDSEError(f"policy {path or p}: no such policy (a folder with policy.json and "
                            f"policy.safetensors): train one with python -m policies.train")
    return p


def _bad(path, what: str) -> QuantDSEError:
    return QuantDSEError(f"policy {path}: {what}: re-train it with python -m policies.train or restore the file")


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and verify a policy (see the module docstring); never unpickles."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    jpath = resolve(path)
    meta = load_json(jpath, "policy")
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise _bad(jpath, f'"schema" must be "{SCHEMA}"')
    try:
        arch = meta["architecture"]
        hidden = [int(h) for h in arch["hidden"]]
        scaler = FeatureScaler(meta["normalisation"]["mean"], meta["normalisation"]["std"])
        digest = str(meta["safetensors_sha256"])
        str(meta["name"]), str(meta["hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(jpath, f"malformed JSON ({exc.__class__.__name__}: {exc})") from None
    if int(arch.get("features", -1)) != N_FEATURES or scaler.mean.shape != (N_FEATURES,) \
            or scaler.std.shape != (N_FEATURES,) or not np.all(np.isfinite(scaler.mean)) \
            or not np.all(scaler.std > 0):
        raise _bad(jpath, f"architecture or normalisation does not match the {N_FEATURES} features of this version")
    tpath = jpath.with_name("policy.safetensors")
    try:
        blob = tpath.read_bytes()
    except OSError as exc:
        raise _bad(tpath, f"cannot read ({exc.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != digest:
        raise _bad(tpath, "SHA-256 does not match policy.json (tampered or truncated)")
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError) as exc:
        raise _bad(tpath, f"not a valid safetensors file ({exc})") from None
    sizes = [N_FEATURES, *hidden]
    want = {f"hidden.{i}.weight": (sizes[i + 1], sizes[i]) for i in range(len(hidden))}
    want.update({f"hidden.{i}.bias": (sizes[i + 1],) for i in range(len(hidden))})
    want.update({"mu.weight": (1, sizes[-1]), "mu.bias": (1,)})
    for key, shape in want.items():
        t = tensors.get(key)
        if t is None or t.shape != shape or not np.all(np.isfinite(t)):
            raise _bad(tpath, f"tensor {key} missing, of the wrong shape or not finite (want {shape})")
    return Policy({k: tensors[k].astype(np.float32) for k in want}, scaler, meta)
