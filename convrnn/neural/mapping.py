"""Former home of the regression estimators, kept so that existing imports keep working.

The estimators now live one per module: :mod:`convrnn.neural.gram` (Gram matrices, :class:`SplitGram`),
:mod:`convrnn.neural.pls` (PLS) and :mod:`convrnn.neural.ridge` (ridge, RidgeCV, alpha grids); the torch helpers
they share are in :mod:`convrnn.neural.tensors`. New code should import from those modules.
"""

from __future__ import annotations

from .gram import SplitGram, center_gram, gram
from .pls import ConstantFeaturesWarning, PLSFit, PLSRegression, pls_kernel, pls_primal
from .ridge import (
    BRAINSCORE_RIDGE_ALPHAS,
    NAYEBI_RIDGE_ALPHAS,
    Ridge,
    RidgeCV,
    kfold_indices,
    ridge_cv_eigen,
    ridge_cv_kernel,
    ridge_dual,
)

__all__ = [
    "BRAINSCORE_RIDGE_ALPHAS",
    "NAYEBI_RIDGE_ALPHAS",
    "ConstantFeaturesWarning",
    "PLSFit",
    "PLSRegression",
    "Ridge",
    "RidgeCV",
    "SplitGram",
    "center_gram",
    "gram",
    "kfold_indices",
    "pls_kernel",
    "pls_primal",
    "ridge_cv_eigen",
    "ridge_cv_kernel",
    "ridge_dual",
]
