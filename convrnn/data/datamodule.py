"""``ShardDataModule``: webdataset shards -> (images, labels) batches for Lightning, DDP-safe.

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
``dataset.json`` (or from the tar headers). :class:`ValSampleCountCheck` checks it after each
validation epoch, per shard: seen + skipped-corrupt + lost to damaged shards must equal it, and short shards
are named. A damaged shard yields fewer batches than ``len()`` says, and can leave a rank with none at all.
So log val metrics from sums made at the end of the epoch, not per batch with ``sync_dist=True``. With
fewer val shards than ``world_size * num_workers``, some worker would get nothing and DDP validation could
hang, so :meth:`ShardDataModule.setup` refuses that with a clear message.

Bad data does not stop training (see :mod:`convrnn.data.skips`). A sample whose image cannot be decoded is
skipped. A damaged shard (cut inside a member, cut at a member boundary, unreadable) gives what could be read,
and the samples it lacks (its count in ``dataset.json`` minus what was read) are counted as lost; the shard is
named in a warning. The worker attaches these counts to each batch it makes; the loaders below strip them off
and add them up in the main process (``train_skips`` / ``val_skips``), so they are exact with any number of
workers. :class:`~convrnn.data.skips.SkippedSamplesLogger` logs them as metrics. A missing or empty shard, an
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
import os
import random
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import webdataset as wds
from torch.utils.data import DataLoader, get_worker_info

from convrnn.data.shards import INDEX_NAME, count_tar_samples, read_index, split_shard_paths
from convrnn.data.skips import SkipRecorder, SkipTally, batches, per_shard, read_shards, split_report
from convrnn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    TrainTransform,
    ValTransform,
    default_val_resize,
)
from convrnn.errors import UserConfigError

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, list[str]]


# ------------------------------------------------------------------------------------- shard lists
@dataclass
class ShardList:
    """Resolved shard URLs with their per-shard sample counts (None if unknown) and class names."""

    spec: str
    urls: list[str]
    counts: list[int] | None
    classes: list[str] | None

    @property
    def num_samples(self) -> int | None:
        return sum(self.counts) if self.counts is not None else None


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def _check_readable(path: str, key: str) -> None:
    p = Path(path)
    if not p.is_file():
        if not p.parent.is_dir():
            raise UserConfigError(key, f"the directory {p.parent} (of shard {p.name}) does not exist")
        raise UserConfigError(key, f"shard not found: {path}")
    if p.stat().st_size == 0:
        raise UserConfigError(key, f"shard is empty (0 bytes): {path}")
    try:
        with open(p, "rb") as f:
            f.read(512)
    except OSError as exn:
        raise UserConfigError(key, f"shard not readable: {path}: {exn}") from None


def _looks_like_a_directory(spec: str) -> bool:
    """A path that names no file pattern: no braces, no ``::``, no ``.tar``/``.tgz``, not ``dataset.json``."""
    name = Path(spec).name
    return not any(c in spec for c in "{}:") and not name.endswith((".tar", ".tgz", ".tar.gz", INDEX_NAME))


def resolve_shards(spec: str, split: str, key: str | None = None) -> ShardList:
    """Turn ``spec`` into a list of shards.

    ``spec`` may be a directory holding ``dataset.json``, the ``dataset.json`` file, or a webdataset URL
    pattern (``dir/name-{000000..000009}.tar``, several joined by ``::``). Local shards must exist and be
    non-empty. Counts come from a ``dataset.json`` beside the shards, else from the tar headers. Errors are
    :class:`~convrnn.errors.UserConfigError` naming ``key`` (default ``{split}_shards``).
    """
    key = key or f"{split}_shards"
    if not spec or not str(spec).strip():
        raise UserConfigError(key, f"empty shard list for {split!r}: got {spec!r}")
    spec = os.path.expanduser(str(spec))
    p = Path(spec)
    if not p.exists() and _looks_like_a_directory(spec):
        raise UserConfigError(key, f"the directory {spec} does not exist")
    if p.is_dir() or p.name == INDEX_NAME:
        index_dir = p if p.is_dir() else p.parent
        if not (index_dir / INDEX_NAME).is_file():
            raise UserConfigError(
                key,
                f"{index_dir / INDEX_NAME} not found: pass a directory written by convrnn-make-shards "
                "(scripts/make_shards.py) or scripts/make_synthetic.py, or a brace pattern such as "
                "'dir/imagenet-train-{000000..000146}.tar'",
            )
        try:
            index = read_index(index_dir)
            urls, counts = split_shard_paths(index_dir, index, split)
        except (ValueError, OSError) as exn:
            raise UserConfigError(key, str(exn)) from None
        if not urls:
            raise UserConfigError(key, f"empty shard list: {index_dir / INDEX_NAME} lists no shards for {split!r}")
        for u in urls:
            _check_readable(u, key)
        return ShardList(spec, urls, counts, index.get("classes"))
    urls = wds.shardlists.expand_urls(spec)
    if not urls:
        raise UserConfigError(key, f"empty shard list: {spec!r} expands to no shards")
    if not all(_is_local(u) for u in urls):
        return ShardList(spec, urls, None, None)
    for u in urls:
        _check_readable(u, key)
    counts, classes = _counts_from_indexes(urls)
    return ShardList(spec, urls, counts, classes)


def _counts_from_indexes(urls: Sequence[str]) -> tuple[list[int], list[str] | None]:
    by_dir: dict[Path, dict[str, int]] = {}
    classes = None
    counts = []
    for u in urls:
        d = Path(u).parent
        if d not in by_dir:
            by_dir[d] = {}
            if (d / INDEX_NAME).is_file():
                try:
                    index = read_index(d)
                except (ValueError, OSError):
                    index = {}
                classes = classes or index.get("classes")
                for sp in index.get("splits", {}).values():
                    for sh in sp["shards"]:
                        by_dir[d][sh["name"]] = int(sh["num_samples"])
        n = by_dir[d].get(Path(u).name)
        counts.append(n if n is not None else _count_or_warn(u))
    return counts, classes


def _count_or_warn(url: str) -> int:
    """Samples in a shard without an index entry (tar headers); for a damaged one, those before the damage."""
    try:
        return count_tar_samples(url)
    except (OSError, tarfile.TarError) as exn:
        n = count_tar_samples(url, stop_at_error=True)
        log.warning(
            "shard %s is damaged (%s: %s) and no dataset.json lists its size: expecting the %d sample(s) "
            "before the damage, so its loss cannot be counted",
            url,
            type(exn).__name__,
            exn,
            n,
        )
        return n


# ------------------------------------------------------------------------------- rank / worker info
def resolve_world(rank: int | None = None, world_size: int | None = None, trainer: Any = None) -> tuple[int, int]:
    """(rank, world_size): explicit values, else the trainer's, else torch.distributed, else env vars."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("pass both rank and world_size, or neither")
        r, w = int(rank), int(world_size)
    elif trainer is not None:
        r, w = int(trainer.global_rank), int(trainer.world_size)
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
    elif "WORLD_SIZE" in os.environ:
        w = int(os.environ["WORLD_SIZE"])
        r = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    else:
        r, w = 0, 1
    if not (w >= 1 and 0 <= r < w):
        raise ValueError(f"invalid rank {r} for world size {w}")
    return r, w


