#!/usr/bin/env python
"""Convert a release TensorFlow checkpoint into a convrnn checkpoint (same as ``convrnn-import-release``).

    python scripts/import_release.py --model rgc_intermediate --checkpoint ckpts/rgc_intermediate/model.ckpt \
        --out rgc_intermediate.pt --verify

See docs/pretrained.md for where the release's checkpoints are and what each file is.
"""

from __future__ import annotations

import sys

from convrnn.release.cli import main

if __name__ == "__main__":
    sys.exit(main())
