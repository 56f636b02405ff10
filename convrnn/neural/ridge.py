"""Ridge regression and RidgeCV (alpha per target) on torch, with the ridge alpha grids of Brain-Score and Nayebi.

Why: neural sites differ in noise level, so alpha is chosen per target; one eigendecomposition (of ``X X^T`` when
n < p, of ``X^T X`` otherwise) per fold serves every alpha and every target (the approach of himalaya,
re-implemented on torch so that the fit stage can share the Gram and its eigendecomposition across areas and
splits). ``cv=None`` gives sklearn's exact leave-one-out. Folds come from sklearn's ``KFold`` (unshuffled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import KFold

from .gram import center_gram, gram
from .tensors import column_mean, like_input, resolve_device, to_tensor

__all__ = [
    "BRAINSCORE_RIDGE_ALPHAS",
    "NAYEBI_RIDGE_ALPHAS",
    "Ridge",
    "RidgeCV",
    "kfold_indices",
    "ridge_cv_eigen",
    "ridge_cv_kernel",
    "ridge_dual",
]

#: The 24-value ridge grid of Nayebi's ``brainmodel_utils`` (``core/constants.py``): the sorted union of
#: geomspace(1e-9, 1e5, 15) and 5 * geomspace(1e-4, 1e4, 9).
NAYEBI_RIDGE_ALPHAS: np.ndarray = np.sort(
    np.concatenate([np.geomspace(1e-9, 1e5, num=15), 5 * np.geomspace(1e-4, 1e4, num=9)])
)

#: Brain-Score's ``ALPHA_LIST`` for ``ridgecv`` (99 values, 0.01 ... 1e7).
BRAINSCORE_RIDGE_ALPHAS: np.ndarray = np.array(
    [0.01, 0.1, 0.5, 1.0]
    + list(np.linspace(1e1, 1e2, 4, endpoint=False))
    + list(np.linspace(1e2, 1e3, 18, endpoint=False))
    + list(np.linspace(1e3, 1e4, 18, endpoint=False))
    + list(np.linspace(1e4, 1e5, 18, endpoint=False))
    + list(np.linspace(1e5, 1e6, 18, endpoint=False))
    + list(np.linspace(1e6, 1e7, 19))
)


def kfold_indices(n: int, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Unshuffled K-fold folds of RidgeCV's ``cv=int`` (sklearn ``KFold(n_splits)``: the first ``n % k`` folds get
    one extra sample), with the error message naming ``cv``."""
    if n_splits < 2 or n_splits > n:
        raise ValueError(f"cv={n_splits} folds need 2 <= folds <= n_samples={n}")
    return list(KFold(n_splits).split(np.zeros((n, 1))))


@dataclass
class _Eigen:
    """Factors of a centred ridge problem: predictions are ``L @ diag(1/(lam+alpha)) @ R``."""

    lam: torch.Tensor  # [r]
    L: torch.Tensor | None  # [n_eval, r] (None when only the solution is needed)
    R: torch.Tensor  # [r, q]


def _ridge_factors_kernel(
    Kc: torch.Tensor, Kc_eval: torch.Tensor | None, Yc: torch.Tensor
) -> tuple[_Eigen, torch.Tensor]:
    lam, Q = torch.linalg.eigh(Kc)
    lam = torch.clamp(lam, min=0.0)
    L = Kc_eval @ Q if Kc_eval is not None else None
    return _Eigen(lam=lam, L=L, R=Q.T @ Yc), Q


def _ridge_scores(
    fac: _Eigen, alphas: torch.Tensor, Y_eval: torch.Tensor, y_offset: torch.Tensor, scoring: str
) -> torch.Tensor:
    """Score every (alpha, target) on held-out rows: returns [n_alphas, q] (higher is better)."""
    out = []
    for a in alphas:
        pred = fac.L @ (fac.R / (fac.lam + a).unsqueeze(-1)) + y_offset
        if scoring == "mse":
            out.append(-((pred - Y_eval) ** 2).mean(0))
        else:
            out.append(_pearson_torch(pred, Y_eval))
    return torch.stack(out)


def _pearson_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = torch.sqrt((a * a).sum(0) * (b * b).sum(0))
    return torch.where(den > 0, (a * b).sum(0) / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))


