"""The search config (``configs/search/*.yaml``): read, validated and resolved before any trial starts.

Why all up front: a typo in a knob name, an empty range or an edge to a missing node must cost seconds, not the
first trial of a cluster job. Every error names its dotted key (``space.cell.rgc.tau_kernal: ...``).
Sections (docs/search.md has the reference): ``study``, ``objectives``, ``sampler``, ``pruner``, ``model``,
``space``, ``trial``, ``neural``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convrnn.errors import UserConfigError
from convrnn.search.space import SearchSpace, load_base_graph
from convrnn.search.storage import has_password
from convrnn.yaml_files import load_yaml_mapping

#: objective name -> Optuna direction
OBJECTIVES = {"val_top1": "maximize", "params": "minimize", "flops": "minimize", "neural": "maximize"}
TOP_KEYS = {"study", "objectives", "sampler", "pruner", "model", "space", "trial", "neural", "n_trials"}
STUDY_KEYS = {"name", "root", "storage", "heartbeat_interval", "grace_period", "retry_failed", "max_failed_trials"}
MODEL_KEYS = {"base", "overrides"}
TRIAL_KEYS = {"base_config", "launcher", "command", "max_steps", "val_every_n_steps", "monitor", "config", "wandb",
              "timeout_s"}
NEURAL_KEYS = {"data", "synthetic", "synthetic_dir", "fit"}
WANDB_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class SearchConfig:
    """A validated search config. ``raw`` is the YAML as read (for the record in the run folder)."""

    path: Path | None
    raw: dict[str, Any]
    study_name: str
    root: Path
    storage: str | None
    heartbeat_interval: int
    grace_period: int
    retry_failed: int
    max_failed_trials: int
    objectives: list[str]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    model_overrides: dict[str, Any]
    space: SearchSpace
    base_config: dict[str, Any]
    base_config_path: Path
    launcher: list[str]
    command: list[str]
    max_steps: int
    val_every_n_steps: int
    monitor: str
    trial_config: dict[str, Any]
    wandb: str
    timeout_s: float | None
    neural: dict[str, Any] = field(default_factory=dict)
    n_trials: int | None = None

    @property
    def run_dir(self) -> Path:
        """The study's folder: ``<study.root>/<study.name>``."""
        return self.root / self.study_name

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserConfigError(key, f"must be a mapping, got {value!r}")
    return dict(value)


