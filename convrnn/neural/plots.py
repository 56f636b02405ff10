"""Figures of a neural fit: predictivity over time per area, one line per layer, the best layer in bold.

Why matplotlib's object API (``Figure`` + the Agg canvas) rather than pyplot: it renders headless without touching
the process-wide backend or pyplot's figure registry, so it is safe inside tests and servers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from convrnn.io import atomic_open

__all__ = ["plot_over_time", "save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write a PNG atomically (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, dpi=dpi, format="png")
    return path


def plot_over_time(
    scores: pd.DataFrame,
    best: Mapping[str, str],
    path: str | os.PathLike,
    *,
    value: str = "score",
    ylabel: str = "noise-corrected predictivity",
    title: str | None = None,
    layer_order: Sequence[str] | None = None,
    reference: float | None = 1.0,
    show_ceiling: bool = False,
) -> Path:
    """One panel per area: ``value`` against bin centre (ms), a line per layer, the area's best layer bold.

    ``scores`` has columns area, layer, bin, bin_end, ceiling and ``value``. With a ``reliable`` column (the
    summarise stage's :func:`~convrnn.neural.summarise.reliable_bins`), the other bins are left out (the ratio to a
    ~0 ceiling is noise) and shaded. ``reference`` draws a dashed
    horizontal line (1 = the ceiling for noise-corrected scores); ``show_ceiling`` draws sqrt(ceiling), the best
    raw r a model can reach, in black.
    """
    areas = list(dict.fromkeys(scores["area"]))
    layers = list(layer_order) if layer_order is not None else list(dict.fromkeys(scores["layer"]))
    colours = _colours(len(layers))
    n = max(len(areas), 1)
    fig = Figure(figsize=(4.2 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    for ax, area in zip(axes, areas, strict=False):
        sub = scores[scores["area"] == area]
        centres = ((sub["bin"] + sub.get("bin_end", sub["bin"] + 10)) / 2.0)
        sub = sub.assign(_x=centres.to_numpy())
        ceil = sub.drop_duplicates("bin").sort_values("bin")
        marked = "reliable" in sub.columns
        low = ~ceil["reliable"].to_numpy(dtype=bool) if marked else np.zeros(len(ceil), dtype=bool)
        if marked:
            for (_, row), bad in zip(ceil.iterrows(), low, strict=True):
                if bad:
                    ax.axvspan(row["bin"], row.get("bin_end", row["bin"] + 10), color="0.9", zorder=0)
        for i, layer in enumerate(layers):
            rows = sub[sub["layer"] == layer].sort_values("bin")
            if rows.empty:
                continue
            y = rows[value].to_numpy(dtype=float).copy()
            if marked:
                y[~rows["reliable"].to_numpy(dtype=bool)] = np.nan
            is_best = best.get(area) == layer
            ax.plot(rows["_x"], y, color=colours[i], lw=3.0 if is_best else 1.1, alpha=1.0 if is_best else 0.75,
                    zorder=3 if is_best else 2, marker="o" if is_best else None, ms=3)
        if show_ceiling:
            c = np.sqrt(np.clip(ceil["ceiling"].to_numpy(dtype=float), 0, None))
            c[low] = np.nan
            ax.plot(ceil["_x"], c, color="k", ls="--", lw=1.2, zorder=4)
        if reference is not None:
            ax.axhline(reference, color="k", ls=":", lw=0.8)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_title(f"{area}: best {best[area]} (bold)" if area in best else area)
        ax.set_xlabel("time bin centre (ms)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    handles = [Line2D([], [], color=colours[i], lw=1.5, label=layer) for i, layer in enumerate(layers)]
    if show_ceiling:
        handles.append(Line2D([], [], color="k", ls="--", lw=1.2, label="√ceiling"))
    handles.append(Line2D([], [], color="0.3", lw=3.0, label="best layer (bold)"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in (np.linspace(0.0, 0.9, n) if n > 1 else [0.3])]
