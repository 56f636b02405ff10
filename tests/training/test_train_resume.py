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
    return torch.load(ckpt, map_location="cpu", weights_only=True)


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


# ------------------------------------------------------------------------ the shipped demo config, as shipped
# configs/demo.yaml sets max_epochs (as every shipped config does); only the data size (so that an epoch is 12
# steps), the step budget, the checkpoint interval and the audit folder are changed here.
DEMO_DATA = ["--data.synthetic.train_per_object_per_level", "2", "--data.synthetic.val_per_object_per_level", "1"]
DEMO_STEPS = 30  # 384 train samples / batch 32 = 12 steps per epoch: two epoch ends, a third epoch started
KILL_AFTER = 17  # checkpoint at step 15 (mid-epoch 2), step 16-17 done in memory only, then kill -9


def _demo(cwd: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "fit", "--config", str(REPO / "configs" / "demo.yaml"),
            *DEMO_DATA, "--trainer.max_steps", str(DEMO_STEPS), "--run.checkpoint_every_n_steps", "5",
            "--run.name", name, "--run.progress_bar", "none", "--run.audit_dir", str(cwd / "audit" / name), *extra]


def _run_demo(cwd: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(_demo(cwd, name, *extra), cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _audit(cwd: Path, name: str) -> dict:
    import json

    return json.loads((cwd / "audit" / name / "audit-rank0.json").read_text())


def _val_steps(run_dir: Path) -> list[int]:
    """The global steps at which validation ran, over all launches of a run (CSV logger, one version each)."""
    import csv

    steps = []
    for version in sorted((run_dir / "csv").glob("version_*")):
        with open(version / "metrics.csv") as f:
            steps += [int(r["step"]) for r in csv.DictReader(f) if r.get("val/top1")]
    return steps


def _kill_after(cwd: Path, name: str, step: int) -> None:
    pause = ["--trainer.callbacks+=train_helpers.PauseAfterStep", f"--trainer.callbacks.step={step}"]
    proc = subprocess.Popen(_demo(cwd, name, *pause), cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:  # type: ignore[union-attr]
            if f"PAUSED at step {step}" in line:
                break
            assert time.monotonic() < deadline, f"the run never reached step {step}"
        else:
            pytest.fail(f"the run ended before step {step} (rc={proc.wait()})")
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_demo_config_kill9_resume_is_exact(tmp_path: Path) -> None:
    """Kill -9 a configs/demo.yaml run mid-epoch, resume with --ckpt_path last: the same samples at every step,
    validation at the same steps, and bit-identical final weights as an uninterrupted run."""
    _run_demo(tmp_path, "ref")  # also renders the synthetic shards into ./data/synthetic, as a user's would
    _kill_after(tmp_path, "demo", KILL_AFTER)
    ckpt = tmp_path / "runs" / "demo" / "checkpoints" / "last.ckpt"
    assert _state(ckpt)["global_step"] == 15
    shutil.copy(ckpt, tmp_path / "at15.ckpt")
    resumed = _run_demo(tmp_path, "demo", "--ckpt_path", "last")
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr

    ref_keys, resumed_keys = _audit(tmp_path, "ref")["train_keys"], _audit(tmp_path, "demo")["train_keys"]
    assert len(ref_keys) == DEMO_STEPS and len(resumed_keys) == DEMO_STEPS - 15
    for step, (a, b) in enumerate(zip(ref_keys[15:], resumed_keys, strict=True), start=16):
        assert a == b, f"step {step} trained on other samples after resume"
    # validation is logged at the last step of each 12-step epoch
    assert _val_steps(tmp_path / "runs" / "ref") == _val_steps(tmp_path / "runs" / "demo") == [11, 23]

    a, b = _state(tmp_path / "runs" / "ref" / "checkpoints" / "last.ckpt"), _state(ckpt)
    assert a["global_step"] == b["global_step"] == DEMO_STEPS
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), f"{name} differs after kill -9 + resume"

    # resume: reseed starts a new stream where the checkpoint was taken: the epoch keeps its length (validation
    # at the same steps) and no batch of the resumed epoch repeats one trained before the kill
    _run_demo(tmp_path, "reseeded", "--ckpt_path", str(tmp_path / "at15.ckpt"), "--data.resume", "reseed")
    reseeded = _audit(tmp_path, "reseeded")["train_keys"]
    assert len(reseeded) == DEMO_STEPS - 15
    assert reseeded[:9] != ref_keys[15:24], "reseed replayed the original stream"
    epoch2 = [tuple(k) for k in ref_keys[12:15] + reseeded[:9]]  # steps 13-24: the second epoch
    assert len(set(epoch2)) == len(epoch2), "a batch was repeated within the resumed epoch"
    assert all(len(k) == 32 for k in epoch2)
    assert _val_steps(tmp_path / "runs" / "reseeded") == [23]
