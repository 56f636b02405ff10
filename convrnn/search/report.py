"""``search.py report --out DIR``: the paper's analysis of a study, as PNGs, a CSV and a JSON summary.

- ``trials.png``: every trial's accuracy in trial order (complete trials; pruned ones at their last reported
  value, marked apart), the mean of the last ``window`` complete trials and the best so far (the 2018 paper's
  Fig. 3b).
- ``edges.png``: for each candidate feedback edge, the fraction of trials that include it in a sliding window
  of ``window`` trials, and the median accuracy of complete trials with the edge minus those without it
  (Fig. 4b).
- ``importances.png``: parameter importances (Optuna's default evaluator) for the first objective.
- ``pareto.png``: the Pareto front of the first two objectives (multi-objective studies).
- ``accuracy_vs_params.png``: the first objective against the parameter count.
- ``trials.csv``: every trial: number, state, values, parameters, edges, user attributes, start, duration.
- ``summary.json``: the numbers behind the figures (best trials, edge statistics, importances).
- ``*.html``: Optuna's interactive plots, when plotly is installed.

Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import logging
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from convrnn.io import atomic_open, atomic_write_text
from convrnn.search.config import SearchConfig
from convrnn.search.status import ranked

log = logging.getLogger("convrnn.search")


def _savefig(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format=path.suffix[1:], dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _value(t: FrozenTrial) -> float | None:
    """A trial's first objective: its value if complete, its last report if pruned."""
    if t.state == TrialState.COMPLETE:
        return float(t.values[0])
    if t.state == TrialState.PRUNED and t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def running_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    return [float(np.mean(values[max(0, i + 1 - window): i + 1])) for i in range(len(values))]


def best_so_far(values: list[float], maximize: bool) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max(out[-1], v) if maximize else min(out[-1], v)))
    return out


def edge_statistics(cfg: SearchConfig, trials: list[FrozenTrial], window: int) -> dict[str, Any]:
    """Per candidate edge: inclusion fraction over a sliding window of trials, and the median first objective of
    complete trials with it minus those without it (None when one side is empty)."""
    if cfg.space.edge_candidates is None:
        return {}
    from convrnn.search.export import trial_edges  # noqa: PLC0415  (the same edge reading as export)

    with_edges = [(t, {tuple(e) for e in trial_edges(cfg, t)}) for t in trials if t.params]
    stats: dict[str, Any] = {}
    for s, t in cfg.space.edge_candidates:
        name = f"{s}->{t}"
        flags = [(s, t) in edges for _, edges in with_edges]
        fraction = running_mean([float(f) for f in flags], window)
        values_in = [float(tr.values[0]) for tr, edges in with_edges
                     if tr.state == TrialState.COMPLETE and (s, t) in edges]
        values_out = [float(tr.values[0]) for tr, edges in with_edges
                      if tr.state == TrialState.COMPLETE and (s, t) not in edges]
        diff = (statistics.median(values_in) - statistics.median(values_out)) if values_in and values_out else None
        stats[name] = {"fraction_window": fraction, "n_with": len(values_in), "n_without": len(values_out),
                       "median_with_minus_without": diff}
    return stats


