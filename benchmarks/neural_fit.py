"""Benchmark: fitting model features to HvM-sized time-binned recordings, ours vs scikit-learn.

Problem (defaults): 3,200 images (64 objects x 50), 256 sites (88 V4 + 168 IT), 19 bins of 10 ms (70-260 ms),
a 26-step model with three layers of 10^4, 3 x 10^4 and 6 x 10^4 units (``--layers`` to change). Features are
synthetic and low-rank: ``relu(Z_t A_layer)`` with a 48-dim latent ``Z_t`` that drifts over model steps. V4 sites
are a known linear map of the first layer's latent, IT sites of the last layer's, plus trial noise
(8 repetitions, reliability ~0.8).

Ours: :func:`convrnn.neural.score_model` with PLS (25 components) on 10 Brain-Score splits (+2 layer-selection
splits and the split-half ceilings), every layer x bin x area. Brain-Score's way: sklearn ``PLSRegression(25,
scale=False)`` fit per (layer, bin, split, area). sklearn is far too slow to run everywhere (minutes per fit), so
it runs on a subset (by default 1 bin x 1 split x the V4 area of the smallest layer; --quick: 2 bins x both
areas) and is extrapolated linearly: time per fit x
number of fits, scaled by n_features per layer (its NIPALS passes cost O(n p) each; this assumes equal iteration
counts across layers). Scores are compared on the fits both ran. RidgeCV (ours, leave-one-out, alpha per target,
24-value grid) is compared with sklearn ``RidgeCV(alpha_per_target=True)`` on the same subset, without
extrapolation.

Run:  python benchmarks/neural_fit.py            (full size; ~10 min on 2 CPU cores)
      python benchmarks/neural_fit.py --quick    (smoke size)
      python benchmarks/neural_fit.py --device cuda
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.cross_decomposition import PLSRegression as SkPLS
from sklearn.linear_model import RidgeCV as SkRidgeCV

from convrnn.neural import NAYEBI_RIDGE_ALPHAS, TrialData, make_splits, score_model, selection_splits


class SyntheticHvM:
    """A :class:`convrnn.neural.FeatureSource` that synthesises features on request (deterministic per layer).

    Why on request: 26 steps x 1.4e5 units x 3,200 images would be ~47 GB; the scoring loop reads each
    (layer, step) once. ``gen_seconds`` accumulates the synthesis time so it can be excluded from timings.
    """

    def __init__(self, n_stimuli: int, layer_sizes: Sequence[int], n_steps: int, rank: int = 48,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_steps = n_steps
        self.names = [f"layer{i + 1}" for i in range(len(layer_sizes))]
        self.latent_a = [rng.standard_normal((n_stimuli, rank)).astype(np.float32) for _ in layer_sizes]
        self.latent_b = [rng.standard_normal((n_stimuli, rank)).astype(np.float32) for _ in layer_sizes]
        self.maps = [(rng.standard_normal((rank, p)) / np.sqrt(rank)).astype(np.float32) for p in layer_sizes]
        self.ids = [f"hvm_{i:05d}" for i in range(n_stimuli)]
        self.gen_seconds = 0.0

    def latent(self, layer: int, step: int) -> np.ndarray:
        theta = 0.5 * np.pi * step / max(self.n_steps - 1, 1)
        return (np.cos(theta) * self.latent_a[layer] + np.sin(theta) * self.latent_b[layer]).astype(np.float32)

    @property
    def stimulus_ids(self) -> Sequence[str]:
        return self.ids

    @property
    def layers(self) -> Sequence[str]:
        return self.names

    def steps(self, layer: str) -> Sequence[int]:
        return list(range(self.n_steps))

    def get(self, layer: str, step: int) -> np.ndarray:
        start = time.perf_counter()
        i = self.names.index(layer)
        out = torch.from_numpy(self.latent(i, step)) @ torch.from_numpy(self.maps[i])
        out = torch.relu_(out).numpy()
        self.gen_seconds += time.perf_counter() - start
        return out


def make_recordings(source: SyntheticHvM, n_v4: int, n_it: int, bins: np.ndarray, reps: int,
                    reliability: float = 0.8, seed: int = 1) -> TrialData:
    """Sites = fixed linear maps of a layer's latent at the bin's step, unit variance, plus trial noise."""
    rng = np.random.default_rng(seed)
    n = len(source.ids)
    steps = [int(start // 10) for start in bins[:, 0]]
    drivers = [0] * n_v4 + [len(source.names) - 1] * n_it  # V4: first layer, IT: last layer
    rank = source.latent_a[0].shape[1]
    B = rng.standard_normal((rank, n_v4 + n_it)).astype(np.float32)
    signal = np.empty((n, n_v4 + n_it, len(bins)), dtype=np.float32)
    for b, step in enumerate(steps):
        for layer in set(drivers):
            cols = [j for j, d in enumerate(drivers) if d == layer]
            signal[:, cols, b] = source.latent(layer, step) @ B[:, cols]
    signal = (signal - signal.mean(0)) / signal.std(0)
    noise_var = reps * (1.0 / reliability - 1.0)
    trials = signal[None] + np.sqrt(noise_var) * rng.standard_normal((reps,) + signal.shape).astype(np.float32)
    objects = np.repeat([f"obj{i:02d}" for i in range(64)], int(np.ceil(n / 64)))[:n]
    stimuli = pd.DataFrame({"stimulus_id": source.ids, "object_name": objects})
    neuroids = pd.DataFrame({"neuroid_id": [f"site{i:03d}" for i in range(n_v4 + n_it)],
                             "region": ["V4"] * n_v4 + ["IT"] * n_it})
    return TrialData(trials=trials, stimulus_ids=np.asarray(source.ids), stimuli=stimuli, neuroids=neuroids,
                     bins=bins, n_missing=0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_r(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    from convrnn.neural import pearson_r

    r = pearson_r(pred, target, axis=0)
    return float(np.nanmedian(r)), r


def compare_himalaya(source: SyntheticHvM, layer: str, bins: np.ndarray, n_bins: int, splits: Sequence,
                     Y: np.ndarray, areas: dict[str, np.ndarray], device: str, dtype: torch.dtype | None,
                     primal: bool = False) -> None:
    """Our ridge vs himalaya's ``RidgeCV`` and ``KernelRidgeCV`` on the same fits: 5-fold CV (unshuffled KFold,
    himalaya's default), one alpha per target from the 24-value grid, intercept fitted, float64 numpy backend for
    himalaya. Ours runs twice: the estimator class (one fit at a time, like himalaya) and ``score_model``'s fit stage
    (Gram and eigendecompositions shared across areas). himalaya's primal ``RidgeCV`` runs only when
    ``n_train >= n_features`` or with ``primal=True``."""
    try:
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV as HimKernelRidgeCV
        from himalaya.ridge import RidgeCV as HimRidgeCV
    except ImportError:
        print("\nhimalaya is not installed (pip install himalaya): skipping that comparison")
        return
    from convrnn.neural import RidgeCV

    set_backend("numpy")
    models = {
        "ours RidgeCV": lambda: RidgeCV(NAYEBI_RIDGE_ALPHAS, cv=5, device=device, dtype=dtype),
        "himalaya RidgeCV": lambda: HimRidgeCV(alphas=NAYEBI_RIDGE_ALPHAS, cv=5, fit_intercept=True),
        "himalaya KernelRidgeCV": lambda: HimKernelRidgeCV(alphas=NAYEBI_RIDGE_ALPHAS, kernel="linear", cv=5,
                                                           fit_intercept=True),
    }
    n_train, n_features = len(splits[0].train), source.maps[source.names.index(layer)].shape[1]
    if n_train < n_features and not primal:
        del models["himalaya RidgeCV"]
        print(f"\n(himalaya's primal RidgeCV skipped: {n_train} train images < {n_features} features; "
              "--himalaya-primal runs it)")
    seconds = dict.fromkeys(models, 0.0)
    medians: dict[str, list[float]] = {name: [] for name in models}
    for b in range(n_bins):
        X = source.get(layer, int(bins[b, 0] // 10)).astype(np.float64)
        for split in splits:
            for cols in areas.values():
                y_tr, y_te = Y[split.train][:, cols, b].astype(np.float64), Y[split.test][:, cols, b]
                for name, make in models.items():
                    t0 = time.perf_counter()
                    pred = np.asarray(make().fit(X[split.train], y_tr).predict(X[split.test]))
                    seconds[name] += time.perf_counter() - t0
                    medians[name].append(median_r(pred, y_te)[0])
    n = len(medians["ours RidgeCV"])
    print(f"\nridge vs himalaya (5-fold CV, alpha per target, 24 alphas, float64, layer {layer}, "
          f"{X.shape[1]} units, {len(splits[0].train)} train images) on {n} fit(s):")
    for name in models:
        delta = max(abs(a - b) for a, b in zip(medians[name], medians["ours RidgeCV"], strict=True))
        print(f"  {name:24s} {seconds[name]:7.2f} s   median r {np.mean(medians[name]):.6f}   "
              f"max |delta median r| vs ours {delta:.2e}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke-test size")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (skipped gracefully without CUDA)")
    parser.add_argument("--layers", default=None, help="comma-separated layer sizes (default 10000,30000,60000)")
    parser.add_argument("--stimuli", type=int, default=None)
    parser.add_argument("--bins", type=int, default=None, help="number of 10 ms bins starting at 70 ms")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--sk-bins", type=int, default=None, help="bins in the sklearn subset")
    parser.add_argument("--sk-splits", type=int, default=1, help="splits in the sklearn subset")
    parser.add_argument("--sk-areas", default=None, help="areas in the sklearn subset (default V4 full, V4,IT quick)")
    parser.add_argument("--no-ridge", action="store_true", help="skip the RidgeCV comparison")
    parser.add_argument("--no-himalaya", action="store_true",
                        help="skip the comparison with himalaya's RidgeCV/KernelRidgeCV (pip install himalaya)")
    parser.add_argument("--himalaya-primal", action="store_true",
                        help="also run himalaya's primal RidgeCV when n_train < n_features (himalaya itself warns that "
                             "KernelRidgeCV is the faster choice there; at full size it takes tens of minutes)")
    parser.add_argument("--gram-dtype", default="float32", choices=["float32", "float64"],
                        help="dtype of the feature Gram products (the fits themselves run in --dtype)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"],
                        help="compute dtype of the fits (default float64 on CPU, float32 on CUDA)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and for numpy's BLAS (default: the libraries' choice)")
    args = parser.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda requested but CUDA is not available: skipping the benchmark.")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        threadpool_limits(args.threads)  # numpy/scipy BLAS used by sklearn: same budget for both sides
    if args.quick:
        layer_sizes = [2000, 6000]
        n_stim, n_bins, n_v4, n_it, sk_bins = 640, 4, 22, 42, args.sk_bins or 2
        sk_areas = (args.sk_areas or "V4,IT").split(",")
    else:
        layer_sizes = [10_000, 30_000, 60_000]
        n_stim, n_bins, n_v4, n_it, sk_bins = 3200, 19, 88, 168, args.sk_bins or 1
        sk_areas = (args.sk_areas or "V4").split(",")
    if args.layers:
        layer_sizes = [int(v) for v in args.layers.split(",")]
    n_stim = args.stimuli or n_stim
    n_bins = args.bins or n_bins
    bins = np.array([(70 + 10 * b, 80 + 10 * b) for b in range(n_bins)], dtype=float)

    print(f"machine: {torch.get_num_threads()} torch threads, device {args.device}; torch {torch.__version__}")
    print(f"problem: {n_stim} images, {n_v4 + n_it} sites ({n_v4} V4 / {n_it} IT), {n_bins} bins x 10 ms from 70 ms,"
          f" 26 steps, layers {layer_sizes} units, {args.reps} repetitions")
    source = SyntheticHvM(n_stim, layer_sizes, n_steps=26)
    t0 = time.perf_counter()
    td = make_recordings(source, n_v4, n_it, bins, args.reps)
    print(f"synthetic recordings: {time.perf_counter() - t0:.1f} s")
    strata = td.stimuli["object_name"].to_numpy()
    eval_splits = make_splits(n_stim, strata)
    sel_splits = selection_splits(n_stim, strata)

    # ---------------------------------------------------------------- ours: everything
    dtype = getattr(torch, args.dtype) if args.dtype else None
    source.gen_seconds = 0.0
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = score_model(source, td, splits=eval_splits, selection=sel_splits, device=args.device, dtype=dtype,
                         gram_dtype=getattr(torch, args.gram_dtype))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    ours_total = time.perf_counter() - t0
    ours_fit = ours_total - source.gen_seconds
    rss_ours = peak_rss_mb()
    n_fits = len(layer_sizes) * n_bins * len(eval_splits) * 2
    print(f"\nours: {ours_total:.1f} s wall, of which {source.gen_seconds:.1f} s synthesising features -> "
          f"{ours_fit:.1f} s for {n_fits} PLS fits on evaluation splits (+{len(sel_splits)} selection splits, "
          f"ceilings)")
    print(f"ours: peak RSS of the process so far {rss_ours:.0f} MB"
          + (f"; CUDA max allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
             if args.device.startswith("cuda") else ""))
    print(result.best_layers.to_string(index=False))

    # ---------------------------------------------------------------- sklearn PLS: subset
    small = int(np.argmin(layer_sizes))
    layer = source.names[small]
    Y = td.mean()
    all_areas = {"V4": np.arange(n_v4), "IT": np.arange(n_v4, n_v4 + n_it)}
    areas = {a: all_areas[a] for a in sk_areas}
    deltas, neuroid_deltas, sk_times, rows = [], [], [], []
    tracemalloc.start()
    for b in range(sk_bins):
        X = source.get(layer, int(bins[b, 0] // 10))
        for s, split in enumerate(eval_splits[: args.sk_splits]):
            for area, cols in areas.items():
                t0 = time.perf_counter()
                sk = SkPLS(n_components=25, scale=False).fit(X[split.train], Y[split.train][:, cols, b])
                pred = sk.predict(X[split.test])
                sk_times.append(time.perf_counter() - t0)
                sk_med, sk_r = median_r(pred, Y[split.test][:, cols, b])
                ours_r = result.neuroid_r.sel(layer=layer).values[b, s][cols]
                deltas.append(abs(float(np.nanmedian(ours_r)) - sk_med))
                neuroid_deltas.append(float(np.nanmax(np.abs(ours_r - sk_r))))
                rows.append((area, int(bins[b, 0]), s, sk_med, float(np.nanmedian(ours_r)), sk_times[-1]))
    _, sk_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_fit = float(np.mean(sk_times))
    scale = sum(p / layer_sizes[small] for p in layer_sizes)
    sk_est = per_fit * scale * n_bins * len(eval_splits) * 2
    print(f"\nsklearn PLSRegression(25, scale=False) subset: layer {layer} ({layer_sizes[small]} units), "
          f"{sk_bins} bin(s) x {args.sk_splits} split(s) x areas {sk_areas} = {len(sk_times)} fit(s), "
          f"{per_fit:.1f} s per fit (measured)")
    for area, start, s, sk_med, ours_med, secs in rows:
        print(f"  {area:3s} bin {start} split {s}: median r sklearn {sk_med:.6f}  ours {ours_med:.6f}  "
              f"({secs:.1f} s)")
    print(f"sklearn estimate for all {n_fits} evaluation fits: {per_fit:.1f} s x {n_fits // len(layer_sizes)} fits per "
          f"layer x sum_l(p_l / p_small) = {scale:.1f}  ->  {sk_est:.0f} s  (EXTRAPOLATED: linear in the number "
          f"of fits and in n_features; the measured area(s) stand in for both)")
    print(f"sklearn subset: tracemalloc peak {sk_peak / 2**20:.0f} MB (numpy allocations of the fits)")
    speedup = sk_est / ours_fit
    print(f"\nPLS speed-up (sklearn estimate / ours, feature synthesis excluded, ours includes selection splits and "
          f"ceilings): {speedup:.0f}x   [goal >= 20x]")
    print(f"PLS max |delta median r| on the {len(deltas)} fits run by both: {max(deltas):.2e}   [goal < 1e-3]; "
          f"max |delta r| over single sites: {max(neuroid_deltas):.2e}")

    # ---------------------------------------------------------------- RidgeCV: same subset, both run
    if not args.no_ridge:
        sub = TrialData(trials=td.trials[..., :sk_bins], stimulus_ids=td.stimulus_ids, stimuli=td.stimuli,
                        neuroids=td.neuroids, bins=td.bins[:sk_bins], n_missing=0)
        source.gen_seconds = 0.0
        t0 = time.perf_counter()
        ridge = score_model(source, sub, layers=[layer], regression="ridgecv", ridge_cv=None,
                            splits=eval_splits[: args.sk_splits], n_selection_splits=0, ceiling_splits=0,
                            device=args.device, dtype=dtype, gram_dtype=getattr(torch, args.gram_dtype))
        ours_ridge = time.perf_counter() - t0 - source.gen_seconds
        r_deltas, sk_ridge = [], 0.0
        for b in range(sk_bins):
            X = source.get(layer, int(bins[b, 0] // 10))
            for s, split in enumerate(eval_splits[: args.sk_splits]):
                for cols in areas.values():
                    t0 = time.perf_counter()
                    sk = SkRidgeCV(alphas=NAYEBI_RIDGE_ALPHAS, alpha_per_target=True)
                    pred = sk.fit(X[split.train], Y[split.train][:, cols, b]).predict(X[split.test])
                    sk_ridge += time.perf_counter() - t0
                    sk_med, _ = median_r(pred, Y[split.test][:, cols, b])
                    r_deltas.append(abs(float(np.nanmedian(ridge.neuroid_r.values[0, b, s][cols])) - sk_med))
        print(f"\nRidgeCV (leave-one-out, alpha per target, 24 alphas) on the same {len(r_deltas)} fits: "
              f"ours {ours_ridge:.1f} s, sklearn {sk_ridge:.1f} s -> {sk_ridge / ours_ridge:.1f}x; "
              f"max |delta median r| {max(r_deltas):.2e}")
        print("  (sklearn's RidgeCV already uses one eigendecomposition of X X^T for all alphas, so the gap is "
              "small here; ours shares that decomposition across areas and the Gram across splits)")
    if not args.no_ridge and not args.no_himalaya:
        compare_himalaya(source, layer, bins, sk_bins, eval_splits[: args.sk_splits], Y, areas, args.device, dtype,
                         primal=args.himalaya_primal)
    print(f"\nprocess peak RSS at exit: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
