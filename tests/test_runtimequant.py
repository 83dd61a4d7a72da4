"""Activation and K/V fake quantization through hooks (dse.runtimequant) and their sensitivity (dse.actsens),
on tiny torch networks against independent oracles: the layer recomputed by hand with the quantized input,
attention recomputed from its captured q, k, v, and exact Hessians from torch.autograd.functional.hessian."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import require
from dse import actsens
from dse.runtimequant import kv_items, runtime_quantization
from quantcore.formats import get_format
from quantcore.quantizers.activation import ActSpec, quantize_activation, quantize_heads


def _tiny(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(40, 6)
    return net, x, [x[:16], x[16:32], x[32:]]


def test_input_hook_quantizes_the_layer_input_and_is_removed():
    net, x, _ = _tiny()
    spec = ActSpec(4)
    with torch.no_grad():
        fp = net(x)
        a = torch.tanh(net[0](x))
        aq = torch.from_numpy(quantize_activation(a.numpy(), spec))
        expected = net[4](torch.tanh(net[2](aq)))
        with runtime_quantization({net[2]: spec}, {}):
            got = net(x)
        after = net(x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, fp, atol=1e-3)  # 4-bit inputs move the output visibly
    assert torch.equal(after, fp)


def test_output_hook_quantizes_kv_entries_per_head():
    torch.manual_seed(1)
    proj = nn.Linear(8, 6)
    x = torch.randn(2, 5, 8)
    fmt = get_format("int4-g64")
    with torch.no_grad():
        raw = proj(x)
        with runtime_quantization({}, {proj: (fmt, 3)}):
            got = proj(x)
    expected = quantize_heads(raw.reshape(-1, 6).numpy(), fmt, 3).reshape(2, 5, 6)
    assert np.allclose(got.numpy(), expected, atol=1e-7)
    # each head vector of 3 has its own scale amax / 7 (stored in fp16): every value is a multiple of it
    heads = got.reshape(-1, 3).numpy()
    scale = np.abs(raw.reshape(-1, 3).numpy()).max(1, keepdims=True) / 7
    assert np.allclose(heads / scale, np.rint(heads / scale), atol=0.02)


def test_joint_output_error_equals_running_the_quantized_layer():
    net, x, batches = _tiny()
    spec, fmt = ActSpec(4), get_format("int3-g128")
    mod = net[2]
    sites = actsens.input_sites({"2": mod}, [spec])
    grams = actsens.input_site_grams(sites, net, batches)
    with torch.no_grad():
        a = torch.tanh(net[0](x)).double()
        w = mod.weight.detach().double()
        wq = torch.from_numpy(fmt.quantize(mod.weight.detach().numpy()).astype(np.float64))
        aq = torch.from_numpy(quantize_activation(a.float().numpy(), spec).astype(np.float64))
        y = a @ w.T + mod.bias.double()
        yq = aq @ wq.T + mod.bias.double()
    expected = float(((yq - y) ** 2).sum() / (y ** 2).sum())
    gram, y2 = (a.T @ a), float((y ** 2).sum())
    ee, xe = grams["2"][spec.label]
    assert actsens.joint_output_error(w, wq, gram, ee, xe, y2) == pytest.approx(expected, rel=1e-6)


def _exact_input_hessian(net, x):
    """Exact Hessian of L(a) = 1/N sum ||g(a) - g(a0)||^2 w.r.t. a = the input of net[2] (all rows)."""
    a0 = torch.tanh(net[0](x)).detach()
    ref = net[2:](a0).detach()

    def loss(a):
        return ((net[2:](a) - ref) ** 2).sum() / len(x)

    h = torch.autograd.functional.hessian(loss, a0)
    return a0, h.reshape(a0.numel(), a0.numel())


@pytest.mark.parametrize("source", ["hessian", "fisher"])
def test_site_errors_match_the_exact_hessian(source):
    net, x, batches = _tiny()
    spec = ActSpec(4)
    a0, h = _exact_input_hessian(net, x)
    e = torch.from_numpy(quantize_activation(a0.numpy(), spec)).double() - a0.double()
    if source == "hessian":  # HAWQ form: half the average curvature times ||E||^2
        expected = 0.5 * float(torch.trace(h)) / a0.numel() * float((e ** 2).sum())
    else:                    # half the diagonal of H against E^2
        expected = 0.5 * float((torch.diagonal(h).double() * e.flatten() ** 2).sum())
    sites = actsens.input_sites({"2": net[2]}, [spec])
    got = actsens.site_gradient_errors(source, sites, net, batches, len(x), seed=3, samples=800)["2"][spec.label]
    assert got == pytest.approx(expected, rel=0.06)


def test_kv_items_and_the_cache_hook_match_attention_by_hand():
    """A tiny BertModel (random weights, no files): items are <attention module>.k_cache / .v_cache, and
    with V quantized the attention output is softmax(q k^T / sqrt(d)) V_q recomputed from captured q, k, v."""
    transformers = require("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=32, max_position_embeddings=32, attn_implementation="eager")
    model = transformers.BertModel(cfg).eval()
    items = kv_items(model)
    assert sorted(items) == [f"encoder.layer.{i}.attention.self.{c}" for i in (0, 1) for c in ("k_cache", "v_cache")]
    assert all(hd == 4 for _, hd in items.values())
    att = model.encoder.layer[0].attention.self
    fmt = get_format("int2-g32")
    seen = {}
    hooks = [getattr(att, n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, o.detach()))
             for n in ("query", "key", "value")]
    got = {}
    hooks.append(att.register_forward_hook(lambda m, a, o: got.__setitem__("ctx", o[0].detach())))
    ids = torch.randint(0, 50, (2, 7))
    try:
        with torch.no_grad(), runtime_quantization({}, {items["encoder.layer.0.attention.self.v_cache"][0]: (fmt, 4)}):
            model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()

    def heads(t):
        return t.reshape(2, 7, 4, 4).transpose(1, 2)

    vq = torch.from_numpy(quantize_heads(seen["value"].reshape(-1, 16).numpy(), fmt, 4)).reshape(2, 7, 16)
    p = torch.softmax(heads(seen["query"]) @ heads(seen["key"]).transpose(-1, -2) / math.sqrt(4), dim=-1)
    ctx = (p @ heads(vq)).transpose(1, 2).reshape(2, 7, 16)
    assert torch.allclose(got["ctx"], ctx, atol=1e-5)
    assert not torch.allclose(seen["value"], vq, atol=1e-2)  # 2 bits: the hook did change V


def test_plan_assignment_reads_activation_objects_and_kv_items():
    from dse.evaluate import plan_assignment
    from quantcore.errors import QuantDSEError

    plan = {"layers": [{"name": "a", "format": "int8-a8"},
                       {"name": "b", "format": "int8", "activation": {"bits": 4, "granularity": "group", "group_size": 64}},
                       {"name": "c", "format": "int8-a8", "activation": {"bits": 16}},
                       {"name": "x.k_cache", "format": "int4-g64"}],
            "kv": {"x.v_cache": "int8", "not-a-cache": "int2-g32"}}
    formats, acts = plan_assignment(plan)
    assert formats == {"a": "int8-a8", "b": "int8", "c": "int8-a8", "x.k_cache": "int4-g64", "x.v_cache": "int8"}
    assert acts == {"b": ActSpec(4, "int", "group", 64), "c": None}
    for bad, message in (({"bits": 3}, "activation bits 3 are not 4, 8 or 16"),
                         ({"bits": 8, "group_size": "x"}, "activation group_size x is not a whole number")):
        with pytest.raises(QuantDSEError, match=message):
            plan_assignment({"layers": [{"name": "a", "format": "int8", "activation": bad}]})
