"""``search.py status``: the study at a glance (trials by state, best values, running trials, Pareto front).

It only reads the storage (no heartbeat, nothing written), so it is safe to run while workers are busy.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import optuna
from optuna.trial import FrozenTrial, TrialState

from convrnn.search.config import SearchConfig
from convrnn.search.storage import mask_url


def ranked(study: optuna.Study, objectives: list[str]) -> list[FrozenTrial]:
    """COMPLETE trials, best first by the first objective (its direction), ties by trial number."""
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))


def _fmt(values: list[float] | None, objectives: list[str]) -> str:
    if values is None:
        return "-"
    return ", ".join(f"{o}={v:.4g}" for o, v in zip(objectives, values, strict=True))


def _age(start: dt.datetime | None) -> str:
    if start is None:
        return "?"
    now = dt.datetime.now(start.tzinfo) if start.tzinfo else dt.datetime.now()
    seconds = int((now - start).total_seconds())
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_status(cfg: SearchConfig, url: str, top: int = 5) -> str:
    from convrnn.search.worker import open_study

    study = open_study(cfg, url, heartbeat=False, create=False)
    objectives = list(study.user_attrs.get("objectives") or cfg.objectives)
    trials = study.get_trials(deepcopy=False)
    surplus = [t for t in trials if t.user_attrs.get("surplus")]
    states = Counter(t.state.name for t in trials if not t.user_attrs.get("surplus"))
    lines = [f"study {cfg.study_name!r} in {mask_url(url)}",
             "objectives: " + ", ".join(f"{o} ({d.name.lower()})" for o, d in zip(objectives, study.directions,
                                                                                   strict=True)),
             f"trials: {len(trials) - len(surplus)} ("
             + ", ".join(f"{s.name} {states.get(s.name, 0)}" for s in TrialState) + ")"
             + (f"; {len(surplus)} surplus trial(s) ended unrun" if surplus else "")]
    best = ranked(study, objectives)
    if len(study.directions) == 1:
        if best:
            lines.append(f"best (top {min(top, len(best))} of {len(best)} complete):")
            for t in best[:top]:
                size = f", {t.user_attrs['params']:,} params" if "params" in t.user_attrs else ""
                lines.append(f"  trial {t.number}: {_fmt(t.values, objectives)}{size}")
        else:
            lines.append("best: no complete trial yet")
    else:
        front = sorted(study.best_trials, key=lambda t: t.number)
        lines.append(f"Pareto front ({len(front)} trials):")
        for t in front:
            lines.append(f"  trial {t.number}: {_fmt(t.values, objectives)}")
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if running:
        lines.append("running:")
        for t in running:
            lines.append(f"  trial {t.number}: age {_age(t.datetime_start)}, folder {t.user_attrs.get('trial_dir')}")
    failed = [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")]
    if failed:
        lines.append("failed (last 5):")
        for t in failed[-5:]:
            lines.append(f"  trial {t.number}: {t.user_attrs.get('error', 'worker lost (no heartbeat)')}")
    return "\n".join(lines)
