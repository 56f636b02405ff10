"""The synthetic V4/IT generator: file format, analytic ceilings, and recovery of the teacher's ground truth."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from convrnn.errors import UserError
from convrnn.neural import (
    ArrayFeatures,
    load_assembly,
    load_stimulus_set,
    score_model,
    split_half_ceiling,
    trial_array,
)
from convrnn.neural.checkpoint import build_seeded, load_model
from convrnn.neural.features import extract_features
from convrnn.neural.synthetic import (
    ASSEMBLY_IDENTIFIER,
    STIMULUS_SET_IDENTIFIER,
    SyntheticConfig,
    SyntheticRecordings,
    build_teacher,
    generate,
    load_synthetic,
    write_pca_images,
)

#: 4 categories x 4 objects x 3 levels x 8 images = 384 stimuli at 32 px; 20 sites; 20 repetitions.
SMALL = SyntheticConfig(input_size=32, n_categories=4, objects_per_category=4, images_per_object_per_level=8,
                        sites={"V4": 8, "pIT": 4, "cIT": 4, "aIT": 4})


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRecordings:
    return generate(tmp_path_factory.mktemp("synthetic") / "data", SMALL, keep_teacher_features=True)


@pytest.fixture(scope="module")
def teacher_features(rec: SyntheticRecordings) -> ArrayFeatures:
    """The teacher's own features on the written PNGs (kept by the generator), read into memory."""
    disk = rec.teacher_features()
    assert disk is not None
    layers = sorted(rec.sites["teacher_layer"].unique())
    assert sorted(disk.layers) == layers and list(disk.steps("conv5")) == rec.steps
    return ArrayFeatures({layer: {t: np.array(disk.get(layer, t)) for t in rec.steps} for layer in layers},
                         disk.stimulus_ids)


def test_kept_teacher_features_are_the_teacher_on_the_pngs(rec: SyntheticRecordings, tmp_path: Path) -> None:
    """Re-running the teacher through ``extract_features`` on the written PNGs gives the same arrays."""
    table = rec.stimulus_set.iloc[:12]
    again = extract_features(build_teacher(rec.config), table["image_path"].tolist(),
                             table["stimulus_id"].tolist(), ["conv10"], tmp_path, steps=[9, 20])
    kept = rec.teacher_features()
    assert kept is not None
    rows = [list(kept.stimulus_ids).index(s) for s in table["stimulus_id"]]
    for t in (9, 20):
        np.testing.assert_allclose(again.get("conv10", t), np.asarray(kept.get("conv10", t))[rows], rtol=1e-5,
                                   atol=1e-6)


def test_written_assembly_and_stimulus_set(rec: SyntheticRecordings) -> None:
    cfg = rec.config
    assy = load_assembly(rec.assembly_path)
    assert set(assy.dims) == {"presentation", "neuroid", "time_bin"}
    n_stim, n_sites = cfg.n_stimuli, sum(cfg.sites.values())
    assert n_stim == 384 and n_sites == 20
    assert assy.sizes == {"presentation": n_stim * cfg.repetitions, "neuroid": n_sites, "time_bin": 19}
    assert assy.attrs["identifier"] == ASSEMBLY_IDENTIFIER
    assert assy.attrs["stimulus_set_identifier"] == STIMULUS_SET_IDENTIFIER
    np.testing.assert_array_equal(assy["time_bin_start"].values, np.arange(70, 260, 10))
    np.testing.assert_array_equal(assy["time_bin_end"].values, np.arange(80, 270, 10))
    for coord in ("neuroid_id", "region", "subregion", "animal", "hemisphere", "arr", "row", "col", "teacher_layer"):
        assert coord in assy.coords, coord
    assert sorted(set(assy["region"].values)) == ["IT", "V4"]
    assert sorted(set(assy["subregion"].values)) == ["V4", "aIT", "cIT", "pIT"]
    assert set(assy["arr"].values) == {"A", "M", "P"} and len(set(assy["animal"].values)) == 2
    assert len(set(assy["neuroid_id"].values)) == n_sites
    for coord in ("stimulus_id", "repetition", "object_name", "category_name", "variation", "filename"):
        assert coord in assy.coords, coord
    assert sorted(set(assy["repetition"].values)) == list(range(cfg.repetitions))
    assert sorted(set(assy["variation"].values)) == [0, 3, 6]
    # the stimulus set: CSV with stimulus_id and filename, every PNG present, the same ids as the assembly
    table = pd.read_csv(rec.stimuli_csv)
    assert {"stimulus_id", "filename", "object_name", "category_name", "variation"} <= set(table.columns)
    assert all((rec.images_dir / f).is_file() for f in table["filename"])
    assert set(table["stimulus_id"]) == set(assy["stimulus_id"].values)
    assert len(load_stimulus_set(rec.stimuli_csv)) == n_stim
    # ground truth and provenance on disk; nothing temporary left next to the dataset
    assert json.loads((rec.root / "params.json").read_text())["config"] == cfg.to_json()
    assert not [p for p in rec.root.parent.iterdir() if p.name.startswith(".")]


