"""mkdocs hooks: the CLI and API reference pages are generated from the code, so they cannot go stale.

- `<!-- cli-reference -->` in a page becomes one section per command-line tool: every module of the
  project that runs `run_cli` under `if __name__ == "__main__"`, with its argparse `--help` text
  (from `build_parser()` where the module has one, else from `main(["--help"])`).
- `<!-- api-reference -->` becomes a mkdocstrings `::: module` block for `dse` and each of its public
  modules, so a module added to the package appears without editing the page.
- Pages under docs/ that the nav in mkdocs.yml does not list are appended to it (under "More"), so a
  new page is published and a page not yet written is never a broken nav entry.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dse", "hwmodels", "quantcore", "policies", "experiments")
#: internal entry points that are not user commands (a measuring worker, a catalog generator)
NOT_COMMANDS = {"hwmodels.measure", "quantcore.models.catalog.make_cnn_specs"}
API_PACKAGE = "dse"
#: the interfaces a new hardware family or format is written against, shown where they exist
API_EXTRA = ("hwmodels.interface", "hwmodels.spec", "hwmodels.workload", "quantcore.errors")


def cli_modules() -> list[str]:
    """Every `python -m` command of the project, in package order then by name."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if '__name__ == "__main__"' not in text or "run_cli(" not in text:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__main__" else parts)
            if name not in NOT_COMMANDS:
                found.append(name)
    return found


def cli_help(module: str) -> str:
    """The command's `--help` text, 100 columns wide."""
    os.environ["COLUMNS"] = "100"
    is_package = importlib.util.find_spec(module).submodule_search_locations is not None
    mod = importlib.import_module(module + ".__main__" if is_package else module)
    if hasattr(mod, "build_parser"):
        return mod.build_parser().format_help()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        mod.main(["--help"])
    return out.getvalue()


def cli_reference() -> str:
    sections = []
    for module in cli_modules():
        sections.append(f"## `python -m {module}`\n\n```text\n{cli_help(module).rstrip()}\n```\n")
    return "\n".join(sections)


def api_modules() -> list[str]:
    """`dse` and its public modules (no `_private` or `__main__` ones) in name order, then API_EXTRA."""
    package = importlib.import_module(API_PACKAGE)
    names = [API_PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, API_PACKAGE + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names) + [name for name in API_EXTRA if importlib.util.find_spec(name) is not None]


def api_reference() -> str:
    return "\n".join(f"::: {name}\n" for name in api_modules())


def on_config(config):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    docs = Path(config["docs_dir"])
    listed = set(re.findall(r"[\w/-]+\.md", repr(config["nav"])))
    extra = sorted(str(p.relative_to(docs)) for p in docs.rglob("*.md") if str(p.relative_to(docs)) not in listed)
    if extra:
        config["nav"].append({"More": extra})
    return config


def on_page_markdown(markdown, page, config, files):
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    if "<!-- api-reference -->" in markdown:
        markdown = markdown.replace("<!-- api-reference -->", api_reference())
    return markdown
