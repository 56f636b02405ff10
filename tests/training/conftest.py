"""Fixtures for the training tests (the helpers they share live in train_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path: the tests import their
# shared helpers (and subprocesses load the test callbacks) as `train_helpers` from this folder
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_helpers import SYNTHETIC  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic shards, written once per session (as the datamodule would on first run)."""
    from convrnn.data.synthetic_objects import write_synthetic_shards

    root = tmp_path_factory.mktemp("synthetic")
    params = dict(SYNTHETIC)
    params["levels"] = tuple(params["levels"])
    write_synthetic_shards(root, workers=1, **params)
    return root
