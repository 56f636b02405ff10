#!/usr/bin/env python
"""Train, validate or test a ConvRNN: ``python train.py fit --config configs/demo.yaml``.

See docs/training.md for the configs, resuming (``--ckpt_path last``) and multi-GPU/multi-node launches.
"""

import sys

from convrnn.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
