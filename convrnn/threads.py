"""How many CPU threads torch uses, for one block of code.

Why: the models' convolutions are small (tens of microseconds at demo sizes), so OpenMP barriers dominate, and
extra threads that wait on each other slow down badly when a data worker or another process takes a core.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` intra-op threads (None or 0: leave torch's setting), restoring the old value after.

    Why: the models' convolutions are small (tens of microseconds at demo sizes), so OpenMP barriers dominate;
    on a busy 2-core machine 2 threads were 15x slower than 1 (42 s vs 2.7 s for 128 images, 10 layers).
    """
    old = torch.get_num_threads()
    if n and n != old:  # 0 is the CLI's "torch's default" (--threads 0), as None
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)
