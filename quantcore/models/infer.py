"""What a checkpoint's tensors say about the model when no supported config.json does.

Weights without a config still fix a lot: whether the model is a CNN, a decoder or an
encoder (an lm_head, GPT-style or BERT-style module names), each block's attention
(the q/k/v projections' output sizes give query and KV widths, so the QK^T and PV
FLOPs and the KV-cache bytes are exact) and the maximum positions (a learned position
table's rows). They do not fix how those widths split into heads: a config's head
count is used when there is one, otherwise head_dim 64 (GPT-2, BERT) is assumed and a
note says so. Everything inferred or assumed becomes a note on the graph.

GPT-2-style `Conv1D` modules (`c_attn`, `c_fc`, `c_proj`) store their weight as
[in, out], the transpose of `nn.Linear`; `conv1d_modules` finds them so their shapes
and weights are read in the true (out, in) orientation.
"""
from __future__ import annotations

import re
from types import MappingProxyType

from quantcore.models.graph import Layer

#: model types whose projections are transformers' Conv1D ([in, out] weights)
CONV1D_MODEL_TYPES = ("gpt2", "openai-gpt")
CONV1D_NAMES = ("c_attn", "c_fc", "c_proj", "q_attn")
#: head size assumed when nothing says how the attention width splits into heads
ASSUMED_HEAD_DIM = 64
#: model types that are encoders (bidirectional, no KV cache)
ENCODER_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "deberta",
                       "deberta-v2", "mpnet", "camembert", "ernie")
FUSED_QKV = ("c_attn", "qkv_proj", "query_key_value", "Wqkv", "qkv")
_POSITION_TABLES = ("wpe", "position_embeddings", "embed_positions")
#: role of a module by its last name (GPT-2 c_* names by parent: `role_of`)
ROLES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "out_proj": "o", "query": "q", "key": "k",
         "value": "v", "gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up",
         "w2": "down", "lm_head": "lm_head"}
BLOCK = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")


def conv1d_modules(shapes: dict[str, tuple], cfg: dict | None) -> set[str]:
    """Modules whose 2-D weight is stored [in, out] (GPT-2 Conv1D).

    With a GPT-2 / OpenAI-GPT config: every Conv1D-named module. Without a config: the
    same names, when a fused `c_attn` is wider than tall ([n, 3n] is Conv1D's layout;
    an nn.Linear `c_attn` such as GPTBigCode's is [n + 2kv, n]).
    """
    named = {m for m, s in shapes.items() if len(s) == 2 and m.rsplit(".", 1)[-1] in CONV1D_NAMES}
    model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
    if model_type in CONV1D_MODEL_TYPES:
        return named
    if model_type is None:
        attn = [shapes[m] for m in named if m.endswith(".c_attn")]
        if attn and all(s[1] > s[0] for s in attn):
            return named
    return set()


def role_of(module: str) -> str:
    """A module's role; GPT-2's c_* names by their parent (attn.c_proj is o, mlp.c_proj is down)."""
    parent, _, last = module.rpartition(".")
    parent = parent.rsplit(".", 1)[-1]
    gpt = {("attn", "c_attn"): "qkv", ("attn", "c_proj"): "o", ("mlp", "c_fc"): "up", ("mlp", "c_proj"): "down"}
    if (parent, last) in gpt:
        return gpt[(parent, last)]
    if last in FUSED_QKV:
        return "qkv"
    return ROLES.get(last, last)


def guess_arch(layers: list[Layer], cfg: dict | None) -> tuple[str, str]:
    """(arch, why): cnn, decoder or encoder, from the config's type or the tensor names."""
    if any(l.kind == "conv" for l in layers):
        return "cnn", "it has 4-D conv weights"
    if isinstance(cfg, dict):
        archs = " ".join(str(a) for a in cfg.get("architectures") or [])
        if cfg.get("model_type") in ENCODER_MODEL_TYPES:
            return "encoder", f"config model_type {cfg['model_type']!r}"
        if "CausalLM" in archs or "LMHead" in archs or cfg.get("is_decoder") or cfg.get("model_type") in \
                CONV1D_MODEL_TYPES:
            return "decoder", f"config architectures {archs or cfg.get('model_type')!r}"
    names = [l.name for l in layers]
    if any(l.kind == "lm-head" for l in layers):
        return "decoder", "it has an lm_head"
    if any(".attention.self." in n or n.startswith("encoder.layer.") or ".encoder.layer." in n for n in names):
        return "encoder", "BERT-style module names (encoder.layer.N.attention.self)"
    if any(n.endswith((".c_attn", ".self_attn.q_proj")) for n in names):
        return "decoder", "GPT/Llama-style module names"
    return "encoder", "no lm_head and no decoder-style module names"


