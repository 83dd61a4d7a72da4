"""The co-design notebooks run headless (nbclient) at their small CI settings and write their figures."""
import json

import pytest

from experiments.run_notebooks import FIGURES, NOTEBOOKS, ROOT, execute, notebook_names

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_notebook_has_its_figure_committed_and_shown_in_the_docs():
    page = (ROOT / "docs" / "codesign.md").read_text()
    assert notebook_names() == sorted(FIGURES)
    for name, figure in FIGURES.items():
        assert (ROOT / "docs" / figure).read_bytes()[:8] == PNG, figure
        assert f"]({figure})" in page and f"experiments/notebooks/{name}.ipynb" in page
        cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "from experiments.sweep import sweep" in code and "sweep(" in code  # the studies use the sweep tool
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), "commit notebooks without outputs"


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_runs_and_writes_its_figure(tmp_path, name):
    """Small grids: 6-13 s each on 2 cores, so `make test` runs them all."""
    execute(name, figures=tmp_path, timeout=300)
    png = (tmp_path / FIGURES[name]).read_bytes()
    assert png[:8] == PNG and len(png) > 20_000, f"{name} wrote no real figure"


def test_unknown_notebook_is_one_line_exit_2(capsys):
    from experiments.run_notebooks import main
    from quantcore.cli import run_cli

    assert run_cli(main, ["05_nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no notebook '05_nope': use one of 01_systolic_codesign") and err.count("\n") == 1
