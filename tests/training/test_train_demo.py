"""The README's main job: configs/demo.yaml trains to well above chance within the time budget."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from train_helpers import REPO, run_train

pytestmark = pytest.mark.slow


def test_demo_config_learns_within_five_minutes(tmp_path: Path) -> None:
    start = time.monotonic()
    out = run_train(["fit", "--config", str(REPO / "configs" / "demo.yaml"), "--run.root", str(tmp_path / "runs"),
                     "--data.synthetic.root", str(tmp_path / "synthetic"), "--run.progress_bar", "none"],
                    timeout=600)
    wall = time.monotonic() - start
    assert out.returncode == 0, out.stderr[-4000:]
    with open(tmp_path / "runs" / "demo" / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    top1 = [float(r["val/top1"]) for r in rows if r.get("val/top1")]
    print(f"demo: {wall:.0f} s wall (data generation included), val/top1 per epoch {top1}")
    assert [float(r["val/samples"]) for r in rows if r.get("val/samples")][-1] == 960
    assert top1[-1] >= 0.4, f"final val top-1 {top1[-1]:.3f} (chance 0.125)"
    assert wall <= 300, f"the demo took {wall:.0f} s (budget 300 s on 2 CPU cores)"
