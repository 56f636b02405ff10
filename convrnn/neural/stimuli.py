"""Stimulus sets: a CSV (one row per stimulus) plus the images, in a zip archive or a folder.

brainio's format (spec §3.3): columns ``stimulus_id`` (legacy ``image_id``) and ``filename`` (the path inside the
zip, or relative to the folder) plus any metadata columns. We resolve every stimulus to a reference that
:func:`open_stimulus` can read, without unpacking the zip, and check up front that every file exists so a
missing image fails at load time rather than in the middle of feature extraction.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import IO, Any

import pandas as pd

__all__ = ["load_image", "load_stimulus_set", "open_stimulus"]

_ZIP_SEPARATOR = "::"


def _preview(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} in total)"


def load_stimulus_set(
    csv_path: str | os.PathLike, images: str | os.PathLike | None = None, *, identifier: str | None = None
) -> pd.DataFrame:
    """Read a stimulus-set CSV and resolve each stimulus's image.

    ``images`` is a ``.zip`` archive or a folder; by default the CSV's folder, or a zip next to the CSV with the
    same stem when one exists. Adds a column ``image_path``: a file path for folders, ``"<zip path>::<member>"``
    for zips (open either with :func:`open_stimulus`). Raises ``FileNotFoundError`` listing every ``filename``
    that does not exist, ``KeyError`` without ``stimulus_id``/``filename`` columns, ``ValueError`` on duplicate
    ids. ``attrs``: ``identifier``, ``images`` (the resolved root).
    """
    csv_path = Path(csv_path)
    table = pd.read_csv(csv_path)
    if "stimulus_id" not in table.columns:
        if "image_id" not in table.columns:
            raise KeyError(f"{csv_path}: needs a 'stimulus_id' (or legacy 'image_id') column; "
                           f"has {list(table.columns)}")
        table["stimulus_id"] = table["image_id"]
    if "filename" not in table.columns:
        raise KeyError(f"{csv_path}: needs a 'filename' column (the image path in the zip or folder)")
    table["stimulus_id"] = table["stimulus_id"].astype(str)
    dup = table["stimulus_id"][table["stimulus_id"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{csv_path}: duplicate stimulus_id values {_preview(dup)}")
    if images is None:
        sibling = csv_path.with_suffix(".zip")
        images = sibling if sibling.exists() else csv_path.parent
    root = Path(images)
    filenames = table["filename"].astype(str).tolist()
    if root.is_file() and zipfile.is_zipfile(root):
        with zipfile.ZipFile(root) as archive:
            members = set(archive.namelist())
        missing = [name for name in filenames if name not in members]
        refs = [f"{root.resolve()}{_ZIP_SEPARATOR}{name}" for name in filenames]
    elif root.is_dir():
        missing = [name for name in filenames if not (root / name).is_file()]
        refs = [str((root / name).resolve()) for name in filenames]
    else:
        raise FileNotFoundError(f"images: {root} is neither a zip archive nor a folder")
    if missing:
        raise FileNotFoundError(f"{len(missing)} stimulus files listed in {csv_path.name} are missing from {root}: "
                                f"{_preview(missing)}")
    table["image_path"] = refs
    table.attrs["identifier"] = identifier or csv_path.stem
    table.attrs["images"] = str(root.resolve())
    return table


def open_stimulus(image_path: str) -> IO[bytes]:
    """Open an ``image_path`` from :func:`load_stimulus_set` (file or zip member) as a binary file object."""
    if _ZIP_SEPARATOR in image_path:
        archive, member = image_path.split(_ZIP_SEPARATOR, 1)
        with zipfile.ZipFile(archive) as zf:
            return io.BytesIO(zf.read(member))
    return open(image_path, "rb")


def load_image(image_path: str, mode: str | None = "RGB") -> Any:
    """Decode a stimulus image with Pillow (converted to ``mode`` unless None)."""
    from PIL import Image

    with open_stimulus(image_path) as handle:
        image = Image.open(handle)
        image.load()
    return image.convert(mode) if mode is not None else image
