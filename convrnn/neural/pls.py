"""PLS regression (NIPALS PLS2 with sklearn's ``PLSRegression(scale=False)`` semantics) on torch.

Why not just call scikit-learn: scoring a recurrent model means thousands of fits (areas x layers x time bins x
splits) on wide features (10^4-10^5 units), and sklearn's NIPALS makes two passes over the full design matrix per
power iteration (tens to hundreds per component). Here every fit is expressed through small matrices:

* Each component's weight vector is what sklearn's power iteration returns. That iteration only depends on the
  q x q matrix ``G = C^T C`` with ``C = X_k^T Y_k``, so it is replayed exactly (same start column, same stopping
  rule, same iteration count) from one small eigendecomposition of G (:func:`_power_iteration`). When
  ``n_features > n_samples`` the fit runs on the n x n Gram matrix ``K = X X^T`` (kernel PLS, :func:`pls_kernel`):
  scores, loadings and the deflation of Y are obtained without forming p-dim vectors, and the model comes back in
  dual form (predictions ``K_test,train @ dual``). Otherwise a primal version (:func:`pls_primal`) works with
  ``C`` (p x q).
* :func:`pls_kernel` accepts a :class:`convrnn.neural.gram.SplitGram` and fits several target sets (brain areas)
  at once, so each PLS component costs a single product with K for all splits and areas.

Heavy products run in torch on the requested device (float64 by default on CPU, for parity with sklearn); the
q-space work runs in float64 on the CPU. Features without variance across stimuli (a layer before the image
reaches it, or a feedforward layer after image offset) exhaust X's rank: the fit stops there with a
:class:`ConstantFeaturesWarning`, which callers count by class.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from convrnn.threads import torch_threads

from .gram import SplitGram, gram
from .tensors import column_mean, like_input, resolve_device, to_tensor

__all__ = ["ConstantFeaturesWarning", "PLSFit", "PLSRegression", "pls_kernel", "pls_primal"]


class ConstantFeaturesWarning(RuntimeWarning):
    """PLS stopped early because the X residual vanished (rank of X exhausted, e.g. features that are constant
    across stimuli). Expected for some (layer, bin) pairs; the fit stage counts it by this class."""


@dataclass
class PLSFit:
    """Result of a batched PLS fit on centred data. ``dual`` is set by :func:`pls_kernel` (predictions
    ``Kc_test @ dual + y_mean``), ``coef`` by :func:`pls_primal` (``Xc_test @ coef + y_mean``). Shapes follow
    the input: ``[B, n or p, q]`` or, with a group axis, ``[B, A, n or p, q]``."""

    dual: Any  # tensor, or a list of tensors for grouped fits
    coef: Any
    n_iter: Any  # [..., k] power iterations per component (0 where no component was fitted)
    n_components: Any  # [...] components fitted (fewer when the Y residual became constant)



def _power_iteration(
    G: torch.Tensor, start: torch.Tensor, max_iter: int, tol: float, solver: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay sklearn's NIPALS power iteration in q-space.

    sklearn iterates ``x_w ∝ X_k^T y_score``, ``y_score ∝ Y_k Y_k^T x_score``; with ``C = X_k^T Y_k`` the
    iterate is ``x_w_i ∝ C G^i e_j`` (``G = C^T C``, ``j`` = first non-constant Y column) and its stopping test
    ``||x_w_i - x_w_{i-1}||^2 < tol`` equals ``2 - 2 cos`` between ``G^i e_j`` and ``G^(i-1) e_j`` in the
    G inner product. With ``G = V diag(lam) V^T`` the iterates are ``V (lam^i * V^T e_j)``, so all iterations
    are evaluated at once (in chunks) from one small eigendecomposition. Returns the G-normalised ``c`` (so
    that ``w = C c`` has unit norm) and the iteration count sklearn reports. Runs in float64 NumPy on the CPU.
    """
    Gc = G.detach().to(device="cpu", dtype=torch.float64)
    B, q, _ = Gc.shape
    with torch_threads(1):
        evals_t, evecs_t = torch.linalg.eigh(0.5 * (Gc + Gc.transpose(1, 2)))
    evals, evecs = np.clip(evals_t.numpy(), 0.0, None), evecs_t.numpy()
    top = evals[:, -1:]
    n_iter = np.full(B, max_iter, dtype=np.int64)
    if solver == "svd" or q == 1:
        # exact top singular vector (sklearn algorithm="svd"); for one target sklearn stops after one pass,
        # which for q == 1 is the same direction
        coords = np.zeros((B, q))
        coords[:, -1] = 1.0
        n_iter[:] = 1
    else:
        b = evecs[np.arange(B), start.detach().cpu().numpy(), :]  # V^T e_j
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.where(evals > 0, np.log(evals / np.where(top > 0, top, 1.0)), -np.inf)
        coords = b.copy()
        prev = b
        found = np.zeros(B, dtype=bool)
        chunk = 64
        for first in range(1, max_iter, chunk):
            its = np.arange(first, min(first + chunk, max_iter))
            with np.errstate(under="ignore", invalid="ignore"):
                powers = np.exp(its[None, :, None] * log_ratio[:, None, :])  # [B, m, q]
            a = powers * b[:, None, :]
            a_prev = np.concatenate([prev[:, None, :], a[:, :-1, :]], axis=1)
            norm = np.einsum("bmq,bq,bmq->bm", a, evals, a)
            norm_prev = np.einsum("bmq,bq,bmq->bm", a_prev, evals, a_prev)
            cross = np.einsum("bmq,bq,bmq->bm", a, evals, a_prev)
            with np.errstate(divide="ignore", invalid="ignore"):
                diff2 = np.clip(2.0 - 2.0 * cross / np.sqrt(norm * norm_prev), 0.0, None)
            hit = diff2 < tol
            for k in np.flatnonzero(~found & hit.any(axis=1)):
                m = int(np.argmax(hit[k]))
                n_iter[k] = its[m] + 1
                coords[k] = a[k, m]
                found[k] = True
            rest = ~found
            coords[rest] = a[rest, -1]
            prev = a[:, -1, :]
            if found.all():
                break
    nrm2 = np.einsum("bq,bq,bq->b", coords, evals, coords)
    scale = np.where(nrm2 > 0, 1.0 / np.sqrt(np.where(nrm2 > 0, nrm2, 1.0)), 0.0)
    c = np.einsum("bij,bj->bi", evecs, coords) * scale[:, None]
    return torch.from_numpy(c).to(G.device), torch.from_numpy(n_iter).to(G.device)


