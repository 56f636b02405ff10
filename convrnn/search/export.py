"""``search.py export``: turn trials into model YAMLs that ``convrnn.build_model`` and ``train.py`` accept.

- ``--how best``: the best COMPLETE trial (first objective).
- ``--how median --top-k K``: the paper's rule over the K best COMPLETE trials: the median of each numeric knob
  (the lower median for knobs sampled from a list or as integers, so the value is one that was tried), the
  majority of each switch and choice, and each feedback edge kept when more than half of the K trials had it
  (at most ``max_edges``, the most frequent first). The cell type is voted first and its knobs are taken over
  the trials that used it. Ties go to the better trial.
- ``--trial N``: one trial. ``--pareto``: one YAML per Pareto-front trial (multi-objective studies).

The YAML is self-contained (the base graph with ``extends`` resolved) and is checked by building the model
before it is written. Its header names the trials and the training hyperparameters they used. By default it
keeps the base graph's sizes (e.g. 224 px, full width); ``--search-sizes`` bakes in the search's
``model.overrides`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from convrnn.errors import UserError
from convrnn.search.config import SearchConfig, model_overrides
from convrnn.search.space import Point
from convrnn.search.status import ranked
from convrnn.search.trial import write_model_yaml


def trial_edges(cfg: SearchConfig, t: FrozenTrial) -> list[list[str]]:
    """A trial's feedback edges as ``[source, target]`` pairs: what the trial recorded, else read from its params.

    Public because the report's edge statistics must read edges exactly as export's vote does.
    """
    if "edges" in t.user_attrs:
        return [list(e) for e in t.user_attrs["edges"]]
    point = cfg.space.point_from_params(t.params)
    return [list(e) for e in (point.edges or [])]


def _graph(cfg: SearchConfig, point: Point, name: str, search_sizes: bool) -> dict[str, Any]:
    graph = cfg.space.model_graph(point, name=name)
    if search_sizes:
        graph.update({k: v for k, v in model_overrides(cfg).items() if v is not None})
    return graph


def _check_builds(path: Path, cfg: SearchConfig) -> None:
    import convrnn

    try:
        convrnn.build_model(str(path), **model_overrides(cfg))
    except (ValueError, TypeError) as exn:
        path.unlink(missing_ok=True)
        raise UserError(f"the exported model does not build ({exn}); nothing written") from None


def _write(cfg: SearchConfig, out: Path, graph: dict[str, Any], header: list[str]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_model_yaml(out, graph, "\n".join(f"# {line}" for line in header))
    _check_builds(out, cfg)
    return out


def _training(values: Mapping[str, Any]) -> str:
    items = {k[len("train."):]: v for k, v in values.items() if k.startswith("train.")}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items()) or "-"


def export(cfg: SearchConfig, url: str, *, how: str | None = None, top_k: int = 1, trial: int | None = None,
           pareto: bool = False, out: Path, search_sizes: bool = False) -> list[Path]:
    """Write the requested YAML(s); returns their paths."""
    from convrnn.search.worker import open_study

    study = open_study(cfg, url, heartbeat=False, create=False)
    if trial is not None:
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found or found[0].state not in (TrialState.COMPLETE, TrialState.PRUNED):
            state = found[0].state.name if found else "missing"
            raise UserError(f"--trial {trial}: no finished trial with that number in study {cfg.study_name!r} "
                            f"({state})")
        t = found[0]
        point = cfg.space.point_from_params(t.params)
        header = [f"study {cfg.study_name}, trial {t.number} ({t.state.name}, values {t.values})",
                  f"training: {_training(t.params)}"]
        return [_write(cfg, out, _graph(cfg, point, f"{cfg.study_name}_trial{t.number}", search_sizes), header)]
    if pareto:
        if len(study.directions) < 2:
            raise UserError("--pareto needs a multi-objective study (objectives: [val_top1, params, ...])")
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for t in sorted(study.best_trials, key=lambda t: t.number):
            point = cfg.space.point_from_params(t.params)
            header = [f"study {cfg.study_name}, Pareto-front trial {t.number}: "
                      + ", ".join(f"{o}={v:.4g}" for o, v in zip(cfg.objectives, t.values, strict=True)),
                      f"training: {_training(t.params)}"]
            paths.append(_write(cfg, out / f"trial_{t.number:05d}.yaml",
                                _graph(cfg, point, f"{cfg.study_name}_trial{t.number}", search_sizes), header))
        return paths
    if top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {top_k}")
    best = ranked(study, cfg.objectives)
    if not best:
        raise UserError(f"study {cfg.study_name!r} has no COMPLETE trial yet")
    if how == "best":
        t = best[0]
        point = cfg.space.point_from_params(t.params)
        header = [f"study {cfg.study_name}: best trial {t.number} ({cfg.objectives[0]}={t.values[0]:.4g})",
                  f"training: {_training(t.params)}"]
        return [_write(cfg, out, _graph(cfg, point, f"{cfg.study_name}_best", search_sizes), header)]
    if len(best) < top_k:
        raise UserError(f"--top-k {top_k}: the study has only {len(best)} COMPLETE trials")
    top = best[:top_k]
    point, chosen = cfg.space.median_point([t.params for t in top], [trial_edges(cfg, t) for t in top])
    header = [f"study {cfg.study_name}: median of the top {top_k} trials by {cfg.objectives[0]} "
              f"(trials {[t.number for t in top]})",
              "numeric knobs: median; switches, choices and edges: majority (docs/search.md)",
              f"training: {_training(chosen)}"]
    return [_write(cfg, out, _graph(cfg, point, f"{cfg.study_name}_median{top_k}", search_sizes), header)]


__all__ = ["export", "optuna", "trial_edges"]
