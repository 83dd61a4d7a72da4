"""Installing: quiet metadata, a lean core install, and missing extras named in one line.

setuptools >= 77 reads `license` as an SPDX expression (PEP 639) and warns that the old
`license = {text = ...}` table is deprecated; the build backend itself is the oracle. The core
install (no extras) must run the main job with none of the extras' packages present.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import warnings, setuptools.build_meta as backend
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    backend.prepare_metadata_for_build_wheel("meta")
for w in caught:
    print(f"{w.category.__name__}: {str(w.message).splitlines()[0]}")
"""


def test_metadata_builds_without_deprecation_warnings(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "meta").mkdir()
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Deprecat" not in r.stdout + r.stderr, r.stdout + r.stderr
    metadata = next((tmp_path / "meta").glob("*.dist-info")) / "METADATA"
    assert "License-Expression: MIT" in metadata.read_text()


def test_a_missing_optional_package_is_one_line_naming_its_extra(monkeypatch, capsys, tmp_path):
    """matplotlib absent (None in sys.modules makes its import fail as if not installed): `--plot` says
    which extra brings it, in one line, exit 2, and no figure is left behind."""
    from dse import search, show
    from quantcore.cli import run_cli

    plan = tmp_path / "plan.json"
    assert run_cli(search.main, ["--hw", "u280", "--budget", "3.7bits", "--out", str(plan)]) == 0
    capsys.readouterr()
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert run_cli(show.main, [str(plan), "--plot", str(tmp_path / "plan.png")]) == 2
    err = capsys.readouterr().err
    assert err == "error: matplotlib is not installed: pip install 'quantdse[plot]'\n"
    assert not (tmp_path / "plan.png").exists()


def test_torch_names_the_extra_of_the_code_that_needs_it(monkeypatch, capsys):
    """torch is in three extras: --method nas names `nas`; a missing module the project does not know
    of is a bug and keeps its traceback."""
    from dse import search
    from quantcore.cli import run_cli

    monkeypatch.delitem(sys.modules, "dse.solvers.nas", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    argv = ["--hw", "u280", "--budget", "4bits", "--model", "resnet-50", "--method", "nas"]
    assert run_cli(search.main, argv) == 2
    assert capsys.readouterr().err == "error: torch is not installed: pip install 'quantdse[nas]'\n"
    monkeypatch.setitem(sys.modules, "hwmodels.no_such_module", None)
    with pytest.raises(ModuleNotFoundError):
        run_cli(lambda argv: __import__("hwmodels.no_such_module"), [])


#: what a core install must hold: the packages and the data files they read
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "quantcore", "dse", "hwmodels", "policies", "experiments")
NO_EXTRAS = ("torch", "matplotlib", "gymnasium", "stable_baselines3", "transformers", "ray")


@pytest.mark.slow
def test_core_install_runs_the_main_job_without_torch(tmp_path):
    """`pip install .` (no extras) into a fresh venv: the main job, a plan file, `dse.show`, a llama.cpp
    export, the target list, the reproduced figures, a Pareto sweep and a co-design sweep run with none
    of the extras' packages installed; `--plot` names the extra it needs."""
    src = tmp_path / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(ROOT / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "-q", str(src)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "work"  # outside the sources: the installed package is what runs
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["QUANTDSE_CACHE_DIR"] = str(tmp_path / "cache")

    def run(*argv):
        return subprocess.run([py, *argv], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    absent = run("-c", "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % (NO_EXTRAS,))
    assert absent.returncode == 0 and absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    main = run("-m", "dse.search", "--hw", "u280", "--budget", "3.7bits", "--out", "plan.json")
    assert main.returncode == 0, main.stderr
    assert main.stdout.startswith("llama-2-7b on u280: one decode step"), main.stdout
    assert "bits/weight  3.700" in main.stdout
    shown = run("-m", "dse.show", "plan.json")
    assert shown.returncode == 0 and "bits/weight  3.700" in shown.stdout, shown.stderr
    exported = run("-m", "dse.export", "--plan", "plan.json", "--to", "llamacpp", "--nearest", "--out", "types.txt")
    assert exported.returncode == 0, exported.stderr
    assert r"^token_embd\.weight$=f16" in (work / "types.txt").read_text().splitlines()
    for argv in (["hwmodels.list"], ["experiments.reproduce"],
                 ["dse.pareto", "--hw", "a100-80gb", "--sweep", "bits=3:4:0.5", "--out", "pareto.csv"],
                 ["experiments.sweep", "--hw", "systolic", "--grid", "rows=16,32", "--model", "resnet-50",
                  "--budgets", "4bits", "--phase", "prefill", "--seq", "1", "--workers", "1", "--out", "sweep.csv"]):
        r = run("-m", *argv)
        assert r.returncode == 0, f"{argv[0]}: {r.stderr[-2000:]}"
    plot = run("-m", "dse.show", "plan.json", "--plot", "plan.png")
    assert (plot.returncode, plot.stderr) == (2, "error: matplotlib is not installed: pip install 'quantdse[plot]'\n")
    assert not (work / "plan.png").exists()
