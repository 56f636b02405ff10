"""Brain-Score's own benchmark machinery scores ConvRNNBrainModel on local synthetic V4 recordings.

Reference: ``fit_neural.py --shared`` (one PLS map shared by all bins, Brain-Score's 10 stratified 0.9 splits,
split-half ceilings, R^2/c) run by the main environment on the same .nc file; Brain-Score's ``spantime_pls`` metric
and ``internal_consistency_temporal`` ceiling are the same protocol, so the per-bin scores must agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("brainscore_vision", reason="Brain-Score vision is not installed here: run make test-brainscore "
                    "(it lives in .venv-brainscore; see docs/brainscore.md)")

from brainscore_core.benchmarks import score_benchmark  # noqa: E402

from convrnn.brainscore.adapter import ConvRNNBrainModel  # noqa: E402

from .conftest import N_BINS, TEACHER  # noqa: E402

REGIONS = {"V4": "conv5", "IT": "conv8"}


@pytest.fixture(scope="module")
def teacher_score(v4_benchmark):
    model = ConvRNNBrainModel.from_spec("rgc_intermediate", REGIONS, identifier="teacher", progress=False, **TEACHER)
    return score_benchmark(v4_benchmark, model)


@pytest.mark.slow
def test_teacher_scores_high_and_equals_fit_neural(teacher_score, recordings) -> None:
    ours = pd.read_csv(recordings["scores"])
    ours = ours[(ours["area"] == "V4") & (ours["layer"] == "conv5")].sort_values("bin")
    assert len(ours) == N_BINS
    values = np.asarray(teacher_score.values, dtype=float)
    assert values.shape == (N_BINS,)
    np.testing.assert_allclose(values, ours["score"].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(teacher_score.attrs["ceiling"].values, dtype=float),
                               ours["ceiling"].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(teacher_score.raw.values, dtype=float), ours["raw_r"].to_numpy(),
                               atol=1e-4)
    assert values.mean() > 0.5  # the teacher's own architecture and weights at a true V4 layer


@pytest.mark.slow
def test_shuffled_control_scores_near_zero(v4_benchmark, teacher_score) -> None:
    """The same model shown each stimulus's image under another stimulus's id: no stimulus information left."""
    stimulus_set = v4_benchmark._assembly.stimulus_set
    ids = list(stimulus_set["stimulus_id"])
    paths = [stimulus_set.stimulus_paths[i] for i in ids]
    order = np.random.default_rng(0).permutation(len(ids))
    original = dict(stimulus_set.stimulus_paths)
    stimulus_set.stimulus_paths = {i: paths[j] for i, j in zip(ids, order, strict=True)}
    try:
        model = ConvRNNBrainModel.from_spec("rgc_intermediate", REGIONS, identifier="shuffled", progress=False,
                                            **TEACHER)
        shuffled = score_benchmark(v4_benchmark, model)
    finally:
        stimulus_set.stimulus_paths = original
    values = np.asarray(shuffled.values, dtype=float)
    assert np.abs(values).max() < 0.05, values
    assert np.asarray(teacher_score.values, dtype=float).min() > 10 * np.abs(values).max()


@pytest.mark.slow
def test_static_benchmark_on_one_bin_equals_fit_neurals_per_bin_map(recordings) -> None:
    """Brain-Score's static ``pls`` benchmark (one bin, ``internal_consistency``) on the 90-100 ms bin: the
    adapter's single-bin recording scored there equals fit_neural.py's per-bin map for that bin."""
    from convrnn.brainscore.benchmark import load_local_assembly, local_benchmark

    assembly = load_local_assembly(recordings["assembly"], recordings["stimuli_csv"])
    one_bin = assembly.isel(time_bin=[list(assembly["time_bin_start"].values).index(90)])
    one_bin = type(assembly)(one_bin)
    one_bin.attrs["stimulus_set"] = assembly.attrs["stimulus_set"]
    benchmark = local_benchmark(one_bin, "V4", metric="pls", stratification_coord="category_name",
                                identifier="convrnn.test.V4.90ms")
    model = ConvRNNBrainModel.from_spec("rgc_intermediate", REGIONS, identifier="teacher", progress=False, **TEACHER)
    score = score_benchmark(benchmark, model)
    ours = pd.read_csv(recordings["per_bin_scores"])
    ours = ours[(ours["area"] == "V4") & (ours["layer"] == "conv5") & (ours["bin"] == 90)]
    assert len(ours) == 1
    assert float(score.values) == pytest.approx(float(ours["score"].iloc[0]), abs=1e-4)
    assert float(score.attrs["ceiling"].values) == pytest.approx(float(ours["ceiling"].iloc[0]), abs=1e-4)
