"""The region -> layer commitment: from the user (``V4=conv5,IT=conv8``) or from a ``fit_neural.py`` run.

Why the fit_neural route: a layer chosen on the data a benchmark tests inflates the score, so the commitment
should come from other data (a ``fit_neural.py`` run on recordings the benchmark does not use, e.g. your own or
the public half); its ``best_layers.csv`` has one row per area with the chosen ``layer``. A region may commit to
several layers (``IT=conv9+conv10``): their units are concatenated. Needs no Brain-Score install.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from convrnn.errors import UserError

__all__ = ["BRAINSCORE_REGIONS", "RegionLayerMap", "check_layers", "parse_regions", "regions_from_best_layers"]

#: Brain-Score's recording targets (``BrainModel.RecordingTarget``)
BRAINSCORE_REGIONS = ("V1", "V2", "V4", "IT")

RegionLayerMap = dict[str, list[str]]


def _layers(value: str | Sequence[str], where: str) -> list[str]:
    parts = value.split("+") if isinstance(value, str) else [str(v) for v in value]
    parts = [p.strip() for p in parts]
    if not parts or any(not p for p in parts):
        raise UserError(f"{where}: empty layer name in {value!r}")
    return list(dict.fromkeys(parts))


def normalise_map(region_layer_map: Mapping[str, str | Sequence[str]]) -> RegionLayerMap:
    """``{region: layer or [layers] or 'a+b'}`` -> ``{region: [layers]}``; an empty map is an error."""
    if not region_layer_map:
        raise UserError("region_layer_map: no region given (e.g. {'V4': 'conv5', 'IT': 'conv8'})")
    return {str(region): _layers(layers, f"region {region!r}") for region, layers in region_layer_map.items()}


def parse_regions(text: str) -> RegionLayerMap:
    """``"V4=conv5,IT=conv8"`` (``+`` joins layers: ``IT=conv9+conv10``) -> ``{"V4": ["conv5"], ...}``."""
    result: RegionLayerMap = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        region, sep, layers = item.partition("=")
        region = region.strip()
        if not sep or not region or not layers.strip():
            raise UserError(f"--regions: {item!r} is not REGION=LAYER (e.g. V4=conv5,IT=conv8)")
        if region in result:
            raise UserError(f"--regions: region {region!r} given twice")
        result[region] = _layers(layers, f"--regions {region}")
    if not result:
        raise UserError("--regions: no region given (e.g. V4=conv5,IT=conv8)")
    return result


def regions_from_best_layers(path: str | os.PathLike, regions: Sequence[str] | None = None) -> RegionLayerMap:
    """The ``layer`` of each ``area`` in a ``fit_neural.py`` ``best_layers.csv``.

    ``regions`` keeps only those areas (each must be in the file). Areas that are not Brain-Score recording
    targets (Nayebi's ``pIT``, ``cIT/aIT``) are kept as they are; a Brain-Score benchmark records from V4/IT, so
    run ``fit_neural.py --regions V4 IT`` to get one row per Brain-Score region.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"best layers: {path} does not exist (fit_neural.py writes OUT/best_layers.csv)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"area", "layer"} <= set(rows[0]):
        raise UserError(f"best layers: {path} needs the columns 'area' and 'layer' (fit_neural.py's best_layers.csv)")
    found: RegionLayerMap = {}
    for row in rows:
        area, layer = (row["area"] or "").strip(), (row["layer"] or "").strip()
        if not area or not layer:
            raise UserError(f"best layers: {path} has a row without area or layer: {row}")
        if area in found:
            raise UserError(f"best layers: {path} lists area {area!r} twice")
        found[area] = [layer]
    if regions is None:
        return found
    missing = [r for r in regions if r not in found]
    if missing:
        raise UserError(f"best layers: {path} has no row for {missing} (areas there: {sorted(found)}); "
                        "run fit_neural.py with --regions V4 IT")
    return {r: found[r] for r in regions}


def check_layers(region_layer_map: RegionLayerMap, layer_names: Sequence[str], model_name: str = "the model") -> None:
    """Every committed layer exists in the model (named, with the model's layers, before anything runs)."""
    unknown = sorted({layer for layers in region_layer_map.values() for layer in layers} - set(layer_names))
    if unknown:
        raise UserError(f"regions: unknown layer(s) {unknown}; {model_name} has {list(layer_names)}")
