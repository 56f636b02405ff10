"""ShardDataModule: batches, epoch sizes, exact DDP validation, corrupt samples, error messages, Lightning."""

from __future__ import annotations

import io
import logging
import multiprocessing
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from convrnn.data.datamodule import ShardDataModule
from convrnn.data.index import read_index
from convrnn.data.pipelines import seeded_shuffle
from convrnn.data.shard_list import resolve_shards
from convrnn.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from convrnn.data.val_check import ValSampleCountCheck
from convrnn.errors import UserConfigError

# torchvision 0.29 deprecates its image decoders (torchvision.io). The shard pipeline does not use them: it decodes
# with simplejpeg (PIL for CMYK/YCCK) since commit 1d29774; this filter only keeps a stray torchvision decode quiet
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def val_keys(shard_dir: Path) -> list[str]:
    import tarfile

    index = read_index(shard_dir)
    keys = []
    for sh in index["splits"]["val"]["shards"]:
        with tarfile.open(shard_dir / sh["name"]) as tf:
            keys += sorted({n.split(".")[0] for n in tf.getnames()})
    return keys


def collect(loader) -> tuple[list, list[str], int]:
    batches = list(loader)
    keys = [k for b in batches for k in b[2]]
    return batches, keys, len(batches)


def test_train_batches_shape_dtype_labels(imagenet_shards: Path) -> None:
    dm = ShardDataModule(train_shards=str(imagenet_shards), batch_size=5, num_workers=0, image_size=32)
    dm.setup("fit")
    assert dm.num_classes == 4 and dm.train_samples_per_epoch == 24
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and ((y >= 0) & (y < 4)).all()
    raw = x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert raw.min() > -1e-4 and raw.max() < 1 + 1e-4 and raw.std() > 0.05


