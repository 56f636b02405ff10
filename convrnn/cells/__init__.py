"""Layer-local recurrent cells (docs/models.md, 'Cells').

All share `RecurrentCell`'s interface; `build_cell` picks one by name.
"""

from __future__ import annotations

import inspect
from typing import Any

from convrnn.cells.base import RecurrentCell
from convrnn.cells.gru import GRUCell
from convrnn.cells.intersection_rnn import IntersectionRNNCell
from convrnn.cells.lstm import LSTMCell
from convrnn.cells.rgc import PRESETS as RGC_PRESETS
from convrnn.cells.rgc import ReciprocalGatedCell, build_rgc
from convrnn.cells.simple_rnn import SimpleRNNCell
from convrnn.cells.time_decay import TimeDecayCell
from convrnn.cells.ugrnn import UGRNNCell

CELLS: dict[str, type[RecurrentCell]] = {
    "simplernn": SimpleRNNCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
    "ugrnn": UGRNNCell,
    "intersectionrnn": IntersectionRNNCell,
    "timedecay": TimeDecayCell,
    "rgc": ReciprocalGatedCell,
}


def cell_options(kind: str) -> set[str]:
    """The keyword options a cell type accepts (used to reject unknown YAML keys by name)."""
    if kind not in CELLS:
        raise ValueError(f"unknown cell type {kind!r}; known: {sorted(CELLS)}")
    params = inspect.signature(CELLS[kind].__init__).parameters
    names = {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY}
    return names | ({"preset"} if kind == "rgc" else set())


def build_cell(kind: str, in_channels: int, out_channels: int, spatial_size: tuple[int, int],
               residual_channels: int = 0, feedback_channels: int = 0, **options: Any) -> RecurrentCell:
    unknown = set(options) - cell_options(kind)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for cell {kind!r}; "
                         f"known: {sorted(cell_options(kind))}")
    if kind == "rgc":
        return build_rgc(in_channels, out_channels, spatial_size, residual_channels, feedback_channels, **options)
    return CELLS[kind](in_channels, out_channels, spatial_size, **options)


__all__ = ["CELLS", "RGC_PRESETS", "GRUCell", "IntersectionRNNCell", "LSTMCell", "RecurrentCell",
           "ReciprocalGatedCell", "SimpleRNNCell", "TimeDecayCell", "UGRNNCell", "build_cell", "cell_options"]
