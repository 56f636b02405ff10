"""Correlations, split-half ceilings and noise-corrected scores.

Two conventions are implemented (``docs/neural.md``, "Splits, ceilings, scores"):

* **Brain-Score**: raw score R = mean over splits of the median over neuroids of Pearson r; ceiling c =
  split-half internal consistency (Spearman-Brown corrected, median over neuroids, mean over 10 repetition
  splits). The normalisation has changed over the years, so all three are available and R, c and the formula are
  kept: ``R/c`` (2018), ``(R/c)^2`` (2019-2025), ``R^2/c`` (since Jan 2026, default here because it is ~1 for a
  model that predicts the reliable part of the response perfectly).
* **Nayebi / brainmodel_utils**: per neuron ``r_xy / sqrt(SB(r_xx) SB(r_yy))`` with maps refit on trial
  split-halves (:func:`nayebi_consistency`).

Everything is vectorised over neuroids and time bins and NaN-safe (NaN = missing value, dropped pairwise).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .splits import Split, repetition_splits

__all__ = [
    "CEILING_MISSING",
    "CONVENTIONS",
    "CeilingResult",
    "NayebiResult",
    "nayebi_consistency",
    "neuron_median",
    "noise_correct",
    "pearson_r",
    "split_half_ceiling",
    "spearman_brown",
]

#: Noise-correction conventions: name -> formula (R = raw score, c = ceiling).
CONVENTIONS: dict[str, str] = {
    "r2_over_c": "R**2 / c",
    "r_over_c_squared": "(R / c)**2",
    "r_over_c": "R / c",
}

#: What a split-half ceiling does where a stimulus has no trial in one half (missing trials), per neuroid and bin:
#: ``drop_neuroid`` (Brain-Score: that neuroid's r is NaN for the split, so the median over neuroids skips it) or
#: ``drop_stimulus`` (correlate the halves over the stimuli present in both; the neuroid stays in the median).
CEILING_MISSING: dict[str, str] = {
    "drop_neuroid": "a neuroid with a stimulus missing from a half gets r = NaN for that split (Brain-Score)",
    "drop_stimulus": "a stimulus missing from a half is left out of that neuroid's correlation",
}


def pearson_r(x: Any, y: Any, axis: int = 0) -> np.ndarray:
    """Pearson r between ``x`` and ``y`` along ``axis`` (e.g. stimuli), for every other index at once.

    NaN-safe: a sample is used only where both ``x`` and ``y`` are finite. Returns NaN where fewer than two
    samples remain or either side is constant.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x, y = np.broadcast_arrays(x, y)
    valid = np.isfinite(x) & np.isfinite(y)
    n = valid.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        xs = np.where(valid, x, 0.0)
        ys = np.where(valid, y, 0.0)
        mx = xs.sum(axis=axis, keepdims=True) / n
        my = ys.sum(axis=axis, keepdims=True) / n
        xc = np.where(valid, x - mx, 0.0)
        yc = np.where(valid, y - my, 0.0)
        num = (xc * yc).sum(axis=axis)
        den = np.sqrt((xc * xc).sum(axis=axis) * (yc * yc).sum(axis=axis))
        r = num / den
    n = np.squeeze(n, axis=axis)
    return np.where((n >= 2) & (den > 0), r, np.nan)


