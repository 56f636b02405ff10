"""Correlations, ceilings and noise corrections against scipy/numpy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.linear_model import Ridge as SkRidge
from sklearn.model_selection import ShuffleSplit

from convrnn.neural import (
    CONVENTIONS,
    nayebi_consistency,
    nayebi_splits,
    neuron_median,
    noise_correct,
    pearson_r,
    spearman_brown,
    split_half_ceiling,
)


def test_pearson_matches_scipy_per_column_and_bin() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4, 3))
    y = x + rng.standard_normal((50, 4, 3))
    r = pearson_r(x, y)
    assert r.shape == (4, 3)
    for n in range(4):
        for b in range(3):
            assert r[n, b] == pytest.approx(scipy.stats.pearsonr(x[:, n, b], y[:, n, b])[0], abs=1e-12)


def test_pearson_is_nan_safe() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 2))
    y = rng.standard_normal((30, 2))
    x[3, 0] = np.nan
    y[7, 0] = np.nan
    keep = np.ones(30, dtype=bool)
    keep[[3, 7]] = False
    r = pearson_r(x, y)
    assert r[0] == pytest.approx(scipy.stats.pearsonr(x[keep, 0], y[keep, 0])[0], abs=1e-12)
    assert r[1] == pytest.approx(scipy.stats.pearsonr(x[:, 1], y[:, 1])[0], abs=1e-12)
    assert np.isnan(pearson_r(np.ones(5), np.arange(5.0)))  # constant input
    assert np.isnan(pearson_r(np.array([1.0, np.nan, 2.0]), np.array([np.nan, 1.0, 3.0])))  # one pair left


def test_spearman_brown_and_median() -> None:
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(0.6, n=3) == pytest.approx(1.8 / 2.2)
    assert spearman_brown(1.0) == pytest.approx(1.0)
    assert neuron_median(np.array([[1.0, np.nan, 3.0, 10.0]])) == pytest.approx(3.0)


def test_noise_correction_conventions() -> None:
    raw, c = 0.6, 0.8
    assert noise_correct(raw, c, "r2_over_c") == pytest.approx(0.36 / 0.8)
    assert noise_correct(raw, c, "r_over_c_squared") == pytest.approx(0.5625)
    assert noise_correct(raw, c, "r_over_c") == pytest.approx(0.75)
    assert set(CONVENTIONS) == {"r2_over_c", "r_over_c_squared", "r_over_c"}
    with pytest.raises(ValueError, match="unknown convention"):
        noise_correct(raw, c, "bogus")


def test_split_half_ceiling_matches_a_literal_loop() -> None:
    rng = np.random.default_rng(2)
    signal = rng.standard_normal((40, 5, 2))
    trials = signal[None] + rng.standard_normal((6, 40, 5, 2))
    trials[0, 3, 1, 0] = np.nan
    result = split_half_ceiling(trials)
    expected = np.zeros((10, 5, 2))
    for i, (a, b) in enumerate(ShuffleSplit(10, train_size=0.5, random_state=1).split(np.zeros(6))):
        half_a = np.nanmean(trials[a], axis=0)
        half_b = np.nanmean(trials[b], axis=0)
        for n in range(5):
            for t in range(2):
                r = np.corrcoef(half_a[:, n, t], half_b[:, n, t])[0, 1]
                expected[i, n, t] = 2 * r / (1 + r)
    np.testing.assert_allclose(result.per_split_neuroid, expected, rtol=1e-10)
    np.testing.assert_allclose(result.ceiling(), np.median(expected, axis=1).mean(0), rtol=1e-10)
    np.testing.assert_allclose(result.neuroid, expected.mean(0), rtol=1e-10)
    mask = np.array([True, False, True, True, False])
    np.testing.assert_allclose(result.ceiling(mask), np.median(expected[:, mask], axis=1).mean(0), rtol=1e-10)


def test_split_half_ceiling_matches_analytic_reliability() -> None:
    rng = np.random.default_rng(3)
    reps, noise_var = 8, 2.0
    signal = rng.standard_normal((2000, 20))
    trials = signal[None] + np.sqrt(noise_var) * rng.standard_normal((reps, 2000, 20))
    analytic = 1.0 / (1.0 + noise_var / reps)  # reliability of the 8-trial mean
    assert split_half_ceiling(trials).ceiling()[0] == pytest.approx(analytic, abs=0.01)


def _literal_brainmodel_utils(X: np.ndarray, trials: np.ndarray, splits: list, seeds: range) -> np.ndarray:
    """Re-statement of brainmodel_utils' loops (per seed, split, neuron) with sklearn Ridge(alpha=1)."""
    Y = trials.mean(0)
    out = []
    for seed in seeds:
        order = list(range(trials.shape[0]))
        np.random.RandomState(seed=seed).shuffle(order)
        half = trials.shape[0] // 2
        Y1, Y2 = trials[order[:half]].mean(0), trials[order[half:]].mean(0)
        per_split = []
        for split in splits:
            tr, te = split.train, split.test
            p = SkRidge(alpha=1.0).fit(X[tr], Y[tr]).predict(X[te])
            p1 = SkRidge(alpha=1.0).fit(X[tr], Y1[tr]).predict(X[te])
            p2 = SkRidge(alpha=1.0).fit(X[tr], Y2[tr]).predict(X[te])
            vals = []
            for n in range(Y.shape[1]):
                r_xy = scipy.stats.pearsonr(p[:, n], Y[te, n])[0]
                r_xx = scipy.stats.pearsonr(p1[:, n], p2[:, n])[0]
                r_yy = scipy.stats.pearsonr(Y1[te, n], Y2[te, n])[0]
                vals.append(r_xy / np.sqrt(spearman_brown(r_xx) * spearman_brown(r_yy)))
            per_split.append(vals)
        out.append(per_split)
    return np.asarray(out)


