#!/usr/bin/env python
"""Render the synthetic-objects dataset (train + val) as webdataset shards, or a stimulus set as PNGs.

    python scripts/make_synthetic.py shards data/synthetic --image-size 64 --train-n 20 --val-n 5
    python scripts/make_synthetic.py stimuli data/stimuli --image-size 128 --n 10

``shards`` is idempotent: an up-to-date dataset.json means there is nothing to do.
"""

from __future__ import annotations

import argparse
import logging
import time

from convrnn.data.synthetic_objects import SyntheticObjects, write_synthetic_shards


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and write shards or a stimulus set."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("shards", "stimuli"):
        s = sub.add_parser(name)
        s.add_argument("out", help="output directory")
        s.add_argument("--image-size", type=int, default=64)
        s.add_argument("--categories", type=int, default=8)
        s.add_argument("--objects", type=int, default=8, help="objects per category")
        s.add_argument("--levels", type=int, nargs="+", default=[0, 3, 6], help="variation levels")
        s.add_argument("--seed", type=int, default=0)
    sh = sub.choices["shards"]
    sh.add_argument("--train-n", type=int, default=20, help="train images per object per level")
    sh.add_argument("--val-n", type=int, default=5, help="val images per object per level")
    sh.add_argument("--shard-size", type=int, default=128)
    sh.add_argument("--jpeg-quality", type=int, default=90)
    sh.add_argument("--workers", type=int, default=None)
    sh.add_argument("--overwrite", action="store_true")
    st = sub.choices["stimuli"]
    st.add_argument("--n", type=int, default=10, help="images per object per level")
    st.add_argument("--split-seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    t0 = time.perf_counter()
    if args.cmd == "shards":
        index = write_synthetic_shards(
            args.out,
            image_size=args.image_size,
            train_per_object_per_level=args.train_n,
            val_per_object_per_level=args.val_n,
            seed=args.seed,
            shard_size=args.shard_size,
            n_categories=args.categories,
            objects_per_category=args.objects,
            levels=args.levels,
            jpeg_quality=args.jpeg_quality,
            workers=args.workers,
            progress=True,
            overwrite=args.overwrite,
        )
        for split, info in index["splits"].items():
            print(f"{split}: {info['num_samples']} samples in {info['num_shards']} shards ({info['pattern']})")
    else:
        gen = SyntheticObjects(args.image_size, args.categories, args.objects, args.seed)
        df = gen.sample_table(args.n, args.levels, split_seed=args.split_seed)
        path = gen.write_stimulus_set(args.out, df)
        print(f"{len(df)} stimuli -> {path}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