def test_val_batches_equal_an_independent_reference(imagenet_shards: Path, fake_imagenet: Path) -> None:
    """Resize-shorter-side + centre crop + normalise, recomputed with PIL and numpy from the source files."""
    dm = ShardDataModule(
        val_shards=str(imagenet_shards),
        batch_size=4,
        num_workers=0,
        image_size=32,
        draft_decode=False,
        return_keys=True,
    )
    dm.setup("validate")
    assert dm.val_resize == 37
    sources = {p.stem: p for p in (fake_imagenet / "val").rglob("*.JPEG")}
    n = 0
    for x, y, keys in dm.val_dataloader():
        for img, label, key in zip(x, y, keys, strict=True):
            pil = Image.open(sources[key]).convert("RGB")
            w, h = pil.size
            nw, nh = (37, int(37 * h / w)) if w <= h else (int(37 * w / h), 37)
            top, left = int(round((nh - 32) / 2)), int(round((nw - 32) / 2))
            ref = np.asarray(pil.resize((nw, nh), Image.BILINEAR), dtype=np.float32)[top : top + 32, left : left + 32]
            ref = (ref / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
            assert np.abs(img.permute(1, 2, 0).numpy() - ref).max() < 0.05
            assert dm.classes[int(label)] == sources[key].parent.name
            n += 1
    assert n == 12


def test_train_epoch_size_per_rank(imagenet_shards: Path) -> None:
    # 23 samples per epoch over 2 ranks -> 12 per rank -> batches of 5, 5, 2
    for rank in (0, 1):
        dm = ShardDataModule(
            train_shards=str(imagenet_shards),
            batch_size=5,
            num_workers=0,
            image_size=16,
            train_samples_per_epoch=23,
            rank=rank,
            world_size=2,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert len(loader) == 3
        for _epoch in range(3):
            sizes = [len(b[1]) for b in loader]
            assert sizes == [5, 5, 2]


def test_train_epoch_size_with_workers(imagenet_shards: Path) -> None:
    dm = ShardDataModule(
        train_shards=str(imagenet_shards),
        batch_size=4,
        num_workers=2,
        image_size=16,
        train_samples_per_epoch=30,
        shuffle_buffer=8,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    for _epoch in range(2):
        assert sum(len(b[1]) for b in loader) == 30
    assert len(loader) == 8
    dm.teardown()
    assert not loader.streaming and loader.loader._iterator is None


def test_teardown_stops_every_worker_process(imagenet_shards: Path) -> None:
    before = set(multiprocessing.active_children())
    dm = ShardDataModule(train_shards=str(imagenet_shards), val_shards=str(imagenet_shards), batch_size=2,
                         num_workers=2, image_size=16, train_samples_per_epoch=8, shuffle_buffer=4)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    next(iter(train))
    unfinished = iter(val)  # a validation pass left open, as when Lightning stops after len() batches
    next(unfinished)
    assert len(set(multiprocessing.active_children()) - before) == 4  # 2 train + 2 val workers
    dm.teardown()
    assert set(multiprocessing.active_children()) <= before
    with pytest.raises(RuntimeError, match="closed"):
        iter(val)


def test_train_stream_is_reproducible_from_the_seed(imagenet_shards: Path) -> None:
    def first_keys(seed: int) -> list[str]:
        dm = ShardDataModule(
            train_shards=str(imagenet_shards),
            batch_size=8,
            num_workers=0,
            image_size=16,
            seed=seed,
            return_keys=True,
            shuffle_buffer=10,
        )
        dm.setup("fit")
        return [k for b in dm.train_dataloader() for k in b[2]]

    a, b, c = first_keys(0), first_keys(0), first_keys(1)
    assert a == b and a != c and len(a) == 24
    assert len(set(a)) > 8  # resampled shards: a mix of shards, repeats possible


def test_seeded_shuffle_is_a_permutation() -> None:
    out = list(seeded_shuffle(iter(range(100)), bufsize=20, initial=5, seed=0, rank=0))
    assert sorted(out) == list(range(100)) and out != list(range(100))
    assert out == list(seeded_shuffle(iter(range(100)), bufsize=20, initial=5, seed=0, rank=0))
    assert out != list(seeded_shuffle(iter(range(100)), bufsize=20, initial=5, seed=0, rank=1))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_val_exact_across_two_ranks(imagenet_shards: Path, num_workers: int) -> None:
    all_keys = val_keys(imagenet_shards)
    seen = []
    for rank in (0, 1):
        dm = ShardDataModule(
            val_shards=str(imagenet_shards),
            batch_size=2,
            num_workers=num_workers,
            image_size=16,
            rank=rank,
            world_size=2,
            return_keys=True,
        )
        dm.setup("validate")
        assert dm.val_num_samples == 12
        loader = dm.val_dataloader()
        _, keys, nbatches = collect(loader)
        assert nbatches == len(loader)  # the advertised length is exact
        seen += keys
        dm.teardown()
    assert Counter(seen) == Counter(all_keys) and len(seen) == len(set(seen)) == 12


def test_val_rank_from_environment(imagenet_shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = ShardDataModule(
            val_shards=str(imagenet_shards), batch_size=3, num_workers=0, image_size=16, return_keys=True
        )
        dm.setup("validate")
        assert (dm.rank, dm.world_size) == (int(rank), 2)
        keys[rank] = collect(dm.val_dataloader())[1]
    assert not set(keys["0"]) & set(keys["1"])
    assert sorted(keys["0"] + keys["1"]) == sorted(val_keys(imagenet_shards))


def test_too_few_val_shards_fails_fast(imagenet_shards: Path) -> None:
    dm = ShardDataModule(val_shards=str(imagenet_shards), num_workers=3, rank=0, world_size=2)
    need = r"^data.val_shards: validation needs at least world_size x num_workers = 2 x 3 = 6 shards.*has 4"
    with pytest.raises(UserConfigError, match=need):
        dm.setup("validate")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_sample_skipped_counted_logged(
    corrupt_shards: str, num_workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    dm = ShardDataModule(
        val_shards=corrupt_shards, batch_size=4, num_workers=num_workers, image_size=16, return_keys=True
    )
    dm.setup("validate")
    assert dm.val_num_samples == 16  # counted from the tar headers
    with caplog.at_level(logging.WARNING, logger="convrnn.data.skips"):
        _, keys, _ = collect(dm.val_dataloader())
    assert len(keys) == 15 and "bad" not in keys
    assert dm.val_corrupt_count == 1  # counted in the worker processes, visible here
    dm.teardown()
    # logged in the main process, also when the sample was skipped in a worker process
    assert any("corrupt" in r.message and "bad" in r.message for r in caplog.records)


def test_corrupt_sample_skipped_in_training(corrupt_shards: str) -> None:
    dm = ShardDataModule(
        train_shards=corrupt_shards,
        batch_size=8,
        num_workers=0,
        image_size=16,
        train_samples_per_epoch=200,
        return_keys=True,
    )
    dm.setup("fit")
    keys = [k for b in dm.train_dataloader() for k in b[2]]
    assert len(keys) == 200 and "bad" not in keys
    assert dm.train_corrupt_count >= 1


def test_bad_shard_lists_name_the_key_and_the_path(tmp_path: Path, imagenet_shards: Path) -> None:
    with pytest.raises(UserConfigError, match="empty shard list"):
        resolve_shards("", "val")
    missing = tmp_path / "nope-{000000..000003}.tar"
    with pytest.raises(UserConfigError, match="val_shards: shard not found: " + str(tmp_path / "nope-000000.tar")):
        resolve_shards(str(missing), "val")
    with pytest.raises(UserConfigError, match=str(tmp_path / "dataset.json")):
        resolve_shards(str(tmp_path), "val")
    empty = tmp_path / "empty-000000.tar"
    empty.write_bytes(b"")
    with pytest.raises(UserConfigError, match=str(empty)):
        resolve_shards(str(empty), "val")
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "dataset.json").write_text('{"format": "convrnn-shards", "classes": [], "splits": {"val": {"shards": []}}}')
    with pytest.raises(UserConfigError, match=f"empty shard list: {idx / 'dataset.json'}"):
        resolve_shards(str(idx), "val")
    with pytest.raises(UserConfigError, match="no 'test' split"):
        resolve_shards(str(imagenet_shards), "test")
    dm = ShardDataModule(val_shards=str(missing), num_workers=0)
    with pytest.raises(UserConfigError, match="^data.val_shards: shard not found: .*nope-000000.tar"):
        dm.setup("validate")


@pytest.mark.parametrize("key", ["train_shards", "val_shards"])
def test_missing_shard_directory_names_the_key(tmp_path: Path, key: str) -> None:
    no_dir = tmp_path / "no_such_dir"
    dm = ShardDataModule(**{key: str(no_dir)}, num_workers=0)
    with pytest.raises(UserConfigError, match=f"^data.{key}: the directory {no_dir} does not exist$"):
        dm.setup("fit")
    dm = ShardDataModule(**{key: str(no_dir / "x-{000000..000003}.tar")}, num_workers=0)
    with pytest.raises(UserConfigError, match=f"^data.{key}: the directory {no_dir} .*does not exist"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", 0),
        ("num_workers", -1),
        ("image_size", 0),
        ("train_samples_per_epoch", 0),
        ("shuffle_buffer", 0),
        ("val_batch_size", 0),
        ("val_resize", 16),
        ("min_scale", 0.0),
    ],
)
def test_bad_data_values_name_their_key(key: str, value: object) -> None:
    with pytest.raises(UserConfigError, match=f"^data.{key}: must be .*got {value!r}") as exc:
        ShardDataModule(**{"image_size": 32, key: value})
    assert exc.value.key == f"data.{key}"


def test_val_shards_null_turns_validation_off(imagenet_shards: Path) -> None:
    dm = ShardDataModule(train_shards=str(imagenet_shards), val_shards=None, batch_size=8, num_workers=0, image_size=16)
    model = TinyModel(4)
    trainer = _trainer(ValSampleCountCheck(), epochs=1)
    trainer.fit(model, datamodule=dm)
    assert model.train_seen == 24 and model.val_batches == 0
    assert trainer.num_val_batches == [] or sum(trainer.num_val_batches) == 0


class TinyModel(pl.LightningModule):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, num_classes)
        self.train_seen = 0
        self.val_batches = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))

    def training_step(self, batch, batch_idx):  # noqa: ANN001
        x, y = batch
        assert x.dtype == torch.float32
        self.train_seen += len(y)
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):  # noqa: ANN001
        x, y = batch
        self.val_batches += 1
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y), on_epoch=True, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(callback: ValSampleCountCheck, epochs: int = 2) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )


