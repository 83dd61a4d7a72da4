"""Every command the README and the docs pages (docs/*.md) show runs, as a new user would run it, and
every output they show is what the command prints.

A page's code blocks (fenced or indented, `\\` continuations joined, `# comments` dropped) are read in
page order. In blocks tagged bash/sh every line is a command; in console blocks the `$ ` lines are,
each followed by what it prints (compared: stdout, or an `error:` line on stderr with exit code 2);
in untagged and indented blocks the lines that start with `python`, `make` or `pip` are (the rest is
output shown as text). Commands run in page order in one temporary folder per page, so a command that reads a file finds it where an
earlier command of the same page wrote it (or, for a path into the repository, a copy of the shipped
file; its folder for an output). USER_INPUTS writes what a page takes as given: `measurements.json`,
the user's own GPU timings for `hwmodels.calibrate --from` (a stand-in), and the quick start's
`plan.json`.
Each `python -m` command must exit 0 within COMMAND_TIMEOUT_S and print no traceback; any other
command must be in NOT_RUN_HERE with the place it is tested or the reason it cannot be.

Markers, HTML comments that the rendered page does not show (docs/doctests.md):

- `<!-- output: COMMAND -->`: the next code block is COMMAND's stdout. COMMAND runs at that point of
  the page (once: if the command just before it is the same, its output is the one compared) and its
  stdout must equal the block, wall-clock seconds (`0.21 s`) and sweep rates (`2.6 points/s`) aside.
- `<!-- file: PATH -->`: the next code block is the content of PATH as an earlier command wrote it.
- `<!-- pending: WHY -->`: the next python block cannot run yet; it is expected to fail (a strict
  xfail), so the test says when it starts to work and the marker should go.
- `<!-- can-i-use: solvers|exports -->`: the next table is checked cell by cell against the tools.
"""
from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT_S = 600
COMMAND_LANGS = {"bash", "console", "sh", "shell"}
STARTS = ("python", "make", "pip")
#: commands shown that this test does not run: where each is tested, or why it cannot be
NOT_RUN_HERE = {
    "make run": "tests/test_install.py installs the core into a fresh venv and runs the main job",
    "make test": "CI (.ci/run)",
    "make test-slow": "CI (.ci/run)",
    "make docs": "CI (.ci/run)",
    "make bench": "benchmarks print figures and assert nothing; run by hand",
    "pip install": "tests/test_install.py (a core install into a fresh venv)",
    "python bench/": "benchmarks print figures and assert nothing; `make bench` runs them",
    "ray start": "needs a Ray cluster of several machines",
    "head -2 sweep.csv": "shows the CSV the sweep above wrote; tests/test_docs_sweeps.py checks its columns",
}
MARKER = re.compile(r"^\s*<!--\s*(output|file|pending|can-i-use):\s*(.*?)\s*-->\s*$")
SECONDS = re.compile(r"\b\d+(?:\.\d+)? s\b")
RATE = re.compile(r"\b\d+(?:\.\d+)? points/s\b")  # a sweep's wall-clock rate


@dataclass
class Block:
    lang: str           # the fence's tag; "" for untagged and indented blocks
    lines: list[str]
    line: int           # 1-based line of the block's first line in the page
    marker: tuple | None = None  # (kind, argument) of the marker just above it


@dataclass
class Step:
    """One command of a page, run in the page's folder, with the output the page shows for it."""
    page: str
    line: int
    argv: list[str]
    env: dict = field(default_factory=dict)
    stdout_to: str | None = None
    expected: str | None = None  # stdout, or with expect_error the one `error:` line on stderr (exit 2)
    expect_error: bool = False
    files: dict = field(default_factory=dict)  # path -> content the page shows for it after this step


