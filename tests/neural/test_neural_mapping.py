"""PLS and ridge on torch against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cross_decomposition import PLSRegression as SkPLS
from sklearn.linear_model import Ridge as SkRidge
from sklearn.linear_model import RidgeCV as SkRidgeCV
from sklearn.model_selection import KFold

from convrnn.neural import NAYEBI_RIDGE_ALPHAS, PLSRegression, Ridge, RidgeCV, gram, pls_kernel
from convrnn.neural.gram import SplitGram, center_gram
from convrnn.neural.ridge import kfold_indices


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.fixture
def data() -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 50))
    Y = rng.standard_normal((200, 8)) + X[:, :8] @ rng.standard_normal((8, 8))
    return dict(X=X, Y=Y, X_test=rng.standard_normal((60, 50)), rng=rng)


# ---------------------------------------------------------------------------------------------- PLS


@pytest.mark.parametrize("method", ["primal", "kernel"])
@pytest.mark.parametrize("n_components", [1, 5, 25])
def test_pls_matches_sklearn(data: dict, method: str, n_components: int) -> None:
    sk = SkPLS(n_components=n_components, scale=False).fit(data["X"], data["Y"])
    ours = PLSRegression(n_components, method=method).fit(data["X"], data["Y"])
    assert rel_err(ours.predict(data["X_test"]), sk.predict(data["X_test"])) < 1e-4
    assert ours.n_iter_ == list(sk.n_iter_)  # the power iteration is replayed, not just approximated
    np.testing.assert_allclose(ours.coef_.numpy(), sk.coef_, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["primal", "kernel"])
@pytest.mark.parametrize("n_components", [5, 10, 25])
def test_pls_near_rank_deficient(method: str, n_components: int) -> None:
    rng = np.random.default_rng(1)
    M = rng.standard_normal((5, 50))
    Z = rng.standard_normal((200, 5))
    X = Z @ M + 1e-4 * rng.standard_normal((200, 50))  # rank 5 up to 1e-4 noise
    Y = Z @ rng.standard_normal((5, 8)) + 0.1 * rng.standard_normal((200, 8))
    X_test = rng.standard_normal((60, 5)) @ M + 1e-4 * rng.standard_normal((60, 50))
    sk = SkPLS(n_components=n_components, scale=False).fit(X, Y)
    ours = PLSRegression(n_components, method=method).fit(X, Y)
    assert rel_err(ours.predict(X_test), sk.predict(X_test)) < 1e-4


def test_pls_wide_features_and_single_target() -> None:
    rng = np.random.default_rng(2)
    X = rng.standard_normal((100, 500))
    Y = X[:, :10] @ rng.standard_normal((10, 20)) + rng.standard_normal((100, 20))
    X_test = rng.standard_normal((30, 500))
    sk = SkPLS(n_components=25, scale=False).fit(X, Y)
    ours = PLSRegression(25).fit(X, Y)
    assert ours.method_ == "kernel"  # p > n picks the Gram form
    assert rel_err(ours.predict(X_test), sk.predict(X_test)) < 1e-4
    sk1 = SkPLS(n_components=10, scale=False).fit(X, Y[:, 0])
    ours1 = PLSRegression(10).fit(X, Y[:, 0])
    pred = ours1.predict(X_test)
    assert pred.shape == (30,) and rel_err(pred, sk1.predict(X_test)) < 1e-4


def test_pls_torch_input_float32_and_svd_solver(data: dict) -> None:
    sk = SkPLS(n_components=10, scale=False).fit(data["X"], data["Y"])
    ours = PLSRegression(10, dtype=torch.float32).fit(torch.as_tensor(data["X"]), torch.as_tensor(data["Y"]))
    pred = ours.predict(torch.as_tensor(data["X_test"]))
    assert isinstance(pred, torch.Tensor) and pred.dtype == torch.float32
    assert rel_err(pred.numpy(), sk.predict(data["X_test"])) < 1e-3
    # exact singular vectors = sklearn's power iteration run to full convergence
    sk_exact = SkPLS(n_components=10, scale=False, tol=1e-20, max_iter=20000).fit(data["X"], data["Y"])
    ours_svd = PLSRegression(10, solver="svd").fit(data["X"], data["Y"])
    assert rel_err(ours_svd.predict(data["X_test"]), sk_exact.predict(data["X_test"])) < 1e-6


def test_pls_constant_target_column_is_skipped_like_sklearn(data: dict) -> None:
    Y = data["Y"].copy()
    Y[:, 0] = 3.0  # constant: sklearn starts its power iteration at the first non-constant column
    sk = SkPLS(n_components=5, scale=False).fit(data["X"], Y)
    ours = PLSRegression(5, method="kernel").fit(data["X"], Y)
    assert rel_err(ours.predict(data["X_test"]), sk.predict(data["X_test"])) < 1e-6


def test_batched_split_gram_equals_separate_fits() -> None:
    """One Gram over all stimuli, re-centred per split, with two target groups = independent sklearn fits."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 300)) + 2.0
    Y = X[:, :6] @ rng.standard_normal((6, 7)) + rng.standard_normal((90, 7))
    trains = [rng.permutation(90)[:70] for _ in range(3)]
    tests = [np.setdiff1d(np.arange(90), tr) for tr in trains]
    K = gram(X)
    kop = SplitGram(K, trains)
    Yc, KYc = kop.train_products(torch.as_tensor(Y))
    groups = [slice(0, 3), slice(3, 7)]
    fit = pls_kernel(kop, [Yc[..., g] for g in groups], 8, KY=[KYc[..., g] for g in groups])
    for g, dual in zip(groups, fit.dual, strict=True):
        preds = kop.cross(tests, dual).numpy()
        for s, (tr, te) in enumerate(zip(trains, tests, strict=True)):
            sk = SkPLS(n_components=8, scale=False).fit(X[tr], Y[tr][:, g])
            expected = sk.predict(X[te]) - Y[tr][:, g].mean(0)
            assert rel_err(preds[s], expected) < 1e-6
    # the explicit per-split Gram gives the same
    Kc, Kte = center_gram(K, trains[0], tests[0])
    fit0 = pls_kernel(Kc, torch.as_tensor(Y[trains[0]] - Y[trains[0]].mean(0)), 8)
    sk0 = SkPLS(n_components=8, scale=False).fit(X[trains[0]], Y[trains[0]])
    assert rel_err((Kte @ fit0.dual).numpy() + Y[trains[0]].mean(0), sk0.predict(X[tests[0]])) < 1e-6


