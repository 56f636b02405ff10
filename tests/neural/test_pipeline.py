"""scripts/fit_neural.py and convrnn.neural.pipeline end to end on a tiny synthetic set; model loading."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch

from convrnn.errors import UserError
from convrnn.neural import MemmapFeatures, TrialData, pipeline
from convrnn.neural.areas import resolve_areas
from convrnn.neural.checkpoint import load_model, load_state_dict
from convrnn.neural.config import FitConfig
from convrnn.neural.inputs import smallest_input_size
from convrnn.neural.pipeline import run
from convrnn.neural.synthetic import SyntheticConfig, SyntheticRecordings, build_teacher, generate, write_pca_images

ROOT = Path(__file__).resolve().parents[2]
#: 4 categories x 4 objects x 3 levels x 4 images = 192 stimuli at 32 px, 12 sites, 10 repetitions.
TINY = SyntheticConfig(input_size=32, n_categories=4, objects_per_category=4, images_per_object_per_level=4,
                       sites={"V4": 4, "pIT": 4, "cIT": 2, "aIT": 2}, repetitions=10)
REQUIRED = {"area", "layer", "bin", "score", "ceiling", "raw_r"}


def _cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fit_neural", ROOT / "scripts" / "fit_neural.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRecordings:
    return generate(tmp_path_factory.mktemp("tiny") / "data", TINY)


def test_cli_end_to_end_with_the_teacher(tiny: SyntheticRecordings, tmp_path: Path) -> None:
    out = tmp_path / "fit"
    code = _cli().main(["--data", "synthetic", "--synthetic-dir", str(tiny.root), "--model", "teacher",
                        "--layers", "conv5,conv8", "conv10", "--n-splits", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    table = pd.read_csv(out / "scores.csv")
    assert REQUIRED | {"bin_end", "step", "is_best", "reliable", "analytic_ceiling", "raw_r_sem"} <= set(table.columns)
    assert list(table.columns[:8]) == ["area", "layer", "bin", "bin_end", "step", "score", "ceiling", "raw_r"]
    assert len(table) == 3 * 3 * 19  # areas x layers x bins
    assert list(dict.fromkeys(table["area"])) == ["V4", "pIT", "cIT/aIT"]
    assert (table["n_splits"] == 3).all() and (table["convention"] == "r2_over_c").all()
    assert table.groupby("area")["is_best"].sum().to_dict() == {"V4": 19, "pIT": 19, "cIT/aIT": 19}
    report = json.loads((out / "scores.json").read_text())
    best = {row["area"]: row["layer"] for row in report["best_layers"]}
    assert set(best) == {"V4", "pIT", "cIT/aIT"} and best["V4"] == "conv5"
    assert report["model"]["kind"] == "teacher" and report["convention"]["formula"] == "R**2 / c"
    assert report["ground_truth"]["true_layers"]["V4"] == ["conv5", "conv6"]
    assert report["data"]["n_stimuli"] == 192 and report["data"]["steps"][0] == 7
    assert set(report["timings"]) >= {"features_s", "scoring_s", "total_s"}
    assert len(report["scores"]) == len(table)
    # the measured ceilings are the generator's analytic ones (192 stimuli, 10 repetitions: +-0.06) in every bin
    # where all of an area's sites carry signal (cIT/aIT at 70/80 ms mixes noise-only and signal sites, and a median
    # over such a bimodal set is too unstable to compare)
    reliable = table[table["reliable"]]
    assert len(reliable) >= 3 * 3 * 17
    it = tiny.sites["subregion"].isin(["cIT", "aIT"]).to_numpy()
    mixed = [int(b) for b, ok in zip(tiny.bins[:, 0], (tiny.site_ceiling[it] > 0).all(axis=0), strict=True) if not ok]
    assert mixed == [70, 80]
    clean = table[~((table["area"] == "cIT/aIT") & table["bin"].isin(mixed))]
    assert len(clean) == 3 * 3 * 19 - 3 * 2
    np.testing.assert_allclose(clean["ceiling"], clean["analytic_ceiling"], atol=0.06)
    # the teacher's own features at its true layer explain the reliable signal
    true_rows = reliable[(reliable["area"] == "V4") & (reliable["layer"] == "conv5")]
    assert true_rows["score"].mean() > 0.85, true_rows["score"].round(3).tolist()
    for name in ("predictivity_over_time.png", "raw_over_time.png"):
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # best_layers.csv: time averages over the bins whose ceiling passes --min-ceiling, with the sign of r
    best_csv = pd.read_csv(out / "best_layers.csv").set_index("area")
    for area, row in best_csv.iterrows():
        kept = table[(table["area"] == area) & (table["layer"] == row["layer"]) & table["reliable"]]
        assert row["n_ceiled_bins"] == len(kept) and row["min_ceiling"] == 0.2
        assert row["mean_score_ceiled_bins"] == pytest.approx((np.sign(kept["raw_r"]) * kept["score"].abs()).mean())
        assert row["mean_raw_r_ceiled_bins"] == pytest.approx(kept["raw_r"].mean())
    assert "score" not in best_csv.columns  # no all-bins average of R**2/c
    assert not (out / "features").exists()  # removed unless --keep-features
    assert not list(out.rglob("*.partial"))


def test_user_data_route_with_pca_shared_ridge(tiny: SyntheticRecordings, tmp_path: Path) -> None:
    """An assembly file + stimulus CSV (as a user would pass them), PCA on a separate image folder, shared ridge."""
    pca_csv = write_pca_images(tmp_path / "pca", tiny.config, split_seed=5)
    result = run(FitConfig(
        out=tmp_path / "fit", model="rgc_intermediate", input_size=32, width=0.125, data=str(tiny.assembly_path),
        stimuli=str(tiny.stimuli_csv), layers=["conv6"], regions=["V4", "IT"], regression="ridgecv",
        mapping="shared", splits="nayebi", n_splits=2, pca=12, pca_images=str(pca_csv.parent), progress=False,
        keep_features=True,
    ))
    table = result.table
    assert list(dict.fromkeys(table["area"])) == ["V4", "IT"] and len(table) == 2 * 19
    assert "analytic_ceiling" not in table.columns
    assert (table["n_splits"] == 2).all()
    assert np.isfinite(table["score"]).all() and np.isfinite(table["raw_r"]).all()
    assert (result.paths["scores_json"]).is_file()
    kept = MemmapFeatures(tmp_path / "fit" / "features")
    assert kept.get("conv6", 7).shape == (192, 12)  # projected on 12 PCA components
    assert list(kept.steps("conv6")) == list(range(7, 26))  # only the bins' steps
    report = json.loads(result.paths["scores_json"].read_text())
    assert report["config"]["synthetic"] is None and report["model"]["seed"] == 1234


def test_checkpoint_from_train_py(tiny: SyntheticRecordings, tmp_path: Path) -> None:
    """A ConvRNNModule checkpoint: rebuilt from hparams, ``model.`` weights loaded, normalisation kept."""
    from convrnn.training.module import ConvRNNModule

    torch.manual_seed(3)
    module = ConvRNNModule(arch="rgc_intermediate", overrides=dict(input_size=32, width_multiplier=0.125,
                                                                   num_classes=8, times=12, image_off=12))
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 7,
                "datamodule_hyper_parameters": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}, path)
    loaded = load_model(path)
    assert loaded.kind == "checkpoint" and loaded.info["global_step"] == 7 and loaded.mean == (0.5, 0.5, 0.5)
    for key, value in module.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = module.model(x, times=26, image_off=10).logits
        b = loaded.model(x, times=26, image_off=10).logits
    torch.testing.assert_close(a, b)
    result = run(FitConfig(out=tmp_path / "fit", model=str(path), synthetic_dir=str(tiny.root), layers=["conv10"],
                           regions=["V4"], n_splits=2, n_selection_splits=1, pca=5, keep_features=True,
                           progress=False))
    assert result.best_layers["layer"].tolist() == ["conv10"]
    # synthetic data + --pca: the PCA images are rendered with another split seed, disjoint from the stimuli
    pca_table = pd.read_csv(tmp_path / "fit" / "pca_images" / "stimulus_set.csv")
    assert len(pca_table) == 48 and not set(pca_table["stimulus_id"]) & set(tiny.stimulus_set["stimulus_id"])
    assert MemmapFeatures(tmp_path / "fit" / "features").get("conv10", 12).shape == (192, 5)
    assert json.loads(result.paths["scores_json"].read_text())["model"]["kind"] == "checkpoint"
    broken = {k: v for k, v in module.state_dict().items() if "conv5" not in k}
    with pytest.raises(UserError, match="missing"):
        load_state_dict(loaded.model, {"state_dict": broken})
    with pytest.raises(ValueError, match="--weights"):
        load_model(path, weights=path)


def test_zoo_models_are_seeded_and_not_the_teacher(tmp_path: Path) -> None:
    a = load_model("rgc_intermediate", input_size=32, width_multiplier=0.125, seed=5)
    b = load_model("rgc_intermediate", input_size=32, width_multiplier=0.125, seed=5)
    teacher = build_teacher(TINY)
    state_a, state_b, state_t = a.model.state_dict(), b.model.state_dict(), teacher.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not torch.equal(state_a["nodes.conv5.pre.weight"], state_t["nodes.conv5.pre.weight"])
    assert a.model.input_size == 32 and a.kind == "zoo" and a.info["seed"] == 5
    weights = tmp_path / "w.pt"
    torch.save(teacher.state_dict(), weights)
    c = load_model("rgc_intermediate", input_size=32, width_multiplier=0.125, weights=weights)
    assert torch.equal(c.model.state_dict()["nodes.conv5.pre.weight"], state_t["nodes.conv5.pre.weight"])
    assert c.info["weights"] == str(weights)
    with pytest.raises(ValueError, match="teacher"):
        load_model("teacher", input_size=64, teacher_config=TINY)


def test_resolve_areas() -> None:
    hvm = pd.DataFrame({"region": ["V4", "IT", "IT", "IT"], "subregion": ["V4", "pIT", "cIT", "aIT"]})
    assert resolve_areas(hvm) == {"V4": {"region": "V4"}, "pIT": {"subregion": "pIT"},
                                  "cIT/aIT": {"subregion": ["cIT", "aIT"]}}
    assert resolve_areas(hvm, ["IT", "cIT+aIT", "aIT"]) == {"IT": {"region": "IT"},
                                                            "cIT+aIT": {"subregion": ["cIT", "aIT"]},
                                                            "aIT": {"subregion": "aIT"}}
    plain = pd.DataFrame({"region": ["V4", "IT"]})
    assert resolve_areas(plain) == {"V4": {"region": "V4"}, "IT": {"region": "IT"}}
    assert resolve_areas(pd.DataFrame({"neuroid_id": ["a"]})) == {"all": {}}
    with pytest.raises(ValueError, match="unknown area 'MT'"):
        resolve_areas(hvm, ["MT"])


def test_pipeline_re_exports_the_names_of_older_imports() -> None:
    from convrnn.neural import areas, config, inputs

    assert pipeline.FitConfig is config.FitConfig and pipeline.FitResult is config.FitResult
    assert pipeline.resolve_areas is areas.resolve_areas
    assert pipeline.smallest_input_size is inputs.smallest_input_size


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = _cli()
    with pytest.raises(SystemExit):
        cli.main(["--data", "synthetic"])  # --out is required
    with pytest.raises(SystemExit):
        cli.main(["--out", str(tmp_path), "--shared", "--weights-per-bin"])  # mutually exclusive
    capsys.readouterr()
    out = tmp_path / "out"
    cases = [
        (["--data", str(tmp_path / "missing.nc"), "--model", "rgc_intermediate"], "--data: .*missing.nc does not"),
        (["--data", str(ROOT / "README.md"), "--model", "rgc_intermediate"], "--stimuli CSV is required"),
        (["--model", "no_such_model"], "--model: unknown model 'no_such_model'"),
        (["--model", str(tmp_path / "gone.ckpt")], "--model: checkpoint .*gone.ckpt does not exist"),
        (["--model", "rgc_intermediate", "--layers", "conv99", "--input-size", "32"], "--layers: unknown layer"),
        (["--model", "teacher", "--width", "1"], "--model teacher is fixed by the synthetic config"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--device", "gpu0"], "--device: 'gpu0' is not a torch device"),
        (["--times", "20"], r"bins map to model steps outside \[0, 20\)"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device cuda: CUDA is not available on this machine"))
    for argv, message in cases:
        assert cli.main([*argv, "--synthetic-dir", str(tmp_path / "syn"), "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert re.search(f"^error: {message}", err), (argv, err)
        assert "Traceback" not in err
        assert not out.exists() and not (tmp_path / "syn").exists()  # nothing written, nothing generated
    config = cli.config_from_args(cli.build_parser().parse_args(["--out", str(out), "--ceiling-missing",
                                                                 "drop-stimulus"]))
    assert config.ceiling_missing == "drop_stimulus"
    assert cli.config_from_args(cli.build_parser().parse_args(["--out", str(out)])).ceiling_missing is None


def _write_plain(td: TrialData, tiny: SyntheticRecordings, root: Path, bin_order: Sequence[int] | None = None
                 ) -> list[str]:
    """``td`` as an HDF5 array + stimulus, neuroid and bin CSVs (bins stored in ``bin_order``); the CLI arguments."""
    import h5py

    order = list(range(len(td.bins))) if bin_order is None else list(bin_order)
    root.mkdir(parents=True, exist_ok=True)
    stimuli = pd.read_csv(tiny.stimuli_csv).set_index("stimulus_id").loc[td.stimulus_ids].reset_index()
    stimuli.to_csv(root / "stimuli.csv", index=False)
    td.neuroids.to_csv(root / "neuroids.csv", index=False)
    pd.DataFrame(td.bins[order], columns=["time_bin_start", "time_bin_end"]).to_csv(root / "bins.csv", index=False)
    with h5py.File(root / "responses.h5", "w") as f:
        f["rates"] = td.trials[..., order]
    return ["--data", str(root / "responses.h5"), "--key", "rates", "--stimuli", str(root / "stimuli.csv"),
            "--stimuli-images", str(tiny.stimuli_csv.parent), "--neuroids", str(root / "neuroids.csv"),
            "--bins", str(root / "bins.csv")]


def test_plain_arrays_route_equals_the_assembly_route(tiny: SyntheticRecordings, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The same trials as an HDF5 array + CSVs (no brainio file) give the same scores as the assembly file, also
    with the bins stored out of order (they are sorted, with their data)."""
    from convrnn.neural import load_assembly, trial_array

    td = trial_array(load_assembly(tiny.assembly_path))
    shuffled = np.random.default_rng(0).permutation(len(td.bins))
    plain_args = _write_plain(td, tiny, tmp_path, shuffled)
    cli = _cli()
    assert cli.main(plain_args[:plain_args.index("--bins")] + ["--model", "rgc_intermediate",
                                                               "--out", str(tmp_path / "x")]) == 2
    assert "error: --bins is required" in capsys.readouterr().err
    assert cli.main([*plain_args, "--model", "rgc_intermediate", "--input-size", "32", "--width", "0.125",
                     "--layers", "conv5", "--regions", "V4", "--n-splits", "2", "--no-progress",
                     "--out", str(tmp_path / "plain")]) == 0
    assert cli.main(["--data", str(tiny.assembly_path), "--stimuli", str(tiny.stimuli_csv), "--model",
                     "rgc_intermediate", "--input-size", "32", "--width", "0.125", "--layers", "conv5", "--regions",
                     "V4", "--n-splits", "2", "--no-progress", "--out", str(tmp_path / "nc")]) == 0
    plain, nc = pd.read_csv(tmp_path / "plain" / "scores.csv"), pd.read_csv(tmp_path / "nc" / "scores.csv")
    assert len(plain) == 19 and np.isfinite(plain["ceiling"]).all()
    pd.testing.assert_frame_equal(plain, nc)


