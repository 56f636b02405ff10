"""Loaders Lightning iterates: an endless training stream cut into equal epochs, and exact validation.

Both strip the skip report each batch carries (:mod:`convrnn.data.skips`) and add it to a
:class:`~convrnn.data.skips.SkipTally` in the main process, so the counts are exact with any number of workers.
Worker processes stop when the DataLoader iterator that owns them is released: ``close()`` drops this
object's references to it (DataLoader has no public shutdown call; its iterator's finaliser is the public path).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator

from torch.utils.data import DataLoader

from convrnn.data.pipelines import Batch
from convrnn.data.skips import SkipTally, split_report


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
        """Stop the worker processes now: the stream's iterator is their only owner (the DataLoader is not
        persistent: it is iterated once per stream), and releasing it shuts them down. A later pass restarts."""
        self._it = None

    @property
    def streaming(self) -> bool:
        """Whether a stream is open (an iterator over ``loader``, which owns the worker processes)."""
        return self._it is not None

    # Hooks for subclasses that keep more state (convrnn.training.data.ResumableEpochLoader overrides all four
    # to replay or reseed the stream on resume); public so that a subclass in another module needs no private name.
    def start_stream(self) -> None:
        """Open the stream: a new pass over ``loader`` (``__iter__`` calls this when none is open)."""
        self._it = iter(self.loader)

    def next_batch(self) -> Batch:
        """The open stream's next batch (``StopIteration`` if the loader ends)."""
        assert self._it is not None, "start_stream() first"
        return next(self._it)

    def epoch_samples(self) -> int:
        """Samples the epoch that is starting has (a resumed epoch may have fewer)."""
        return self.num_samples

    def batch_taken(self, remaining: int) -> None:
        """Called after each batch with the samples the epoch still has."""

    def __iter__(self) -> Iterator[Batch]:
        if self._it is None:
            self.start_stream()
        remaining = self.epoch_samples()
        while remaining > 0:
            try:
                batch = self.next_batch()
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
            self.batch_taken(remaining)
            yield batch


class SizedLoader:
    """A finite loader with a known number of batches (``len``), for exact validation.

    With ``num_batches=None`` (unknown), ``len()`` raises TypeError, which Lightning reads as "unsized".
    Each pass starts ``skips`` from zero and adds the skip reports the batches carry (removing them).
    Damaged shards give fewer batches than ``len()``.
    """

    def __init__(self, loader: DataLoader, num_batches: int | None, skips: SkipTally | None = None) -> None:
        self.loader: DataLoader | None = loader
        self.num_batches = None if num_batches is None else int(num_batches)
        self.skips = skips if skips is not None else SkipTally("val")
        self._passes: weakref.WeakSet = weakref.WeakSet()  # passes not yet finished (Lightning may stop early)

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("number of validation batches unknown (shards without a size index)")
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        if self.loader is None:
            raise RuntimeError("this validation loader was closed; ask the DataModule for a new one")
        run = self._pass(self.loader)
        self._passes.add(run)
        return run

    def _pass(self, loader: DataLoader) -> Iterator[Batch]:
        # One batch of lookahead: the last batch goes out only once the stream has ended, so the skip counts
        # that follow it (those of the last shards) are in ``skips`` even if the consumer stops after
        # ``len()`` batches, as Lightning does.
        self.skips.reset()
        ready = None
        for raw in loader:
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
        """Stop the (persistent) worker processes now: end any unfinished pass, then release the DataLoader,
        whose persistent iterator owns the workers and shuts them down when it is freed."""
        for run in list(self._passes):
            run.close()
        self.loader = None