def code_blocks(text: str) -> list[Block]:
    """The page's code blocks: fenced (```) and indented (4 spaces after a blank line), each with the
    marker comment that precedes it (anywhere above it, the nearest one not yet used)."""
    blocks, current, fenced, prev_blank, marker = [], None, False, True, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if line.lstrip().startswith("```"):
            if fenced:
                blocks.append(current)
                current, fenced = None, False
            else:
                if current is not None:  # an indented block just before the fence
                    blocks.append(current)
                current, fenced = Block(stripped[3:].strip().lower(), [], number + 1, marker), True
                marker = None
            continue
        if fenced:
            current.lines.append(line)
        elif line.startswith("    ") and (current is not None or prev_blank) and not stripped.startswith("<!--"):
            if current is None:
                current, marker = Block("", [], number, marker), None
            current.lines.append(line[4:])
        elif current is not None and stripped == "":
            current.lines.append("")
        else:
            if current is not None:
                blocks.append(current)
            current = None
            if m := MARKER.match(line):
                marker = (m.group(1), m.group(2))
        prev_blank = stripped == ""
    if current is not None:
        blocks.append(current)
    for block in blocks:
        while block.lines and block.lines[-1] == "":
            block.lines.pop()
    return blocks


def command_lines(block: Block) -> list[tuple[int, str, str | None]]:
    """(line number, command, output shown or None) for each command of a block: every line of a bash
    or sh block; in a console block the `$ ` lines, each followed by what it prints; in other blocks
    the lines that start with STARTS. Continuations joined, comment lines dropped."""
    if block.lang not in COMMAND_LANGS | {""} or (block.marker and block.marker[0] in ("output", "file")):
        return []
    out, pending, start = [], "", 0
    for offset, raw in enumerate(block.lines):
        line = raw.strip()
        if pending:
            pending += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                out.append([start, pending, None])
                pending = ""
            continue
        if block.lang == "console":
            if not line.startswith("$ "):
                if out:  # what the command above prints
                    out[-1][2] = raw if out[-1][2] is None else out[-1][2] + "\n" + raw
                continue
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        is_command = block.lang in COMMAND_LANGS or re.match(r"^([A-Z_]+=\S*\s+)*(%s)\b" % "|".join(STARTS), line)
        if not is_command:
            continue
        if line.endswith("\\"):
            pending, start = line.rstrip("\\").strip(), block.line + offset
        else:
            out.append([block.line + offset, line, None])
    return [(number, command, shown.rstrip() if shown else None) for number, command, shown in out]


def to_step(page: str, line: int, command: str) -> Step:
    """A command line as a Step: leading VAR=VALUE pairs go to its environment, `> FILE` to its stdout."""
    argv = shlex.split(command, comments=True)
    env = {}
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):  # VAR=value, or VAR= for an empty value
        key, value = argv.pop(0).split("=", 1)
        env[key] = value
    stdout_to = None
    if ">" in argv:
        i = argv.index(">")
        stdout_to, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    return Step(page, line, argv, env, stdout_to)


def is_runnable(step: Step) -> bool:
    return len(step.argv) >= 3 and step.argv[:2] == ["python", "-m"]


def not_run_reason(step: Step) -> str | None:
    text = " ".join(step.argv)
    return next((why for prefix, why in NOT_RUN_HERE.items() if text.startswith(prefix)), None)


def page_steps(path: Path) -> tuple[list[Step], list[tuple[Block, str | None]]]:
    """A page's commands in order, with the outputs and files it shows; and its python blocks."""
    name = str(path.relative_to(ROOT))
    steps, snippets = [], []
    for block in code_blocks(path.read_text(encoding="utf-8")):
        kind, arg = block.marker or (None, None)
        if kind == "output":
            step = to_step(name, block.line, arg)
            if steps and steps[-1].argv == step.argv and steps[-1].env == step.env and steps[-1].expected is None:
                step = steps[-1]
            else:
                steps.append(step)
            step.expected = "\n".join(block.lines)
        elif kind == "file":
            if not steps:
                raise ValueError(f"{name}:{block.line}: a file block before any command")
            steps[-1].files[arg] = "\n".join(block.lines)
        elif block.lang == "python":
            snippets.append((block, arg if kind == "pending" else None))
        else:
            for line, command, shown in command_lines(block):
                steps.append(to_step(name, line, command))
                steps[-1].expected = shown
                steps[-1].expect_error = bool(shown and shown.startswith("error: "))
    return steps, snippets


