"""Atomic file output: readers (and a later run after a kill -9) see the old file, the new one, or none.

Why one home: scores, plots, shards, indexes, checkpoints and audits are all written this way, and a temp file
that is not removed on failure, or not fsynced before the rename, is the kind of bug one copy gets and another
doesn't. Temp files sit beside the target (``os.replace`` is only atomic within one file system) and are named
``.NAME.tmp.<pid>.<random>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir",
           "temp_path"]


def fsync_dir(path: Path) -> None:
    """Persist a rename (best effort: not every filesystem lets you open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path(final: Path) -> Path:
    """A unique temp name beside ``final`` (same directory, so the rename is atomic)."""
    return final.with_name(f".{final.name}.tmp.{os.getpid()}.{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a writer that wants a file name rather than a handle.

    For writers that open the file themselves (a download, a library's ``save(path)``). When the block ends
    without error the temp file is fsynced and ``os.replace``d onto ``path`` (and the directory fsynced), so
    readers see the old file or the new one; on error the temp file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    tmp = temp_path(final)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success fsync it and ``os.replace`` it onto ``path``.

    Readers never see a partial file: either the old one, the new one, or none. On error the temp file is
    removed; after a hard kill it stays as ``.NAME.tmp.*`` (writers that resume clean those up).
    """
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, **json_kwargs: Any) -> Path:
    """Write ``obj`` as JSON (``json.dumps(obj, **json_kwargs)`` plus a newline) to ``path`` atomically.

    Indexes and trial results are read by other processes while being rewritten; one helper keeps them all on
    the same temp-fsync-rename path.
    """
    return atomic_write_text(path, json.dumps(obj, **json_kwargs) + "\n")
