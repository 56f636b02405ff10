"""Shard resolution: a ``data.*_shards`` value -> the shard URLs, their sample counts and the class names.

A value may be a directory holding ``dataset.json``, that file, or a webdataset URL pattern
(``dir/name-{000000..000009}.tar``, several joined by ``::``). Local shards must exist and be non-empty;
counts come from ``dataset.json`` (:mod:`convrnn.data.index`), else from the tar headers. Every error is a
:class:`~convrnn.errors.UserConfigError` naming the config key and the path, raised before any data is read.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from convrnn.data.index import INDEX_NAME, read_index, split_shard_paths
from convrnn.data.tars import count_tar_samples
from convrnn.errors import UserConfigError

log = logging.getLogger(__name__)


@dataclass
class ShardList:
    """Resolved shard URLs with their per-shard sample counts (None if unknown) and class names."""

    spec: str
    urls: list[str]
    counts: list[int] | None
    classes: list[str] | None

    @property
    def num_samples(self) -> int | None:
        return sum(self.counts) if self.counts is not None else None


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def _check_readable(path: str, key: str) -> None:
    p = Path(path)
    if not p.is_file():
        if not p.parent.is_dir():
            raise UserConfigError(key, f"the directory {p.parent} (of shard {p.name}) does not exist")
        raise UserConfigError(key, f"shard not found: {path}")
    if p.stat().st_size == 0:
        raise UserConfigError(key, f"shard is empty (0 bytes): {path}")
    try:
        with open(p, "rb") as f:
            f.read(512)
    except OSError as exn:
        raise UserConfigError(key, f"shard not readable: {path}: {exn}") from None


def _looks_like_a_directory(spec: str) -> bool:
    """A path that names no file pattern: no braces, no ``::``, no ``.tar``/``.tgz``, not ``dataset.json``."""
    name = Path(spec).name
    return not any(c in spec for c in "{}:") and not name.endswith((".tar", ".tgz", ".tar.gz", INDEX_NAME))


def resolve_shards(spec: str, split: str, key: str | None = None) -> ShardList:
    """Turn ``spec`` into a list of shards.

    ``spec`` may be a directory holding ``dataset.json``, the ``dataset.json`` file, or a webdataset URL
    pattern (``dir/name-{000000..000009}.tar``, several joined by ``::``). Local shards must exist and be
    non-empty. Counts come from a ``dataset.json`` beside the shards, else from the tar headers. Errors are
    :class:`~convrnn.errors.UserConfigError` naming ``key`` (default ``{split}_shards``).
    """
    key = key or f"{split}_shards"
    if not spec or not str(spec).strip():
        raise UserConfigError(key, f"empty shard list for {split!r}: got {spec!r}")
    spec = os.path.expanduser(str(spec))
    p = Path(spec)
    if not p.exists() and _looks_like_a_directory(spec):
        raise UserConfigError(key, f"the directory {spec} does not exist")
    if p.is_dir() or p.name == INDEX_NAME:
        index_dir = p if p.is_dir() else p.parent
        if not (index_dir / INDEX_NAME).is_file():
            raise UserConfigError(
                key,
                f"{index_dir / INDEX_NAME} not found: pass a directory written by convrnn-make-shards "
                "(scripts/make_shards.py) or scripts/make_synthetic.py, or a brace pattern such as "
                "'dir/imagenet-train-{000000..000146}.tar'",
            )
        try:
            index = read_index(index_dir)
            urls, counts = split_shard_paths(index_dir, index, split)
        except (ValueError, OSError) as exn:
            raise UserConfigError(key, str(exn)) from None
        if not urls:
            raise UserConfigError(key, f"empty shard list: {index_dir / INDEX_NAME} lists no shards for {split!r}")
        for u in urls:
            _check_readable(u, key)
        return ShardList(spec, urls, counts, index.get("classes"))
    urls = wds.shardlists.expand_urls(spec)
    if not urls:
        raise UserConfigError(key, f"empty shard list: {spec!r} expands to no shards")
    if not all(_is_local(u) for u in urls):
        return ShardList(spec, urls, None, None)
    for u in urls:
        _check_readable(u, key)
    counts, classes = _counts_from_indexes(urls)
    return ShardList(spec, urls, counts, classes)


def _counts_from_indexes(urls: Sequence[str]) -> tuple[list[int], list[str] | None]:
    by_dir: dict[Path, dict[str, int]] = {}
    classes = None
    counts = []
    for u in urls:
        d = Path(u).parent
        if d not in by_dir:
            by_dir[d] = {}
            if (d / INDEX_NAME).is_file():
                try:
                    index = read_index(d)
                except (ValueError, OSError):
                    index = {}
                classes = classes or index.get("classes")
                for sp in index.get("splits", {}).values():
                    for sh in sp["shards"]:
                        by_dir[d][sh["name"]] = int(sh["num_samples"])
        n = by_dir[d].get(Path(u).name)
        counts.append(n if n is not None else _count_or_warn(u))
    return counts, classes


def _count_or_warn(url: str) -> int:
    """Samples in a shard without an index entry (tar headers); for a damaged one, those before the damage."""
    try:
        return count_tar_samples(url)
    except (OSError, tarfile.TarError) as exn:
        n = count_tar_samples(url, stop_at_error=True)
        log.warning(
            "shard %s is damaged (%s: %s) and no dataset.json lists its size: expecting the %d sample(s) "
            "before the damage, so its loss cannot be counted",
            url,
            type(exn).__name__,
            exn,
            n,
        )
        return n
