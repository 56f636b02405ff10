"""A search worker: join (or create) the study, then run trials until the study has enough.

Pattern (a) of running Lightning under Optuna: this process is not distributed. It asks the study for a
trial (the sampler runs here, once), writes the trial's configs, runs train.py in a subprocess (which may be a
DDP job) and tells the study the result. Start the same command on many machines with one shared storage and
they share the study; start it again and it resumes.

``n_trials`` is the study's total, not this worker's: a worker stops when COMPLETE + PRUNED + RUNNING + WAITING
trials reach it. Two workers that ask at the same moment can both create the N-th trial; the one whose trial
number comes later sees N trials ahead of its own and ends that trial at once as FAIL with the user attribute
``surplus`` (nothing is trained; ``status`` lists these apart). So exactly N trials run.

Heartbeats (RDB storages): while a trial runs, the worker writes a heartbeat every ``heartbeat_interval``
seconds. A trial whose worker died (kill -9, node lost) is turned into FAIL by the next worker once
``grace_period`` has passed, and re-queued with the same parameters when ``retry_failed`` > 0.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from convrnn.errors import UserError
from convrnn.search.config import SearchConfig, model_overrides
from convrnn.search.pruning import build_pruner
from convrnn.search.sampler import build_sampler
from convrnn.search.storage import mask_url, open_storage
from convrnn.search.trial import TrialFailed, run_trial, trial_dir

log = logging.getLogger("convrnn.search")
ACTIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class SurplusTrial(Exception):
    """The study already had its n_trials when this trial was created (see the module doc)."""


def open_study(cfg: SearchConfig, url: str, heartbeat: bool = True, create: bool = True) -> optuna.Study:
    """Load the study, creating it on first use (several workers may race to create it: that is fine)."""
    last: Exception | None = None
    for attempt in range(5):
        try:
            storage = open_storage(url, cfg.heartbeat_interval if heartbeat else None, cfg.grace_period,
                                   cfg.retry_failed)
            if create:
                study = optuna.create_study(study_name=cfg.study_name, storage=storage,
                                            sampler=build_sampler(cfg.sampler), pruner=build_pruner(cfg.pruner),
                                            directions=cfg.directions, load_if_exists=True)
            else:
                study = optuna.load_study(study_name=cfg.study_name, storage=storage,
                                          sampler=build_sampler(cfg.sampler), pruner=build_pruner(cfg.pruner))
            break
        except KeyError:
            raise UserError(f"no study {cfg.study_name!r} in {mask_url(url)}; start it with `search.py run`") \
                from None
        except UserError:
            raise
        except Exception as exn:  # two workers creating the schema/study at once: retry
            last = exn
            time.sleep(0.5 + attempt)
    else:
        raise UserError(f"cannot open study {cfg.study_name!r} in {mask_url(url)}: {type(last).__name__}")
    directions = [d.name.lower() for d in study.directions]
    if directions != cfg.directions:
        raise UserError(f"study {cfg.study_name!r} optimises {directions}, but objectives {cfg.objectives} "
                        f"mean {cfg.directions}; use another study.name")
    if create and study.user_attrs.get("objectives") is None:
        study.set_user_attr("objectives", list(cfg.objectives))
    return study


@dataclass
class WorkerSummary:
    ran: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    surplus: int = 0
    seconds: float = 0.0
    too_many_failures: bool = False


def _counts(study: optuna.Study) -> tuple[int, int, int]:
    """(COMPLETE + PRUNED + RUNNING + WAITING, FAIL that were run, WAITING)."""
    trials = study.get_trials(deepcopy=False)
    active = sum(t.state in ACTIVE for t in trials)
    failed = sum(t.state == TrialState.FAIL and not t.user_attrs.get("surplus") for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return active, failed, waiting


class Objective:
    """What ``study.optimize`` calls for each trial (runs in the worker; the training is a subprocess)."""

    def __init__(self, cfg: SearchConfig, study: optuna.Study, url: str, n_trials: int | None) -> None:
        self.cfg = cfg
        self.study = study
        self.url = url
        self.n_trials = n_trials
        self.overrides = model_overrides(cfg)
        self.last_number: int | None = None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        cfg = self.cfg
        self.last_number = trial.number
        if self.n_trials is not None:
            ahead = sum(t.number < trial.number for t in self.study.get_trials(deepcopy=False, states=ACTIVE))
            if ahead >= self.n_trials:
                trial.set_user_attr("surplus", True)
                raise SurplusTrial(f"the study already has {self.n_trials} trials")
        point = cfg.space.sample(trial)
        graph = cfg.space.model_graph(point, name=f"{cfg.study_name}_trial{trial.number}")
        folder = trial_dir(cfg, trial.number)
        trial.set_user_attr("trial_dir", str(folder.relative_to(cfg.run_dir)))
        trial.set_user_attr("log", str(folder.relative_to(cfg.run_dir) / "train.log"))
        if point.edges is not None:
            trial.set_user_attr("edges", [list(e) for e in point.edges])
        start = time.perf_counter()
        try:
            extras = self._static_objectives(trial, graph, folder)
            result = run_trial(cfg, point, trial.number, self.url, graph)
        except TrialFailed as exn:
            trial.set_user_attr("error", str(exn))
            raise
        trial.set_user_attr("fit_seconds", result.fit_seconds)
        trial.set_user_attr("process_seconds", result.process_seconds)
        trial.set_user_attr("steps", result.global_step)
        if result.state == "pruned":
            trial.set_user_attr("pruned_at_step", result.pruned_at_step)
            trial.set_user_attr("trial_seconds", time.perf_counter() - start)
            raise optuna.TrialPruned(f"pruned at step {result.pruned_at_step}")
        values: dict[str, float] = {"val_top1": result.value, **extras}
        if "neural" in cfg.objectives:
            values["neural"] = self._neural(trial, folder)
        trial.set_user_attr("trial_seconds", time.perf_counter() - start)
        out = tuple(float(values[o]) for o in cfg.objectives)
        return out[0] if len(out) == 1 else out

    def _static_objectives(self, trial: optuna.Trial, graph: dict[str, Any], folder: Path) -> dict[str, float]:
        """params and flops (always recorded as attributes: the report plots accuracy against size)."""
        from convrnn.search.objectives import count_flops, count_params
        from convrnn.search.trial import write_model_yaml

        folder.mkdir(parents=True, exist_ok=True)
        path = write_model_yaml(folder / "model.yaml", graph)
        try:
            params = count_params(path, self.overrides)
            trial.set_user_attr("params", params)
            out: dict[str, float] = {"params": float(params)}
            if "flops" in self.cfg.objectives:
                flops = count_flops(path, self.overrides)
                trial.set_user_attr("flops", flops)
                out["flops"] = float(flops)
        except Exception as exn:  # an invalid combination of knobs fails this trial, not the worker
            raise TrialFailed(f"the sampled model does not build: {type(exn).__name__}: {exn}") from None
        return out

    def _neural(self, trial: optuna.Trial, folder: Path) -> float:
        from convrnn.search.objectives import neural_score

        ckpt = folder / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise TrialFailed(f"no checkpoint to score: {ckpt}")
        try:
            score, seconds = neural_score(ckpt, folder / "neural", self.cfg.neural, self.cfg.run_dir)
        except Exception as exn:  # a failed fit fails this trial, not the worker
            raise TrialFailed(f"neural scoring failed: {type(exn).__name__}: {exn}") from None
        trial.set_user_attr("neural_seconds", seconds)
        return score


def run_worker(cfg: SearchConfig, url: str, n_trials: int | None = None) -> WorkerSummary:
    """Run trials until the study has ``n_trials`` (None: until stopped) or too many failures."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    record = cfg.run_dir / "search_config.yaml"
    if not record.exists():
        record.write_text(yaml.safe_dump(cfg.raw, sort_keys=False))  # validated: holds no password
    study = open_study(cfg, url)
    objective = Objective(cfg, study, url, n_trials)
    summary = WorkerSummary()
    start = time.perf_counter()
    log.info("study %r in %s: %s", cfg.study_name, mask_url(url),
             f"{n_trials} trials in all" if n_trials else "no trial limit")
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's RUNNING trial -> FAIL (RDB heartbeat)
        active, failed, waiting = _counts(study)
        if n_trials is not None and active >= n_trials and not waiting:  # a re-queued trial still has to run
            break
        if failed >= cfg.max_failed_trials:
            log.error("stopping: %d trials failed (study.max_failed_trials); see their logs", failed)
            summary.too_many_failures = True
            break
        objective.last_number = None
        study.optimize(objective, n_trials=1, catch=(TrialFailed, SurplusTrial), gc_after_trial=False)
        if objective.last_number is None:
            continue
        last = next(t for t in study.get_trials(deepcopy=False) if t.number == objective.last_number)
        summary.ran += 1
        if last.user_attrs.get("surplus"):
            summary.surplus += 1
            break
        if last.state == TrialState.COMPLETE:
            summary.complete += 1
        elif last.state == TrialState.PRUNED:
            summary.pruned += 1
        else:
            summary.failed += 1
        _log_trial(last, cfg)
    summary.seconds = time.perf_counter() - start
    return summary


def _log_trial(t: optuna.trial.FrozenTrial, cfg: SearchConfig) -> None:
    attrs = t.user_attrs
    if t.state == TrialState.COMPLETE:
        values = ", ".join(f"{o}={v:.4g}" for o, v in zip(cfg.objectives, t.values, strict=True))
        log.info("trial %d COMPLETE %s (fit %.1f s, trial %.1f s)", t.number, values,
                 attrs.get("fit_seconds", float("nan")), attrs.get("trial_seconds", float("nan")))
    elif t.state == TrialState.PRUNED:
        log.info("trial %d PRUNED at step %s", t.number, attrs.get("pruned_at_step"))
    else:
        log.warning("trial %d FAILED: %s (log: %s)", t.number, attrs.get("error", "?"),
                    cfg.run_dir / attrs.get("log", "?"))