def normalise(text: str) -> str:
    """Trailing spaces and blank lines dropped, wall-clock seconds and rates masked (they vary run to run)."""
    lines = [RATE.sub("N points/s", SECONDS.sub("N s", line.rstrip())) for line in text.splitlines()]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


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


def _plan(folder: Path) -> None:
    """The plan a user has after the quick start with `--out plan.json` (pages that make their own replace it)."""
    from dse import search
    from quantcore.cli import run_cli

    assert run_cli(search.main, ["--hw", "u280", "--budget", "3.7bits", "--out", str(folder / "plan.json")]) == 0


#: files the pages tell the user to bring or take as made, and how the test makes them
USER_INPUTS = {"measurements.json": _measurements, "plan.json": _plan}
PARSED = {str(p.relative_to(ROOT)): page_steps(p) for p in PAGES}
STEPS = [s for steps, _ in PARSED.values() for s in steps]
RUNNABLE = [s for s in STEPS if is_runnable(s)]
SNIPPETS = [(page, block, pending) for page, (_, snippets) in PARSED.items() for block, pending in snippets]


def test_pages_show_commands_of_installed_modules():
    assert len(RUNNABLE) >= 40, "the pages' code blocks should hold the tools' commands"
    for step in RUNNABLE:
        assert importlib.util.find_spec(step.argv[2]) is not None, \
            f"{step.page}:{step.line} runs {step.argv[2]}, which does not exist"


def test_every_command_shown_is_run_or_says_where_it_is_tested():
    unaccounted = [f"{s.page}:{s.line}: {' '.join(s.argv)}" for s in STEPS
                   if not is_runnable(s) and not_run_reason(s) is None]
    assert not unaccounted, "run these in a test, or add them to NOT_RUN_HERE with where they are tested:\n" + \
        "\n".join(unaccounted)


def test_reader_finds_commands_markers_and_outputs():
    text = ("intro\n\n    python -m a.b --x 1   # note\n    python -m c.d --y \\\n        2\n\nprose\n"
            "```bash\nmake run\npython -m e.f --z '3 4'\n```\n\n"
            "<!-- output: python -m e.f --z '3 4' -->\n```text\nline 1, 0.21 s\n```\n\n"
            "<!-- output: X=1 python -m g.h > out.txt -->\n\n    result\n\n"
            "<!-- file: out.txt -->\n```\ncontent\n```\n"
            "<!-- pending: later -->\n```python\nimport nothing\n```\n")
    page = ROOT / "docs" / "_reader_test.md"
    blocks = code_blocks(text)
    assert [b.marker for b in blocks] == [None, None, ("output", "python -m e.f --z '3 4'"),
                                          ("output", "X=1 python -m g.h > out.txt"), ("file", "out.txt"),
                                          ("pending", "later")]
    steps = [to_step("p", line, c) for b in blocks for line, c, _ in command_lines(b)]
    assert [s.argv for s in steps] == [["python", "-m", "a.b", "--x", "1"], ["python", "-m", "c.d", "--y", "2"],
                                       ["make", "run"], ["python", "-m", "e.f", "--z", "3 4"]]
    try:
        page.write_text(text)
        parsed, snippets = page_steps(page)
    finally:
        page.unlink()
    assert parsed[3].expected == "line 1, 0.21 s" and len(parsed) == 5  # the output marker reuses e.f's step
    assert (parsed[4].argv, parsed[4].env, parsed[4].stdout_to) == (["python", "-m", "g.h"], {"X": "1"}, "out.txt")
    assert parsed[4].expected == "result" and parsed[4].files == {"out.txt": "content"}
    assert [(b.lines, why) for b, why in snippets] == [(["import nothing"], "later")]
    assert normalise("a 12.5 s  \nb 3 ms\n\n") == "a N s\nb 3 ms"
    console = code_blocks("```console\n$ python -m a.b\nok\n  two\n$ X= python -m c.d --bad\nerror: no: fix\n```\n")
    assert command_lines(console[0]) == [(2, "python -m a.b", "ok\n  two"), (5, "X= python -m c.d --bad", "error: no: fix")]
    assert to_step("p", 5, "X= python -m c.d --bad").env == {"X": ""}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One folder per page, holding the user's inputs and a cache of its own."""
    made = {}

    def folder(page: str) -> Path:
        if page not in made:
            path = tmp_path_factory.mktemp(re.sub(r"\W", "_", page))
            (path / "cache").mkdir()
            for name, make in USER_INPUTS.items():
                make(path)
            made[page] = path
        return made[page]

    return folder


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