def write_report(cfg: SearchConfig, url: str, out: Path, window: int = 50) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convrnn.search.worker import open_study

    study = open_study(cfg, url, heartbeat=False, create=False)
    objectives = list(study.user_attrs.get("objectives") or cfg.objectives)
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    out.mkdir(parents=True, exist_ok=True)
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    paths: list[Path] = []
    summary: dict[str, Any] = {"study": cfg.study_name, "objectives": objectives, "n_trials": len(trials),
                               "states": {s.name: sum(t.state == s for t in trials) for s in TrialState}}

    # -- every trial in order, mean of the last `window`, best so far (Fig. 3b)
    scored = [(t.number, _value(t), t.state) for t in trials if _value(t) is not None]
    fig, ax = plt.subplots(figsize=(8, 4))
    if scored:
        done = [(n, v) for n, v, s in scored if s == TrialState.COMPLETE]
        pruned = [(n, v) for n, v, s in scored if s == TrialState.PRUNED]
        if done:
            ax.scatter(*zip(*done, strict=True), s=12, color="tab:blue", label="trial (complete)")
        if pruned:
            ax.scatter(*zip(*pruned, strict=True), s=12, marker="x", color="tab:gray", label="pruned (last report)")
        if done:  # the lines follow complete trials only: a pruned trial's last report is not a final value
            dn, dv = [n for n, _ in done], [v for _, v in done]
            ax.plot(dn, running_mean(dv, window), color="tab:orange", label=f"mean of last {window} complete")
            ax.plot(dn, best_so_far(dv, maximize), color="tab:green", label="best so far")
            summary["running_mean_last"] = running_mean(dv, window)[-1]
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("trial")
    ax.set_ylabel(objectives[0])
    ax.set_title(f"{cfg.study_name}: {objectives[0]} per trial")
    paths.append(_savefig(fig, out / "trials.png"))

    # -- feedback edges (Fig. 4b)
    edges = edge_statistics(cfg, trials, window)
    if edges:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
        for name, st in edges.items():
            a1.plot(range(len(st["fraction_window"])), st["fraction_window"], label=name)
        a1.set_xlabel("trial (sampled)")
        a1.set_ylabel(f"fraction with the edge (window {window})")
        a1.legend(fontsize=6, ncol=2)
        names = list(edges)
        diffs = [edges[n]["median_with_minus_without"] for n in names]
        a2.barh(names, [d if d is not None else 0.0 for d in diffs],
                color=["tab:blue" if d is not None else "lightgray" for d in diffs])
        a2.axvline(0, color="black", lw=0.5)
        a2.set_xlabel(f"median {objectives[0]}: with − without (gray: one side empty)")
        a2.tick_params(axis="y", labelsize=6)
        paths.append(_savefig(fig, out / "edges.png"))
        summary["edges"] = {n: {k: v for k, v in st.items() if k != "fraction_window"} for n, st in edges.items()}

    # -- parameter importances
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except (RuntimeError, ValueError, ZeroDivisionError) as exn:
        importances = {}
        log.warning("no parameter importances: %s", exn)
    if importances:
        fig, ax = plt.subplots(figsize=(6, 0.25 * len(importances) + 1))
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names])
        ax.set_xlabel(f"importance for {objectives[0]}")
        ax.tick_params(axis="y", labelsize=7)
        paths.append(_savefig(fig, out / "importances.png"))
        summary["importances"] = dict(importances)

    # -- Pareto front
    if len(study.directions) > 1 and complete:
        front = {t.number for t in study.best_trials}
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [t.values[1] for t in complete]
        ys = [t.values[0] for t in complete]
        ax.scatter(xs, ys, s=12, color="lightgray", label="trials")
        pf = sorted((t.values[1], t.values[0]) for t in complete if t.number in front)
        ax.plot(*zip(*pf, strict=True), "o-", color="tab:red", label="Pareto front")
        ax.set_xlabel(objectives[1])
        ax.set_ylabel(objectives[0])
        ax.legend(fontsize=8)
        paths.append(_savefig(fig, out / "pareto.png"))
        summary["pareto_front"] = sorted(front)

    # -- accuracy against size
    sized = [(t.user_attrs["params"], t.values[0]) for t in complete if "params" in t.user_attrs]
    if sized:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(*zip(*sized, strict=True), s=12)
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(objectives[0])
        paths.append(_savefig(fig, out / "accuracy_vs_params.png"))

    # -- every trial as a table
    import pandas as pd

    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name,
                               "datetime_start": t.datetime_start, "duration_s": t.duration.total_seconds()
                               if t.duration is not None else None}
        for i, o in enumerate(objectives):
            row[o] = t.values[i] if t.values is not None else None
        row.update({f"param.{k}": v for k, v in t.params.items()})
        row.update({f"attr.{k}": json.dumps(v) if isinstance(v, (list, dict)) else v
                    for k, v in t.user_attrs.items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    paths.append(atomic_write_text(out / "trials.csv", table.to_csv(index=False)))

    best = ranked(study, objectives)[:10]
    summary["best"] = [{"number": t.number, "values": t.values, "params": t.params} for t in best]
    paths.append(atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str)))
    paths.extend(_html(study, out, len(complete)))
    return paths


def _html(study: optuna.Study, out: Path, n_complete: int) -> list[Path]:
    """Optuna's interactive plots, when plotly is installed (an optional extra)."""
    import importlib.util

    if importlib.util.find_spec("plotly") is None or n_complete < 2:
        return []
    from optuna import visualization as vis

    paths = []
    plots = {"history.html": lambda: vis.plot_optimization_history(study, target=lambda t: t.values[0]),
             "importances.html": lambda: vis.plot_param_importances(study, target=lambda t: t.values[0])}
    if len(study.directions) > 1:
        plots["pareto.html"] = lambda: vis.plot_pareto_front(study)
    for name, make in plots.items():
        try:
            fig = make()
        except Exception as exn:  # plotly/optuna version quirks must not cost the PNG report
            log.warning("no %s: %s", name, exn)
            continue
        paths.append(atomic_write_text(out / name, fig.to_html()))
    return paths
