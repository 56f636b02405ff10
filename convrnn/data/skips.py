"""Samples the shard pipelines skip: corrupt images and what damaged shards lack; counted exactly, logged.

Why this exists: a shard cut short by a failed copy or a full disk, or a file that is not an image, should
cost the samples it holds, not the run. Reading goes through webdataset's ``tarfile_samples`` with a
``handler`` that stops at the first error of a shard (what follows a broken member of a tar stream cannot be
reached anyway). What was read before it is used. The shard's expected count (``dataset.json``) minus what
was read is its loss. That count catches a shard cut at a member boundary too, which reads as a clean, short
tar. Where no count is known (remote shards without an index), only tar errors are reported.

Where the counts travel: each DataLoader worker runs its own copy of the pipeline. Its
:class:`SkipRecorder` collects events since its previous batch, and the collate step attaches them to the next
batch as a :class:`SkipReport` (the batch's last element). The loaders of
:mod:`convrnn.data.datamodule` strip the report off and add it to a :class:`SkipTally` in the main process.
So the counts belong to the batches actually consumed, whatever ``num_workers`` is and whatever the
prefetching. They are deterministic for a seeded stream, and identical for 0 and 1 workers. At the end of a
finite (validation) stream, pending counts travel in an empty batch, which the loaders drop.

:class:`convrnn.data.skip_metrics.SkippedSamplesLogger` logs the tallies as metrics.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import webdataset as wds

from convrnn.data.transforms import IMAGE_KEYS, CorruptSampleError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ worker side
@dataclass
class SkipReport:
    """What one worker skipped since its previous batch, per shard URL.

    ``read``: samples read from each shard read that ended since the previous batch; ``lost``: samples those
    reads lacked (the index count minus ``read``); ``corrupt``: samples dropped because they did not decode;
    ``damaged``: shard URL -> what went wrong; ``messages``: the first few corrupt-sample messages.
    """

    read: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    corrupt: dict[str, int] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.read or self.lost or self.corrupt or self.damaged)


class SkipRecorder:
    """Collects skip events inside one pipeline (one worker), hands them out one report per batch.

    It is the ``handler`` of the decode step: a :class:`CorruptSampleError` is counted and skipped; any other
    exception is re-raised (a bug, not bad data).
    """

    def __init__(self, max_messages: int = 5) -> None:
        self.max_messages = max_messages
        self._report = SkipReport()

    def clear(self) -> None:
        """Forget pending events (a new pass over the data starts; those of an abandoned pass are void)."""
        self._report = SkipReport()

    def take(self) -> SkipReport:
        """The events since the last call, and a fresh report."""
        report, self._report = self._report, SkipReport()
        return report

    @property
    def pending(self) -> bool:
        return bool(self._report)

    def __call__(self, exn: BaseException) -> bool:
        if not isinstance(exn, CorruptSampleError):
            raise exn
        url = exn.url or "?"
        r = self._report
        r.corrupt[url] = r.corrupt.get(url, 0) + 1
        if len(r.messages) < self.max_messages:
            r.messages.append(str(exn))
        return True

    def shard_done(self, url: str, n_read: int, expected: int | None, error: BaseException | None) -> None:
        """Record one complete read of ``url``: ``n_read`` samples, ``expected`` by the index, ``error``."""
        r = self._report
        r.read[url] = r.read.get(url, 0) + n_read
        what = None
        if error is not None:
            what = f"{type(error).__name__}: {_first_arg(error)}"
        if expected is not None and n_read < expected:
            r.lost[url] = r.lost.get(url, 0) + expected - n_read
            what = what or "the file ends early (a clean end of the tar, so it was probably cut at a member boundary)"
            what = f"{what}; read {n_read} of the {expected} samples the index lists"
        elif expected is not None and n_read > expected:
            what = f"{what + '; ' if what else ''}read {n_read} samples, but the index lists {expected}"
        elif what is not None:
            what = f"{what}; read {n_read} samples" + ("" if expected is None else f" of {expected}")
        if what is not None:
            r.damaged.setdefault(url, what)


def _first_arg(exn: BaseException) -> str:
    """The exception's message without the `` @ <stream>`` webdataset appends."""
    msg = str(exn.args[0]) if exn.args else str(exn)
    return msg.split(" @ <", 1)[0]


def sample_is_complete(sample: Mapping[str, Any]) -> bool:
    """Does ``sample`` carry a label and an image (the parts the transforms need)?"""
    return "cls" in sample and any(k in sample for k in IMAGE_KEYS)


