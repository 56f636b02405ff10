"""The plan of a split: which sample goes into which shard, fixed before any shard is written.

``{prefix}-{split}.plan.jsonl.gz``: its first line is a header (format, seed, shard size, digest, and fields
the caller adds); then one line per sample ``[shard, key, cls, ext, source, meta]``. The plan follows from the
seed and the sorted file list, so a rerun recomputes it and can refuse to go on if it differs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from convrnn.data.scan import SampleSpec
from convrnn.errors import UserError
from convrnn.io import atomic_write_bytes

PLAN_FORMAT = "convrnn-shard-plan"


def make_plan(samples: Sequence[SampleSpec], shard_size: int, seed: int, split: str) -> list[list[SampleSpec]]:
    """Shuffle ``samples`` globally (seeded by ``seed`` and ``split``) and cut them into shards."""
    if shard_size < 1:
        raise UserError(f"shard_size must be >= 1, got {shard_size}")
    rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])
    order = rng.permutation(len(samples))
    shuffled = [samples[i] for i in order]
    return [shuffled[i : i + shard_size] for i in range(0, len(shuffled), shard_size)]


def plan_lines(plan: Sequence[Sequence[SampleSpec]]) -> list[bytes]:
    return [
        json.dumps(s.to_row(i), separators=(",", ":"), sort_keys=True).encode() for i, sh in enumerate(plan) for s in sh
    ]


def plan_digest(lines: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line)
        h.update(b"\n")
    return h.hexdigest()


def read_plan_header(path: str | os.PathLike) -> dict:
    """The header line of a plan file."""
    with gzip.open(path, "rb") as f:
        return json.loads(f.readline())


def write_plan(path: Path, header: dict, lines: Sequence[bytes]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        for line in lines:
            g.write(line + b"\n")
    atomic_write_bytes(path, buf.getvalue())
