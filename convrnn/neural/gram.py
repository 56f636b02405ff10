"""Gram matrices of model features: ``X X^T`` over all stimuli, its per-split centring, and :class:`SplitGram`,
which applies the centred train Grams of many cross-validation splits through one shared product.

Why: with more features (10^4-10^5 units) than stimuli every PLS or ridge fit can run on the n x n Gram (kernel
form), and one Gram per (layer, step) serves every split, area and estimator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .tensors import resolve_device, threads_for, to_tensor

__all__ = ["SplitGram", "center_gram", "gram"]


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
    dev, dt = resolve_device(device, dtype)
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
        block = to_tensor(X[:, start:start + chunk], dev, dt)
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
        with threads_for(self.K.numel() * V.shape[0] / self.K.shape[0] * V.shape[-1], self.K.device):
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
        with threads_for(self.K.numel() * Y_all.shape[-1], self.K.device):
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
        with threads_for(self.K.numel() * V.shape[-1], self.K.device):
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
