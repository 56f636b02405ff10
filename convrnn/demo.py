"""The main job on the embedded data: train a small ConvRNN on synthetic objects, then score it on synthetic
V4/IT recordings. ``make demo`` in a clone, or ``convrnn-demo`` anywhere once the package is installed.

Both stages are the real commands a user runs (``convrnn-train fit``, ``convrnn-fit-neural``), started as
subprocesses so that the demo exercises exactly what the README documents. Everything is written under the
current folder: ``data/synthetic/`` (the rendered shards), ``runs/demo/`` (checkpoints, logs) and
``runs/demo/neural/`` (scores and plots).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from convrnn.zoo import DEMO_CONFIG


def _run(step: str, command: list[str]) -> None:
    print(f"\n=== {step}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command)
    if result.returncode != 0:
        raise SystemExit(f"{step} failed with exit code {result.returncode}")
    print(f"=== {step} finished in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEMO_CONFIG), help="training config (default: the packaged demo)")
    parser.add_argument("--out", default="runs/demo/neural", help="where the neural scores and plots go")
    parser.add_argument("--skip-train", action="store_true", help="score the existing runs/demo checkpoint")
    args = parser.parse_args(argv)
    if not Path(args.config).is_file():
        parser.error(f"--config: {args.config} does not exist")
    checkpoint = Path("runs") / Path(args.config).stem / "checkpoints" / "last.ckpt"
    if not args.skip_train:
        _run("train", [sys.executable, "-m", "convrnn.training.cli", "fit", "--config", args.config])
    if not checkpoint.is_file():
        raise SystemExit(f"no checkpoint at {checkpoint}: did training run?")
    _run("neural scoring", [sys.executable, "-m", "convrnn.neural.cli", "--model", str(checkpoint),
                            "--data", "synthetic", "--out", args.out])
    print(f"\nScores: {args.out}/scores.csv, plots: {args.out}/*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