def test_nayebi_consistency_matches_literal_loops() -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((80, 6))
    trials = (X @ rng.standard_normal((6, 3)))[None] + rng.standard_normal((5, 80, 3))
    splits = nayebi_splits(80, n_splits=3)

    def fit_predict(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return SkRidge(alpha=1.0).fit(a, b).predict(c)

    result = nayebi_consistency(X, trials, fit_predict, splits, n_seeds=4, start_seed=1234)
    expected = _literal_brainmodel_utils(X, trials, splits, range(1234, 1238))
    np.testing.assert_allclose(result.r_xy_n_sb, expected, rtol=1e-10)
    assert result.score() == pytest.approx(np.median(expected.mean(0).mean(0)), rel=1e-10)
    assert 0.5 < result.score() < 1.5  # a linear model of linear data is close to the noise ceiling


def test_nayebi_consistency_skips_nan_seeds_and_needs_two_trials() -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((30, 3))
    trials = X[None, :, :2] + rng.standard_normal((2, 30, 2))
    trials[1, 4, 0] = np.nan  # with 2 trials every split puts it alone in a half -> NaN half-average
    splits = nayebi_splits(30, n_splits=2)

    def fit_predict(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return SkRidge(alpha=1.0).fit(a, b).predict(c)

    with pytest.raises(ValueError, match="every split-half seed had NaN"):
        nayebi_consistency(X, trials, fit_predict, splits, n_seeds=3)
    with pytest.raises(ValueError, match="at least 2 trials"):
        nayebi_consistency(X, trials[:1], fit_predict, splits)


def test_split_half_ceiling_missing_trial_rules_by_hand() -> None:
    """n0 misses stimulus 3 in repetition 1. By hand: n0's halves correlate r = 1/2 over stimuli 0-2
    (Spearman-Brown 2/3), n1's r = 4/5 (8/9). Brain-Score's rule makes n0 NaN; ours drops the stimulus."""
    trials = np.array([[[1, 1], [2, 2], [3, 3], [5, 4]],
                       [[1, 1], [3, 2], [2, 4], [np.nan, 3]]], dtype=float)
    brainscore = split_half_ceiling(trials, missing="drop_neuroid")
    assert np.isnan(brainscore.per_split_neuroid[:, 0]).all()
    np.testing.assert_allclose(brainscore.per_split_neuroid[:, 1, 0], 8 / 9, rtol=1e-12)
    assert brainscore.ceiling()[0] == pytest.approx(8 / 9, rel=1e-12)
    ours = split_half_ceiling(trials, missing="drop_stimulus")
    np.testing.assert_allclose(ours.per_split_neuroid[:, :, 0], [[2 / 3, 8 / 9]] * 10, rtol=1e-12)
    assert ours.ceiling()[0] == pytest.approx((2 / 3 + 8 / 9) / 2, rel=1e-12)
    assert split_half_ceiling(trials).ceiling()[0] == pytest.approx(8 / 9)  # Brain-Score's rule is the default
    with pytest.raises(ValueError, match="unknown missing-trial rule"):
        split_half_ceiling(trials, missing="bogus")
