"""The weights sensitivity cache: the same table as the uncached computation, cells reused, files keyed."""
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from quantcore.formats import get_format
from quantcore.models import load_graph
from dse.senscache import cached_weight_errors
from dse.sensitivity import weight_errors


@pytest.fixture
def checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    g = torch.Generator().manual_seed(0)
    tensors = {f"model.layers.0.mlp.{n}.weight": torch.randn(64, 256, generator=g) for n in ("up_proj", "gate_proj")}
    tensors["lm_head.weight"] = torch.randn(32, 256, generator=g)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    return path


def test_cache_gives_the_uncached_table_and_reuses_cells(checkpoint):
    graph = load_graph(str(checkpoint))
    layers = graph.quantizable()
    calls = []

    def compute(ls, fs):
        calls.append(len(ls) * len(fs))
        return weight_errors(graph, ls, fs)

    first = [get_format(n) for n in ("q4_k", "int4-g128")]
    errors, info = cached_weight_errors(graph, layers, first, 0, compute)
    np.testing.assert_array_equal(errors, weight_errors(graph, layers, first))
    assert info["computed"] == len(layers) * 2 and sum(calls) == len(layers) * 2
    calls.clear()
    again, info = cached_weight_errors(graph, layers, first, 0, compute)
    np.testing.assert_array_equal(again, errors)
    assert info == {**info, "cached": len(layers) * 2, "computed": 0} and not calls
    more = first + [get_format("q8_0")]  # only the new format's cells are computed
    table, info = cached_weight_errors(graph, layers, more, 0, compute)
    assert info["computed"] == len(layers) and sum(calls) == len(layers)
    np.testing.assert_array_equal(table, weight_errors(graph, layers, more))


def test_a_changed_checkpoint_is_recomputed(checkpoint):
    graph = load_graph(str(checkpoint))
    fmts = [get_format("int4-g128")]
    cached_weight_errors(graph, graph.quantizable(), fmts, 0, lambda ls, fs: weight_errors(graph, ls, fs))
    stat = os.stat(checkpoint)
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    graph = load_graph(str(checkpoint))
    _, info = cached_weight_errors(graph, graph.quantizable(), fmts, 0, lambda ls, fs: weight_errors(graph, ls, fs))
    assert info["computed"] == len(graph.quantizable())
