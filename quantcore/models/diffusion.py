"""A LayerGraph of a diffusers text-to-image pipeline: the denoiser, the text encoders, the VAE decoder.

A pipeline is several models run a different number of times per image: the denoiser
(FLUX.1's transformer) once per denoising step, each text encoder once per prompt, the VAE
decoder once per image. One graph holds them all, each layer named as in its component's
checkpoint with the component folder in front (``transformer.transformer_blocks.0.attn.to_q``
is ``transformer_blocks.0.attn.to_q`` in ``transformer/diffusion_pytorch_model.safetensors``),
so a plan maps 1:1 onto the diffusers folder. Every layer carries in `attrs`:

- stage: the component folder (transformer, text_encoder, text_encoder_2, vae);
- runs: "step" (every denoising step, CFG batch) or "prompt" (text encoders: once per prompt,
  the negative prompt too under CFG) or "image" (VAE decoder: once per image);
- tokens: what its GEMM's M counts, resolved by the workload (`hwmodels.diffusion_ops`):
  "image" (latent patches), "text" (the T5 sequence in the context stream), "joint" (both),
  "vector" (one row per sample: timestep, guidance and adaLN modulation), "prompt" with
  `seq` (a text encoder's sequence), "map" (a UNet's feature map, one row per pixel); convs and
  "map" layers carry `hw_scale`, their feature map's side over the latent's (0.25 .. 8);
- prior_weight: how much more a quantization error of this role costs than an average layer's
  (the data-free prior multiplies its expected error by it; measured sensitivity ignores it).

The config keys come from the components' own config.json files; the catalog ships them as
data (catalog/flux.1-dev.json) and a diffusers folder (model_index.json, or transformer/ with
config.json beside) is read the same way, shapes checked against its safetensors when present.
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from quantcore.errors import QuantDSEError
from quantcore.io import load_json
from quantcore.limits import int_problem
from quantcore.models.graph import Layer, LayerGraph

SPEC_FORMAT = "quantdse.diffusers/1"
#: component folders a pipeline graph takes, in the order they run
STAGES = ("text_encoder", "text_encoder_2", "transformer", "unet", "vae")
#: the denoiser's component folder, by pipeline family
DENOISERS = ("transformer", "unet")

#: prior_weight by role, an estimate from what the diffusion PTQ papers keep at higher precision:
#: - time_embed: TFMQ-DM (Huang et al., CVPR 2024) finds the time-embedding layers the main source of
#:   "temporal feature disturbance" and reconstructs them on their own (its Temporal Information Block);
#: - adaln: the adaLN modulation maps the timestep vector onto every block's scale and shift; SVDQuant's
#:   FLUX.1 models keep them at W4A16 rather than W4A4 (mit-han-lab/nunchaku, the AWQ-quantized norm1.linear);
#: - embed_in / proj_out: Q-Diffusion (Li et al., ICCV 2023) keeps the first and last layers in full
#:   precision, and SVDQuant keeps the embedders and the final projection in 16 bits;
#: - shortcut: Q-Diffusion's shortcut splitting: the UNet/VAE skip concatenations have bimodal activations.
#: The factors themselves (4, 2, 4, 4, 2) are our estimate; measured sensitivity replaces them.
PRIOR_WEIGHT = {"time_embed": 4.0, "adaln": 2.0, "embed_in": 4.0, "proj_out": 4.0, "shortcut": 2.0}


class _Stage:
    """Collects one component's layers under its folder prefix."""

    def __init__(self, stage: str, runs: str, where: str):
        self.stage, self.runs, self.where = stage, runs, where
        self.layers: list[Layer] = []
        self.extra = 0

    def linear(self, name: str, out: int, inp: int, role: str, tokens: str, block: int | None = None, *,
               bias: bool = True, **attrs) -> None:
        attrs = {"stage": self.stage, "runs": self.runs, "tokens": tokens,
                 "prior_weight": PRIOR_WEIGHT.get(role, 1.0), **attrs}
        self.layers.append(Layer(f"{self.stage}.{name}", "linear", (int(out), int(inp)), role, block, None,
                                 MappingProxyType(attrs)))
        self.extra += int(out) if bias else 0

    def conv(self, name: str, cin: int, cout: int, kernel: int, hw_scale: int, role: str = "conv",
             block: int | None = None, **attrs) -> None:
        attrs = {"stage": self.stage, "runs": self.runs, "hw_scale": hw_scale, "stride": 1,
                 "padding": kernel // 2, "groups": 1, "prior_weight": PRIOR_WEIGHT.get(role, 1.0), **attrs}
        self.layers.append(Layer(f"{self.stage}.{name}", "conv", (int(cout), int(cin), kernel, kernel), role, block,
                                 None, MappingProxyType(attrs)))
        self.extra += int(cout)

    def embedding(self, name: str, rows: int, dim: int, role: str = "embed", **attrs) -> None:
        self.layers.append(Layer(f"{self.stage}.{name}", "embedding", (int(rows), int(dim)), role, None, None,
                                 MappingProxyType({"stage": self.stage, "runs": self.runs, **attrs})))

    def attention(self, name: str, block: int, heads: int, head_dim: int, tokens: str, **attrs) -> None:
        self.layers.append(Layer(f"{self.stage}.{name}", "attention", (), "attention", block, None,
                                 MappingProxyType({"stage": self.stage, "runs": self.runs, "tokens": tokens,
                                                   "heads": heads, "kv_heads": heads, "head_dim": head_dim, **attrs})))

    def norm(self, dim: int, bias: bool = False) -> None:
        self.extra += int(dim) * (2 if bias else 1)


#: integer keys that count repeated parts (blocks, layers): bounded so that no config can ask for
#: more layers than quantcore.limits allows before any is built
_COUNT_KEYS = ("num_layers", "num_single_layers", "num_hidden_layers", "layers_per_block")
_MAX_COUNT = 1024


def _ints(cfg: dict, where: str, keys: tuple, high: int = 1 << 20) -> dict:
    """The integer keys of a component config, every problem reported at once."""
    problems, out = [], {}
    for key in keys:
        value = cfg.get(key)
        top = _MAX_COUNT if key in _COUNT_KEYS else high
        problem = "is missing" if value is None else int_problem(value, 1, top)
        if problem:
            problems.append(f"{key} {problem}")
        else:
            out[key] = int(value)
    if problems:
        raise QuantDSEError(f"{where}: {'; '.join(problems)}: use the component's complete config.json")
    return out


def _flux(cfg: dict, where: str) -> _Stage:
    """FluxTransformer2DModel (diffusers transformer_flux.py): 19 double-stream and 38 single-stream blocks."""
    c = _ints(cfg, where, ("attention_head_dim", "num_attention_heads", "num_layers", "num_single_layers",
                           "in_channels", "joint_attention_dim", "pooled_projection_dim"))
    s = _Stage("transformer", "step", where)
    heads, hd = c["num_attention_heads"], c["attention_head_dim"]
    d = heads * hd
    patch = int(cfg.get("patch_size") or 1)
    out_ch = int(cfg.get("out_channels") or c["in_channels"])
    s.linear("x_embedder", d, c["in_channels"], "embed_in", "image")
    t = "time_text_embed"
    s.linear(f"{t}.timestep_embedder.linear_1", d, 256, "time_embed", "vector")
    s.linear(f"{t}.timestep_embedder.linear_2", d, d, "time_embed", "vector")
    if cfg.get("guidance_embeds"):
        s.linear(f"{t}.guidance_embedder.linear_1", d, 256, "time_embed", "vector")
        s.linear(f"{t}.guidance_embedder.linear_2", d, d, "time_embed", "vector")
    s.linear(f"{t}.text_embedder.linear_1", d, c["pooled_projection_dim"], "time_embed", "vector")
    s.linear(f"{t}.text_embedder.linear_2", d, d, "time_embed", "vector")
    s.linear("context_embedder", d, c["joint_attention_dim"], "embed_in", "text")
    for i in range(c["num_layers"]):
        p = f"transformer_blocks.{i}"
        s.linear(f"{p}.norm1.linear", 6 * d, d, "adaln", "vector", i)
        s.linear(f"{p}.norm1_context.linear", 6 * d, d, "adaln", "vector", i)
        for proj, role in (("to_q", "q"), ("to_k", "k"), ("to_v", "v")):
            s.linear(f"{p}.attn.{proj}", d, d, role, "image", i)
        for proj, role in (("add_q_proj", "q"), ("add_k_proj", "k"), ("add_v_proj", "v")):
            s.linear(f"{p}.attn.{proj}", d, d, role, "text", i)
        s.norm(hd * 4)  # norm_q, norm_k, norm_added_q, norm_added_k (RMSNorm over a head)
        s.attention(f"{p}.attn.attn", i, heads, hd, "joint")
        s.linear(f"{p}.attn.to_out.0", d, d, "o", "image", i)
        s.linear(f"{p}.attn.to_add_out", d, d, "o", "text", i)
        s.linear(f"{p}.ff.net.0.proj", 4 * d, d, "up", "image", i)
        s.linear(f"{p}.ff.net.2", d, 4 * d, "down", "image", i)
        s.linear(f"{p}.ff_context.net.0.proj", 4 * d, d, "up", "text", i)
        s.linear(f"{p}.ff_context.net.2", d, 4 * d, "down", "text", i)
    for i in range(c["num_single_layers"]):
        p = f"single_transformer_blocks.{i}"
        b = c["num_layers"] + i
        s.linear(f"{p}.norm.linear", 3 * d, d, "adaln", "vector", b)
        s.linear(f"{p}.proj_mlp", 4 * d, d, "up", "joint", b)
        for proj, role in (("to_q", "q"), ("to_k", "k"), ("to_v", "v")):
            s.linear(f"{p}.attn.{proj}", d, d, role, "joint", b)
        s.norm(hd * 2)  # norm_q, norm_k
        s.attention(f"{p}.attn.attn", b, heads, hd, "joint")
        s.linear(f"{p}.proj_out", d, 5 * d, "down", "joint", b)
    s.linear("norm_out.linear", 2 * d, d, "adaln", "vector")
    s.linear("proj_out", patch * patch * out_ch, d, "proj_out", "image")
    return s


def _pixart(cfg: dict, where: str) -> _Stage:
    """PixArtTransformer2DModel (diffusers transformers/pixart_transformer_2d.py, norm_type ada_norm_single):
    a 2x2 patch conv, one shared adaLN-single map, 28 blocks of self-attention, cross-attention
    to the projected T5 caption and a GELU MLP (diffusers attention.py BasicTransformerBlock)."""
    c = _ints(cfg, where, ("attention_head_dim", "num_attention_heads", "num_layers", "in_channels",
                           "caption_channels", "patch_size"))
    s = _Stage("transformer", "step", where)
    d, p = c["num_attention_heads"] * c["attention_head_dim"], c["patch_size"]
    out_ch = int(cfg.get("out_channels") or c["in_channels"])
    s.conv("pos_embed.proj", c["in_channels"], d, p, 1, "embed_in", tokens="image", stride=p, padding=0)
    s.linear("adaln_single.emb.timestep_embedder.linear_1", d, 256, "time_embed", "vector")
    s.linear("adaln_single.emb.timestep_embedder.linear_2", d, d, "time_embed", "vector")
    s.linear("adaln_single.linear", 6 * d, d, "adaln", "vector")
    s.linear("caption_projection.linear_1", d, c["caption_channels"], "embed_in", "text")
    s.linear("caption_projection.linear_2", d, d, "embed_in", "text")
    for i in range(c["num_layers"]):
        b = f"transformer_blocks.{i}"
        s.extra += 6 * d  # scale_shift_table
        for attn, kv in (("attn1", "image"), ("attn2", "text")):
            s.linear(f"{b}.{attn}.to_q", d, d, "q", "image", i)
            s.linear(f"{b}.{attn}.to_k", d, d, "k", kv, i)
            s.linear(f"{b}.{attn}.to_v", d, d, "v", kv, i)
            s.attention(f"{b}.{attn}.attn", i, c["num_attention_heads"], c["attention_head_dim"], "image",
                        kv_tokens=kv)
            s.linear(f"{b}.{attn}.to_out.0", d, d, "o", "image", i)
        s.linear(f"{b}.ff.net.0.proj", 4 * d, d, "up", "image", i)
        s.linear(f"{b}.ff.net.2", d, 4 * d, "down", "image", i)
    s.extra += 2 * d  # scale_shift_table
    s.linear("proj_out", p * p * out_ch, d, "proj_out", "image")
    return s


def _sdxl_unet(cfg: dict, where: str) -> _Stage:
    """UNet2DConditionModel as SDXL configures it (diffusers unets/unet_2d_condition.py, unet_2d_blocks.py):
    ResnetBlock2D (conv1, time_emb_proj, conv2, a 1x1 conv_shortcut where channels change) and
    Transformer2DModel (linear proj_in/proj_out, BasicTransformerBlock: self-attention, cross-attention to
    the text, GEGLU MLP) at each level; text_time additional embedding; 2x down- and upsampling convs."""
    c = _ints(cfg, where, ("in_channels", "out_channels", "layers_per_block", "cross_attention_dim"))
    chans = cfg.get("block_out_channels")
    if not isinstance(chans, list) or not 0 < len(chans) <= 16 or any(int_problem(x, 1, 1 << 16) for x in chans):
        raise QuantDSEError(f"{where}: block_out_channels must be a list of 1 to 16 positive integers: use the UNet's "
                            "config.json")
    chans = [int(x) for x in chans]
    heads = cfg.get("attention_head_dim")
    depth = cfg.get("transformer_layers_per_block") or 1
    n = len(chans)
    heads = list(heads) if isinstance(heads, list) else [int(heads or 8)] * n
    depth = list(depth) if isinstance(depth, list) else [int(depth)] * n
    down_types = cfg.get("down_block_types") or []
    bad = [v for v in heads + depth if int_problem(v, 1, _MAX_COUNT)]
    if bad or len(down_types) != n or len(heads) != n or len(depth) != n or int_problem(
            cfg.get("projection_class_embeddings_input_dim", 1), 1, 1 << 20):
        raise QuantDSEError(f"{where}: block_out_channels, down_block_types, attention_head_dim and "
                            "transformer_layers_per_block must have one entry per level (positive integers): use "
                            "the UNet's config.json")
    s = _Stage("unet", "step", where)
    temb, ctx = 4 * chans[0], c["cross_attention_dim"]
    s.conv("conv_in", c["in_channels"], chans[0], 3, 1.0, "embed_in")
    s.linear("time_embedding.linear_1", temb, chans[0], "time_embed", "vector")
    s.linear("time_embedding.linear_2", temb, temb, "time_embed", "vector")
    if cfg.get("addition_embed_type") == "text_time":
        s.linear("add_embedding.linear_1", temb, int(cfg["projection_class_embeddings_input_dim"]), "time_embed",
                 "vector")
        s.linear("add_embedding.linear_2", temb, temb, "time_embed", "vector")

    def resnet(p: str, cin: int, cout: int, scale: float, block: int) -> None:
        s.norm(cin, bias=True)
        s.conv(f"{p}.conv1", cin, cout, 3, scale, block=block)
        s.linear(f"{p}.time_emb_proj", cout, temb, "time_embed", "vector", block)
        s.norm(cout, bias=True)
        s.conv(f"{p}.conv2", cout, cout, 3, scale, block=block)
        if cin != cout:
            s.conv(f"{p}.conv_shortcut", cin, cout, 1, scale, "shortcut", block=block)

    def transformer(p: str, ch: int, layers: int, n_heads: int, scale: float, block: int) -> None:
        s.norm(ch, bias=True)
        s.linear(f"{p}.proj_in", ch, ch, "embed_in", "map", block, hw_scale=scale)
        for t in range(layers):
            b = f"{p}.transformer_blocks.{t}"
            s.norm(3 * ch, bias=True)  # norm1, norm2, norm3
            for attn, kv, kdim in (("attn1", "map", ch), ("attn2", "text", ctx)):
                s.linear(f"{b}.{attn}.to_q", ch, ch, "q", "map", block, bias=False, hw_scale=scale)
                s.linear(f"{b}.{attn}.to_k", ch, kdim, "k", kv, block, bias=False, hw_scale=scale)
                s.linear(f"{b}.{attn}.to_v", ch, kdim, "v", kv, block, bias=False, hw_scale=scale)
                s.attention(f"{b}.{attn}.attn", block, n_heads, ch // n_heads, "map", hw_scale=scale,
                            **({"kv_tokens": "text"} if kv == "text" else {}))
                s.linear(f"{b}.{attn}.to_out.0", ch, ch, "o", "map", block, hw_scale=scale)
            s.linear(f"{b}.ff.net.0.proj", 8 * ch, ch, "up", "map", block, hw_scale=scale)  # GEGLU: 2 x 4 ch
            s.linear(f"{b}.ff.net.2", ch, 4 * ch, "down", "map", block, hw_scale=scale)
        s.linear(f"{p}.proj_out", ch, ch, "proj_out", "map", block, hw_scale=scale)

    skips, ch, scale = [chans[0]], chans[0], 1.0
    for i, out in enumerate(chans):
        cross = "CrossAttn" in str(down_types[i])
        for j in range(c["layers_per_block"]):
            resnet(f"down_blocks.{i}.resnets.{j}", ch, out, scale, i)
            ch = out
            if cross:
                transformer(f"down_blocks.{i}.attentions.{j}", ch, int(depth[i]), int(heads[i]), scale, i)
            skips.append(ch)
        if i < n - 1:
            scale /= 2
            s.conv(f"down_blocks.{i}.downsamplers.0.conv", ch, ch, 3, scale, block=i)
            skips.append(ch)
    resnet("mid_block.resnets.0", ch, ch, scale, n)
    transformer("mid_block.attentions.0", ch, int(depth[-1]), int(heads[-1]), scale, n)
    resnet("mid_block.resnets.1", ch, ch, scale, n)
    up_types = cfg.get("up_block_types") or []
    for i, (out, d, h) in enumerate(zip(chans[::-1], depth[::-1], heads[::-1])):
        cross = i < len(up_types) and "CrossAttn" in str(up_types[i])
        for j in range(c["layers_per_block"] + 1):
            resnet(f"up_blocks.{i}.resnets.{j}", ch + skips.pop(), out, scale, n + 1 + i)
            ch = out
            if cross:
                transformer(f"up_blocks.{i}.attentions.{j}", ch, int(d), int(h), scale, n + 1 + i)
        if i < n - 1:
            scale *= 2
            s.conv(f"up_blocks.{i}.upsamplers.0.conv", ch, ch, 3, scale, block=n + 1 + i)
    s.norm(ch, bias=True)  # conv_norm_out
    s.conv("conv_out", ch, c["out_channels"], 3, 1.0, "proj_out")
    return s


def _clip_text(cfg: dict, where: str, stage: str) -> _Stage:
    """CLIPTextModel (transformers modeling_clip.py): `text_model.encoder.layers.N`, fc1/fc2 MLP."""
    c = _ints(cfg, where, ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                           "max_position_embeddings", "vocab_size"))
    s = _Stage(stage, "prompt", where)
    h, seq = c["hidden_size"], c["max_position_embeddings"]
    s.embedding("text_model.embeddings.token_embedding", c["vocab_size"], h)
    s.embedding("text_model.embeddings.position_embedding", seq, h, role="position")
    for i in range(c["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}"
        s.norm(h, bias=True)
        for proj, role in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
            s.linear(f"{p}.self_attn.{proj}", h, h, role, "prompt", i, seq=seq)
        s.attention(f"{p}.self_attn.attn", i, c["num_attention_heads"], h // c["num_attention_heads"], "prompt",
                    seq=seq)
        s.linear(f"{p}.self_attn.out_proj", h, h, "o", "prompt", i, seq=seq)
        s.norm(h, bias=True)
        s.linear(f"{p}.mlp.fc1", c["intermediate_size"], h, "fc1", "prompt", i, seq=seq)
        s.linear(f"{p}.mlp.fc2", h, c["intermediate_size"], "fc2", "prompt", i, seq=seq)
    s.norm(h, bias=True)  # final_layer_norm
    if cfg.get("_class_name") == "CLIPTextModelWithProjection":
        s.linear("text_projection", int(cfg.get("projection_dim") or h), h, "proj_out", "vector", bias=False)
    return s


def _t5_encoder(cfg: dict, where: str, stage: str, seq: int) -> _Stage:
    """T5EncoderModel (transformers modeling_t5.py): `encoder.block.N.layer.{0,1}`, gated-GELU FFN, no biases."""
    c = _ints(cfg, where, ("d_model", "d_ff", "d_kv", "num_heads", "num_layers", "vocab_size"))
    s = _Stage(stage, "prompt", where)
    d, inner = c["d_model"], c["num_heads"] * c["d_kv"]
    gated = str(cfg.get("feed_forward_proj", "relu")).startswith("gated")
    s.embedding("shared", c["vocab_size"], d)
    for i in range(c["num_layers"]):
        p = f"encoder.block.{i}.layer"
        s.norm(d)
        for proj, role, shape in (("q", "q", (inner, d)), ("k", "k", (inner, d)), ("v", "v", (inner, d))):
            s.linear(f"{p}.0.SelfAttention.{proj}", *shape, role, "prompt", i, bias=False, seq=seq)
        if i == 0:  # relative_attention_bias: buckets x heads, in block 0 only
            s.extra += int(cfg.get("relative_attention_num_buckets") or 32) * c["num_heads"]
        s.attention(f"{p}.0.SelfAttention.attn", i, c["num_heads"], c["d_kv"], "prompt", seq=seq)
        s.linear(f"{p}.0.SelfAttention.o", d, inner, "o", "prompt", i, bias=False, seq=seq)
        s.norm(d)
        if gated:
            s.linear(f"{p}.1.DenseReluDense.wi_0", c["d_ff"], d, "gate", "prompt", i, bias=False, seq=seq)
            s.linear(f"{p}.1.DenseReluDense.wi_1", c["d_ff"], d, "up", "prompt", i, bias=False, seq=seq)
        else:
            s.linear(f"{p}.1.DenseReluDense.wi", c["d_ff"], d, "up", "prompt", i, bias=False, seq=seq)
        s.linear(f"{p}.1.DenseReluDense.wo", d, c["d_ff"], "down", "prompt", i, bias=False, seq=seq)
    s.norm(d)  # encoder.final_layer_norm
    return s


def _vae_decoder(cfg: dict, where: str) -> _Stage:
    """AutoencoderKL's decoder (diffusers autoencoders/vae.py Decoder): what text-to-image runs.

    conv_in, a mid block (resnet, one single-head attention over the latent, resnet), then
    up blocks over the reversed channels, each `layers_per_block + 1` resnets (a 1x1
    conv_shortcut where the channels change) and a 2x upsampling conv but the last; conv_out.
    """
    c = _ints(cfg, where, ("latent_channels", "layers_per_block", "out_channels"))
    chans = cfg.get("block_out_channels")
    if not isinstance(chans, list) or not 0 < len(chans) <= 16 or any(int_problem(x, 1, 1 << 16) for x in chans):
        raise QuantDSEError(f"{where}: block_out_channels must be a list of 1 to 16 positive integers: use the VAE's "
                            "config.json")
    s = _Stage("vae", "image", where)
    rev = [int(x) for x in reversed(chans)]
    if cfg.get("use_post_quant_conv", True):
        s.conv("post_quant_conv", c["latent_channels"], c["latent_channels"], 1, 1, "embed_in")
    s.conv("decoder.conv_in", c["latent_channels"], rev[0], 3, 1, "embed_in")

    def resnet(prefix: str, cin: int, cout: int, scale: int, block: int) -> None:
        s.norm(cin, bias=True)
        s.conv(f"{prefix}.conv1", cin, cout, 3, scale, block=block)
        s.norm(cout, bias=True)
        s.conv(f"{prefix}.conv2", cout, cout, 3, scale, block=block)
        if cin != cout:
            s.conv(f"{prefix}.conv_shortcut", cin, cout, 1, scale, "shortcut", block=block)

    resnet("decoder.mid_block.resnets.0", rev[0], rev[0], 1, 0)
    s.norm(rev[0], bias=True)
    for proj, role in (("to_q", "q"), ("to_k", "k"), ("to_v", "v")):
        s.linear(f"decoder.mid_block.attentions.0.{proj}", rev[0], rev[0], role, "latent", 0)
    s.attention("decoder.mid_block.attentions.0.attn", 0, 1, rev[0], "latent")
    s.linear("decoder.mid_block.attentions.0.to_out.0", rev[0], rev[0], "o", "latent", 0)
    resnet("decoder.mid_block.resnets.1", rev[0], rev[0], 1, 0)
    cout, scale = rev[0], 1
    for i, ch in enumerate(rev):
        cin, cout = cout, ch
        for j in range(c["layers_per_block"] + 1):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else cout, cout, scale, i + 1)
        if i < len(rev) - 1:
            scale *= 2
            s.conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", cout, cout, 3, scale, block=i + 1)
    s.norm(cout, bias=True)  # conv_norm_out
    s.conv("decoder.conv_out", cout, c["out_channels"], 3, scale, "proj_out")
    return s


_DENOISERS = {"FluxTransformer2DModel": _flux, "PixArtTransformer2DModel": _pixart,
              "UNet2DConditionModel": _sdxl_unet}
_TEXT = {"CLIPTextModel": "clip", "CLIPTextModelWithProjection": "clip", "T5EncoderModel": "t5"}


def _component(stage: str, cfg, where: str, pipeline: dict) -> _Stage:
    if not isinstance(cfg, dict):
        raise QuantDSEError(f"{where} must hold a JSON object: use the component's config.json")
    cls = cfg.get("_class_name") or (cfg.get("architectures") or [None])[0]
    if stage in DENOISERS:
        if cls not in _DENOISERS:
            raise QuantDSEError(f"{where}: denoiser class {cls!r} is not supported: supported: "
                                f"{', '.join(_DENOISERS)}")
        return _DENOISERS[cls](cfg, where)
    if stage == "vae":
        if cls != "AutoencoderKL":
            raise QuantDSEError(f"{where}: VAE class {cls!r} is not supported: use an AutoencoderKL config")
        return _vae_decoder(cfg, where)
    kind = _TEXT.get(cls)
    if kind is None:
        raise QuantDSEError(f"{where}: text encoder class {cls!r} is not supported: supported: {', '.join(_TEXT)}")
    if kind == "clip":
        return _clip_text(cfg, where, stage)
    return _t5_encoder(cfg, where, stage, int(pipeline.get("max_sequence_length") or 512))


def pipeline_defaults(pipeline: dict, vae: dict | None) -> dict:
    """The pipeline facts the workload needs: steps, CFG, resolution, text length, latent geometry."""
    from quantcore.limits import RANGES

    if not isinstance(pipeline, dict):
        raise QuantDSEError("the pipeline section must be a JSON object: fix the catalog entry")
    res = pipeline.get("resolution") or [(vae or {}).get("sample_size") or 1024] * 2
    checks = {"num_inference_steps": (pipeline.get("num_inference_steps", 50), RANGES["steps"]),
              "max_sequence_length": (pipeline.get("max_sequence_length", 512), (1, 1 << 16)),
              "vae_scale_factor": (pipeline.get("vae_scale_factor", 8), (1, 64)),
              "latent_multiple": (pipeline.get("latent_multiple", 2), (1, 64))}
    if not isinstance(res, list) or len(res) != 2:
        res = [None, None]
    checks.update({f"resolution[{i}]": (v, RANGES["resolution"]) for i, v in enumerate(res)})
    problems = [f"{key} {p}" for key, (v, (lo, hi)) in checks.items() if (p := int_problem(v, lo, hi))]
    if problems:
        raise QuantDSEError(f"pipeline: {'; '.join(problems)}: fix the pipeline's defaults")
    guidance = pipeline.get("guidance", "cfg")
    if guidance not in ("cfg", "distilled", "none"):
        raise QuantDSEError(f"pipeline guidance {guidance!r} is not known: use cfg, distilled or none")
    return {"steps": int(pipeline.get("num_inference_steps") or 50), "cfg": guidance == "cfg",
            "guidance": guidance, "resolution": [int(res[0]), int(res[1])],
            "text_tokens": int(pipeline.get("max_sequence_length") or 512),
            "vae_scale_factor": int(pipeline.get("vae_scale_factor") or 8),
            "patch": int(pipeline.get("latent_multiple") or 2),
            "pipeline_class": pipeline.get("_class_name", "")}


def graph_from_diffusers(doc: dict, name: str, source: str, where: str) -> LayerGraph:
    """The pipeline graph of a `quantdse.diffusers/1` document (catalog) or of a folder read into one."""
    comps = doc.get("components")
    denoiser = next((d for d in DENOISERS if isinstance(comps, dict) and d in comps), None)
    if denoiser is None:
        raise QuantDSEError(f"{where}: a diffusers pipeline needs components with a transformer or unet config")
    pipeline = doc.get("pipeline") or {}
    from quantcore.limits import check_cap

    layers, extra, present = [], 0, []
    for stage in STAGES:
        if stage in comps:
            built = _component(stage, comps[stage], f"{where} {stage}", pipeline)
            layers += built.layers
            extra += built.extra
            present.append(stage)
            check_cap("layers", len(layers), f"{where} layers")
    tf = comps[denoiser]
    config = {"arch": "diffusion", "stages": present, "denoiser": denoiser,
              "num_layers": int(tf.get("num_layers", 0) or 0) + int(tf.get("num_single_layers", 0) or 0),
              "num_experts": 0, "experts_per_token": 0,
              "latent_channels": int((comps.get("vae") or {}).get("latent_channels") or 16),
              **pipeline_defaults(pipeline, comps.get("vae"))}
    return LayerGraph(name, layers, config, source=source, extra_params=extra)


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "model_index.json").is_file()
                              or any((path / d / "config.json").is_file() for d in DENOISERS))


