#!/usr/bin/env python
"""Convert ImageNet (train/<wnid>/*.JPEG, val/ in class folders or flat + labels file) to webdataset shards.

    python scripts/make_shards.py /data/imagenet /data/imagenet-wds --shard-size 1000 --workers 16

Writes imagenet-{train,val}-%06d.tar, one plan file per split, and dataset.json (last) into OUT. Rerun
the same command after an interruption to finish: complete shards are kept, the rest are written.
See convrnn/data/shards.py for the sample format and the labels-file formats.
"""

from __future__ import annotations

import argparse
import logging

from convrnn.data.shards import convert_imagenet


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the conversion."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="ImageNet root holding train/ and val/")
    p.add_argument("out", help="output directory for the shards and dataset.json")
    p.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to convert (default: both)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the global shuffle (default: 0)")
    p.add_argument("--workers", type=int, default=None, help="parallel writer processes (default: all cores)")
    p.add_argument(
        "--val-labels",
        default=None,
        help="labels file for a flat val/ folder: 'filename wnid' or 'filename,class_index' per line "
        "(default: val_labels.txt, val_labels.csv or LOC_val_solution.csv in val/ or the root)",
    )
    p.add_argument("--classes", default=None, help="file with one wnid per line (default: folders of train/)")
    p.add_argument("--prefix", default="imagenet", help="shard name prefix (default: imagenet)")
    p.add_argument("--overwrite", action="store_true", help="discard existing shards/plans and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    classes = None
    if args.classes:
        with open(args.classes, encoding="utf-8") as f:
            classes = [line.strip() for line in f if line.strip()]
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
    )
    for split, info in index["splits"].items():
        print(f"{split}: {info['num_samples']} samples in {info['num_shards']} shards ({info['pattern']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
