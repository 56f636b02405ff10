"""The report stage: a scoring run's files, each written atomically (:mod:`convrnn.io`): ``scores.csv`` (one row
per area x layer x bin), ``best_layers.csv``, ``scores.json`` (a summary: config, provenance, best layers, time
averages, ceilings, all rows, timings) and the plots ``predictivity_over_time.png`` (noise-corrected score) and
``raw_over_time.png`` (raw r with sqrt(ceiling)).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from convrnn.io import atomic_write_text
from convrnn.neural.metrics import CONVENTIONS
from convrnn.neural.plots import plot_over_time

__all__ = ["jsonable", "write_report"]


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    return str(value)


def write_report(out: Path, table: pd.DataFrame, best: pd.DataFrame, summary: Mapping[str, Any], *,
                 best_of: Mapping[str, str], layer_order: Sequence[str], model_name: str, convention: str
                 ) -> dict[str, Path]:
    """Write the CSVs, the plots and ``scores.json`` (``summary`` plus its ``timings`` as they are when called) to
    ``out``; returns the paths by name. ``best_of`` maps each area to its best layer (drawn bold); the plots leave
    out the bins that ``table``'s ``reliable`` column marks False."""
    paths = {"scores_csv": out / "scores.csv", "scores_json": out / "scores.json",
             "best_layers_csv": out / "best_layers.csv",
             "plot": out / "predictivity_over_time.png", "plot_raw": out / "raw_over_time.png"}
    atomic_write_text(paths["scores_csv"], table.to_csv(index=False))
    atomic_write_text(paths["best_layers_csv"], best.to_csv(index=False))
    plot_over_time(table, best_of, paths["plot"], value="score", layer_order=layer_order,
                   ylabel=f"noise-corrected predictivity ({CONVENTIONS[convention]})",
                   title=f"{model_name}: predictivity over time")
    plot_over_time(table, best_of, paths["plot_raw"], value="raw_r", layer_order=layer_order, ylabel="raw r",
                   title=f"{model_name}: raw r (dashed: sqrt(ceiling))", reference=None, show_ceiling=True)
    atomic_write_text(paths["scores_json"], json.dumps(jsonable(summary), indent=1))
    return paths