def read_diffusers_folder(path: Path) -> dict:
    """A diffusers folder as a `quantdse.diffusers/1` document: each component's config.json.

    model_index.json names the components (and the pipeline class); without it, the folders
    present are used. The pipeline's defaults are diffusers' for FluxPipeline unless the
    folder says otherwise.
    """
    index = load_json(path / "model_index.json", "model_index.json") if (path / "model_index.json").is_file() else {}
    comps = {}
    for stage in STAGES:
        cfg = path / stage / "config.json"
        if cfg.is_file():
            comps[stage] = load_json(cfg, f"{stage}/config.json")
    pipeline = {"_class_name": index.get("_class_name", "FluxPipeline"), "num_inference_steps": 28,
                "guidance": "distilled" if (comps.get("transformer") or {}).get("guidance_embeds") else "cfg",
                "max_sequence_length": 512, "vae_scale_factor": 8}
    return {"format": SPEC_FORMAT, "components": comps, "pipeline": pipeline}


def graph_from_diffusers_folder(path: Path, name: str) -> LayerGraph:
    """A diffusers folder: configs give the layers; each component's safetensors (when present) must
    agree with them, shape by shape, and become the graph's weights."""
    graph = graph_from_diffusers(read_diffusers_folder(path), name, f"diffusers:{path}", str(path))
    weights = _folder_weights(path, graph)
    if weights is not None:
        graph.weights = weights
        graph.source = f"diffusers+safetensors:{path}"
    return graph


