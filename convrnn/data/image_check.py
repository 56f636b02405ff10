"""Undecodable images: found before planning, left out of the shards (or kept), and listed in the index.

Every image is decoded once, fully but cheaply (a JPEG at 1/8 scale with ``Image.draft``, which still reads
every byte of its entropy-coded data, so a truncated file fails; PIL's ``verify()`` would not notice). Files
that fail (truncated, not an image, empty) are left out unless ``keep_undecodable`` is set; either way they
are listed under ``splits.<split>.undecodable`` in ``dataset.json``. The plan header remembers the verdicts
for the scanned file list, so a resumed run does not decode everything again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from convrnn.data.index import INDEX_NAME
from convrnn.data.plan import read_plan_header
from convrnn.data.scan import SampleSpec
from convrnn.data.writer import default_workers, pool_context

log = logging.getLogger(__name__)


def check_image(data: bytes) -> str | None:
    """None if ``data`` decodes as an image, else why not (for the index and the summary line).

    Decodes fully but cheaply: a JPEG at 1/8 scale (``Image.draft``; libjpeg still reads all of its
    entropy-coded data, so a truncated file fails, which ``Image.verify()`` would miss), other formats at
    full size. Any error counts: the training decoder would fail on the same bytes.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "empty file: 0 bytes"
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if img.format == "JPEG":
                img.draft("RGB", (max(1, w // 8), max(1, h // 8)))
            img.load()
    except UnidentifiedImageError:
        head = data[:64].lstrip().lower()
        kind = " (it looks like HTML)" if head.startswith((b"<!doctype html", b"<html")) else ""
        return f"not an image: no image format recognises its {len(data)} bytes{kind}"
    except Exception as exn:  # noqa: BLE001 - any decoder error means the sample is unusable
        return f"cannot decode: {type(exn).__name__}: {exn}"
    return None


def _check_file_task(task: tuple[str, str]) -> tuple[str, str | None]:
    root, source = task
    try:
        data = Path(root, source).read_bytes()
    except OSError as exn:
        return source, f"cannot read: {exn.strerror or exn}"
    return source, check_image(data)


def find_undecodable(
    root: str | os.PathLike,
    samples: Sequence[SampleSpec],
    workers: int | None = None,
    progress: bool = True,
    desc: str = "checking images",
) -> list[dict[str, str]]:
    """``[{"source", "reason"}]`` for the samples whose file under ``root`` does not decode, in sample order."""
    from tqdm.auto import tqdm

    tasks = [(str(root), s.source) for s in samples]
    nw = workers if workers is not None else default_workers(max(1, len(tasks) // 256))
    reasons: dict[str, str] = {}
    pool = pool_context(None).Pool(nw) if nw > 1 and len(tasks) > 1 else None
    try:
        results = pool.imap_unordered(_check_file_task, tasks, chunksize=64) if pool else map(_check_file_task, tasks)
        for source, reason in tqdm(results, total=len(tasks), unit="img", desc=desc, disable=not progress):
            if reason is not None:
                reasons[source] = reason
        if pool:
            pool.close()
            pool.join()
    finally:
        if pool:
            pool.terminate()
    return [{"source": s.source, "reason": reasons[s.source]} for s in samples if s.source in reasons]


def _candidates_digest(root: Path, samples: Sequence[SampleSpec]) -> str:
    """Identifies the scanned file list (paths, sizes, mtimes): the image check is redone when it changes."""
    h = hashlib.sha256()
    for s in samples:
        st = (root / s.source).stat()
        h.update(json.dumps([s.key, s.cls, s.source, st.st_size, st.st_mtime_ns]).encode() + b"\n")
    return h.hexdigest()


def checked_split(
    root: Path,
    out: Path,
    prefix: str,
    split: str,
    candidates: list[SampleSpec],
    keep_undecodable: bool,
    overwrite: bool,
    workers: int | None,
    progress: bool,
) -> tuple[list[SampleSpec], dict]:
    """The samples to write and the plan-header fields recording the image check of this split."""
    digest = _candidates_digest(root, candidates)
    plan_path = out / f"{prefix}-{split}.plan.jsonl.gz"
    bad = None
    if plan_path.exists() and not overwrite:
        with contextlib.suppress(OSError, ValueError, EOFError):
            old = read_plan_header(plan_path)
            if old.get("candidates_digest") == digest:
                bad = old.get("undecodable")  # the same files were checked by the run that wrote this plan
    if bad is None:
        bad = find_undecodable(root, candidates, workers, progress, desc=f"{prefix}-{split}: checking images")
    if bad:
        log.info(
            "%s-%s: %d undecodable image(s) %s",
            prefix,
            split,
            len(bad),
            "kept (keep_undecodable)" if keep_undecodable else "left out",
        )
    dropped = set() if keep_undecodable else {b["source"] for b in bad}
    samples = [s for s in candidates if s.source not in dropped]
    header = {"candidates_digest": digest, "undecodable": bad, "undecodable_kept": bool(keep_undecodable)}
    return samples, header


def undecodable_summary(
    index: dict, out_dir: str | os.PathLike, splits: Sequence[str] | None = None, limit: int = 10
) -> str | None:
    """One line naming the undecodable files of ``splits`` (default: all) in an index: path and reason of the
    first ``limit``; None if there are none."""
    parts, total, kept = [], 0, False
    for split, info in sorted(index.get("splits", {}).items()):
        if splits is not None and split not in splits:
            continue
        bad = info.get("undecodable") or []
        total += len(bad)
        kept = kept or bool(info.get("undecodable_kept"))
        parts += [f"{b['source']} ({b['reason']})" for b in bad]
    if not total:
        return None
    more = f"; ... and {total - limit} more" if total > limit else ""
    verb = "kept (--keep-undecodable)" if kept else "left out"
    return (
        f"{verb} {total} undecodable image(s), all listed in {Path(out_dir) / INDEX_NAME}: "
        + "; ".join(parts[:limit])
        + more
    )
