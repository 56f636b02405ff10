"""Checkpoints describe their own model, and a checkpoint that would run code is refused unless trusted.

Covers ``convrnn.checkpoint`` (the one loader), ``train.py``'s checkpoints (resolved graph inside, fine-tuning
from a checkpoint, refusing to resume into an edited graph), ``--trainer.default_root_dir``, and the
untrusted-pickle rule on every path: the Python API, ``train.py --ckpt_path``, ``train.py --model.arch`` and
``fit_neural.py --model``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import REPO, run_train, subprocess_env, tiny_config, write_config

import convrnn
from convrnn.checkpoint import UntrustedCheckpointError, load_model_checkpoint, save_model_checkpoint

pytestmark = pytest.mark.slow


class CreatesFile:
    """Unpickling this object creates ``path`` (what a malicious checkpoint could do, made harmless)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


def _images(size: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_model_checkpoint_round_trip_loads_with_the_safe_unpickler(tmp_path: Path) -> None:
    model = convrnn.build_model("rgc_intermediate", input_size=32, width_multiplier=0.125, num_classes=5,
                                decoder="tmaxconf").eval()
    model.decoder_beta.fill_(0.3717)
    path = save_model_checkpoint(model, tmp_path / "m.pt", meta={"source": "test"})
    payload = torch.load(path, weights_only=True)  # plain types only
    assert payload["format"] == "convrnn.model" and payload["meta"] == {"source": "test"}
    assert not list(tmp_path.glob(".m.pt.tmp*"))  # the temp file was renamed into place
    loaded = convrnn.build_model(path)
    assert loaded.config == model.config and float(loaded.decoder_beta) == pytest.approx(0.3717)
    with torch.no_grad():
        a, b = model(_images()).logits, loaded(_images()).logits
    assert torch.equal(a, b)
    assert torch.equal(model.decode(a), loaded.decode(b))
    neural = load_model_checkpoint(path, presentation="neural")
    assert (neural.times, neural.image_off) == (26, 10)
    with pytest.raises(convrnn.graph.spec.ConfigError, match="width_multiplier"):
        load_model_checkpoint(path, width_multiplier=0.25)


def _copy_yaml_tree(tmp_path: Path) -> Path:
    """ugrnn_intermediate.yaml and the backbone it extends, in a folder of their own."""
    folder = tmp_path / "graphs"
    (folder / "backbones").mkdir(parents=True)
    src = REPO / "configs" / "models"
    shutil.copy(src / "ugrnn_intermediate.yaml", folder / "my_ugrnn.yaml")
    shutil.copy(src / "backbones" / "intermediate.yaml", folder / "backbones" / "intermediate.yaml")
    return folder / "my_ugrnn.yaml"


def test_training_checkpoint_rebuilds_without_its_yaml(tmp_path: Path, synthetic_root: Path) -> None:
    graph = _copy_yaml_tree(tmp_path)
    cfg = tiny_config(synthetic_root, tmp_path / "runs", trainer={"max_steps": 1, "limit_val_batches": 0})
    cfg["model"]["arch"] = str(graph)
    done = run_train(["fit", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)
    assert raw["convrnn"]["format"] == "convrnn.lightning"
    # the reference: the graph built from the YAML, with the trained weights
    reference = convrnn.build_model(graph, **cfg["model"]["overrides"]).eval()
    reference.load_state_dict({k[len("model."):]: v for k, v in raw["state_dict"].items()})
    with torch.no_grad():
        expected = reference(_images()).logits
    shutil.rmtree(graph.parent)  # the YAML is gone

    from convrnn.neural.checkpoint import load_model

    with torch.no_grad():
        assert torch.equal(convrnn.build_model(ckpt)(_images()).logits, expected)
        scored = load_model(ckpt).model  # what fit_neural.py --model uses
        assert torch.equal(scored(_images(), times=11, image_off=11).logits, expected)

    # fine-tuning starts from the checkpoint's model and weights (model.arch = the checkpoint)
    cfg["model"]["arch"] = str(ckpt)
    cfg["model"]["overrides"] = {}
    cfg["run"]["name"] = "finetune"
    done = run_train(["fit", "--config", str(write_config(tmp_path / "f.yaml", cfg))])
    assert done.returncode == 0, done.stderr[-3000:]
    tuned = torch.load(tmp_path / "runs" / "finetune" / "checkpoints" / "last.ckpt", weights_only=True)
    assert tuned["convrnn"]["graph"] == raw["convrnn"]["graph"]
    assert tuned["global_step"] == 1  # a new run, one step from the imported weights
    assert any(not torch.equal(v, tuned["state_dict"][k]) for k, v in raw["state_dict"].items())


def test_resuming_into_an_edited_graph_is_refused(tmp_path: Path, synthetic_root: Path) -> None:
    graph = _copy_yaml_tree(tmp_path)
    cfg = tiny_config(synthetic_root, tmp_path / "runs", trainer={"max_steps": 1, "limit_val_batches": 0})
    cfg["model"]["arch"] = str(graph)
    config = write_config(tmp_path / "c.yaml", cfg)
    assert run_train(["fit", "--config", str(config)]).returncode == 0
    edited = yaml.safe_load(graph.read_text())
    edited["nodes"]["conv4"]["cell"] = {"type": "gru"}
    graph.write_text(yaml.safe_dump(edited))
    again = run_train(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "2"])
    assert again.returncode == 2, again.stderr[-2000:]
    assert "model.arch" in again.stderr and "differs" in again.stderr and "Traceback" not in again.stderr


def test_default_root_dir_is_the_run_folder(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = tiny_config(synthetic_root, tmp_path / "runs", trainer={"max_steps": 1, "limit_val_batches": 0})
    done = run_train(["fit", "--config", str(write_config(tmp_path / "c.yaml", cfg)), "--trainer.default_root_dir",
                      str(tmp_path / "elsewhere")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "elsewhere" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "elsewhere" / "csv").is_dir()
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------------- untrusted
def _evil_model_checkpoint(tmp_path: Path, marker: Path) -> Path:
    model = convrnn.build_model("ugrnn_intermediate", input_size=32, width_multiplier=0.0625, num_classes=4,
                                times=11, image_off=11)
    path = save_model_checkpoint(model, tmp_path / "evil.pt")
    payload = torch.load(path, weights_only=True)
    payload["meta"] = {"note": CreatesFile(marker)}
    torch.save(payload, path)
    return path


def test_python_api_refuses_a_checkpoint_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _evil_model_checkpoint(tmp_path, marker)
    for load in (convrnn.build_model, load_model_checkpoint):
        with pytest.raises(UntrustedCheckpointError, match=r"evil\.pt.*io\.open.*trusted=True"):
            load(evil)
    assert not marker.exists()
    model = load_model_checkpoint(evil, trusted=True)  # the opt-in: it loads (and, here, runs the payload)
    assert model.layer_names[-1] == "imnetds" and marker.exists()


def test_train_py_refuses_untrusted_checkpoints(tmp_path: Path, synthetic_root: Path) -> None:
    marker = tmp_path / "pwned"
    cfg = tiny_config(synthetic_root, tmp_path / "runs", trainer={"max_steps": 2, "limit_val_batches": 0})
    config = write_config(tmp_path / "c.yaml", cfg)
    assert run_train(["fit", "--config", str(config), "--trainer.max_steps", "1"]).returncode == 0
    last = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    payload = torch.load(last, weights_only=True)
    payload["callbacks"]["evil"] = CreatesFile(marker)
    torch.save(payload, last)

    for extra in (["--ckpt_path", str(last)], ["--ckpt_path", "last"]):
        refused = run_train(["fit", "--config", str(config), *extra])
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "last.ckpt" in refused.stderr and "io.open" in refused.stderr
        assert "--trust-checkpoint" in refused.stderr and "Traceback" not in refused.stderr
        assert not marker.exists()
    evil = _evil_model_checkpoint(tmp_path, marker)
    refused = run_train(["fit", "--config", str(config), "--model.arch", str(evil), "--model.overrides", "{}"])
    assert refused.returncode == 2 and "evil.pt" in refused.stderr and "Traceback" not in refused.stderr
    assert not marker.exists()

    trusted = run_train(["fit", "--config", str(config), "--ckpt_path", "last", "--trust-checkpoint"])
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert marker.exists()
    assert torch.load(last, weights_only=True)["global_step"] == 2  # resumed from step 1


def test_fit_neural_refuses_an_untrusted_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _evil_model_checkpoint(tmp_path, marker)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "fit_neural.py"), "--model", str(evil), "--data",
                           "synthetic", "--synthetic-dir", str(tmp_path / "syn"), "--out", str(out)], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "evil.pt" in done.stderr and "--trust-checkpoint" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists() and not out.exists()
    trusted = subprocess.run([sys.executable, str(REPO / "scripts" / "fit_neural.py"), "--model", str(evil), "--data",
                              "synthetic", "--synthetic-dir", str(tmp_path / "syn"), "--out", str(out),
                              "--trust-checkpoint", "--layers", "conv10", "--no-progress"], cwd=tmp_path,
                             env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert marker.exists() and (out / "scores.csv").is_file()  # the opt-in unpickled it, and the model was scored
