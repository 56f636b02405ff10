"""Dense trial views for scoring: an assembly as ``[repetition, stimulus, neuroid, bin]`` (:class:`TrialData`,
:func:`trial_array`), the check that it can be scored (:func:`check_trials`) and the repetition average
(:func:`average_repetitions`).

Why dense: scoring indexes trials by (repetition, stimulus) for split halves and by stimulus for the maps; one
array built once is simpler and faster than working on the xarray object. NaN = a missing trial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from convrnn.errors import UserError
from convrnn.neural.assembly import check_time_bins, gather_indexes, plain_number, preview, reset_indexes

__all__ = ["TrialData", "average_repetitions", "check_trials", "trial_array"]

logger = logging.getLogger(__name__)



@dataclass
class TrialData:
    """Dense view of an assembly, built once for scoring.

    ``trials[r, s, n, b]``: repetition r (sorted unique ``repetition`` values, or order of appearance),
    stimulus s (sorted unique ``stimulus_id``), neuroid n (assembly order), bin b (sorted). NaN = missing trial.
    """

    trials: np.ndarray
    stimulus_ids: np.ndarray
    stimuli: pd.DataFrame  # one row per stimulus: presentation coords constant within a stimulus
    neuroids: pd.DataFrame  # one row per neuroid: all neuroid coords
    bins: np.ndarray | None  # [B, 2] (start, end) ms, or None without a time_bin dim
    n_missing: int  # NaN trial values (absent (stimulus, repetition) pairs included)

    def mean(self) -> np.ndarray:
        """Trial average ``[S, N, B]`` ignoring NaNs (missing trials); computed bin by bin to bound memory."""
        out = np.empty(self.trials.shape[1:], dtype=self.trials.dtype)
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            for b in range(self.trials.shape[-1]):
                out[..., b] = np.nanmean(self.trials[..., b], axis=0)
        return out


class _quiet_nanmean:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _coord_frame(assembly: xr.DataArray, dim: str) -> pd.DataFrame:
    plain = reset_indexes(assembly)
    names = [name for name, c in plain.coords.items() if c.dims == (dim,)]
    return pd.DataFrame({name: plain.coords[name].values for name in names})


def trial_array(assembly: xr.DataArray) -> TrialData:
    """Reshape a (presentation, neuroid[, time_bin]) assembly into ``[repetition, stimulus, neuroid, bin]``.

    Bins are sorted by start (the data with them). Raises :class:`UserError` naming duplicates when a
    (stimulus_id, repetition) pair occurs twice, and naming bins that are empty, duplicated or overlap. Absent
    (stimulus, repetition) pairs become NaN; the NaN count is logged and returned. :func:`check_trials` says
    whether the result can be scored.
    """
    if "presentation" not in assembly.dims or "neuroid" not in assembly.dims:
        raise UserError(f"expected dims presentation, neuroid(, time_bin); got {assembly.dims}")
    pres = _coord_frame(assembly, "presentation")
    if "stimulus_id" not in pres.columns:
        if "image_id" in pres.columns:
            pres["stimulus_id"] = pres["image_id"]
        else:
            raise UserError("assembly needs a 'stimulus_id' coordinate on presentation")
    neur = _coord_frame(assembly, "neuroid")
    has_time = "time_bin" in assembly.dims
    order = ["presentation", "neuroid"] + (["time_bin"] if has_time else [])
    values = np.asarray(assembly.transpose(*order).values)
    if not has_time:
        values = values[..., None]
        bins = None
    else:
        tb = _coord_frame(assembly, "time_bin")
        if {"time_bin_start", "time_bin_end"} <= set(tb.columns):
            starts, ends = tb["time_bin_start"].to_numpy(), tb["time_bin_end"].to_numpy()
            sort = check_time_bins(starts, ends)
            values = values[..., sort]
            bins = np.stack([starts[sort], ends[sort]], axis=1)
        else:
            bins = None
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    stim_codes, stimulus_ids = pd.factorize(pres["stimulus_id"].astype(str), sort=True)
    if "repetition" in pres.columns:
        rep_codes, _ = pd.factorize(pres["repetition"], sort=True)
    else:
        rep_codes = pres.groupby(stim_codes).cumcount().to_numpy()
    pairs = pd.Series(list(zip(stim_codes, rep_codes, strict=True)))
    dup = pairs.duplicated()
    if dup.any():
        bad = [(str(stimulus_ids[s]), int(r)) for s, r in pairs[dup].unique()]
        raise UserError(f"(stimulus_id, repetition) pairs occur more than once: {preview(bad)}")
    n_rep, n_stim = int(rep_codes.max()) + 1, len(stimulus_ids)
    trials = np.full((n_rep, n_stim) + values.shape[1:], np.nan, dtype=values.dtype)
    trials[rep_codes, stim_codes] = values
    n_missing = int(np.isnan(trials).sum())
    if n_missing:
        logger.info("%d missing trial values (NaN); averaged out with a NaN-mean", n_missing)
    first = pd.Series(np.arange(len(pres))).groupby(stim_codes).first().to_numpy()
    stim_cols = [c for c in pres.columns if c != "repetition" and
                 pres.groupby(stim_codes)[c].nunique(dropna=False).max() <= 1]
    stimuli = pres.iloc[first][stim_cols].reset_index(drop=True)
    stimuli["stimulus_id"] = np.asarray(stimulus_ids)
    return TrialData(
        trials=trials,
        stimulus_ids=np.asarray(stimulus_ids),
        stimuli=stimuli,
        neuroids=neur,
        bins=bins,
        n_missing=n_missing,
    )


def check_trials(td: TrialData, *, min_repetitions: int = 2) -> None:
    """Raise :class:`UserError` unless ``td`` can be scored: what scoring would find only after the model ran.

    * At least ``min_repetitions`` (2) repetitions, and at least two stimuli with two repetitions each: split-half
      ceilings correlate the averages of two halves of the repetitions across stimuli.
    * Every (stimulus, neuroid, bin) has at least one valid (non-NaN) trial: the map's target is the trial average.

    Why here: ``fit_neural.py`` calls it right after loading the data, before the model runs (minutes on a real set).
    """
    n_rep, n_stim = td.trials.shape[:2]
    if n_rep < min_repetitions:
        raise UserError(f"split-half ceilings need at least {min_repetitions} repetitions per stimulus; the data "
                        f"have {n_rep} (repetitions come from a 'repetition' coordinate, or from a stimulus_id "
                        "presented more than once)")
    present = np.zeros((n_rep, n_stim), dtype=bool)  # a repetition of a stimulus with any valid value
    empty = np.zeros(td.trials.shape[1:], dtype=bool)  # [S, N, B]: no valid trial
    for b in range(td.trials.shape[-1]):  # bin by bin: temporaries stay at [reps, stimuli, neuroids]
        valid = ~np.isnan(td.trials[..., b])
        present |= valid.any(axis=2)
        empty[..., b] = ~valid.any(axis=0)
    repeated = int((present.sum(axis=0) >= min_repetitions).sum())
    if repeated < 2:
        raise UserError(f"only {repeated} stimulus/stimuli have {min_repetitions} or more repetitions with data; "
                        "split-half ceilings need at least two")
    if empty.any():
        where = np.argwhere(empty)
        ids = td.neuroids["neuroid_id"].astype(str).to_numpy() if "neuroid_id" in td.neuroids.columns else None
        examples = []
        for s, n, b in where[:5]:
            neuroid = ids[n] if ids is not None else f"#{n}"
            bin_ = f"{plain_number(td.bins[b, 0])}-{plain_number(td.bins[b, 1])} ms" if td.bins is not None else f"#{b}"
            examples.append(f"(stimulus {td.stimulus_ids[s]!r}, neuroid {neuroid!r}, bin {bin_})")
        stimuli = np.unique(where[:, 0])
        raise UserError(f"{len(where)} (stimulus, neuroid, bin) entries have no valid trial (every repetition is "
                        f"NaN or absent), in {len(stimuli)} stimuli, e.g. {', '.join(examples)}; the trial average "
                        "there is undefined: drop those stimuli or neuroids, or fill the trials")


def average_repetitions(assembly: xr.DataArray) -> xr.DataArray:
    """NaN-mean over repetitions: one presentation per stimulus (stimulus-level coords kept).

    The number of missing trial values is logged and stored in ``attrs["n_missing_trials"]``.
    """
    td = trial_array(assembly)
    mean = td.mean()
    coords: dict[str, Any] = {c: ("presentation", td.stimuli[c].to_numpy()) for c in td.stimuli.columns}
    coords.update({c: ("neuroid", td.neuroids[c].to_numpy()) for c in td.neuroids.columns})
    dims = ["presentation", "neuroid", "time_bin"]
    if "time_bin" in assembly.dims:
        if td.bins is not None:
            coords["time_bin_start"] = ("time_bin", td.bins[:, 0])
            coords["time_bin_end"] = ("time_bin", td.bins[:, 1])
    else:
        mean = mean[..., 0]
        dims = dims[:2]
    attrs = {k: v for k, v in assembly.attrs.items()}
    attrs["n_missing_trials"] = td.n_missing
    return gather_indexes(xr.DataArray(mean, dims=dims, coords=coords, attrs=attrs))
