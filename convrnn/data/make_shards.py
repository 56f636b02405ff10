"""``convrnn-make-shards``: convert ImageNet (train/<wnid>/*.JPEG, val/ in class folders or flat + labels file)
to webdataset shards.

    convrnn-make-shards /data/imagenet /data/imagenet-wds --shard-size 1000 --workers 16

Writes imagenet-{train,val}-%06d.tar, one plan file per split, and dataset.json (last) into OUT. Every image
is decoded once first: files that do not decode (truncated, not an image, empty) are left out, listed with
the reason in dataset.json and in a summary line on stderr (--keep-undecodable keeps them). Rerun the same
command after an interruption to finish: complete shards are kept, the rest are written. See
convrnn/data/shards.py for the sample format and the labels-file formats. Bad input exits with status 2
and a message naming the file or flag.
"""

from __future__ import annotations

import argparse
import logging
import sys

from convrnn.data.image_check import undecodable_summary
from convrnn.data.imagenet import convert_imagenet
from convrnn.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``convrnn-make-shards``."""
    p = argparse.ArgumentParser(
        prog="convrnn-make-shards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("root", help="ImageNet root holding train/ and val/")
    p.add_argument("out", help="output directory for the shards and dataset.json")
    p.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to convert (default: both)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the global shuffle (default: 0)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument(
        "--val-labels",
        default=None,
        help="labels file for a flat val/ folder: 'filename wnid' or 'filename,class_index' per line "
        "(default: val_labels.txt, val_labels.csv or LOC_val_solution.csv in val/ or the root)",
    )
    p.add_argument("--classes", default=None, help="file with one wnid per line (default: folders of train/)")
    p.add_argument("--prefix", default="imagenet", help="shard name prefix (default: imagenet)")
    p.add_argument(
        "--keep-undecodable",
        action="store_true",
        help="store images that do not decode anyway (they are still listed); training skips them as corrupt",
    )
    p.add_argument("--overwrite", action="store_true", help="discard existing shards/plans and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _read_classes(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            classes = [line.strip() for line in f if line.strip()]
    except OSError as exn:
        raise UserError(f"--classes {path}: {exn.strerror or exn}") from None
    if not classes:
        raise UserError(f"--classes {path}: the file lists no classes")
    return classes


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the conversion; user errors exit with status 2 and one line."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.shard_size < 1:
            raise UserError(f"--shard-size must be >= 1, got {args.shard_size}")
        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers must be >= 1, got {args.workers}")
        classes = _read_classes(args.classes) if args.classes else None
        index = convert_imagenet(
            args.root,
            args.out,
            splits=args.splits,
            shard_size=args.shard_size,
            seed=args.seed,
            workers=args.workers,
            val_labels=args.val_labels,
            classes=classes,
            prefix=args.prefix,
            progress=not args.quiet,
            overwrite=args.overwrite,
            keep_undecodable=args.keep_undecodable,
        )
    except (UserError, OSError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    for split in args.splits:
        info = index["splits"][split]
        print(f"{split}: {info['num_samples']} samples in {info['num_shards']} shards ({info['pattern']})")
    summary = undecodable_summary(index, args.out, splits=args.splits)
    if summary is not None:
        print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
