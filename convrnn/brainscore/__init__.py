"""Brain-Score vision: any ConvRNN as a temporal ``BrainModel`` and a model plugin in one command.

``ConvRNNBrainModel`` (``convrnn.brainscore.adapter``) needs Brain-Score vision, which cannot share an environment
with this package's own requirements (it pins numpy<2 and an old xarray): ``make brainscore-env`` builds
``.venv-brainscore`` for it. The plugin writer (``convrnn-brainscore-plugin``, ``convrnn.brainscore.plugin``), the
region map and the time-bin rule work without it. See docs/brainscore.md.
"""

from __future__ import annotations

from typing import Any

from .regions import parse_regions, regions_from_best_layers
from .timebins import bin_step_weights

__all__ = ["ConvRNNBrainModel", "bin_step_weights", "parse_regions", "regions_from_best_layers"]


def __getattr__(name: str) -> Any:
    if name == "ConvRNNBrainModel":  # imported on use: it needs Brain-Score vision installed
        from .adapter import ConvRNNBrainModel

        return ConvRNNBrainModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
