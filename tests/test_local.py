"""The `local` target: parametric fits, measured-kernel isolation, the fingerprinted cache, --from.

Oracles: known parameters of the model itself (the fit must recover what generated the data),
the fit formula evaluated by hand, fresh timings of unseen shapes on this machine, and the
a100-80gb analytic model with perturbed efficiencies (the --from fit must recover them).
"""
import json
import math

import numpy as np
import pytest

from quantcore.cli import run_cli
from quantcore.errors import QuantDSEError
from quantcore.formats import get_format
from hwmodels import calibrate, fit
from hwmodels import measure as measure_mod
from hwmodels.measure import KERNELS, measure
from hwmodels.ops import Ops
from hwmodels.registry import load_model
from hwmodels.spec import load_spec
from hwmodels.workload import Workload

TRUE = {"overhead_s": 4e-6, "peak_flops_per_s": 3e11, "bytes_per_s": 4e10, "m_half": 6.0, "k_half": 40.0,
        "n_half": 90.0, "p": 3.0}


def _grid(seed=0, count=60):
    rng = np.random.default_rng(seed)
    m = np.round(np.exp(rng.uniform(0, np.log(1024), count)))
    k = 128 * rng.integers(2, 33, count).astype(float)
    n = 128 * rng.integers(2, 33, count).astype(float)
    return m, k, n


def test_fit_recovers_known_parameters():
    kern = KERNELS["int4pack-mm-g128"]
    m, k, n = _grid(0)
    seconds = fit.predict(TRUE, m, k, n, kern.flops(m, k, n), kern.bytes(m, k, n))
    got = fit.fit_kernel(m, k, n, kern.flops(m, k, n), kern.bytes(m, k, n), seconds)
    for key in ("overhead_s", "peak_flops_per_s", "bytes_per_s", "p"):
        assert got[key] == pytest.approx(TRUE[key], rel=0.05), key
    mh, kh, nh = _grid(1, 30)  # unseen shapes
    pred = fit.predict(got, mh, kh, nh, kern.flops(mh, kh, nh), kern.bytes(mh, kh, nh))
    truth = fit.predict(TRUE, mh, kh, nh, kern.flops(mh, kh, nh), kern.bytes(mh, kh, nh))
    assert fit.mape(pred, truth) < 1.0


def test_memory_only_fit_and_mape():
    m = np.array([1, 8, 64, 512, 2048.0])
    nbytes = m * 4096 * 4
    seconds = 2e-6 + nbytes / 5e10
    got = fit.fit_kernel(m, m, m, 0 * m, nbytes, seconds, free=fit.MEMORY_ONLY)
    assert got == pytest.approx({"overhead_s": 2e-6, "bytes_per_s": 5e10}, rel=1e-3)
    assert fit.mape([1.1, 0.9], [1.0, 1.0]) == pytest.approx(10.0)


def test_fit_recovers_llc_reread_term():
    # a kernel that passes over its weights 1.5 extra times once they outgrow a 32 MiB LLC
    kern, llc = KERNELS["mm-bf16"], float(32 << 20)
    true = {**TRUE, "reread": 1.5, "llc_bytes": llc, "bytes_per_s": 4e10}
    rng = np.random.default_rng(3)
    m = np.r_[np.ones(30), np.round(np.exp(rng.uniform(0, np.log(64), 30)))]
    k = 256 * rng.integers(1, 33, 60).astype(float)
    n = 256 * rng.integers(1, 65, 60).astype(float)
    w = kern.weights(m, k, n)
    assert (w > 2 * llc).sum() > 5 and (w < llc / 2).sum() > 5  # both sides of the step
    sec = fit.predict(true, m, k, n, kern.flops(m, k, n), kern.bytes(m, k, n), w)
    got = fit.fit_kernel(m, k, n, kern.flops(m, k, n), kern.bytes(m, k, n), sec, wbytes=w, llc_bytes=llc)
    assert got["reread"] == pytest.approx(1.5, rel=0.05) and got["bytes_per_s"] == pytest.approx(4e10, rel=0.05)
    # by hand: the term is reread * W * s(W / LLC) extra bytes, s(2) = 16 / 17
    assert fit.spill(2 * llc, llc) == pytest.approx(16 / 17)
    # cross-validation keeps the term here, and drops it on data made without it
    cands = [tuple(p for p in fit.PARAMS if p != "reread"), fit.PARAMS]
    args = (m, k, n, kern.flops(m, k, n), kern.bytes(m, k, n))
    chosen = fit.select_and_fit(*args, sec, candidates=cands, wbytes=w, llc_bytes=llc)
    assert chosen["reread"] == pytest.approx(1.5, rel=0.05) and chosen["cv_mape"] < 1.0
    plain = fit.predict(TRUE, m, k, n, kern.flops(m, k, n), kern.bytes(m, k, n))
    assert fit.select_and_fit(*args, plain * rng.lognormal(0, 0.05, 60), candidates=cands, wbytes=w,
                              llc_bytes=llc)["reread"] == 0.0


