"""Regenerate the CNN layer specs in this folder (resnet-50.json, codenet-a..e.json).

Run: `python quantcore/models/catalog/make_cnn_specs.py`. The JSON files are the shipped
data; this script is their provenance, so the architectures can be checked line by line:

- ResNet-50 v1.5 as in torchvision `resnet50` (stride on the 3x3 conv of a bottleneck).
- CoDeNet (Dong et al., FPGA'21), from Zhen-Dong/CoDeNet
  `lib/models/networks/shufflenetv2_dcn.py` (PoseShuffleNetV2) and
  `lib/models/external/modules/dcn_deform_conv.py` (DeformConvWithOffsetScaleBoundPositive):
  ShuffleNetV2 backbone (channels 24/116/232/464/1024, or 24/244/488/976/2153 at 2x width,
  stage repeats 3/7/3 after a stride-2 unit), a 1x1 conv to 1024 (2153), three upsampling
  stages each = 1x1 offset-scale conv (-> 1 channel, bias), depthwise deformable 3x3,
  1x1 channel conv (-> 256/128/64), nearest 2x upsample; CenterNet heads hm/wh/reg, each
  1x1 64->64, depthwise 3x3, 1x1 64->classes (bias); 20 classes (Pascal VOC, the dataset
  of the paper's FPGA results). The first conv is stride 4, or stride 2 + 3x3/2 max-pool.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Builder:
    def __init__(self, name: str, input_hw: int, source: str):
        self.doc = {"format": "quantdse.cnn/1", "name": name, "source": source,
                    "input_hw": [input_hw, input_hw], "extra_params": 0, "layers": []}

    def conv(self, name, cin, cout, k, stride, hw, groups=1, kind="conv", role=None, bn=True, bias=False, **extra):
        pad = k // 2
        out = (hw + 2 * pad - k) // stride + 1
        role = role or ("dwconv" if groups == cin and groups > 1 else "conv")
        self.doc["layers"].append({"name": name, "kind": kind, "role": role, "in_channels": cin, "out_channels": cout,
                                   "kernel": [k, k], "stride": stride, "padding": pad, "groups": groups,
                                   "in_hw": [hw, hw], "out_hw": [out, out], **extra})
        self.doc["extra_params"] += 2 * cout * bn + cout * bias  # BatchNorm weight+bias, conv bias
        return out

    def linear(self, name, fin, fout, role="fc"):
        self.doc["layers"].append({"name": name, "kind": "linear", "role": role, "in_features": fin,
                                   "out_features": fout})
        self.doc["extra_params"] += fout  # bias

    def write(self):
        path = HERE / f"{self.doc['name']}.json"
        path.write_text(json.dumps(self.doc, indent=1) + "\n")


def resnet50() -> Builder:
    b = Builder("resnet-50", 224, "torchvision resnet50 (ResNet v1.5, He et al. 2016)")
    hw = b.conv("conv1", 3, 64, 7, 2, 224)
    hw = (hw + 2 - 3) // 2 + 1  # 3x3/2 max-pool
    cin = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for i in range(blocks):
            stride = 2 if (i == 0 and stage > 1) else 1
            p = f"layer{stage}.{i}"
            b.conv(f"{p}.conv1", cin, width, 1, 1, hw)
            out = b.conv(f"{p}.conv2", width, width, 3, stride, hw)
            b.conv(f"{p}.conv3", width, width * 4, 1, 1, out)
            if i == 0:
                b.conv(f"{p}.downsample.0", cin, width * 4, 1, stride, hw, role="downsample")
            cin, hw = width * 4, out
    b.linear("fc", 2048, 1000)
    return b


def codenet(name: str, input_hw: int, wide: bool, maxpool: bool, classes: int = 20) -> Builder:
    b = Builder(name, input_hw, "CoDeNet (Dong et al., FPGA'21), Zhen-Dong/CoDeNet shufflenetv2_dcn.py")
    ch = [24, 244, 488, 976, 2153] if wide else [24, 116, 232, 464, 1024]
    if maxpool:
        hw = b.conv("layer0.0", 3, ch[0], 3, 2, input_hw, on_cpu=True)
        hw = (hw + 2 - 3) // 2 + 1
    else:
        hw = b.conv("layer0.0", 3, ch[0], 3, 4, input_hw, on_cpu=True)
    for i, repeats in enumerate((3, 7, 3)):
        cin, half = ch[i], ch[i + 1] // 2
        p = f"layer{i + 1}"
        b.conv(f"{p}.0.b1.0", cin, cin, 3, 2, hw, groups=cin)
        out = b.conv(f"{p}.0.b1.2", cin, half, 1, 1, (hw + 1) // 2)
        b.conv(f"{p}.0.b2.0", cin, half, 1, 1, hw)
        b.conv(f"{p}.0.b2.3", half, half, 3, 2, hw, groups=half)
        b.conv(f"{p}.0.b2.5", half, half, 1, 1, out)
        hw = out
        for j in range(1, repeats + 1):
            b.conv(f"{p}.{j}.b2.0", half, half, 1, 1, hw)
            b.conv(f"{p}.{j}.b2.3", half, half, 3, 1, hw, groups=half)
            b.conv(f"{p}.{j}.b2.5", half, half, 1, 1, hw)
    b.conv("layer4.0", ch[3], ch[4], 1, 1, hw)
    cin = ch[4]
    for i, planes in enumerate((256, 128, 64)):
        p = f"deconv_layers.{4 * i}"
        b.conv(f"{p}.conv_scale", cin, 1, 1, 1, hw, role="offset", bn=False, bias=True)
        b.conv(f"{p}.conv.conv", cin, cin, 3, 1, hw, groups=cin, kind="deform-conv", role="dwconv", bn=False)
        b.conv(f"{p}.conv_channel", cin, planes, 1, 1, hw)
        cin, hw = planes, hw * 2  # nearest 2x upsample
    for head, out_ch in (("hm", classes), ("wh", 2), ("reg", 2)):
        b.conv(f"{head}.0", 64, 64, 1, 1, hw)
        b.conv(f"{head}.3", 64, 64, 3, 1, hw, groups=64)
        b.conv(f"{head}.6", 64, out_ch, 1, 1, hw, role="head", bn=False, bias=True)
    return b


if __name__ == "__main__":
    resnet50().write()
    codenet("codenet-a", 256, wide=False, maxpool=False).write()
    codenet("codenet-b", 256, wide=False, maxpool=True).write()
    codenet("codenet-c", 512, wide=False, maxpool=False).write()
    codenet("codenet-d", 512, wide=True, maxpool=False).write()
    codenet("codenet-e", 512, wide=True, maxpool=True).write()
