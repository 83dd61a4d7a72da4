"""The packages are layered: quantcore <- hwmodels <- dse <- policies, experiments. Imports point down only."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {  # package -> the project packages it may import
    "quantcore": {"quantcore"},
    "hwmodels": {"quantcore", "hwmodels"},
    "dse": {"quantcore", "hwmodels", "dse", "policies"},  # policies: only `--method rl` loads the agent
    "policies": {"quantcore", "hwmodels", "dse", "policies"},
}
PROJECT = {"quantcore", "hwmodels", "dse", "policies", "experiments"}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package):
    bad = {str(p.relative_to(ROOT)): sorted(_imported_packages(p) - ALLOWED[package])
           for p in (ROOT / package).rglob("*.py")}
    assert not {k: v for k, v in bad.items() if v}
