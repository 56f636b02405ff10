"""Two workers on a real PostgreSQL server (.ci/run starts it: localhost, password-protected role) share one
study: exactly N trials, no trial number twice; and the database password never reaches a file or the output."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import REPO, env, pg_password, run_search, search_cmd, search_config, write_config


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


@pytest.mark.slow
def test_two_workers_share_a_postgres_study_and_the_password_never_leaks(tmp_path: Path, synthetic_root: Path,
                                                                          pg_url: str) -> None:
    password = pg_password()
    secret_url = _with_password(pg_url, password)
    name = f"pg_{uuid.uuid4().hex[:8]}"
    cfg = search_config(tmp_path, synthetic_root, name=name, study={"heartbeat_interval": 5, "grace_period": 20})
    cfg["trial"]["wandb"] = "offline"  # wandb's own config must not get the secret either (WANDB_MODE wins here)
    path = write_config(tmp_path, cfg)
    n = 3
    # worker A: the password in the URL (and no password file: it must come from the URL alone);
    # worker B: the cluster way, a URL without password and PostgreSQL's password file (PGPASSFILE)
    env_a = env(PGPASSFILE=str(tmp_path / "no-such-pgpass"))
    env_a.pop("PGPASSWORD", None)
    env_b = env()
    env_b.pop("PGPASSWORD", None)
    workers = [
        subprocess.Popen(search_cmd("run", "--config", str(path), "--storage", secret_url, "--n-trials", str(n)),
                         cwd=REPO, env=env_a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(search_cmd("run", "--config", str(path), "--storage", pg_url, "--n-trials", str(n)),
                         cwd=REPO, env=env_b, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    outputs = []
    for w in workers:
        out, err = w.communicate(timeout=300)
        outputs += [out, err]
        assert w.returncode == 0, err[-3000:]

    study = optuna.load_study(study_name=name, storage=pg_url.replace("postgresql://", "postgresql+psycopg2://"))
    trials = study.get_trials()
    ran = [t for t in trials if not t.user_attrs.get("surplus")]
    assert [t.state for t in ran].count(TrialState.COMPLETE) == n, [(t.number, t.state) for t in trials]
    assert len(ran) == n
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    folders = [t.user_attrs["trial_dir"] for t in ran]
    assert len(set(folders)) == n  # every trial trained in its own folder, once
    logs = "".join(outputs)
    assert "trials run here" in logs

    # status, export and report with the password in the URL, too
    for args in (["status"], ["export", "--how", "best", "--out", str(tmp_path / "best.yaml")],
                 ["report", "--out", str(tmp_path / "report")]):
        proc = run_search(*args, "--config", str(path), "--storage", secret_url,
                          env_extra={"PGPASSFILE": str(tmp_path / "no-such-pgpass")}, drop_env=("PGPASSWORD",))
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs += [proc.stdout, proc.stderr]
    assert "postgresql://" in "".join(outputs)  # the URL is shown (masked or without password)...
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["nodes"]

    # ... but the password is nowhere: not printed, not in any file the search wrote, not in the study
    assert all(password not in text for text in outputs)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20
    for p in written:
        assert password.encode() not in p.read_bytes(), p
    for t in trials:
        assert password not in repr(t.user_attrs) + repr(t.system_attrs) + repr(t.params)
    assert password not in repr(study.user_attrs)
