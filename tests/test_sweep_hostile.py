"""Hostile input to sweeps: tampered resume files, unreachable Ray, Ctrl-C on the pool, absurd --workers."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import sweep as sw
from quantcore.cli import run_cli
from conftest import require
from test_sweep import ARGS, small_sweep, without_timing

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(capsys, pattern):
    import re

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(pattern, err), err


def test_garbage_numbers_in_a_resume_file_are_computed_again_with_a_note(tmp_path, capsys):
    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    sw.run_sweep(small_sweep(), out=str(full), workers=1)
    lines = full.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[small_sweep().columns.index("effective_bits")] = "1e999x"
    lines[1] = ",".join(cells)
    lines[3] = lines[3].replace("optimal", "0ptimal")
    part.write_text("".join(lines))
    result = sw.run_sweep(small_sweep(), out=str(part), workers=1)
    assert (result.unreadable, result.ran, result.skipped) == (2, 2, 6)
    assert "note: 2 rows of" in capsys.readouterr().err
    assert without_timing(part) == without_timing(full)


@pytest.mark.parametrize("content, why", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "not UTF-8 text"),
    ("hw,rows,dataflow,model,budget,method\nsyst\u00e9lic,16\n".encode("latin-1"), "not UTF-8 text"),
    (b"hw,rows\x00,dataflow\n", "binary data"),
])
def test_a_resume_file_that_is_no_sweep_csv_is_one_line_and_left_alone(tmp_path, capsys, content, why):
    out = tmp_path / "s.csv"
    out.write_bytes(content)
    assert run_cli(sw.main, ARGS + ["--out", str(out), "--workers", "1"]) == 2
    one_line_error(capsys, f"--out .* is not a sweep CSV \\({why}\\): delete it or choose another --out")
    assert out.read_bytes() == content


def test_unreachable_ray_address_fails_within_the_connect_timeout(capsys):
    require("ray")
    started = time.perf_counter()
    assert run_cli(sw.main, ARGS + ["--ray", "--address", "127.0.0.1:1"]) == 2
    assert time.perf_counter() - started < sw.RAY_CONNECT_TIMEOUT_S + 5
    one_line_error(capsys, r"cannot reach the Ray cluster at 127\.0\.0\.1:1 .*check --address")


@pytest.mark.parametrize("workers", ["0", "100000", "99999999999999999999", "two"])
def test_workers_out_of_range_is_one_line(capsys, workers):
    assert run_cli(sw.main, ARGS + ["--workers", workers]) == 2
    one_line_error(capsys, r"--workers.*(must be (an integer )?in \[1, 1,024\])")


def test_ctrl_c_on_the_process_pool_ends_on_the_first_signal(tmp_path):
    out = tmp_path / "s.csv"
    # 2 designs x 32 budgets with nas, no two points the same problem (none reused): about 0.4 s a point on one
    # core, in tasks of 8 points, so the signal comes after the first rows with most points still to run
    budgets = ",".join(f"{3 + i / 20:.2f}bits" for i in range(32))
    args = ["--hw", "systolic", "--grid", "rows=16,32", "--model", "resnet-50",
            "--budgets", budgets, "--methods", "nas", "--phase", "prefill", "--seq", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *args, "--out", str(out), "--workers", "2"],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's job
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # one Ctrl-C, to the whole process group as a terminal sends it
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the sweep did not end on the first Ctrl-C")
    assert proc.returncode == 130, err
    assert b"run the same command again to resume" in err and b"Traceback" not in err
    lines = out.read_text().splitlines()
    assert lines[0].startswith("hw,rows") and 2 <= len(lines) < 1 + 2 * 32  # a valid CSV with the rows done


def test_ctrl_c_during_the_final_rewrite_keeps_the_appended_file_and_says_interrupted(tmp_path, monkeypatch):
    """The last points done, Ctrl-C while --out is rewritten in point order: the run still reports the
    interrupt (the CLI then prints how to resume) and --out, appended row by row, holds every point."""
    out = tmp_path / "s.csv"
    calls = []

    def write(path, text):
        calls.append(path)
        if len(calls) == 2:  # the first call writes the header; the second is the final rewrite
            raise KeyboardInterrupt
        return real(path, text)

    real = sw.atomic_write_text
    monkeypatch.setattr(sw, "atomic_write_text", write)
    result = sw.run_sweep(small_sweep(), out=str(out), workers=1)
    assert result.interrupted and len(calls) == 2
    assert without_timing(out) and len(without_timing(out)) == len(small_sweep().points)
