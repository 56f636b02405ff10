"""``search.py`` / ``convrnn-search``: run a search worker, watch the study, export winners, write the analysis.

    search.py run    --config configs/search/demo.yaml [--storage URL] [--study NAME] [--n-trials N]
    search.py status --config configs/search/demo.yaml [--storage URL] [--study NAME]
    search.py export --config ... --top-k 5 --how median --out median.yaml     (or --trial N, or --pareto)
    search.py report --config ... --out runs/search/demo/report

The storage URL: ``--storage``, else ``CONVRNN_SEARCH_STORAGE``, else ``study.storage`` of the config, else
SQLite in the run folder. Keep database passwords out of it: PGPASSWORD or ~/.pgpass (docs/search.md).
Bad input exits with status 2 and ``error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

import yaml

from convrnn.errors import UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="search.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", required=True, type=Path, help="search config (configs/search/*.yaml)")
        q.add_argument("--storage", help="study storage URL (default: CONVRNN_SEARCH_STORAGE, study.storage, "
                                         "or SQLite in the run folder); no password in it: use PGPASSWORD/.pgpass")
        q.add_argument("--study", help="study name (default: study.name of the config)")
        q.add_argument("-v", "--verbose", action="store_true")

    run = sub.add_parser("run", help="run trials (a worker; start several to share the study)")
    common(run)
    run.add_argument("--launcher", help="prefix of each trial's command, replacing trial.launcher (e.g. "
                                         "\"torchrun --standalone --nproc_per_node 4 --no-python\"; '' for none)")
    run.add_argument("--trial-set", nargs="+", default=[], metavar="KEY=VALUE",
                     help="set train.py config values of every trial (dotted keys, YAML values), e.g. "
                          "data.train_shards=/data/wds trainer.devices=4; they win over trial.config")
    run.add_argument("--n-trials", type=int, help="the study's total number of trials (default: n_trials of the "
                                                  "config; none: until stopped)")
    status = sub.add_parser("status", help="trials by state, best values, running trials, Pareto front")
    common(status)
    export = sub.add_parser("export", help="write a model YAML of the best / median / one trial / Pareto front")
    common(export)
    how = export.add_mutually_exclusive_group(required=True)
    how.add_argument("--how", choices=["best", "median"], help="best trial, or the paper's median of the top k")
    how.add_argument("--trial", type=int, help="export this trial number")
    how.add_argument("--pareto", action="store_true", help="one YAML per Pareto-front trial into --out (a folder)")
    export.add_argument("--top-k", type=int, default=1, help="trials the median is taken over (ranked by the "
                                                             "first objective)")
    export.add_argument("--search-sizes", action="store_true",
                        help="bake the search's model.overrides (input size, width, classes) into the YAML")
    export.add_argument("--out", required=True, type=Path, help="output YAML (a folder with --pareto)")
    report = sub.add_parser("report", help="PNG/HTML/CSV analysis of the study")
    common(report)
    report.add_argument("--out", required=True, type=Path, help="output folder")
    report.add_argument("--window", type=int, default=50, help="trials in the running mean / sliding window")
    return p


def _load(args: argparse.Namespace):  # noqa: ANN202  (SearchConfig, url)
    from convrnn.search.config import load_config
    from convrnn.search.storage import resolve_url

    cfg = load_config(args.config, check_build=args.command == "run")
    if getattr(args, "launcher", None) is not None:
        cfg.launcher = shlex.split(args.launcher)
    for item in getattr(args, "trial_set", None) or []:
        key, sep, value = item.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise UserError(f"--trial-set {item!r}: expected KEY=VALUE with a dotted key (data.batch_size=64)")
        node = cfg.trial_config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--trial-set {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    if args.study:
        if "/" in args.study:
            raise UserError(f"--study {args.study!r}: a study name cannot contain '/'")
        cfg.study_name = args.study
    url = resolve_url(args.storage, cfg.storage, cfg.run_dir, create=args.command == "run")
    return cfg, url


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``search.py`` and ``convrnn-search``; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    try:
        cfg, url = _load(args)
        if args.command == "run":
            from convrnn.search.worker import run_worker

            n_trials = args.n_trials if args.n_trials is not None else cfg.n_trials
            if n_trials is not None and n_trials < 1:
                raise UserError(f"--n-trials must be >= 1, got {n_trials}")
            summary = run_worker(cfg, url, n_trials)
            print(f"worker done: {summary.ran} trials run here ({summary.complete} complete, {summary.pruned} "
                  f"pruned, {summary.failed} failed) in {summary.seconds:.0f} s; study folder {cfg.run_dir}")
            if summary.too_many_failures:
                print(f"error: the study has {cfg.max_failed_trials} failed trials (study.max_failed_trials); "
                      f"see `search.py status` and the trials' train.log", file=sys.stderr)
                return 1
        elif args.command == "status":
            from convrnn.search.status import format_status

            print(format_status(cfg, url))
        elif args.command == "export":
            from convrnn.search.export import export

            for path in export(cfg, url, how=args.how, top_k=args.top_k, trial=args.trial, pareto=args.pareto,
                               out=args.out, search_sizes=args.search_sizes):
                print(f"wrote {path}")
        elif args.command == "report":
            from convrnn.search.report import write_report

            for path in write_report(cfg, url, args.out, window=args.window):
                print(f"wrote {path}")
    except UserError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the running trial is FAIL in the study; its training process was stopped
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