def ridge_cv_eigen(
    Kc: torch.Tensor,
    Yc: torch.Tensor,
    alphas: torch.Tensor,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None,
    *,
    K_raw: torch.Tensor | None = None,
    Y_raw: torch.Tensor | None = None,
    scoring: str = "mse",
    alpha_per_target: bool = True,
    eig: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CV scores ``[n_alphas, q]`` and the chosen alpha index per target, in kernel form.

    ``folds=None`` gives exact leave-one-out with an unpenalised intercept (sklearn's ``RidgeCV(cv=None)``, "gram"
    mode): with ``Kc = Q diag(lam) Q^T`` and ``D = 1/(lam + alpha)``, ``c = Q D Q^T y``, ``d_i = (Q D Q^T)_ii -
    (Q D Q^T 1)_i / n`` and the LOO residual is ``c / d`` (``eig`` may pass a precomputed ``(lam, Q)``). With
    folds, each fold is re-centred on its own train rows (from ``K_raw``, see :func:`center_gram`; a centred Gram
    works too) and decomposed once for all alphas and targets. Ties go to the first (smallest) alpha.
    """
    if folds is None:
        if scoring != "mse":
            raise ValueError("leave-one-out (cv=None) supports scoring='mse' only")
        lam, Q = eig if eig is not None else torch.linalg.eigh(Kc)
        n = Kc.shape[0]
        Q2 = Q * Q
        QtY = Q.T @ Yc
        Qt1 = Q.sum(0)
        scores = []
        for a in alphas:
            D = 1.0 / (lam + a)
            c = Q @ (D.unsqueeze(-1) * QtY)
            d = Q2 @ D - (Q @ (D * Qt1)) / n
            looe = c / d.unsqueeze(-1)
            scores.append(-(looe**2).mean(0))
        cv = torch.stack(scores)
    else:
        K_raw = Kc if K_raw is None else K_raw
        Y_raw = Yc if Y_raw is None else Y_raw
        cv = torch.zeros((len(alphas), Y_raw.shape[1]), device=Yc.device, dtype=Yc.dtype)
        for tr, te in folds:
            Kc_tr, Kc_te = center_gram(K_raw, tr, te)
            y_tr = Y_raw[torch.as_tensor(tr, device=Y_raw.device)]
            y_te = Y_raw[torch.as_tensor(te, device=Y_raw.device)]
            off = y_tr.mean(0)
            fac, _ = _ridge_factors_kernel(Kc_tr, Kc_te, y_tr - off)
            cv += _ridge_scores(fac, alphas, y_te, off, scoring)
        cv /= len(folds)
    return cv, _choose(cv, alpha_per_target)


def _choose(cv: torch.Tensor, alpha_per_target: bool) -> torch.Tensor:
    if alpha_per_target:
        return torch.argmax(cv, dim=0)
    return torch.full((cv.shape[1],), int(torch.argmax(cv.mean(1))), device=cv.device, dtype=torch.long)


def ridge_dual(
    Kc: torch.Tensor, Yc: torch.Tensor, alphas: torch.Tensor, eig: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """Dual coefficients ``(Kc + alpha_j I)^{-1} y_j`` for one alpha per target, from one eigendecomposition."""
    lam, Q = eig if eig is not None else torch.linalg.eigh(Kc)
    lam = torch.clamp(lam, min=0.0)
    return Q @ ((Q.T @ Yc) / (lam.unsqueeze(-1) + alphas.unsqueeze(0)))


def ridge_cv_kernel(
    Kc: torch.Tensor,
    Y: torch.Tensor,
    alphas: torch.Tensor,
    cv: int | Sequence[tuple[np.ndarray, np.ndarray]] | None = 5,
    *,
    scoring: str = "mse",
    alpha_per_target: bool = True,
    eig: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RidgeCV on a centred train Gram: returns ``(dual, chosen_alphas, cv_scores)`` with predictions
    ``Kc_test @ dual + Y.mean(0)``. ``eig`` (``torch.linalg.eigh(Kc)``) can be shared by several target sets
    (areas) of the same split; with ``cv=None`` it is all the decomposition needed."""
    y_mean = Y.mean(0)
    Yc = Y - y_mean
    folds = kfold_indices(Kc.shape[0], cv) if isinstance(cv, int | np.integer) else cv
    if eig is None:
        eig = torch.linalg.eigh(Kc)
    scores, best = ridge_cv_eigen(Kc, Yc, alphas, folds, K_raw=Kc, Y_raw=Y, scoring=scoring,
                                  alpha_per_target=alpha_per_target, eig=eig)
    chosen = alphas[best]
    return ridge_dual(Kc, Yc, chosen, eig), chosen, scores


class Ridge:
    """Ridge regression with intercept (sklearn ``Ridge`` objective), on torch.

    ``alpha`` may be a scalar or one value per target. Solved in the dual (n x n) when n < p, else in the primal.
    """

    def __init__(
        self,
        alpha: float | Sequence[float] | np.ndarray = 1.0,
        *,
        fit_intercept: bool = True,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        chunk: int = 8192,
    ) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.device, self.dtype = resolve_device(device, dtype)
        self.chunk = chunk

    def _prepare(self, X: Any, Y: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        Yt = to_tensor(Y, self.device, self.dtype)
        self._predict_1d = Yt.dim() == 1
        if self._predict_1d:
            Yt = Yt.unsqueeze(-1)
        if self.fit_intercept:
            x_mean = column_mean(X, self.device, self.dtype)
            y_mean = Yt.mean(0)
        else:
            x_mean = torch.zeros(X.shape[1], device=self.device, dtype=self.dtype)
            y_mean = torch.zeros(Yt.shape[1], device=self.device, dtype=self.dtype)
        self.x_mean_, self.y_mean_ = x_mean, y_mean
        return Yt, x_mean, y_mean

    def _solve(self, X: Any, Yc: torch.Tensor, alphas_per_target: torch.Tensor) -> torch.Tensor:
        """Coefficients (p, q) for one alpha per target, through one eigendecomposition."""
        n, p = X.shape
        if n < p:
            K = gram(X, center=self.fit_intercept, chunk=self.chunk, device=self.device, dtype=self.dtype)
            dual = ridge_dual(K, Yc, alphas_per_target)
            coef = torch.zeros((p, Yc.shape[1]), device=self.device, dtype=self.dtype)
            for start in range(0, p, self.chunk):
                block = to_tensor(X[:, start:start + self.chunk], self.device, self.dtype)
                block = block - self.x_mean_[start:start + self.chunk]
                coef[start:start + self.chunk] = block.T @ dual
            return coef
        Xc = to_tensor(X, self.device, self.dtype) - self.x_mean_
        cov = Xc.T @ Xc
        cov = 0.5 * (cov + cov.T)
        if bool((alphas_per_target == alphas_per_target[0]).all()):
            a = float(alphas_per_target[0])
            eye = torch.eye(p, device=self.device, dtype=self.dtype)
            return torch.linalg.solve(cov + a * eye, Xc.T @ Yc)
        lam, Vec = torch.linalg.eigh(cov)
        lam = torch.clamp(lam, min=0.0)
        return Vec @ ((Vec.T @ (Xc.T @ Yc)) / (lam.unsqueeze(-1) + alphas_per_target.unsqueeze(0)))

    def fit(self, X: Any, Y: Any) -> Ridge:
        """Fit with the given alpha(s)."""
        Yt, _, y_mean = self._prepare(X, Y)
        q = Yt.shape[1]
        alphas = torch.as_tensor(np.broadcast_to(np.asarray(self.alpha, dtype=np.float64), (q,)).copy())
        alphas = alphas.to(device=self.device, dtype=self.dtype)
        coef = self._solve(X, Yt - y_mean, alphas)
        self.coef_ = coef.T.contiguous()
        self.intercept_ = y_mean - self.x_mean_ @ coef
        return self

    def predict(self, X: Any) -> Any:
        """``X @ coef_.T + intercept_``."""
        Xt = to_tensor(X, self.device, self.dtype)
        out = Xt @ self.coef_.T + self.intercept_
        if self._predict_1d:
            out = out[:, 0]
        return like_input(out, X)


class RidgeCV(Ridge):
    """Ridge with alpha chosen by cross-validation, per target by default.

    Why: neural sites differ in noise level, so one alpha for all of them is a poor compromise. ``cv`` is an int
    (unshuffled K-fold, like sklearn/himalaya), an iterable of (train, test) index pairs, or ``None`` for exact
    leave-one-out (matches sklearn ``RidgeCV(cv=None)``). Every fold needs one eigendecomposition for all alphas
    and targets. Default grid: :data:`NAYEBI_RIDGE_ALPHAS`. After selection the model is refit on all rows.
    ``scoring``: "mse" (negative mean squared error, as sklearn/himalaya) or "r" (Pearson r).
    Fitted attributes: ``alpha_`` (per target), ``best_alphas_`` (alias), ``cv_scores_`` [n_alphas, q].
    """

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = NAYEBI_RIDGE_ALPHAS,
        *,
        cv: int | Iterable[tuple[np.ndarray, np.ndarray]] | None = 5,
        fit_intercept: bool = True,
        alpha_per_target: bool = True,
        scoring: str = "mse",
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        chunk: int = 8192,
    ) -> None:
        super().__init__(alpha=1.0, fit_intercept=fit_intercept, device=device, dtype=dtype, chunk=chunk)
        if scoring not in ("mse", "r"):
            raise ValueError(f"scoring must be 'mse' or 'r', got {scoring!r}")
        self.alphas = np.asarray(alphas, dtype=np.float64)
        self.cv = cv
        self.alpha_per_target = alpha_per_target
        self.scoring = scoring

    def fit(self, X: Any, Y: Any) -> RidgeCV:
        """Select alpha per target by CV, then refit on all rows."""
        if not self.fit_intercept:
            raise NotImplementedError("RidgeCV here always fits an intercept (neural data are not centred)")
        Yt, _, y_mean = self._prepare(X, Y)
        n, p = X.shape
        alphas = torch.as_tensor(self.alphas, device=self.device, dtype=self.dtype)
        if self.cv is None:
            folds = None
        elif isinstance(self.cv, int | np.integer):
            folds = kfold_indices(n, int(self.cv))
        else:
            folds = [(np.asarray(a), np.asarray(b)) for a, b in self.cv]
        if folds is None and n > p:
            # LOO via the p x p eigendecomposition: residual / (1 - h_ii - 1/n) (sklearn "cov" mode)
            cv_scores = self._loo_primal(X, Yt - y_mean, alphas)
            best = _choose(cv_scores, self.alpha_per_target)
        elif n <= p or folds is None:
            K = gram(X, center=True, chunk=self.chunk, device=self.device, dtype=self.dtype)
            cv_scores, best = ridge_cv_eigen(
                K, Yt - y_mean, alphas, folds, K_raw=K, Y_raw=Yt, scoring=self.scoring,
                alpha_per_target=self.alpha_per_target,
            )
        else:
            cv_scores = self._kfold_primal(X, Yt, alphas, folds)
            best = _choose(cv_scores, self.alpha_per_target)
        self.cv_scores_ = cv_scores
        chosen = alphas[best]
        self.alpha_ = chosen.detach().cpu().numpy()
        self.best_alphas_ = self.alpha_
        coef = self._solve(X, Yt - y_mean, chosen)
        self.coef_ = coef.T.contiguous()
        self.intercept_ = y_mean - self.x_mean_ @ coef
        return self

    def _loo_primal(self, X: Any, Yc: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        Xc = to_tensor(X, self.device, self.dtype) - self.x_mean_
        n = Xc.shape[0]
        cov = Xc.T @ Xc
        lam, Vec = torch.linalg.eigh(0.5 * (cov + cov.T))
        lam = torch.clamp(lam, min=0.0)
        XV = Xc @ Vec
        VXY = Vec.T @ (Xc.T @ Yc)
        XV2 = XV * XV
        out = []
        for a in alphas:
            D = 1.0 / (lam + a)
            fitted = XV @ (D.unsqueeze(-1) * VXY)
            h = XV2 @ D
            looe = (Yc - fitted) / (1.0 - h - 1.0 / n).unsqueeze(-1)
            out.append(-(looe**2).mean(0))
        return torch.stack(out)

    def _kfold_primal(self, X: Any, Yt: torch.Tensor, alphas: torch.Tensor, folds: Sequence) -> torch.Tensor:
        Xt = to_tensor(X, self.device, self.dtype)
        cv = torch.zeros((len(alphas), Yt.shape[1]), device=self.device, dtype=self.dtype)
        for tr, te in folds:
            tr_t = torch.as_tensor(tr, device=self.device)
            te_t = torch.as_tensor(te, device=self.device)
            xm, ym = Xt[tr_t].mean(0), Yt[tr_t].mean(0)
            Xtr, Xte = Xt[tr_t] - xm, Xt[te_t] - xm
            cov = Xtr.T @ Xtr
            lam, Vec = torch.linalg.eigh(0.5 * (cov + cov.T))
            lam = torch.clamp(lam, min=0.0)
            fac = _Eigen(lam=lam, L=Xte @ Vec, R=Vec.T @ (Xtr.T @ (Yt[tr_t] - ym)))
            cv += _ridge_scores(fac, alphas, Yt[te_t], ym, self.scoring)
        return cv / len(folds)