def read_shards(
    src: Iterator[Mapping[str, Any]],
    recorder: SkipRecorder,
    expected: Mapping[str, int] | None = None,
    max_empty_reads: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Pipeline stage: ``{"url": ...}`` items -> samples, shard by shard, tolerating damaged shards.

    Each shard is read with webdataset's ``tarfile_samples``; its first error ends that shard. If it broke
    off inside a sample, that last, incomplete sample (no image or no label) is dropped. The recorder learns
    how many samples each read gave (compared with ``expected[url]``) and what went wrong. After
    ``max_empty_reads`` consecutive reads without a sample (resampled training shards, all of them broken),
    it raises instead of looping forever.
    """
    empty_reads = 0
    for item in src:
        url = item["url"]
        errors: list[BaseException] = []

        def stop_shard(exn: BaseException, errors: list[BaseException] = errors) -> bool:
            errors.append(exn)
            return False

        n, last = 0, None
        for sample in wds.tarfile_samples([{"url": url}], handler=stop_shard):
            if last is not None:
                n += 1
                yield last
            last = sample
        if last is not None and (not errors or sample_is_complete(last)):
            n += 1
            yield last
        recorder.shard_done(url, n, None if expected is None else expected.get(url), errors[0] if errors else None)
        empty_reads = 0 if n else empty_reads + 1
        if max_empty_reads is not None and empty_reads >= max_empty_reads:
            raise RuntimeError(
                f"the last {empty_reads} shard reads gave no sample (the last: {url}"
                f"{': ' + _first_arg(errors[0]) if errors else ''}); are all the shards damaged?"
            )


def batches(
    src: Iterator[Any],
    batch_size: int,
    collate: Callable[[list[Any]], tuple],
    recorder: SkipRecorder,
    partial: bool,
    empty: Callable[[], tuple],
) -> Iterator[tuple]:
    """Pipeline stage: samples -> ``(*collate(samples), SkipReport)``.

    Starts a pass by clearing the recorder. At the end of a finite stream, skip counts that no batch carried
    go out in ``(*empty(), report)``, a batch without samples that the loaders drop.
    """
    recorder.clear()
    buf: list[Any] = []
    for sample in src:
        buf.append(sample)
        if len(buf) >= batch_size:
            yield (*collate(buf), recorder.take())
            buf = []
    if buf and partial:
        yield (*collate(buf), recorder.take())
    elif recorder.pending:
        yield (*empty(), recorder.take())


def split_report(batch: Any) -> tuple[Any, SkipReport | None]:
    """``(batch without its report, report)``; batches without a report pass through unchanged."""
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[-1], SkipReport):
        return batch[:-1], batch[-1]
    return batch, None


# -------------------------------------------------------------------------------------------- main side
class SkipTally:
    """The skip counts of one loader in the main process, per shard URL; warns about what it learns.

    A damaged shard is named once per tally (the training tally lives for the run, so a shard drawn again
    is counted but not named again; the validation tally is per pass). Corrupt samples: the first
    ``log_first`` messages, then every 1000th count.
    """

    def __init__(self, split: str, log_first: int = 20) -> None:
        self.split = split
        self.log_first = log_first
        self.read: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.corrupt: Counter[str] = Counter()
        self.damaged: dict[str, str] = {}
        self.damaged_reads = 0

    def reset(self) -> None:
        """Start from zero (a new validation pass)."""
        self.__init__(self.split, self.log_first)  # type: ignore[misc]

    @property
    def total_corrupt(self) -> int:
        return sum(self.corrupt.values())

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values())

    @property
    def total(self) -> int:
        """Samples skipped: corrupt ones plus those damaged shards lacked."""
        return self.total_corrupt + self.total_lost

    def add(self, report: SkipReport) -> None:
        """Add one batch's report; warn about shards damaged for the first time and corrupt samples."""
        self.read.update(report.read)
        self.lost.update(report.lost)
        for url, what in report.damaged.items():
            self.damaged_reads += 1
            if url not in self.damaged:
                self.damaged[url] = what
                lost = report.lost.get(url, 0)
                log.warning(
                    "%s shard %s is damaged (%s); using what was read%s",
                    self.split,
                    url,
                    what,
                    f", counting the {lost} missing sample(s) as skipped" if lost else "",
                )
        if report.corrupt:
            before = self.total_corrupt
            self.corrupt.update(report.corrupt)
            after = self.total_corrupt
            for i, msg in enumerate(report.messages):
                if before + i < self.log_first:
                    log.warning("%s: skipped corrupt sample #%d: %s", self.split, before + i + 1, msg)
            if after // 1000 > before // 1000:
                log.warning("%s: %d corrupt samples skipped so far", self.split, after)


def per_shard(tally: SkipTally, urls: Sequence[str]) -> tuple[list[int], list[int]]:
    """``(read, lost)`` of each of ``urls`` in this tally (zeros for shards it never read)."""
    return [tally.read.get(u, 0) for u in urls], [tally.lost.get(u, 0) for u in urls]
