"""Write image datasets as webdataset tar shards, resumably and in parallel; read their size index.

Layout written into ``out_dir`` (``{prefix}`` is ``imagenet`` or ``synthetic``):

- ``{prefix}-{split}-%06d.tar``: shards. Each sample has ``__key__`` (unique within the split, no dots),
  the original image bytes under their extension (``jpg`` for ``*.JPEG``/``*.jpg``, never re-encoded),
  ``cls`` (the int class as ASCII) and ``json`` (metadata: ``wnid`` and the original ``filename`` for
  ImageNet). Members have fixed mtime/owner, so the same plan gives byte-identical shards.
- ``{prefix}-{split}.plan.jsonl.gz``: the plan, written first. Its first line is a header (seed, shard size,
  digest); then one line per sample ``[shard, key, cls, ext, source, meta]``. The plan follows from the
  seed and the sorted file list. A rerun recomputes it, and refuses to go on if it differs.
- ``dataset.json``: the size index, written last: classes, and per split the total count, shard
  names and per-shard counts. The DataModule reads it to know epoch sizes and the exact val count, and to
  count what a damaged shard lacks. For ImageNet conversions it also lists, per split, the source files that
  do not decode (``undecodable``: path relative to the root and reason) and whether they were kept.

Undecodable images (:func:`convert_imagenet`): before planning, every image is decoded once, fully but
cheaply (a JPEG at 1/8 scale with ``Image.draft``, which still reads every byte of its entropy-coded data,
so a truncated file fails; PIL's ``verify()`` would not notice). Files that fail (truncated, not an image,
empty) are left out of the shards unless ``keep_undecodable`` is set; either way they are listed. The plan
header remembers the verdicts for the scanned file list, so a resumed run does not decode everything again.

Every file is written to a temp file in the same directory, fsynced, then ``os.replace``d, so a shard
that exists is complete. After an interruption, rerun the same command. Stale temp files are removed,
complete shards are kept (their member list is checked against the plan), and the rest are written.

Class indices follow torchvision's ``ImageFolder``: ``class_to_idx`` = sorted folder names (wnids).

Validation layouts supported by :func:`convert_imagenet`:

- ``val/<wnid>/*.JPEG``: class folders, labelled with the *train* class list;
- flat ``val/*.JPEG`` plus a labels file with one ``filename label`` pair per line, separated by a comma
  or whitespace. ``label`` is either a wnid (``n01440764``) or a 0-based class index in sorted-wnid order
  (= ImageFolder's ``class_to_idx`` on ``train/``); a filename may omit its extension; a header line is
  skipped; extra fields are ignored, so Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``,
  where the first token is the wnid) works as is. The devkit's ``ILSVRC2012_validation_ground_truth.txt``
  is *not* supported (its ids are not in sorted-wnid order): convert it to ``filename wnid`` first.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import re
import sys
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from convrnn.errors import UserError
from convrnn.io import atomic_open, atomic_write_bytes

log = logging.getLogger(__name__)

INDEX_NAME = "dataset.json"
INDEX_FORMAT = "convrnn-shards"
INDEX_VERSION = 1
PLAN_FORMAT = "convrnn-shard-plan"

#: torchvision.datasets.folder.IMG_EXTENSIONS (ImageFolder's default filter), lower case
IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_EXT_KEY = {
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".png": "png",
    ".ppm": "ppm",
    ".bmp": "bmp",
    ".pgm": "pgm",
    ".tif": "tif",
    ".tiff": "tif",
    ".webp": "webp",
}
DEFAULT_LABEL_FILES = ("val_labels.txt", "val_labels.csv", "LOC_val_solution.csv")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


# ------------------------------------------------------------------------------------------- the samples
@dataclass
class SampleSpec:
    """One sample to write: its key, class, stored extension, where its bytes come from, and json metadata."""

    key: str
    cls: int
    ext: str
    source: str
    meta: dict = field(default_factory=dict)

    def to_row(self, shard: int) -> list:
        return [shard, self.key, self.cls, self.ext, self.source, self.meta]


_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-]")


def sanitize_key(name: str) -> str:
    """A webdataset-safe key: no dots (they split key from extension), no slashes, no leading ``__``."""
    key = _KEY_BAD.sub("_", name)
    if key.startswith("__"):  # webdataset skips members named __*__ as metadata
        key = "k" + key
    return key or "k"


def unique_keys(names: Sequence[str], fallbacks: Sequence[str]) -> list[str]:
    """Sanitised ``names`` if they are unique, else sanitised ``fallbacks``, else fallbacks with an index."""
    for cand in (names, fallbacks):
        keys = [sanitize_key(n) for n in cand]
        if len(set(keys)) == len(keys):
            return keys
    return [f"{i:08d}_{sanitize_key(n)}" for i, n in enumerate(fallbacks)]


# --------------------------------------------------------------------------------------------- scanning
def find_classes(directory: str | os.PathLike) -> list[str]:
    """Class names as ImageFolder finds them: sorted names of the sub-directories."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"not a directory: {d}")
    classes = sorted(e.name for e in os.scandir(d) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {d}")
    return classes


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _ext_key(name: str) -> str:
    return _EXT_KEY[os.path.splitext(name)[1].lower()]


def scan_class_folders(
    directory: str | os.PathLike, classes: Sequence[str] | None = None, root: str | os.PathLike | None = None
) -> list[SampleSpec]:
    """List images in ``directory/<class>/**`` exactly as ImageFolder orders and labels them.

    ``classes`` (default: the folders found) fixes ``class_to_idx``; folders not in it are an error.
    ``source`` is the path relative to ``root`` (default: ``directory``).
    """
    d = Path(directory)
    found = find_classes(d)
    classes = list(classes) if classes is not None else found
    class_to_idx = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(found) - set(class_to_idx))
    if unknown:
        raise UserError(f"{d}: class folders not in the class list: {unknown[:5]}{'...' if len(unknown) > 5 else ''}")
    base = Path(root) if root is not None else d
    paths: list[tuple[str, int, str]] = []
    for c in sorted(class_to_idx):
        target = d / c
        if not target.is_dir():
            continue
        n0 = len(paths)
        for dirpath, _, fnames in sorted(os.walk(target, followlinks=True)):
            for fname in sorted(fnames):
                if _is_image(fname):
                    p = Path(dirpath, fname)
                    paths.append((os.path.relpath(p, base), class_to_idx[c], c))
        if len(paths) == n0:
            log.warning("class folder %s has no images", target)
    stems = [Path(p).stem for p, _, _ in paths]
    fallbacks = [os.path.splitext(p)[0] for p, _, _ in paths]
    keys = unique_keys(stems, fallbacks)
    return [
        SampleSpec(key=k, cls=ci, ext=_ext_key(p), source=p, meta={"wnid": c, "filename": Path(p).name})
        for k, (p, ci, c) in zip(keys, paths, strict=True)
    ]


