"""Brain-Score time bins -> ConvRNN steps, with the convention of ``scripts/fit_neural.py``.

Why a module of its own: the adapter, the plugin and the tests must agree on one rule, and it is the rule that
``convrnn.neural.scoring.default_bin_steps`` applies to every fit: model step ``t`` is the 10 ms window
``[(t - offset) * 10, (t - offset + 1) * 10)`` ms after image onset, so a 10 ms bin starting at ``s`` ms is step
``s // 10 + offset`` (the 70-260 ms bins are steps 7-25). A wider or unaligned bin (Brain-Score's static
70-170 ms bin, say) averages the steps it overlaps, each weighted by the fraction of the bin it covers, which is
how Brain-Score's ``TemporalAligned`` re-bins a model's own bins. Needs no Brain-Score install.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from convrnn.errors import UserError

__all__ = ["STEP_MS", "bin_step_weights", "normalise_bins"]

#: milliseconds per model step (every edge of a biologically unrolled ConvRNN takes one step)
STEP_MS = 10.0


def normalise_bins(time_bins: Iterable[Sequence[float]]) -> list[tuple[int | float, int | float]]:
    """``time_bins`` (Brain-Score hands over a list of tuples, a MultiIndex's tuple array, or for one squeezed bin
    a list holding a 0-d object array) -> ``[(start, end)]``.

    Each bin needs two numbers with ``end > start``; a bad bin is a :class:`UserError` that names it.
    """
    bins = []
    for item in time_bins:
        if getattr(item, "ndim", None) == 0:  # a 0-d object array: Brain-Score's single (squeezed) time bin
            item = item.item()  # type: ignore[union-attr]
        try:
            start, end = item
            start, end = _number(start), _number(end)
        except (TypeError, ValueError):
            raise UserError(f"time bin {item!r}: expected (start_ms, end_ms)") from None
        if not end > start:
            raise UserError(f"time bin ({start}, {end}) ms: end must be greater than start")
        bins.append((start, end))
    if not bins:
        raise UserError("no time bins requested")
    return bins


def _number(value: object) -> int | float:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(value)
    return int(number) if number.is_integer() else number


def bin_step_weights(time_bins: Iterable[Sequence[float]], *, times: int, step_ms: float = STEP_MS,
                     offset: int = 0) -> list[dict[int, float]]:
    """For each bin, ``{model step: weight}``: the steps whose window overlaps the bin, weights summing to 1.

    Step ``t`` covers ``[(t - offset) * step_ms, (t - offset + 1) * step_ms)`` ms. A bin any part of which falls
    outside the ``times`` steps of the presentation (before step 0 or after step ``times - 1``) is a
    :class:`UserError` naming the bin and the steps it would need, since a ConvRNN has no response there.
    """
    if times < 1:
        raise UserError(f"times must be >= 1, got {times}")
    if not step_ms > 0:
        raise UserError(f"step_ms must be > 0, got {step_ms}")
    out: list[dict[int, float]] = []
    bad: list[str] = []
    for start, end in normalise_bins(time_bins):
        first = math.floor(start / step_ms) + offset
        last = math.ceil(end / step_ms) - 1 + offset
        if first < 0 or last >= times:
            bad.append(f"({start}, {end}) ms -> steps {first}..{last}")
            continue
        weights: dict[int, float] = {}
        for step in range(first, last + 1):
            lo = max(start, (step - offset) * step_ms)
            hi = min(end, (step - offset + 1) * step_ms)
            if hi > lo:
                weights[step] = (hi - lo) / (end - start)
        out.append(weights)
    if bad:
        raise UserError(f"time bin(s) outside the model's {times} steps (step t covers "
                        f"[{step_ms:g}(t - {offset}), {step_ms:g}(t - {offset} + 1)) ms): {'; '.join(bad)}; "
                        "request bins inside the presentation, or change times/offset")
    return out
