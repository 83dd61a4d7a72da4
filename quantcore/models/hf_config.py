"""A LayerGraph from a Hugging Face `config.json` (architecture only, no weights).

Layer names are the HF state-dict module names of the `*ForCausalLM` class (BERT:
`BertModel`, no `bert.` prefix), so a plan exports 1:1. Nodes are in forward order:
embeddings, then per block the attention projections, one `attention` node (QK^T and
PV; `ops.attention_rows` costs it), the output projection and the MLP, then the lm-head.

Parameter accounting: every weight matrix is a layer; norm weights and biases go to
`extra_params`. A tied lm-head (`tie_word_embeddings`, OPT) is still an `lm-head` layer
of the embedding's shape with attrs `tied_to`; since the checkpoint stores that matrix
once, its size is subtracted from `extra_params`, so `graph.params` counts it once (and a
memory total that stores the quantized lm-head plus 16-bit extras stays right).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable

from quantcore.errors import QuantDSEError
from quantcore.limits import cap, over_cap
from quantcore.models.config_schema import validate_config
from quantcore.models.graph import Layer, LayerGraph


class _Builder:
    """Collects layers in forward order and the parameters outside them."""

    def __init__(self, cfg: dict, where: str):
        self.cfg = cfg
        self.where = where
        self.layers: list[Layer] = []
        self.extra = 0
        self.max_layers = cap("layers")

    def _add(self, layer: Layer) -> None:
        if len(self.layers) >= self.max_layers:
            raise over_cap("layers", f"model {self.where}")
        self.layers.append(layer)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.cfg.get(key)
        return default if value is None else value

    def req(self, key: str) -> int:
        """An integer key the architecture cannot be built without."""
        if self.cfg.get(key) is None:
            raise QuantDSEError(f"{self.where} is missing required key {key!r}: "
                                "use the model's complete config.json (it may be truncated)")
        return int(self.cfg[key])  # config_schema has checked its type and range

    def linear(self, name: str, out: int, inp: int, role: str, block: int | None = None, *,
               bias: bool = False, expert: int | None = None, kind: str = "linear", **attrs) -> None:
        self._add(Layer(name, kind, (int(out), int(inp)), role, block, expert, MappingProxyType(attrs)))
        self.extra += int(out) if bias else 0

    def embedding(self, name: str, rows: int, dim: int, role: str = "embed") -> None:
        self._add(Layer(name, "embedding", (int(rows), int(dim)), role))

    def attention(self, name: str, block: int, heads: int, kv_heads: int, head_dim: int, **attrs) -> None:
        self._add(Layer(name, "attention", (), "attention", block, None,
                                 MappingProxyType(dict(heads=heads, kv_heads=kv_heads, head_dim=head_dim, **attrs))))

    def norm(self, dim: int, bias: bool = False) -> None:
        self.extra += int(dim) * (2 if bias else 1)

    def lm_head(self, vocab: int, hidden: int, tied_to: str | None, bias: bool = False) -> None:
        attrs = {"tied_to": tied_to} if tied_to else {}
        self.linear("lm_head", vocab, hidden, "lm_head", kind="lm-head", bias=bias, **attrs)
        if tied_to:
            self.extra -= int(vocab) * int(hidden)


def _gated_mlp(b: _Builder, prefix: str, hidden: int, inter: int, block: int, expert: int | None = None,
               names: tuple = ("gate_proj", "up_proj", "down_proj")) -> None:
    gate, up, down = names
    b.linear(f"{prefix}.{gate}", inter, hidden, "gate", block, expert=expert)
    b.linear(f"{prefix}.{up}", inter, hidden, "up", block, expert=expert)
    b.linear(f"{prefix}.{down}", hidden, inter, "down", block, expert=expert)


def _decoder(b: _Builder, model_type: str) -> dict:
    """llama / mistral / qwen2 / mixtral / deepseek_v3 / phi: `model.layers.N...`."""
    hidden, n_layers, vocab = b.req("hidden_size"), b.req("num_hidden_layers"), b.req("vocab_size")
    heads = b.req("num_attention_heads")
    kv_heads = int(b.get("num_key_value_heads", heads))
    head_dim = int(b.get("head_dim", hidden // max(heads, 1)))
    inter = b.req("intermediate_size")
    qkv_bias = model_type in ("qwen2", "phi") or bool(b.get("attention_bias", False))
    phi = model_type == "phi"
    experts, top_k = 0, 0
    b.embedding("model.embed_tokens", vocab, hidden)
    if model_type == "mixtral":
        experts, top_k = b.req("num_local_experts"), b.req("num_experts_per_tok")
    if model_type == "deepseek_v3":
        experts, top_k = b.req("n_routed_experts"), b.req("num_experts_per_tok")
    for i in range(n_layers):
        p = f"model.layers.{i}"
        b.norm(hidden, bias=phi)  # input_layernorm
        if model_type == "deepseek_v3":
            head_dim = _mla(b, p, i, hidden, heads)
        else:
            b.linear(f"{p}.self_attn.q_proj", heads * head_dim, hidden, "q", i, bias=qkv_bias)
            b.linear(f"{p}.self_attn.k_proj", kv_heads * head_dim, hidden, "k", i, bias=qkv_bias)
            b.linear(f"{p}.self_attn.v_proj", kv_heads * head_dim, hidden, "v", i, bias=qkv_bias)
            b.attention(f"{p}.self_attn.attn", i, heads, kv_heads, head_dim)
            b.linear(f"{p}.self_attn.{'dense' if phi else 'o_proj'}", hidden, heads * head_dim, "o", i, bias=phi)
        if phi:  # parallel attention + MLP block, one LayerNorm, biased fc1/fc2
            b.linear(f"{p}.mlp.fc1", inter, hidden, "fc1", i, bias=True)
            b.linear(f"{p}.mlp.fc2", hidden, inter, "fc2", i, bias=True)
            continue
        b.norm(hidden)  # post_attention_layernorm
        if model_type == "mixtral":
            b.linear(f"{p}.block_sparse_moe.gate", experts, hidden, "router", i)
            for e in range(experts):
                _gated_mlp(b, f"{p}.block_sparse_moe.experts.{e}", hidden, inter, i, e, ("w1", "w3", "w2"))
        elif model_type == "deepseek_v3" and _is_moe_layer(b, i):
            moe_inter = b.req("moe_intermediate_size")
            b.linear(f"{p}.mlp.gate", experts, hidden, "router", i)
            if b.cfg.get("topk_method") == "noaux_tc":
                b.extra += experts  # mlp.gate.e_score_correction_bias
            for e in range(experts):
                _gated_mlp(b, f"{p}.mlp.experts.{e}", hidden, moe_inter, i, e)
            shared = int(b.get("n_shared_experts", 0) or 0)
            if shared:
                _gated_mlp(b, f"{p}.mlp.shared_experts", hidden, moe_inter * shared, i)
        else:
            _gated_mlp(b, f"{p}.mlp", hidden, inter, i)
    b.norm(hidden, bias=phi)  # model.norm / model.final_layernorm
    tied = bool(b.get("tie_word_embeddings", False))
    b.lm_head(vocab, hidden, "model.embed_tokens" if tied else None, bias=phi)
    return dict(hidden_size=hidden, num_layers=n_layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                vocab_size=vocab, intermediate_size=inter, num_experts=experts, experts_per_token=top_k,
                arch="decoder")


def _is_moe_layer(b: _Builder, i: int) -> bool:
    """DeepSeek: routed experts from layer first_k_dense_replace on, every moe_layer_freq layers."""
    first = int(b.get("first_k_dense_replace", 0) or 0)
    freq = int(b.get("moe_layer_freq", 1) or 1)
    return b.req("n_routed_experts") > 0 and i >= first and i % freq == 0


def _mla(b: _Builder, p: str, i: int, hidden: int, heads: int) -> int:
    """DeepSeek multi-head latent attention; returns the QK head_dim (nope + rope).

    The attention node carries heads = kv_heads = num_attention_heads and the QK head
    dim; v_head_dim and kv_lora_rank are extra attrs (the latent cache is kv_lora_rank +
    rope per token, which a cost model may use instead).
    """
    q_lora = b.get("q_lora_rank")
    kv_lora, nope = b.req("kv_lora_rank"), b.req("qk_nope_head_dim")
    rope, v_dim = b.req("qk_rope_head_dim"), b.req("v_head_dim")
    qk = nope + rope
    bias = bool(b.get("attention_bias", False))
    if q_lora:
        b.linear(f"{p}.self_attn.q_a_proj", int(q_lora), hidden, "q_a", i, bias=bias)
        b.norm(int(q_lora))  # q_a_layernorm
        b.linear(f"{p}.self_attn.q_b_proj", heads * qk, int(q_lora), "q_b", i)
    else:
        b.linear(f"{p}.self_attn.q_proj", heads * qk, hidden, "q", i)
    b.linear(f"{p}.self_attn.kv_a_proj_with_mqa", kv_lora + rope, hidden, "kv_a", i, bias=bias)
    b.norm(kv_lora)  # kv_a_layernorm
    b.linear(f"{p}.self_attn.kv_b_proj", heads * (nope + v_dim), kv_lora, "kv_b", i)
    b.attention(f"{p}.self_attn.attn", i, heads, heads, qk, v_head_dim=v_dim, kv_lora_rank=kv_lora)
    b.linear(f"{p}.self_attn.o_proj", hidden, heads * v_dim, "o", i, bias=bias)
    return qk


def _opt(b: _Builder, model_type: str) -> dict:
    """OPTForCausalLM: `model.decoder.layers.N`, learned positions (+2 offset rows), tied lm-head."""
    hidden, n_layers, vocab = b.req("hidden_size"), b.req("num_hidden_layers"), b.req("vocab_size")
    heads, ffn, max_pos = b.req("num_attention_heads"), b.req("ffn_dim"), b.req("max_position_embeddings")
    proj = int(b.get("word_embed_proj_dim", hidden))
    bias = bool(b.get("enable_bias", True))
    pre_ln = bool(b.get("do_layer_norm_before", True))
    d = "model.decoder"
    b.embedding(f"{d}.embed_tokens", vocab, proj)
    b.embedding(f"{d}.embed_positions", max_pos + 2, hidden, role="position")  # OPT offsets positions by 2
    if proj != hidden:
        b.linear(f"{d}.project_in", hidden, proj, "project_in")
    for i in range(n_layers):
        p = f"{d}.layers.{i}"
        for role in "qkv":
            b.linear(f"{p}.self_attn.{role}_proj", hidden, hidden, role, i, bias=bias)
        b.attention(f"{p}.self_attn.attn", i, heads, heads, hidden // heads)
        b.linear(f"{p}.self_attn.out_proj", hidden, hidden, "o", i, bias=bias)
        b.norm(hidden, bias=True)  # self_attn_layer_norm
        b.linear(f"{p}.fc1", ffn, hidden, "fc1", i, bias=bias)
        b.linear(f"{p}.fc2", hidden, ffn, "fc2", i, bias=bias)
        b.norm(hidden, bias=True)  # final_layer_norm
    if pre_ln:
        b.norm(hidden, bias=True)  # model.decoder.final_layer_norm
    if proj != hidden:
        b.linear(f"{d}.project_out", proj, hidden, "project_out")
    b.lm_head(vocab, proj, f"{d}.embed_tokens")
    return dict(hidden_size=hidden, num_layers=n_layers, heads=heads, kv_heads=heads, head_dim=hidden // heads,
                vocab_size=vocab, intermediate_size=ffn, num_experts=0, experts_per_token=0, arch="decoder")


def _bert(b: _Builder, model_type: str) -> dict:
    """BertModel: embeddings, `encoder.layer.N`, pooler (no MLM head)."""
    hidden, n_layers, vocab = b.req("hidden_size"), b.req("num_hidden_layers"), b.req("vocab_size")
    heads, inter, max_pos = b.req("num_attention_heads"), b.req("intermediate_size"), b.req("max_position_embeddings")
    types = int(b.get("type_vocab_size", 2))
    b.embedding("embeddings.word_embeddings", vocab, hidden)
    b.embedding("embeddings.position_embeddings", max_pos, hidden, role="position")
    b.embedding("embeddings.token_type_embeddings", types, hidden, role="token_type")
    b.norm(hidden, bias=True)  # embeddings.LayerNorm
    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        for name, role in (("query", "q"), ("key", "k"), ("value", "v")):
            b.linear(f"{p}.attention.self.{name}", hidden, hidden, role, i, bias=True)
        b.attention(f"{p}.attention.self.attn", i, heads, heads, hidden // heads)
        b.linear(f"{p}.attention.output.dense", hidden, hidden, "o", i, bias=True)
        b.norm(hidden, bias=True)
        b.linear(f"{p}.intermediate.dense", inter, hidden, "up", i, bias=True)
        b.linear(f"{p}.output.dense", hidden, inter, "down", i, bias=True)
        b.norm(hidden, bias=True)
    b.linear("pooler.dense", hidden, hidden, "pooler", bias=True)
    return dict(hidden_size=hidden, num_layers=n_layers, heads=heads, kv_heads=heads, head_dim=hidden // heads,
                vocab_size=vocab, intermediate_size=inter, num_experts=0, experts_per_token=0, arch="encoder")


_BUILDERS: dict[str, Callable[[_Builder, str], dict]] = {
    "llama": _decoder, "mistral": _decoder, "qwen2": _decoder, "mixtral": _decoder, "deepseek_v3": _decoder,
    "phi": _decoder, "opt": _opt, "bert": _bert,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_BUILDERS))


def graph_from_config(cfg: Any, name: str, source: str, where: str = "config.json") -> LayerGraph:
    """Build the LayerGraph a config describes; `where` names the file in error messages."""
    if not isinstance(cfg, dict):
        raise QuantDSEError(f"{where} must hold a JSON object, got {type(cfg).__name__}: use the model's config.json")
    model_type = cfg.get("model_type")
    if model_type is None:
        raise QuantDSEError(f"{where} is missing required key 'model_type': use the model's complete config.json")
    if not isinstance(model_type, str):
        raise QuantDSEError(f"{where}: model_type must be a string such as \"llama\", got {model_type!r}")
    if model_type not in _BUILDERS:
        raise QuantDSEError(f"{where}: unsupported model_type {model_type!r}; supported: "
                            f"{', '.join(SUPPORTED_MODEL_TYPES)} (or pass a safetensors file or a torch nn.Module)")
    validate_config(cfg, model_type, where)
    experts = int(cfg.get({"mixtral": "num_local_experts", "deepseek_v3": "n_routed_experts"}.get(model_type, ""))
                  or 0)
    if int(cfg["num_hidden_layers"]) * (9 + 3 * experts) > cap("layers"):  # refuse before building
        raise over_cap("layers", f"model {where} ({cfg['num_hidden_layers']} blocks of up to {9 + 3 * experts} layers)")
    b = _Builder(cfg, where)
    config = _BUILDERS[model_type](b, model_type)
    config.update(model_type=model_type, max_position_embeddings=cfg.get("max_position_embeddings"))
    return LayerGraph(name, b.layers, config, source=source, extra_params=b.extra)
