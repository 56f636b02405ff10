"""Linear maps from model features to neural responses: PLS and ridge, on torch.

Why not just call scikit-learn: scoring a recurrent model means thousands of fits (areas x layers x time bins x
splits) on wide features (10^4-10^5 units), and sklearn's NIPALS makes two passes over the full design matrix per
power iteration (tens to hundreds per component). Here every fit is expressed through small matrices:

* **PLS (NIPALS PLS2, sklearn semantics).** Each component's weight vector is what sklearn's power iteration
  returns. That iteration only depends on the q x q matrix ``G = C^T C`` with ``C = X_k^T Y_k``, so it is
  replayed exactly (same start column, same stopping rule, same iteration count) from one small
  eigendecomposition of G (:func:`_power_iteration`). When ``n_features > n_samples`` the fit runs on the n x n
  Gram matrix ``K = X X^T`` (kernel PLS, :func:`pls_kernel`): scores, loadings and the deflation of Y are obtained
  without forming p-dim vectors, and the model comes back in dual form (predictions ``K_test,train @ dual``).
  Otherwise a primal version (:func:`pls_primal`) works with ``C`` (p x q).
* **Sharing across fits.** :class:`SplitGram` applies the train-centred Grams of many cross-validation splits
  (and of several time bins) through one Gram over all stimuli, and :func:`pls_kernel` fits several target sets
  (brain areas) at once, so each PLS component costs a single product with K for all of them.
* **Ridge.** One eigendecomposition (of ``X X^T`` when n < p, of ``X^T X`` otherwise) per fold serves every
  alpha and every target (the approach of himalaya, re-implemented here), and alpha is chosen per target;
  ``cv=None`` gives sklearn's exact leave-one-out.

Heavy products run in torch on the requested device (float64 by default on CPU, for parity with sklearn); the
q-space work runs in float64 on the CPU.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

__all__ = [
    "BRAINSCORE_RIDGE_ALPHAS",
    "NAYEBI_RIDGE_ALPHAS",
    "PLSRegression",
    "PLSFit",
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


# ----------------------------------------------------------------------------------------------------------------
# tensor helpers


def _resolve(device: str | torch.device | None, dtype: torch.dtype | str | None) -> tuple[torch.device, torch.dtype]:
    """Pick device and dtype: float64 on CPU (parity with sklearn), float32 on accelerators, unless told."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.float64 if dev.type == "cpu" else torch.float32
    return dev, dtype


