"""One trial: write its model YAML and train.py config into its folder, run train.py, read its result.

A trial folder (``<run folder>/trials/<number>/``) holds ``model.yaml`` (the sampled graph, self-contained),
``train.yaml`` (the LightningCLI config: ``trial.base_config`` + the sampled hyperparameters + the pruning
callback), ``train.log`` (the run's stdout and stderr, kept), ``result.json`` (written by the callback), and
what train.py writes into its run folder, which is the trial folder (``checkpoints/``, ``csv/``, ``tb/``).
The training runs in a subprocess (``trial.launcher`` + ``trial.command`` + ``fit --config train.yaml``), so
it can be a torchrun or srun DDP job; the worker itself is never distributed and no rank samples its own
parameters. The storage URL goes to the subprocess in the environment, never in argv or a file.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convrnn.graph.spec import deep_merge
from convrnn.io import atomic_write_text
from convrnn.search.config import SearchConfig, model_overrides
from convrnn.search.space import TRAINING_KEYS, Point
from convrnn.search.storage import STORAGE_ENV, mask_url

TRIAL_ENV = "CONVRNN_SEARCH_TRIAL"
CALLBACK = "convrnn.search.pruning.OptunaPruningCallback"
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*|error: .*)$")


class TrialFailed(Exception):
    """The trial's training did not finish; the message says why (the log stays in the trial folder)."""


@dataclass
class TrialResult:
    state: str  # "complete" | "pruned"
    value: float | None
    intermediate: dict[int, float]
    global_step: int
    fit_seconds: float
    process_seconds: float
    pruned_at_step: int | None


def trial_dir(cfg: SearchConfig, number: int) -> Path:
    return cfg.run_dir / "trials" / f"{number:05d}"


def write_model_yaml(path: Path, graph: dict[str, Any], header: str = "") -> Path:
    text = (header if header.endswith("\n") or not header else header + "\n") + yaml.safe_dump(graph,
                                                                                                sort_keys=False)
    atomic_write_text(path, text)
    return path


def train_config(cfg: SearchConfig, point: Point, folder: Path, model_yaml: Path, number: int) -> dict[str, Any]:
    """The train.py (LightningCLI) config of one trial."""
    train = copy.deepcopy(cfg.base_config)
    for section in ("model", "data", "trainer", "run"):
        train[section] = dict(train.get(section) or {})
    train["model"]["arch"] = str(model_yaml.resolve())
    train["model"]["overrides"] = model_overrides(cfg)
    for name, value in point.training.items():
        section, key = TRAINING_KEYS[name]
        train[section][key] = value
    trainer = train["trainer"]
    trainer.update(max_steps=cfg.max_steps, max_epochs=-1, val_check_interval=cfg.val_every_n_steps,
                   check_val_every_n_epoch=None, num_sanity_val_steps=0)
    callbacks = list(trainer.get("callbacks") or [])
    callbacks.append({"class_path": CALLBACK, "init_args": {
        "study_name": cfg.study_name, "trial_number": int(number), "result_file": str((folder / "result.json")
                                                                                     .resolve()),
        "monitor": cfg.monitor, "pruner": dict(cfg.pruner), "storage_env": STORAGE_ENV}})
    run = train["run"]
    # the trial folder is the run folder (checkpoints/, csv/, tb/, wandb/ beside model.yaml), and the
    # W&B run is named after the trial number, grouped by study
    run.update(root=str(folder.parent.resolve()), name=folder.name, wandb=cfg.wandb, wandb_group=cfg.study_name,
               wandb_tags=["convrnn-search", cfg.study_name], progress_bar="none",
               checkpoint_every_n_steps=cfg.max_steps)
    extra = copy.deepcopy(cfg.trial_config)
    extra_callbacks = list((extra.get("trainer") or {}).pop("callbacks", None) or [])
    train = deep_merge(train, extra)
    train["trainer"]["callbacks"] = callbacks + extra_callbacks
    return train


def _parent_death_signal() -> Any:
    """A preexec hook: the trial gets SIGTERM when its worker dies (kill -9 included), so no orphan trains on."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


def command(cfg: SearchConfig, train_yaml: Path) -> list[str]:
    argv = [sys.executable if part == "{python}" else part for part in cfg.command]
    return [*cfg.launcher, *argv, "fit", "--config", str(train_yaml.resolve())]


def error_summary(log: Path, returncode: int) -> str:
    """The last error line of a failed run's log (or how it died), for the trial's attributes."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = " (out of memory?)" if returncode == -signal.SIGKILL else ""
        head = f"killed by {name}{why}"
    else:
        head = f"exit status {returncode}"
    lines: list[str] = []
    if log.is_file():
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 20000))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    errors = [line.strip() for line in lines if _ERROR_LINE.match(line.strip())]
    detail = errors[-1] if errors else next((line.strip() for line in reversed(lines) if line.strip()), "")
    return f"{head}: {detail[:800]}" if detail else head


def run_trial(cfg: SearchConfig, point: Point, number: int, storage_url: str, graph: dict[str, Any]
              ) -> TrialResult:
    """Train one trial in a subprocess and return what its result file says; raises ``TrialFailed``."""
    folder = trial_dir(cfg, number)
    folder.mkdir(parents=True, exist_ok=True)
    result_file = folder / "result.json"
    if result_file.exists():
        result_file.unlink()  # a retried folder must not hand back the old result
    model_yaml = write_model_yaml(folder / "model.yaml", graph,
                                  f"# study {cfg.study_name}, trial {number}: sampled by convrnn-search")
    train_yaml = folder / "train.yaml"
    atomic_write_text(train_yaml, yaml.safe_dump(train_config(cfg, point, folder, model_yaml, number),
                                            sort_keys=False))
    env = dict(os.environ)
    env.update({STORAGE_ENV: storage_url, TRIAL_ENV: str(number), "PYTHONUNBUFFERED": "1"})
    argv = command(cfg, train_yaml)
    log = folder / "train.log"
    start = time.perf_counter()
    with open(log, "wb") as out:
        out.write(f"# {' '.join(argv)}\n# storage: {mask_url(storage_url)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_parent_death_signal())
        try:
            returncode = proc.wait(timeout=cfg.timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise TrialFailed(f"timed out after {cfg.timeout_s:g} s (trial.timeout_s)") from None
        except BaseException:  # the worker is being stopped (Ctrl-C): do not leave the training behind
            proc.terminate()
            proc.wait()
            raise
    seconds = time.perf_counter() - start
    if returncode != 0:
        raise TrialFailed(error_summary(log, returncode))
    if not result_file.is_file():
        raise TrialFailed("train.py exited without writing result.json (was the pruning callback removed?)")
    data = json.loads(result_file.read_text())
    if data.get("value") is None:
        raise TrialFailed(f"no validation value of {data.get('monitor')!r} was reported; does the data have a "
                          "validation split?")
    return TrialResult(state=data["state"], value=float(data["value"]),
                       intermediate={int(k): float(v) for k, v in data.get("intermediate", {}).items()},
                       global_step=int(data["global_step"]), fit_seconds=float(data["fit_seconds"]),
                       process_seconds=seconds, pruned_at_step=data.get("pruned_at_step"))
