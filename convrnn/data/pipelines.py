"""The per-worker webdataset pipelines: shards -> samples -> transform -> batches (docs/training.md,
'`data:` — `TrainingDataModule`').

Training reads *resampled* shards: each worker draws shards with replacement, then runs a shuffle buffer,
then decode + augment, and batches. Both the shard draw and the shuffle are seeded by (seed, rank, worker),
so the sample stream is a pure function of those (exact resume depends on it; webdataset's defaults seed
from pid and time). Validation is exact: shards split by rank (``rank::world_size``), then by worker, each
sample once. The skip reports of :mod:`convrnn.data.skips` ride on every batch.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import islice
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import get_worker_info

from convrnn.data.skips import SkipRecorder, batches, read_shards
from convrnn.data.transforms import Normalize

Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, list[str]]


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



def seeded_shuffle(src: Iterator, bufsize: int, initial: int, seed: int, rank: int) -> Iterator:
    """webdataset's sample shuffle buffer, with an RNG made in the worker from (seed, rank, worker id).

    ``wds.shuffle`` would seed from pid and time, and an RNG passed to it when the pipeline is built would be
    copied, with the same state, into every worker; so the RNG is created here, where the worker id is known.
    The buffer starts yielding once ``initial`` samples are in and grows to ``bufsize``.
    """
    rng = random.Random(f"convrnn-shuffle-{seed}-{rank}-{_worker_id()[0]}")
    yield from wds.shuffle(bufsize, initial, rng=rng)(iter(src))


def collate_batch(samples: list[tuple[torch.Tensor, int, str]], normalize: Normalize | None, with_keys: bool) -> Batch:
    """Stack (uint8) images and labels; normalise the whole batch at once (cheaper than per image)."""
    images = torch.stack([s[0] for s in samples])
    if normalize is not None:
        images = normalize(images)
    labels = torch.tensor([s[1] for s in samples], dtype=torch.long)
    if with_keys:
        return images, labels, [s[2] for s in samples]
    return images, labels


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
    collate = partial(collate_batch, normalize=normalize, with_keys=with_keys)
    empty = partial(_empty_batch, image_size, with_keys)
    return wds.DataPipeline(
        wds.ResampledShards(list(urls), seed=seed, worker_seed=partial(_resample_seed, rank), deterministic=True),
        partial(
            read_shards, recorder=recorder, expected=_expected(urls, counts), max_empty_reads=max(64, 4 * len(urls))
        ),
        partial(
            seeded_shuffle,
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
    collate = partial(collate_batch, normalize=normalize, with_keys=with_keys)
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