def _differs(what: str, shown: str, printed: str) -> str:
    diff = difflib.unified_diff(normalise(shown).splitlines(), normalise(printed).splitlines(),
                                "shown in the page", "printed now", lineterm="")
    return f"{what}: regenerate the page's copy\n" + "\n".join(diff)


@pytest.mark.slow
@pytest.mark.parametrize("step", RUNNABLE, ids=[f"{s.page}:{s.line} {' '.join(s.argv[2:])[:70]}" for s in RUNNABLE])
def test_page_command_runs_and_prints_what_the_page_shows(step, folders):
    folder = folders(step.page)
    _mirror_repo_paths(step.argv, folder)
    env = dict(os.environ, PYTHONPATH=str(ROOT), QUANTDSE_CACHE_DIR=str(folder / "cache"), MPLBACKEND="Agg",
               **step.env)
    r = subprocess.run([sys.executable, *step.argv[1:]], cwd=folder, env=env, capture_output=True, text=True,
                       timeout=COMMAND_TIMEOUT_S)
    shown = " ".join(step.argv)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    if step.expect_error:  # bad input shown on purpose: exit 2 and the one line the page shows
        assert (r.returncode, r.stderr.rstrip("\n")) == (2, step.expected), f"{step.page}:{step.line} `{shown}`"
        return
    assert r.returncode == 0, f"{step.page}:{step.line} `{shown}` exited {r.returncode}: {r.stderr[-2000:]}"
    if step.stdout_to:
        (folder / step.stdout_to).write_text(r.stdout)
    if step.expected is not None:
        assert normalise(r.stdout) == normalise(step.expected), _differs(f"{step.page}: `{shown}`", step.expected,
                                                                         r.stdout)
    for path, content in step.files.items():
        written = (folder / path).read_text(encoding="utf-8")
        assert normalise(written) == normalise(content), _differs(f"{step.page}: {path}", content, written)


@pytest.mark.slow
@pytest.mark.parametrize("page,block,pending", SNIPPETS, ids=[f"{p}:{b.line}" for p, b, _ in SNIPPETS])
def test_page_python_example_runs(page, block, pending, folders, request):
    if pending:
        request.applymarker(pytest.mark.xfail(reason=f"pending: {pending}", strict=True))
    folder = folders(page)
    env = dict(os.environ, PYTHONPATH=str(ROOT), QUANTDSE_CACHE_DIR=str(folder / "cache"), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-c", "\n".join(block.lines)], cwd=folder, env=env, capture_output=True,
                       text=True, timeout=COMMAND_TIMEOUT_S)
    assert r.returncode == 0, f"{page}:{block.line}: {r.stderr[-2000:]}"


