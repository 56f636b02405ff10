"""Training-step throughput of a training config, and how much of each step the data pipeline takes.

    python benchmarks/train_step.py                      # configs/demo.yaml, 40 steps after 5 warm-up steps
    python benchmarks/train_step.py --config configs/imagenet/rgc_intermediate.yaml --steps 50 \
        --extra --data.train_shards /data/imagenet-shards --data.val_shards /data/imagenet-shards

Why: a ConvRNN step is an unrolled graph of T steps, so it is easy to be compute-bound on a GPU and
data-bound on a big node at the same time; this tells which. Runs the real Trainer (same module, loader,
precision and callbacks as train.py, no validation, no checkpoints) and times

- data: the time inside the training loader's ``next()`` (decode, augment, collate, worker hand-off);
- step: everything else between two batches (forward, backward, optimiser, logging).

Prints images/s (this rank) and the data share of the step time. Wall-clock numbers on a shared machine
vary with its load: compare runs taken back to back.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from convrnn.training.cli import ConvRNNCLI
from convrnn.training.module import unpack_batch


class TimedLoader:
    """Wraps a training loader and accumulates the time spent in its ``next()``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fetch_times: list[float] = []

    def __len__(self) -> int:
        return len(self.inner)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.inner)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.fetch_times.append(time.perf_counter() - t0)
            yield batch


class StepClock(Callback):
    """Wall time and images of each training step, measured from one batch start to the next."""

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.images: list[int] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())
        self.images.append(int(unpack_batch(batch)[1].shape[0]))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps (worker start-up, caches)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train.py arguments")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    root = tempfile.mkdtemp(prefix="convrnn-bench-")
    total = args.steps + args.warmup
    cli = ConvRNNCLI(args=["--config", args.config, "--trainer.max_steps", str(total), "--trainer.max_epochs", "-1",
                           "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
                           "--trainer.enable_checkpointing", "false", "--trainer.logger", "false",
                           "--run.progress_bar", "none", "--run.root", root, *args.extra], run=False)
    dm, clock = cli.datamodule, StepClock()
    make_loader = dm.train_dataloader
    timed: dict[str, TimedLoader] = {}

    def train_dataloader() -> TimedLoader:
        timed["loader"] = TimedLoader(make_loader())
        return timed["loader"]

    dm.train_dataloader = train_dataloader  # type: ignore[method-assign]
    cli.trainer.callbacks.append(clock)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=dm)
    wall = time.perf_counter() - start
    steps = [b - a for a, b in zip(clock.marks[:-1], clock.marks[1:], strict=True)][args.warmup:]
    fetch = timed["loader"].fetch_times[args.warmup + 1:total + 1]  # batch i+1 is fetched during step i
    images = sum(clock.images[args.warmup:])
    step_time = sum(steps)
    data_time = sum(fetch) / max(1, len(fetch)) * len(steps)  # the last step fetches nothing
    dev = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"config: {args.config} {' '.join(args.extra)}")
    print(f"device: {dev}, precision: {cli.trainer.precision}, batch: {clock.images[0]} per rank, "
          f"num_workers: {getattr(dm, 'num_workers', '?')}")
    print(f"timed steps: {len(steps)} (after {args.warmup} warm-up), wall for the whole fit: {wall:.1f} s")
    print(f"step time: {1000 * step_time / len(steps):.1f} ms/step -> {images / step_time:.1f} images/s")
    print(f"data pipeline (loader next()): {1000 * data_time / len(steps):.1f} ms/step = "
          f"{100 * data_time / step_time:.1f}% of the step time")


if __name__ == "__main__":
    main()
