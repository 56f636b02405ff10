"""Shared fixture for the release-import tests: a damageable copy of a TF-written fixture checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def fixture_copy(tmp_path: Path):
    """Copy a fixture checkpoint folder into tmp_path (to damage it); returns the copy's checkpoint prefix."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target / json.loads((target / "manifest.json").read_text())["checkpoint"]

    return copy
