"""Regenerate ldm-4-bedrooms.json: the UNet of LDM-4 on LSUN-Bedrooms 256x256, BinaryDM's model.

Run: `python quantcore/models/catalog/make_ldm_spec.py`. The architecture is CompVis/latent-diffusion
`ldm/modules/diffusionmodules/openaimodel.py` UNetModel with the config BinaryDM trains
(Xingyu-Zheng/BinaryDM bedrooms.yaml, = latent-diffusion configs/latent-diffusion/lsun_bedrooms-ldm-vq-4.yaml):
image_size 64 (a 256x256 image through the VQ-f4 autoencoder), in/out channels 3, model_channels 224,
channel_mult [1, 2, 3, 4], num_res_blocks 2, attention at downsampling factors 8, 4, 2
(latents of 8, 16, 32), num_head_channels 32, use_scale_shift_norm false. Per ResBlock: in_layers.2
(3x3 conv), emb_layers.1 (linear from the 4 x 224 time embedding), out_layers.3 (3x3 conv),
skip_connection (1x1 conv) where the channels change; per AttentionBlock: qkv and proj_out
(1x1 conv1d over the flattened map; written as 1x1 convs); 3x3 stride-2 Downsample and 3x3
Upsample convs; time_embed.0/.2 linears; out.2 the last 3x3 conv. Biases and GroupNorm
weights are extra_params. Total 274,056,163 parameters = 1045.4 MiB in fp32, BinaryDM's
"FP 1045.4 MB". The attention matmuls are not layers here.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = ("LDM-4 LSUN-Bedrooms UNet: CompVis/latent-diffusion openaimodel.py UNetModel with "
          "Xingyu-Zheng/BinaryDM bedrooms.yaml (model_channels 224, channel_mult 1,2,3,4, 2 res blocks, "
          "attention at ds 2,4,8, 32 channels per head)")


def build(mc=224, mult=(1, 2, 3, 4), nrb=2, attn_ds=(2, 4, 8), res=64, in_ch=3, out_ch=3) -> dict:
    doc = {"format": "quantdse.cnn/1", "name": "ldm-4-bedrooms", "source": SOURCE, "input_hw": [res, res],
           "extra_params": 0, "layers": []}
    ted = 4 * mc

    def conv(name, cin, cout, k, hw_in, stride=1, role="conv"):
        out = hw_in // stride
        doc["layers"].append({"name": name, "kind": "conv", "role": role, "in_channels": cin, "out_channels": cout,
                              "kernel": [k, k], "stride": stride, "padding": k // 2, "groups": 1,
                              "in_hw": [hw_in, hw_in], "out_hw": [out, out]})
        doc["extra_params"] += cout  # bias

    def linear(name, fin, fout, role):
        doc["layers"].append({"name": name, "kind": "linear", "role": role, "in_features": fin, "out_features": fout})
        doc["extra_params"] += fout

    def resblock(p, cin, cout, hw):
        doc["extra_params"] += 2 * cin + 2 * cout  # in_layers.0 and out_layers.0 GroupNorm
        conv(f"{p}.in_layers.2", cin, cout, 3, hw)
        linear(f"{p}.emb_layers.1", ted, cout, "time_embed")
        conv(f"{p}.out_layers.3", cout, cout, 3, hw)
        if cin != cout:
            conv(f"{p}.skip_connection", cin, cout, 1, hw, role="shortcut")

    def attention(p, c, hw):
        doc["extra_params"] += 2 * c  # norm
        conv(f"{p}.qkv", c, 3 * c, 1, hw, role="qkv")
        conv(f"{p}.proj_out", c, c, 1, hw, role="o")

    linear("time_embed.0", mc, ted, "time_embed")
    linear("time_embed.2", ted, ted, "time_embed")
    conv("input_blocks.0.0", in_ch, mc, 3, res, role="embed_in")
    chans, ch, ds, idx, hw = [mc], mc, 1, 1, res
    for level, m in enumerate(mult):
        for _ in range(nrb):
            resblock(f"input_blocks.{idx}.0", ch, m * mc, hw)
            ch = m * mc
            if ds in attn_ds:
                attention(f"input_blocks.{idx}.1", ch, hw)
            chans.append(ch)
            idx += 1
        if level != len(mult) - 1:
            conv(f"input_blocks.{idx}.0.op", ch, ch, 3, hw, stride=2)
            hw, ds = hw // 2, ds * 2
            chans.append(ch)
            idx += 1
    resblock("middle_block.0", ch, ch, hw)
    attention("middle_block.1", ch, hw)
    resblock("middle_block.2", ch, ch, hw)
    idx = 0
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(nrb + 1):
            resblock(f"output_blocks.{idx}.0", ch + chans.pop(), mc * m, hw)
            ch, j = mc * m, 1
            if ds in attn_ds:
                attention(f"output_blocks.{idx}.1", ch, hw)
                j = 2
            if level and i == nrb:
                conv(f"output_blocks.{idx}.{j}.conv", ch, ch, 3, hw * 2)
                hw, ds = hw * 2, ds // 2
            idx += 1
    doc["extra_params"] += 2 * ch  # out.0 GroupNorm
    conv("out.2", mc, out_ch, 3, res, role="proj_out")
    return doc


if __name__ == "__main__":
    (HERE / "ldm-4-bedrooms.json").write_text(json.dumps(build(), indent=1) + "\n", encoding="utf-8")
