"""The size index ``dataset.json`` beside the shards: classes, and per split the shards and their counts.

Written last by the shard writers (so an index that exists describes complete shards), read by the DataModule
for epoch sizes, the exact validation count and what a damaged shard lacks. Layout: ``format``, ``version``,
``name``, ``num_classes``, ``classes``, any extra fields, and ``splits.<split>`` = ``num_samples``,
``num_shards``, ``pattern`` (brace pattern), ``plan`` (plan file name), ``shards`` (``name``, ``num_samples``),
plus ``undecodable`` / ``undecodable_kept`` for ImageNet conversions (:mod:`convrnn.data.image_check`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convrnn.errors import UserError
from convrnn.io import atomic_write_json

INDEX_NAME = "dataset.json"

INDEX_FORMAT = "convrnn-shards"

INDEX_VERSION = 1


def read_index(path: str | os.PathLike) -> dict:
    """Load ``dataset.json`` (``path`` may be the file or its directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / INDEX_NAME
    if not p.is_file():
        raise FileNotFoundError(f"no {INDEX_NAME} at {p}")
    with open(p, encoding="utf-8") as f:
        index = json.load(f)
    if index.get("format") != INDEX_FORMAT:
        raise UserError(f"{p} is not a {INDEX_FORMAT} index")
    return index


def write_index(out_dir: str | os.PathLike, name: str, classes: Sequence[str], splits: dict, **extra: Any) -> dict:
    """Write ``dataset.json`` atomically, keeping splits of an existing index that this run did not write."""
    out = Path(out_dir)
    merged = dict(splits)
    path = out / INDEX_NAME
    if path.exists():
        with contextlib.suppress(ValueError, json.JSONDecodeError):
            old = read_index(path)
            if old.get("name") == name and old.get("classes") == list(classes):
                merged = {**old.get("splits", {}), **splits}
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "name": name,
        "num_classes": len(classes),
        "classes": list(classes),
        **extra,
        "splits": {k: merged[k] for k in sorted(merged)},
    }
    atomic_write_json(path, index, indent=1)
    return index


def split_shard_paths(index_dir: str | os.PathLike, index: dict, split: str) -> tuple[list[str], list[int]]:
    """Absolute shard paths and per-shard counts of ``split`` from a loaded index."""
    if split not in index.get("splits", {}):
        raise UserError(
            f"{Path(index_dir) / INDEX_NAME} has no {split!r} split (it has {sorted(index.get('splits', {}))})"
        )
    entries = index["splits"][split]["shards"]
    return [str(Path(index_dir) / e["name"]) for e in entries], [int(e["num_samples"]) for e in entries]