def read_labels_file(path: str | os.PathLike, classes: Sequence[str]) -> dict[str, int]:
    """Parse a ``filename label`` file (see module doc) into ``{filename or stem: class index}``."""
    class_to_idx = {c: i for i, c in enumerate(classes)}
    labels: dict[str, int] = {}
    first = True
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            is_first, first = first, False
            parts = [p for p in re.split(r"[,\s]+", line) if p]
            if len(parts) < 2:
                raise UserError(f"{path}:{lineno}: expected 'filename label', got {line!r}")
            name, lab = parts[0], parts[1]
            if lab in class_to_idx:
                idx = class_to_idx[lab]
            elif re.fullmatch(r"\d+", lab):
                idx = int(lab)
                if not 0 <= idx < len(classes):
                    raise UserError(f"{path}:{lineno}: class index {idx} outside [0, {len(classes)})")
            elif is_first:
                continue  # a header line such as "ImageId,PredictionString"
            else:
                raise UserError(f"{path}:{lineno}: label {lab!r} is neither a known wnid nor a class index")
            if name in labels:
                raise UserError(f"{path}:{lineno}: {name!r} listed twice")
            labels[name] = idx
    if not labels:
        raise UserError(f"{path}: no labels found")
    return labels


def scan_flat_folder(
    directory: str | os.PathLike,
    labels_file: str | os.PathLike,
    classes: Sequence[str],
    root: str | os.PathLike | None = None,
) -> list[SampleSpec]:
    """List the images directly in ``directory`` (sorted by name), labelled through ``labels_file``."""
    d = Path(directory)
    labels = read_labels_file(labels_file, classes)
    names = sorted(n for n in os.listdir(d) if _is_image(n) and (d / n).is_file())
    if not names:
        raise FileNotFoundError(f"no images in {d}")
    base = Path(root) if root is not None else d
    out: list[tuple[str, int]] = []
    missing = []
    for n in names:
        idx = labels.get(n, labels.get(os.path.splitext(n)[0]))
        if idx is None:
            missing.append(n)
        else:
            out.append((n, idx))
    if missing:
        raise UserError(f"{labels_file}: no label for {len(missing)} image(s) in {d}, e.g. {missing[:3]}")
    keys = unique_keys([os.path.splitext(n)[0] for n, _ in out], [n for n, _ in out])
    return [
        SampleSpec(
            key=k,
            cls=i,
            ext=_ext_key(n),
            source=os.path.relpath(d / n, base),
            meta={"wnid": classes[i], "filename": n},
        )
        for k, (n, i) in zip(keys, out, strict=True)
    ]


