"""Storage URLs: masking, taking the password out of the URL, the journal backend with two workers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import REPO, env, search_cmd, search_config, write_config

from convrnn.search.storage import has_password, mask_url, take_password


def test_mask_and_take_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "before")  # restored (or removed) after the test
    url = "postgresql://alice:s3cr%40t@db.example:5432/study"
    assert has_password(url)
    assert mask_url(url) == "postgresql://alice:***@db.example:5432/study"
    assert mask_url("postgresql://alice@db/x?password=s3cr") == "postgresql://alice@db/x?password=***"
    assert take_password(url) == "postgresql://alice@db.example:5432/study"
    assert os.environ["PGPASSWORD"] == "s3cr@t"  # decoded, for libpq
    assert not has_password("postgresql://alice@db/x") and mask_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.slow
def test_journal_backend_with_two_workers(tmp_path: Path, synthetic_root: Path) -> None:
    cfg = search_config(tmp_path, synthetic_root, name="journal")
    path = write_config(tmp_path, cfg)
    journal = tmp_path / "shared" / "study.log"
    url = f"journal://{journal}"
    workers = [subprocess.Popen(search_cmd("run", "--config", str(path), "--storage", url, "--n-trials", "2"),
                                cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-3000:]
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="journal", storage=JournalStorage(JournalFileBackend(str(journal))))
    ran = [t for t in study.get_trials() if not t.user_attrs.get("surplus")]
    assert [t.state for t in ran] == [TrialState.COMPLETE] * 2
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers))
