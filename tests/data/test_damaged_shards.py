"""Damaged shards (cut inside a member, cut at a member boundary): read what is there, name the shard, count the
loss against dataset.json, keep going; the counts reach the main process and the loggers."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tarfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from convrnn.data.datamodule import ShardDataModule
from convrnn.data.imagenet import convert_imagenet
from convrnn.data.index import read_index
from convrnn.data.skip_metrics import SkippedSamplesLogger
from convrnn.data.val_check import ValSampleCountCheck

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

SHARD = 6  # samples per shard: train 24 -> 4 shards, val 12 -> 2 shards


def sample_keys(path: Path) -> list[str]:
    """Keys of a shard in order (tarfile, independent of webdataset and of our reader)."""
    with tarfile.open(path) as tf:
        return list(dict.fromkeys(m.name.split(".")[0] for m in tf.getmembers()))


def cut(path: Path, sample: int, inside: bool) -> tuple[list[str], list[str]]:
    """Truncate a shard inside the image of sample ``sample`` (``inside``) or just before its first member.

    Returns (keys still readable, keys lost).
    """
    keys = sample_keys(path)
    with tarfile.open(path) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith(keys[sample] + ".")]
    image = next(m for m in members if not m.name.endswith((".cls", ".json")))
    at = image.offset_data + image.size // 2 if inside else members[0].offset
    with open(path, "r+b") as f:
        f.truncate(at)
    return keys[:sample], keys[sample:]


@pytest.fixture(scope="module")
def intact(fake_imagenet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("intact")
    convert_imagenet(fake_imagenet, out, shard_size=SHARD, seed=0, workers=1, progress=False)
    return out


@pytest.fixture
def damaged(intact: Path, tmp_path: Path) -> dict:
    """A copy of ``intact`` with train shard 1 cut inside sample 2, train shard 3 cut before sample 4, val shard 0
    cut before sample 3 and val shard 1 (the last val shard) cut inside its first sample (nothing readable)."""
    d = tmp_path / "shards"
    shutil.copytree(intact, d)
    index = read_index(d)
    train = [d / s["name"] for s in index["splits"]["train"]["shards"]]
    val = [d / s["name"] for s in index["splits"]["val"]["shards"]]
    lost: dict[str, list[str]] = {}
    readable: dict[str, list[str]] = {}
    for path, sample, inside in ((train[1], 2, True), (train[3], 4, False), (val[0], 3, False), (val[1], 0, True)):
        readable[str(path)], lost[str(path)] = cut(path, sample, inside)
    return {"dir": d, "train": train, "val": val, "lost": lost, "readable": readable}


def train_epoch(d: Path, num_workers: int, caplog: pytest.LogCaptureFixture) -> tuple[list[str], ShardDataModule]:
    dm = ShardDataModule(
        train_shards=str(d),
        batch_size=4,
        num_workers=num_workers,
        image_size=16,
        train_samples_per_epoch=96,
        shuffle_buffer=8,
        return_keys=True,
    )
    dm.setup("fit")
    with caplog.at_level(logging.WARNING, logger="convrnn.data.skips"):
        keys = [k for b in dm.train_dataloader() for k in b[2]]
    dm.teardown()
    return keys, dm


def test_training_reads_damaged_shards_names_them_and_counts_the_loss(
    damaged: dict, caplog: pytest.LogCaptureFixture
) -> None:
    results = {}
    for nw in (0, 1):
        caplog.clear()
        keys, _ = train_epoch(damaged["dir"], nw, caplog)
        results[nw] = keys
        assert len(keys) == 96  # the epoch is full: training goes on
        lost_keys = {k for p in damaged["train"][1::2] for k in damaged["lost"][str(p)]}
        assert not lost_keys & set(keys)
        assert set(damaged["readable"][str(damaged["train"][1])]) & set(keys)  # what could be read is used
        messages = [r.getMessage() for r in caplog.records]
        for path in (damaged["train"][1], damaged["train"][3]):
            named = [m for m in messages if str(path) in m and "damaged" in m]
            assert len(named) == 1, messages  # named once, however often the shard is drawn
            assert f"of the {SHARD} samples the index lists" in named[0]
        assert "ReadError" in next(m for m in messages if str(damaged["train"][1]) in m)
    assert results[0] == results[1]  # same stream, same skips, with and without a worker process


def test_training_loss_count_equals_index_minus_read(damaged: dict, caplog: pytest.LogCaptureFixture) -> None:
    for nw in (0, 1):
        dm = ShardDataModule(
            train_shards=str(damaged["dir"]),
            batch_size=4,
            num_workers=nw,
            image_size=16,
            train_samples_per_epoch=96,
            shuffle_buffer=8,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        list(loader)
        tally = dm.train_skips
        dm.teardown()
        for path, readable in ((damaged["train"][1], 2), (damaged["train"][3], 4)):
            reads = tally.read[str(path)] // readable
            assert reads >= 1 and tally.read[str(path)] == reads * readable
            assert tally.lost[str(path)] == reads * (SHARD - readable)  # per read: dataset.json count - read
        for path in damaged["train"][0::2]:
            assert tally.lost[str(path)] == 0 and tally.read[str(path)] % SHARD == 0
        assert tally.total_corrupt == 0 and tally.total == tally.total_lost > 0
        assert dm.train_corrupt_count == 0


@pytest.mark.parametrize("num_workers", [0, 1])
def test_validation_reads_damaged_shards_and_counts_the_loss(damaged: dict, num_workers: int) -> None:
    dm = ShardDataModule(
        val_shards=str(damaged["dir"]), batch_size=4, num_workers=num_workers, image_size=16, return_keys=True
    )
    dm.setup("validate")
    keys = [k for b in dm.val_dataloader() for k in b[2]]
    skips = dm.val_skips
    dm.teardown()
    v0, v1 = (str(p) for p in damaged["val"])
    assert keys == damaged["readable"][v0]  # 3 samples; the last shard gives none
    assert skips.lost == {v0: SHARD - 3, v1: SHARD}  # the last shard's loss arrives without a batch to carry it
    assert set(skips.damaged) == {v0, v1}


def test_index_less_damaged_shard_is_read_up_to_the_damage(damaged: dict, caplog: pytest.LogCaptureFixture) -> None:
    d = damaged["dir"]
    (d / "dataset.json").unlink()
    pattern = str(d / "imagenet-train-{000000..000003}.tar")
    dm = ShardDataModule(val_shards=pattern, batch_size=4, num_workers=0, image_size=16, return_keys=True)
    with caplog.at_level(logging.WARNING):
        dm.setup("validate")
    assert dm.val_list.counts == [SHARD, 2, SHARD, 4]  # tar headers: the complete samples before the damage
    assert any(
        str(damaged["train"][1]) in r.getMessage() and "cannot be counted" in r.getMessage() for r in caplog.records
    )
    keys = [k for b in dm.val_dataloader() for k in b[2]]
    assert len(keys) == 18 and dm.val_skips.total_lost == 0


class TinyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 4)

    def training_step(self, batch, batch_idx):  # noqa: ANN001
        x, y = batch[0], batch[1]
        return torch.nn.functional.cross_entropy(self.head(x.mean(dim=(2, 3))), y)

    def validation_step(self, batch, batch_idx):  # noqa: ANN001
        x, y = batch[0], batch[1]
        self.log("val_loss", torch.nn.functional.cross_entropy(self.head(x.mean(dim=(2, 3))), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_fit_goes_on_names_short_val_shards_and_logs_skips(
    damaged: dict, tmp_path: Path, num_workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    dm = ShardDataModule(
        train_shards=str(damaged["dir"]),
        val_shards=str(damaged["dir"]),
        batch_size=4,
        num_workers=num_workers,
        image_size=16,
        shuffle_buffer=8,
    )
    check = ValSampleCountCheck(strict=True)
    skipped = SkippedSamplesLogger()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[check, skipped],
    )
    with caplog.at_level(logging.WARNING):
        trainer.fit(TinyModel(), datamodule=dm)
    assert trainer.current_epoch == 2 and trainer.global_step == 12  # ceil(24 / 4) steps per epoch, both epochs
    v0, v1 = (str(p) for p in damaged["val"])
    assert check.last_short == [v0, v1] and check.last_total == 12
    short = [r.getMessage() for r in caplog.records if "came up short" in r.getMessage()]
    assert len(short) == 2 and f"{v0}: read 3 of 6" in short[0] and f"{v1}: read 0 of 6" in short[0]

    with open(tmp_path / "csv" / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    val = [float(r["data/val_skipped"]) for r in rows if r.get("data/val_skipped")]
    assert val == [9.0, 9.0]  # 3 + 6 missing, every epoch
    assert [float(r["data/val_skipped_shard_loss"]) for r in rows if r.get("data/val_skipped_shard_loss")] == val
    train = [(int(r["step"]), float(r["data/train_skipped"])) for r in rows if r.get("data/train_skipped")]
    assert len(train) == 12 and [s for s, _ in train] == sorted(s for s, _ in train)
    values = [v for _, v in train]
    assert values == sorted(values) and values[-1] > 0  # cumulative
    state = skipped.state_dict()  # the running total a checkpoint would store
    assert values[-1] == state["train_shard_loss"] and state["train_corrupt"] == 0


def test_val_count_check_names_a_shard_that_disagrees_with_the_index(intact: Path, tmp_path: Path) -> None:
    d = tmp_path / "shards"
    shutil.copytree(intact, d)
    index = read_index(d)
    index["splits"]["val"]["shards"][1]["num_samples"] = SHARD - 1  # the index says 5, the shard holds 6
    index["splits"]["val"]["num_samples"] = 2 * SHARD - 1
    (d / "dataset.json").write_text(json.dumps(index))
    dm = ShardDataModule(val_shards=str(d), batch_size=4, num_workers=0, image_size=16)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ValSampleCountCheck(strict=True)],
    )
    name = d / index["splits"]["val"]["shards"][1]["name"]
    differs = f"val set has 11; shards whose count differs from the index: {name}: read 6 of 5$"
    with pytest.raises(RuntimeError, match=differs):
        trainer.validate(TinyModel(), datamodule=dm)


def test_all_shards_unreadable_stops_with_a_clear_error(intact: Path, tmp_path: Path) -> None:
    d = tmp_path / "shards"
    shutil.copytree(intact, d)
    for sh in read_index(d)["splits"]["train"]["shards"]:
        cut(d / sh["name"], 0, inside=True)
    dm = ShardDataModule(train_shards=str(d), batch_size=4, num_workers=0, image_size=16)
    dm.setup("fit")
    with pytest.raises(RuntimeError, match=r"the last 64 shard reads gave no sample .*are all the shards damaged"):
        next(iter(dm.train_dataloader()))


def test_train_skipped_continues_from_the_checkpointed_total(damaged: dict, tmp_path: Path) -> None:
    dm = ShardDataModule(train_shards=str(damaged["dir"]), batch_size=4, num_workers=0, image_size=16, shuffle_buffer=8)
    skipped = SkippedSamplesLogger()
    skipped.load_state_dict({"train_corrupt": 5, "train_shard_loss": 100})  # what a checkpoint would restore
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[skipped],
    )
    trainer.fit(TinyModel(), datamodule=dm)
    state = skipped.state_dict()
    assert state["train_corrupt"] == 5 and state["train_shard_loss"] > 100
    with open(tmp_path / "csv" / "version_0" / "metrics.csv", newline="") as f:
        last = [r for r in csv.DictReader(f) if r.get("data/train_skipped")][-1]
    assert float(last["data/train_skipped"]) == 5 + state["train_shard_loss"]
    assert float(last["data/train_skipped_corrupt"]) == 5


DDP_SCRIPT = """
import json, sys, warnings
import lightning.pytorch as pl
import torch
from convrnn.data.datamodule import ShardDataModule
from convrnn.data.val_check import ValSampleCountCheck
from convrnn.data.skip_metrics import SkippedSamplesLogger

