"""Search benchmarks: the worker's overhead per trial, and what pruning saves.

    python benchmarks/search.py overhead                 # configs/search/demo.yaml, 3 trials
    python benchmarks/search.py pruning --trials 20      # 20-trial synthetic search with and without pruning
    python benchmarks/search.py all

``overhead``: runs ``search.py run`` on the demo config (the real command, a fresh SQLite study) and splits
the worker's wall time into
  - training: each trial's fit time (``on_fit_start`` to ``on_fit_end`` in the trial's process);
  - trial process start-up: the rest of each trial process's life (Python and library imports, building the
    model and the data, writing the checkpoint after training);
  - search machinery: everything outside the trial processes (worker start-up, sampling, storage calls,
    writing the trial configs, parameter counts).
The goal is search machinery < 5 % of the worker's time.

``pruning``: the same synthetic search (the demo space, ``--steps`` steps per trial, validation on
``--val-batches`` batches every ``--val-every`` steps), ``--trials`` trials with the median pruner and without
any, same sampler seed; it compares the total training steps and the best accuracy found. The goal is >= 40 % of
the steps saved with a best accuracy within 1 point. Both searches run at once (one core each): steps and
accuracies do not depend on the timing. Results go to ``--out`` (JSON) and a markdown summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "search" / "demo.yaml"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("WANDB_MODE", "disabled")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("CONVRNN_SEARCH_STORAGE", None)
    return env


def _study(cfg: dict[str, Any]) -> optuna.Study:
    db = Path(cfg["study"]["root"]) / cfg["study"]["name"] / "study.db"
    return optuna.load_study(study_name=cfg["study"]["name"], storage=f"sqlite:///{db}")


def _start(cfg: dict[str, Any], workdir: Path, n_trials: int) -> tuple[subprocess.Popen, Path]:
    path = workdir / f"{cfg['study']['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = workdir / f"{cfg['study']['name']}.log"
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, str(REPO / "search.py"), "run", "--config", str(path),
                                 "--n-trials", str(n_trials)], cwd=REPO, env=_env(), stdout=handle,
                                stderr=subprocess.STDOUT)
    return proc, log


def overhead(workdir: Path, n_trials: int) -> dict[str, Any]:
    cfg = yaml.safe_load(DEMO.read_text())
    cfg["study"].update(name="bench_overhead", root=str(workdir / "runs"))
    cfg["trial"]["wandb"] = "disabled"
    start = time.perf_counter()
    proc, log = _start(cfg, workdir, n_trials)
    if proc.wait() != 0:
        raise SystemExit(f"the search failed; see {log}")
    wall = time.perf_counter() - start
    trials = [t for t in _study(cfg).get_trials() if not t.user_attrs.get("surplus")]
    fit = sum(t.user_attrs.get("fit_seconds", 0.0) for t in trials)
    process = sum(t.user_attrs.get("process_seconds", 0.0) for t in trials)
    return {"trials": len(trials), "states": [t.state.name for t in trials],
            "values": [t.values[0] if t.values else None for t in trials], "wall_s": wall,
            "per_trial_s": wall / max(len(trials), 1), "fit_s": fit, "process_startup_s": process - fit,
            "machinery_s": wall - process, "machinery_fraction": (wall - process) / wall,
            "startup_fraction": (process - fit) / wall, "training_fraction": fit / wall}


def pruning(workdir: Path, n_trials: int, steps: int, val_every: int, val_batches: int,
            pruner_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Both searches; a finished ``without_pruner`` study already in ``workdir`` is reused (same settings)."""
    runs: dict[str, Any] = {}
    procs = []
    spec = pruner_spec or {"name": "median", "n_startup_trials": 5, "n_warmup_steps": val_every}
    for name, pruner in (("with_pruner", spec), ("without_pruner", {"name": "none"})):
        study_name = f"bench_{name}" if name == "without_pruner" else f"bench_{name}_{spec['name']}"
        if name == "without_pruner" and (workdir / "runs" / study_name / "study.db").is_file():
            cfg = yaml.safe_load((workdir / f"{study_name}.yaml").read_text())
            if cfg["trial"]["max_steps"] == steps and cfg["trial"]["val_every_n_steps"] == val_every:
                procs.append((name, cfg, None, workdir / f"{study_name}.log"))
                continue
        cfg = yaml.safe_load(DEMO.read_text())
        cfg["study"].update(name=study_name, root=str(workdir / "runs"))
        cfg["trial"].update(max_steps=steps, val_every_n_steps=val_every, wandb="disabled")
        cfg["trial"]["config"]["trainer"]["limit_val_batches"] = val_batches  # the same val images every time
        cfg["sampler"] = {"name": "tpe", "seed": 0, "n_startup_trials": 10}
        cfg["pruner"] = pruner
        procs.append((name, cfg, *_start(cfg, workdir, n_trials)))
    for name, cfg, proc, log in procs:
        if proc is not None and proc.wait() != 0:
            raise SystemExit(f"the {name} search failed; see {log}")
        trials = [t for t in _study(cfg).get_trials() if not t.user_attrs.get("surplus")]
        steps_done = sum(int(t.user_attrs.get("steps", 0)) for t in trials)
        complete = [t.values[0] for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        runs[name] = {"pruner": cfg["pruner"], "trials": len(trials), "states": [t.state.name for t in trials],
                      "total_steps": steps_done,
                      "best_val_top1": max(complete) if complete else None, "values": complete,
                      "fit_s": sum(t.user_attrs.get("fit_seconds", 0.0) for t in trials)}
    w, wo = runs["with_pruner"], runs["without_pruner"]
    runs["steps_saved_fraction"] = 1 - w["total_steps"] / wo["total_steps"] if wo["total_steps"] else None
    if w["best_val_top1"] is not None and wo["best_val_top1"] is not None:
        runs["best_difference_points"] = 100 * (w["best_val_top1"] - wo["best_val_top1"])
    return runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["overhead", "pruning", "all"])
    p.add_argument("--overhead-trials", type=int, default=3)
    p.add_argument("--trials", type=int, default=20, help="trials of each pruning search")
    p.add_argument("--steps", type=int, default=100, help="training steps per pruning-search trial")
    p.add_argument("--val-every", type=int, default=25)
    p.add_argument("--val-batches", type=int, default=8, help="validation batches (of 32) per report")
    p.add_argument("--pruner", type=yaml.safe_load, help="the pruner of the pruned search, as YAML (default: "
                                                         "{name: median, n_startup_trials: 5, n_warmup_steps: "
                                                         "VAL_EVERY})")
    p.add_argument("--workdir", type=Path, help="keep the studies here (default: a temp folder)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/search.json"))
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_search_"))
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                                         f"{'CUDA' if _has_cuda() else 'no GPU'}", "workdir": str(workdir)}
    if args.what in ("overhead", "all"):
        o = result["overhead"] = overhead(workdir, args.overhead_trials)
        print(f"overhead: {o['trials']} demo trials in {o['wall_s']:.0f} s ({o['per_trial_s']:.0f} s per trial): "
              f"training {100 * o['training_fraction']:.1f} %, trial process start-up "
              f"{100 * o['startup_fraction']:.1f} %, search machinery {100 * o['machinery_fraction']:.1f} %")
    if args.what in ("pruning", "all"):
        r = result["pruning"] = pruning(workdir, args.trials, args.steps, args.val_every, args.val_batches, args.pruner)
        for name in ("without_pruner", "with_pruner"):
            print(f"{name}: {r[name]['total_steps']} steps, best val_top1 {r[name]['best_val_top1']}, "
                  f"states {sorted(set(r[name]['states']))}")
        print(f"steps saved: {100 * (r['steps_saved_fraction'] or 0):.1f} %, best accuracy difference "
              f"{r.get('best_difference_points', float('nan')):+.1f} points")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
