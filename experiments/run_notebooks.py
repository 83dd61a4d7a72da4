"""`python -m experiments.run_notebooks [--full] [--figures DIR] [NAME ...]`: run the co-design notebooks headless.

    python -m experiments.run_notebooks 04_codenet   # small grid; figure in a new private temporary folder
    python -m experiments.run_notebooks --full       # the full grids; rewrites the figures in docs/

Each notebook in experiments/notebooks runs top to bottom in a fresh kernel (nbclient),
from the repository root; the notebooks themselves are not modified. The small grids are
the default (what CI runs); `--full` sets QUANTDSE_NOTEBOOK_FULL=1 for the kernel.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
ROOT = NOTEBOOKS.parents[1]
#: figure each notebook writes (the README shows them)
FIGURES = {"01_systolic_codesign": "codesign-systolic.png", "02_llama_platforms": "codesign-llama-2-7b-platforms.png",
           "03_datatypes": "codesign-datatypes.png", "04_codenet": "codesign-codenet.png"}


def default_figures(full: bool) -> Path:
    """docs/ for the full grids; for the small ones, which must not replace docs/, a new private folder
    (tempfile.mkdtemp: mode 0700, a name no one can plant a link at beforehand)."""
    return ROOT / "docs" if full else Path(tempfile.mkdtemp(prefix="quantdse-figures-"))


def notebook_names() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


@contextmanager
def _environ(**values: str | None):
    """Set environment variables (None removes one) for the kernel, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def execute(name: str, full: bool = False, figures: str | Path | None = None, timeout: float = 1800) -> float:
    """Run one notebook in a fresh kernel from the repository root; returns its seconds.

    A failing cell is one QuantDSEError line (the notebook, the exception and its message), not the
    cell's traceback; the kernel's stderr reaches ours only when that is a terminal.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.is_file():
        raise QuantDSEError(f"no notebook {name!r}: use one of {', '.join(notebook_names())}")
    figures = Path(figures) if figures else default_figures(full)
    if not figures.is_dir():
        raise QuantDSEError(f"figures folder {figures} does not exist: create it first")
    nb = nbformat.read(path, as_version=4)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    with _environ(QUANTDSE_NOTEBOOK_FULL="1" if full else None,
                  QUANTDSE_FIGURES_DIR=str(figures.resolve()), PYTHONPATH=pythonpath,
                  MPLBACKEND="Agg"):
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}})
        # the kernel's own stderr (debugger and library warnings) reaches ours only on a terminal
        quiet = {} if sys.stderr.isatty() else {"stderr": subprocess.DEVNULL}
        try:
            client.execute(**quiet)
        except CellExecutionError as exc:
            first = (str(exc.evalue or "").splitlines() or [""])[0][:200]
            raise QuantDSEError(f"notebook {name} failed: {exc.ename}: {first}: "
                                f"open experiments/notebooks/{name}.ipynb and run it to see the cell") from None
        except (CellTimeoutError, DeadKernelError) as exc:
            raise QuantDSEError(f"notebook {name} did not finish ({exc.__class__.__name__}): rerun it, or "
                                "open it to see the cell") from None
    return time.perf_counter() - start


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="experiments.run_notebooks", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help=f"notebooks to run (default all): {', '.join(notebook_names())}")
    p.add_argument("--full", action="store_true", help="the full grids (what the figures in docs/ show)")
    p.add_argument("--figures", help="folder for the figures (default: docs/ with --full, else a temporary folder)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.figures and not Path(args.figures).is_dir():
        raise QuantDSEError(f"--figures {args.figures} is not a folder: create it first")
    names = args.names or notebook_names()
    unknown = sorted(set(names) - set(notebook_names()))
    if unknown:
        raise QuantDSEError(f"no notebook {unknown[0]!r}: use one of {', '.join(notebook_names())}")
    figures = Path(args.figures) if args.figures else default_figures(args.full)
    for name in names:
        seconds = execute(name, full=args.full, figures=figures)
        where = figures / FIGURES[name]
        print(f"{name}: {seconds:.1f} s -> {where}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
