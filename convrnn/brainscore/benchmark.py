"""A Brain-Score benchmark built from local recordings (a brainio ``.nc`` assembly and its stimulus set).

Why: Brain-Score's public benchmarks download their data from S3, which this project never does; a local
benchmark scores a model with Brain-Score's own machinery (``NeuralBenchmark``, its PLS metrics, its
split-half ceilings) on recordings you have, e.g. ``fit_neural.py --data synthetic``'s, so that its numbers can
be checked against ``fit_neural.py`` on the same data. Nothing here touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from convrnn.errors import UserError

__all__ = ["load_local_assembly", "local_benchmark"]

#: metric name -> Brain-Score ceiling used with it: shared-weights temporal PLS, or one static PLS
_CEILINGS = {"spantime_pls": "internal_consistency_temporal", "pls": "internal_consistency"}


def load_local_assembly(path: str | os.PathLike, stimuli_csv: str | os.PathLike,
                        stimuli_dir: str | os.PathLike | None = None, *, identifier: str | None = None) -> Any:
    """A brainio netCDF assembly as Brain-Score's ``NeuronRecordingAssembly``, with its ``StimulusSet`` attached.

    The stimulus CSV needs ``stimulus_id`` and ``filename`` (relative to ``stimuli_dir``, default the CSV's
    folder); its columns are merged onto ``presentation`` where the assembly lacks them.
    """
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuronRecordingAssembly
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet

    path, stimuli_csv = Path(path), Path(stimuli_csv)
    for label, file in (("assembly", path), ("stimulus CSV", stimuli_csv)):
        if not file.is_file():
            raise UserError(f"{label} {file} does not exist")
    stimulus_set = StimulusSet.from_files(stimuli_csv, Path(stimuli_dir) if stimuli_dir else stimuli_csv.parent)
    stimulus_set.identifier = identifier or stimuli_csv.stem
    with xr.open_dataarray(path) as raw:
        raw = raw.load()
    if "stimulus_id" not in raw.coords and "image_id" in raw.coords:
        raw = raw.assign_coords(stimulus_id=("presentation", raw["image_id"].values))
    table = stimulus_set.set_index("stimulus_id")
    ids = raw["stimulus_id"].values
    missing = sorted(set(ids) - set(table.index))
    if missing:
        raise UserError(f"{len(missing)} stimulus ids of {path} are not in {stimuli_csv}, e.g. {missing[:3]}")
    extra = {col: ("presentation", table.loc[ids, col].to_numpy()) for col in table.columns
             if col not in raw.coords}
    raw = raw.assign_coords(extra)
    assembly = NeuronRecordingAssembly(raw)
    assembly.attrs["stimulus_set"] = stimulus_set
    assembly.attrs["stimulus_set_identifier"] = stimulus_set.identifier
    return assembly


def local_benchmark(assembly: Any, region: str, *, metric: str = "spantime_pls",
                    stratification_coord: str | None = "object_name", visual_degrees: float = 8,
                    identifier: str | None = None) -> Any:
    """Brain-Score's ``NeuralBenchmark`` on ``assembly``'s ``region`` neuroids (all its time bins).

    ``metric``: ``spantime_pls`` (one PLS map shared by all bins, per-bin scores: Brain-Score's temporal
    benchmarks; ceiling ``internal_consistency_temporal``) or ``pls`` (one bin; ``internal_consistency``).
    ``stratification_coord``: the splits' stratification (Brain-Score's MajajHong: ``object_name``; a small
    stimulus set needs a coarser one, e.g. ``category_name``). The score is R^2 / ceiling per bin.
    """
    from brainscore_vision import load_ceiling, load_metric
    from brainscore_vision.benchmark_helpers.neural_common import NeuralBenchmark, average_repetition

    if metric not in _CEILINGS:
        raise UserError(f"metric must be one of {sorted(_CEILINGS)}, got {metric!r}")
    regions = np.unique(assembly["region"].values)
    if region not in regions:
        raise UserError(f"region {region!r} is not in the assembly (regions: {list(regions)})")
    stimulus_set = assembly.attrs["stimulus_set"]
    selected = assembly.sel(region=region)
    selected = type(assembly)(selected.assign_coords(region=("neuroid", [region] * selected.sizes["neuroid"])))
    selected = selected.transpose("presentation", "neuroid", ...)
    if metric == "pls" and "time_bin" in selected.dims:
        if selected.sizes["time_bin"] != 1:
            raise UserError("metric 'pls' scores one time bin; use 'spantime_pls' for several")
        selected = selected.squeeze("time_bin")
    selected.attrs["stimulus_set"] = stimulus_set
    averaged = average_repetition(selected)
    averaged.attrs["stimulus_set"] = stimulus_set
    kwargs = {"stratification_coord": stratification_coord} if stratification_coord else \
        {"stratification_coord": None}
    ceiler = load_ceiling(_CEILINGS[metric])
    return NeuralBenchmark(identifier=identifier or f"local.{region}-{metric}", version=1, assembly=averaged,
                           similarity_metric=load_metric(metric, crossvalidation_kwargs=kwargs),
                           visual_degrees=visual_degrees, number_of_trials=1,
                           ceiling_func=lambda: ceiler(selected), parent=region, bibtex=None)
