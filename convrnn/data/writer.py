"""Writing the shards of one or more splits, resumably and in parallel.

Order of work per split: plan (:mod:`convrnn.data.plan`, written first), shards, then the caller writes the
index (:mod:`convrnn.data.index`, last). Every file is written to a temp file in the same directory, fsynced,
then ``os.replace``d, so a shard that exists is complete. After an interruption, rerun the same command:
stale temp files are removed, complete shards are kept (their member list is checked against the plan), and
the rest are written. A plan that differs from the one on disk is refused unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from convrnn.data.index import INDEX_VERSION
from convrnn.data.plan import PLAN_FORMAT, make_plan, plan_digest, plan_lines, read_plan_header, write_plan
from convrnn.data.scan import SampleSpec
from convrnn.data.tars import brace_pattern, shard_is_complete, shard_name, write_tar
from convrnn.errors import UserError

log = logging.getLogger(__name__)


def read_file_bytes(root: str, spec: SampleSpec) -> bytes:
    """Loader for image files: the original bytes of ``root/spec.source`` (never re-encoded)."""
    return Path(root, spec.source).read_bytes()


def _write_shard_task(
    task: tuple[str, list[SampleSpec], Callable[[SampleSpec], bytes]],
) -> tuple[str, int, int]:
    path, entries, load = task
    nbytes = write_tar(path, entries, load)
    return path, len(entries), nbytes


def _remove_stale_temps(out_dir: Path, prefix: str, split: str) -> int:
    n = 0
    for p in out_dir.glob(f".{prefix}-{split}*.tmp.*"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    if n:
        log.info("removed %d stale temp file(s) from an interrupted run in %s", n, out_dir)
    return n


def default_workers(num_tasks: int) -> int:
    """One worker per core, no more than there are shards to write."""
    return max(1, min(os.cpu_count() or 1, num_tasks))


def _prepare_split(
    out: Path,
    prefix: str,
    split: str,
    samples: Sequence[SampleSpec],
    shard_size: int,
    seed: int,
    overwrite: bool,
    header_extra: dict | None = None,
) -> tuple[dict, list[tuple[str, list[SampleSpec]]], int]:
    """Plan a split, check the plan against an earlier run, write it; return (index entry, todo, done).

    ``header_extra`` is stored in the plan's header (not part of its digest).
    """
    if not samples:
        raise UserError(f"no samples for split {split!r}")
    plan = make_plan(samples, shard_size, seed, split)
    lines = plan_lines(plan)
    header = {
        "format": PLAN_FORMAT,
        "version": INDEX_VERSION,
        "prefix": prefix,
        "split": split,
        "seed": int(seed),
        "shard_size": int(shard_size),
        "num_samples": len(samples),
        "num_shards": len(plan),
        "digest": plan_digest(lines),
        **(header_extra or {}),
    }
    plan_path = out / f"{prefix}-{split}.plan.jsonl.gz"
    old_shards = sorted(out.glob(f"{prefix}-{split}-[0-9]*.tar"))
    if plan_path.exists() and not overwrite:
        old = read_plan_header(plan_path)
        if old.get("digest") != header["digest"]:
            keys = ("seed", "shard_size", "num_samples", "undecodable_kept")
            changed = [k for k in keys if k in old and k in header and old[k] != header[k]]
            raise UserError(
                f"{plan_path} was written for a different plan ({', '.join(changed or ['file list'])} "
                f"changed). Resuming would mix two datasets: delete {out}/{prefix}-{split}-* or pass "
                "overwrite=True (--overwrite) to start over."
            )
    elif old_shards and not overwrite:
        raise UserError(
            f"{out} holds {prefix}-{split}-*.tar shards but no plan file; refusing to mix them with a new "
            "run. Delete them or pass overwrite=True (--overwrite)."
        )
    if overwrite:
        for p in [*old_shards, plan_path]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    _remove_stale_temps(out, prefix, split)
    if not plan_path.exists():
        write_plan(plan_path, header, lines)

    names = [shard_name(prefix, split, i) for i in range(len(plan))]
    planned = set(names)
    for extra in out.glob(f"{prefix}-{split}-[0-9]*.tar"):
        if extra.name not in planned:
            raise UserError(f"{extra} is not part of the plan in {plan_path}; remove it")
    todo, done = [], 0
    for name, entries in zip(names, plan, strict=True):
        p = out / name
        if p.exists() and shard_is_complete(p, entries):
            done += len(entries)
            continue
        if p.exists():
            log.warning("%s does not match the plan; rewriting it", p)
        todo.append((str(p), entries))
    if done:
        log.info("%s-%s: %d of %d shards already complete", prefix, split, len(plan) - len(todo), len(plan))
    info = {
        "num_samples": len(samples),
        "num_shards": len(plan),
        "pattern": brace_pattern(prefix, split, len(plan)),
        "plan": plan_path.name,
        "shards": [{"name": n, "num_samples": len(e)} for n, e in zip(names, plan, strict=True)],
    }
    return info, todo, done


def pool_context(mp_context: str | None) -> mp.context.BaseContext:
    """``fork`` where it is safe and cheap (Linux, single-threaded caller), else ``spawn``."""
    if mp_context is not None:
        return mp.get_context(mp_context)
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def write_splits(
    out_dir: str | os.PathLike,
    prefix: str,
    splits: dict[str, Sequence[SampleSpec]],
    load: Callable[[SampleSpec], bytes],
    shard_size: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    mp_context: str | None = None,
    plan_headers: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Plan, then write (or finish writing) the shards of several splits. Returns their index entries.

    ``plan_headers[split]`` adds fields to that split's plan header (see :func:`convert_imagenet`).

    All splits share one process pool. ``load`` must be picklable (a module-level function or a
    ``functools.partial`` of one) when ``workers > 1``. The pool forks when the caller is single-threaded
    on Linux, else spawns; with ``spawn``, call this from under ``if __name__ == "__main__":``.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    infos, todo, done, total = {}, [], 0, 0
    for split, samples in splits.items():
        extra = (plan_headers or {}).get(split)
        info, t, d = _prepare_split(out, prefix, split, samples, shard_size, seed, overwrite, extra)
        infos[split] = info
        todo += [(path, entries, load) for path, entries in t]
        done += d
        total += info["num_samples"]
    nw = workers if workers is not None else default_workers(len(todo))
    pool = pool_context(mp_context).Pool(min(nw, len(todo))) if nw > 1 and len(todo) > 1 else None
    desc = f"{prefix}-{'+'.join(splits)}"
    bar = tqdm(total=total, initial=done, unit="img", desc=desc, disable=not progress)
    try:
        results = pool.imap_unordered(_write_shard_task, todo) if pool else map(_write_shard_task, todo)
        for _, n, _ in results:
            bar.update(n)
        if pool:
            pool.close()
            pool.join()
    finally:
        bar.close()
        if pool:
            pool.terminate()
    return infos
