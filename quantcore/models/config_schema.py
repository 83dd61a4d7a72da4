"""The keys of an HF `config.json` each architecture uses: types, ranges and how they relate.

A config arrives from anywhere; it is validated before any layer is built, and every
problem is reported at once in one line (as hardware specs are). Ranges are generous
bounds on real models (README, "Limits on input"), tight enough that no product of them
overflows or asks for more memory than a machine has.
"""
from __future__ import annotations

from quantcore.errors import QuantDSEError
from quantcore.limits import int_problem

#: key -> (low, high) of an integer key
_INT_RANGES = {
    "hidden_size": (1, 1 << 20), "num_hidden_layers": (1, 1_000_000), "vocab_size": (1, 1 << 24),
    "num_attention_heads": (1, 1 << 14), "num_key_value_heads": (1, 1 << 14), "head_dim": (1, 1 << 14),
    "intermediate_size": (1, 1 << 22), "ffn_dim": (1, 1 << 22), "moe_intermediate_size": (1, 1 << 22),
    "max_position_embeddings": (1, 1 << 30), "word_embed_proj_dim": (1, 1 << 20), "type_vocab_size": (0, 1 << 16),
    "num_local_experts": (1, 1 << 16), "n_routed_experts": (0, 1 << 16), "num_experts_per_tok": (1, 1 << 16),
    "n_shared_experts": (0, 1 << 10), "first_k_dense_replace": (0, 1_000_000), "moe_layer_freq": (1, 1_000_000),
    "q_lora_rank": (1, 1 << 20), "kv_lora_rank": (1, 1 << 20), "qk_nope_head_dim": (0, 1 << 14),
    "qk_rope_head_dim": (0, 1 << 14), "v_head_dim": (1, 1 << 14),
}
_BOOL_KEYS = ("tie_word_embeddings", "attention_bias", "enable_bias", "do_layer_norm_before")
_CORE = ("hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads")
#: model_type -> (required keys, optional keys) it reads
_DECODER = (_CORE + ("intermediate_size",), ("num_key_value_heads", "head_dim", "max_position_embeddings"))
ARCH_KEYS = {
    "llama": _DECODER, "mistral": _DECODER, "qwen2": _DECODER, "phi": _DECODER,
    "mixtral": (_DECODER[0] + ("num_local_experts", "num_experts_per_tok"), _DECODER[1]),
    "deepseek_v3": (_DECODER[0] + ("n_routed_experts", "num_experts_per_tok", "kv_lora_rank", "qk_nope_head_dim",
                                   "qk_rope_head_dim", "v_head_dim"),
                    _DECODER[1] + ("moe_intermediate_size", "n_shared_experts", "first_k_dense_replace",
                                   "moe_layer_freq", "q_lora_rank")),
    "opt": (_CORE + ("ffn_dim", "max_position_embeddings"), ("word_embed_proj_dim",)),
    "bert": (_CORE + ("intermediate_size", "max_position_embeddings"), ("type_vocab_size",)),
}


def config_problems(cfg: dict, model_type: str) -> list[str]:
    """Every problem of `cfg` for `model_type` (empty when it is valid). A null value counts as absent."""
    required, optional = ARCH_KEYS[model_type]
    problems, value = [], {}
    for key in required + optional:
        v = cfg.get(key)
        if v is None:
            if key in required:
                problems.append(f"missing required key {key!r}")
            continue
        problem = int_problem(v, *_INT_RANGES[key])
        if problem:
            problems.append(f"{key} {problem}")
        else:
            value[key] = int(v)
    for key in _BOOL_KEYS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            problems.append(f"{key} must be true or false, got {cfg[key]!r}")
    hidden, heads = value.get("hidden_size"), value.get("num_attention_heads")
    kv = value.get("num_key_value_heads")
    if hidden and heads and "head_dim" not in value and hidden % heads and model_type != "deepseek_v3":
        problems.append(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if heads and kv and heads % kv and model_type != "deepseek_v3":
        problems.append(f"num_key_value_heads {kv} does not divide num_attention_heads {heads}")
    experts = value.get("num_local_experts", value.get("n_routed_experts"))
    top_k = value.get("num_experts_per_tok")
    if experts and top_k and top_k > experts:
        problems.append(f"num_experts_per_tok {top_k} exceeds the {experts} experts")
    if model_type == "deepseek_v3" and value.get("qk_nope_head_dim") == 0 == value.get("qk_rope_head_dim"):
        problems.append("qk_nope_head_dim + qk_rope_head_dim must be at least 1")
    return problems


def validate_config(cfg: dict, model_type: str, where: str) -> None:
    """Raise one QuantDSEError listing every problem of the config, or return."""
    problems = config_problems(cfg, model_type)
    if problems:
        raise QuantDSEError(f"{where} ({model_type}): " + "; ".join(problems) +
                            ": fix the config, or use the model's own config.json")