def _to_tensor(x: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    arr = np.asarray(x)
    if not arr.flags.writeable:  # e.g. a read-only memmap: torch must not alias it
        arr = np.array(arr)
    return torch.as_tensor(arr, device=device).to(dtype)


def _like_input(y: torch.Tensor, reference: Any) -> Any:
    """Return numpy when the caller gave numpy (sklearn style), a tensor when the caller gave a tensor."""
    if isinstance(reference, torch.Tensor):
        return y
    return y.detach().cpu().numpy()


def gram(
    X: Any,
    *,
    center: bool = True,
    chunk: int = 8192,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``(X - mean) (X - mean)^T`` accumulated over feature chunks.

    Why chunks: a layer can have 10^5 units; streaming columns (e.g. from a memmap) keeps memory at
    ``n x chunk``. Only the lower block triangle is multiplied (4 row blocks: 10 of 16 block products), as the
    result is symmetric. Centering on all rows first keeps later per-split re-centering (:func:`center_gram`)
    free of cancellation, which matters when the Gram is accumulated in float32 for speed.
    """
    dev, dt = _resolve(device, dtype)
    out_dt = out_dtype or dt
    n, p = X.shape
    n_blocks = 4 if n >= 1024 else 1
    edges = np.linspace(0, n, n_blocks + 1).astype(int)
    rows = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    acc = {(i, j): torch.zeros((rows[i].stop - rows[i].start, rows[j].stop - rows[j].start), device=dev, dtype=dt)
           for i in range(n_blocks) for j in range(i + 1)}
    if center:
        if isinstance(X, torch.Tensor):
            mean = X.mean(0, dtype=torch.float64)
        else:
            mean = torch.as_tensor(np.asarray(X).mean(axis=0, dtype=np.float64))
    for start in range(0, p, chunk):
        block = _to_tensor(X[:, start:start + chunk], dev, dt)
        if center:
            block = block - mean[start:start + chunk].to(device=dev, dtype=dt)
        for (i, j), out in acc.items():
            out.addmm_(block[rows[i]], block[rows[j]].T)
    K = torch.empty((n, n), device=dev, dtype=out_dt)
    for (i, j), out in acc.items():
        K[rows[i], rows[j]] = out
        if i != j:
            K[rows[j], rows[i]] = out.T
    return K


def center_gram(
    K: torch.Tensor, train: Any, test: Any | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Train-centred kernels from a Gram over all stimuli, for one split.

    ``K`` is ``X X^T`` over all rows (any common offset removed, see :func:`gram`). Returns
    ``(Xtr - m)(Xtr - m)^T`` and ``(Xte - m)(Xtr - m)^T`` with ``m`` the train mean, so one Gram per
    (layer, step) serves every cross-validation split. Works with a leading batch dim on ``K``.
    """
    tr = torch.as_tensor(np.asarray(train), device=K.device, dtype=torch.long)
    Ktr = K[..., tr[:, None], tr]
    r = Ktr.mean(-1)
    g = r.mean(-1, keepdim=True)
    Kc = Ktr - r.unsqueeze(-1) - r.unsqueeze(-2) + g.unsqueeze(-1)
    Kc = 0.5 * (Kc + Kc.transpose(-1, -2))
    if test is None:
        return Kc, None
    te = torch.as_tensor(np.asarray(test), device=K.device, dtype=torch.long)
    Kte = K[..., te[:, None], tr]
    Kte_c = Kte - Kte.mean(-1, keepdim=True) - r.unsqueeze(-2) + g.unsqueeze(-1)
    return Kc, Kte_c


class SplitGram:
    """The centred train Gram matrices of several splits, applied through one Gram over all stimuli.

    Why: with 10+ cross-validation splits, materialising each ``(X_tr - m)(X_tr - m)^T`` costs a copy of an
    n x n matrix per split, and multiplying by each one streams it from memory once per PLS component. Here the
    products ``Kc_s V_s`` of all splits s are one matmul with the shared ``K_all``: embed ``V_s`` at the split's
    train rows, multiply, gather the train rows and re-centre. ``K_all`` is ``X X^T`` over all stimuli, with
    any common offset removed (see :func:`gram`); it may carry a leading dim G (e.g. several time bins), in
    which case the fits are ordered (g, split) and number ``G * len(trains)``.
    """

    def __init__(self, K_all: torch.Tensor, trains: Sequence[Any]) -> None:
        idx = [torch.as_tensor(np.asarray(t), device=K_all.device, dtype=torch.long) for t in trains]
        if len({len(t) for t in idx}) != 1:
            raise ValueError("SplitGram: all splits need the same number of training stimuli")
        self.K = K_all if K_all.dim() == 3 else K_all.unsqueeze(0)  # [G, N, N]
        self.idx = torch.stack(idx)  # [B, n_tr]
        self._cols = torch.arange(len(idx), device=K_all.device).unsqueeze(1)

    @property
    def n_fits(self) -> int:
        return self.K.shape[0] * self.idx.shape[0]

    def _apply(self, V: torch.Tensor) -> torch.Tensor:
        """``K_all @ embed(V - mean)``: [G*B, n_tr, m] -> [G, N, B, m]."""
        G, N = self.K.shape[:2]
        B, n = self.idx.shape
        m = V.shape[-1]
        W = V.reshape(G, B, n, m)
        E = V.new_zeros((G, N, B, m))
        E[:, self.idx, self._cols] = W - W.mean(2, keepdim=True)
        return torch.bmm(self.K, E.reshape(G, N, B * m)).reshape(G, N, B, m)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        """``Kc_s @ V[s]`` for ``V`` [G*B, n_tr, m] -> [G*B, n_tr, m]."""
        with _threads_for(self.K.numel() * V.shape[0] / self.K.shape[0] * V.shape[-1], self.K.device):
            R = self._apply(V)[:, self.idx, self._cols]  # [G, B, n, m]
            return (R - R.mean(2, keepdim=True)).reshape(V.shape)

    def train_products(self, Y_all: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train-centred targets of every split and their products with the split's Gram.

        ``Y_all`` [N, q] (or [G, N, q]) holds the targets of all stimuli. Returns ``Yc`` [G*B, n_tr, q] (train
        rows of split s, centred with its train mean) and ``Kc_s @ Yc_s``. Uses ``K D_s Y = K Y - K[:, te]
        Y[te]`` (``D_s`` keeps the train rows) so the big product is shared: O(N^2 q + B N n_te q) instead of
        O(B N^2 q) per g.
        """
        Y_all = Y_all if Y_all.dim() == 3 else Y_all.unsqueeze(0).expand(self.K.shape[0], -1, -1)
        with _threads_for(self.K.numel() * Y_all.shape[-1], self.K.device):
            return self._train_products(Y_all)

    def _train_products(self, Y_all: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        G, N, q = Y_all.shape
        B, n = self.idx.shape
        held_out = torch.ones((B, N), dtype=torch.bool, device=self.K.device)
        held_out[self._cols, self.idx] = False
        te = torch.nonzero(held_out)[:, 1].reshape(B, N - n)
        KY_all = torch.bmm(self.K, Y_all)
        rowsum = self.K.sum(2)  # [G, N]
        Yc, KYc = [], []
        for s in range(B):
            y_mean = Y_all[:, self.idx[s]].mean(1, keepdim=True)  # [G, 1, q]
            K_te = self.K[:, :, te[s]]
            M = KY_all - torch.bmm(K_te, Y_all[:, te[s]])  # K D_s Y
            M = M - (rowsum - K_te.sum(2)).unsqueeze(2) * y_mean  # K D_s (Y - ybar_s)
            R = M[:, self.idx[s]]
            KYc.append(R - R.mean(1, keepdim=True))
            Yc.append(Y_all[:, self.idx[s]] - y_mean)
        return torch.stack(Yc, 1).reshape(G * B, n, q), torch.stack(KYc, 1).reshape(G * B, n, q)

    def cross(self, tests: Sequence[Any], V: torch.Tensor) -> torch.Tensor:
        """``Kc_test,train @ V[s]`` (test rows centred with the train mean) for ``V`` [G*B, n_tr, m].

        Only the test rows are multiplied: ``Kc_te,tr Vc = K_te,tr Vc - 1 (kbar^T Vc)`` with ``Vc`` the
        column-centred V and ``kbar`` the train-row means of ``K_tr,tr``.
        """
        with _threads_for(self.K.numel() * V.shape[-1], self.K.device):
            return self._cross(tests, V)

    def _cross(self, tests: Sequence[Any], V: torch.Tensor) -> torch.Tensor:
        G, N = self.K.shape[:2]
        B, n = self.idx.shape
        W = V.reshape(G, B, n, V.shape[-1])
        W = W - W.mean(2, keepdim=True)
        colsum = self.K.sum(1)  # [G, N]
        out = []
        for s, test in enumerate(tests):
            te = torch.as_tensor(np.asarray(test), device=self.K.device, dtype=torch.long)
            tr = self.idx[s]
            K_te = self.K[:, te]  # [G, n_te, N]
            kbar = (colsum - self.K[:, :, te].sum(2))[:, tr] / n  # mean over train rows of K[tr, j], j in tr
            pred = torch.bmm(K_te[:, :, tr], W[:, s]) - torch.bmm(kbar.unsqueeze(1), W[:, s])
            out.append(pred)
        return torch.stack(out, 1).reshape(G * B, -1, V.shape[-1])


# ----------------------------------------------------------------------------------------------------------------
# PLS


@dataclass
class PLSFit:
    """Result of a batched PLS fit on centred data. ``dual`` is set by :func:`pls_kernel` (predictions
    ``Kc_test @ dual + y_mean``), ``coef`` by :func:`pls_primal` (``Xc_test @ coef + y_mean``). Shapes follow
    the input: ``[B, n or p, q]`` or, with a group axis, ``[B, A, n or p, q]``."""

    dual: Any  # tensor, or a list of tensors for grouped fits
    coef: Any
    n_iter: Any  # [..., k] power iterations per component (0 where no component was fitted)
    n_components: Any  # [...] components fitted (fewer when the Y residual became constant)


class _single_thread:
    """Run small CPU tensor work on one thread (re-entrant).

    Why: q x q eigendecompositions and O(n q) updates gain little from threads, and on a loaded machine the
    OpenMP hand-off of every small call costs more than the call itself (measured on 2 busy cores: 100 ms vs
    5 ms for a 168 x 168 ``eigh``; 3.6 ms vs 0.2 ms for a [12, 576, 42] batched contraction). Big products
    (Gram matrices, K @ V) stay multi-threaded.
    """

    def __enter__(self) -> None:
        self._threads = torch.get_num_threads()
        if self._threads != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self._threads != 1:
            torch.set_num_threads(self._threads)


def _threads_for(work: float, device: torch.device) -> contextlib.AbstractContextManager:
    """One thread for CPU ops under ~3e7 multiply-adds (about a millisecond), all threads above."""
    if device.type == "cpu" and work < 3e7:
        return _single_thread()
    return contextlib.nullcontext()


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
    with _single_thread():
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
                      "features); stopping there", RuntimeWarning, stacklevel=3)
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
    small_ops = _single_thread() if Ys[0].device.type == "cpu" else contextlib.nullcontext()
    for k in range(int(n_components)):
        with small_ops:  # O(n q) bookkeeping: threads only add hand-off latency (see _single_thread)
            ts = [f.begin(k) for f in fits]
        if not any(bool(f.active.any()) for f in fits):
            break
        Kt = kmul(torch.stack(ts, -1))  # one pass over K for every fit, multi-threaded
        with small_ops:
            for a, f in enumerate(fits):
                f.finish(k, Kt[..., a])
    with small_ops:
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
        self.device, self.dtype = _resolve(device, dtype)
        self.chunk = chunk

    def fit(self, X: Any, Y: Any) -> PLSRegression:
        """Fit on ``X`` (n, p) and ``Y`` (n, q) or (n,)."""
        Yt = _to_tensor(Y, self.device, self.dtype)
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
        x_mean = _column_mean(X, self.device, self.dtype)
        self.x_mean_ = x_mean
        if method == "kernel":
            K = gram(X, center=True, chunk=self.chunk, device=self.device, dtype=self.dtype)
            fit = pls_kernel(K, Yc, self.n_components, max_iter=self.max_iter, tol=self.tol, solver=self.solver)
            coef = torch.zeros((p, Yc.shape[1]), device=self.device, dtype=self.dtype)
            for start in range(0, p, self.chunk):
                block = _to_tensor(X[:, start:start + self.chunk], self.device, self.dtype)
                block = block - x_mean[start:start + self.chunk]
                coef[start:start + self.chunk] = block.T @ fit.dual
        else:
            Xc = _to_tensor(X, self.device, self.dtype) - x_mean
            fit = pls_primal(Xc, Yc, self.n_components, max_iter=self.max_iter, tol=self.tol, solver=self.solver)
            coef = fit.coef
        self.coef_ = coef.T.contiguous()  # sklearn layout: (n_targets, n_features)
        self.intercept_ = self.y_mean_
        self.n_iter_ = [int(v) for v in fit.n_iter[: int(fit.n_components)]]
        self.n_components_ = int(fit.n_components)
        return self

    def predict(self, X: Any) -> Any:
        """Predict ``(X - x_mean) @ coef_.T + intercept_``."""
        Xt = _to_tensor(X, self.device, self.dtype)
        out = (Xt - self.x_mean_) @ self.coef_.T + self.intercept_
        if self._predict_1d:
            out = out[:, 0]
        return _like_input(out, X)


def _column_mean(X: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype).mean(0)
    return torch.as_tensor(np.asarray(X).mean(axis=0, dtype=np.float64), device=device).to(dtype)


# ----------------------------------------------------------------------------------------------------------------
# Ridge


def kfold_indices(n: int, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Unshuffled K-fold (sklearn ``KFold(n_splits)``: the first ``n % k`` folds get one extra sample)."""
    if n_splits < 2 or n_splits > n:
        raise ValueError(f"cv={n_splits} folds need 2 <= folds <= n_samples={n}")
    sizes = np.full(n_splits, n // n_splits, dtype=int)
    sizes[: n % n_splits] += 1
    folds, start = [], 0
    idx = np.arange(n)
    for size in sizes:
        test = idx[start:start + size]
        train = np.concatenate([idx[:start], idx[start + size:]])
        folds.append((train, test))
        start += size
    return folds


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
        self.device, self.dtype = _resolve(device, dtype)
        self.chunk = chunk

    def _prepare(self, X: Any, Y: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        Yt = _to_tensor(Y, self.device, self.dtype)
        self._predict_1d = Yt.dim() == 1
        if self._predict_1d:
            Yt = Yt.unsqueeze(-1)
        if self.fit_intercept:
            x_mean = _column_mean(X, self.device, self.dtype)
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
                block = _to_tensor(X[:, start:start + self.chunk], self.device, self.dtype)
                block = block - self.x_mean_[start:start + self.chunk]
                coef[start:start + self.chunk] = block.T @ dual
            return coef
        Xc = _to_tensor(X, self.device, self.dtype) - self.x_mean_
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
        Xt = _to_tensor(X, self.device, self.dtype)
        out = Xt @ self.coef_.T + self.intercept_
        if self._predict_1d:
            out = out[:, 0]
        return _like_input(out, X)


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
        Xc = _to_tensor(X, self.device, self.dtype) - self.x_mean_
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
        Xt = _to_tensor(X, self.device, self.dtype)
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