# ------------------------------------------------------------------------------------------------- plan
def make_plan(samples: Sequence[SampleSpec], shard_size: int, seed: int, split: str) -> list[list[SampleSpec]]:
    """Shuffle ``samples`` globally (seeded by ``seed`` and ``split``) and cut them into shards."""
    if shard_size < 1:
        raise UserError(f"shard_size must be >= 1, got {shard_size}")
    rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])
    order = rng.permutation(len(samples))
    shuffled = [samples[i] for i in order]
    return [shuffled[i : i + shard_size] for i in range(0, len(shuffled), shard_size)]


def _plan_lines(plan: Sequence[Sequence[SampleSpec]]) -> list[bytes]:
    return [
        json.dumps(s.to_row(i), separators=(",", ":"), sort_keys=True).encode() for i, sh in enumerate(plan) for s in sh
    ]


def _plan_digest(lines: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line)
        h.update(b"\n")
    return h.hexdigest()


def read_plan_header(path: str | os.PathLike) -> dict:
    """The header line of a plan file."""
    with gzip.open(path, "rb") as f:
        return json.loads(f.readline())


def read_plan(path: str | os.PathLike) -> tuple[dict, list[list[SampleSpec]]]:
    """Header and shards of a plan file."""
    shards: list[list[SampleSpec]] = []
    with gzip.open(path, "rb") as f:
        header = json.loads(f.readline())
        for line in f:
            shard, key, cls, ext, source, meta = json.loads(line)
            while len(shards) <= shard:
                shards.append([])
            shards[shard].append(SampleSpec(key, cls, ext, source, meta))
    return header, shards


