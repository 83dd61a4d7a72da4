"""Optional packages: which extra of quantdse brings each, so a missing one is one line that says what to install.

The core install (`pip install quantdse`) runs the search, the cost models, the plan tools and the
exports' text formats; torch, matplotlib, gymnasium, ... come with extras and are imported where
they are used. The CLI boundary (`quantcore.cli.run_cli`) turns the ModuleNotFoundError of one of
them into `error: <package> is not installed: pip install 'quantdse[<extra>]'`; any other missing
module is a bug and keeps its traceback.
"""
from __future__ import annotations

#: top-level import name -> (package to install, the extra that brings it)
EXTRAS = {
    "torch": ("torch", "eval"),
    "transformers": ("transformers", "eval"),
    "tokenizers": ("tokenizers", "eval"),
    "gymnasium": ("gymnasium", "rl"),
    "stable_baselines3": ("stable-baselines3", "rl"),
    "compressed_tensors": ("compressed-tensors", "export"),
    "ray": ("ray", "distributed"),
    "matplotlib": ("matplotlib", "plot"),
    "mkdocs": ("mkdocs", "docs"),
}

#: torch is in several extras: the one named is the extra of the code that needed it. A module (or a
#: package, for all its modules) that needs torch for an extra of its own says so with a module-level
#: `TORCH_EXTRA = "name"`; quantcore names no module above it.
TORCH_EXTRA_ATTRIBUTE = "TORCH_EXTRA"


def fix_line(package: str, extra: str) -> str:
    """The one line for a missing optional package."""
    return f"{package} is not installed: pip install 'quantdse[{extra}]'"


def missing_line(exc: ModuleNotFoundError) -> str | None:
    """The one line for an optional package that is not installed, or None when `exc` is not one (a bug)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    package, extra = EXTRAS[top]
    if top == "torch":
        extra = _torch_extra(exc) or extra
    return fix_line(package, extra)


def _torch_extra(exc: BaseException) -> str | None:
    """The extra of the innermost project module on the traceback that has a torch extra of its own."""
    import sys

    found, tb = None, exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals  # the module itself (gone from sys.modules if its import failed)
        parts = module.get("__name__", "").split(".")
        packages = (getattr(sys.modules.get(".".join(parts[:depth])), "__dict__", {})
                    for depth in range(len(parts) - 1, 0, -1))
        for where in (module, *packages):
            extra = where.get(TORCH_EXTRA_ATTRIBUTE)
            if isinstance(extra, str):
                found = extra
                break
        tb = tb.tb_next
    return found