def _worker_id() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def _split_by_node(src: Iterator, rank: int, world_size: int) -> Iterator:
    """Shard-level split across ranks (``rank::world_size``) with an explicit rank, picklable."""
    yield from islice(src, rank, None, world_size)


def _resample_seed(rank: int) -> int:
    return rank * 1000 + _worker_id()[0]


def _seeded_shuffle(src: Iterator, bufsize: int, initial: int, seed: int, rank: int) -> Iterator:
    """Sample shuffle buffer with a reproducible per-(seed, rank, worker) RNG (webdataset's uses pid + time).

    Like webdataset's: starts yielding once ``initial`` samples are buffered and grows to ``bufsize`` by
    reading two samples per sample yielded.
    """
    rng = random.Random(f"convrnn-shuffle-{seed}-{rank}-{_worker_id()[0]}")
    it = iter(src)
    buf: list = []
    initial = min(initial, bufsize)
    end = object()
    for sample in it:
        buf.append(sample)
        if len(buf) < bufsize:
            extra = next(it, end)
            if extra is not end:
                buf.append(extra)
        if len(buf) >= initial:
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


def _collate(samples: list[tuple[torch.Tensor, int, str]], normalize: Normalize | None, with_keys: bool) -> Batch:
    """Stack (uint8) images and labels; normalise the whole batch at once (cheaper than per image)."""
    images = torch.stack([s[0] for s in samples])
    if normalize is not None:
        images = normalize(images)
    labels = torch.tensor([s[1] for s in samples], dtype=torch.long)
    if with_keys:
        return images, labels, [s[2] for s in samples]
    return images, labels


