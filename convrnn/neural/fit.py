"""The fit stage: for every layer x time bin, maps from model features to responses on every split, and Pearson r
on each split's test stimuli, as one labelled array ``r[layer, time_bin, split, neuroid]``.

With more features than training stimuli, one Gram matrix over all stimuli serves every split
(:class:`convrnn.neural.gram.SplitGram`) and the kernel-PLS fits of all splits x areas (x ``per_batch`` bins) run as
one batch (:func:`convrnn.neural.pls.pls_kernel`), so each PLS component costs one product with the Gram for all of
them. With fewer features than training stimuli the primal PLS runs on the rows. RidgeCV uses one
eigendecomposition per split for all areas. ``mapping="shared"`` fits one map per layer on (stimulus x bin) rows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .features import FeatureSource
from .gram import SplitGram, center_gram, gram
from .metrics import nayebi_consistency, pearson_r
from .pls import ConstantFeaturesWarning, pls_kernel, pls_primal
from .regression import make_estimator
from .ridge import ridge_cv_kernel
from .splits import Split
from .tensors import to_tensor

__all__ = ["feature_rows", "fit_layers", "fit_nayebi"]

logger = logging.getLogger(__name__)


def feature_rows(source: FeatureSource, stimulus_ids: np.ndarray) -> np.ndarray:
    """Row of each stimulus id in ``source`` (the features may be stored in another order)."""
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
            else:
                model = make_estimator(fitter.regression, fitter.n_components, ridge_alphas=fitter.ridge_alphas,
                                       ridge_cv=fitter.ridge_cv, device=fitter.device, dtype=fitter.dtype)
            model.fit(X_stack, Y_stack)
            for b in range(n_bins):
                pred = np.asarray(model.predict(Xn[b][s.test]))
                r[b, i, mask] = pearson_r(pred, Y[s.test][:, mask, b], axis=0)
    return r


def fit_layers(
    features: FeatureSource,
    Y: np.ndarray,
    stimulus_ids: np.ndarray,
    layers: Sequence[str],
    steps: Sequence[int],
    all_splits: Sequence[Split],
    masks: Mapping[str, np.ndarray],
    *,
    components: Mapping[str, int],
    regression: str | Callable[[], Any],
    ridge_alphas: np.ndarray,
    ridge_cv: int | None,
    mapping: str,
    device: torch.device,
    dtype: torch.dtype,
    gram_dtype: torch.dtype,
    max_batch: int | None,
    per_batch: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[xr.DataArray, dict[str, int]]:
    """Fit every layer x bin x split x area; returns ``r[layer, time_bin, split, neuroid]`` (Pearson r on each
    split's test stimuli; NaN outside the areas and where a layer has no features for a bin's step) and the number
    of :class:`ConstantFeaturesWarning` per layer. ``Y`` [stimulus, neuroid, bin] is in ``stimulus_ids`` order.

    Each (layer, step) array is read from ``features`` once; ``per_batch`` bins share one kernel-PLS batch.
    """
    rows = feature_rows(features, stimulus_ids)
    n_bins, n_neur = Y.shape[2], Y.shape[1]
    fitter = _Fitter(regression, 0, ridge_alphas, ridge_cv, device, dtype, gram_dtype, max_batch)
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

    r = xr.DataArray(r_all, dims=["layer", "time_bin", "split", "neuroid"],
                     coords={"layer": list(layers), "step": ("time_bin", list(steps))})
    return r, constant


def fit_nayebi(
    features: FeatureSource,
    trials: np.ndarray,
    stimulus_ids: Sequence[Any],
    best_of: Mapping[str, str],
    masks: Mapping[str, np.ndarray],
    steps: Sequence[int],
    bin_starts: Sequence[Any],
    splits: Sequence[Split],
    *,
    regression: str,
    n_components: int,
    n_seeds: int,
    device: str | torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Nayebi's r̃ per (area, best layer, bin) (:func:`convrnn.neural.metrics.nayebi_consistency`): maps refit on
    each trial half, model reliability in the denominator. ``trials`` is [repetition, stimulus, neuroid, bin] in
    ``stimulus_ids`` order; ``progress(1)`` is called after each bin. Columns: area, layer, bin, nayebi_r (NaN where
    the features have no stimulus variance).

    Why only the best layers: every (split, seed) needs two extra fits, so all layers would multiply the cost of
    scoring by ~2 x ``n_seeds``.
    """
    def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        estimator = make_estimator(regression, min(n_components, *x_train.shape), device=device)
        return np.asarray(estimator.fit(x_train, y_train).predict(x_test))

    rows = feature_rows(features, np.asarray([str(s) for s in stimulus_ids]))
    out = []
    for area, layer in best_of.items():
        for b, step in enumerate(steps):
            X = np.asarray(_take_rows(features.get(layer, step), rows), dtype=np.float64)
            value = np.nan
            if np.ptp(X, axis=0).max(initial=0.0) > 0:  # no stimulus variance: r~ is undefined, left NaN
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # near-constant targets of single halves
                    value = nayebi_consistency(X, trials[:, :, masks[area], b], fit_predict, splits,
                                               n_seeds=n_seeds).score()
            out.append(dict(area=area, layer=layer, bin=bin_starts[b], nayebi_r=value))
            if progress is not None:
                progress(1)
    return pd.DataFrame(out, columns=["area", "layer", "bin", "nayebi_r"])