def spearman_brown(r: Any, n: float = 2.0) -> np.ndarray:
    """Spearman-Brown prophecy ``n r / (1 + (n - 1) r)``: reliability of n-times longer data (n=2: halves)."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return n * r / (1.0 + (n - 1.0) * r)


def neuron_median(values: Any, axis: int = -1) -> np.ndarray:
    """Median over neurons ignoring NaN (as xarray's ``median`` does); NaN when all are NaN."""
    values = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def noise_correct(raw: Any, ceiling: Any, convention: str = "r2_over_c") -> np.ndarray:
    """Normalise raw scores by the ceiling with one of :data:`CONVENTIONS`."""
    raw = np.asarray(raw, dtype=np.float64)
    ceiling = np.asarray(ceiling, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if convention == "r2_over_c":
            return raw**2 / ceiling
        if convention == "r_over_c_squared":
            return (raw / ceiling) ** 2
        if convention == "r_over_c":
            return raw / ceiling
    raise ValueError(f"unknown convention {convention!r}; choose from {sorted(CONVENTIONS)}")


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


@dataclass
class CeilingResult:
    """Split-half internal consistency. ``per_split_neuroid[split, neuroid, bin]`` are Spearman-Brown corrected
    half-vs-half correlations; everything else is derived from it."""

    per_split_neuroid: np.ndarray

    @property
    def neuroid(self) -> np.ndarray:
        """Per-neuroid ceiling ``[N, B]``: mean over splits."""
        return _nanmean(self.per_split_neuroid, axis=0)

    def per_split(self, neuroids: Any = None) -> np.ndarray:
        """Median over (selected) neuroids for each split: ``[splits, B]``."""
        values = self.per_split_neuroid if neuroids is None else self.per_split_neuroid[:, neuroids]
        return neuron_median(values, axis=1)

    def ceiling(self, neuroids: Any = None) -> np.ndarray:
        """Brain-Score ceiling per bin ``[B]``: median over neuroids, then mean over splits."""
        return self.per_split(neuroids).mean(axis=0)


def split_half_ceiling(
    trials: Any,
    *,
    n_splits: int = 10,
    random_state: int = 1,
    splits: Sequence[Split] | None = None,
    missing: str = "drop_neuroid",
) -> CeilingResult:
    """Brain-Score's ``InternalConsistency`` on ``trials[repetition, stimulus, neuroid(, bin)]``.

    For each of ``n_splits`` random halves of the repetitions (``ShuffleSplit(train_size=0.5, random_state)``),
    average each half over its repetitions (NaN-mean), correlate the halves across stimuli per neuroid and bin,
    and apply Spearman-Brown (n=2). ``missing`` (:data:`CEILING_MISSING`) decides what a half-average that is NaN
    (no trial of that stimulus in the half) does: ``drop_neuroid`` (Brain-Score's rule: NaN for that neuroid,
    skipped by the median) or ``drop_stimulus`` (that stimulus is left out of the neuroid's correlation).
    Raises ``ValueError`` with fewer than 2 repetitions.
    """
    if missing not in CEILING_MISSING:
        raise ValueError(f"unknown missing-trial rule {missing!r}; choose from {sorted(CEILING_MISSING)}")
    trials = np.asarray(trials)
    if trials.ndim == 3:
        trials = trials[..., None]
    if trials.ndim != 4:
        raise ValueError(f"trials must be [repetition, stimulus, neuroid(, bin)], got shape {trials.shape}")
    if splits is None:
        splits = repetition_splits(trials.shape[0], n_splits=n_splits, random_state=random_state)
    out = np.empty((len(splits),) + trials.shape[2:])
    for b in range(trials.shape[-1]):  # one bin at a time: temporaries stay at [reps, stimuli, neuroids]
        per_bin = trials[..., b].astype(np.float64)
        for i, (half_a, half_b) in enumerate(splits):
            a = _nanmean(per_bin[half_a], axis=0)
            c = _nanmean(per_bin[half_b], axis=0)
            r = pearson_r(a, c, axis=0)
            if missing == "drop_neuroid":
                r[~(np.isfinite(a) & np.isfinite(c)).all(axis=0)] = np.nan
            out[i, :, b] = spearman_brown(r)
    return CeilingResult(per_split_neuroid=out)


# ----------------------------------------------------------------------------------------------------------------
# brainmodel_utils noise-corrected consistency


@dataclass
class NayebiResult:
    """Per (seed, split, neuron) components of ``r_xy_n_sb``. Seeds whose half-averages contain NaN are skipped
    (as ``brainmodel_utils`` does); ``seeds`` lists those used."""

    seeds: np.ndarray
    r_xy: np.ndarray
    r_xx: np.ndarray
    r_yy: np.ndarray

    @property
    def r_xx_sb(self) -> np.ndarray:
        return spearman_brown(self.r_xx)

    @property
    def r_yy_sb(self) -> np.ndarray:
        return spearman_brown(self.r_yy)

    @property
    def r_xy_n_sb(self) -> np.ndarray:
        """``r_xy / sqrt(SB(r_xx) SB(r_yy))`` per (seed, split, neuron); NaN where the product is negative."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.r_xy / np.sqrt(self.r_xx_sb * self.r_yy_sb)

    def neuron_scores(self) -> np.ndarray:
        """Mean over seeds, then over splits: one value per neuron."""
        return _nanmean(_nanmean(self.r_xy_n_sb, axis=0), axis=0)

    def score(self) -> float:
        """Median over neurons of :meth:`neuron_scores` (brainmodel_utils' aggregation)."""
        return float(neuron_median(self.neuron_scores()))


def _half_means(trials: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """brainmodel_utils' trial split: shuffle indices with RandomState(seed), first floor(R/2) vs the rest."""
    order = list(range(trials.shape[0]))
    np.random.RandomState(seed=seed).shuffle(order)
    half = trials.shape[0] // 2
    return _nanmean(trials[order[:half]], axis=0), _nanmean(trials[order[half:]], axis=0)


def nayebi_consistency(
    source: Any,
    target_trials: Any,
    fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    splits: Sequence[Split],
    *,
    n_seeds: int = 20,
    start_seed: int = 1234,
) -> NayebiResult:
    """Noise-corrected consistency r̃ of ``brainmodel_utils`` (``get_linregress_consistency``).

    ``source``: model features ``[stimuli, units]`` (deterministic, so both halves are the features) or neural
    trials ``[trials, stimuli, units]``. ``target_trials``: ``[trials, stimuli, neurons]``.
    ``fit_predict(X_train, Y_train, X_test) -> Y_test_hat`` fits a fresh map. For each seed and split, maps are fit
    on the full trial averages (X->Y) and on each half (X1->Y1, X2->Y2); on the test stimuli
    ``r_xy = r(Ŷ, Y)``, ``r_xx = r(Ŷ1, Ŷ2)``, ``r_yy = r(Y1, Y2)``. brainmodel_utils uses 1000 seeds; the default
    here is 20 for speed. Raises ``ValueError`` with fewer than 2 trials.
    """
    target = np.asarray(target_trials, dtype=np.float64)
    if target.ndim != 3:
        raise ValueError(f"target_trials must be [trials, stimuli, neurons], got shape {target.shape}")
    if target.shape[0] < 2:
        raise ValueError(f"split halves need at least 2 trials, got {target.shape[0]}")
    src = np.asarray(source, dtype=np.float64)
    deterministic = src.ndim == 2
    X = src if deterministic else _nanmean(src, axis=0)
    Y = _nanmean(target, axis=0)
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("trial-averaged source/target contain NaN (a stimulus without any valid trial)")
    full_pred = [fit_predict(X[s.train], Y[s.train], X[s.test]) for s in splits]
    used, r_xy, r_xx, r_yy = [], [], [], []
    for seed in range(start_seed, start_seed + n_seeds):
        X1, X2 = (X, X) if deterministic else _half_means(src, seed)
        Y1, Y2 = _half_means(target, seed)
        if not (np.isfinite(X1).all() and np.isfinite(X2).all() and np.isfinite(Y1).all() and np.isfinite(Y2).all()):
            continue
        rows_xy, rows_xx, rows_yy = [], [], []
        for s, pred in zip(splits, full_pred, strict=True):
            p1 = fit_predict(X1[s.train], Y1[s.train], X1[s.test])
            p2 = fit_predict(X2[s.train], Y2[s.train], X2[s.test])
            rows_xy.append(pearson_r(pred, Y[s.test]))
            rows_xx.append(pearson_r(p1, p2))
            rows_yy.append(pearson_r(Y1[s.test], Y2[s.test]))
        used.append(seed)
        r_xy.append(rows_xy)
        r_xx.append(rows_xx)
        r_yy.append(rows_yy)
    if not used:
        raise ValueError("every split-half seed had NaN half-averages; cannot compute the consistency")
    return NayebiResult(seeds=np.asarray(used), r_xy=np.asarray(r_xy), r_xx=np.asarray(r_xx), r_yy=np.asarray(r_yy))
