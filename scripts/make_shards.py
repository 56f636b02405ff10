#!/usr/bin/env python
"""Convert ImageNet to webdataset shards: a thin wrapper of ``convrnn-make-shards`` (convrnn.data.make_shards).

    python scripts/make_shards.py /data/imagenet /data/imagenet-wds --shard-size 1000 --workers 16

See ``python scripts/make_shards.py --help``.
"""

from __future__ import annotations

from convrnn.data.make_shards import main

if __name__ == "__main__":
    raise SystemExit(main())
