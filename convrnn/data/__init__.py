"""Data: synthetic objects, webdataset shard writing, and the Lightning DataModule (docs/design.md,
'Layout').

Names are imported lazily, so ``import convrnn.data`` stays light: the DataModule pulls in torch and
Lightning, the synthetic objects pandas, and shard-writer worker processes need neither.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SyntheticObjects": "convrnn.data.synthetic_objects",
    "write_synthetic_shards": "convrnn.data.synthetic_objects",
    "convert_imagenet": "convrnn.data.imagenet",
    "read_index": "convrnn.data.index",
    "ShardDataModule": "convrnn.data.datamodule",
    "ValSampleCountCheck": "convrnn.data.val_check",
    "SkippedSamplesLogger": "convrnn.data.skip_metrics",
    "resolve_shards": "convrnn.data.shard_list",
    "TrainTransform": "convrnn.data.transforms",
    "ValTransform": "convrnn.data.transforms",
    "IMAGENET_MEAN": "convrnn.presentation",
    "IMAGENET_STD": "convrnn.presentation",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convrnn.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
