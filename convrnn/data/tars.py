"""The shard files: webdataset tars whose members are ``{key}.{ext}``, ``{key}.cls`` and ``{key}.json``.

``{prefix}-{split}-%06d.tar``. Each sample has ``__key__`` (unique within the split, no dots), the original
image bytes under their extension (``jpg`` for ``*.JPEG``/``*.jpg``, never re-encoded), ``cls`` (the int class
as ASCII) and ``json`` (metadata). Members have fixed mtime/owner, so the same plan gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Sequence

from convrnn.data.scan import SampleSpec
from convrnn.io import atomic_open


def shard_name(prefix: str, split: str, index: int) -> str:
    """``{prefix}-{split}-%06d.tar``."""
    return f"{prefix}-{split}-{index:06d}.tar"


def brace_pattern(prefix: str, split: str, num_shards: int) -> str:
    """The brace pattern that names all shards of a split."""
    if num_shards == 1:
        return shard_name(prefix, split, 0)
    return f"{prefix}-{split}-{{{0:06d}..{num_shards - 1:06d}}}.tar"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o444
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def sample_members(spec: SampleSpec, data: bytes) -> list[tuple[str, bytes]]:
    """The tar members of one sample, in the order written."""
    meta = json.dumps(spec.meta, sort_keys=True).encode()
    return [
        (f"{spec.key}.cls", str(int(spec.cls)).encode()),
        (f"{spec.key}.{spec.ext}", data),
        (f"{spec.key}.json", meta),
    ]


def expected_members(entries: Sequence[SampleSpec]) -> list[str]:
    """Member names a complete shard holds, in order."""
    return [n for s in entries for n in (f"{s.key}.cls", f"{s.key}.{s.ext}", f"{s.key}.json")]


def write_tar(path: str | os.PathLike, entries: Sequence[SampleSpec], load: Callable[[SampleSpec], bytes]) -> int:
    """Write one shard atomically; ``load(spec)`` gives each sample's image bytes. Returns bytes written."""
    with atomic_open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for spec in entries:
            for name, payload in sample_members(spec, load(spec)):
                tf.addfile(_tarinfo(name, len(payload)), io.BytesIO(payload))
    return os.path.getsize(path)


def shard_is_complete(path: str | os.PathLike, entries: Sequence[SampleSpec]) -> bool:
    """True if ``path`` is a readable tar holding exactly the planned members (headers only; cheap)."""
    try:
        with tarfile.open(path, "r:") as tf:
            names = tf.getnames()
    except (OSError, tarfile.TarError):
        return False
    return names == expected_members(entries)


def count_tar_samples(path: str | os.PathLike, stop_at_error: bool = False) -> int:
    """Number of samples in a tar shard, grouping members by key as webdataset does (headers only).

    A damaged tar raises ``tarfile.TarError``/``OSError``; with ``stop_at_error``, the samples whose
    members are all complete before the damage are counted instead.
    """
    n, last, size = 0, None, os.path.getsize(path)
    try:
        with tarfile.open(path, "r:") as tf:
            for ti in tf:
                if not ti.isreg():
                    continue
                m = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", ti.name)
                if m is None or re.match(r"__[^/]*__($|/)", ti.name):
                    continue
                if ti.offset_data + ti.size > size:  # headers are read by seeking: check the data is there
                    if m.group(1) == last:
                        n -= 1  # that sample is incomplete
                    raise tarfile.ReadError(f"unexpected end of data in member {ti.name}")
                if m.group(1) != last:
                    n, last = n + 1, m.group(1)
    except (OSError, tarfile.TarError):
        if not stop_at_error:
            raise
    return n