def test_bandwidth_bounds_hold():
    # data that wants 1 TB/s (a cache-resident kernel) is held to 2x the measured STREAM copy
    m = np.array([1, 8, 64, 512, 2048.0])
    nbytes = m * 4096 * 4
    seconds = 1e-6 + nbytes / 1e12
    lo, hi = fit.bandwidth_bounds(40e9)
    assert (lo, hi) == (40e9 / fit.BW_LOW, 40e9 * fit.BW_HIGH)
    got = fit.fit_kernel(m, m, m, 0 * m, nbytes, seconds, free=fit.MEMORY_ONLY, bandwidth=(lo, hi))
    assert lo <= got["bytes_per_s"] <= hi * (1 + 1e-9)


def test_design_holds_out_enough_unseen_realistic_shapes():
    jobs = calibrate.design(False, seed=0)
    for name, kern in KERNELS.items():
        if kern.device != "cpu":
            continue
        fit_shapes = {tuple(j["shape"]) for j in jobs if j["kernel"] == name and j["role"] == "fit"}
        held = [tuple(j["shape"]) for j in jobs if j["kernel"] == name and j["role"] == "heldout"]
        assert len(held) >= 20 and not fit_shapes & set(held), name
        for m, k, n in held:
            assert calibrate._within_caps(kern, (m, k, n))
            if kern.op not in ("conv2d", "gather"):
                assert 1 <= m <= 2048 and 256 <= min(k, n) and max(k, n) <= 16384 and k % 128 == n % 128 == 0
        if kern.op not in ("conv2d", "gather"):
            assert sum(m == 1 for m, _, _ in held) >= len(held) // 3 - 1  # decode GEMVs are a third
    assert calibrate.design(False, seed=0) == jobs and calibrate.design(False, seed=1) != jobs  # seeded
    # every designed weight is timed cold: its copies (at most MAX_COPIES) span 1.5x the LLC
    smallest = min(KERNELS[j["kernel"]].weights(*j["shape"]) for j in jobs if KERNELS[j["kernel"]].op != "gather")
    assert measure_mod.MAX_COPIES * smallest >= 1.5 * measure_mod.llc_bytes()
    assert measure_mod.gather_rows(256, 2) * 256 * 2 >= 4 * measure_mod.llc_bytes()


