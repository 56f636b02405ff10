"""Brain areas as neuroid selectors, and the model step of each time bin: what the fit stage needs to know about
the recordings besides the responses.

An area is ``{coordinate: value or values}`` over the neuroid table (e.g. ``{"subregion": ["cIT", "aIT"]}``);
:func:`resolve_areas` turns area names (``--regions``) into such selectors, :func:`area_masks` selectors into masks.
A bin starting at ``s`` ms is matched to model step ``floor(s / step_ms) + offset`` (``docs/neural.md``,
"Model step <-> time bin").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["NAYEBI_AREAS", "area_masks", "default_bin_steps", "resolve_areas"]

logger = logging.getLogger(__name__)

#: Nayebi's grouping: V4, pIT, and cIT+aIT pooled. Values select neuroids by coordinate.
NAYEBI_AREAS: dict[str, dict[str, Any]] = {
    "V4": {"region": "V4"},
    "pIT": {"subregion": "pIT"},
    "cIT/aIT": {"subregion": ["cIT", "aIT"]},
}


def default_bin_steps(bins: np.ndarray, *, step_ms: float = 10.0, offset: int = 0) -> list[int]:
    """Model step for each bin: ``floor(start / step_ms) + offset`` (step t <-> [t*step_ms, (t+1)*step_ms))."""
    return [int(np.floor(start / step_ms)) + int(offset) for start in np.asarray(bins)[:, 0]]


def area_masks(neuroids: pd.DataFrame, areas: Mapping[str, Mapping[str, Any]] | None) -> dict[str, np.ndarray]:
    """Area name -> boolean mask over ``neuroids`` rows (default: one area per ``region``, else all neuroids).

    Areas that select no neuroid are skipped with a warning; raises ``ValueError`` if none is left and
    ``KeyError`` when a selector names a column that ``neuroids`` lacks.
    """
    if areas is None:
        if "region" not in neuroids.columns:
            return {"all": np.ones(len(neuroids), dtype=bool)}
        regions = pd.unique(neuroids["region"].astype(str))
        areas = {str(r): {"region": r} for r in regions}
    masks = {}
    for name, selector in areas.items():
        mask = np.ones(len(neuroids), dtype=bool)
        for coord, wanted in selector.items():
            if coord not in neuroids.columns:
                raise KeyError(f"area {name!r} selects on {coord!r}, which is not a neuroid coordinate "
                               f"(have {list(neuroids.columns)})")
            values = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Sequence) else list(wanted)
            mask &= neuroids[coord].astype(str).isin([str(v) for v in values]).to_numpy()
        if not mask.any():
            logger.warning("area %r selects no neuroids; skipped", name)
            continue
        masks[name] = mask
    if not masks:
        raise ValueError("no area selects any neuroid")
    return masks


def resolve_areas(neuroids: pd.DataFrame, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Area name -> neuroid selector for ``score_model``.

    Default: Nayebi's V4 / pIT / cIT+aIT (:data:`NAYEBI_AREAS`) when a ``subregion`` coordinate holds pIT/cIT/aIT,
    else one area per ``region``, else all neuroids. A name is a Nayebi area (``V4``, ``pIT``, ``cIT/aIT``), a
    ``region`` value, a ``subregion`` value, or values joined by ``+`` or ``/`` (pooled, e.g. ``cIT+aIT``).
    """
    regions = set(neuroids["region"].astype(str)) if "region" in neuroids.columns else set()
    subregions = set(neuroids["subregion"].astype(str)) if "subregion" in neuroids.columns else set()
    if names is None:
        if subregions & {"pIT", "cIT", "aIT"}:
            areas = {}
            for name, selector in NAYEBI_AREAS.items():
                coord, wanted = next(iter(selector.items()))
                values = {wanted} if isinstance(wanted, str) else set(wanted)
                have = regions if coord == "region" else subregions
                if values & have:
                    areas[name] = dict(selector)
            return areas
        if regions:
            return {r: {"region": r} for r in sorted(regions, key=list(neuroids["region"].astype(str)).index)}
        return {"all": {}}
    areas: dict[str, dict[str, Any]] = {}
    for name in names:
        parts = [p for p in name.replace("/", "+").split("+") if p]
        if name in NAYEBI_AREAS and subregions:
            areas[name] = dict(NAYEBI_AREAS[name])
        elif name in regions:
            areas[name] = {"region": name}
        elif name in subregions:
            areas[name] = {"subregion": name}
        elif len(parts) > 1 and all(p in subregions for p in parts):
            areas[name] = {"subregion": parts}
        elif len(parts) > 1 and all(p in regions for p in parts):
            areas[name] = {"region": parts}
        else:
            known = sorted(set(NAYEBI_AREAS) if subregions else set()) + sorted(regions) + sorted(subregions)
            raise ValueError(f"unknown area {name!r}; choose from {sorted(set(known))} (or join values with '+')")
    return areas
