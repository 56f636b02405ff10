"""Workers on SQLite: a search finishes N trials, a trial that raises becomes FAIL with its log, pruning
prunes, status and report read the study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import run_search, search_config, write_config

from convrnn.search.cli import main as search_main


def _study(cfg: dict) -> optuna.Study:
    db = Path(cfg["study"]["root"]) / cfg["study"]["name"] / "study.db"
    return optuna.load_study(study_name=cfg["study"]["name"], storage=f"sqlite:///{db}")


@pytest.mark.slow
def test_sqlite_search_finishes_n_trials_and_survives_a_failing_trial(tmp_path: Path, synthetic_root: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    cfg = search_config(tmp_path, synthetic_root, name="tiny")
    cfg["space"]["cell"]["type"] = {"choices": ["rgc", "ugrnn"]}  # the conditional space, per-branch names
    cfg["space"]["cell"]["ugrnn"] = {}
    cfg["trial"]["config"]["trainer"]["callbacks"] = [
        {"class_path": "search_helpers.RaiseInTrial", "init_args": {"trial": 0, "step": 1}}]
    path = write_config(tmp_path, cfg)
    proc = run_search("run", "--config", str(path), "--n-trials", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = _study(cfg)
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1, states
    assert sorted(t.number for t in trials) == list(range(4))
    failed = trials[0]
    assert failed.state == TrialState.FAIL
    assert "RuntimeError: injected failure in trial 0" in failed.user_attrs["error"]
    run_dir = tmp_path / "runs" / "tiny"
    log = run_dir / failed.user_attrs["log"]
    assert "injected failure in trial 0" in log.read_text()  # the log is kept
    for t in trials[1:]:
        folder = run_dir / t.user_attrs["trial_dir"]
        result = json.loads((folder / "result.json").read_text())
        assert result["state"] == "complete" and result["global_step"] == 4
        assert t.values[0] == pytest.approx(result["value"])  # the objective comes from result.json
        assert sorted(int(s) for s in result["intermediate"]) == [2, 4]
        assert t.intermediate_values == {int(k): v for k, v in result["intermediate"].items()}
        assert (folder / "model.yaml").is_file() and (folder / "train.yaml").is_file()
        assert t.user_attrs["params"] > 0 and t.user_attrs["fit_seconds"] > 0
        assert any(k.startswith(f"{t.params['cell.type']}.") for k in t.params) or t.params["cell.type"] == "ugrnn"

    # resuming the same command with the study complete runs nothing more
    again = run_search("run", "--config", str(path), "--n-trials", "3")
    assert again.returncode == 0 and len(_study(cfg).get_trials()) == 4

    capsys.readouterr()
    assert search_main(["status", "--config", str(path)]) == 0
    status = capsys.readouterr().out
    assert "COMPLETE 3" in status and "FAIL 1" in status
    assert "injected failure" in status

    assert search_main(["report", "--config", str(path), "--out", str(tmp_path / "report")]) == 0
    for name in ("trials.png", "edges.png", "accuracy_vs_params.png", "trials.csv", "summary.json"):
        assert (tmp_path / "report" / name).is_file(), name
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["states"]["COMPLETE"] == 3
    import pandas as pd

    table = pd.read_csv(tmp_path / "report" / "trials.csv")
    assert list(table["state"]) == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]


@pytest.mark.slow
def test_a_search_designed_to_prune_prunes(tmp_path: Path, synthetic_root: Path) -> None:
    """Two earlier trials reported 0.99 at every step; the median pruner must stop the new trial at step 2."""
    cfg = search_config(tmp_path, synthetic_root, name="prune",
                        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
    path = write_config(tmp_path, cfg)
    run_dir = tmp_path / "runs" / "prune"
    run_dir.mkdir(parents=True)
    study = optuna.create_study(study_name="prune", storage=f"sqlite:///{run_dir / 'study.db'}",
                                direction="maximize")
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.99, intermediate_values={2: 0.99, 4: 0.99}))
    proc = run_search("run", "--config", str(path), "--n-trials", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trial = _study(cfg).get_trials()[2]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["pruned_at_step"] == 2 and trial.user_attrs["steps"] == 2  # stopped promptly
    result = json.loads((run_dir / trial.user_attrs["trial_dir"] / "result.json").read_text())
    assert result["state"] == "pruned" and list(result["intermediate"]) == ["2"]


@pytest.mark.slow
def test_a_ddp_trial_under_torchrun_is_pruned_on_every_rank(tmp_path: Path, synthetic_root: Path) -> None:
    """trial.launcher = torchrun with 2 CPU processes (gloo): rank 0 reports, both ranks stop at step 2."""
    import sys

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    cfg = search_config(tmp_path, synthetic_root, name="ddp",
                        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    cfg["trial"]["launcher"] = [str(torchrun), "--standalone", "--nproc_per_node=2", "--no-python"]
    cfg["trial"]["config"]["trainer"].update(devices=2, strategy="ddp")
    path = write_config(tmp_path, cfg)
    run_dir = tmp_path / "runs" / "ddp"
    run_dir.mkdir(parents=True)
    study = optuna.create_study(study_name="ddp", storage=f"sqlite:///{run_dir / 'study.db'}",
                                direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.99, intermediate_values={2: 0.99, 4: 0.99}))
    proc = run_search("run", "--config", str(path), "--n-trials", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trial = _study(cfg).get_trials()[1]
    assert trial.state == TrialState.PRUNED, trial.user_attrs.get("error")
    result = json.loads((run_dir / trial.user_attrs["trial_dir"] / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_step"] == 2 and result["state"] == "pruned"
    assert list(trial.intermediate_values) == [2]  # one report per validation, from rank 0 only
