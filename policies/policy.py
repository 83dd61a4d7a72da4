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


#: the widest hidden layer a policy may declare (the shipped one has 64): bounds the memory a JSON can ask for
MAX_HIDDEN = 4096


def _architecture(jpath, meta: dict) -> tuple[list[int], FeatureScaler, str]:
    """(hidden sizes, scaler, tensor SHA-256) from a policy.json, every field type-checked."""
    from quantcore.limits import int_problem

    arch = meta.get("architecture")
    norm = meta.get("normalisation")
    if not isinstance(arch, dict) or not isinstance(norm, dict):
        raise _bad(jpath, '"architecture" and "normalisation" must be objects')
    features = arch.get("features")
    if isinstance(features, bool) or not isinstance(features, int) or features != N_FEATURES:
        raise _bad(jpath, f'"architecture.features" must be the integer {N_FEATURES} (this version\'s features), '
                          f"got {features!r}")
    hidden = arch.get("hidden")
    if not isinstance(hidden, list) or not 1 <= len(hidden) <= 8 or \
            any(isinstance(h, float) or int_problem(h, 1, MAX_HIDDEN) for h in hidden):
        raise _bad(jpath, f'"architecture.hidden" must be a list of 1 to 8 integers in [1, {MAX_HIDDEN}], '
                          f"got {str(hidden)[:60]}")
    vectors = []
    for key in ("mean", "std"):
        v = norm.get(key)
        if not isinstance(v, list) or len(v) != N_FEATURES or \
                not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in v):
            raise _bad(jpath, f'"normalisation.{key}" must be {N_FEATURES} finite numbers')
        vectors.append(v)
    if not all(x > 0 for x in vectors[1]):
        raise _bad(jpath, '"normalisation.std" must be positive')
    digest, name, short = meta.get("safetensors_sha256"), meta.get("name"), meta.get("hash")
    if not all(isinstance(x, str) for x in (digest, name, short)):
        raise _bad(jpath, '"safetensors_sha256", "name" and "hash" must be strings')
    return [int(h) for h in hidden], FeatureScaler(*vectors), digest


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and verify a policy (see the module docstring); never unpickles.

    The SHA-256 in policy.json detects a damaged or mismatched tensor file; it is not a signature:
    whoever can rewrite both files can ship other weights with a matching hash (docs/security.md).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from quantcore.io import read_input

    jpath = resolve(path)
    meta = load_json(jpath, "policy")
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise _bad(jpath, f'"schema" must be "{SCHEMA}"')
    hidden, scaler, digest = _architecture(jpath, meta)
    tpath = jpath.with_name("policy.safetensors")
    blob = read_input(tpath, "policy tensors")  # a regular file under the size cap: never a FIFO that blocks
    if hashlib.sha256(blob).hexdigest() != digest:
        raise _bad(tpath, "SHA-256 does not match policy.json (damaged, truncated or from another policy)")
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError, KeyError, TypeError) as exc:  # KeyError: a dtype numpy lacks (BF16)
        raise _bad(tpath, f"not a valid float32 safetensors file ({exc.__class__.__name__}: {exc})") from None
    sizes = [N_FEATURES, *hidden]
    want = {f"hidden.{i}.weight": (sizes[i + 1], sizes[i]) for i in range(len(hidden))}
    want.update({f"hidden.{i}.bias": (sizes[i + 1],) for i in range(len(hidden))})
    want.update({"mu.weight": (1, sizes[-1]), "mu.bias": (1,)})
    for key, shape in want.items():
        t = tensors.get(key)
        if t is None or t.dtype != np.float32 or t.shape != shape or not np.all(np.isfinite(t)):
            raise _bad(tpath, f"tensor {key} missing, not float32, of the wrong shape or not finite (want {shape})")
    return Policy({k: tensors[k].astype(np.float32) for k in want}, scaler, meta)
