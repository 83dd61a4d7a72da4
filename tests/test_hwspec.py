"""Hardware specs as validated data: loading, every problem reported at once, --set checks, extends."""
import json

import pytest

from quantcore.errors import QuantDSEError
from hwmodels.registry import load_model
from hwmodels.spec import apply_overrides, list_specs, load_spec

HEADER = 'schema = "hwmodels.spec/1"\nname = "chip"\nfamily = "fpga_llm"\n'


def test_every_builtin_spec_loads_and_cites_every_param():
    for name in list_specs():
        spec = load_spec(name)
        raw = (spec.path and open(spec.path).read()) or ""
        assert spec.name == name, name
        # each param set in a spec file (or its parent) has a source
        missing = [k for k in spec.params if k not in spec.sources and f"\n{k} =" in raw]
        assert not missing, (name, missing)


def test_all_problems_reported_in_one_error(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text(HEADER + '[params]\nclock_hz = -1.0\nhbm_channels = "many"\nwarp = 3\n', encoding="utf-8")
    with pytest.raises(QuantDSEError) as err:
        load_spec(str(path))
    message = str(err.value)
    assert "\n" not in message
    for needle in ("clock_hz must be >=", "hbm_channels must be an integer", "unknown param 'warp'", "missing param"):
        assert needle in message


def test_extends_overlays_params(tmp_path):
    path = tmp_path / "fast.toml"
    path.write_text('schema = "hwmodels.spec/1"\nname = "fast"\nextends = "u280"\n[params]\nclock_hz = 300e6\n'
                    '[sources]\nclock_hz = "test"\n')
    spec = load_spec(str(path))
    base = load_spec("u280")
    assert spec.family == "fpga_llm" and spec["clock_hz"] == 300e6
    assert {k: v for k, v in spec.params.items() if k != "clock_hz"} == \
           {k: v for k, v in base.params.items() if k != "clock_hz"}


def test_set_overrides_type_and_range():
    spec = load_spec("u280")
    faster = apply_overrides(spec, ["clock_hz=450e6"])
    assert faster["clock_hz"] == 450e6 and spec["clock_hz"] == 225e6  # the original is untouched
    assert faster.sources["clock_hz"] == "--set override"
    with pytest.raises(QuantDSEError, match="must be an integer"):
        apply_overrides(spec, ["hbm_channels=1.5"])
    with pytest.raises(QuantDSEError, match="unknown param"):
        apply_overrides(spec, ["nonsense=1"])
    with pytest.raises(QuantDSEError, match="KEY=VALUE"):
        apply_overrides(spec, ["clock_hz"])


def test_unknown_target_suggests_close_names():
    with pytest.raises(QuantDSEError, match="did you mean u280"):
        load_spec("u28O")


def test_list_cli_json(cli):
    r = cli("hwmodels.list", "--json")
    assert r.returncode == 0, r.stderr
    names = {s["name"] for s in json.loads(r.stdout)}
    assert set(list_specs()) == names and "u280" in names


def test_cost_cli_gemm_and_bad_input(cli):
    r = cli("hwmodels.cost", "--hw", "u280", "--gemm", "1,4096,4096", "--format", "int4-g128", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("cycles", "latency_s", "energy_j", "bytes", "bound", "breakdown"):
        assert key in out
    # a decode GEMV cannot beat HBM: weights 4096*4096*4.125/8 bytes at 460 GB/s
    assert out["latency_s"] >= 4096 * 4096 * 4.125 / 8 / 460e9
    bad = cli("hwmodels.cost", "--hw", "u280", "--gemm", "1,x,4", "--format", "int4-g128")
    assert bad.returncode == 2 and "three positive integers" in bad.stderr
    clocked = cli("hwmodels.cost", "--hw", "u280", "--set", "clock_hz=450e6", "--gemm", "512,4096,4096",
                  "--format", "int8", "--json")
    assert clocked.returncode == 0, clocked.stderr


def test_model_cost_positive_for_every_target(tmp_path, monkeypatch):
    from quantcore.formats import get_format
    from hwmodels.ops import Ops
    from hwmodels.workload import Workload
    from tests.test_local import _install, _synthetic_calibration

    monkeypatch.setenv("QUANTDSE_CACHE_DIR", str(tmp_path))  # local costs from its calibration: give it one
    _install(_synthetic_calibration(threads=1))
    for name in list_specs():
        model = load_model(name, ["threads=1"] if name == "local" else None)
        table = model.cost(Ops.gemm(16, 256, 256), [get_format(n) for n in ("int4", "int8", "fp16")], Workload())
        ok = table.supported
        assert ok.any(), name
        assert (table.latency_s[ok] > 0).all() and (table.energy_j[ok] > 0).all(), name
