"""Activation and K/V fake quantizers (quantcore.quantizers.activation) against hand calculations."""
import numpy as np
import pytest

from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from quantcore.quantizers.activation import ActSpec, act_spec, quantize_activation, quantize_heads


def test_int8_per_token_by_hand():
    x = np.array([[1.0, -0.5, 0.25, 0.1], [0.0, 3.0, -6.0, 0.04]], dtype=np.float32)
    q = quantize_activation(x, ActSpec(8))
    # row 0: scale 1/127; 0.5*127 = 63.5 -> 64 (ties to even), 0.25*127 = 31.75 -> 32, 0.1*127 = 12.7 -> 13
    assert q[0] * 127 == pytest.approx([127, -64, 32, 13], abs=1e-4)
    # row 1: scale 6/127; 3/(6/127) = 63.5 -> 64, 0.04*127/6 = 0.8467 -> 1
    assert q[1] / (6 / 127) == pytest.approx([0, 64, -127, 1], abs=1e-4)


def test_int4_per_token_by_hand():
    x = np.array([[0.7, -0.3, 0.11, 0.05]], dtype=np.float32)
    q = quantize_activation(x, ActSpec(4))
    # scale 0.7/7 = 0.1: 7, -3, 1.1 -> 1, 0.5 -> 0 (ties to even)
    assert q[0] == pytest.approx([0.7, -0.3, 0.1, 0.0], abs=1e-6)


def test_per_channel_and_per_group_scales_by_hand():
    x = np.array([[1.0, 0.25, 4.0, 0.3], [-0.6, 0.4, 1.0, -3.0]], dtype=np.float32)
    ch = quantize_activation(x, ActSpec(4, granularity="channel"))
    # column amax 1, 0.4, 4, 3 -> scales amax/7: -0.6*7 = -4.2 -> -4; 0.25*7/0.4 = 4.375 -> 4; 1*7/4 = 1.75 -> 2
    assert ch[:, 0] == pytest.approx([1.0, -4 / 7], abs=1e-6)
    assert ch[:, 1] == pytest.approx([4 * 0.4 / 7, 0.4], abs=1e-6)
    assert ch[:, 2] == pytest.approx([4.0, 2 * 4 / 7], abs=1e-6)
    gr = quantize_activation(x, ActSpec(4, granularity="group", group=2))
    # row 0 groups (1, 0.25) scale 1/7: 1.75 -> 2; (4, 0.3) scale 4/7: 0.525 -> 1
    assert gr[0] == pytest.approx([1.0, 2 / 7, 4.0, 4 / 7], abs=1e-6)


def test_fp8_and_fp4_activations_by_hand():
    x = np.array([[6.0, 1.25, -2.6, 0.2]], dtype=np.float32)
    q4 = quantize_activation(x, ActSpec(4, kind="fp"))
    # scale 6/6 = 1: e2m1 grid {0, .5, 1, 1.5, 2, 3, 4, 6}: 1.25 -> 1 (tie to even mantissa), -2.6 -> -3, 0.2 -> 0
    assert q4[0] == pytest.approx([6.0, 1.0, -3.0, 0.0])
    q8 = quantize_activation(np.array([[448.0, 100.0, 0.0]], dtype=np.float32), ActSpec(8, kind="fp"))
    # scale 1: e4m3 around 100 steps by 8 (binade 64..128, 3 mantissa bits): 100 -> 96 (12.5 -> 12, even)
    assert q8[0] == pytest.approx([448.0, 96.0, 0.0])


def test_sixteen_bits_is_identity_and_spec_from_format():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    assert np.array_equal(quantize_activation(x, None), x)
    assert act_spec(get_format("int4-g128")) is None
    assert act_spec(get_format("int4-g128-a8")) == ActSpec(8, "int", "token", 128)
    assert act_spec(get_format("int8-a4")).label == "a4"


def test_bad_activation_specs_are_errors():
    x = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(QuantDSEError, match="fp activations of 6 bits"):
        quantize_activation(x, ActSpec(6, kind="fp"))
    with pytest.raises(QuantDSEError, match="granularity 'row'"):
        quantize_activation(x, ActSpec(8, granularity="row"))
    with pytest.raises(QuantDSEError, match="2-D"):
        quantize_activation(np.ones(3), ActSpec(8))


def test_kv_heads_grouped_along_the_head_dimension():
    # two heads of 2 per token: int4 per head vector, scale amax/7 of each head's own pair
    x = np.array([[1.0, 0.3, 10.0, -2.0]], dtype=np.float32)
    q = quantize_heads(x, get_format("int4-g64"), head_dim=2)
    assert q[0] == pytest.approx([1.0, 2 / 7, 10.0, -10 * 1 / 7], abs=1e-3)  # 2.1 -> 2; -1.4 -> -1
    with pytest.raises(QuantDSEError, match="do not split into heads"):
        quantize_heads(x, get_format("int8"), head_dim=3)
