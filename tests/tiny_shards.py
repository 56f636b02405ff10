"""The tiny synthetic shard set of the training and search tests: the one home of its parameters.

4 categories x 2 objects x 3 levels at 32 px: train 48 images (6 shards of 8), val 24 (3 shards of 8). The
session fixture ``synthetic_root`` (tests/conftest.py) writes the shards with these values; the suites' configs
(``train_helpers.tiny_config``, ``search_helpers.base_train_config``) repeat them under ``data.synthetic``,
because the datamodule refuses a shards folder written with other parameters.

A plain module, not part of conftest.py: ``--import-mode=importlib`` makes conftest modules unimportable by
name, and the helpers (also imported by the train.py subprocesses, with tests/ on their PYTHONPATH) need it.
"""

from __future__ import annotations

from typing import Any

SYNTHETIC: dict[str, Any] = {
    "image_size": 32, "train_per_object_per_level": 2, "val_per_object_per_level": 1, "seed": 0, "shard_size": 8,
    "n_categories": 4, "objects_per_category": 2, "levels": [0, 3, 6], "jpeg_quality": 90,
}
