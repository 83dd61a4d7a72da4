"""Every `python -m ...` command shown in the README runs, as a new user would run it.

The commands are read from the README's code blocks (fenced or indented, `\\` continuations
joined, `# comments` dropped) and run in README order in one temporary folder, so a
command that reads a file finds it where an earlier README command wrote it (or, for a
path into the repository, a copy of the shipped file; its folder for an output). The one
input no README command can make here is `measurements.json`, the user's own GPU
timings for `hwmodels.calibrate --from`: USER_INPUTS writes a stand-in for it.
Each command must exit 0 within COMMAND_TIMEOUT_S and print no traceback.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMAND_TIMEOUT_S = 600


def code_blocks(text: str) -> list[list[str]]:
    """The README's code blocks as lists of lines: fenced (```) and indented (4 spaces after a blank line)."""
    blocks, current, fenced, prev_blank = [], None, False, True
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if fenced:
                blocks.append(current)
                current, fenced = None, False
            else:
                if current is not None:  # an indented block just before the fence
                    blocks.append(current)
                current, fenced = [], True
            continue
        if fenced:
            current.append(line)
        elif line.startswith("    ") and (current is not None or prev_blank):
            current = current if current is not None else []
            current.append(line[4:])
        elif current is not None and line.strip() == "":
            current.append("")
        else:
            if current is not None:
                blocks.append(current)
            current = None
        prev_blank = line.strip() == ""
    if current is not None:
        blocks.append(current)
    return blocks


def readme_commands(text: str) -> list[list[str]]:
    """Every `python -m MODULE ...` command line of the README's code blocks, as argv lists."""
    commands = []
    for block in code_blocks(text):
        joined = re.sub(r"\\\n\s*", " ", "\n".join(block))
        for line in joined.splitlines():
            try:
                argv = shlex.split(line, comments=True)
            except ValueError:
                continue
            if len(argv) >= 3 and argv[0] == "python" and argv[1] == "-m":
                commands.append(argv)
    return commands


def _measurements(folder: Path) -> None:
    """Stand-in for the user's own A100 GEMM timings: the a100-80gb model's predictions, 15 % slower."""
    from hwmodels.ops import Ops
    from hwmodels.registry import load_model
    from hwmodels.workload import Workload
    from quantcore.formats import get_format

    model = load_model("a100-80gb")
    rows = []
    for m, k, n in ((1, 4096, 4096), (16, 4096, 11008), (256, 4096, 4096), (2048, 4096, 4096)):
        for fmt in ("fp16", "int4-g128"):
            sec = float(model.cost(Ops.gemm(m, k, n), [get_format(fmt)], Workload()).latency_s[0, 0])
            rows.append({"gemm": [m, k, n], "format": fmt, "seconds": 1.15 * sec})
    (folder / "measurements.json").write_text(json.dumps(rows))


#: files the README tells the user to bring, and how the test makes them
USER_INPUTS = {"measurements.json": _measurements}
COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_readme_shows_commands_of_installed_modules():
    assert len(COMMANDS) >= 20, "the README's code blocks should hold the tools' commands"
    for argv in COMMANDS:
        assert importlib.util.find_spec(argv[2]) is not None, f"README runs {argv[2]}, which does not exist"


def test_reader_finds_fenced_indented_and_continued_commands():
    text = ("intro\n\n    python -m a.b --x 1   # note\n    python -m c.d --y \\\n        2\n\nprose\n"
            "```bash\npython -m e.f --z '3 4'\nmake run\n```\n")
    assert readme_commands(text) == [["python", "-m", "a.b", "--x", "1"], ["python", "-m", "c.d", "--y", "2"],
                                     ["python", "-m", "e.f", "--z", "3 4"]]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("readme")
    (path / "cache").mkdir()
    for name, make in USER_INPUTS.items():
        make(path)
    return path


def _mirror_repo_paths(argv: list[str], folder: Path) -> None:
    """Relative paths into the repository (a shipped file to read, `docs/x.png` to write) work in
    `folder` as they do from the repository root: shipped files are copied, their folders made."""
    for token in argv[3:]:
        value = token.split("=", 1)[-1]
        if "/" not in value or value.startswith(("/", "~")) or (folder / value).exists():
            continue
        shipped = ROOT / value
        if shipped.is_file():
            (folder / value).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shipped, folder / value)
        elif shipped.parent.is_dir() and shipped.parent != ROOT:
            (folder / value).parent.mkdir(parents=True, exist_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a[2:])[:80] for a in COMMANDS])
def test_readme_command_runs(argv, folder):
    _mirror_repo_paths(argv, folder)
    env = dict(os.environ, PYTHONPATH=str(ROOT), QUANTDSE_CACHE_DIR=str(folder / "cache"), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, *argv[1:]], cwd=folder, env=env, capture_output=True, text=True,
                       timeout=COMMAND_TIMEOUT_S)
    assert r.returncode == 0, f"`{' '.join(argv)}` exited {r.returncode}: {r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
