"""Shared helpers of the search tests: tiny search configs built from the shipped demo, and CLI runners.

The trials are tiny (32 px, width 1/8, 11 time steps: the fewest the intermediate graph allows, 4 training
steps) so that a trial's train.py subprocess takes a few seconds on one core; the tests/search folder (and tests/,
for tiny_shards) is put on PYTHONPATH so trials can load the test callbacks below by class path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import Callback
from tiny_shards import SYNTHETIC  # the tiny shards' parameters (tests/tiny_shards.py)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEMO = REPO / "configs" / "search" / "demo.yaml"


def base_train_config(path: Path, synthetic_root: Path) -> Path:
    """The shipped configs/demo.yaml, pointed at the tiny synthetic shards (what trial.base_config names)."""
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["data"] = {**cfg["data"], "synthetic": {"root": str(synthetic_root), **SYNTHETIC}, "batch_size": 8,
                   "num_workers": 0, "shuffle_buffer": 16}
    cfg["run"] = {**cfg.get("run", {}), "torch_threads": 1}
    path.write_text(yaml.safe_dump(cfg))
    return path


def search_config(tmp: Path, synthetic_root: Path, name: str | None = None, **sections: Any) -> dict[str, Any]:
    """configs/search/demo.yaml at test size; ``sections`` replace top-level sections (dicts are updated)."""
    cfg = yaml.safe_load(DEMO.read_text())
    cfg["study"].update(name=name or f"t{uuid.uuid4().hex[:8]}", root=str(tmp / "runs"))
    cfg["model"]["base"] = str(REPO / cfg["model"]["base"])
    cfg["model"]["overrides"] = {"input_size": 32, "width_multiplier": 0.125, "num_classes": 8, "times": 11,
                                 "image_off": 11}
    cfg["trial"].update(base_config=str(base_train_config(tmp / "base_train.yaml", synthetic_root)),
                        max_steps=4, val_every_n_steps=2, wandb="disabled")
    cfg["trial"]["config"] = {"data": {"batch_size": 8}, "trainer": {"accelerator": "cpu", "devices": 1,
                                                                     "log_every_n_steps": 1,
                                                                     "enable_model_summary": False}}
    cfg["sampler"] = {"name": "tpe", "seed": 0, "n_startup_trials": 5}
    cfg["pruner"] = {"name": "none"}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def write_config(tmp: Path, cfg: dict[str, Any], name: str = "search.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.update({"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), str(REPO)])})
    out.pop("CONVRNN_SEARCH_STORAGE", None)
    out.update(extra)
    return out


def search_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "search.py"), *args]


def run_search(*args: str, timeout: float = 240, env_extra: dict[str, str] | None = None,
               drop_env: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    e = env(**(env_extra or {}))
    for key in drop_env:
        e.pop(key, None)
    return subprocess.run(search_cmd(*args), cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout)


class RaiseInTrial(Callback):
    """Raises in the trial whose number is ``trial`` (read from CONVRNN_SEARCH_TRIAL) after ``step`` steps."""

    def __init__(self, trial: int = 0, step: int = 1) -> None:
        self.trial = trial
        self.step = step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if int(os.environ.get("CONVRNN_SEARCH_TRIAL", "-1")) == self.trial and trainer.global_step >= self.step:
            raise RuntimeError(f"injected failure in trial {self.trial} at step {trainer.global_step}")


class SlowTrial(Callback):
    """In trial ``trial`` only: prints its pid and sleeps after each step, so a test can kill the worker
    mid-trial."""

    def __init__(self, trial: int = 0, seconds: float = 1.0) -> None:
        self.trial = trial
        self.seconds = seconds

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        import time

        if int(os.environ.get("CONVRNN_SEARCH_TRIAL", "-1")) == self.trial:
            print(f"SLOW step {trainer.global_step} pid {os.getpid()}", flush=True)
            time.sleep(self.seconds)


def pg_password() -> str:
    """The test role's password, read from the libpq password file scripts/ci/start_postgres.sh wrote."""
    line = Path(os.environ["PGPASSFILE"]).read_text().strip().splitlines()[0]
    return line.split(":", 4)[4]