def _synthetic_calibration(threads: int) -> dict:
    """A calibration document whose fits are TRUE (GEMM), a plain roofline (GEMV), a gather."""
    gemv = {"overhead_s": 2e-6, "peak_flops_per_s": 5e10, "bytes_per_s": 2e10, "m_half": 0.0, "k_half": 0.0,
            "n_half": 0.0, "p": 2.0}
    kernels = {}
    for name, kern in KERNELS.items():
        if kern.device != "cpu":
            continue
        fits = ({"all": {"overhead_s": 1e-6, "bytes_per_s": 1e10}} if kern.op == "gather"
                else {"all": TRUE} if kern.op == "conv2d" else {"gemv": gemv, "gemm": TRUE})
        kernels[name] = {"fits": fits, "n_fit": 0, "n_heldout": 0, "fit_mape": 0.0, "heldout_mape": None}
    return {"schema": calibrate.CALIBRATION_SCHEMA, "fingerprint": calibrate.fingerprint(threads), "quick": True,
            "kernels": kernels, "measurements": [], "crashed": []}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _install(doc):
    path = calibrate.cache_path(doc["fingerprint"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_cache_is_keyed_by_fingerprint(cache):
    doc = _synthetic_calibration(threads=1)
    path = _install(doc)
    assert path.parent == cache and path.name.startswith("local-cpu-")
    assert calibrate.load_calibration(1)["kernels"].keys() == doc["kernels"].keys()
    assert calibrate.load_calibration(3) is None  # another thread count: another machine state
    other = dict(doc, fingerprint={**doc["fingerprint"], "torch": "0.0"})
    assert calibrate.cache_path(other["fingerprint"]) != path
    with pytest.raises(QuantDSEError, match="run python -m hwmodels.calibrate --hw local"):
        load_model("local", ["threads=3", "auto_calibrate=false"]).cost(Ops.gemm(1, 64, 64), [get_format("bf16")],
                                                                        Workload())


def test_model_evaluates_the_fit_by_hand(cache):
    _install(_synthetic_calibration(threads=1))
    model = load_model("local", ["threads=1", "auto_calibrate=false"])
    fmts = [get_format(f) for f in ("int4-g128", "int8", "fp16", "int3-g128", "int8-a8")]
    ops = Ops.from_rows([("a", "linear", 32, 4096, 1024, 1.0, 4096.0 * 1024, ""),
                         ("b", "linear", 1, 4096, 4096, 2.0, 4096.0 * 4096, ""),
                         ("c", "attention", 1, 128, 2048, 1.0, 128.0 * 2048, "qk")])
    table = model.cost(ops, fmts, Workload())
    # hand: overhead + (t_c^p + t_m^p)^(1/p), int4 g128 bytes = K*N/2 + K/128*N*4 + M*K*2 + M*N*2
    M, K, N = 32, 4096, 1024
    by = K * N / 2 + K / 128 * N * 4 + M * K * 2 + M * N * 2
    eff = M / (M + 6.0) * K / (K + 40.0) * N / (N + 90.0)
    tc, tm = 2 * M * K * N / (3e11 * eff), by / 4e10
    assert table.latency_s[0, 0] == pytest.approx(4e-6 + (tc ** 3 + tm ** 3) ** (1 / 3), rel=1e-9)
    # GEMV row, int8 weights (W8A16), executed twice: 2 x (2 us + sqrt(t_c^2 + t_m^2))
    K = N = 4096
    by = K * N + N * 2 + K * 2 + N * 2
    expect = 2 * (2e-6 + math.hypot(2 * K * N / 5e10, by / 2e10))
    assert table.latency_s[1, 1] == pytest.approx(expect, rel=1e-9)
    # fp16 weights are unsupported (torch CPU fp16 GEMM is a slow reference path), the KV cache is not
    assert list(table.supported[:, 2]) == [False, False, True]
    assert not table.supported[:, 3].any()  # int3: no torch kernel
    assert table.supported[:, 4].all()
    assert table.energy_j[0, 0] == pytest.approx(1 * 3.75 * table.latency_s[0, 0])
    odd = model.cost(Ops.gemm(1, 200, 256), [get_format("int4-g128"), get_format("int8")], Workload())
    assert list(odd.supported[0]) == [False, True]  # the int4 kernel rejects K % group != 0


def test_embedding_gather_by_hand(cache):
    doc = _synthetic_calibration(threads=1)
    gather = {"overhead_s": 1e-6, "bytes_per_s": 2e10, "row_s": 1e-8, "par_speedup": 1.8}
    doc["kernels"]["gather-bf16"]["fits"]["all"] = gather
    _install(doc)
    model = load_model("local", ["threads=1", "auto_calibrate=false"])
    ops = Ops.from_rows([("small", "embedding", 8, 1, 1024, 1.0, 8.0 * 1024, ""),
                         ("big", "embedding", 512, 1, 4096, 1.0, 512.0 * 4096, "")])
    t = model.cost(ops, [get_format("bf16")], Workload()).latency_s[:, 0]
    # hand: 1 us + (M x 10 ns + bytes / 20 GB/s) / speedup, bf16 rows in and out (2 + 2 bytes per
    # element); 8 x 1024 = 8192 elements stay on one thread (torch GRAIN_SIZE 32768), 512 x 4096 split
    assert t[0] == pytest.approx(1e-6 + 8 * 1e-8 + 8 * 1024 * 4 / 2e10, rel=1e-9)
    assert t[1] == pytest.approx(1e-6 + (512 * 1e-8 + 512 * 4096 * 4 / 2e10) / 1.8, rel=1e-9)


def test_measure_survives_a_crashing_kernel():
    # REFERENCE.md: _weight_int8pack_mm segfaults at 64 x 1000 x 3072 on torch 2.13 CPU
    rows, crashed = measure([["int8pack-mm", 64, 1000, 3072], ["mm-bf16", 1, 256, 256]], threads=1,
                            target_s=0.001, min_repeats=3, progress=False)
    assert [r["shape"] for r in rows if r["kernel"] == "mm-bf16"] == [[1, 256, 256]]
    measured = [r for r in rows if r["kernel"] == "int8pack-mm"]
    assert len(measured) + len(crashed) == 1
    for c in crashed:
        assert c["shape"] == [64, 1000, 3072] and c["returncode"] != 0


def _gpu_target() -> str:
    return "a100-80gb"


def _perturbed_measurements(path, target):
    spec = load_spec(target)
    names = fit.fittable_params(load_model(target).SCHEMA)
    truth = {key: spec[key] * factor for key, factor in zip(names, (0.8, 1.5, 2.0, 1.3, 1.3))}
    shapes = [(m, k, n) for m in (1, 16, 256, 4096) for k in (256, 4096, 8192) for n in (256, 4096, 14336)]
    rows = []
    for fmt in ("fp16", "int4-g128"):
        ops = Ops.from_rows([(f"g{i}", "linear", *s, 1.0, float(s[1] * s[2]), "") for i, s in enumerate(shapes)])
        groups = {fmt: (get_format(fmt), ops, None)}
        sec = fit._predict_spec(type(load_model(target)), spec, truth, groups, Workload())[fmt]
        rows += [{"gemm": list(s), "format": fmt, "seconds": float(t)} for s, t in zip(shapes, sec)]
    path.write_text(json.dumps(rows))
    return names, truth


def test_from_recovers_perturbed_efficiencies(tmp_path, capsys):
    target = _gpu_target()
    names, truth = _perturbed_measurements(tmp_path / "meas.json", target)
    assert "dram_efficiency" in names and "launch_overhead_s" in names
    out = tmp_path / "mine.toml"
    code = run_cli(calibrate.main, ["--hw", target, "--from", str(tmp_path / "meas.json"), "--out", str(out),
                                    "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mape_after"] < 1.0 < report["mape_before"]
    derived = load_spec(str(out))
    assert derived.family == "gpu" and 'extends = "a100-80gb"' in out.read_text()
    for key in names:
        assert derived[key] == pytest.approx(truth[key], rel=0.05), key
    assert derived.sources["dram_efficiency"].startswith("fitted to")


@pytest.mark.parametrize("content, message", [
    ("{}", "non-empty JSON list"),
    ('[{"gemm": [1, 2], "format": "fp16", "seconds": 1e-5}]', "three positive integers"),
    ('[{"gemm": [1, 2, 3], "format": "fp16", "seconds": -1}]', "positive number"),
    ('[{"gemm": [1, 2, 3], "format": "fp16"}]', "exactly the keys"),
    ('[{"gemm": [1, 2, 3], "format": "int99", "seconds": 1e-5}]', "int99"),
    ("[1, 2", "not valid JSON"),
])
def test_bad_measurement_files(tmp_path, capsys, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    assert run_cli(calibrate.main, ["--hw", "a100-80gb", "--from", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--hw", "u280"], "only the local target is measured"),
    (["--hw", "local", "--from", "x.json"], "drop --from"),
    (["--hw", "local", "--threads", "-1"], "--threads must be >= 0"),
    (["--hw", "local", "--out", "x.toml"], "--out goes with --from"),
])
def test_bad_cli_input(capsys, argv, message):
    assert run_cli(calibrate.main, argv) == 2
    assert message in capsys.readouterr().err


#: systematic held-out error the quick calibration may keep per kernel (percent; the full one
#: targets 10 %, README). The bound a test can assert adds twice the measured pass-to-pass noise
#: of the same held-out shapes (`heldout_noise`, a median): no model beats the timing noise, and
#: on a heavily loaded machine that noise reaches 20-30 %; on a quiet one it is a few percent.
QUICK_HELDOUT_MAPE = 20.0


@pytest.mark.slow
def test_quick_calibration_predicts_fresh_measurements(cache, capsys):
    assert run_cli(calibrate.main, ["--hw", "local", "--quick", "--threads", "1", "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fingerprint"]["threads"] == 1 and doc["path"].startswith(str(cache))
    # the kernels plans use for bf16 and quantized weights; mm-fp32 is left out: with one regime (quick mode
    # fits no GEMV/GEMM split) its M = 2-8 rows grow faster than the curve, 70-190 % held-out on this machine.
    # The median over them meets the bound (one kernel timed through a load spike on a busy machine must
    # not decide it); every one stays within three times it.
    names = ("mm-bf16", "int8pack-mm", "int-mm", "int4pack-mm-g32", "int4pack-mm-g128")
    kernels = [doc["kernels"][name] for name in names]
    assert all(k["heldout_mape"] is not None for k in kernels)
    noise = float(np.median([k["heldout_noise"] or 0.0 for k in kernels]))
    bound = QUICK_HELDOUT_MAPE + 2 * noise
    mapes = {name: k["heldout_mape"] for name, k in zip(names, kernels)}
    assert np.median(list(mapes.values())) <= bound, (mapes, noise)
    assert max(mapes.values()) <= 3 * bound, (mapes, noise)
    # fresh timings of shapes outside the design, against the model's prediction: their mean
    # absolute error within the same bound
    shapes = [("int4pack-mm-g64", "int4-g64", (1, 1536, 2560)), ("mm-bf16", "bf16", (1, 2560, 768)),
              ("int8pack-mm", "int8", (1, 768, 3328))]
    rows, crashed = measure([[k, *s] for k, _, s in shapes], threads=1, progress=False)
    assert not crashed
    model = load_model("local", ["threads=1", "auto_calibrate=false"])
    errors = []
    for (kernel, fmt, s), row in zip(shapes, rows):
        pred = model.cost(Ops.gemm(*s), [get_format(fmt)], Workload()).latency_s[0, 0]
        errors.append(abs(pred / row["seconds"] - 1) * 100)
    assert np.mean(errors) <= bound, (errors, noise)
