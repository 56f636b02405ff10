"""Kill -9 mid-training, resume from ``last``: the run finishes with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import REPO, run_train, subprocess_env, tiny_config, write_config

pytestmark = pytest.mark.slow

MAX_STEPS = 10


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("num_workers", [1, 0])
def test_kill9_then_resume_matches_uninterrupted(tmp_path: Path, synthetic_root: Path, num_workers: int) -> None:
    sections = {"trainer": {"max_steps": MAX_STEPS, "deterministic": True, "limit_val_batches": 0},
                "data": {"num_workers": num_workers}, "run": {"checkpoint_every_n_steps": 3}}
    ref_cfg = write_config(tmp_path / "ref.yaml", tiny_config(synthetic_root, tmp_path / "ref", **sections))
    ref = run_train(["fit", "--config", str(ref_cfg)])
    assert ref.returncode == 0, ref.stderr[-3000:]

    cfg = tiny_config(synthetic_root, tmp_path / "killed", **sections)
    killed_cfg = write_config(tmp_path / "killed.yaml", cfg)
    pause = ["--trainer.callbacks+=train_helpers.PauseAfterStep", "--trainer.callbacks.step=4"]
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), "fit", "--config", str(killed_cfg), *pause],
                            cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    ckpt_dir = tmp_path / "killed" / "tiny" / "checkpoints"
    try:
        deadline = time.monotonic() + 180
        for line in proc.stdout:  # type: ignore[union-attr]
            if "PAUSED at step 4" in line:
                break
            assert time.monotonic() < deadline, "the run never reached step 4"
        else:
            pytest.fail(f"the run ended before step 4 (rc={proc.wait()})")
        # step 3's checkpoint exists, step 4 is done in memory but not saved: kill -9 now
        assert (ckpt_dir / "last.ckpt").is_file()
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _state(ckpt_dir / "last.ckpt")["global_step"] == 3
    step3 = tmp_path / "step3.ckpt"
    shutil.copy(ckpt_dir / "last.ckpt", step3)

    resumed = run_train(["fit", "--config", str(killed_cfg), "--ckpt_path", "last"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr

    a = _state(tmp_path / "ref" / "tiny" / "checkpoints" / "last.ckpt")
    b = _state(ckpt_dir / "last.ckpt")
    assert a["global_step"] == b["global_step"] == MAX_STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), f"{name} differs after kill -9 + resume"
    mom_a = a["optimizer_states"][0]["state"]
    mom_b = b["optimizer_states"][0]["state"]
    assert all(torch.equal(mom_a[k]["momentum_buffer"], mom_b[k]["momentum_buffer"]) for k in mom_a)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == MAX_STEPS

    if num_workers == 0:
        return
    # negative control: the comparison has power. Resuming the same checkpoint on a reseeded stream (what
    # resume: reseed does to avoid replaying ImageNet) trains on other batches and ends elsewhere.
    reseeded = run_train(["fit", "--config", str(killed_cfg), "--ckpt_path", str(step3), "--data.resume", "reseed",
                          "--run.name", "reseeded"])
    assert reseeded.returncode == 0, reseeded.stderr[-3000:]
    c = _state(tmp_path / "killed" / "reseeded" / "checkpoints" / "last.ckpt")
    assert c["global_step"] == MAX_STEPS
    assert any(not torch.equal(t, c["state_dict"][n]) for n, t in a["state_dict"].items())
