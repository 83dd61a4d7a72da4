"""`python -m experiments.sweep --plot CSV --x COL --y COL [--color COL]`: a sweep's CSV as a labelled figure.

Points that failed (or lack a value) are left out and counted in the title. Numeric colour
columns get a colour scale, text columns a legend; axes spanning more than two decades are
drawn on a log scale.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from dse.figures import figure_type, new_figure, write_figure
from quantcore.errors import QuantDSEError

#: axis label of each column the sweep writes (columns not listed are labelled by name)
LABELS = {"latency_s": "latency (s)", "energy_j": "energy (J)", "memory_bytes": "weights in memory (bytes)",
          "effective_bits": "effective bits per weight", "error": "plan error (sum over layers)",
          "tokens_per_s": "throughput (tokens/s)", "images_per_s": "throughput (images/s)",
          "seconds": "solver time (s)", "gap": "optimality gap", "batch": "batch", "seq": "sequence length (tokens)",
          "kv_bits": "KV cache bits"}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_csv(path: str) -> tuple[list[str], list[dict]]:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise QuantDSEError(f"--plot {path} is not a CSV (not UTF-8 text): give the CSV a sweep wrote") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
    except csv.Error as exc:
        raise QuantDSEError(f"--plot {path} is not a CSV ({exc}): give the CSV a sweep wrote") from None
    return list(reader.fieldnames or []), rows


def plot_csv(path: str, x: str, y: str, color: str | None = None, out: str | None = None) -> str:
    """Write the figure (default: `path` with .png) and return its path."""
    out = out or str(Path(path).with_suffix(".png"))
    figure_type(out)  # a bad extension fails before any work
    columns, rows = read_csv(path)
    for flag, column in (("--x", x), ("--y", y), ("--color", color)):
        if column is not None and column not in columns:
            raise QuantDSEError(f"{flag} {column!r} is not a column of {path}: use one of {', '.join(columns)}")
    points = [r for r in rows if r.get("status") != "failed" and _number(r[x]) is not None
              and _number(r[y]) is not None]
    if not points:
        numeric = [c for c in columns if any(_number(r[c] or "") is not None for r in rows)]
        raise QuantDSEError(f"no row of {path} has numbers in both {x} and {y}: choose numeric columns "
                            f"({', '.join(numeric) or 'none'})")
    xs, ys = [_number(r[x]) for r in points], [_number(r[y]) for r in points]
    fig = new_figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    values = [r[color] for r in points] if color else None
    if values is not None and all(_number(v) is not None for v in values):
        shown = ax.scatter(xs, ys, c=[_number(v) for v in values], cmap="viridis", s=24, alpha=0.85)
        fig.colorbar(shown, ax=ax, label=LABELS.get(color, color))
    elif values is not None:
        for value in dict.fromkeys(values):
            pick = [i for i, v in enumerate(values) if v == value]
            ax.scatter([xs[i] for i in pick], [ys[i] for i in pick], s=24, alpha=0.85, label=f"{color} {value}")
        ax.legend(fontsize="small")
    else:
        ax.scatter(xs, ys, s=24, alpha=0.85)
    for axis, data in (("x", xs), ("y", ys)):
        if min(data) > 0 and max(data) / min(data) > 100:
            getattr(ax, f"set_{axis}scale")("log")
    left_out = len(rows) - len(points)
    ax.set(xlabel=LABELS.get(x, x), ylabel=LABELS.get(y, y),
           title=f"{Path(path).name}: {len(points)} points" + (f" ({left_out} failed or empty, left out)"
                                                               if left_out else ""))
    ax.grid(True, alpha=0.3)
    write_figure(fig, out)
    return out
