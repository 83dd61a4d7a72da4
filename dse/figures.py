"""Writing matplotlib figures: the file type follows the extension; anything else is a one-line error.

The check runs before any work, so a bad `--plot` name costs nothing and leaves no file.
"""
from __future__ import annotations

import io
from pathlib import Path

from quantcore.errors import QuantDSEError
from quantcore.io import atomic_write_bytes

#: extension -> matplotlib format
FIGURE_TYPES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}


def figure_type(path: str) -> str:
    """The matplotlib format for `path`, or a QuantDSEError naming the extensions that work."""
    ext = Path(path).suffix.lower()
    if ext not in FIGURE_TYPES:
        raise QuantDSEError(f"--plot {path}: unsupported figure type {ext or '(no extension)'!r}: "
                            f"end the name with {', '.join(FIGURE_TYPES)}")
    return FIGURE_TYPES[ext]


def new_figure(**kwargs):
    """A matplotlib Figure on the Agg canvas (no display, no global pyplot state)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def figure_bytes(fig, kind: str = "png") -> bytes:
    """The figure as a `kind` file. Every text is drawn as plain text: the names in it come from
    plans, specs and model files, and a `$...$` in one must not be parsed as math (or crash it)."""
    import matplotlib
    from matplotlib.text import Text

    _plain_log_ticks(fig)
    buf = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False}):  # tick labels made while drawing, too
        for text in fig.findobj(Text):
            text.set_parse_math(False)
        fig.savefig(buf, format=kind, dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _plain_log_ticks(fig) -> None:
    """Log axes label their decades 0.01, 1, 100 instead of matplotlib's mathtext 10^k, which reads
    as raw `$\\mathdefault{...}$` once math parsing is off (above)."""
    from matplotlib.ticker import FuncFormatter, LogFormatterMathtext, NullFormatter

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and isinstance(axis.get_major_formatter(), LogFormatterMathtext):
                axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                axis.set_minor_formatter(NullFormatter())


def write_figure(fig, path: str) -> None:
    """Save `fig` atomically as the type its extension names."""
    atomic_write_bytes(path, figure_bytes(fig, figure_type(path)))
