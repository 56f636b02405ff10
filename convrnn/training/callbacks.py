"""Callbacks for ConvRNN training: NaN-proof checkpoints, throughput, and a per-rank data audit.

Why: a checkpoint must never hold a broken state (the resume path would load it), the share of step time
spent waiting for data is the first thing to check on a new cluster, and the DDP guarantees (each rank its
own shards, every val sample once, identical weights) are only worth something if they can be checked.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from convrnn.io import atomic_write_text
from convrnn.training.module import NonFiniteLossError, state_digest, unpack_batch


class FiniteModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that refuses to write a state with non-finite weights.

    The training module already stops before a non-finite loss or gradient reaches the weights; this is the
    last line of defence, so ``last.ckpt`` is always a state that training can resume from. Files are written
    to a temp file beside the target and renamed, so a kill -9 mid-write leaves the old one intact.
    Version counters are off by default: a resumed run overwrites ``last.ckpt`` instead of adding ``last-v1``.
    ``save_on_train_end`` also saves when training stops between two ``every_n_train_steps`` saves, so the
    final state is always on disk.
    """

    def __init__(self, *args: Any, enable_version_counter: bool = False, save_on_train_end: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        self.save_on_train_end = save_on_train_end

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.save_on_train_end or self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        module = trainer.lightning_module
        bad = [name for name, p in module.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
        if bad:
            raise NonFiniteLossError(
                f"refusing to write {filepath}: non-finite weights at global step {trainer.global_step} in "
                f"{bad[:5]}; the previous checkpoints are left as they were")
        if "://" in str(filepath):  # remote storage: no rename; Lightning's own save is all there is
            super()._save_checkpoint(trainer, filepath)
            return
        # Lightning's save goes through a temp file in /tmp that is then *copied* when /tmp is another file
        # system, so a kill mid-copy would leave a truncated file. Write beside the target, then rename.
        # A fixed name, not convrnn.io.temp_path: its pid/random part differs per rank, but every rank passes
        # this path to Lightning (strategies that save sharded checkpoints write from all ranks into it), and a
        # kill mid-save then leaves one stale temp per checkpoint that the next save overwrites, not a new one.
        path = Path(filepath)
        tmp = path.with_name(f".{path.name}.tmp")
        super()._save_checkpoint(trainer, str(tmp))
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("FiniteModelCheckpoint.rename")
        self._last_checkpoint_saved = str(path)


class TrainSpeedMonitor(Callback):
    """Logs training throughput (images/s per rank) and the share of time spent outside the step.

    ``perf/wait_fraction`` is the time between one step's end and the next one's start (mostly waiting for
    the next batch) over the total; ``perf/images_per_sec`` counts this rank's images. The first
    ``skip_steps`` steps (start-up, worker spawn) are left out of ``summary``.
    """

    def __init__(self, log_every_n_steps: int = 50, skip_steps: int = 3) -> None:
        self.log_every_n_steps = int(log_every_n_steps)
        self.skip_steps = int(skip_steps)
        self._last_end: float | None = None
        self._start = 0.0
        self._wait: float | None = None
        self._window = [0.0, 0.0, 0]  # wait, step, images
        self._total = [0.0, 0.0, 0]
        self._steps = 0
        self.summary: dict[str, float] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = time.perf_counter()
        self._wait = now - self._last_end if self._last_end is not None else None
        self._start = now

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        self._steps += 1
        if self._wait is not None:
            images = int(unpack_batch(batch)[1].shape[0])
            for acc in (self._window, self._total) if self._steps > self.skip_steps else (self._window,):
                acc[0] += self._wait
                acc[1] += now - self._start
                acc[2] += images
        if self._steps % self.log_every_n_steps == 0 and self._window[2]:
            wait, step, images = self._window
            pl_module.log_dict({"perf/images_per_sec": images / (wait + step),
                                "perf/wait_fraction": wait / (wait + step)}, on_step=True, on_epoch=False)
            self._window = [0.0, 0.0, 0]
        self._last_end = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = None  # validation time is neither waiting for data nor training

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._last_end = None  # nor is writing a checkpoint

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wait, step, images = self._total
        if images:
            self.summary = {"images_per_sec": images / (wait + step), "wait_fraction": wait / (wait + step),
                            "step_seconds": (wait + step) / max(1, self._steps - self.skip_steps),
                            "images": images}


class DistributedAudit(Callback):
    """Writes, per rank, which samples it trained and validated on and a digest of its final weights.

    ``{out_dir}/audit-rank{R}.json`` holds ``train_keys`` (per step), ``val_keys`` (per validation run,
    sanity check excluded), ``val_correct``/``val_count`` per run and ``param_digest`` (SHA-256 of the
    state dict at the end of fit). It needs batches with keys. Used by the DDP tests; also handy to audit a
    new data pipeline.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = str(out_dir)
        self.train_keys: list[list[str]] = []
        self.val_keys: list[list[str]] = []
        self.val_correct: list[int] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.train_keys.append(list(unpack_batch(batch)[2] or []))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_keys.append([])
            self.val_correct.append(0)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking:
            return
        images, labels, keys = unpack_batch(batch)
        self.val_keys[-1].extend(keys or [])
        with torch.no_grad():
            decoded = pl_module.model.decode(pl_module(images))
        self.val_correct[-1] += int((decoded.argmax(-1) == labels).sum())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn != "fit":
            self.write(trainer, pl_module)

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path:
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"audit-rank{trainer.global_rank}.json"
        record = {
            "rank": trainer.global_rank, "world_size": trainer.world_size, "global_step": trainer.global_step,
            "pid": os.getpid(), "train_keys": self.train_keys, "val_keys": self.val_keys,
            "val_correct": self.val_correct, "val_count": [len(k) for k in self.val_keys],
            "param_digest": state_digest(pl_module),
        }
        return atomic_write_text(path, json.dumps(record))
