"""Suite-wide fixtures and hooks: tests marked ``gpu`` need a CUDA device and are skipped, with the reason, where
there is none; ``synthetic_root``, the tiny synthetic shards of the training and search tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# --import-mode=importlib puts no test folder on sys.path: tests/ is put there for tiny_shards (the shards'
# parameters, which the training and search helpers import too)
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from tiny_shards import SYNTHETIC  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic shards (:data:`tiny_shards.SYNTHETIC`), written once per session (as the datamodule
    would on first run); shared by the training and search tests."""
    from convrnn.data.synthetic_objects import write_synthetic_shards

    root = tmp_path_factory.mktemp("synthetic")
    params = dict(SYNTHETIC)
    params["levels"] = tuple(params["levels"])
    write_synthetic_shards(root, workers=1, **params)
    return root
