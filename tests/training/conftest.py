"""The training tests' folder on sys.path (the helpers they share live in train_helpers.py; the tiny synthetic
shards, ``synthetic_root``, come from tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path: the tests import their
# shared helpers (and subprocesses load the test callbacks) as `train_helpers` from this folder
sys.path.insert(0, str(Path(__file__).resolve().parent))
