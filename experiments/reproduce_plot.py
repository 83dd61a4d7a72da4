"""Ours against published for every reproduced figure: one point per row, +-band shaded."""
from __future__ import annotations

from quantcore.errors import QuantDSEError

#: misses named on the figure, worst first
NAMED = 12


def plot(rows: list[dict], path: str, band: float) -> None:
    """Log-log scatter written atomically to `path`; independent rows filled, calibration hollow."""
    import numpy as np

    from dse.figures import new_figure, write_figure

    known = [r for r in rows if r["published"] is not None]
    if not known:
        raise QuantDSEError("no row has a published figure to plot: choose other reproductions")
    pub = np.array([r["published"] for r in known])
    ours = np.array([r["ours"] for r in known])
    lo, hi = min(pub.min(), ours.min()) / 1.5, max(pub.max(), ours.max()) * 1.5
    fig = new_figure(figsize=(7.5, 7))
    ax = fig.subplots()
    line = np.geomspace(lo, hi, 50)
    ax.fill_between(line, line * (1 - band), line * (1 + band), color="0.88", label=f"±{band:.0%}")
    ax.plot(line, line, color="0.5", lw=0.8)
    for check, style in (("independent", dict(color="C0")), ("calibration", dict(facecolors="none",
                                                                                 edgecolors="C3"))):
        pick = np.array([r["check"] == check for r in known])
        n = int(pick.sum())
        ax.scatter(pub[pick], ours[pick], s=28, label=f"{check} ({n})", **style)
    outside = sorted((r for r in known if abs(r["ratio"] - 1) > band), key=lambda r: -abs(np.log(r["ratio"])))
    for r in outside[:NAMED]:  # more names than this overprint each other
        ax.annotate(r["name"], (r["published"], r["ours"]), fontsize=6, xytext=(3, -3),
                    textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="published (each row's own unit)",
           ylabel="ours (python -m experiments.reproduce), same unit",
           title=f"Reproduced figures: ours vs published ({len(outside)} outside the band; "
                 f"the {min(NAMED, len(outside))} worst named)")
    ax.legend(loc="upper left")
    write_figure(fig, path)