def test_lightning_fit_with_exact_val_count(imagenet_shards: Path) -> None:
    dm = ShardDataModule(
        train_shards=str(imagenet_shards),
        val_shards=str(imagenet_shards),
        batch_size=5,
        num_workers=0,
        image_size=16,
    )
    check = ValSampleCountCheck()
    model = TinyModel(4)
    trainer = _trainer(check)
    trainer.fit(model, datamodule=dm)
    assert trainer.num_training_batches == 5  # ceil(24 / 5)
    assert model.train_seen == 2 * 24
    assert check.last_total == 12 and "val_loss" in trainer.callback_metrics


def test_val_count_check_detects_a_mismatch(imagenet_shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = ShardDataModule(val_shards=str(imagenet_shards), batch_size=5, num_workers=0, image_size=16)
    monkeypatch.setattr(ShardDataModule, "val_num_samples", property(lambda self: 13))
    with pytest.raises(RuntimeError, match="validation saw 12 samples .* but the val set has 13"):
        _trainer(ValSampleCountCheck()).validate(TinyModel(4), datamodule=dm)


def test_image_bytes_are_not_reencoded(imagenet_shards: Path, fake_imagenet: Path) -> None:
    """The jpg in the stream is the source file (decode both and compare exactly)."""
    import webdataset as wds

    src = {p.stem: p for p in (fake_imagenet / "val").rglob("*.JPEG")}
    urls = resolve_shards(str(imagenet_shards), "val").urls
    for s in wds.WebDataset(urls, shardshuffle=False):
        a = np.asarray(Image.open(io.BytesIO(s["jpg"])))
        assert np.array_equal(a, np.asarray(Image.open(src[s["__key__"]])))


def test_normalize_on_device(imagenet_shards: Path) -> None:
    kw = dict(val_shards=str(imagenet_shards), batch_size=4, num_workers=0, image_size=16)
    plain = ShardDataModule(**kw)
    plain.setup("validate")
    dev = ShardDataModule(**kw, normalize_on_device=True)
    dev.setup("validate")
    for (xf, yf), (xu, yu) in zip(plain.val_dataloader(), dev.val_dataloader(), strict=True):
        assert xu.dtype == torch.uint8 and torch.equal(yf, yu)
        assert torch.allclose(dev.on_after_batch_transfer((xu, yu), 0)[0], xf, atol=1e-6)
    # inside Lightning the module receives normalised float batches (TinyModel asserts float32)
    dm = ShardDataModule(train_shards=str(imagenet_shards), **kw, normalize_on_device=True)
    model = TinyModel(4)
    _trainer(ValSampleCountCheck(), epochs=1).fit(model, datamodule=dm)
    assert model.train_seen == 24


DDP_SCRIPT = """
import json, sys, warnings
import lightning.pytorch as pl
import torch
from convrnn.data.datamodule import ShardDataModule
from convrnn.data.val_check import ValSampleCountCheck

warnings.simplefilter("ignore")


class Tiny(pl.LightningModule):
    def __init__(self, out):
        super().__init__()
        self.head, self.out, self.n_train, self.keys = torch.nn.Linear(3, 4), out, 0, []

    def training_step(self, batch, i):
        x, y, _ = batch
        self.n_train += len(y)
        return torch.nn.functional.cross_entropy(self.head(x.mean((2, 3))), y)

    def validation_step(self, batch, i):
        x, y, keys = batch
        self.keys += keys
        self.log("val_loss", torch.nn.functional.cross_entropy(self.head(x.mean((2, 3))), y), sync_dist=True)

    def on_validation_epoch_start(self):
        self.keys = []

    def on_train_end(self):
        with open(f"{self.out}/rank{self.global_rank}.json", "w") as f:
            json.dump({"train": self.n_train, "val_keys": self.keys, "batches": self.trainer.num_training_batches}, f)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


if __name__ == "__main__":
    shards, out = sys.argv[1], sys.argv[2]
    dm = ShardDataModule(train_shards=shards, val_shards=shards, batch_size=4, num_workers=0, image_size=16,
                         train_samples_per_epoch=21, return_keys=True)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[ValSampleCountCheck()])
    trainer.fit(Tiny(out), datamodule=dm)
"""


@pytest.mark.slow
def test_real_ddp_two_processes(imagenet_shards: Path, tmp_path: Path) -> None:
    """Two gloo processes (ddp_spawn): equal train steps per rank, every val sample once, count check passes."""
    import json
    import subprocess
    import sys

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    res = subprocess.run(
        [sys.executable, str(script), str(imagenet_shards), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["train"] for r in ranks] == [11, 11]  # ceil(21 / 2) samples on each rank
    assert [r["batches"] for r in ranks] == [3, 3]
    keys = ranks[0]["val_keys"] + ranks[1]["val_keys"]
    assert sorted(keys) == sorted(val_keys(imagenet_shards)) and len(set(keys)) == 12
    assert not set(ranks[0]["val_keys"]) & set(ranks[1]["val_keys"])
