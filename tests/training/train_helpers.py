"""Shared helpers of the training tests: a tiny-model config, a train.py runner, and test callbacks.

Everything is CPU-only and small (32-px images, width 1/16, 11 steps), so a training step takes ~0.1 s.
The callbacks are loaded by class path in subprocess runs (tests/training, and tests/ for tiny_shards, are put on
PYTHONPATH).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import Callback
from tiny_shards import SYNTHETIC  # the tiny shards' parameters (tests/tiny_shards.py)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

TINY_MODEL = {"input_size": 32, "width_multiplier": 0.0625, "num_classes": 4, "times": 11, "image_off": 11}


def tiny_config(synthetic_root: Path, run_root: Path, **sections: dict) -> dict:
    """A complete train.py config for the tiny model and data; ``sections`` update each section."""
    cfg = {
        "seed_everything": 0,
        "model": {"arch": "ugrnn_intermediate", "overrides": dict(TINY_MODEL), "lr": 0.05, "warmup_steps": 2},
        "data": {"synthetic": {"root": str(synthetic_root), **SYNTHETIC}, "image_size": 32, "batch_size": 8,
                 "num_workers": 1, "min_scale": 0.35, "shuffle_buffer": 32},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 6, "max_epochs": -1, "log_every_n_steps": 1,
                    "enable_model_summary": False, "num_sanity_val_steps": 0},
        "run": {"root": str(run_root), "name": "tiny", "checkpoint_every_n_steps": 2, "progress_bar": "none",
                "torch_threads": 1, "wandb": "disabled"},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a train.py subprocess: no wandb, our test helpers importable, one thread."""
    env = dict(os.environ)
    env.update({"WANDB_MODE": "disabled", "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), str(REPO)]),
                "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_train(args: list[str], timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """Run ``python train.py ARGS`` to completion with a hard timeout; returns the completed process."""
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=timeout)

class PauseAfterStep(Callback):
    """Sleeps once the given optimiser step is done, so a test can kill -9 the run at a known point."""

    def __init__(self, step: int, seconds: float = 60.0) -> None:
        self.step = step
        self.seconds = seconds

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            print(f"PAUSED at step {self.step}", flush=True)
            time.sleep(self.seconds)


class InjectNaN(Callback):
    """Puts a NaN into the first image of the batch trained at ``step`` and remembers what it broke."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.key: str | None = None
        self.last_ckpt_before: bytes | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        import pathlib

        ckpt = pathlib.Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        self.last_ckpt_before = ckpt.read_bytes()
        batch[0][0, 0, 0, 0] = float("nan")
        self.key = batch[2][0]
