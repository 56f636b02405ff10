"""The search space and config: bad input fails before any trial, naming the key; sampling and graphs."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import optuna
import pytest
from search_helpers import run_search, search_config, write_config

import convrnn
from convrnn.errors import UserConfigError, UserError
from convrnn.search.cli import main as search_main
from convrnn.search.config import load_config, model_overrides
from convrnn.search.space import SearchSpace, edge_name, load_base_graph


def test_bad_knob_fails_before_the_first_trial(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = search_config(tmp_path, synthetic_root, name="bad")
    cfg["space"]["cell"]["rgc"]["tau_kernal"] = {"choices": [3, 5]}
    proc = run_search("run", "--config", str(write_config(tmp_path, cfg)), "--n-trials", "1", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error: space.cell.rgc.tau_kernal: unknown rgc option" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # no study, no trial folder


def test_malformed_search_yaml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "search.yaml"
    path.write_text("study:\n  name: [x\nmodel: {}\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}, line \d+, column \d+: search config is not "
                                        r"valid YAML"):
        load_config(path)
    path.write_text("- study\n")
    with pytest.raises(UserError, match="search.yaml: a search config must be a mapping"):
        load_config(path)
    path.write_text("study: {name: [x\n")
    assert search_main(["status", "--config", str(path)]) == 2  # what convrnn-search / search.py print
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}, line ") and "Traceback" not in err


def test_malformed_base_train_config_names_the_key_and_file(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = search_config(tmp_path, synthetic_root)
    bad = tmp_path / "train.yaml"
    bad.write_text("model: {arch: x\n")
    cfg["trial"]["base_config"] = str(bad)
    with pytest.raises(UserConfigError, match=rf"^trial.base_config: {re.escape(str(bad))}, line \d+") as exc:
        load_config(data=cfg, check_build=False)
    assert exc.value.key == "trial.base_config"


def _mutate(cfg: dict, path: str, value: object) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return cfg


@pytest.mark.parametrize(("path", "value", "key", "why"), [
    ("space.cell.type", {"choices": ["rgc", "gruu"]}, "space.cell.type", "unknown cell type 'gruu'"),
    ("space.cell.rgc.tau_offset", {"low": 1.5, "high": 0.5}, "space.cell.rgc.tau_offset", "empty range"),
    ("space.cell.rgc.tau_kernel", {"choices": []}, "space.cell.rgc.tau_kernel", "non-empty"),
    ("space.cell.rgc.tau_separable", {"choices": [1, 0]}, "space.cell.rgc.tau_separable", "switch"),
    ("space.cell.rgc.gate_multiplier", {"tied_to": "gate_ofset"}, "space.cell.rgc.gate_multiplier.tied_to",
     "not a knob"),
    ("space.feedback.candidates", [{"source": "conv12", "target": "conv5"}], "space.feedback.candidates[0].source",
     "not a node"),
    ("space.feedback.candidates", [{"source": "conv5", "target": "conv9"}], "space.feedback.candidates[0]",
     "higher node"),
    ("space.feedback.nodes", ["conv5", "conv99"], "space.feedback.nodes[1]", "not a node"),
    ("space.training.learning_rate", {"low": 0.1, "high": 1.0}, "space.training.learning_rate", "unknown"),
    ("space.training.lr", {"low": 0.0, "high": 1.0, "log": True}, "space.training.lr.low", "log range"),
    ("space.cell.lstm", {}, "space.cell.lstm", "never picks"),
    ("pruner.name", "medain", "pruner.name", "unknown pruner"),
    ("sampler.n_startup_trails", 3, "sampler.n_startup_trails", "not an argument"),
    ("objectives", ["val_top1", "size"], "objectives[1]", "unknown objective"),
    ("study.storage", "postgresql://me:hunter2@db/x", "study.storage", "holds a password"),
    ("trial.val_every_n_steps", 3, "trial.val_every_n_steps", "must divide"),
])
def test_bad_space_names_the_key(tmp_path: Path, synthetic_root: Path, path: str, value: object, key: str,
                                 why: str) -> None:
    cfg = _mutate(search_config(tmp_path, synthetic_root), path, value)
    with pytest.raises(UserConfigError) as info:
        load_config(data=cfg)
    assert info.value.key == key
    assert why in str(info.value)
    assert "hunter2" not in str(info.value)


def test_branch_names_and_graphs(tmp_path: Path, synthetic_root: Path) -> None:
    """Conditional cell type: each branch has its own parameter names; sampled graphs build and train."""
    cfg = search_config(tmp_path, synthetic_root)
    cfg["space"]["cell"]["type"] = {"choices": ["rgc", "ugrnn"]}
    cfg["space"]["cell"]["ugrnn"] = {}
    config = load_config(data=cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), direction="maximize")
    seen = set()
    for _ in range(8):
        trial = study.ask()
        point = config.space.sample(trial)
        seen.add(point.cell_type)
        names = set(trial.params)
        other = {"rgc": "ugrnn", "ugrnn": "rgc"}[point.cell_type]
        assert not any(n.startswith(f"{other}.") for n in names)
        assert {edge_name(s, t) for s, t in config.space.edge_candidates} <= names
        assert len(point.edges) <= 5
        if point.cell_type == "rgc":
            assert point.cell_options["tau_multiplier"] == -point.cell_options["tau_offset"]  # tied
        graph = config.space.model_graph(point)
        model = convrnn.graph.model.ConvRNN(convrnn.graph.spec.resolve_graph(graph, **model_overrides(config)))
        assert model.config["feedback"] == [{"source": s, "target": t} for s, t in point.edges]
        study.tell(trial, 0.5)
    assert seen == {"rgc", "ugrnn"}


def test_edge_threshold_and_cap() -> None:
    base = load_base_graph(str(Path(convrnn.__file__).parent / "configs" / "models" / "rgc_intermediate.yaml"))
    space = SearchSpace({"feedback": {"nodes": ["conv5", "conv6", "conv7"], "max_edges": 2, "threshold": 0.5}},
                        base)
    assert space.edge_candidates == [("conv6", "conv5"), ("conv7", "conv5"), ("conv7", "conv6")]
    values = {"edge.conv6->conv5": 0.6, "edge.conv7->conv5": 0.9, "edge.conv7->conv6": 0.7}
    assert space.pick_edges(values) == [("conv7", "conv5"), ("conv7", "conv6")]  # the two largest, in order
    values["edge.conv7->conv6"] = 0.2
    assert space.pick_edges(values) == [("conv6", "conv5"), ("conv7", "conv5")]


def test_the_paper_scale_config_loads_and_its_branches_build() -> None:
    """configs/search/imagenet_rgc.yaml (not run in CI): valid, and a sampled point of each branch builds."""
    from search_helpers import REPO

    config = load_config(REPO / "configs" / "search" / "imagenet_rgc.yaml", check_build=False)
    assert sorted(config.space.branches) == ["gru", "lstm", "rgc", "ugrnn"]
    assert len(config.space.edge_candidates) == 21 and config.space.max_edges == 5
    assert config.launcher[0] == "torchrun" and config.pruner["name"] == "hyperband"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    for kind in ("rgc", "lstm", "ugrnn", "gru"):
        study.enqueue_trial({"cell.type": kind})
        trial = study.ask()
        point = config.space.sample(trial)
        assert point.cell_type == kind and len(point.edges) <= 5
        graph = config.space.model_graph(point)
        try:
            convrnn.graph.model.ConvRNN(convrnn.graph.spec.resolve_graph(
                graph, input_size=64, width_multiplier=0.125, num_classes=10))
        except (ValueError, ZeroDivisionError) as exn:  # an invalid random combination is a FAIL trial, not a bug
            assert kind == "rgc", exn
        study.tell(trial, 0.0)
