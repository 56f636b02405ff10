"""Scanning an image folder into samples to write: class folders, or a flat folder plus a labels file.

Class indices follow torchvision's ``ImageFolder``: ``class_to_idx`` = sorted folder names (wnids).
Validation layouts supported (:func:`scan_imagenet_split`):

- ``val/<wnid>/*.JPEG``: class folders, labelled with the *train* class list;
- flat ``val/*.JPEG`` plus a labels file with one ``filename label`` pair per line, separated by a comma
  or whitespace. ``label`` is either a wnid (``n01440764``) or a 0-based class index in sorted-wnid order
  (= ImageFolder's ``class_to_idx`` on ``train/``); a filename may omit its extension; a header line is
  skipped; extra fields are ignored, so Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``,
  where the first token is the wnid) works as is. The devkit's ``ILSVRC2012_validation_ground_truth.txt``
  is *not* supported (its ids are not in sorted-wnid order): convert it to ``filename wnid`` first.

Keys are unique within a split and have no dots (webdataset splits key from extension at the first dot).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convrnn.errors import UserError

log = logging.getLogger(__name__)

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