def _folder_weights(path: Path, graph: LayerGraph):
    """A WeightSource over the components' safetensors, or None when the folder has none."""
    from quantcore.models.safetensors_io import SafetensorsWeights, read_tensors

    found, tensors = {}, {}
    for stage in STAGES:
        folder = path / stage
        if not folder.is_dir() or not any(folder.glob("*.safetensors")):
            continue
        for tname, info in read_tensors(folder).items():
            tensors[f"{stage}.{tname}"] = info
            found[f"{stage}.{tname}"] = info
    if not tensors:
        return None
    layer_tensors = {}
    for layer in graph.quantizable():
        tname = layer.name + ".weight"
        if layer.attrs.get("stage") and any(k.startswith(layer.attrs["stage"] + ".") for k in found):
            info = found.get(tname)
            if info is None:
                raise QuantDSEError(f"{path}: {layer.attrs['stage']} has no tensor "
                                    f"{tname.split('.', 1)[1]!r} its config implies: the config and weights disagree")
            if tuple(info.shape) != tuple(layer.shape):
                raise QuantDSEError(f"{path}: {tname.split('.', 1)[1]} has shape {list(info.shape)}, its config implies "
                                    f"{list(layer.shape)}: the config and weights disagree")
            layer_tensors[layer.name] = tname
    return SafetensorsWeights(tensors, layer_tensors, set()) if layer_tensors else None
