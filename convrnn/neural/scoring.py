"""Score model features against time-binned neural data: areas x layers x bins, then the best layer per area.

Pipeline (one call to :func:`score_model`):

1. The assembly becomes a dense ``[repetition, stimulus, neuroid, bin]`` array (NaN = missing trial); targets
   are NaN-means over repetitions.
2. Ceilings per area and bin: Brain-Score's split-half internal consistency (:func:`split_half_ceiling`).
3. For every layer and bin, the features of the model step matched to that bin are read once from the
   :class:`FeatureSource`. With more features than training stimuli, one Gram matrix over all stimuli is
   computed and serves every split (:class:`convrnn.neural.mapping.SplitGram`); the kernel-PLS fits of all
   splits x areas (x ``bins_per_batch`` bins) run as one batch (:func:`convrnn.neural.mapping.pls_kernel`), so
   each PLS component costs one product with the Gram for all of them. With fewer features than training
   stimuli the primal PLS runs on the rows. RidgeCV uses one eigendecomposition per split for all areas.
4. Per split, Pearson r per neuroid on the test stimuli; per area the median over its neuroids; the mean over
   splits is the raw score R. The noise-corrected score uses R, the ceiling c and a chosen convention.
5. The best layer per area maximises the bin-averaged raw score on separate *selection* splits
   (:func:`convrnn.neural.splits.selection_splits`), so the choice does not reuse the evaluation test sets.

**Model step <-> time bin.** Default: step ``t`` covers ``[10 t, 10 t + 10)`` ms, so a bin starting at ``s`` ms is
matched to step ``s // step_ms + offset`` with ``step_ms=10`` and ``offset=0`` (option (a) in ``docs/neural.md``;
the 70-260 ms bins use steps 7-25 of the 26-step neural presentation). ``offset`` shifts all bins by whole steps;
``steps`` gives an explicit step per bin (e.g. for onset-relative mappings, option (b)).

**One map per bin or one shared map.** ``mapping="per_bin"`` (default) fits one map per bin from that bin's step.
``mapping="shared"`` fits one map per layer on presentation x bin stacked samples and scores each bin with it
(Brain-Score's temporal benchmarks); it holds all bins' features of a layer in memory, so it is meant for modest
feature sizes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .assembly import TrialData, check_trials, trial_array
from .features import ArrayFeatures, FeatureSource, MemmapFeatures
from .gram import SplitGram, center_gram, gram
from .metrics import CEILING_MISSING, CONVENTIONS, noise_correct, pearson_r, split_half_ceiling
from .pls import ConstantFeaturesWarning, PLSRegression, pls_kernel, pls_primal
from .ridge import NAYEBI_RIDGE_ALPHAS, RidgeCV, ridge_cv_kernel
from .splits import Split, make_splits, selection_splits
from .tensors import resolve_device, to_tensor

__all__ = [
    "DEFAULT_MIN_CEILING",
    "NAYEBI_AREAS",
    "ArrayFeatures",
    "FeatureSource",
    "MemmapFeatures",
    "ScoringResult",
    "area_masks",
    "default_bin_steps",
    "pick_best_layers",
    "score_model",
    "time_average",
]

logger = logging.getLogger(__name__)

#: Nayebi's grouping: V4, pIT, and cIT+aIT pooled. Values select neuroids by coordinate.
NAYEBI_AREAS: dict[str, dict[str, Any]] = {
    "V4": {"region": "V4"},
    "pIT": {"subregion": "pIT"},
    "cIT/aIT": {"subregion": ["cIT", "aIT"]},
}

#: Time averages of noise-corrected scores use only bins whose area ceiling is at least this (``fit_neural.py
#: --min-ceiling``). Why: before the response starts the ceiling is ~0 and R**2/c is unbounded.
DEFAULT_MIN_CEILING = 0.2
#: Columns of :func:`time_average`'s table (after ``area``, ``layer``).
TIME_AVERAGE_COLUMNS = ["n_bins", "n_ceiled_bins", "mean_score_ceiled_bins", "mean_raw_r_ceiled_bins",
                        "mean_ceiling_ceiled_bins", "mean_raw_r_all_bins", "convention", "min_ceiling"]


# ----------------------------------------------------------------------------------------------------------------
# results


@dataclass
class ScoringResult:
    """Tables from :func:`score_model`.

    * ``scores``: one row per (area, layer, bin): ``bin`` (start ms), ``bin_end``, ``step``, ``raw_r`` (mean over
      splits of the median-over-neuroids r), ``raw_r_std``/``raw_r_sem`` (over splits, ddof=0 as Brain-Score),
      ``n_splits``, ``ceiling``, ``score``, ``convention``, ``formula``.
    * ``time_averaged``: per (area, layer) means over bins (:func:`time_average`): the signed score, raw r and
      ceiling over the bins whose ceiling is at least ``min_ceiling`` (``*_ceiled_bins``), raw r over all bins.
    * ``best_layers``: per area the layer with the highest ``selection_raw_r`` and its time averages.
    * ``selection``: per (area, layer) the bin-averaged raw score on the selection splits.
    * ``ceilings``: per (area, bin) the ceiling and its std over repetition splits.
    * ``neuroid_r``: Pearson r per (layer, bin, split, neuroid) on the evaluation splits.
    """

    scores: pd.DataFrame
    time_averaged: pd.DataFrame
    best_layers: pd.DataFrame
    selection: pd.DataFrame
    ceilings: pd.DataFrame
    neuroid_r: xr.DataArray
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# helpers


def default_bin_steps(bins: np.ndarray, *, step_ms: float = 10.0, offset: int = 0) -> list[int]:
    """Model step for each bin: ``floor(start / step_ms) + offset`` (step t <-> [t*step_ms, (t+1)*step_ms))."""
    return [int(np.floor(start / step_ms)) + int(offset) for start in np.asarray(bins)[:, 0]]


def time_average(scores: pd.DataFrame, min_ceiling: float = DEFAULT_MIN_CEILING) -> pd.DataFrame:
    """Per (area, layer) averages over bins of a per-bin ``scores`` table (columns area, layer, raw_r, ceiling,
    score, convention), in the table's order.

    * ``mean_score_ceiled_bins``: mean of ``sign(raw_r) * |score|`` over the bins whose ceiling is >= ``min_ceiling``
      (``n_ceiled_bins`` of them). Why both: where the ceiling is ~0 (before the response starts) R**2/c is
      unbounded (R = 0.018, c = -0.0009 gives -0.35), and R**2/c or (R/c)**2 turn a negative r into a positive
      score; so R**2/c becomes sign(R) R**2/c here (R/c keeps its sign anyway).
    * ``mean_raw_r_ceiled_bins``, ``mean_ceiling_ceiled_bins``: raw r and ceiling over the same bins.
    * ``mean_raw_r_all_bins`` (over the ``n_bins`` bins with a finite r): raw r is bounded, so it needs no ceiling.
    NaN where no bin qualifies.
    """
    rows = []
    if scores.empty:  # no layer scored
        return pd.DataFrame(rows, columns=["area", "layer", *TIME_AVERAGE_COLUMNS])
    for (area, layer), group in scores.groupby(["area", "layer"], sort=False):
        raw = group["raw_r"].to_numpy(dtype=np.float64)
        ceiling = group["ceiling"].to_numpy(dtype=np.float64)
        signed = np.sign(raw) * np.abs(group["score"].to_numpy(dtype=np.float64))
        with np.errstate(invalid="ignore"):
            ceiled = np.isfinite(ceiling) & (ceiling >= min_ceiling) & np.isfinite(raw)

        def mean(values: np.ndarray, where: np.ndarray) -> float:
            return float(values[where].mean()) if where.any() else np.nan

        rows.append(dict(area=area, layer=layer, n_bins=int(np.isfinite(raw).sum()), n_ceiled_bins=int(ceiled.sum()),
                         mean_score_ceiled_bins=mean(signed, ceiled), mean_raw_r_ceiled_bins=mean(raw, ceiled),
                         mean_ceiling_ceiled_bins=mean(ceiling, ceiled),
                         mean_raw_r_all_bins=mean(raw, np.isfinite(raw)),
                         convention=group["convention"].iloc[0], min_ceiling=float(min_ceiling)))
    return pd.DataFrame(rows, columns=["area", "layer", *TIME_AVERAGE_COLUMNS])


def pick_best_layers(time_averaged: pd.DataFrame, selection: pd.DataFrame, areas: Sequence[str]) -> pd.DataFrame:
    """Per area the layer with the highest ``selection_raw_r`` and its :func:`time_average` row.

    Areas without a finite selection score are left out.
    """
    rows = []
    for area in areas:
        sel = selection[selection["area"] == area]
        if sel.empty or not np.isfinite(sel["selection_raw_r"]).any():
            continue
        pick = sel.loc[sel["selection_raw_r"].idxmax()]
        ta = time_averaged[(time_averaged["area"] == area) & (time_averaged["layer"] == pick["layer"])].iloc[0]
        rows.append(dict(area=area, layer=pick["layer"], selection_raw_r=pick["selection_raw_r"],
                         **{c: ta[c] for c in TIME_AVERAGE_COLUMNS}))
    return pd.DataFrame(rows, columns=["area", "layer", "selection_raw_r", *TIME_AVERAGE_COLUMNS])


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


def _feature_rows(source: FeatureSource, stimulus_ids: np.ndarray) -> np.ndarray:
    lookup = {sid: i for i, sid in enumerate(map(str, source.stimulus_ids))}
    missing = [s for s in stimulus_ids if s not in lookup]
    if missing:
        shown = ", ".join(repr(s) for s in missing[:10])
        raise KeyError(f"{len(missing)} stimulus ids of the assembly have no model features: [{shown}"
                       f"{', ...' if len(missing) > 10 else ''}]")
    return np.asarray([lookup[s] for s in stimulus_ids], dtype=np.int64)


def _take_rows(X: Any, rows: np.ndarray) -> Any:
    if len(rows) == X.shape[0] and np.array_equal(rows, np.arange(len(rows))):
        return X
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(rows, device=X.device)]
    return np.asarray(X[rows])


def _batches(splits: Sequence[Split], max_batch: int) -> list[list[int]]:
    """Group split indices with equal train/test sizes into batches of at most ``max_batch``."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(splits):
        groups.setdefault((len(s.train), len(s.test)), []).append(i)
    out = []
    for members in groups.values():
        for start in range(0, len(members), max_batch):
            out.append(members[start:start + max_batch])
    return out