def _check(section: Mapping[str, Any], allowed: set[str], key: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise UserConfigError(where, f"unknown key; allowed{' in ' + key if key else ''}: {sorted(allowed)}")


def _int(value: Any, key: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserConfigError(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UserConfigError(key, f"must be a list of strings, got {value!r}")
    return list(value)


def _resolve_path(value: str, config_path: Path | None) -> Path:
    """Paths are relative to the working directory (like train.py configs), else to the config file."""
    path = Path(value)
    if path.is_absolute() or path.exists() or config_path is None:
        return path
    beside = config_path.parent / path
    return beside if beside.exists() else path


def load_config(path: str | Path | None = None, data: Mapping[str, Any] | None = None,
                check_build: bool = True) -> SearchConfig:
    """Read and validate a search config (a file, or ``data`` already read); raises ``UserConfigError``.

    ``check_build``: also build (and dry-run) one model per cell branch at the search's sizes (what a worker
    does before its first trial; status/export/report skip it)."""
    config_path = Path(path) if path is not None else None
    raw = (copy.deepcopy(dict(data)) if data is not None
           else load_yaml_mapping(config_path, "search config"))  # type: ignore[arg-type]
    _check(raw, TOP_KEYS, "")

    study = _mapping(raw.get("study"), "study")
    _check(study, STUDY_KEYS, "study")
    name = study.get("name") or (config_path.stem if config_path else "search")
    if not isinstance(name, str) or not name or "/" in name:
        raise UserConfigError("study.name", f"must be a non-empty name without '/', got {name!r}")
    storage = study.get("storage")
    if storage is not None:
        if not isinstance(storage, str):
            raise UserConfigError("study.storage", f"must be a storage URL, got {storage!r}")
        if has_password(storage):
            raise UserConfigError("study.storage", "holds a password: never write one into a file; use PGPASSWORD, "
                                                   "~/.pgpass (PGPASSFILE) or CONVRNN_SEARCH_STORAGE instead")
    heartbeat = _int(study.get("heartbeat_interval", 60), "study.heartbeat_interval", 1)
    grace = _int(study.get("grace_period", max(120, 2 * heartbeat)), "study.grace_period", 1)
    if grace <= heartbeat:
        raise UserConfigError("study.grace_period", f"must be longer than heartbeat_interval ({heartbeat})")
    retry = _int(study.get("retry_failed", 0), "study.retry_failed", 0)
    max_failed = _int(study.get("max_failed_trials", 10), "study.max_failed_trials", 1)

    objectives = raw.get("objectives", ["val_top1"])
    if isinstance(objectives, str):
        objectives = [objectives]
    if not isinstance(objectives, list) or not objectives:
        raise UserConfigError("objectives", f"must be a non-empty list of {sorted(OBJECTIVES)}")
    for i, o in enumerate(objectives):
        if o not in OBJECTIVES:
            raise UserConfigError(f"objectives[{i}]", f"unknown objective {o!r}; known: {sorted(OBJECTIVES)}")
    if len(set(objectives)) != len(objectives):
        raise UserConfigError("objectives", "lists an objective twice")
    if "val_top1" not in objectives and "neural" not in objectives:
        raise UserConfigError("objectives", "needs val_top1 or neural (params/flops alone need no training)")

    from convrnn.search.pruning import check_pruner_spec
    from convrnn.search.sampler import check_sampler_spec

    sampler = check_sampler_spec(_mapping(raw.get("sampler"), "sampler") or {"name": "tpe"}, "sampler")
    pruner = check_pruner_spec(_mapping(raw.get("pruner"), "pruner") or {"name": "none"}, "pruner")
    if len(objectives) > 1 and pruner["name"] != "none":
        raise UserConfigError("pruner", "Optuna cannot prune multi-objective studies; use {name: none}")

    model = _mapping(raw.get("model"), "model")
    _check(model, MODEL_KEYS, "model")
    base = model.get("base")
    if not isinstance(base, str) or not base:
        raise UserConfigError("model.base", "required: the graph the space starts from (YAML path or zoo name)")
    base_path = _resolve_path(base, config_path) if base.endswith((".yaml", ".yml")) else Path(base)
    base_graph = load_base_graph(str(base_path))
    overrides = _mapping(model.get("overrides"), "model.overrides")
    space = SearchSpace(raw.get("space"), base_graph)

    trial = _mapping(raw.get("trial"), "trial")
    _check(trial, TRIAL_KEYS, "trial")
    base_config = trial.get("base_config")
    if not isinstance(base_config, str):
        raise UserConfigError("trial.base_config", "required: a train.py config the trials start from "
                                                   "(e.g. configs/demo.yaml)")
    base_config_path = _resolve_path(base_config, config_path)
    if not base_config_path.is_file():
        raise UserConfigError("trial.base_config", f"not found: {base_config_path}")
    base_cfg = load_yaml_mapping(base_config_path, "train.py config",
                                 error=functools.partial(UserConfigError, "trial.base_config"))
    max_steps = _int(trial.get("max_steps"), "trial.max_steps", 1)
    val_every = _int(trial.get("val_every_n_steps", max_steps), "trial.val_every_n_steps", 1)
    if max_steps % val_every:
        raise UserConfigError("trial.val_every_n_steps", f"must divide trial.max_steps ({max_steps}) so that the "
                                                         "last validation is at the end of training")
    wandb = trial.get("wandb", "auto")
    if wandb not in WANDB_MODES:
        raise UserConfigError("trial.wandb", f"must be one of {WANDB_MODES}, got {wandb!r}")
    timeout = trial.get("timeout_s")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise UserConfigError("trial.timeout_s", f"must be > 0 seconds, got {timeout!r}")
    command = _str_list(trial.get("command", ["{python}", "-m", "convrnn.training.cli"]), "trial.command")
    if not command:
        raise UserConfigError("trial.command", "must not be empty")

    neural = _mapping(raw.get("neural"), "neural")
    _check(neural, NEURAL_KEYS, "neural")
    if neural and "neural" not in objectives:
        raise UserConfigError("neural", "configures the neural objective, which objectives does not list")
    if "neural" in objectives:
        from convrnn.search.objectives import check_neural_spec

        check_neural_spec(neural, "neural")

    n_trials = raw.get("n_trials")
    if n_trials is not None:
        _int(n_trials, "n_trials", 1)
    cfg = SearchConfig(
        path=config_path, raw=raw, study_name=name, root=Path(study.get("root", "runs/search")), storage=storage,
        heartbeat_interval=heartbeat, grace_period=grace, retry_failed=retry, max_failed_trials=max_failed,
        objectives=list(objectives), sampler=sampler, pruner=pruner,
        model_overrides=overrides, space=space, base_config=base_cfg, base_config_path=base_config_path,
        launcher=_str_list(trial.get("launcher"), "trial.launcher"), command=command, max_steps=max_steps,
        val_every_n_steps=val_every, monitor=str(trial.get("monitor", "val/top1")),
        trial_config=_mapping(trial.get("config"), "trial.config"), wandb=wandb,
        timeout_s=float(timeout) if timeout is not None else None,
        neural=neural, n_trials=n_trials)
    if check_build:
        check_buildable(cfg)
    return cfg


def check_buildable(cfg: SearchConfig) -> None:
    """Build one model per cell branch at the search's sizes, so that a space that cannot build fails now."""
    from convrnn.graph.model import ConvRNN
    from convrnn.graph.spec import resolve_graph

    for point in cfg.space.default_points():
        graph = cfg.space.model_graph(point)
        try:
            model = ConvRNN(resolve_graph(dict(graph, _source="<search space>"), **_model_overrides(cfg)))
            _dry_run(model)
        except Exception as exn:  # noqa: BLE001  (any build error of the user's space is reported, by key)
            branch = f"space.cell.{point.cell_type}" if point.cell_type else "model.base"
            raise UserConfigError(branch, f"the model does not build: {exn}") from None


def _dry_run(model: Any) -> None:
    """One forward pass on the meta device (no memory, no compute): catches schedule and shape errors."""
    import torch

    model = model.to("meta").eval()
    x = torch.empty(1, model.config["in_channels"], model.input_size, model.input_size, device="meta")
    with torch.no_grad():
        model(x)


def _model_overrides(cfg: SearchConfig) -> dict[str, Any]:
    """model.overrides of the base train.py config, updated by the search's model.overrides."""
    base = dict((cfg.base_config.get("model") or {}).get("overrides") or {})
    base.update(cfg.model_overrides)
    return base


def model_overrides(cfg: SearchConfig) -> dict[str, Any]:
    """The ``build_model`` overrides every trial trains with (input size, width, classes, steps)."""
    return _model_overrides(cfg)
