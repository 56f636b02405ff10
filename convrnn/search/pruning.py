"""Pruning: the study's pruner, and the Lightning callback that reports from inside a trial's training run.

Why a callback of our own (not optuna-integration's): a trial is a ``train.py`` subprocess that may itself be
a DDP job. Rank 0 alone reports ``trial.monitor`` (``val/top1``) at *global steps* to the study's storage (the
integration reports per epoch, collapsing several validations into one), asks the pruner, and broadcasts the
answer so every rank stops at the same step. The callback also writes the trial's result file
(``result.json``: state, objective value, every reported value, steps, fit time) atomically: the worker reads
the objective from it, never from the log. The storage URL comes from the environment
(``CONVRNN_SEARCH_STORAGE``, password-free; the password, if any, in ``PGPASSWORD``), never from the config.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import optuna
from lightning.pytorch.callbacks import Callback

from convrnn.errors import UserConfigError
from convrnn.io import atomic_write_json

PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
           "hyperband": "HyperbandPruner", "successive_halving": "SuccessiveHalvingPruner",
           "threshold": "ThresholdPruner", "patient": None}


def check_pruner_spec(spec: Mapping[str, Any], key: str = "pruner") -> dict[str, Any]:
    """Validate ``{name: median|hyperband|successive_halving|percentile|threshold|none, **kwargs}``."""
    spec = dict(spec)
    name = spec.setdefault("name", "none")
    if name not in PRUNERS or PRUNERS[name] is None:
        raise UserConfigError(f"{key}.name", f"unknown pruner {name!r}; known: "
                                             f"{sorted(k for k, v in PRUNERS.items() if v)}")
    import inspect

    cls = getattr(optuna.pruners, PRUNERS[name])
    params = inspect.signature(cls.__init__).parameters
    for arg in spec:
        if arg != "name" and arg not in params:
            raise UserConfigError(f"{key}.{arg}", f"not an argument of optuna.pruners.{cls.__name__}; "
                                                  f"arguments: {sorted(p for p in params if p != 'self')}")
    try:
        build_pruner(spec)
    except (TypeError, ValueError) as exn:
        raise UserConfigError(key, str(exn)) from None
    return spec


def build_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    spec = dict(spec)
    cls = getattr(optuna.pruners, PRUNERS[spec.pop("name", "none")])
    return cls(**spec)


class OptunaPruningCallback(Callback):
    """Report ``monitor`` to the study at each validation, stop when pruned, and write ``result_file``.

    Args:
        study_name: the study.
        trial_number: the trial's number in the study (the worker asked for it; this process never samples).
        result_file: where the result JSON goes (the trial folder).
        monitor: the metric in ``trainer.callback_metrics`` (``val/top1``).
        pruner: the study's pruner spec (``{name: median, ...}``); ``should_prune`` needs the same pruner.
        storage_env: the environment variable holding the storage URL.
    """

    def __init__(self, study_name: str, trial_number: int, result_file: str, monitor: str = "val/top1",
                 pruner: dict[str, Any] | None = None, storage_env: str = "CONVRNN_SEARCH_STORAGE") -> None:
        self.study_name = study_name
        self.trial_number = int(trial_number)
        self.result_file = result_file
        self.monitor = monitor
        self.pruner_spec = dict(pruner or {"name": "none"})
        self.storage_env = storage_env
        self._trial: optuna.trial.Trial | None = None
        self._values: dict[int, float] = {}
        self._pruned_at: int | None = None
        self._fit_start: float | None = None

    # --------------------------------------------------------------------------------------- storage
    def _open_trial(self) -> optuna.trial.Trial:
        if self._trial is None:
            from convrnn.search.storage import open_storage

            url = os.environ.get(self.storage_env)
            if not url:
                raise RuntimeError(f"{self.storage_env} is not set: the search worker passes the study's storage "
                                   "to its trials in this variable")
            storage = open_storage(url)
            study = optuna.load_study(study_name=self.study_name, storage=storage,
                                      pruner=build_pruner(self.pruner_spec))
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(self.study_name), self.trial_number)
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    # ------------------------------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        if trainer.is_global_zero:
            self._open_trial()  # fail early (bad storage) rather than at the first validation

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            metric = trainer.callback_metrics.get(self.monitor)
            if metric is None:
                raise KeyError(f"the trial's monitor {self.monitor!r} was not logged; logged: "
                               f"{sorted(trainer.callback_metrics)}")
            value = float(metric)
            step = int(trainer.global_step)
            self._values[step] = value
            trial = self._open_trial()
            # Optuna keeps intermediate values (and prunes) only in single-objective studies
            if math.isfinite(value) and len(trial.study.directions) == 1:
                trial.report(value, step)
                prune = bool(trial.should_prune())
        prune = bool(trainer.strategy.broadcast(prune, src=0))  # every rank stops at the same step
        if prune:
            self._pruned_at = int(trainer.global_step)
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        fit_seconds = time.perf_counter() - (self._fit_start or time.perf_counter())
        last_step = max(self._values) if self._values else None
        # atomic (convrnn.io): the worker never reads half a result file
        atomic_write_json(self.result_file, {
            "state": "pruned" if self._pruned_at is not None else "complete",
            "monitor": self.monitor,
            "value": self._values[last_step] if last_step is not None else None,
            "best": max(self._values.values()) if self._values else None,
            "intermediate": {str(k): v for k, v in sorted(self._values.items())},
            "pruned_at_step": self._pruned_at,
            "global_step": int(trainer.global_step),
            "fit_seconds": fit_seconds,
            "world_size": int(trainer.world_size),
        }, indent=2, sort_keys=True)
