#!/usr/bin/env python
"""Score a ConvRNN against time-binned V4/IT responses: a thin wrapper of ``convrnn-fit-neural``
(:mod:`convrnn.neural.cli`).

    python scripts/fit_neural.py --data synthetic --model teacher --out runs/neural_teacher

See ``python scripts/fit_neural.py --help`` and docs/neural.md.
"""

from __future__ import annotations

from convrnn.neural.cli import build_parser, config_from_args, main

__all__ = ["build_parser", "config_from_args", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
