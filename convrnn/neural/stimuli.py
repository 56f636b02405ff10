"""Stimulus sets: a CSV (one row per stimulus) plus the images, in a zip archive or a folder.

brainio's format: columns ``stimulus_id`` (legacy ``image_id``) and ``filename`` (the path inside the zip, or
relative to the folder) plus any metadata columns. We resolve every stimulus to a reference that
:func:`open_stimulus` can read, without unpacking the zip, and check up front that every file exists so a
missing image fails at load time rather than in the middle of feature extraction. Stimulus sets come from other
people, so a ``filename`` may only name a file inside its folder or zip: absolute paths and ``..`` are refused.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

import pandas as pd

from convrnn.errors import UserError

__all__ = ["check_filenames", "load_image", "load_stimulus_set", "open_stimulus"]

_ZIP_SEPARATOR = "::"


def _preview(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} in total)"


def _escapes(filename: str) -> str | None:
    """Why ``filename`` would reach outside its folder or zip (absolute, a drive, ``..``), or None if it stays in."""
    if PurePosixPath(filename).is_absolute() or filename.startswith("\\"):
        return "is an absolute path"
    if PureWindowsPath(filename).drive or re.match(r"^[A-Za-z]:", filename):
        return "names a drive"
    if ".." in re.split(r"[/\\]", filename):
        return "climbs out of its folder ('..')"
    return None


def check_filenames(filenames: list[str], source: str) -> None:
    """Raise :class:`UserError` naming every row whose ``filename`` is absolute or climbs out (``..``).

    Why: a stimulus set from someone else must not make us read files outside its folder or zip. ``source``
    names the CSV in the message; rows are counted from 1 (the CSV's line number is row + 1).
    """
    bad = [(row, name, why) for row, name in enumerate(filenames, start=1) if (why := _escapes(name)) is not None]
    if bad:
        shown = "; ".join(f"row {row}: filename {name!r} {why}" for row, name, why in bad[:10])
        more = f"; ... ({len(bad)} rows in total)" if len(bad) > 10 else ""
        raise UserError(f"{source}: a filename must be a relative path inside the images folder or zip; {shown}{more}")


def load_stimulus_set(
    csv_path: str | os.PathLike, images: str | os.PathLike | None = None, *, identifier: str | None = None
) -> pd.DataFrame:
    """Read a stimulus-set CSV and resolve each stimulus's image.

    ``images`` is a ``.zip`` archive or a folder; by default the CSV's folder, or a zip next to the CSV with the
    same stem when one exists. Adds a column ``image_path``: a file path for folders, ``"<zip path>::<member>"``
    for zips (open either with :func:`open_stimulus`). Raises :class:`UserError` (naming the CSV) when it does not
    exist, lacks the ``stimulus_id``/``filename`` columns, repeats an id, lists a ``filename`` that is absolute or
    climbs out of the folder/zip (naming the rows, :func:`check_filenames`), or lists files that do not exist (all
    of them). ``attrs``: ``identifier``, ``images`` (the resolved root).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f"stimulus set: {csv_path} does not exist")
    try:
        table = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"stimulus set: {csv_path} is not a readable CSV file ({exc})") from None
    if "stimulus_id" not in table.columns:
        if "image_id" not in table.columns:
            raise UserError(f"{csv_path}: needs a 'stimulus_id' (or legacy 'image_id') column; "
                            f"has {list(table.columns)}")
        table["stimulus_id"] = table["image_id"]
    if "filename" not in table.columns:
        raise UserError(f"{csv_path}: needs a 'filename' column (the image path in the zip or folder)")
    table["stimulus_id"] = table["stimulus_id"].astype(str)
    dup = table["stimulus_id"][table["stimulus_id"].duplicated()].unique().tolist()
    if dup:
        raise UserError(f"{csv_path}: duplicate stimulus_id values {_preview(dup)}")
    if images is None:
        sibling = csv_path.with_suffix(".zip")
        images = sibling if sibling.exists() else csv_path.parent
    root = Path(images)
    filenames = table["filename"].astype(str).tolist()
    check_filenames(filenames, str(csv_path))
    if root.is_file() and zipfile.is_zipfile(root):
        with zipfile.ZipFile(root) as archive:
            members = set(archive.namelist())
        missing = [name for name in filenames if name not in members]
        refs = [f"{root.resolve()}{_ZIP_SEPARATOR}{name}" for name in filenames]
    elif root.is_dir():
        missing = [name for name in filenames if not (root / name).is_file()]
        refs = [str((root / name).resolve()) for name in filenames]
    else:
        raise UserError(f"images: {root} is neither a zip archive nor a folder")
    if missing:
        raise UserError(f"{len(missing)} stimulus files listed in {csv_path.name} are missing from {root}: "
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
    """Decode a stimulus image with Pillow (converted to ``mode`` unless None).

    An undecodable file (truncated, not an image) raises :class:`UserError` naming it: it is the user's data, met
    in the middle of feature extraction, and the command should say which file rather than show a traceback.
    """
    from PIL import Image

    try:
        with open_stimulus(image_path) as handle:
            image = Image.open(handle)
            image.load()
    except (OSError, SyntaxError, ValueError, zipfile.BadZipFile) as exc:  # PIL's errors for damaged files
        raise UserError(f"stimulus image {image_path}: cannot decode it ({type(exc).__name__}: {exc})") from None
    return image.convert(mode) if mode is not None else image