@dataclass
class _Fitter:
    """Fits for one (layer, bin): given features for all stimuli, returns r per (split, neuroid)."""

    regression: str | Callable[[], Any]
    n_components: int
    ridge_alphas: np.ndarray
    ridge_cv: int | None
    device: torch.device
    dtype: torch.dtype
    gram_dtype: torch.dtype
    max_batch: int | None

    def _batch_size(self, bytes_per_split: int) -> int:
        """Splits per batch within a memory budget (1.5 GB on CPU, 4 GB on accelerators) unless fixed."""
        if self.max_batch is not None:
            return max(1, int(self.max_batch))
        budget = 1.5e9 if self.device.type == "cpu" else 4e9
        return int(max(1, min(64, budget // max(bytes_per_split, 1))))

    def run(self, Xs: Sequence[Any], Y: np.ndarray, splits: Sequence[Split],
            areas: Mapping[str, np.ndarray]) -> np.ndarray:
        """Features ``Xs[g]`` [S, p] (all stimuli) for G bins and targets ``Y`` [S, N, G]; returns Pearson r
        [G, splits, N] (NaN for neuroids outside the areas). Kernel-PLS fits of all G bins, all splits and all
        areas run as one batch."""
        G = len(Xs)
        r = np.full((G, len(splits), Y.shape[1]), np.nan)
        if callable(self.regression):
            for g, X in enumerate(Xs):
                self._run_estimator(X, Y[..., g], splits, areas, r[g])
            return r
        if self.regression not in ("pls", "ridgecv"):
            raise ValueError(f"unknown regression {self.regression!r}; use 'pls', 'ridgecv' or a factory")
        p = Xs[0].shape[1]
        n_train_max = max(len(s.train) for s in splits)
        if self.regression == "pls" and self.n_components > min(n_train_max, p):
            raise ValueError(f"n_components={self.n_components} exceeds min(n_train, n_features)="
                             f"{min(n_train_max, p)}")
        kernel = self.regression == "ridgecv" or p > n_train_max
        cols = [np.flatnonzero(m) for m in areas.values()]
        if not (kernel and self.regression == "pls"):
            for g, X in enumerate(Xs):
                self._run_single(X, Y[..., g], splits, cols, kernel, r[g])
            return r
        all_cols = np.concatenate(cols)
        bounds = np.cumsum([0] + [len(c) for c in cols])
        parts = [slice(bounds[a], bounds[a + 1]) for a in range(len(cols))]
        Yt = torch.as_tensor(Y[:, all_cols], device=self.device, dtype=self.dtype).permute(2, 0, 1)  # [G, S, q]
        K = torch.stack([gram(X, center=True, device=self.device, dtype=self.gram_dtype, out_dtype=self.dtype)
                         for X in Xs])
        per_split = 8 * Y.shape[0] * len(all_cols) * G * (torch.finfo(self.dtype).bits // 8)
        for batch in _batches(splits, self._batch_size(per_split)):
            # all areas x splits x bins in the batch share one product with the bins' Grams per component
            kop = SplitGram(K, [splits[i].train for i in batch])
            Yc, KYc = kop.train_products(Yt)
            fit = pls_kernel(kop, [Yc[..., sl] for sl in parts], self.n_components, KY=[KYc[..., sl] for sl in parts])
            preds = kop.cross([splits[i].test for i in batch], torch.cat(fit.dual, -1))
            preds = preds.reshape(G, len(batch), *preds.shape[1:])
            y_mean = torch.stack([Yt[:, splits[i].train].mean(1) for i in batch], 1).unsqueeze(2)  # [G, B, 1, q]
            preds = (preds + y_mean).detach().cpu().numpy()
            for j, i in enumerate(batch):
                test_y = Y[splits[i].test][:, all_cols]
                for g in range(G):
                    r_all = pearson_r(preds[g, j], test_y[..., g], axis=0)
                    for c, sl in zip(cols, parts, strict=True):
                        r[g, i, c] = r_all[sl]
        return r

    def _run_single(self, X: Any, Y: np.ndarray, splits: Sequence[Split], cols: Sequence[np.ndarray],
                    kernel: bool, r: np.ndarray) -> None:
        """Ridge (kernel form, explicit per-split Grams) or primal PLS for one bin; fills r [splits, N]."""
        Yt = torch.as_tensor(Y, device=self.device, dtype=self.dtype)
        itemsize = torch.finfo(self.dtype).bits // 8
        if kernel:
            K = gram(X, center=True, device=self.device, dtype=self.gram_dtype, out_dtype=self.dtype)
            per_split = 3 * max(len(s.train) for s in splits) ** 2 * itemsize
        else:
            Xt = to_tensor(X, self.device, self.dtype)
            per_split = 2 * Xt.numel() * itemsize
        for batch in _batches(splits, self._batch_size(per_split)):
            tests = [splits[i].test for i in batch]
            if kernel:
                pairs = [center_gram(K, splits[i].train, splits[i].test) for i in batch]
                Ktr = torch.stack([a for a, _ in pairs])
                Kte = torch.stack([b for _, b in pairs])
                del pairs
                pred_by_area = self._ridge(Ktr, Kte, Yt, [splits[i].train for i in batch], cols)
            else:
                trs = [torch.as_tensor(splits[i].train, device=self.device) for i in batch]
                tes = [torch.as_tensor(t, device=self.device) for t in tests]
                means = [Xt[tr].mean(0) for tr in trs]
                Xtr = torch.stack([Xt[tr] - m for tr, m in zip(trs, means, strict=True)])
                Xte = torch.stack([Xt[te] - m for te, m in zip(tes, means, strict=True)])
                pred_by_area = []
                for c in cols:
                    Ytr = torch.stack([Yt[tr][:, c] for tr in trs])
                    y_mean = Ytr.mean(1, keepdim=True)
                    fit = pls_primal(Xtr, Ytr - y_mean, self.n_components)
                    pred_by_area.append(Xte @ fit.coef + y_mean)
            for a, c in enumerate(cols):
                pred_np = pred_by_area[a].detach().cpu().numpy()
                for j, i in enumerate(batch):
                    r[i, c] = pearson_r(pred_np[j], Y[splits[i].test][:, c], axis=0)

    def _ridge(self, Ktr: torch.Tensor, Kte: torch.Tensor, Yt: torch.Tensor, trains: Sequence[np.ndarray],
               cols: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """RidgeCV per split. Alpha is chosen per target, so all areas' neuroids are one call: the split's
        eigendecomposition (and each inner fold's) serves every area."""
        alphas = torch.as_tensor(self.ridge_alphas, device=self.device, dtype=self.dtype)
        all_cols = np.concatenate(cols)
        bounds = np.cumsum([0] + [len(c) for c in cols])
        preds = []
        for j, tr in enumerate(trains):
            y = Yt[torch.as_tensor(tr, device=self.device)][:, all_cols]
            dual, _, _ = ridge_cv_kernel(Ktr[j], y, alphas, self.ridge_cv)
            preds.append(Kte[j] @ dual + y.mean(0))
        stacked = torch.stack(preds)
        return [stacked[..., bounds[a]:bounds[a + 1]] for a in range(len(cols))]

    def _run_estimator(self, X: Any, Y: np.ndarray, splits: Sequence[Split], areas: Mapping[str, np.ndarray],
                       r: np.ndarray) -> np.ndarray:
        Xn = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        for i, s in enumerate(splits):
            for mask in areas.values():
                model = self.regression()
                model.fit(Xn[s.train], Y[s.train][:, mask])
                pred = np.asarray(model.predict(Xn[s.test]))
                r[i, mask] = pearson_r(pred, Y[s.test][:, mask], axis=0)
        return r


def _shared_fit(
    fitter: _Fitter, Xs: Sequence[Any], Y: np.ndarray, splits: Sequence[Split], areas: Mapping[str, np.ndarray]
) -> np.ndarray:
    """One map per split fit on (stimulus x bin) stacked rows; r per (bin, split, neuroid)."""
    n_bins = len(Xs)
    r = np.full((n_bins, len(splits), Y.shape[1]), np.nan)
    Xn = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in Xs]
    for i, s in enumerate(splits):
        X_stack = np.concatenate([x[s.train] for x in Xn], axis=0)
        for mask in areas.values():
            Y_stack = np.concatenate([Y[s.train][:, mask, b] for b in range(n_bins)], axis=0)
            if callable(fitter.regression):
                model = fitter.regression()
            elif fitter.regression == "pls":
                model = PLSRegression(fitter.n_components, device=fitter.device, dtype=fitter.dtype)
            else:
                model = RidgeCV(fitter.ridge_alphas, cv=fitter.ridge_cv, device=fitter.device, dtype=fitter.dtype)
            model.fit(X_stack, Y_stack)
            for b in range(n_bins):
                pred = np.asarray(model.predict(Xn[b][s.test]))
                r[b, i, mask] = pearson_r(pred, Y[s.test][:, mask, b], axis=0)
    return r


def _area_stats(r: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over the area's neuroids for each split: r [..., split, N] -> [..., split]."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(r[..., mask], axis=-1)


# ----------------------------------------------------------------------------------------------------------------
# main entry point


def score_model(
    features: FeatureSource,
    assembly: xr.DataArray | TrialData,
    *,
    layers: Sequence[str] | None = None,
    areas: Mapping[str, Mapping[str, Any]] | None = None,
    regression: str | Callable[[], Any] = "pls",
    n_components: int | Mapping[str, int] = 25,
    ridge_alphas: Sequence[float] | np.ndarray = NAYEBI_RIDGE_ALPHAS,
    ridge_cv: int | None = 5,
    mapping: str = "per_bin",
    split_scheme: str = "brainscore",
    stratify_by: str | None = "object_name",
    splits: Sequence[Split] | None = None,
    selection: Sequence[Split] | None = None,
    n_selection_splits: int = 2,
    offset: int = 0,
    step_ms: float = 10.0,
    steps: Sequence[int] | None = None,
    ceiling_splits: int = 10,
    ceiling_missing: str | None = None,
    convention: str = "r2_over_c",
    min_ceiling: float = DEFAULT_MIN_CEILING,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    gram_dtype: torch.dtype | str | None = None,
    max_batch: int | None = None,
    bins_per_batch: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ScoringResult:
    """Score every layer against every area and time bin; pick the best layer per area on selection splits.

    ``assembly``: (presentation, neuroid[, time_bin]) with ``stimulus_id`` (and ideally ``repetition``,
    ``object_name``) on presentation and area coordinates (``region``/``subregion``) on neuroid; or a
    :class:`TrialData`. ``areas`` maps an area name to ``{coord: value or values}`` (default: one area per
    ``region``; see :data:`NAYEBI_AREAS`). ``regression``: ``"pls"`` (sklearn-equivalent PLS, ``n_components``),
    ``"ridgecv"`` (per-target alpha over ``ridge_alphas``, ``ridge_cv`` folds or None = leave-one-out) or a
    factory returning an sklearn-style estimator. Splits default to ``split_scheme`` stratified by
    ``stratify_by``; selection splits to :func:`selection_splits` (``n_selection_splits``; 0 disables
    selection). ``ceiling_splits=0`` skips ceilings (e.g. single-trial data). ``ceiling_missing``: the ceiling's rule
    for missing trials (:data:`convrnn.neural.metrics.CEILING_MISSING`; default ``drop_neuroid``, Brain-Score's,
    with ``split_scheme="brainscore"`` and ``drop_stimulus`` with ``"nayebi"``). ``convention`` is one of
    :data:`CONVENTIONS`; time averages use the bins whose ceiling is >= ``min_ceiling`` (:func:`time_average`).
    ``gram_dtype`` (e.g. ``torch.float32``) speeds up the Gram products on CPU.
    Batching: kernel-PLS fits of all splits (up to ``max_batch``, default by a memory budget) and all areas run
    together; ``bins_per_batch`` bins of a layer are added to the same batch (default 1 on CPU, 4 on CUDA,
    where larger batches keep the device busy; each costs one n x n Gram in memory).
    ``n_components`` may map each layer to its own count (e.g. fewer for a layer with fewer units).
    ``progress(layer, done, total)`` is called after each layer (e.g. to drive a progress bar).
    PLS fits that stop early on features without stimulus variance (:class:`ConstantFeaturesWarning`) are counted
    per layer in ``info["constant_feature_warnings"]`` instead of being warned about one by one.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {sorted(CONVENTIONS)}")
    if mapping not in ("per_bin", "shared"):
        raise ValueError(f"mapping must be 'per_bin' or 'shared', got {mapping!r}")
    dev, dt = resolve_device(device, dtype)
    gdt = getattr(torch, gram_dtype) if isinstance(gram_dtype, str) else (gram_dtype or dt)
    if ceiling_missing is None:
        ceiling_missing = "drop_neuroid" if split_scheme == "brainscore" else "drop_stimulus"
    if ceiling_missing not in CEILING_MISSING:
        raise ValueError(f"unknown ceiling_missing {ceiling_missing!r}; choose from {sorted(CEILING_MISSING)}")
    td = assembly if isinstance(assembly, TrialData) else trial_array(assembly)
    check_trials(td, min_repetitions=2 if ceiling_splits > 0 else 1)
    Y = td.mean()  # [S, N, B]
    n_stim, n_neur, n_bins = Y.shape
    if steps is None:
        if td.bins is None:
            raise ValueError("the assembly has no time_bin_start/time_bin_end; pass steps=[step per bin]")
        steps = default_bin_steps(td.bins, step_ms=step_ms, offset=offset)
    steps = [int(s) for s in steps]
    if len(steps) != n_bins:
        raise ValueError(f"steps has {len(steps)} entries for {n_bins} bins")
    bins = td.bins if td.bins is not None else np.full((n_bins, 2), np.nan)
    masks = area_masks(td.neuroids, areas)
    strata = None
    if stratify_by is not None and stratify_by in td.stimuli.columns:
        strata = td.stimuli[stratify_by].astype(str).to_numpy()
    elif stratify_by is not None:
        logger.info("no %r coordinate: splits are not stratified", stratify_by)
    eval_splits = list(splits) if splits is not None else make_splits(n_stim, strata, scheme=split_scheme)
    sel_splits = list(selection) if selection is not None else (
        selection_splits(n_stim, strata, scheme=split_scheme, n_splits=n_selection_splits)
        if n_selection_splits > 0 else [])
    all_splits = eval_splits + sel_splits
    n_eval = len(eval_splits)
    rows = _feature_rows(features, td.stimulus_ids)
    layers = list(layers) if layers is not None else list(features.layers)
    components = {layer: int(n_components[layer] if isinstance(n_components, Mapping) else n_components)
                  for layer in layers}
    fitter = _Fitter(regression, 0, np.asarray(ridge_alphas, dtype=np.float64), ridge_cv, dev, dt, gdt, max_batch)
    per_batch = int(bins_per_batch) if bins_per_batch else (1 if dev.type == "cpu" else 4)

    # ceilings
    if ceiling_splits > 0:
        ceil = split_half_ceiling(td.trials, n_splits=ceiling_splits, missing=ceiling_missing)
        ceil_area = {a: ceil.per_split(m) for a, m in masks.items()}  # [splits, B]
    else:
        ceil_area = {a: np.full((1, n_bins), np.nan) for a in masks}

    r_all = np.full((len(layers), n_bins, len(all_splits), n_neur), np.nan)
    constant: dict[str, int] = {}
    for li, layer in enumerate(layers):
        layer_fitter = replace(fitter, n_components=components[layer])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            available = set(features.steps(layer))
            missing_bins = [b for b in range(n_bins) if steps[b] not in available]
            if missing_bins:
                logger.warning("layer %s has no features for steps %s (bins %s): NaN there", layer,
                               [steps[b] for b in missing_bins], missing_bins)
            if mapping == "per_bin":
                present = [b for b in range(n_bins) if b not in missing_bins]
                for start in range(0, len(present), per_batch):
                    group = present[start:start + per_batch]
                    Xs = [_take_rows(features.get(layer, steps[b]), rows) for b in group]
                    r_all[li, group] = layer_fitter.run(Xs, Y[:, :, group], all_splits, masks)
                    logger.debug("layer %s bins %s done", layer, group)
            else:
                present = [b for b in range(n_bins) if b not in missing_bins]
                Xs = [_take_rows(features.get(layer, steps[b]), rows) for b in present]
                r_all[li, present] = _shared_fit(layer_fitter, Xs, Y[:, :, present], all_splits, masks)
        n_constant = sum(issubclass(w.category, ConstantFeaturesWarning) for w in caught)
        if n_constant:
            constant[layer] = n_constant
        for w in caught:
            if not issubclass(w.category, ConstantFeaturesWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        logger.info("scored layer %s", layer)
        if progress is not None:
            progress(layer, li + 1, len(layers))

    return _tables(r_all, n_eval, layers, masks, bins, steps, ceil_area, convention, min_ceiling, td,
                   info=dict(offset=offset, step_ms=step_ms, steps=steps, mapping=mapping,
                             regression=regression if isinstance(regression, str) else repr(regression),
                             n_components=n_components if not isinstance(n_components, Mapping) else components,
                             constant_feature_warnings=constant, n_eval_splits=n_eval,
                             n_selection_splits=len(sel_splits),
                             ceiling_splits=ceiling_splits, ceiling_missing=ceiling_missing,
                             min_ceiling=min_ceiling, n_missing_trials=td.n_missing, bins_per_batch=per_batch,
                             device=str(dev), dtype=str(dt), gram_dtype=str(gdt)))


def _tables(
    r_all: np.ndarray,
    n_eval: int,
    layers: Sequence[str],
    masks: Mapping[str, np.ndarray],
    bins: np.ndarray,
    steps: Sequence[int],
    ceil_area: Mapping[str, np.ndarray],
    convention: str,
    min_ceiling: float,
    td: TrialData,
    info: dict[str, Any],
) -> ScoringResult:
    rows, sel_rows, ceil_rows = [], [], []
    n_bins = len(steps)
    for area, mask in masks.items():
        per_split_ceiling = ceil_area[area]
        c = per_split_ceiling.mean(0)
        for b in range(n_bins):
            ceil_rows.append(dict(area=area, bin=bins[b, 0], bin_end=bins[b, 1], ceiling=c[b],
                                  ceiling_std=per_split_ceiling[:, b].std(), n_neuroids=int(mask.sum())))
        for li, layer in enumerate(layers):
            split_med = _area_stats(r_all[li, :, :n_eval], mask)  # [B, splits]
            raw = split_med.mean(-1)
            std = split_med.std(-1)
            score = noise_correct(raw, c, convention)
            for b in range(n_bins):
                rows.append(dict(area=area, layer=layer, bin=bins[b, 0], bin_end=bins[b, 1], step=steps[b],
                                 raw_r=raw[b], raw_r_std=std[b], raw_r_sem=std[b] / np.sqrt(n_eval),
                                 n_splits=n_eval, ceiling=c[b], score=score[b], convention=convention,
                                 formula=CONVENTIONS[convention]))
            if r_all.shape[2] > n_eval:
                sel = _area_stats(r_all[li, :, n_eval:], mask).mean(-1)  # [B]
                sel_rows.append(dict(area=area, layer=layer,
                                     selection_raw_r=np.nanmean(sel) if np.isfinite(sel).any() else np.nan))
    scores = pd.DataFrame(rows)
    time_averaged = time_average(scores, min_ceiling)
    selection = pd.DataFrame(sel_rows, columns=["area", "layer", "selection_raw_r"])
    best_layers = pick_best_layers(time_averaged, selection, list(masks))
    neuroid_r = xr.DataArray(
        r_all[:, :, :n_eval], dims=["layer", "time_bin", "split", "neuroid"],
        coords={"layer": list(layers), "time_bin_start": ("time_bin", bins[:, 0]),
                "time_bin_end": ("time_bin", bins[:, 1]), "step": ("time_bin", list(steps)),
                **{c: ("neuroid", td.neuroids[c].to_numpy()) for c in td.neuroids.columns}},
    )
    return ScoringResult(scores=scores, time_averaged=time_averaged, best_layers=best_layers, selection=selection,
                         ceilings=pd.DataFrame(ceil_rows), neuroid_r=neuroid_r, info=info)
