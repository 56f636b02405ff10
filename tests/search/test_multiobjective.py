"""A multi-objective study (accuracy, size, neural score): Pareto front in status, export --pareto, report."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import search_config, write_config

import convrnn
from convrnn.search.cli import main as search_main

# the synthetic V4/IT recordings at their smallest: 96 stimuli (1 image x 32 objects x 3 levels), 20 sites
NEURAL = {"synthetic": {"images_per_object_per_level": 1, "n_categories": 4, "objects_per_category": 8,
                        "sites": {"V4": 8, "pIT": 4, "cIT": 4, "aIT": 4}, "repetitions": 4},
          "fit": {"n_components": 4, "n_splits": 2, "layers": ["conv5", "conv8"]}}


@pytest.mark.slow
def test_multi_objective_with_the_neural_objective(tmp_path: Path, synthetic_root: Path,
                                                   capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent))
    cfg = search_config(tmp_path, synthetic_root, name="multi", objectives=["val_top1", "params", "neural"],
                        neural=NEURAL)
    path = write_config(tmp_path, cfg)
    assert search_main(["run", "--config", str(path), "--n-trials", "2"]) == 0
    study = optuna.load_study(study_name="multi", storage=f"sqlite:///{tmp_path / 'runs' / 'multi' / 'study.db'}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.user_attrs.get("error") for t in trials]
    for t in trials:
        acc, params, neural = t.values
        assert 0 <= acc <= 1 and -1 <= neural <= 1.5
        model = convrnn.build_model(str(tmp_path / "runs" / "multi" / t.user_attrs["trial_dir"] / "model.yaml"),
                                    **cfg["model"]["overrides"])
        assert params == sum(p.numel() for p in model.parameters())  # the params objective, counted again
        assert t.user_attrs["neural_seconds"] > 0
    capsys.readouterr()

    assert search_main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "neural (maximize)" in out and "params (minimize)" in out
    assert search_main(["export", "--config", str(path), "--pareto", "--out", str(tmp_path / "front")]) == 0
    front = sorted((tmp_path / "front").glob("trial_*.yaml"))
    assert len(front) == len(study.best_trials) >= 1
    assert yaml.safe_load(front[0].read_text())["nodes"]
    assert search_main(["report", "--config", str(path), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "pareto.png").is_file()