warnings.simplefilter("ignore")


class Tiny(pl.LightningModule):
    def __init__(self, out, check):
        super().__init__()
        self.head, self.out, self.check = torch.nn.Linear(3, 4), out, check

    def training_step(self, batch, i):
        return torch.nn.functional.cross_entropy(self.head(batch[0].mean((2, 3))), batch[1])

    def validation_step(self, batch, i):
        # nothing logged per batch: rank 1 gets no val batch at all (its shard is unreadable), so a per-batch
        # key would be synced by rank 0 alone and hang (ConvRNNModule sums its counts at epoch end instead)
        self.head(batch[0].mean((2, 3)))

    def on_train_end(self):
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("data/")}
        with open(f"{self.out}/rank{self.global_rank}.json", "w") as f:
            json.dump({"short": self.check.last_short, "total": self.check.last_total, "metrics": metrics}, f)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


if __name__ == "__main__":
    shards, out = sys.argv[1], sys.argv[2]
    dm = ShardDataModule(train_shards=shards, val_shards=shards, batch_size=4, num_workers=0, image_size=16)
    check = ValSampleCountCheck()
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[check, SkippedSamplesLogger()])
    trainer.fit(Tiny(out, check), datamodule=dm)
"""


@pytest.mark.slow
def test_ddp_damaged_val_shards_named_on_every_rank(damaged: dict, tmp_path: Path) -> None:
    """Two gloo processes: each reads one val shard; the per-shard counts are summed over ranks, so both ranks
    name both short shards, and the skip metrics are sums over ranks."""
    import subprocess
    import sys

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    res = subprocess.run(
        [sys.executable, str(script), str(damaged["dir"]), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    v = [str(p) for p in damaged["val"]]
    for r in ranks:
        assert r["short"] == v and r["total"] == 12
        assert r["metrics"]["data/val_skipped"] == 9.0  # 3 (rank 0's shard) + 6 (rank 1's shard)
        assert r["metrics"]["data/train_skipped"] > 0
    assert ranks[0]["metrics"]["data/train_skipped"] == ranks[1]["metrics"]["data/train_skipped"]  # a sum


def test_train_py_demo_config_goes_on_over_damaged_shards(
    damaged: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """configs/demo.yaml as shipped (model, batch, workers), pointed at the damaged shards instead of the
    synthetic objects: train.py trains, validates, names the damaged shards and logs the skip counts."""
    from convrnn.training.cli import run_cli

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr("sys.argv", ["train.py"])
    threads = torch.get_num_threads()
    d = str(damaged["dir"])
    args = ["fit", "--config", str(repo / "configs" / "demo.yaml"), "--data.synthetic", "null"]
    args += ["--data.train_shards", d, "--data.val_shards", d, "--trainer.max_steps", "3"]
    args += ["--trainer.log_every_n_steps", "1", "--run.root", str(tmp_path / "runs"), "--run.progress_bar", "none"]
    try:
        with caplog.at_level(logging.WARNING):
            cli = run_cli(args)
    finally:
        torch.set_num_threads(threads)
    assert cli.trainer.global_step == 3  # batch 32 > 24 samples: one step per epoch, validation after each
    messages = [r.getMessage() for r in caplog.records]
    for path in (damaged["train"][1], damaged["train"][3]):
        assert any(f"train shard {path} is damaged" in m for m in messages)
    v0, v1 = (str(p) for p in damaged["val"])
    assert any(f"{v0}: read 3 of 6" in m and f"{v1}: read 0 of 6" in m for m in messages)
    with open(tmp_path / "runs" / "demo" / "csv" / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["data/val_skipped"]) for r in rows if r.get("data/val_skipped")] == [9.0, 9.0, 9.0]
    assert [float(r["val/samples"]) for r in rows if r.get("val/samples")] == [3.0, 3.0, 3.0]
    train = [float(r["data/train_skipped"]) for r in rows if r.get("data/train_skipped")]
    assert len(train) == 3 and train[-1] > 0 and train == sorted(train)  # cumulative
