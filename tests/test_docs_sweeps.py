"""Every command docs/sweeps.md shows runs, in order, in one folder (as a reader would run them)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_readme import is_runnable, page_steps

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [step.argv for step in page_steps(ROOT / "docs" / "sweeps.md")[0] if is_runnable(step)]


def test_the_page_shows_its_commands():
    assert [a[2] for a in COMMANDS] == ["experiments.sweep"] * 3


@pytest.mark.slow
def test_every_command_on_the_page_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    for argv in COMMANDS:
        r = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (argv, r.stderr[-2000:])
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert len((tmp_path / "llm.csv").read_text().splitlines()) == 5
    # the page's `head -2 sweep.csv`: its header is the CSV's header
    page = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8").splitlines()
    shown = page[page.index("$ head -2 sweep.csv") + 1]
    assert (tmp_path / "sweep.csv").read_text().splitlines()[0] == shown
