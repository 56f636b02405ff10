"""``ShardDataModule``: webdataset shards -> (images, labels) batches for Lightning, DDP-safe.

This module holds the DataModule (its arguments, their checks, and which loader each stage gets); the jobs it
composes live beside it: :mod:`convrnn.data.shard_list` (a ``*_shards`` value -> URLs and counts),
:mod:`convrnn.data.pipelines` (the per-worker webdataset pipelines), :mod:`convrnn.data.loaders` (epochs and
exact validation over them), :mod:`convrnn.data.skips` (bad data) and :mod:`convrnn.data.val_check` (the
validation count callback).

Training reads *resampled* shards: each worker draws shards with replacement, seeded by seed, rank and
worker. It runs a shuffle buffer, then decode + RandomResizedCrop + flip + normalise, and batches. This is
``wds.WebDataset(urls, resampled=True)`` written out as a ``wds.DataPipeline``, so that the shard draw and
the shuffle buffer are seeded (WebDataset seeds both from pid and time). Every rank gets exactly
``ceil(train_samples_per_epoch / world_size)`` samples per epoch, in ``ceil(that / batch_size)`` batches
(the last one may be short). So all ranks run the same number of steps, and no rank runs dry. The
loader's iterator lives across epochs: an epoch is the next slice of an endless stream, and the shuffle
buffer never restarts cold.

Validation is exact. Shards are not resampled; they are split by rank (``rank::world_size``), then by
worker, so every sample is seen exactly once across all ranks. The expected count comes from
``dataset.json`` (or from the tar headers). :class:`~convrnn.data.val_check.ValSampleCountCheck` checks it
after each validation epoch, per shard: seen + skipped-corrupt + lost to damaged shards must equal it, and
short shards are named. A damaged shard yields fewer batches than ``len()`` says, and can leave a rank with
none at all. So log val metrics from sums made at the end of the epoch, not per batch with
``sync_dist=True``. With fewer val shards than ``world_size * num_workers``, some worker would get nothing
and DDP validation could hang, so :meth:`ShardDataModule.setup` refuses that with a clear message.

Bad data does not stop training (see :mod:`convrnn.data.skips`). A sample whose image cannot be decoded is
skipped. A damaged shard (cut inside a member, cut at a member boundary, unreadable) gives what could be read,
and the samples it lacks (its count in ``dataset.json`` minus what was read) are counted as lost; the shard is
named in a warning. The worker attaches these counts to each batch it makes; the loaders strip them off and
add them up in the main process (``train_skips`` / ``val_skips``), so they are exact with any number of
workers. :class:`~convrnn.data.skip_metrics.SkippedSamplesLogger` logs them as metrics. A missing or empty shard, an
empty shard list or a bad argument is a :class:`~convrnn.errors.UserConfigError` naming the config key
(``data.val_shards``) and the path or value, raised before any data is read.

Speed (see ``benchmarks/data.py``):

- reduced-size decoding (``draft_decode=True``, the default) decodes a JPEG at 1/4 or 1/8 scale when the
  crop is at least that many times the output size (:mod:`convrnn.data.transforms`);
- images stay uint8 until the batch is stacked. With ``normalize_on_device`` (the default when the
  trainer is on a GPU) they reach the device as uint8 and are normalised there.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from convrnn.data.loaders import EpochLoader, SizedLoader
from convrnn.data.pipelines import Batch, build_train_pipeline, build_val_pipeline, resolve_world, val_batches_per_rank
from convrnn.data.shard_list import ShardList, resolve_shards
from convrnn.data.skips import SkipRecorder, SkipTally
from convrnn.data.transforms import Normalize, TrainTransform, ValTransform, default_val_resize
from convrnn.errors import UserConfigError
from convrnn.presentation import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["EpochLoader", "ShardDataModule", "SizedLoader"]

log = logging.getLogger(__name__)


def _check_args(
    batch_size: int,
    num_workers: int,
    image_size: int,
    train_samples_per_epoch: int | None,
    shuffle_buffer: int,
    val_resize: int | None,
    min_scale: float,
    val_batch_size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """Reject bad arguments before any work, naming the config key (``data.batch_size``) and the value."""

    def need(ok: bool, key: str, what: str, value: Any) -> None:
        if not ok:
            raise UserConfigError(f"data.{key}", f"must be {what}, got {value!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(is_int(batch_size) and batch_size >= 1, "batch_size", "an integer >= 1", batch_size)
    need(is_int(num_workers) and num_workers >= 0, "num_workers", "an integer >= 0", num_workers)
    need(is_int(image_size) and image_size >= 1, "image_size", "an integer >= 1", image_size)
    need(is_int(shuffle_buffer) and shuffle_buffer >= 1, "shuffle_buffer", "an integer >= 1", shuffle_buffer)
    if train_samples_per_epoch is not None:
        need(
            is_int(train_samples_per_epoch) and train_samples_per_epoch >= 1,
            "train_samples_per_epoch",
            "null or an integer >= 1",
            train_samples_per_epoch,
        )
    if val_batch_size is not None:
        need(
            is_int(val_batch_size) and val_batch_size >= 1, "val_batch_size", "null or an integer >= 1", val_batch_size
        )
    if val_resize is not None:
        need(
            is_int(val_resize) and val_resize >= image_size,
            "val_resize",
            f"null or an integer >= image_size ({image_size})",
            val_resize,
        )
    need(isinstance(min_scale, (int, float)) and 0 < min_scale <= 1, "min_scale", "in (0, 1]", min_scale)
    need(len(mean) == 3, "mean", "3 values (R, G, B)", mean)
    need(len(std) == 3 and all(v > 0 for v in std), "std", "3 values > 0 (R, G, B)", std)


class ShardDataModule(pl.LightningDataModule):
    """ImageNet-style training/validation from webdataset shards (see the module doc for the guarantees).

    Args:
        train_shards: directory with ``dataset.json``, or a brace pattern; None disables training data.
        val_shards: same, for validation ("val" split of a ``dataset.json``); None: no validation
            (``val_dataloader`` returns ``[]``, which Lightning reads as "skip validation").
        batch_size: per-rank batch size.
        num_workers: DataLoader workers per rank (training and validation).
        image_size: output side length.
        train_samples_per_epoch: samples per epoch over all ranks (default: the train split size).
        shuffle_buffer: per-worker shuffle buffer of raw samples (training); memory ~ buffer x mean JPEG size.
        val_resize: shorter side before the val centre crop (default: round(image_size * 256 / 224)).
        mean, std: normalisation, in [0, 1] units (ImageNet's by default).
        draft_decode: decode JPEGs at reduced size when the crop allows it (faster, near-identical result).
        min_scale: lower bound of RandomResizedCrop's area fraction (0.08 for ImageNet).
        seed: seeds shard resampling and shuffling (with rank and worker).
        val_batch_size: default: batch_size.
        rank, world_size: override the automatic detection (trainer, torch.distributed, env RANK/WORLD_SIZE).
        return_keys: batches are (images, labels, keys) instead of (images, labels).
        pin_memory: default: when CUDA is available.
        normalize_on_device: the loaders yield uint8 images, normalised by :meth:`on_after_batch_transfer`
            once the batch is on the device: 4x less worker-to-main traffic and no float work on the CPU.
            Default (None): on when the trainer runs on an accelerator, off otherwise (and off outside a
            trainer). Outside Lightning with it on, call :meth:`normalize_batch` yourself.
    """

    def __init__(
        self,
        train_shards: str | None = None,
        val_shards: str | None = None,
        batch_size: int = 256,
        num_workers: int = 8,
        image_size: int = 224,
        train_samples_per_epoch: int | None = None,
        shuffle_buffer: int = 2000,
        val_resize: int | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        draft_decode: bool = True,
        min_scale: float = 0.08,
        seed: int = 0,
        val_batch_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        return_keys: bool = False,
        pin_memory: bool | None = None,
        normalize_on_device: bool | None = None,
    ) -> None:
        super().__init__()
        # Pass our frame (never bound to a local): Lightning's own frame lookup leaves a frame cycle that
        # keeps this module, and its DataLoader workers, alive until the cyclic GC. That GC's finalisation
        # order can then stall the worker shutdown for 5 s per worker.
        self.save_hyperparameters(frame=inspect.currentframe())
        _check_args(
            batch_size=batch_size,
            num_workers=num_workers,
            image_size=image_size,
            train_samples_per_epoch=train_samples_per_epoch,
            shuffle_buffer=shuffle_buffer,
            val_resize=val_resize,
            min_scale=min_scale,
            val_batch_size=val_batch_size,
            mean=mean,
            std=std,
        )
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.image_size = int(image_size)
        self._train_samples_arg = train_samples_per_epoch
        self.shuffle_buffer = int(shuffle_buffer)
        self.val_resize = int(val_resize) if val_resize is not None else default_val_resize(self.image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.draft_decode = bool(draft_decode)
        self.min_scale = float(min_scale)
        self.seed = int(seed)
        self._rank_arg, self._world_arg = rank, world_size
        self.return_keys = bool(return_keys)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self._normalize_on_device_arg = normalize_on_device
        self.normalize = Normalize(self.mean, self.std)
        self.rank, self.world_size = 0, 1
        self.train_list: ShardList | None = None
        self.val_list: ShardList | None = None
        self._train_loader: EpochLoader | None = None
        self._val_loader: SizedLoader | None = None

    # ---------------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Resolve rank/world size and the shard lists; fail fast on missing shards or too few val shards."""
        trainer = self.trainer
        self.rank, self.world_size = resolve_world(self._rank_arg, self._world_arg, trainer)
        if stage in (None, "fit") and self.train_shards is not None and self.train_list is None:
            self.train_list = resolve_shards(self.train_shards, "train", key="data.train_shards")
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_list is None:
            self.val_list = resolve_shards(self.val_shards, "val", key="data.val_shards")
        if self.val_list is not None:
            self.check_val_sharding()

    def check_val_sharding(self) -> None:
        """Raise if some (rank, worker) would get no val shard: DDP validation would hang or miscount."""
        assert self.val_list is not None
        n, nw = len(self.val_list.urls), max(1, self.num_workers)
        if n < self.world_size * nw:
            raise UserConfigError(
                "data.val_shards",
                f"validation needs at least world_size x num_workers = {self.world_size} x {nw} = "
                f"{self.world_size * nw} shards, but {self.val_list.spec} has {n}. Otherwise some worker "
                "gets no shard and DDP validation hangs. Write more, smaller val shards "
                "(convrnn-make-shards --shard-size) or lower num_workers.",
            )
        if n % (self.world_size * nw):
            log.info(
                "%d val shards over %d ranks x %d workers: ranks see different numbers of val batches; "
                "log val metrics with on_epoch=True, sync_dist=True (not per step)",
                n,
                self.world_size,
                nw,
            )

    # ------------------------------------------------------------------------------------ properties
    @property
    def classes(self) -> list[str] | None:
        """Class names from ``dataset.json`` (None when shards were given without an index)."""
        for sl in (self.train_list, self.val_list):
            if sl is not None and sl.classes is not None:
                return list(sl.classes)
        return None

    @property
    def num_classes(self) -> int | None:
        c = self.classes
        return len(c) if c is not None else None

    @property
    def train_samples_per_epoch(self) -> int:
        """Samples per epoch over all ranks: the argument, else the train split size."""
        if self._train_samples_arg is not None:
            return int(self._train_samples_arg)
        if self.train_list is None or self.train_list.num_samples is None:
            raise UserConfigError(
                "data.train_samples_per_epoch", "is unknown for remote shards without a local dataset.json: set it"
            )
        return self.train_list.num_samples

    @property
    def train_samples_per_rank(self) -> int:
        return math.ceil(self.train_samples_per_epoch / self.world_size)

    @property
    def val_num_samples(self) -> int | None:
        """Total validation samples over all ranks (None if unknown)."""
        return self.val_list.num_samples if self.val_list is not None else None

    @property
    def train_skips(self) -> SkipTally:
        """Skipped training samples (corrupt, lost to damaged shards) in the batches taken so far."""
        loader = self._train_loader
        return loader.skips if loader is not None else SkipTally("train")

    @property
    def val_skips(self) -> SkipTally:
        """Skipped validation samples of the current (or last) validation pass."""
        loader = self._val_loader
        return loader.skips if loader is not None else SkipTally("val")

    @property
    def train_corrupt_count(self) -> int:
        return self.train_skips.total_corrupt

    @property
    def val_corrupt_count(self) -> int:
        return self.val_skips.total_corrupt

    # --------------------------------------------------------------------------------------- loaders
    def _require(self, which: str) -> ShardList:
        sl = self.train_list if which == "train" else self.val_list
        if sl is None:
            stage = "fit" if which == "train" else "validate"
            if (self.train_shards if which == "train" else self.val_shards) is None:
                raise UserConfigError(f"data.{which}_shards", "is null, but this command needs it")
            self.setup(stage)
            sl = self.train_list if which == "train" else self.val_list
        assert sl is not None
        return sl

    def _dataloader(self, dataset: wds.DataPipeline, persistent: bool) -> DataLoader:
        nw = self.num_workers
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=nw,
            pin_memory=self.pin_memory,
            persistent_workers=persistent and nw > 0,
            prefetch_factor=4 if nw > 0 else None,
        )

    def train_dataloader(self) -> EpochLoader:
        sl = self._require("train")
        transform = TrainTransform(
            self.image_size, scale=(self.min_scale, 1.0), draft=self.draft_decode, normalize=False
        )
        ds = build_train_pipeline(
            sl.urls,
            transform,
            self.batch_size,
            self.shuffle_buffer,
            self.seed,
            self.rank,
            SkipRecorder(),
            self.return_keys,
            None if self.normalize_on_device else self.normalize,
            counts=sl.counts,
            image_size=self.image_size,
        )
        skips = self._train_loader.skips if self._train_loader is not None else None  # keep the run's tally
        self._train_loader = EpochLoader(
            self._dataloader(ds, persistent=False), self.train_samples_per_rank, self.batch_size, skips
        )
        return self._train_loader

    def val_dataloader(self) -> SizedLoader | list:
        if self.val_shards is None:
            return []  # Lightning skips validation
        sl = self._require("val")
        self.check_val_sharding()
        transform = ValTransform(self.image_size, self.val_resize, draft=self.draft_decode, normalize=False)
        ds = build_val_pipeline(
            sl.urls,
            transform,
            self.val_batch_size,
            self.rank,
            self.world_size,
            SkipRecorder(),
            self.return_keys,
            None if self.normalize_on_device else self.normalize,
            counts=sl.counts,
            image_size=self.image_size,
        )
        nb = None  # remote shards without an index: length unknown, iterate to the end
        if sl.counts is not None:
            nb = val_batches_per_rank(sl.counts, self.val_batch_size, self.rank, self.world_size, self.num_workers)
        self._val_loader = SizedLoader(self._dataloader(ds, persistent=True), nb, SkipTally("val"))
        return self._val_loader

    @property
    def normalize_on_device(self) -> bool:
        """The argument if given, else True when training on an accelerator (not on the CPU)."""
        if self._normalize_on_device_arg is not None:
            return bool(self._normalize_on_device_arg)
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type != "cpu"

    def normalize_batch(self, batch: Batch) -> Batch:
        """Normalise a batch's uint8 images (a no-op for float images)."""
        if batch[0].dtype == torch.uint8:
            return (self.normalize(batch[0]), *batch[1:])  # type: ignore[return-value]
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise uint8 images (``normalize_on_device``) on the device the batch was moved to."""
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            return self.normalize_batch(batch)
        return batch

    def teardown(self, stage: str | None = None) -> None:
        """Stop the DataLoader worker processes of the loaders this module made."""
        for loader in (self._train_loader, self._val_loader):
            if loader is not None:
                loader.close()
        self._train_loader = self._val_loader = None
