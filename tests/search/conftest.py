"""Fixtures of the search tests: tiny synthetic shards, and the PostgreSQL server of .ci/run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# --import-mode=importlib puts no test folder on sys.path: the tests import search_helpers from here
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_helpers import SYNTHETIC  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic shards, written once per session (as the datamodule would on first run)."""
    from convrnn.data.synthetic_objects import write_synthetic_shards

    root = tmp_path_factory.mktemp("synthetic")
    params = dict(SYNTHETIC)
    params["levels"] = tuple(params["levels"])
    write_synthetic_shards(root, workers=1, **params)
    return root


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
