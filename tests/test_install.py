"""Installing is quiet: building quantdse's metadata raises no setuptools deprecation warning.

setuptools >= 77 reads `license` as an SPDX expression (PEP 639) and warns that the old
`license = {text = ...}` table is deprecated; the build backend itself is the oracle.
"""
import shutil
import subprocess
import sys
from pathlib import Path

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
