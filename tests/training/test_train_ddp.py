"""Real 2-process DDP on CPU (gloo), and 2 "nodes" on loopback with torchrun.

Checks what the DDP design promises (docs/training.md): each rank validates on its own shards, together
they see every val sample exactly once (the 3 val shards split 2 + 1, so the ranks even see different
numbers of val batches), the weights stay identical across ranks, and the logged metrics are the totals
over ranks rather than rank 0's share.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import REPO, run_train, subprocess_env, tiny_config, write_config

from convrnn.data.index import read_index

pytestmark = pytest.mark.slow


def _all_val_keys(synthetic_root: Path) -> list[str]:
    import tarfile

    index = read_index(synthetic_root)
    keys = []
    for shard in index["splits"]["val"]["shards"]:
        with tarfile.open(synthetic_root / shard["name"]) as tf:
            keys += sorted({m.name.split(".")[0] for m in tf.getmembers()})
    return keys


def _check_audits(audit_dir: Path, run_dir: Path, synthetic_root: Path, steps: int) -> None:
    audits = [json.loads((audit_dir / f"audit-rank{r}.json").read_text()) for r in (0, 1)]
    assert [a["world_size"] for a in audits] == [2, 2]
    assert [a["global_step"] for a in audits] == [steps, steps]
    # identical weights on both ranks after training
    assert audits[0]["param_digest"] == audits[1]["param_digest"]
    # each rank trained on its own stream
    assert audits[0]["train_keys"] != audits[1]["train_keys"]
    assert all(len(k) == 8 for a in audits for k in a["train_keys"])
    # validation: disjoint shards per rank, every sample exactly once, every validation run
    expected = sorted(_all_val_keys(synthetic_root))
    runs = len(audits[0]["val_keys"])
    assert runs >= 1 and len(audits[1]["val_keys"]) == runs
    for i in range(runs):
        k0, k1 = audits[0]["val_keys"][i], audits[1]["val_keys"][i]
        assert k0 and k1 and not set(k0) & set(k1)
        assert sorted(k0 + k1) == expected
    assert len(audits[0]["val_keys"][0]) != len(audits[1]["val_keys"][0])  # 16 vs 8: uneven on purpose
    # the logged metrics are over both ranks (rank 0 alone saw 16 of 24)
    with open(next((run_dir / "csv").glob("version_*")) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/top1")]
    assert len(rows) == runs
    for i, row in enumerate(rows):
        assert float(row["val/samples"]) == len(expected)
        correct = audits[0]["val_correct"][i] + audits[1]["val_correct"][i]
        assert float(row["val/top1"]) == pytest.approx(correct / len(expected), abs=1e-6)


def test_ddp_two_processes_cpu(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = tiny_config(synthetic_root, tmp_path / "runs",
                      trainer={"devices": 2, "strategy": "ddp", "max_steps": 6, "val_check_interval": 3},
                      run={"audit_dir": str(tmp_path / "audit"), "checkpoint_every_n_steps": 3})
    out = run_train(["fit", "--config", str(write_config(tmp_path / "ddp.yaml", cfg))], timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    _check_audits(tmp_path / "audit", tmp_path / "runs" / "tiny", synthetic_root, steps=6)
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_nodes_on_loopback_with_torchrun(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = tiny_config(synthetic_root, tmp_path / "runs",
                      trainer={"devices": 1, "num_nodes": 2, "strategy": "ddp", "max_steps": 4,
                               "val_check_interval": 2},
                      run={"audit_dir": str(tmp_path / "audit"), "checkpoint_every_n_steps": 2})
    config = write_config(tmp_path / "nodes.yaml", cfg)
    port = _free_port()
    torchrun = str(Path(sys.executable).parent / "torchrun")
    procs = []
    for node_rank in (0, 1):
        cmd = [torchrun, "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(node_rank),
               "--master_addr", "127.0.0.1", "--master_port", str(port), str(REPO / "train.py"), "fit",
               "--config", str(config)]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun with 2 nodes did not finish in 300 s")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for node_rank, (p, text) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"node {node_rank}:\n{text[-4000:]}"
    _check_audits(tmp_path / "audit", tmp_path / "runs" / "tiny", synthetic_root, steps=4)
