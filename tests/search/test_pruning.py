"""The pruning callback with Optuna's median, successive-halving and Hyperband pruners: reports at global
steps, stops when the pruner says so (the decision goes through the strategy's broadcast), writes result.json."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from convrnn.search.pruning import OptunaPruningCallback, build_pruner, check_pruner_spec


class FakeTrainer(SimpleNamespace):
    """What the callback reads from a Lightning Trainer (one process: rank 0, broadcast = identity)."""

    def __init__(self) -> None:
        super().__init__(is_global_zero=True, sanity_checking=False, global_step=0, callback_metrics={},
                         should_stop=False, world_size=1, broadcasts=[])
        self.strategy = SimpleNamespace(broadcast=lambda obj, src=0: self.broadcasts.append(obj) or obj)


SPECS = {
    "median": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0},
    "successive_halving": {"name": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    "hyperband": {"name": "hyperband", "min_resource": 1, "max_resource": 8, "reduction_factor": 2},
}


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_callback_prunes_a_bad_trial(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = check_pruner_spec(SPECS[kind])
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setenv("CONVRNN_SEARCH_STORAGE", url)
    study = optuna.create_study(study_name="p", storage=url, direction="maximize", pruner=build_pruner(spec),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):  # good trials that went through the pruner (it keeps its rung records in the storage)
        t = study.ask()
        for step in (1, 2, 4, 8):
            t.report(0.9, step)
            assert not t.should_prune()
        study.tell(t, 0.9)
    bad = study.ask()
    callback = OptunaPruningCallback("p", bad.number, str(tmp_path / "result.json"), pruner=spec)
    trainer = FakeTrainer()
    callback.on_fit_start(trainer, None)
    for step in (1, 2, 4, 8):
        trainer.global_step = step
        trainer.callback_metrics = {"val/top1": torch.tensor(0.1)}
        callback.on_validation_end(trainer, None)
        if trainer.should_stop:
            break
    callback.on_fit_end(trainer, None)
    assert trainer.should_stop and trainer.broadcasts[-1] is True
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["state"] == "pruned" and result["pruned_at_step"] == trainer.global_step
    assert result["value"] == pytest.approx(0.1)
    frozen = study.get_trials()[-1]
    assert frozen.intermediate_values == {int(k): v for k, v in result["intermediate"].items()}


def test_callback_keeps_a_good_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setenv("CONVRNN_SEARCH_STORAGE", url)
    spec = SPECS["median"]
    study = optuna.create_study(study_name="p", storage=url, direction="maximize", pruner=build_pruner(spec))
    for v in (0.2, 0.3, 0.4):
        study.add_trial(optuna.trial.create_trial(value=v, intermediate_values={2: v, 4: v}))
    trial = study.ask()
    callback = OptunaPruningCallback("p", trial.number, str(tmp_path / "result.json"), pruner=spec)
    trainer = FakeTrainer()
    callback.on_fit_start(trainer, None)
    for step, v in ((2, 0.5), (4, 0.6)):
        trainer.global_step = step
        trainer.callback_metrics = {"val/top1": torch.tensor(v)}
        callback.on_validation_end(trainer, None)
    callback.on_fit_end(trainer, None)
    result = json.loads((tmp_path / "result.json").read_text())
    assert not trainer.should_stop
    assert result["state"] == "complete" and result["value"] == pytest.approx(0.6)
    assert result["best"] == pytest.approx(0.6) and result["global_step"] == 4