# ------------------------------------------------------------------------------------------ loaders
class EpochLoader:
    """An endless batch stream cut into epochs of exactly ``num_samples`` samples (last batch truncated).

    ``len()`` is the number of batches per epoch, so Lightning knows the epoch length and every rank runs
    the same number of steps. The skip report each batch carries is added to ``skips`` and removed.
    """

    def __init__(self, loader: DataLoader, num_samples: int, batch_size: int, skips: SkipTally | None = None) -> None:
        self.loader = loader
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.skips = skips if skips is not None else SkipTally("train")
        self._it: Iterator | None = None

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def close(self) -> None:
        """Stop the worker processes now (they also stop when this object is garbage-collected)."""
        _shutdown(self.loader, self._it)
        self._it = None

    # hooks for subclasses that keep more state (convrnn.training.data.ResumableEpochLoader)
    def _start(self) -> None:
        self._it = iter(self.loader)

    def _next(self) -> Batch:
        assert self._it is not None
        return next(self._it)

    def _epoch_samples(self) -> int:
        """Samples the epoch that is starting has (a resumed epoch may have fewer)."""
        return self.num_samples

    def _taken(self, remaining: int) -> None:
        """Called after each batch with the samples the epoch still has."""

    def __iter__(self) -> Iterator[Batch]:
        if self._it is None:
            self._start()
        remaining = self._epoch_samples()
        while remaining > 0:
            try:
                batch = self._next()
            except StopIteration:
                self._it = None
                raise RuntimeError("the resampled training stream ended; this should not happen") from None
            batch, report = split_report(batch)
            if report is not None:
                self.skips.add(report)
            n = len(batch[1])
            if n == 0:
                continue
            if n > remaining:
                batch = tuple(x[:remaining] for x in batch)
                n = remaining
            remaining -= n
            self._taken(remaining)
            yield batch


class SizedLoader:
    """A finite loader with a known number of batches (``len``), for exact validation.

    With ``num_batches=None`` (unknown), ``len()`` raises TypeError, which Lightning reads as "unsized".
    Each pass starts ``skips`` from zero and adds the skip reports the batches carry (removing them).
    Damaged shards give fewer batches than ``len()``.
    """

    def __init__(self, loader: DataLoader, num_batches: int | None, skips: SkipTally | None = None) -> None:
        self.loader = loader
        self.num_batches = None if num_batches is None else int(num_batches)
        self.skips = skips if skips is not None else SkipTally("val")

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("number of validation batches unknown (shards without a size index)")
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        # One batch of lookahead: the last batch goes out only once the stream has ended, so the skip counts
        # that follow it (those of the last shards) are in ``skips`` even if the consumer stops after
        # ``len()`` batches, as Lightning does.
        self.skips.reset()
        ready = None
        for raw in self.loader:
            batch, report = split_report(raw)
            if report is not None:
                self.skips.add(report)
            if len(batch[1]):
                if ready is not None:
                    yield ready
                ready = batch
        if ready is not None:
            yield ready

    def close(self) -> None:
        """Stop persistent worker processes now."""
        _shutdown(self.loader, None)


def _shutdown(loader: DataLoader, it: Any) -> None:
    """Shut down a DataLoader's workers deterministically (its persistent iterator and/or ``it``)."""
    for i in (it, getattr(loader, "_iterator", None)):
        stop = getattr(i, "_shutdown_workers", None)
        if stop is not None:
            stop()
    if getattr(loader, "_iterator", None) is not None:
        loader._iterator = None


def _empty_batch(image_size: int, with_keys: bool) -> tuple:
    """A batch without samples: carries skip counts at the end of a finite stream (the loaders drop it)."""
    empty = (torch.empty(0, 3, image_size, image_size, dtype=torch.uint8), torch.empty(0, dtype=torch.long))
    return (*empty, []) if with_keys else empty


def _expected(urls: Sequence[str], counts: Sequence[int] | None) -> dict[str, int] | None:
    return None if counts is None else dict(zip(urls, (int(c) for c in counts), strict=True))


def build_train_pipeline(
    urls: Sequence[str],
    transform: Callable,
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    rank: int,
    recorder: SkipRecorder,
    with_keys: bool = False,
    normalize: Normalize | None = None,
    counts: Sequence[int] | None = None,
    image_size: int = 0,
) -> wds.DataPipeline:
    """Per-worker training pipeline: resampled shards -> samples -> shuffle -> transform -> full batches.

    ``counts`` (per shard, from the index) lets the reader count what a damaged shard lacks; ``recorder``
    collects skipped samples and rides on each batch (:mod:`convrnn.data.skips`).
    """
    collate = partial(_collate, normalize=normalize, with_keys=with_keys)
    empty = partial(_empty_batch, image_size, with_keys)
    return wds.DataPipeline(
        wds.ResampledShards(list(urls), seed=seed, worker_seed=partial(_resample_seed, rank), deterministic=True),
        partial(
            read_shards, recorder=recorder, expected=_expected(urls, counts), max_empty_reads=max(64, 4 * len(urls))
        ),
        partial(
            _seeded_shuffle,
            bufsize=max(1, shuffle_buffer),
            initial=max(1, min(shuffle_buffer, 1000)),
            seed=seed,
            rank=rank,
        ),
        wds.map(transform, handler=recorder),
        partial(batches, batch_size=batch_size, collate=collate, recorder=recorder, partial=False, empty=empty),
    )


