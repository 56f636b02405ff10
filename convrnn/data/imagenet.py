"""ImageNet (``root/{train,val}``) -> webdataset shards + ``dataset.json``: scan, check, plan, write, index.

The stages live in their own modules: :mod:`convrnn.data.scan` (samples and the supported validation
layouts), :mod:`convrnn.data.image_check` (undecodable images), :mod:`convrnn.data.plan`,
:mod:`convrnn.data.tars` and :mod:`convrnn.data.writer` (the shards, resumable), :mod:`convrnn.data.index`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from convrnn.data.image_check import checked_split
from convrnn.data.index import write_index
from convrnn.data.scan import find_classes, scan_imagenet_split
from convrnn.data.writer import read_file_bytes, write_splits
from convrnn.errors import UserError


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
        samples[split], headers[split] = checked_split(
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