def test_nayebi_r_tilde_of_the_best_layer(tiny: SyntheticRecordings, tmp_path: Path) -> None:
    """--nayebi-seeds adds brainmodel_utils' r~ for the best layer: ~1 for the teacher at its true layer."""
    out = tmp_path / "fit"
    assert _cli().main(["--data", "synthetic", "--synthetic-dir", str(tiny.root), "--model", "teacher", "--layers",
                        "conv5", "--regions", "V4", "--n-splits", "3", "--nayebi-seeds", "3", "--no-progress",
                        "--out", str(out)]) == 0
    table = pd.read_csv(out / "scores.csv")
    assert "nayebi_r" in table.columns and len(table) == 19
    reliable = table[table["reliable"]]
    assert len(reliable) >= 17 and np.isfinite(reliable["nayebi_r"]).all()
    # the teacher's features carry the sites' whole signal: noise-corrected consistency close to 1
    assert reliable["nayebi_r"].median() > 0.9, reliable["nayebi_r"].round(3).tolist()
    # r~ corrects the raw r upwards by both reliabilities
    assert (reliable["nayebi_r"] > reliable["raw_r"]).mean() > 0.9
    best = pd.read_csv(out / "best_layers.csv")
    assert np.isfinite(best["mean_nayebi_r_ceiled_bins"]).all()
    assert "nayebi_s" in json.loads((out / "scores.json").read_text())["timings"]