def _heads_from_config(cfg: dict | None) -> tuple[int | None, int | None]:
    if not isinstance(cfg, dict):
        return None, None
    heads = next((cfg[k] for k in ("num_attention_heads", "n_head", "num_heads") if isinstance(cfg.get(k), int)), None)
    kv = cfg.get("num_key_value_heads")
    return heads, kv if isinstance(kv, int) else None


def max_positions(layers: list[Layer], cfg: dict | None) -> int | None:
    """From the config (max_position_embeddings, n_positions) or a learned position table's rows."""
    if isinstance(cfg, dict):
        for key in ("max_position_embeddings", "n_positions", "n_ctx"):
            if isinstance(cfg.get(key), int) and cfg[key] > 0:
                return int(cfg[key])
    for l in layers:
        if l.kind == "embedding" and l.name.rsplit(".", 1)[-1] in _POSITION_TABLES:
            return int(l.shape[0]) - (2 if l.name.endswith("embed_positions") else 0)  # OPT offsets by 2
    return None


def add_attention(layers: list[Layer], cfg: dict | None) -> tuple[list[Layer], dict, list[str]]:
    """Layers with one attention node per block after its q/k/v projections, the config facts, notes.

    Query width q = heads x head_dim and KV width kv = kv_heads x head_dim come from the
    projections (a fused qkv is split as q = kv = out/3, multi-head attention).
    """
    heads_cfg, kv_cfg = _heads_from_config(cfg)
    blocks: dict[int, dict] = {}
    for i, l in enumerate(layers):
        if l.kind == "linear" and l.block is not None and l.role in ("q", "k", "v", "qkv"):
            blocks.setdefault(l.block, {})[l.role] = (i, l)
    out, facts, notes = list(layers), {}, []
    fused = assumed = False
    inserted = 0
    for block in sorted(blocks):
        found = blocks[block]
        if "qkv" in found:
            idx, layer = found["qkv"]
            if heads_cfg and kv_cfg and layer.n % (heads_cfg + 2 * kv_cfg) == 0:
                unit = layer.n // (heads_cfg + 2 * kv_cfg)
                q_width, kv_width = heads_cfg * unit, kv_cfg * unit
            else:
                q_width = kv_width = layer.n // 3
                fused = fused or not heads_cfg
        elif "q" in found and "k" in found:
            idx = max(i for i, _ in found.values())
            layer = found["q"][1]
            q_width, kv_width = found["q"][1].n, found["k"][1].n
        else:
            continue
        if heads_cfg and q_width % heads_cfg == 0:
            head_dim = q_width // heads_cfg
        else:
            head_dim = ASSUMED_HEAD_DIM if q_width % ASSUMED_HEAD_DIM == 0 and kv_width % ASSUMED_HEAD_DIM == 0 \
                else q_width
            assumed = True
        heads, kv_heads = q_width // head_dim, max(1, kv_width // head_dim)
        parent = layer.name.rsplit(".", 1)[0]
        node = Layer(f"{parent}.attn", "attention", (), "attention", block, None,
                     MappingProxyType({"heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "inferred": True}))
        out.insert(idx + 1 + inserted, node)
        inserted += 1
        facts = {"heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}
    if inserted:
        how = "from the q/k/v projection shapes"
        if assumed:
            how += (f", with an assumed head_dim {ASSUMED_HEAD_DIM} (FLOPs and KV-cache bytes do not depend on it; "
                    "GEMM shapes do)")
        if fused:
            how += ", a fused qkv split into equal thirds (multi-head, no grouped-query)"
        notes.append(f"attention of {inserted} blocks inferred {how}")
    return out, facts, notes


def infer_config(layers: list[Layer], cfg: dict | None, where: str) -> tuple[list[Layer], dict, list[str]]:
    """(layers with attention nodes, graph config, notes) for a checkpoint without a supported config."""
    arch, why = guess_arch(layers, cfg)
    config: dict = {"arch": arch, "num_experts": 0, "experts_per_token": 0, "inferred_from_weights": True}
    if isinstance(cfg, dict) and cfg.get("model_type"):
        config["model_type"] = cfg["model_type"]
    what = "no config.json" if cfg is None else f"a config.json of unsupported model_type {config.get('model_type')!r}"
    notes = [f"{where} has {what}: taken as {'a' if arch != 'encoder' else 'an'} {arch} ({why})"]
    if arch == "cnn":
        return layers, config, notes
    layers, facts, more = add_attention(layers, cfg)
    config.update(facts)
    positions = max_positions(layers, cfg)
    if positions:
        config["max_position_embeddings"] = positions
    notes += more
    if not more:
        notes.append("no q/k/v projections recognised: attention is not costed (put the model's config.json "
                     "beside the weights)")
    elif not isinstance(cfg, dict):
        notes.append("put the model's config.json beside the weights for exact head counts")
    return layers, config, notes
