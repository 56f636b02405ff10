#!/usr/bin/env python
"""Architecture search over ConvRNN cells and feedback edges (Optuna): ``python search.py run|status|export|report``.

A thin wrapper: the command lives in ``convrnn.search.cli`` (also installed as ``convrnn-search``).
"""

from convrnn.search.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