# ---------------------------------------------------------------------------------------------- ridge


@pytest.mark.parametrize("shape", [(200, 50), (80, 300)])
@pytest.mark.parametrize("alpha", [1e-3, 1.0, 100.0])
def test_ridge_matches_sklearn(shape: tuple[int, int], alpha: float) -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal(shape) + 3.0
    Y = X @ rng.standard_normal((shape[1], 5)) + rng.standard_normal((shape[0], 5))
    X_test = rng.standard_normal((40, shape[1]))
    sk = SkRidge(alpha=alpha).fit(X, Y)
    ours = Ridge(alpha).fit(X, Y)
    assert rel_err(ours.predict(X_test), sk.predict(X_test)) < 1e-8
    np.testing.assert_allclose(ours.intercept_.numpy(), sk.intercept_, rtol=1e-7, atol=1e-8)


def _targets(rng: np.random.Generator, X: np.ndarray) -> np.ndarray:
    """Targets with very different signal-to-noise ratios, so the best alpha differs per target."""
    W = rng.standard_normal((X.shape[1], 6))
    return X @ W * np.array([0.01, 0.1, 1, 3, 10, 30]) + rng.standard_normal((X.shape[0], 6)) * np.array(
        [1, 1, 5, 5, 20, 1])


@pytest.mark.parametrize("shape", [(200, 50), (80, 300)])
def test_ridgecv_alpha_per_target_matches_brute_force(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal(shape) + 3.0
    Y = _targets(rng, X)
    ours = RidgeCV(cv=5).fit(X, Y)
    mse = np.zeros((len(NAYEBI_RIDGE_ALPHAS), Y.shape[1]))
    for train, test in KFold(5).split(X):
        for i, alpha in enumerate(NAYEBI_RIDGE_ALPHAS):
            pred = SkRidge(alpha=alpha).fit(X[train], Y[train]).predict(X[test])
            mse[i] += ((pred - Y[test]) ** 2).mean(0) / 5
    np.testing.assert_array_equal(ours.alpha_, NAYEBI_RIDGE_ALPHAS[np.argmin(mse, axis=0)])
    np.testing.assert_allclose(-ours.cv_scores_.numpy(), mse, rtol=1e-7)
    assert len(set(ours.alpha_.tolist())) > 2  # the test is only meaningful if targets disagree
    refit = SkRidge(alpha=ours.alpha_[3]).fit(X, Y[:, 3])
    X_test = rng.standard_normal((20, shape[1]))
    np.testing.assert_allclose(ours.predict(X_test)[:, 3], refit.predict(X_test), rtol=1e-7)


@pytest.mark.parametrize("shape", [(200, 50), (80, 300)])
def test_ridgecv_leave_one_out_matches_sklearn(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(6)
    X = rng.standard_normal(shape) + 3.0
    Y = _targets(rng, X)
    X_test = rng.standard_normal((20, shape[1]))
    sk = SkRidgeCV(alphas=NAYEBI_RIDGE_ALPHAS, alpha_per_target=True).fit(X, Y)
    ours = RidgeCV(cv=None).fit(X, Y)
    np.testing.assert_array_equal(ours.alpha_, sk.alpha_)
    assert rel_err(ours.predict(X_test), sk.predict(X_test)) < 1e-8
    sk_one = SkRidgeCV(alphas=NAYEBI_RIDGE_ALPHAS).fit(X, Y)
    ours_one = RidgeCV(cv=None, alpha_per_target=False).fit(X, Y)
    assert np.all(ours_one.alpha_ == sk_one.alpha_)


def test_alpha_grid_and_folds() -> None:
    grid = NAYEBI_RIDGE_ALPHAS
    assert len(grid) == 24 and np.all(np.diff(grid) > 0)
    assert grid[0] == pytest.approx(1e-9) and grid[-1] == pytest.approx(1e5)
    for value in [1e-8, 1e-3, 1.0, 1e4, 5e-4, 5e-2, 5.0, 5e2, 5e4]:  # both geomspace families
        assert np.isclose(grid, value, rtol=1e-9).any()
    for (tr, te), (sk_tr, sk_te) in zip(kfold_indices(23, 5), KFold(5).split(np.zeros(23)), strict=True):
        np.testing.assert_array_equal(tr, sk_tr)
        np.testing.assert_array_equal(te, sk_te)
