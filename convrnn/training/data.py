"""Training-side additions to the shard DataModule: synthetic data on first run, and resumable epochs.

Why here and not in ``convrnn.data``: both are about *running* training. ``TrainingDataModule`` is
``convrnn.data.datamodule.ShardDataModule`` plus

- ``synthetic``: render the synthetic-objects shards into ``synthetic.root`` on the first run (idempotent,
  via ``write_synthetic_shards``), so ``python train.py fit --config configs/demo.yaml`` needs nothing else;
- a training loader with ``state_dict``/``load_state_dict``, so ``--ckpt_path last`` continues the *same*
  sample stream. The shard stream is a pure function of (seed, rank, worker); on resume the loader replays it
  up to where the checkpoint was taken (``resume: exact``: bit-identical continuation, cost ∝ steps done)
  or starts a new stream seeded by (seed, position) (``resume: reseed``: instant, for ImageNet-scale runs).
  The per-worker augmentation RNG is seeded from (seed, rank, stream) too, not from the global torch RNG.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from convrnn.data.datamodule import EpochLoader, ShardDataModule
from convrnn.data.synthetic_objects import write_synthetic_shards

ResumeMode = Literal["exact", "reseed"]


@dataclass
class SyntheticShards:
    """Parameters of the synthetic-objects shards rendered on first run (see ``write_synthetic_shards``)."""

    root: str = "data/synthetic"
    image_size: int = 64
    train_per_object_per_level: int = 20
    val_per_object_per_level: int = 5
    seed: int = 0
    shard_size: int = 128
    n_categories: int = 8
    objects_per_category: int = 8
    levels: list[int] = field(default_factory=lambda: [0, 3, 6])
    jpeg_quality: int = 90


def _mix(*parts: Any) -> int:
    """A stable 63-bit seed from a few values (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


class ResumableEpochLoader(EpochLoader):
    """An :class:`~convrnn.data.loaders.EpochLoader` that can resume mid-stream.

    Same epoch semantics (the stream continues across epochs; the last batch of an epoch is truncated to the
    epoch size), plus the ``state_dict`` Lightning saves in each checkpoint: how many batches were taken from
    the stream and how many samples the epoch still has. ``make_loader(stream_seed)`` builds the underlying
    DataLoader (``self.loader``); stream 0 is the run's own stream.
    """

    def __init__(self, make_loader: Callable[[int], DataLoader], num_samples: int, batch_size: int, seed: int,
                 rank: int, resume: ResumeMode = "exact") -> None:
        super().__init__(None, num_samples, batch_size)  # type: ignore[arg-type]  # built per stream in start_stream
        self.make_loader = make_loader
        self.seed = int(seed)
        self.rank = int(rank)
        self.resume = resume
        self.stream = 0  # which stream (0 = from the start; >0 = reseeded at that many batches)
        self.stream_batches = 0  # batches taken from the current stream
        self.total_batches = 0  # batches taken over the whole run (all streams)
        self.epoch_remaining = 0  # samples left in the current epoch (0 = at an epoch boundary)
        self._skip = 0
        self._py_state: Any = None

    # ------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, int | str]:
        return {"stream": self.stream, "stream_batches": self.stream_batches, "total_batches": self.total_batches,
                "epoch_remaining": self.epoch_remaining, "num_samples": self.num_samples,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` was taken: replay (``exact``) or reseed (``reseed``) the stream."""
        if int(state.get("num_samples", self.num_samples)) != self.num_samples or int(
                state.get("batch_size", self.batch_size)) != self.batch_size:
            raise ValueError(
                f"the checkpoint's training loader had {state.get('num_samples')} samples per epoch per rank in "
                f"batches of {state.get('batch_size')}, this run has {self.num_samples} in batches of "
                f"{self.batch_size}; resume with the same data.batch_size, train_samples_per_epoch and devices")
        self.total_batches = int(state["total_batches"])
        self.epoch_remaining = int(state["epoch_remaining"])
        self.close()  # the next pass opens the stream the state names
        if self.resume == "exact":
            self.stream = int(state["stream"])
            self.stream_batches = 0
            self._skip = int(state["stream_batches"])
        else:
            self.stream = self.total_batches
            self.stream_batches = 0
            self._skip = 0

    # ---------------------------------------------------------------------------------------- stream
    def start_stream(self) -> None:
        """Build this stream's DataLoader, seed it from (seed, rank, stream), open it and skip what was taken."""
        self.loader = loader = self.make_loader(self.stream)
        stream_seed = _mix("convrnn-train-stream", self.seed, self.rank, self.stream)
        # DataLoader draws each worker's base seed (python `random`, torch) from this generator
        loader.generator = torch.Generator().manual_seed(stream_seed)
        # without workers the transforms draw from the main process's `random`: give the stream its own state
        self._py_state = random.Random(stream_seed).getstate() if loader.num_workers == 0 else None
        super().start_stream()
        skip, self._skip = self._skip, 0
        for _ in range(skip):
            self.next_batch()

    def next_batch(self) -> Any:
        """The stream's next batch, drawn under the stream's own ``random`` state when there are no workers."""
        if self._py_state is None:
            batch = super().next_batch()
        else:
            outer = random.getstate()
            random.setstate(self._py_state)
            try:
                batch = super().next_batch()
            finally:
                self._py_state = random.getstate()
                random.setstate(outer)
        self.stream_batches += 1
        return batch

    def epoch_samples(self) -> int:
        """The rest of a resumed epoch, else a full one."""
        return self.epoch_remaining or self.num_samples

    def batch_taken(self, remaining: int) -> None:
        """Count the batch for the checkpoint's state."""
        self.epoch_remaining = remaining
        self.total_batches += 1


class TrainingDataModule(ShardDataModule):
    """``ShardDataModule`` + synthetic shards on first run + a resumable training loader (module doc).

    Args:
        synthetic: render synthetic-objects shards into ``synthetic.root`` if they are not there yet, and
            read train/val from there unless ``train_shards``/``val_shards`` say otherwise.
        train_shards: as in ``ShardDataModule``; default: the synthetic root.
        val_shards: ``auto`` (the default): the synthetic root when there is one, else no validation; ``null``
            turns validation off; else as in ``ShardDataModule``.
        resume: how the training stream continues from a checkpoint (``exact`` replays, ``reseed`` does not).
        return_keys: batches carry their ``__key__``s (default on here: a NaN report names the samples).
        **kwargs: everything ``ShardDataModule`` takes (batch_size, num_workers, image_size, ...).
    """

    def __init__(self, synthetic: SyntheticShards | None = None, resume: ResumeMode = "exact",
                 return_keys: bool = True, train_shards: str | None = None, val_shards: str | None = "auto",
                 **kwargs: Any) -> None:
        # a plain dict, so that the hyperparameters saved in checkpoints hold no custom class
        synthetic = asdict(synthetic) if synthetic is not None else None  # type: ignore[assignment]
        if train_shards is None and synthetic is not None:
            train_shards = synthetic["root"]  # type: ignore[index]
        if val_shards == "auto":  # the synthetic root's val split, else none; an explicit null turns validation off
            val_shards = synthetic["root"] if synthetic is not None else None  # type: ignore[index]
        super().__init__(return_keys=return_keys, train_shards=train_shards, val_shards=val_shards, **kwargs)
        self.synthetic: dict[str, Any] | None = synthetic  # type: ignore[assignment]
        self.resume = resume
        # render once (global rank 0), not once per node: nodes usually share the file system, and two
        # writers of the same shards would race; on node-local disks, render the shards before launching
        self.prepare_data_per_node = False

    def prepare_data(self) -> None:
        """Render the synthetic shards once per node (a no-op when they exist with the same parameters)."""
        if self.synthetic is None:
            return
        params = dict(self.synthetic)
        root = params.pop("root")
        params["levels"] = tuple(params["levels"])
        write_synthetic_shards(root, workers=1, progress=False, **params)

    def _stream_loader(self, stream: int) -> DataLoader:
        """The parent's training DataLoader for one stream (stream 0 uses ``seed`` itself)."""
        seed = self.seed
        if stream:
            self.seed = _mix("convrnn-reseed", seed, stream) % (2**31)
        try:
            return super().train_dataloader().loader
        finally:
            self.seed = seed

    @property
    def train_batches_per_epoch(self) -> int:
        """Training batches per epoch per rank (what ``len(train_dataloader())`` will be), from the shard index
        alone: the LR schedule needs it before the loader may be built (see ``ConvRNNModule.total_training_steps``)."""
        return math.ceil(self.train_samples_per_rank / self.batch_size)

    def train_dataloader(self) -> ResumableEpochLoader:  # type: ignore[override]
        super().train_dataloader()  # resolves and checks the shards (builds a DataLoader but starts nothing)
        self._train_loader = ResumableEpochLoader(self._stream_loader, self.train_samples_per_rank, self.batch_size,
                                                  self.seed, self.rank, self.resume)  # teardown() closes it
        return self._train_loader

    def test_dataloader(self) -> Any:
        """``test`` evaluates on the val split (ImageNet's test labels are not public)."""
        return self.val_dataloader()

