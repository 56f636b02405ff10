"""Fixtures of the search tests: the PostgreSQL server of .ci/run (the tiny synthetic shards, ``synthetic_root``,
come from tests/conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# --import-mode=importlib puts no test folder on sys.path: the tests import search_helpers from here
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test PostgreSQL server (scripts/ci/start_postgres.sh): its URL, without a password.

    Skips with the reason when no server is configured; fails instead under CI=true, where .ci/run must have
    started one.
    """
    url = os.environ.get("CONVRNN_TEST_PG_URL")
    if not url:
        why = ("no PostgreSQL server configured: run `source scripts/ci/start_postgres.sh` (after apt-get install "
               "postgresql) to set CONVRNN_TEST_PG_URL and PGPASSFILE")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    return url
