"""`python -m dse.evaluate`: apply a plan to the real torch model by fake quantization and measure it.

    python -m dse.evaluate --plan plan.json --json

Each layer's weight is replaced by its format's reference `quantize()` (quantcore.formats);
its activation precision (the format's ``-aN``, or the plan entry's ``activation``) quantizes the
layer's input through a forward pre-hook, and K/V cache choices (items ``<attention>.k_cache`` /
``.v_cache``, a catalog format each) quantize the key / value projections' outputs through
forward hooks (dse.runtimequant says how). The model embeds the calibration texts, and the
embeddings are compared with the fp model's (no labels needed):

- ``cosine`` (the headline metric, higher is better): mean cosine similarity of each text's
  quantized embedding to its fp embedding;
- ``nn_agreement``: the fraction of texts whose nearest neighbour among the other texts is
  the same as with the fp model (retrieval stays the same);
- ``min_cosine``: the worst text's cosine.

`Evaluator` keeps the fp model, tokenized texts and fp embeddings in memory and caches each
(layer, format) quantized weight, so scoring a new plan costs one forward pass.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.io import dumps
from dse.runtimequant import is_kv_item, kv_items, runtime_quantization

DEFAULT_MODEL = "all-minilm-l6-v2"


def embedding_metrics(emb, ref) -> dict:
    """cosine / min_cosine / nn_agreement of embeddings `emb` [n, d] against `ref` (both unit rows)."""
    import torch

    cos = (emb * ref).sum(1)
    out = {"cosine": float(cos.mean()), "min_cosine": float(cos.min())}
    sim_q, sim_r = emb @ emb.T, ref @ ref.T
    eye = torch.eye(len(ref), dtype=torch.bool)
    nn_q = sim_q.masked_fill(eye, -np.inf).argmax(1)
    nn_r = sim_r.masked_fill(eye, -np.inf).argmax(1)
    out["nn_agreement"] = float((nn_q == nn_r).float().mean())
    return out


class Evaluator:
    """Measured quality of per-layer format assignments on a real model.

    model: catalog name with installed weights, or an HF checkpoint folder.
    texts: calibration texts (default: the shipped set); max_texts: a seeded subset of them.
    """

    metric_name = "cosine"
    higher_is_better = True

    def __init__(self, model=DEFAULT_MODEL, texts=None, *, max_texts: int | None = None, seed: int = 0):
        import torch

        from dse.calibration import read_texts, subset
        from dse.hfmodel import load_encoder

        if texts is None:
            texts = read_texts(None, max_texts=max_texts, seed=seed)
        else:
            texts = [str(t).strip() for t in texts if str(t).strip()]
            if len(texts) < 2:
                raise QuantDSEError("evaluation needs at least 2 non-empty texts")
            texts = subset(texts, max_texts, seed)
        self.encoder = load_encoder(model)
        self.model_name = self.encoder.name
        self.texts = texts
        self.graph_name, names, self.modules = self.encoder.searched_modules()
        self.layer_names = [n for n in names if n in self.modules]
        #: plan layers the base model does not run (an LM head): quantizing them cannot change embeddings
        self.unused_layers = [n for n in names if n not in self.modules]
        self.batches = self.encoder.batches(texts)
        self.tokens = self.encoder.tokens(self.batches)
        self._fp = {n: m.weight.data for n, m in self.modules.items()}
        #: K/V cache items {"<attention>.k_cache": (projection, head_dim)} a plan may set
        self.kv_items = kv_items(self.encoder.model)
        self._cache: dict = {}
        self.reference = self.encoder.embed(self.batches)
        self._torch = torch

    def quantized_weight(self, layer: str, fmt: str):
        """The fake-quantized weight tensor of `layer` in `fmt` (cached; -aN variants share one entry)."""
        from dse.hfmodel import quantize_weight
        from quantcore.formats import get_format

        f = get_format(fmt)
        key = (layer, f.weight_name)
        if key not in self._cache:
            w = self._fp[layer]
            q = quantize_weight(w, f)
            self._cache[key] = self._torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).reshape(w.shape)
        return self._cache[key]

    def apply(self, formats: dict, activations: dict | None = None):
        """Context manager: the model with `formats` applied, restored on exit.

        formats: {layer: format} (its -aN sets the layer's activation precision) and
        {"<attention>.k_cache" / ".v_cache": format} for the K/V cache; activations:
        {layer: ActSpec or None} overriding the formats' own activation precision."""
        from contextlib import contextmanager

        from quantcore.formats import get_format
        from quantcore.quantizers.activation import act_spec

        @contextmanager
        def ctx():
            kv = {n: f for n, f in formats.items() if is_kv_item(n)}
            weights = {n: f for n, f in formats.items() if n not in kv}
            unknown = [n for n in weights if n not in self.modules and n not in self.unused_layers]
            unknown += [n for n in kv if n not in self.kv_items]
            if unknown:
                raise QuantDSEError(f"layer {unknown[0]} is not in model {self.model_name}: "
                                    "the plan was made for another model")
            specs = {n: act_spec(get_format(f)) for n, f in weights.items() if n in self.modules}
            specs.update({n: s for n, s in (activations or {}).items() if n in self.modules})
            inputs = {self.modules[n]: s for n, s in specs.items() if s is not None}
            caches = {self.kv_items[n][0]: (get_format(f), self.kv_items[n][1]) for n, f in kv.items()}
            swapped = {n: self.quantized_weight(n, f) for n, f in weights.items() if n in self.modules}
            try:
                for n, w in swapped.items():
                    self.modules[n].weight.data = w
                with runtime_quantization(inputs, caches):
                    yield self.encoder
            finally:
                for n in swapped:
                    self.modules[n].weight.data = self._fp[n]
        return ctx()

    def embed(self, formats: dict, activations: dict | None = None):
        with self.apply(formats, activations):
            return self.encoder.embed(self.batches)

    def metrics(self, formats: dict, activations: dict | None = None) -> dict:
        """{"cosine", "min_cosine", "nn_agreement"} of the model with `formats` (and `activations`) applied."""
        return embedding_metrics(self.embed(formats, activations), self.reference)


# ---------------------------------------------------------------------------- CLI

def plan_model(plan: dict, plan_path: str) -> str:
    """The model a plan names, where evaluation may read it: a catalog name, or a checkpoint folder
    inside the plan's own folder (a plan is untrusted input: it may not point the tool elsewhere)."""
    from pathlib import Path

    from quantcore.io import path_inside
    from quantcore.models.registry import list_catalog

    name = plan.get("model")
    if not isinstance(name, str) or not name.strip():
        raise QuantDSEError(f"plan {plan_path} names no model: give --model")
    if name.strip().lower() in list_catalog():
        return name.strip().lower()
    return str(path_inside(name, Path(plan_path).parent, f"plan {plan_path}: model"))


def _act_entry(entry):
    """An ActSpec from a plan layer's "activation" object ({"bits", "type", "granularity", "group_size"}),
    None for 16 bits, or ... (Ellipsis) where the entry has none (the format's -aN then decides)."""
    from quantcore.quantizers.activation import DEFAULT_ACT_GROUP, ActSpec

    a = entry.get("activation")
    if not isinstance(a, dict) or "bits" not in a:
        return ...
    bits = a["bits"]
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in (4, 8, 16):
        raise QuantDSEError(f"plan layer {entry.get('name')}: activation bits {str(bits)[:20]} are not 4, 8 or 16: "
                            "regenerate the plan")
    group = a.get("group_size") or DEFAULT_ACT_GROUP
    if isinstance(group, bool) or not isinstance(group, int) or not 1 <= group <= 65536:
        raise QuantDSEError(f"plan layer {entry.get('name')}: activation group_size {str(group)[:20]} is not a "
                            "whole number from 1 to 65536: regenerate the plan")
    return None if bits == 16 else ActSpec(bits, str(a.get("type", "int")), str(a.get("granularity", "token")), group)


def plan_assignment(plan: dict) -> tuple[dict, dict]:
    """({layer or K/V item: format}, {layer: ActSpec or None}) of a plan.

    K/V items come from layer entries named ``*.k_cache`` / ``*.v_cache``, a layer's ``kv`` object
    {item: format}, or a top-level ``kv`` ({item: format} or [{"name", "format"}]). A layer's
    ``activation`` object, where present, overrides its format's ``-aN``."""
    formats, activations = {}, {}
    for entry in plan["layers"]:
        formats[entry["name"]] = entry["format"]
        spec = _act_entry(entry)
        if spec is not ...:
            activations[entry["name"]] = spec
        if isinstance(entry.get("kv"), dict):
            formats.update({str(k): str(v) for k, v in entry["kv"].items() if is_kv_item(str(k))})
    top = plan.get("kv")
    if isinstance(top, dict):
        formats.update({str(k): str(v) for k, v in top.items() if is_kv_item(str(k))})
    elif isinstance(top, list):
        formats.update({str(e["name"]): str(e["format"]) for e in top
                        if isinstance(e, dict) and is_kv_item(str(e.get("name"))) and "format" in e})
    return formats, activations


def evaluate_plan(plan: dict, plan_path: str, model=None, calib=None) -> dict:
    """The evaluation document of a plan."""
    from dse.calibration import read_texts
    from dse.hfmodel import model_folder
    from quantcore.formats import get_format
    from quantcore.quantizers.activation import act_spec

    if model is None:  # the plan names the model: a catalog name, or a folder beside the plan (never elsewhere)
        model = plan_model(plan, plan_path)
    texts = read_texts(calib)
    name = model_folder(model)[0]
    if plan.get("model") != name:
        raise QuantDSEError(f"plan {plan_path} was made for model {plan.get('model')}, not {name}: "
                            f"evaluate it with --model {plan.get('model')} or search again with --model {model}")
    t0 = time.perf_counter()
    ev = Evaluator(model, texts)
    formats, activations = plan_assignment(plan)
    missing = [n for n in ev.layer_names if n not in formats]
    if missing:
        raise QuantDSEError(f"plan {plan_path} has no format for layer {missing[0]}: regenerate the plan")
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    m = ev.metrics(formats, activations)
    quantized_inputs = sum(1 for n, f in formats.items() if n in ev.modules and
                           (activations.get(n) if n in activations else act_spec(get_format(f))) is not None)
    return {"metric": ev.metric_name, "value": m[ev.metric_name], "higher_is_better": ev.higher_is_better,
            "metrics": m, "model": ev.model_name, "plan": plan_path,
            "effective_bits": plan.get("totals", {}).get("effective_bits"),
            "calibration": {"file": str(calib) if calib else "shipped (dse/data/calibration.txt)",
                            "texts": len(ev.texts), "tokens": ev.tokens},
            "unused_layers": ev.unused_layers,
            "quantized_inputs": quantized_inputs, "kv_items": sorted(n for n in formats if is_kv_item(n)),
            "seconds": {"load": round(load_s, 3), "evaluate": round(time.perf_counter() - t1, 3)}}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="dse.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--plan", required=True, help="plan JSON from python -m dse.search --out")
    p.add_argument("--model", help="catalog name with installed weights or an HF checkpoint folder "
                                    "(default: the plan's model)")
    p.add_argument("--calib", help="calibration texts, one per line (default: the shipped set)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv=None) -> int:
    from dse.plan import load_plan

    args = build_parser().parse_args(argv)
    plan = load_plan(args.plan)
    doc = evaluate_plan(plan, args.plan, args.model, args.calib)
    if args.json:
        sys.stdout.write(dumps(doc))
    else:
        m = doc["metrics"]
        print(f"{doc['model']}  plan {args.plan}  ({doc['effective_bits']:.3f} effective bits)" if
              doc["effective_bits"] is not None else f"{doc['model']}  plan {args.plan}")
        print(f"  cosine to fp {m['cosine']:.5f} (worst text {m['min_cosine']:.4f}), "
              f"nearest-neighbour agreement {100 * m['nn_agreement']:.1f}%")
        if doc["quantized_inputs"] or doc["kv_items"]:
            print(f"  quantized activations on {doc['quantized_inputs']} layers' inputs, "
                  f"{len(doc['kv_items'])} K/V cache items")
        print(f"  on {doc['calibration']['texts']} texts, {doc['calibration']['tokens']} tokens "
              f"({doc['calibration']['file']}); {doc['seconds']['evaluate']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