def build_val_pipeline(
    urls: Sequence[str],
    transform: Callable,
    batch_size: int,
    rank: int,
    world_size: int,
    recorder: SkipRecorder,
    with_keys: bool = False,
    normalize: Normalize | None = None,
    counts: Sequence[int] | None = None,
    image_size: int = 0,
) -> wds.DataPipeline:
    """Per-worker validation pipeline: this rank's and worker's shards, in order, each sample once.

    ``counts`` and ``recorder`` as in :func:`build_train_pipeline`; ``image_size`` shapes the empty batch
    that carries the last skip counts when no samples are left to carry them.
    """
    collate = partial(_collate, normalize=normalize, with_keys=with_keys)
    empty = partial(_empty_batch, image_size, with_keys)
    return wds.DataPipeline(
        wds.SimpleShardList(list(urls)),
        partial(_split_by_node, rank=rank, world_size=world_size),
        wds.split_by_worker,
        partial(read_shards, recorder=recorder, expected=_expected(urls, counts)),
        wds.map(transform, handler=recorder),
        partial(batches, batch_size=batch_size, collate=collate, recorder=recorder, partial=True, empty=empty),
    )


def val_batches_per_rank(counts: Sequence[int], batch_size: int, rank: int, world_size: int, num_workers: int) -> int:
    """Exact number of val batches a rank yields: per worker, ceil(its samples / batch_size), summed."""
    mine = list(counts)[rank::world_size]
    nw = max(1, num_workers)
    return sum(math.ceil(sum(mine[w::nw]) / batch_size) for w in range(nw))


# ----------------------------------------------------------------------------------------- the module
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
            self._dataloader(ds, persistent=True), self.train_samples_per_rank, self.batch_size, skips
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


# -------------------------------------------------------------------------------------- the callback
class ValSampleCountCheck(pl.Callback):
    """After each full validation epoch, check the samples seen against ``dataset.json``, per shard.

    Summed over ranks: samples seen + corrupt ones skipped + those that damaged shards lacked must equal the
    val split size. Damaged shards are named in a warning (validation then covers only what could be read;
    ``data/val_skipped`` says how much is missing). If the sum is off, something unexplained happened
    (a shard holds more samples than the index says, or a sample was seen twice): raise (``strict``) or
    warn, naming each shard whose read count differs from the index. Skipped during the sanity check and
    when ``limit_val_batches`` truncates validation.
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.seen = 0
        self.last_total: int | None = None
        self.last_short: list[str] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen = 0

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.seen += len(batch[1])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if trainer.sanity_checking or not isinstance(dm, ShardDataModule) or dm.val_num_samples is None:
            return
        limit = trainer.limit_val_batches
        if not (limit is None or (isinstance(limit, float) and limit == 1.0)):
            return
        assert dm.val_list is not None and dm.val_list.counts is not None
        urls, counts = dm.val_list.urls, dm.val_list.counts
        skips = dm.val_skips
        read, lost = per_shard(skips, urls)
        local = [self.seen, skips.total_corrupt, skips.total_lost, *read, *lost]
        t = torch.tensor(local, dtype=torch.long, device=pl_module.device)
        total = [int(v) for v in trainer.strategy.reduce(t, reduce_op="sum")]
        seen, corrupt, lost_total = total[:3]
        read, lost = total[3 : 3 + len(urls)], total[3 + len(urls) :]
        self.last_total = seen + corrupt + lost_total
        expected = dm.val_num_samples
        self.last_short = [u for u, r, c in zip(urls, read, counts, strict=True) if r < c]
        off = [f"{u}: read {r} of {c}" for u, r, c in zip(urls, read, counts, strict=True) if r != c]
        if lost_total and trainer.is_global_zero:
            log.warning(
                "validation is missing %d of %d samples: damaged shard(s) came up short: %s",
                lost_total,
                expected,
                "; ".join(off),
            )
        if self.last_total != expected:
            msg = (
                f"validation saw {seen} samples (+{corrupt} corrupt skipped, +{lost_total} missing from damaged "
                f"shards) over {trainer.world_size} rank(s), but the val set has {expected}; "
                + (
                    f"shards whose count differs from the index: {'; '.join(off)}"
                    if off
                    else "every shard gave the number of samples the index lists, so some were seen twice"
                )
            )
            if self.strict:
                raise RuntimeError(msg)
            log.warning(msg)