def can_i_use(page: str, name: str) -> list[dict]:
    """The rows of the table after `<!-- can-i-use: NAME -->` in a docs page, as {column: cell}."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    after = text.split(f"<!-- can-i-use: {name} -->\n", 1)[1]
    table = []
    for line in after.splitlines():
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, body = table[0], table[2:]
    return [dict(zip(header, row)) for row in body]


#: the export table's columns: which format names each one covers
EXPORT_COLUMNS = {
    "int2-4, int8 grouped": r"int[2348]-g\d+(-asym)?(-qz)?",
    "int5-7": r"int[567](-g\d+)?(-asym)?(-qz)?",
    "per-channel int": r"int\d(-asym)?(-qz)?",
    "W8A8": r"int8-a8",
    "fp8": r"fp8-.*",
    "nvfp4": r"nvfp4.*",
    "mxfp4": r"mxfp4.*",
    "llama.cpp quants": r"q\d_(\d|k)",
    "fp16, bf16": r"fp16|bf16",
}


def test_exports_table_matches_what_each_target_writes(cli):
    rows = can_i_use("exports.md", "exports")
    assert {r["target"].strip("`") for r in rows} >= {"llamacpp", "gptqmodel", "modelopt"}
    for row in rows:
        target = row["target"].strip("`")
        r = cli("dse.export", "--list-formats", target)
        assert r.returncode == 0, r.stderr
        written = r.stdout.split()
        for column, pattern in EXPORT_COLUMNS.items():
            matched = sorted({f.replace("-qz", "") for f in written if re.fullmatch(pattern, f)})
            cell = row[column]
            if cell == "yes":
                assert matched, f"{target} writes no {column} format, the table says yes"
            elif cell == "no":
                assert not matched, f"{target} writes {matched}, the table says no"
            else:  # "X only"
                assert cell.endswith(" only") and matched == [cell[:-5]], f"{target} {column}: {matched} vs {cell!r}"


#: the solver table's budget columns as dse.search flags, in units of the first ilp plan's totals
SOLVER_COLUMNS = {"bits": "bits", "memory": "memory", "latency": "latency", "energy": "energy",
                  "bits + latency at once": "bits+latency"}


@pytest.mark.slow
def test_solvers_table_matches_what_each_method_does(tmp_path):
    """Every cell: resnet-50 on a100-80gb (its weights fit the device, so no memory limit is added), at
    budgets just above the 4.5-bit ILP plan's totals (so each is feasible) and, for two limits at once,
    4.5 bits with 1.25x its latency (the heuristics may miss a plan at limits tight together, as the page
    says); yes = exit 0, no = exit 2."""
    from dse import search
    from quantcore.cli import run_cli

    base = ["--hw", "a100-80gb", "--model", "resnet-50", "--seed", "0"]
    ref = tmp_path / "ref.json"
    assert run_cli(search.main, [*base, "--budget", "4.5bits", "--out", str(ref)]) == 0
    totals = json.loads(ref.read_text())["totals"]
    budgets = {"bits": ["--budget", "4.5bits"], "memory": ["--budget", f"{totals['memory_bytes'] * 1.01 / 1e9:.6f}GB"],
               "latency": ["--budget", f"{totals['latency_s'] * 1.01e3:.6f}ms"],
               "energy": ["--budget", f"{totals['energy_j'] * 1.01e3:.6f}mJ"],
               "bits+latency": ["--budget", "4.5bits", "--max-latency-ms", f"{totals['latency_s'] * 1.25e3:.6f}"]}
    wrong = []
    for row in can_i_use("solvers.md", "solvers"):
        method = row["method"].strip("`")
        for column, key in SOLVER_COLUMNS.items():
            code = run_cli(search.main, [*base, *budgets[key], "--method", method, "--out", str(tmp_path / "p.json")])
            if code != {"yes": 0, "no": 2}[row[column]]:
                wrong.append(f"{method} {column}: table says {row[column]}, dse.search exited {code}")
    assert not wrong, "\n".join(wrong)


def test_readme_lists_every_command_with_a_link():
    """One line per `python -m` command in the README's table, each with a link to its docs page; the
    commands are found as the CLI reference finds them (docs/hooks/reference.py)."""
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "docs" / "hooks" / "reference.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `python -m ([\w.]+)` \|(.*)\|$",
                                                        README.read_text(encoding="utf-8"), re.M)}
    commands = hooks.cli_modules()
    assert len(commands) >= 15
    assert sorted(rows) == sorted(commands), "the README's command table and the project's commands differ"
    for name, text in rows.items():
        link = re.search(r"\]\((docs/[\w-]+\.md)(#[\w-]+)?\)", text)
        assert link and (ROOT / link.group(1)).is_file(), f"{name}: no link to a docs page"
