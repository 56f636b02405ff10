"""A worker killed with SIGKILL mid-trial: its training stops, the trial turns FAIL after the heartbeat grace
period, is retried with the same parameters, and a new worker finishes the study."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import REPO, env, run_search, search_cmd, search_config, write_config


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.slow
def test_sigkill_worker_mid_trial(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = search_config(tmp_path, synthetic_root, name="kill",
                        study={"heartbeat_interval": 1, "grace_period": 3, "retry_failed": 1})
    cfg["trial"]["config"]["trainer"]["callbacks"] = [
        {"class_path": "search_helpers.SlowTrial", "init_args": {"trial": 0, "seconds": 3.0}}]
    path = write_config(tmp_path, cfg)
    worker = subprocess.Popen(search_cmd("run", "--config", str(path), "--n-trials", "1"), cwd=REPO, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "runs" / "kill" / "trials" / "00000" / "train.log"
    deadline = time.monotonic() + 180
    match = None
    while time.monotonic() < deadline and match is None:
        time.sleep(0.5)
        match = re.search(r"SLOW step 1 pid (\d+)", log.read_text()) if log.is_file() else None
        assert worker.poll() is None, "the worker ended before its first trial trained"
    assert match, "trial 0 never trained a step"
    trainer_pid = int(match.group(1))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    storage = f"sqlite:///{tmp_path / 'runs' / 'kill' / 'study.db'}"
    assert optuna.load_study(study_name="kill", storage=storage).get_trials()[0].state == TrialState.RUNNING
    deadline = time.monotonic() + 30
    while _alive(trainer_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(trainer_pid), "the killed worker's training process is still running"

    time.sleep(4)  # > grace_period: the dead worker's heartbeat is stale now
    proc = run_search("run", "--config", str(path), "--n-trials", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = optuna.load_study(study_name="kill", storage=storage).get_trials()
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[0].params  # the same trial again
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