def test_reuse_and_refusal(rec: SyntheticRecordings) -> None:
    mtime = rec.assembly_path.stat().st_mtime_ns
    again = generate(rec.root, rec.config)
    assert rec.assembly_path.stat().st_mtime_ns == mtime  # loaded, not rewritten
    np.testing.assert_array_equal(again.site_ceiling, rec.site_ceiling)
    assert again.sites.equals(load_synthetic(rec.root).sites)
    with pytest.raises(FileExistsError, match="another config"):
        generate(rec.root, replace(rec.config, noise_seed=1))


def test_ground_truth_exposed(rec: SyntheticRecordings) -> None:
    assert rec.steps == list(range(7, 26))  # default_bin_steps: bin_start // 10 + 0
    layers = rec.true_layers().set_index(["subregion", "teacher_layer"])["n_sites"]
    assert layers.to_dict() == {("V4", "conv5"): 4, ("V4", "conv6"): 4, ("aIT", "conv10"): 4, ("cIT", "conv9"): 4,
                                ("pIT", "conv7"): 2, ("pIT", "conv8"): 2}
    first = rec.sites.iloc[0]
    assert rec.true_layer(first["neuroid_id"]) == first["teacher_layer"]
    # r_half = c / (2 - c), i.e. the Spearman-Brown inverse of the target ceiling
    np.testing.assert_allclose(2 * rec.sites["r_half"] / (1 + rec.sites["r_half"]), rec.sites["target_ceiling"])
    # no stimulus information before the layer has seen the image: conv9 (first image step 8), conv10 (9)
    bins = {int(b): i for i, b in enumerate(rec.bins[:, 0])}
    conv10 = (rec.sites["teacher_layer"] == "conv10").to_numpy()
    conv9 = (rec.sites["teacher_layer"] == "conv9").to_numpy()
    assert (rec.site_ceiling[conv10][:, [bins[70], bins[80]]] == 0).all()
    assert (rec.site_ceiling[conv9][:, bins[70]] == 0).all() and (rec.site_ceiling[conv9][:, bins[80]] > 0).all()
    assert (rec.site_ceiling[~(conv9 | conv10)] > 0.8).all()


def test_measured_ceilings_match_analytic(rec: SyntheticRecordings) -> None:
    td = trial_array(rec.assembly)
    order = pd.Index(td.neuroids["neuroid_id"]).get_indexer(rec.sites["neuroid_id"])
    measured = split_half_ceiling(td.trials).neuroid[order]  # [site, bin], mean over 10 repetition splits
    informative = rec.site_ceiling > 0
    # per site: finite-sample error of a 384-stimulus correlation is a few hundredths
    err = np.abs(measured - rec.site_ceiling)
    assert np.median(err[informative]) < 0.02 and err[informative].max() < 0.08
    assert np.abs(measured[~informative]).max() < 0.35 and abs(np.mean(measured[~informative])) < 0.05
    # per area (the median over sites, what score_model reports)
    result = score_model(ArrayFeatures({"x": {t: np.zeros((len(td.stimulus_ids), 1)) for t in rec.steps}},
                                       td.stimulus_ids), td, layers=[], n_selection_splits=0,
                         areas={"V4": {"region": "V4"}, "pIT": {"subregion": "pIT"}})
    analytic = rec.analytic_ceilings({"V4": {"region": "V4"}, "pIT": {"subregion": "pIT"}})
    both = result.ceilings.merge(analytic, on=["area", "bin"])
    assert len(both) == 2 * 19
    np.testing.assert_allclose(both["ceiling"], both["analytic_ceiling"], atol=0.03)


