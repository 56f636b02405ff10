"""Export: the median of known trials equals values computed by hand; best and median YAMLs build and train
one step with train.py's code path."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from search_helpers import base_train_config, search_config, write_config

import convrnn
from convrnn.search.cli import main as search_main
from convrnn.search.config import load_config, model_overrides

# four finished trials with known values; ranked by val_top1: trial 1 (0.9), trial 2 (0.7), trial 0 (0.5),
# trial 3 (0.1, outside the top 3)
VALUES = [0.5, 0.9, 0.7, 0.1]
KNOWN = {
    "rgc.tau_kernel": [3, 7, 5, 7],
    "rgc.gate_kernel": [5, 5, 3, 7],
    "rgc.tau_separable": [True, False, False, True],
    "rgc.tau_nonlinearity": ["tanh", "tanh", "sigmoid", "sigmoid"],
    "rgc.tau_offset": [0.6, 1.2, 0.9, 1.5],
    "rgc.gate_offset": [0.55, 0.75, 1.45, 0.5],
    "train.lr": [0.01, 0.05, 0.02, 0.1],
    # edges: conv6->conv5 in trials 0, 2 (2 of the top 3: kept); conv7->conv5 in trial 1 only (dropped)
    "edge.conv6->conv5": [0.8, 0.1, 0.6, 0.9],
    "edge.conv7->conv5": [0.2, 0.9, 0.3, 0.9],
}


def _params(config, i: int) -> dict:
    params = {}
    for knob in config.space.knobs():
        if knob.name in KNOWN:
            params[knob.name] = KNOWN[knob.name][i]
        elif knob.name.startswith("edge."):
            params[knob.name] = 0.0  # every other edge out
        else:
            params[knob.name] = knob.choices[0] if knob.kind == "choice" else knob.low
    return params


@pytest.mark.slow
def test_export_median_and_best(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = search_config(tmp_path, synthetic_root, name="exp")
    path = write_config(tmp_path, cfg)
    config = load_config(path)
    config.run_dir.mkdir(parents=True)
    study = optuna.create_study(study_name="exp", storage=f"sqlite:///{config.run_dir / 'study.db'}",
                                direction="maximize")
    for i, value in enumerate(VALUES):
        study.enqueue_trial(_params(config, i))
        trial = study.ask()
        point = config.space.sample(trial)
        trial.set_user_attr("edges", [list(e) for e in point.edges])
        study.tell(trial, value)

    # the report's edge statistics (Fig. 4b), by hand: conv6->conv5 is in trials 0, 2, 3 (0.5, 0.7, 0.1) and
    # not in trial 1 (0.9); conv7->conv5 is in trials 1, 3 (0.9, 0.1) and not in 0, 2 (0.5, 0.7)
    from convrnn.search.report import edge_statistics

    stats = edge_statistics(config, study.get_trials(), window=2)
    assert stats["conv6->conv5"]["median_with_minus_without"] == pytest.approx(0.5 - 0.9)
    assert stats["conv7->conv5"]["median_with_minus_without"] == pytest.approx(0.5 - 0.6)
    assert stats["conv6->conv5"]["fraction_window"] == pytest.approx([1.0, 0.5, 0.5, 1.0])
    assert stats["conv9->conv8"]["median_with_minus_without"] is None  # never included

    median_yaml, best_yaml = tmp_path / "median.yaml", tmp_path / "best.yaml"
    assert search_main(["export", "--config", str(path), "--how", "median", "--top-k", "3",
                        "--out", str(median_yaml)]) == 0
    assert search_main(["export", "--config", str(path), "--how", "best", "--out", str(best_yaml)]) == 0

    # by hand, over trials 1, 2, 0
    top = [1, 2, 0]
    expect = {
        "tau_kernel": 5,  # median of {7, 5, 3}
        "gate_kernel": 5,  # median of {5, 3, 5}
        "tau_separable": False,  # False, False, True
        "tau_nonlinearity": "tanh",  # tanh, sigmoid, tanh
        "tau_offset": 0.9,  # median of {1.2, 0.9, 0.6}
        "tau_multiplier": -0.9,  # tied: -tau_offset
        "gate_offset": 0.75,  # median of {0.75, 1.45, 0.55}
        "gate_multiplier": -0.75,
    }
    assert statistics.median(KNOWN["train.lr"][i] for i in top) == 0.02
    graph = yaml.safe_load(median_yaml.read_text())
    assert "training: lr=0.02" in median_yaml.read_text()
    cell = graph["nodes"]["conv5"]["cell"]
    for key, value in expect.items():
        assert cell[key] == pytest.approx(value) if isinstance(value, float) else cell[key] == value, key
    assert graph["feedback"] == [{"source": "conv6", "target": "conv5"}]

    best = yaml.safe_load(best_yaml.read_text())
    assert best["nodes"]["conv5"]["cell"]["tau_kernel"] == 7 and best["nodes"]["conv5"]["cell"]["tau_offset"] == 1.2
    assert best["feedback"] == [{"source": "conv7", "target": "conv5"}]

    # both build, and train one step through train.py's entry point
    from convrnn.training.cli import main as train_main

    base = yaml.safe_load(base_train_config(tmp_path / "train_base.yaml", synthetic_root).read_text())
    for exported in (median_yaml, best_yaml):
        model = convrnn.build_model(str(exported), **model_overrides(config))
        assert sum(p.numel() for p in model.parameters()) > 0
        train = dict(base)
        train["model"] = {**base["model"], "arch": str(exported), "overrides": model_overrides(config)}
        train["trainer"] = {"accelerator": "cpu", "devices": 1, "max_steps": 1, "max_epochs": -1,
                            "limit_val_batches": 0, "enable_model_summary": False, "num_sanity_val_steps": 0}
        train["run"] = {**base["run"], "root": str(tmp_path / "train"), "name": exported.stem,
                        "progress_bar": "none", "wandb": "disabled"}
        cfg_path = tmp_path / f"train_{exported.stem}.yaml"
        cfg_path.write_text(yaml.safe_dump(train))
        assert train_main(["fit", "--config", str(cfg_path)]) in (0, None)
        ckpt = torch.load(tmp_path / "train" / exported.stem / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 1


def test_export_refuses_an_empty_study(tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_config(tmp_path, search_config(tmp_path, synthetic_root, name="empty"))
    config = load_config(path)
    config.run_dir.mkdir(parents=True)
    optuna.create_study(study_name="empty", storage=f"sqlite:///{config.run_dir / 'study.db'}",
                        direction="maximize")
    assert search_main(["export", "--config", str(path), "--how", "best", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "error: study 'empty' has no COMPLETE trial yet" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()
