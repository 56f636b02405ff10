"""train.py end to end in-process on tiny data: files, metrics, resume, validate/test, config errors."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import RichProgressBar
from train_helpers import REPO, tiny_config, write_config

from convrnn.training.callbacks import FiniteModelCheckpoint
from convrnn.training.cli import ConvRNNCLI, default_precision, run_cli


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(sys, "argv", ["train.py"])  # LightningCLI warns when pytest's own args are there
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # run.torch_threads changes it for the whole process


def _metrics(run_dir: Path, version: int = 0) -> list[dict[str, str]]:
    with open(run_dir / "csv" / f"version_{version}" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_fit_writes_run_folder_metrics_and_resumes(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = tiny_config(synthetic_root, tmp_path / "runs", trainer={"max_steps": 4, "val_check_interval": 2},
                      run={"progress_bar": "rich"})
    config = write_config(tmp_path / "tiny.yaml", cfg)
    cli = run_cli(["fit", "--config", str(config)])
    trainer = cli.trainer
    run_dir = tmp_path / "runs" / "tiny"
    assert trainer.global_step == 4
    # the progress bar knows the epoch length: 48 train samples / batch 8
    assert trainer.num_training_batches == math.ceil(48 / 8) == len(trainer.train_dataloader)
    assert any(isinstance(cb, RichProgressBar) for cb in trainer.callbacks)
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names[-3:] == ["last.ckpt", "step00000002.ckpt", "step00000004.ckpt"]
    assert len(names) == 4 and names[0].startswith("best-step")
    saved = yaml.safe_load((run_dir / "tb" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["arch"] == "ugrnn_intermediate"
    assert list((run_dir / "tb" / "version_0").glob("events.out.tfevents.*"))
    rows = _metrics(run_dir)
    val = [r for r in rows if r.get("val/top1")]
    assert len(val) == 2  # after steps 2 and 4
    for r in val:
        assert float(r["val/samples"]) == 24
        for t in range(11):  # accuracy over time: every step of the unroll
            assert 0 <= float(r[f"val/top1_t{t}"]) <= float(r[f"val/top5_t{t}"]) <= 1
        assert float(r["val/top1"]) == pytest.approx(float(r["val/top1_t10"]))  # decoder "last" = t = T-1
    assert any(r.get("train/loss") for r in rows)
    # skipped samples are metrics (0 on clean shards): train.py registers the data package's logger
    assert {float(r["data/train_skipped"]) for r in rows if r.get("data/train_skipped")} == {0.0}
    assert [float(r["data/val_skipped"]) for r in rows if r.get("data/val_skipped")] == [0.0, 0.0]
    lr_columns = [k for k in rows[0] if k.startswith("lr")]
    assert lr_columns and any(r[lr_columns[0]] for r in rows)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4
    assert not any("_orig_mod" in k for k in last["state_dict"])
    loader_state = last["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]  # the loader's resume state
    assert loader_state["total_batches"] == 4

    cli = run_cli(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "6"])
    assert cli.trainer.global_step == 6
    assert (run_dir / "csv" / "version_1" / "metrics.csv").is_file()

    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    for sub in ("validate", "test"):
        cli = run_cli([sub, "--config", str(config), "--ckpt_path", ckpt])
        assert float(cli.trainer.callback_metrics[f"{sub if sub == 'test' else 'val'}/samples"]) == 24


def test_lr_schedule_follows_warmup_and_cosine(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = tiny_config(synthetic_root, tmp_path / "runs", model={"lr": 0.1, "warmup_steps": 2, "min_lr_ratio": 0.1},
                      trainer={"max_steps": 6, "limit_val_batches": 0})
    cli = run_cli(["fit", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    rows = _metrics(tmp_path / "runs" / "tiny")
    assert {"lr/wd0", "lr/wd0.0001"} <= set(rows[0])  # one column per weight-decay group, same schedule
    lrs = [float(r["lr/wd0.0001"]) for r in rows if r.get("lr/wd0.0001")]
    assert lrs[:2] == pytest.approx([0.1 / 3, 0.2 / 3])  # linear warm-up
    assert lrs[2] == pytest.approx(0.1)  # peak, then cosine down towards 0.01
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(
        math.pi * 4 / 4)))


def test_compile_in_place_keeps_checkpoint_keys(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = tiny_config(synthetic_root, tmp_path / "runs", trainer={"max_steps": 1, "limit_val_batches": 0},
                      model={"compile": True, "compile_kwargs": {"backend": "eager"}, "channels_last": True})
    cli = run_cli(["fit", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    assert cli.model.model._compiled_call_impl is not None  # nn.Module.compile() ran
    state = torch.load(tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
    assert set(state) == {f"model.{k}" for k in cli.model.model.state_dict()}


@pytest.mark.parametrize(("args", "named"), [
    (["--model.lr", "-1"], "model.lr"),
    (["--model.overrides", '{"widht_multiplier": 0.5}'], "widht_multiplier"),
    (["--model.arch", "no_such_model"], "model.arch"),
    (["--model.loss_over", "sideways"], "model.loss_over"),
    (["--model.loss_over", "weighted"], "model.loss_weights"),
    (["--model.warmup_steps", "2", "--model.warmup_epochs", "1"], "model.warmup_epochs"),
    (["--data.batch_sise", "4"], "batch_sise"),
    (["--run.keep_checkpoints", "0"], "run.keep_checkpoints"),
    (["--trainer.max_stepz", "3"], "max_stepz"),
])
def test_bad_config_value_names_the_key(tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture,
                                        args: list[str], named: str) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(synthetic_root, tmp_path / "runs"))
    with pytest.raises(SystemExit) as exc:
        run_cli(["fit", "--config", str(config), *args])
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_malformed_model_yaml_names_file_and_line(tmp_path: Path, synthetic_root: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    graph = tmp_path / "graph.yaml"
    graph.write_text("name: broken\nnodes: {conv1: {pre: {channels: 4}\n")
    config = write_config(tmp_path / "c.yaml", tiny_config(synthetic_root, tmp_path / "runs"))
    with pytest.raises(SystemExit) as exc:
        run_cli(["fit", "--config", str(config), "--model.arch", str(graph)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{graph}, line " in err and "not valid YAML" in err
    assert "Traceback" not in err


def test_class_count_mismatch_names_the_key(tmp_path: Path, synthetic_root: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(synthetic_root, tmp_path / "runs")
    cfg["model"]["overrides"]["num_classes"] = 2  # the data has 4
    with pytest.raises(SystemExit) as exc:
        run_cli(["fit", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "model.overrides" in err and "4 classes" in err


def test_default_precision_on_this_machine() -> None:
    assert default_precision("cpu") == "32-true"
    if not torch.cuda.is_available():
        assert default_precision("auto") == "32-true"


def test_checkpoint_callback_never_writes_nonfinite_weights(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight[0, 0] = float("nan")

    class FakeTrainer:
        lightning_module = module
        global_step = 7

    cb = FiniteModelCheckpoint(dirpath=tmp_path)
    target = tmp_path / "x.ckpt"
    with pytest.raises(RuntimeError, match="non-finite weights at global step 7.*weight"):
        cb._save_checkpoint(FakeTrainer(), str(target))  # type: ignore[arg-type]
    assert not target.exists()


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("**/*.yaml")
                                          if not {"models", "search"} & set(p.parts)))  # search: tests/search
def test_shipped_configs_parse_and_build(config: str, tmp_path: Path) -> None:
    """Every training config in configs/ is valid: the CLI parses it and builds model, data and trainer."""
    cli = ConvRNNCLI(args=["--config", str(REPO / config), "--run.root", str(tmp_path)], run=False)
    assert cli.model.model.num_classes == (8 if config.endswith("demo.yaml") else 1000)
    if "imagenet" in config:
        h = cli.model.hparams
        assert (h.optimizer, h.momentum, h.nesterov) == ("sgd", 0.9, True)  # the release's (lstm_shallow.npz)
        assert cli.trainer.gradient_clip_val == pytest.approx(0.3237)
        assert cli.trainer.gradient_clip_algorithm == "value"
        assert cli.datamodule.image_size == 224 and cli.datamodule.batch_size == 64


def test_checkpoint_write_is_atomic(tmp_path: Path) -> None:
    """The checkpoint goes to a temp file beside the target and is renamed: a failed write leaves the old one."""

    class Strategy:
        def barrier(self, name: str | None = None) -> None:
            pass

    class FakeTrainer:
        lightning_module = torch.nn.Linear(2, 2)
        global_step = 3
        is_global_zero = True
        strategy = Strategy()
        loggers: list = []

        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def save_checkpoint(self, filepath: str, weights_only: bool = False) -> None:
            Path(filepath).write_bytes(b"partial" if self.fail else b"new state")
            if self.fail:
                raise OSError("disk full")

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old state")
    cb = FiniteModelCheckpoint(dirpath=tmp_path)
    with pytest.raises(OSError, match="disk full"):
        cb._save_checkpoint(FakeTrainer(fail=True), str(target))  # type: ignore[arg-type]
    assert target.read_bytes() == b"old state"
    cb._save_checkpoint(FakeTrainer(fail=False), str(target))  # type: ignore[arg-type]
    assert target.read_bytes() == b"new state"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the failed attempt's temp file is gone too
