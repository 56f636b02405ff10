"""The regression stage's one estimator factory: ``"pls"`` or ``"ridgecv"`` -> a fresh, unfitted map.

Why one home: the fit stage's per-layer maps (:mod:`convrnn.neural.fit`, ``mapping="shared"``) and Nayebi's
split-half refits (:func:`convrnn.neural.fit.fit_nayebi`) must build the same estimator from the same settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .pls import PLSRegression
from .ridge import NAYEBI_RIDGE_ALPHAS, RidgeCV

__all__ = ["REGRESSIONS", "make_estimator"]

#: The regressions :func:`make_estimator` builds (``fit_neural.py --regression``).
REGRESSIONS = ("pls", "ridgecv")


def make_estimator(regression: str, n_components: int, *,
                   ridge_alphas: Sequence[float] | np.ndarray = NAYEBI_RIDGE_ALPHAS, ridge_cv: int | None = 5,
                   device: str | torch.device | None = None,
                   dtype: torch.dtype | str | None = None) -> PLSRegression | RidgeCV:
    """A fresh :class:`PLSRegression` with ``n_components`` (``"pls"``) or a :class:`RidgeCV` over ``ridge_alphas``
    with ``ridge_cv`` folds (``"ridgecv"``), on ``device`` in ``dtype`` (None: the estimators' defaults)."""
    if regression == "pls":
        return PLSRegression(n_components, device=device, dtype=dtype)
    if regression == "ridgecv":
        return RidgeCV(ridge_alphas, cv=ridge_cv, device=device, dtype=dtype)
    raise ValueError(f"unknown regression {regression!r}; use one of {REGRESSIONS}")