def test_default_input_size_fits_the_model(tiny: SyntheticRecordings, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``--model rgc_shallow --data synthetic``, the obvious first try: the shallow models need more than the
    synthetic data's size, so the default is raised to the smallest size they build at; a too-small
    ``--input-size`` stops at once, naming the size that works."""
    cli = _cli()
    out = tmp_path / "fit"
    args = ["--model", "rgc_shallow", "--data", "synthetic", "--synthetic-dir", str(tiny.root), "--out", str(out)]
    assert cli.main([*args, "--input-size", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --input-size 64 is too small for rgc_shallow: it needs at least 65 px")
    assert "Traceback" not in err and not out.exists()
    with caplog.at_level("WARNING"):
        assert cli.main([*args, "--layers", "conv3", "--regions", "V4", "--n-splits", "2", "--no-progress"]) == 0
    assert "rgc_shallow needs inputs of at least 65 px" in caplog.text
    report = json.loads((out / "scores.json").read_text())
    assert report["model"]["overrides"]["input_size"] == 65 and report["model"]["name"] == "rgc_shallow"
    # a model that builds at the data's size is built at it (the synthetic data's 32 px here, not 224)
    sizes: list[int] = []

    def stop(model: torch.nn.Module, *args: object, **kwargs: object) -> None:
        sizes.append(model.input_size)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "extract_features", stop)
    for model in ("rgc_intermediate", "rgc_shallow"):
        with pytest.raises(KeyboardInterrupt):
            run(FitConfig(out=tmp_path / model, model=model, synthetic_dir=str(tiny.root), progress=False))
    assert sizes == [32, 65]
    # asking for other synthetic data in a folder that holds these: refused before anything runs
    assert cli.main([*args, "--synthetic-images", "1"]) == 2
    assert "holds synthetic recordings with another config" in capsys.readouterr().err


def test_smallest_input_size_is_where_the_model_starts_to_build() -> None:
    """At full width (the search builds at 0.125): the answer builds and one pixel less does not."""
    import convrnn

    assert smallest_input_size("rgc_intermediate") == 1  # SAME padding throughout
    size = smallest_input_size("rgc_shallow")
    convrnn.build_model("rgc_shallow", input_size=size)
    with pytest.raises(ValueError, match="input too small"):
        convrnn.build_model("rgc_shallow", input_size=size - 1)


@pytest.mark.parametrize("problem, message", [
    ("one_repetition", "at least 2 repetitions per stimulus; the data have 1"),
    ("no_valid_trial", r"1 \(stimulus, neuroid, bin\) entries have no valid trial"),
    ("damaged_nc", "damaged.nc: cannot read this file; it is damaged"),
])
def test_bad_data_stop_before_the_model_runs(tiny: SyntheticRecordings, tmp_path: Path, problem: str, message: str,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial problems scoring would hit, and a truncated file, end the command with ``error: ...`` (exit 2), before
    any feature is extracted and without creating --out."""
    from convrnn.neural import load_assembly, trial_array

    def no_model_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("features were extracted before the data were checked")

    monkeypatch.setattr(pipeline, "extract_features", no_model_run)
    td = trial_array(load_assembly(tiny.assembly_path))
    if problem == "one_repetition":
        td.trials = td.trials[:1]
    elif problem == "no_valid_trial":
        td.trials[:, 5, 2, 3] = np.nan
    argv = _write_plain(td, tiny, tmp_path / "data")
    if problem == "damaged_nc":
        damaged = tmp_path / "damaged.nc"
        damaged.write_bytes(tiny.assembly_path.read_bytes()[:5000])
        argv = ["--data", str(damaged), "--stimuli", str(tiny.stimuli_csv)]
    out = tmp_path / "fit"
    assert _cli().main([*argv, "--model", "rgc_intermediate", "--input-size", "32", "--width", "0.125",
                        "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(f"^error: .*{message}", err), err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("failure, out_exists, generate_data", [
    (RuntimeError, False, False), (KeyboardInterrupt, False, False), (KeyboardInterrupt, True, False),
    (RuntimeError, True, True),
])
def test_a_failed_run_leaves_nothing_behind(tiny: SyntheticRecordings, tmp_path: Path, failure: type,
                                            out_exists: bool, generate_data: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash (or Ctrl-C) during scoring, after the features were written: the features are removed, and so is
    --out when the run created it; a folder that was there before keeps its other files but loses the synthetic
    data this run generated in it (``generate_data``)."""
    seen: list[Path] = []

    def crash(features: MemmapFeatures, *args: object, **kwargs: object) -> None:
        seen.append(Path(features.root))
        assert list(Path(features.root).rglob("step_*.npy"))  # the features are on disk at this point
        raise failure("scoring failed")

    monkeypatch.setattr(pipeline, "score_model", crash)
    out = tmp_path / "fit"
    if out_exists:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    data = dict(synthetic=TINY) if generate_data else dict(synthetic_dir=str(tiny.root))
    with pytest.raises(failure, match="scoring failed"):
        run(FitConfig(out=out, model="teacher", layers=["conv5"], regions=["V4"], n_splits=2, progress=False, **data))
    assert seen and not seen[0].exists()
    if out_exists:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()
    assert (tiny.root / "params.json").is_file()  # data that were there before are kept


def test_the_command_exits_2_with_one_line(tmp_path: Path) -> None:
    """The real process (``python -m convrnn.neural.cli``, what ``convrnn-fit-neural`` runs), from outside the repo:
    a user error is one ``error:`` line on stderr and exit status 2."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "convrnn.neural.cli", "--model", "no_such_model", "--out",
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: --model: unknown model 'no_such_model'") and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_cli_is_generated_from_fitconfig(tmp_path: Path) -> None:
    """Defaults come from FitConfig itself; a YAML --config sets fields by name and later flags override it;
    --shared / --weights-per-bin are aliases of --mapping."""
    from dataclasses import fields

    cli = _cli()
    out = tmp_path / "out"
    parse = cli.build_parser().parse_args
    assert cli.config_from_args(parse(["--out", str(out)])) == FitConfig(out=out)
    for field in fields(FitConfig):  # every field but the nested synthetic config has a flag
        if field.name != "synthetic":
            assert any(a.dest == field.name for a in cli.build_parser()._actions), field.name
    assert cli.config_from_args(parse(["--out", str(out), "--shared"])).mapping == "shared"
    assert cli.config_from_args(parse(["--out", str(out), "--mapping", "shared"])).mapping == "shared"
    assert cli.config_from_args(parse(["--out", str(out), "--weights-per-bin"])).mapping == "per_bin"
    yaml = tmp_path / "scoring.yaml"
    yaml.write_text(f"out: {out}\nn_components: 7\nlayers: [conv5, conv6]\nmapping: shared\nkeep_features: true\n"
                    "ceiling_missing: drop_stimulus\nregression: ridgecv\n")
    config = cli.config_from_args(parse(["--config", str(yaml), "--n-components", "9"]))
    assert config == FitConfig(out=out, n_components=9, layers=["conv5", "conv6"], mapping="shared",
                               keep_features=True, ceiling_missing="drop_stimulus", regression="ridgecv")
    yaml.write_text("out: x\nn_components: many\n")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config", str(yaml)])
    assert exc.value.code == 2


def test_yaml_config_with_a_nested_synthetic_mapping_runs(tiny: SyntheticRecordings, tmp_path: Path) -> None:
    """A YAML --config holding the synthetic data's config as a ``synthetic:`` mapping (the same config as the
    recordings in --synthetic-dir, so they are reused) and list-valued fields runs end to end."""
    import dataclasses

    import yaml

    out = tmp_path / "fit"
    synthetic = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY).items()}
    path = tmp_path / "scoring.yaml"
    path.write_text(yaml.safe_dump({"out": str(out), "model": "teacher", "synthetic": synthetic,
                                    "synthetic_dir": str(tiny.root), "layers": ["conv5"], "regions": ["V4"],
                                    "n_splits": 2, "progress": False, "threads": 0}))
    assert _cli().main(["--config", str(path)]) == 0
    table = pd.read_csv(out / "scores.csv")
    assert set(table["layer"]) == {"conv5"} and set(table["area"]) == {"V4"} and (table["n_splits"] == 2).all()