def test_teacher_recovered_and_shuffled_control(rec: SyntheticRecordings, teacher_features: ArrayFeatures) -> None:
    """The teacher's own features at the true layer and step: R^2/c ~ 1; rows shuffled against stimuli: ~0."""
    ids = list(teacher_features.stimulus_ids)
    perm = np.random.default_rng(0).permutation(len(ids))
    for layer in sorted(rec.sites["teacher_layer"].unique()):
        good = score_model(teacher_features, rec.assembly, layers=[layer], n_selection_splits=0,
                           areas={layer: {"teacher_layer": layer}}, convention="r2_over_c").scores
        mask = (rec.site_ceiling[(rec.sites["teacher_layer"] == layer).to_numpy()] > 0).all(axis=0)
        informative = good[mask]
        assert len(informative) >= 17
        assert informative["score"].mean() >= 0.9, (layer, informative["score"].round(3).tolist())
        assert informative["score"].min() >= 0.8, (layer, informative["score"].round(3).tolist())
    layer = "conv5"
    shuffled = ArrayFeatures({layer: {t: np.asarray(teacher_features.get(layer, t))[perm] for t in rec.steps}}, ids)
    bad = score_model(shuffled, rec.assembly, layers=[layer], n_selection_splits=0,
                      areas={layer: {"teacher_layer": layer}}).scores
    assert bad["raw_r"].abs().max() < 0.15 and bad["score"].abs().max() < 0.05, bad["raw_r"].round(3).tolist()


def test_pca_images_are_a_different_set(rec: SyntheticRecordings, tmp_path: Path) -> None:
    csv = write_pca_images(tmp_path / "pca", rec.config, images_per_object_per_level=1, split_seed=7)
    table = load_stimulus_set(csv)
    assert len(table) == 4 * 4 * 3
    assert not set(table["stimulus_id"]) & set(rec.stimulus_set["stimulus_id"])
    with pytest.raises(ValueError, match="split_seed"):
        write_pca_images(tmp_path / "pca2", rec.config, split_seed=rec.config.split_seed)


@pytest.mark.parametrize("kwargs, match", [
    (dict(repetitions=1), "repetitions"),
    (dict(ceilings={"V4": 0.98, "IT": 0.8}), "ceilings"),
    (dict(sites={"MT": 3}), "subregions"),
    (dict(readout_rank=0), "readout_rank"),
])
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_teacher_is_the_seeded_build_and_the_global_rng_is_untouched() -> None:
    """build_teacher and untrained zoo models share one seeded build; neither draws from the caller's RNG."""
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    teacher = build_teacher(SMALL)
    assert torch.equal(torch.rand(3), expected)
    same = build_seeded(SMALL.teacher, SMALL.teacher_seed, input_size=SMALL.input_size,
                        width_multiplier=SMALL.width_multiplier, presentation="neural")
    assert not same.training
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in teacher.state_dict().items())


def test_model_option_checks_are_user_errors(tmp_path: Path) -> None:
    """load_model is the one place that checks the teacher's and a checkpoint's options, as UserErrors."""
    with pytest.raises(UserError, match="--model teacher is fixed by the synthetic config"):
        load_model("teacher", weights=tmp_path / "w.pt", teacher_config=SMALL)
    with pytest.raises(UserError, match="--model teacher is fixed by the synthetic config"):
        load_model("teacher", width_multiplier=1.0, teacher_config=SMALL)
    with pytest.raises(UserError, match="--weights: a checkpoint carries its own weights"):
        load_model(tmp_path / "model.ckpt", weights=tmp_path / "w.pt")