def _write_plan(path: Path, header: dict, lines: Sequence[bytes]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        for line in lines:
            g.write(line + b"\n")
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------------ shard files
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
    lines = _plan_lines(plan)
    header = {
        "format": PLAN_FORMAT,
        "version": INDEX_VERSION,
        "prefix": prefix,
        "split": split,
        "seed": int(seed),
        "shard_size": int(shard_size),
        "num_samples": len(samples),
        "num_shards": len(plan),
        "digest": _plan_digest(lines),
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
        _write_plan(plan_path, header, lines)

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


def _pool_context(mp_context: str | None) -> mp.context.BaseContext:
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
    pool = _pool_context(mp_context).Pool(min(nw, len(todo))) if nw > 1 and len(todo) > 1 else None
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


def write_split(
    out_dir: str | os.PathLike,
    prefix: str,
    split: str,
    samples: Sequence[SampleSpec],
    load: Callable[[SampleSpec], bytes],
    **kwargs: Any,
) -> dict:
    """:func:`write_splits` for one split; returns its ``dataset.json`` entry."""
    return write_splits(out_dir, prefix, {split: samples}, load, **kwargs)[split]


# ------------------------------------------------------------------------------------------------ index
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
    atomic_write_json(path, index)
    return index


# -------------------------------------------------------------------------------------------- ImageNet
def _find_labels_file(root: Path, val_dir: Path) -> Path:
    for base in (val_dir, root):
        for n in DEFAULT_LABEL_FILES:
            if (base / n).is_file():
                return base / n
    raise FileNotFoundError(
        f"{val_dir} has no class folders and no labels file was given (looked for "
        f"{', '.join(DEFAULT_LABEL_FILES)} in {val_dir} and {root}); pass val_labels=... (--val-labels)"
    )


def scan_imagenet_split(
    root: str | os.PathLike,
    split: str,
    classes: Sequence[str],
    split_dir: str | os.PathLike | None = None,
    labels_file: str | os.PathLike | None = None,
) -> list[SampleSpec]:
    """Samples of ``root/split`` (class folders, or flat + labels file); ``source`` is relative to root."""
    r = Path(root)
    d = Path(split_dir) if split_dir is not None else r / split
    if not d.is_dir():
        raise FileNotFoundError(f"no {split} directory: {d}")
    has_class_dirs = any(e.is_dir() for e in os.scandir(d))
    if has_class_dirs and labels_file is None:
        return scan_class_folders(d, classes, root=r)
    lf = Path(labels_file) if labels_file is not None else _find_labels_file(r, d)
    return scan_flat_folder(d, lf, classes, root=r)


# ------------------------------------------------------------------------------------ undecodable images
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
    pool = _pool_context(None).Pool(nw) if nw > 1 and len(tasks) > 1 else None
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


def _checked_split(
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


def convert_imagenet(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "val"),
    shard_size: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    val_labels: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    prefix: str = "imagenet",
    progress: bool = True,
    overwrite: bool = False,
    keep_undecodable: bool = False,
) -> dict:
    """Convert ``root/{train,val}`` (ImageNet layout) to ``{prefix}-{split}-%06d.tar`` + ``dataset.json``.

    Classes are the sorted folder names of ``root/train`` (ImageFolder order) unless ``classes`` is given.
    Every image is decoded once first; those that fail are left out (kept with ``keep_undecodable``) and
    listed in the index under ``splits.<split>.undecodable`` (see the module doc). Rerunning after an
    interruption finishes the job without duplicating or losing samples; see the module doc for the layout
    and the supported validation label files. Returns the written index.
    """
    r = Path(root)
    if not r.is_dir():
        raise UserError(f"the ImageNet root {r} is not a directory")
    out = Path(out_dir)
    cls = list(classes) if classes is not None else find_classes(r / "train")
    samples, headers = {}, {}
    for split in splits:
        candidates = scan_imagenet_split(r, split, cls, labels_file=val_labels if split == "val" else None)
        samples[split], headers[split] = _checked_split(
            r, out, prefix, split, candidates, keep_undecodable, overwrite, workers, progress
        )
    load = partial(read_file_bytes, str(r))
    written = write_splits(
        out_dir,
        prefix,
        samples,
        load,
        shard_size=shard_size,
        seed=seed,
        workers=workers,
        progress=progress,
        overwrite=overwrite,
        plan_headers=headers,
    )
    for split, info in written.items():
        info["undecodable"] = headers[split]["undecodable"]
        info["undecodable_kept"] = headers[split]["undecodable_kept"]
    return write_index(out_dir, prefix, cls, written, source=str(r.resolve()))


def split_shard_paths(index_dir: str | os.PathLike, index: dict, split: str) -> tuple[list[str], list[int]]:
    """Absolute shard paths and per-shard counts of ``split`` from a loaded index."""
    if split not in index.get("splits", {}):
        raise UserError(
            f"{Path(index_dir) / INDEX_NAME} has no {split!r} split (it has {sorted(index.get('splits', {}))})"
        )
    entries = index["splits"][split]["shards"]
    return [str(Path(index_dir) / e["name"]) for e in entries], [int(e["num_samples"]) for e in entries]