def _column_checks(Yk: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn's per-component Y checks from one pass: columns to zero (all |y| < 10 eps), the start column
    (first with any |y| > eps) and whether such a column exists."""
    colmax = torch.linalg.vector_norm(Yk, ord=float("inf"), dim=-2)  # [B, q], one pass
    small = colmax < 10 * eps
    nonconst = colmax > eps
    start = torch.argmax(nonconst.to(torch.int8), dim=-1)
    return small, start, nonconst.any(dim=-1)


def _grouped(M: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[bool, bool]]:
    """Normalise to ``M [B, ., .]`` and ``Y [B, A, n, q]`` (A = fits sharing ``M``)."""
    squeeze_b = M.dim() == 2
    if squeeze_b:
        M, Y = M.unsqueeze(0), Y.unsqueeze(0)
    squeeze_a = Y.dim() == 3
    if squeeze_a:
        Y = Y.unsqueeze(1)
    return M, Y, (squeeze_b, squeeze_a)


def _ungroup(x: torch.Tensor, squeeze: tuple[bool, bool]) -> torch.Tensor:
    if squeeze[1]:
        x = x.squeeze(1)
    if squeeze[0]:
        x = x.squeeze(0)
    return x


def _bmm_grouped(M: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``M [B, r, c] @ V [B, A, c, m] -> [B, A, r, m]`` as one matmul per B, so M is streamed once for all A."""
    B, A, c, m = V.shape
    W = V.permute(0, 2, 1, 3).reshape(B, c, A * m)
    return torch.bmm(M, W).reshape(B, M.shape[1], A, m).permute(0, 2, 1, 3)


def _project_out(v: torch.Tensor, T: torch.Tensor, tt: torch.Tensor, k: int) -> torch.Tensor:
    """``(I - P) v`` with P the projector on the first k (mutually orthogonal) scores."""
    if k == 0:
        return v
    denom = torch.where(tt[..., :k] > 0, tt[..., :k], torch.ones_like(tt[..., :k]))
    coeffs = torch.einsum("banK,ban->baK", T[..., :k], v) / denom
    return v - torch.einsum("banK,baK->ban", T[..., :k], coeffs)


def _stop_check(active: torch.Tensor, tt_k: torch.Tensor, tt_first: torch.Tensor, k: int) -> torch.Tensor:
    ok = active & (tt_k > 1e-13 * torch.clamp(tt_first, min=torch.finfo(tt_k.dtype).tiny))
    if bool((active & ~ok).any()):
        warnings.warn(f"PLS: the X residual vanished at component {k} (rank of X exhausted, e.g. constant "
                      "features); stopping there", ConstantFeaturesWarning, stacklevel=3)
    return ok


class _KernelPLS:
    """State of B kernel-PLS fits with the same targets' layout (one brain area for every split).

    The deflated targets are kept implicitly, ``Y_k = Y_0 - T S^T`` and ``K Y_k = K Y_0 - (K T) S^T``, so a
    component reads ``Y_0`` and ``K Y_0`` twice each and writes nothing of size n x q.
    """

    def __init__(self, Y0: torch.Tensor, KY0: torch.Tensor, k_max: int, max_iter: int, tol: float,
                 solver: str) -> None:
        B, n, q = Y0.shape
        self.Y0, self.KY0 = Y0.clone(), KY0.clone()
        self.k_max, self.max_iter, self.tol, self.solver = k_max, max_iter, tol, solver
        self.eps = float(torch.finfo(torch.float64).eps)  # sklearn works in float64
        self.T = Y0.new_zeros((B, n, k_max))
        self.KT = Y0.new_zeros((B, n, k_max))
        self.U = Y0.new_zeros((B, n, k_max))
        self.V = Y0.new_zeros((B, n, k_max))
        self.S = Y0.new_zeros((B, q, k_max))
        self.tt = Y0.new_zeros((B, k_max))
        self.n_iter = torch.zeros((B, k_max), dtype=torch.long, device=Y0.device)
        self.active = torch.ones(B, dtype=torch.bool, device=Y0.device)
        self.G = Y0.transpose(1, 2) @ KY0
        self.trace0 = torch.diagonal(self.G, dim1=1, dim2=2).sum(-1)
        self.norm0 = (Y0 * Y0).sum(1)
        self.norm2 = self.norm0.clone()  # squared column norms of Y_k, tracked exactly in exact arithmetic
        self.zero = self.norm0 == 0  # columns known to be exactly zero (e.g. padding)
        self.tt_first: torch.Tensor | None = None

    def _explicit(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        TS = self.T[..., :k] @ self.S[..., :k].transpose(1, 2)
        KTS = self.KT[..., :k] @ self.S[..., :k].transpose(1, 2)
        return self.Y0 - TS, self.KY0 - KTS

    def _checks(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """sklearn's per-component Y checks (zero columns with all |y| < 10 eps; start at the first column with
        any |y| > eps). Tracked column norms decide them without touching Y unless a column is borderline."""
        n = self.Y0.shape[1]
        slack = 64 * self.eps * (k + 1) * self.norm0
        certain = self.zero | (self.norm2 - slack > n * (10 * self.eps) ** 2)
        if bool(certain.all()):
            live = ~self.zero
            return torch.argmax(live.to(torch.int8), dim=-1), live.any(dim=-1)
        Yk, _ = self._explicit(k)
        small, start, has = _column_checks(Yk, self.eps)
        newly = small & ~self.zero
        if bool(newly.any()):  # make those columns of Y_k exactly zero, as sklearn does
            TS = self.T[..., :k] @ self.S[..., :k].transpose(1, 2)
            KTS = self.KT[..., :k] @ self.S[..., :k].transpose(1, 2)
            sel = newly.unsqueeze(1)
            self.Y0 = torch.where(sel, TS, self.Y0)
            self.KY0 = torch.where(sel, KTS, self.KY0)
            self.zero = self.zero | newly
            keep = (~self.zero).to(self.G.dtype)
            self.G = self.G * keep.unsqueeze(-1) * keep.unsqueeze(-2)
            self.norm2 = torch.where(self.zero, torch.zeros_like(self.norm2), self.norm2)
        return start, has

    def begin(self, k: int) -> torch.Tensor:
        """Weights and score of component k; returns the score ``t`` [B, n] (zero for finished fits)."""
        start, has = self._checks(k)
        self.active = self.active & has
        if not bool(self.active.any()):
            return self.Y0.new_zeros(self.Y0.shape[:2])
        c, it = _power_iteration(self.G, start, self.max_iter, self.tol, self.solver)
        c = c.to(self.Y0.dtype)
        z = torch.einsum("bqk,bq->bk", self.S[..., :k], c)
        u = torch.einsum("bnq,bq->bn", self.Y0, c) - torch.einsum("bnk,bk->bn", self.T[..., :k], z)
        Ku = torch.einsum("bnq,bq->bn", self.KY0, c) - torch.einsum("bnk,bk->bn", self.KT[..., :k], z)
        t = Ku
        if k > 0:
            denom = torch.where(self.tt[:, :k] > 0, self.tt[:, :k], torch.ones_like(self.tt[:, :k]))
            coeffs = torch.einsum("bnk,bn->bk", self.T[..., :k], Ku) / denom
            t = Ku - torch.einsum("bnk,bk->bn", self.T[..., :k], coeffs)
        tt_k = (t * t).sum(-1)
        if self.tt_first is None:
            self.tt_first = tt_k.clone()
        self.active = _stop_check(self.active, tt_k, self.tt_first, k)
        okf = self.active.to(t.dtype).unsqueeze(-1)
        self._pending = (t * okf, tt_k, u * okf, Ku * okf, it)
        return self._pending[0]

    def finish(self, k: int, Kt: torch.Tensor) -> None:
        """Deflate with component k given ``K t``."""
        t, tt_k, u, Ku, it = self._pending
        if not bool(self.active.any()):
            return
        tt_safe = torch.where(self.active, tt_k, torch.ones_like(tt_k))
        s = torch.einsum("bnq,bn->bq", self.Y0, t) / tt_safe.unsqueeze(-1)  # y-loading (t is orthogonal to T)
        s = torch.where(self.zero, torch.zeros_like(s), s)
        a = torch.einsum("bnq,bn->bq", self.KY0, t)
        if k > 0:
            a = a - torch.einsum("bqk,bk->bq", self.S[..., :k], torch.einsum("bnk,bn->bk", self.KT[..., :k], t))
        b = (t * Kt).sum(-1)
        # Y_{k+1} = Y_k - t s^T  =>  G_{k+1} = G_k - a s^T - s a^T + (t^T K t) s s^T with a = Y_k^T K t
        self.G = self.G - a.unsqueeze(-1) * s.unsqueeze(-2) - s.unsqueeze(-1) * a.unsqueeze(-2) \
            + b[:, None, None] * s.unsqueeze(-1) * s.unsqueeze(-2)
        self.norm2 = self.norm2 - tt_safe.unsqueeze(-1) * s * s * self.active.unsqueeze(-1)
        okf = self.active.to(t.dtype)
        self.T[..., k], self.KT[..., k], self.U[..., k], self.V[..., k] = t, Kt * okf.unsqueeze(-1), u, Ku
        self.S[..., k] = s
        self.tt[:, k] = tt_k * okf
        self.n_iter[:, k] = torch.where(self.active, it, torch.zeros_like(it))
        if bool((torch.diagonal(self.G, dim1=1, dim2=2).sum(-1) < 1e-3 * self.trace0).any()):
            # the residual shrank by orders of magnitude: the update's cancellation error would dominate,
            # so recompute G exactly (n q^2) from the deflated targets
            Yk, KYk = self._explicit(k + 1)
            self.G = Yk.transpose(1, 2) @ KYk

    def dual(self) -> torch.Tensor:
        """``U (P^T W)^+ S^T``: P^T W = diag(1/tt) T^T K U = diag(1/tt) T^T V, W = X^T U, coef = X^T dual."""
        tt = self.tt
        tt_inv = torch.where(tt > 0, 1.0 / torch.where(tt > 0, tt, torch.ones_like(tt)), torch.zeros_like(tt))
        PtW = tt_inv.unsqueeze(-1) * (self.T.transpose(1, 2) @ self.V)
        return self.U @ torch.linalg.pinv(PtW) @ self.S.transpose(1, 2)


def pls_kernel(
    K: torch.Tensor | SplitGram,
    Y: torch.Tensor | Sequence[torch.Tensor],
    n_components: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    solver: str = "nipals",
    KY: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> PLSFit:
    """NIPALS PLS2 (sklearn ``PLSRegression(scale=False)``) on a centred Gram matrix.

    ``K`` is ``Xc Xc^T`` ([B,] n, n) or a :class:`SplitGram`; ``Y`` the centred targets ([B,] n, q), or a list
    of such tensors for independent fits that share K (e.g. brain areas; results are then lists too). Nothing
    p-dimensional is formed: with ``u = Y_k c`` the weight is ``w = X_k^T u``, the score ``t = X_k w = (I - P)
    K u`` (P projects on earlier scores; ``Y_k`` is already orthogonal to them) and Y is deflated with ``t``.
    The q x q matrix ``G = Y_k^T K Y_k`` that drives the power iteration is updated in O(n q). Per component:
    one product with K for all fits. Returns dual coefficients: predictions are ``Kc_test @ dual + y_mean``
    and the primal coefficients are ``Xc^T dual``. ``KY`` may pass precomputed ``K @ Y`` (see
    :meth:`SplitGram.train_products`).
    """
    grouped = not isinstance(Y, torch.Tensor)
    Ys = list(Y) if grouped else [Y]
    KYs = [None] * len(Ys) if KY is None else (list(KY) if grouped else [KY])
    squeeze = not isinstance(K, SplitGram) and K.dim() == 2
    if squeeze:
        K = K.unsqueeze(0)
        Ys = [y.unsqueeze(0) for y in Ys]
        KYs = [None if v is None else v.unsqueeze(0) for v in KYs]
    kmul = K if isinstance(K, SplitGram) else partial(torch.bmm, K)
    KYs = [kmul(y) if v is None else v for y, v in zip(Ys, KYs, strict=True)]
    fits = [_KernelPLS(y, v, int(n_components), max_iter, tol, solver) for y, v in zip(Ys, KYs, strict=True)]
    one_thread = Ys[0].device.type == "cpu"  # a fresh context per block: torch_threads is not reusable

    def small_ops() -> contextlib.AbstractContextManager:
        return torch_threads(1) if one_thread else contextlib.nullcontext()

    for k in range(int(n_components)):
        with small_ops():  # O(n q) bookkeeping: threads only add hand-off latency (see tensors.threads_for)
            ts = [f.begin(k) for f in fits]
        if not any(bool(f.active.any()) for f in fits):
            break
        Kt = kmul(torch.stack(ts, -1))  # one pass over K for every fit, multi-threaded
        with small_ops():
            for a, f in enumerate(fits):
                f.finish(k, Kt[..., a])
    with small_ops():
        duals = [f.dual() for f in fits]
    n_iter = [f.n_iter for f in fits]
    n_fit = [(f.tt > 0).sum(-1) for f in fits]
    if squeeze:
        duals, n_iter, n_fit = [d[0] for d in duals], [i[0] for i in n_iter], [c[0] for c in n_fit]
    if not grouped:
        return PLSFit(dual=duals[0], coef=None, n_iter=n_iter[0], n_components=n_fit[0])
    return PLSFit(dual=duals, coef=None, n_iter=n_iter, n_components=n_fit)


def pls_primal(
    X: torch.Tensor,
    Y: torch.Tensor,
    n_components: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    solver: str = "nipals",
) -> PLSFit:
    """NIPALS PLS2 (sklearn ``PLSRegression(scale=False)``) on centred ``X`` ([B,] n, p) and ``Y`` ([B,] n, q)
    or ``[B, A, n, q]`` (A fits sharing X).

    X is never deflated: ``X_k = (I - P) X``, so ``t = (I - P)(X w)`` and ``C_k = X^T Y_k`` is updated with the
    x-loading. The power iteration runs on ``G = C^T C`` (q x q). Two passes over X per component.
    """
    X, Y, squeeze = _grouped(X, Y)
    B, A, n, q = Y.shape
    p = X.shape[-1]
    dtype = Y.dtype
    eps = float(torch.finfo(torch.float64).eps)
    k_max = int(n_components)
    Xt_ = X.transpose(-1, -2)
    Yk = Y.clone()
    C = _bmm_grouped(Xt_, Yk)  # [B, A, p, q]
    W = Y.new_zeros((B, A, p, k_max))
    P = Y.new_zeros((B, A, p, k_max))
    T = Y.new_zeros((B, A, n, k_max))
    tt = Y.new_zeros((B, A, k_max))
    S = Y.new_zeros((B, A, q, k_max))
    n_iter = torch.zeros((B, A, k_max), dtype=torch.long, device=Y.device)
    active = torch.ones((B, A), dtype=torch.bool, device=Y.device)
    tt_first = None
    for k in range(k_max):
        small, start, has = _column_checks(Yk, eps)
        if bool(small.any()):
            keep = (~small).to(dtype)
            Yk = Yk * keep.unsqueeze(-2)
            C = C * keep.unsqueeze(-2)
        active = active & has
        if not bool(active.any()):
            break
        G = C.transpose(-1, -2) @ C  # exact, p q^2: cheap in the primal regime (p <= n)
        c, it = _power_iteration(G.reshape(B * A, q, q), start.reshape(-1), max_iter, tol, solver)
        c, it = c.to(dtype).reshape(B, A, q), it.reshape(B, A)
        w = torch.einsum("bapq,baq->bap", C, c)
        t = _project_out(_bmm_grouped(X, w.unsqueeze(-1)).squeeze(-1), T, tt, k)
        tt_k = (t * t).sum(-1)
        if tt_first is None:
            tt_first = tt_k.clone()
        active = _stop_check(active, tt_k, tt_first, k)
        okf = active.to(dtype)
        t = t * okf.unsqueeze(-1)
        tt_safe = torch.where(active, tt_k, torch.ones_like(tt_k))
        g = _bmm_grouped(Xt_, t.unsqueeze(-1)).squeeze(-1)  # X_k^T t = X^T t (t is orthogonal to earlier scores)
        s = torch.einsum("banq,ban->baq", Yk, t) / tt_safe.unsqueeze(-1)
        Yk = Yk - t.unsqueeze(-1) * s.unsqueeze(-2)
        C = C - g.unsqueeze(-1) * s.unsqueeze(-2)
        W[..., k] = w * okf.unsqueeze(-1)
        P[..., k] = g / tt_safe.unsqueeze(-1)
        T[..., k] = t
        tt[..., k] = tt_k * okf
        S[..., k] = s
        n_iter[..., k] = torch.where(active, it, torch.zeros_like(it))
    n_fit = (tt > 0).sum(-1)
    rotations = W @ torch.linalg.pinv(P.transpose(-1, -2) @ W)
    coef = rotations @ S.transpose(-1, -2)
    return PLSFit(dual=None, coef=_ungroup(coef, squeeze), n_iter=_ungroup(n_iter, squeeze),
                  n_components=_ungroup(n_fit, squeeze))


class PLSRegression:
    """PLS regression with sklearn's ``PLSRegression(scale=False)`` semantics, computed on torch.

    Why: Brain-Score's standard map (25 components, NIPALS, centred, unscaled), but fast enough to run per
    (area, layer, time bin, split). ``method="auto"`` uses the Gram (kernel) form when ``n_features >
    n_samples`` and the primal form otherwise; both reproduce sklearn's power iteration exactly (see module
    docstring). ``solver="svd"`` uses the exact top singular vector instead (sklearn's ``algorithm="svd"``).
    Accepts numpy or torch input; ``predict`` returns the same kind as its input.
    """

    def __init__(
        self,
        n_components: int = 25,
        *,
        max_iter: int = 500,
        tol: float = 1e-6,
        solver: str = "nipals",
        method: str = "auto",
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        chunk: int = 8192,
    ) -> None:
        if solver not in ("nipals", "svd"):
            raise ValueError(f"solver must be 'nipals' or 'svd', got {solver!r}")
        if method not in ("auto", "kernel", "primal"):
            raise ValueError(f"method must be 'auto', 'kernel' or 'primal', got {method!r}")
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.method = method
        self.device, self.dtype = resolve_device(device, dtype)
        self.chunk = chunk

    def fit(self, X: Any, Y: Any) -> PLSRegression:
        """Fit on ``X`` (n, p) and ``Y`` (n, q) or (n,)."""
        Yt = to_tensor(Y, self.device, self.dtype)
        self._predict_1d = Yt.dim() == 1
        if self._predict_1d:
            Yt = Yt.unsqueeze(-1)
        n, p = X.shape
        if self.n_components > min(n, p):
            raise ValueError(f"n_components={self.n_components} exceeds min(n_samples, n_features)={min(n, p)}")
        self.y_mean_ = Yt.mean(0)
        Yc = Yt - self.y_mean_
        method = self.method
        if method == "auto":
            method = "kernel" if p > n else "primal"
        self.method_ = method
        x_mean = column_mean(X, self.device, self.dtype)
        self.x_mean_ = x_mean
        if method == "kernel":
            K = gram(X, center=True, chunk=self.chunk, device=self.device, dtype=self.dtype)
            fit = pls_kernel(K, Yc, self.n_components, max_iter=self.max_iter, tol=self.tol, solver=self.solver)
            coef = torch.zeros((p, Yc.shape[1]), device=self.device, dtype=self.dtype)
            for start in range(0, p, self.chunk):
                block = to_tensor(X[:, start:start + self.chunk], self.device, self.dtype)
                block = block - x_mean[start:start + self.chunk]
                coef[start:start + self.chunk] = block.T @ fit.dual
        else:
            Xc = to_tensor(X, self.device, self.dtype) - x_mean
            fit = pls_primal(Xc, Yc, self.n_components, max_iter=self.max_iter, tol=self.tol, solver=self.solver)
            coef = fit.coef
        self.coef_ = coef.T.contiguous()  # sklearn layout: (n_targets, n_features)
        self.intercept_ = self.y_mean_
        self.n_iter_ = [int(v) for v in fit.n_iter[: int(fit.n_components)]]
        self.n_components_ = int(fit.n_components)
        return self

    def predict(self, X: Any) -> Any:
        """Predict ``(X - x_mean) @ coef_.T + intercept_``."""
        Xt = to_tensor(X, self.device, self.dtype)
        out = (Xt - self.x_mean_) @ self.coef_.T + self.intercept_
        if self._predict_1d:
            out = out[:, 0]
        return like_input(out, X)
