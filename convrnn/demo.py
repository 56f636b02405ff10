"""The main job on the embedded data: train a small ConvRNN on synthetic objects, then score it on synthetic
V4/IT recordings. Run from a clone: `make demo` (or `python -m convrnn.demo`).

Both stages are the real commands a user runs (`train.py fit`, `scripts/fit_neural.py`), started as
subprocesses so that the demo exercises exactly what the README documents.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(step: str, command: list[str]) -> None:
    print(f"\n=== {step}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{step} failed with exit code {result.returncode}")
    print(f"=== {step} finished in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml", help="training config (default: the demo)")
    parser.add_argument("--out", default="runs/demo/neural", help="where the neural scores and plots go")
    parser.add_argument("--skip-train", action="store_true", help="score the existing runs/demo checkpoint")
    args = parser.parse_args(argv)
    if not (REPO / "train.py").is_file():
        raise SystemExit(f"run the demo from a clone of the repository (no train.py in {REPO})")
    checkpoint = REPO / "runs" / Path(args.config).stem / "checkpoints" / "last.ckpt"
    if not args.skip_train:
        _run("train", [sys.executable, "train.py", "fit", "--config", args.config])
    if not checkpoint.is_file():
        raise SystemExit(f"no checkpoint at {checkpoint}: did training run?")
    _run("neural scoring", [sys.executable, "scripts/fit_neural.py", "--model", str(checkpoint),
                            "--data", "synthetic", "--out", args.out])
    print(f"\nScores: {args.out}/scores.csv, plots: {args.out}/*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
