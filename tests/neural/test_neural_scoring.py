"""End-to-end scoring on synthetic recordings with known ground truth."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cross_decomposition import PLSRegression as SkPLS
from sklearn.linear_model import RidgeCV as SkRidgeCV

from convrnn.neural import (
    NAYEBI_RIDGE_ALPHAS,
    ArrayFeatures,
    FeatureSource,
    MemmapFeatures,
    RidgeCV,
    Split,
    default_bin_steps,
    from_arrays,
    score_model,
    time_average,
    trial_array,
)


@pytest.fixture
def recordings(make_recordings: Callable[..., dict]) -> dict:
    rec = make_recordings()
    rec["assembly"] = from_arrays(rec["trials"], rec["stimuli"], rec["neuroids"], rec["bins"])
    rng = np.random.default_rng(99)
    shuffled = rng.permutation(len(rec["stimuli"]))
    rec["source"] = ArrayFeatures(
        {
            "good": rec["features"],
            "shuffled": {t: x[shuffled] for t, x in rec["features"].items()},  # right features, wrong images
        },
        rec["stimuli"]["stimulus_id"],
    )
    return rec


def test_known_linear_map_scores_near_one_and_shuffled_near_zero(recordings: dict) -> None:
    result = score_model(recordings["source"], recordings["assembly"])
    scores = result.scores
    assert set(scores.columns) >= {"area", "layer", "bin", "score", "ceiling", "raw_r", "raw_r_sem", "formula"}
    assert len(scores) == 2 * 2 * 3  # areas x layers x bins
    assert list(scores["bin"].unique()) == [70, 80, 90] and list(scores["step"].unique()) == [7, 8, 9]
    good = scores[scores.layer == "good"]
    bad = scores[scores.layer == "shuffled"]
    # R^2/c: ~1 when the map recovers the reliable signal (finite-sample fitting loses a little)
    assert good["score"].between(0.9, 1.1).all(), good
    assert bad["raw_r"].abs().max() < 0.1 and bad["score"].max() < 0.02
    # ceilings = analytic reliability of the trial mean, 1 / (1 + noise_var / R)
    np.testing.assert_allclose(result.ceilings["ceiling"], recordings["reliability"], atol=0.02)
    assert list(result.best_layers["layer"]) == ["good", "good"]
    assert list(result.best_layers["area"]) == ["V4", "IT"]
    ta = result.time_averaged.set_index(["area", "layer"])
    assert ta.loc[("V4", "good"), "mean_score_ceiled_bins"] == pytest.approx(good[good.area == "V4"]["score"].mean())
    assert ta.loc[("V4", "good"), "n_ceiled_bins"] == 3
    assert result.neuroid_r.shape == (2, 3, 10, 24)  # layer, bin, split, neuroid
    med = np.median(result.neuroid_r.sel(layer="good").values[0][:, :12], axis=1).mean()
    assert good.iloc[0]["raw_r"] == pytest.approx(med)


def test_conventions_keep_raw_and_ceiling(recordings: dict) -> None:
    a = score_model(recordings["source"], recordings["assembly"], layers=["good"], convention="r_over_c",
                    n_selection_splits=0)
    raw, c = a.scores["raw_r"].to_numpy(), a.scores["ceiling"].to_numpy()
    np.testing.assert_allclose(a.scores["score"], raw / c)
    assert (a.scores["formula"] == "R / c").all()
    assert a.best_layers.empty and a.selection.empty


def test_memmap_source_equals_in_memory(recordings: dict, tmp_path: Path) -> None:
    ids = list(recordings["stimuli"]["stimulus_id"])
    order = np.random.default_rng(0).permutation(len(ids))  # stored in another order: aligned by stimulus_id
    for t, x in recordings["features"].items():
        MemmapFeatures.write(tmp_path, "good", t, x[order], stimulus_ids=[ids[i] for i in order])
    disk = MemmapFeatures(tmp_path)
    assert isinstance(disk, FeatureSource) and disk.layers == ["good"]
    a = score_model(disk, recordings["assembly"], n_selection_splits=0)
    b = score_model(recordings["source"], recordings["assembly"], layers=["good"], n_selection_splits=0)
    np.testing.assert_allclose(a.scores["raw_r"], b.scores["raw_r"], rtol=1e-10)


def test_kernel_path_and_estimator_factory_agree_with_sklearn(make_recordings: Callable[..., dict]) -> None:
    """Wide features (p > n) use the Gram route; a sklearn estimator through the same loop must agree."""
    rec = make_recordings(n_stimuli=120, n_features=150, n_bins=2, n_neuroids=10)
    assembly = from_arrays(rec["trials"], rec["stimuli"], rec["neuroids"], rec["bins"])
    source = ArrayFeatures({"wide": rec["features"]}, rec["stimuli"]["stimulus_id"])
    ours = score_model(source, assembly, n_components=10, n_selection_splits=0)
    ref = score_model(source, assembly, n_components=10, n_selection_splits=0,
                      regression=lambda: SkPLS(n_components=10, scale=False))
    np.testing.assert_allclose(ours.neuroid_r.values, ref.neuroid_r.values, atol=1e-8)


def test_bins_batched_together_equal_one_at_a_time(make_recordings: Callable[..., dict]) -> None:
    rec = make_recordings(n_stimuli=160, n_features=200, n_bins=3, n_neuroids=10)
    assembly = from_arrays(rec["trials"], rec["stimuli"], rec["neuroids"], rec["bins"])
    source = ArrayFeatures({"wide": rec["features"]}, rec["stimuli"]["stimulus_id"])
    one = score_model(source, assembly, n_components=10, n_selection_splits=0, bins_per_batch=1, max_batch=4)
    three = score_model(source, assembly, n_components=10, n_selection_splits=0, bins_per_batch=3)
    np.testing.assert_allclose(one.neuroid_r.values, three.neuroid_r.values, atol=1e-10)


def test_ridgecv(recordings: dict) -> None:
    ridge = score_model(recordings["source"], recordings["assembly"], layers=["good"], regression="ridgecv",
                        n_selection_splits=0)
    assert ridge.scores["score"].between(0.85, 1.1).all()
    # the loop's kernel route (one Gram, per-split eigendecompositions shared by the areas) = the estimator
    # (primal route here); rounding can flip a near-tie between two alphas, hence the 1e-4 slack
    by_estimator = score_model(recordings["source"], recordings["assembly"], layers=["good"],
                               regression=lambda: RidgeCV(cv=5), n_selection_splits=0)
    np.testing.assert_allclose(ridge.neuroid_r.values, by_estimator.neuroid_r.values, atol=1e-4)
    assert np.mean(np.isclose(ridge.neuroid_r.values, by_estimator.neuroid_r.values, atol=1e-9)) > 0.99


def test_ridgecv_leave_one_out_equals_sklearn_in_the_loop(make_recordings: Callable[..., dict]) -> None:
    rec = make_recordings(n_stimuli=120, n_features=150, n_bins=2, n_neuroids=10)
    assembly = from_arrays(rec["trials"], rec["stimuli"], rec["neuroids"], rec["bins"])
    source = ArrayFeatures({"wide": rec["features"]}, rec["stimuli"]["stimulus_id"])
    ours = score_model(source, assembly, regression="ridgecv", ridge_cv=None, n_selection_splits=0)
    ref = score_model(source, assembly, n_selection_splits=0,
                      regression=lambda: SkRidgeCV(alphas=NAYEBI_RIDGE_ALPHAS, alpha_per_target=True))
    np.testing.assert_allclose(ours.neuroid_r.values, ref.neuroid_r.values, atol=1e-8)


def test_shared_weights(make_recordings: Callable[..., dict]) -> None:
    """Shared weights pool bins for fitting: better when the map is the same in every bin (more data),
    worse when each bin has its own map."""
    for per_bin_maps in (False, True):
        rec = make_recordings(n_bins=2, per_bin_maps=per_bin_maps)
        assembly = from_arrays(rec["trials"], rec["stimuli"], rec["neuroids"], rec["bins"])
        source = ArrayFeatures({"x": rec["features"]}, rec["stimuli"]["stimulus_id"])
        shared = score_model(source, assembly, mapping="shared", n_selection_splits=0).scores["raw_r"]
        per_bin = score_model(source, assembly, n_selection_splits=0).scores["raw_r"]
        if per_bin_maps:
            assert (shared.to_numpy() < per_bin.to_numpy() - 0.1).all()
        else:
            assert (shared.to_numpy() > per_bin.to_numpy()).all()


def test_step_offset_and_missing_steps(recordings: dict, caplog: pytest.LogCaptureFixture) -> None:
    assert default_bin_steps(np.array([[70, 80], [250, 260]])) == [7, 25]
    assert default_bin_steps(np.array([[70, 80]]), offset=-2) == [5]
    with caplog.at_level(logging.WARNING):
        result = score_model(recordings["source"], recordings["assembly"], layers=["good"], offset=3,
                             n_selection_splits=0)  # bins 70-90 -> steps 10, 11, 12; step 12 does not exist
    assert list(result.scores["step"].unique()) == [10, 11, 12]
    assert result.scores[result.scores.step == 12]["raw_r"].isna().all()
    assert "no features for steps [12]" in caplog.text
    # a shifted step no longer matches the generating features: the score drops to chance
    assert result.scores[result.scores.step == 10]["raw_r"].abs().max() < 0.1


def test_areas_selection_and_errors(recordings: dict) -> None:
    assembly = recordings["assembly"]
    result = score_model(recordings["source"], assembly, layers=["good"], n_selection_splits=1,
                         areas={"first": {"neuroid_id": ["site0", "site1", "site2"]}, "IT": {"region": "IT"}})
    assert list(result.ceilings["n_neuroids"].unique()) == [3, 12]
    with pytest.raises(KeyError, match="subregion"):
        score_model(recordings["source"], assembly, areas={"pIT": {"subregion": "pIT"}})
    partial = ArrayFeatures({"good": {t: x[:-2] for t, x in recordings["features"].items()}},
                            recordings["stimuli"]["stimulus_id"][:-2])
    with pytest.raises(KeyError, match=r"2 stimulus ids.*'im0398', 'im0399'"):
        score_model(partial, assembly)
    single = from_arrays(recordings["trials"][:1], recordings["stimuli"], recordings["neuroids"],
                         recordings["bins"])
    with pytest.raises(ValueError, match="at least 2 repetitions"):
        score_model(recordings["source"], single)
    no_ceiling = score_model(recordings["source"], single, layers=["good"], ceiling_splits=0, n_selection_splits=0)
    assert no_ceiling.scores["ceiling"].isna().all() and no_ceiling.scores["raw_r"].notna().all()


def test_missing_trials_are_reported(recordings: dict) -> None:
    trials = recordings["trials"].copy()
    trials[0, :5, 0, 0] = np.nan
    assembly = from_arrays(trials, recordings["stimuli"], recordings["neuroids"], recordings["bins"])
    result = score_model(recordings["source"], assembly, layers=["good"], n_selection_splits=0)
    assert result.info["n_missing_trials"] == 5
    assert trial_array(assembly).n_missing == 5
    empty = trials.copy()
    empty[:, 3, 0, 0] = np.nan  # no valid trial at all for one (stimulus, neuroid, bin)
    bad = from_arrays(empty, recordings["stimuli"], recordings["neuroids"], recordings["bins"])
    with pytest.raises(ValueError, match="no valid trial.*'im0003'"):
        score_model(recordings["source"], bad, layers=["good"])


def test_trial_data_input_and_no_strata(recordings: dict) -> None:
    td = trial_array(recordings["assembly"])
    td.stimuli = pd.DataFrame({"stimulus_id": td.stimulus_ids})  # without object_name: unstratified splits
    result = score_model(recordings["source"], td, layers=["good"], n_selection_splits=0)
    assert result.scores["score"].between(0.85, 1.1).all()


def test_time_average_uses_ceiled_bins_and_keeps_the_sign_of_r() -> None:
    """By hand: a bin before the response (c = -0.0009, R**2/c = -0.36) and a low-ceiling bin (c = 0.1, R**2/c =
    2.5) are left out; a negative r stays negative."""
    scores = pd.DataFrame({
        "area": ["IT"] * 4, "layer": ["conv5"] * 4, "bin": [50, 70, 80, 90],
        "raw_r": [0.018, -0.3, 0.6, 0.5], "ceiling": [-0.0009, 0.5, 0.9, 0.1], "convention": ["r2_over_c"] * 4})
    scores["score"] = scores["raw_r"] ** 2 / scores["ceiling"]
    row = time_average(scores, min_ceiling=0.2).iloc[0]
    assert row["n_bins"] == 4 and row["n_ceiled_bins"] == 2
    assert row["mean_score_ceiled_bins"] == pytest.approx((-0.09 / 0.5 + 0.36 / 0.9) / 2)  # (-0.18 + 0.4) / 2
    assert row["mean_raw_r_ceiled_bins"] == pytest.approx(0.15)
    assert row["mean_ceiling_ceiled_bins"] == pytest.approx(0.7)
    assert row["mean_raw_r_all_bins"] == pytest.approx((0.018 - 0.3 + 0.6 + 0.5) / 4)
    squared = scores.assign(score=(scores["raw_r"] / scores["ceiling"]) ** 2, convention="r_over_c_squared")
    assert time_average(squared).iloc[0]["mean_score_ceiled_bins"] == pytest.approx((-0.36 + (0.6 / 0.9) ** 2) / 2)
    none = time_average(scores, min_ceiling=0.95).iloc[0]
    assert none["n_ceiled_bins"] == 0 and np.isnan(none["mean_score_ceiled_bins"])


def test_score_model_time_averages_skip_a_bin_without_signal(recordings: dict) -> None:
    """A bin of pure noise (before the response starts) has a ceiling ~0: its score is left out of the averages."""
    trials = recordings["trials"].copy()
    trials[..., 0] = np.random.default_rng(5).standard_normal(trials[..., 0].shape)
    assembly = from_arrays(trials, recordings["stimuli"], recordings["neuroids"], recordings["bins"])
    result = score_model(recordings["source"], assembly, n_selection_splits=1, min_ceiling=0.2)
    scores = result.scores
    assert (scores[scores["bin"] == 70]["ceiling"].abs() < 0.2).all()
    assert (scores[scores["bin"] != 70]["ceiling"] > 0.5).all()
    ta = result.time_averaged.set_index(["area", "layer"])
    for (area, layer), group in scores.groupby(["area", "layer"]):
        kept = group[group["bin"] != 70]
        assert ta.loc[(area, layer), "n_ceiled_bins"] == 2
        expected = (np.sign(kept["raw_r"]) * kept["score"].abs()).mean()
        assert ta.loc[(area, layer), "mean_score_ceiled_bins"] == pytest.approx(expected)
    assert result.best_layers["mean_score_ceiled_bins"].between(0.9, 1.1).all()
    # the shuffled layer's r scatters around 0 with both signs: the signed average is not inflated by r**2
    shuffled = scores[(scores["layer"] == "shuffled") & (scores["bin"] != 70)]
    assert abs(ta.loc[("V4", "shuffled"), "mean_score_ceiled_bins"]) <= shuffled[shuffled.area == "V4"]["score"].mean()


def _missing_trial_recordings() -> tuple[np.ndarray, pd.DataFrame]:
    """2 repetitions x 4 stimuli x 2 neuroids x 1 bin; neuroid n0 misses stimulus s3 in repetition 1.

    n0: halves [1, 2, 3, (5)] and [1, 3, 2, NaN]: over s0-s2, r = 1/2, Spearman-Brown 2/3.
    n1: halves [1, 2, 3, 4] and [1, 2, 4, 3]: r = 4/5, Spearman-Brown 8/9.
    """
    trials = np.array([[[1, 1], [2, 2], [3, 3], [5, 4]],
                       [[1, 1], [3, 2], [2, 4], [np.nan, 3]]], dtype=float)[..., None]
    return trials, pd.DataFrame({"neuroid_id": ["n0", "n1"], "region": ["IT", "IT"]})


@pytest.mark.parametrize("scheme, rule, ceiling", [
    ("brainscore", None, 8 / 9),  # Brain-Score: n0 is NaN for every split and left out of the median
    ("nayebi", None, (2 / 3 + 8 / 9) / 2),  # ours: s3 left out of n0's correlation; median of 2/3 and 8/9
    ("brainscore", "drop_stimulus", (2 / 3 + 8 / 9) / 2),
    ("nayebi", "drop_neuroid", 8 / 9),
])
def test_ceiling_rule_for_missing_trials(scheme: str, rule: str | None, ceiling: float) -> None:
    trials, neuroids = _missing_trial_recordings()
    assembly = from_arrays(trials, ["s0", "s1", "s2", "s3"], neuroids, [70, 80])
    features = ArrayFeatures({"L": {7: np.random.default_rng(0).standard_normal((4, 3))}}, ["s0", "s1", "s2", "s3"])
    result = score_model(features, assembly, split_scheme=scheme, ceiling_missing=rule, n_components=1,
                         splits=[Split(np.array([0, 1]), np.array([2, 3]))], n_selection_splits=0, stratify_by=None)
    assert result.ceilings["ceiling"].iloc[0] == pytest.approx(ceiling, rel=1e-12)
    assert result.scores["ceiling"].iloc[0] == pytest.approx(ceiling, rel=1e-12)
    expected_rule = rule or ("drop_neuroid" if scheme == "brainscore" else "drop_stimulus")
    assert result.info["ceiling_missing"] == expected_rule


def test_progress_callback_and_constant_features_counted_by_class(recordings: dict) -> None:
    """One call scores every layer: ``progress`` reports each layer once, in order; PLS stopping early on features
    without stimulus variance is counted per layer (ConstantFeaturesWarning) and not re-emitted, other warnings are."""
    import warnings

    rec = recordings
    n = len(rec["stimuli"])
    constant = {t: np.ones((n, 30), dtype=np.float32) + 0.0 * x[:, :30] for t, x in rec["features"].items()}
    source = ArrayFeatures({"good": rec["features"], "flat": constant}, rec["stimuli"]["stimulus_id"])
    calls: list[tuple[str, int, int]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score_model(source, rec["assembly"], n_components=5, n_selection_splits=0,
                             progress=lambda layer, done, total: calls.append((layer, done, total)))
    assert calls == [("good", 1, 2), ("flat", 2, 2)]
    counts = result.info["constant_feature_warnings"]
    assert set(counts) == {"flat"} and counts["flat"] >= 3  # at least once per bin
    assert not [w for w in caught if "residual vanished" in str(w.message)]
    alone = score_model(ArrayFeatures({"good": rec["features"]}, rec["stimuli"]["stimulus_id"]),
                        rec["assembly"], n_components=5, n_selection_splits=0)
    np.testing.assert_allclose(result.scores[result.scores.layer == "good"]["raw_r"], alone.scores["raw_r"])
