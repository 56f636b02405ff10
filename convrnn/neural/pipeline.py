"""The end-to-end neural fit behind ``scripts/fit_neural.py``: data -> model -> features -> scores -> files.

Steps of :func:`run`:

1. **Data.** ``data="synthetic"``: the embedded synthetic V4/IT recordings (:mod:`convrnn.neural.synthetic`),
   generated once into ``synthetic_dir`` (default ``<out>/synthetic_data``) and reused. Otherwise a brainio
   assembly (``.nc``) or a plain responses array (``.npy``/``.npz``/``.h5``), plus the stimulus set (CSV +
   zip/folder).
2. **Model.** :func:`convrnn.neural.checkpoint.load_model`: a zoo name/YAML (random weights from ``seed`` unless
   ``weights``), a ``train.py`` checkpoint, or ``"teacher"`` (the synthetic data's hidden teacher; a sanity check
   that must score high). With synthetic data and no model, the teacher's architecture is used as an untrained
   zoo model: the same graph with *different* random weights, so it is not the teacher.
3. **Features.** The neural presentation (``times`` = 26 steps, image off at ``image_off`` = 10), only the steps
   matched to the bins, streamed to disk per (layer, step) (:func:`convrnn.neural.features.extract_features`);
   optionally projected on a PCA fit on a separate image set (``pca``).
4. **Scores.** :func:`convrnn.neural.scoring.score_model` one layer at a time (for a progress bar); the best layer
   per area maximises the bin-averaged raw score on the selection splits (the rule of ``score_model``).
5. **Files** (each written atomically: temp file + ``os.replace``): ``scores.csv`` (one row per area x layer x
   bin: area, layer, bin, bin_end, step, score, ceiling, raw_r, raw_r_sem, ..., is_best, reliable and, for
   synthetic data, analytic_ceiling), ``best_layers.csv``, ``scores.json`` (config, provenance, best layers,
   time-averaged scores, ceilings, all rows, timings) and the PNGs ``predictivity_over_time.png`` (noise-corrected)
   and ``raw_over_time.png`` (raw r with sqrt(ceiling)).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from convrnn.neural.assembly import TrialData, load_assembly, load_plain, merge_stimulus_set, trial_array
from convrnn.neural.checkpoint import DEFAULT_ZOO_SEED, LoadedModel, load_model
from convrnn.neural.features import extract_features, fit_pca, torch_threads
from convrnn.neural.mapping import PLSRegression, RidgeCV
from convrnn.neural.metrics import CONVENTIONS, nayebi_consistency
from convrnn.neural.plots import plot_over_time
from convrnn.neural.scoring import NAYEBI_AREAS, ScoringResult, _area_masks, default_bin_steps, score_model
from convrnn.neural.splits import make_splits
from convrnn.neural.stimuli import load_stimulus_set
from convrnn.neural.synthetic import (
    PARAMS_FILE,
    SyntheticConfig,
    SyntheticRecordings,
    generate,
    load_synthetic,
    write_pca_images,
)

__all__ = ["FitConfig", "FitResult", "resolve_areas", "run"]

logger = logging.getLogger(__name__)

#: the PLS warning for features that are constant across stimuli (expected: feedforward layers after image offset)
_CONSTANT_FEATURES = "the X residual vanished"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: ``data`` files read by the plain route (:func:`convrnn.neural.load_plain`) rather than as brainio assemblies
PLAIN_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")


@dataclass
class FitConfig:
    """Settings of one fit (the CLI flags of ``scripts/fit_neural.py``; see its ``--help``).

    ``model=None`` with synthetic data: the teacher's architecture, untrained (seed ``seed``). ``input_size`` /
    ``width`` apply to zoo/YAML models (defaults: the synthetic data's 64 px / 0.125 with synthetic data, 224 / 1
    otherwise). ``mapping``: ``"per_bin"`` or ``"shared"`` weights. ``n_splits=None``: the scheme's default
    (Brain-Score 10, Nayebi 5). ``min_ceiling``: bins whose area ceiling is below it are flagged unreliable and
    not drawn. ``model_threads``: torch threads while the model runs (1: its small convolutions lose to OpenMP
    overhead, badly so on a busy machine); ``threads``: torch threads for the fits (1 by
    default: on a shared 2-core machine 2 threads took 107 s instead of 39 s for the synthetic demo's fits; None:
    torch's default).
    ``data``: ``"synthetic"``, a brainio assembly (``.nc``), or a responses array (``.npy``/``.npz``/``.h5``,
    ``[repetitions, stimuli, neurons, bins]`` in the stimulus CSV's row order) read with ``neuroids`` (CSV),
    ``bins`` (CSV or .npy, required) and ``responses_key`` (the array's name in .npz/HDF5).
    ``nayebi_seeds``: when > 0, also Nayebi's r̃ (brainmodel_utils ``r_xy_n_sb``) of each area's best layer per
    bin, over that many split-half seeds (brainmodel_utils: 1,000), on the evaluation splits.
    ``synthetic``: the synthetic data's config; None = reuse the dataset in ``synthetic_dir`` whatever its
    config, or generate the default one.
    """

    out: Path
    model: str | None = None
    weights: str | None = None
    data: str = "synthetic"
    stimuli: str | None = None
    stimuli_images: str | None = None
    neuroids: str | None = None
    bins: str | None = None
    responses_key: str | None = None
    layers: Sequence[str] | None = None
    regions: Sequence[str] | None = None
    regression: str = "pls"
    n_components: int = 25
    mapping: str = "per_bin"
    offset: int = 0
    convention: str = "r2_over_c"
    splits: str = "brainscore"
    n_splits: int | None = None
    n_selection_splits: int = 2
    stratify_by: str | None = "object_name"
    device: str = "cpu"
    input_size: int | None = None
    width: float | None = None
    seed: int = DEFAULT_ZOO_SEED
    times: int = 26
    image_off: int | None = 10
    batch_size: int = 32
    pca: int | None = None
    pca_images: str | None = None
    synthetic: SyntheticConfig | None = None
    synthetic_dir: str | None = None
    keep_features: bool = False
    min_ceiling: float = 0.2
    model_threads: int | None = 1
    threads: int | None = 1
    progress: bool = True
    nayebi_seeds: int = 0


@dataclass
class FitResult:
    """What :func:`run` produced: the merged :class:`ScoringResult`, the written tables and the file paths.

    ``best_layers`` / ``time_averaged`` add ``score_reliable_bins``: the mean score over bins whose ceiling is at
    least ``min_ceiling`` (a time average over bins without stimulus signal mostly measures noise).
    """

    scoring: ScoringResult
    table: pd.DataFrame
    best_layers: pd.DataFrame
    time_averaged: pd.DataFrame
    paths: dict[str, Path]
    timings: dict[str, float]
    synthetic: SyntheticRecordings | None = None


# ----------------------------------------------------------------------------------------------------------------
# small helpers


def _atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary sibling and ``os.replace`` (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return [_jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    return str(value)


def resolve_areas(neuroids: pd.DataFrame, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Area name -> neuroid selector for ``score_model``.

    Default: Nayebi's V4 / pIT / cIT+aIT (:data:`NAYEBI_AREAS`) when a ``subregion`` coordinate holds pIT/cIT/aIT,
    else one area per ``region``, else all neuroids. A name is a Nayebi area (``V4``, ``pIT``, ``cIT/aIT``), a
    ``region`` value, a ``subregion`` value, or values joined by ``+`` or ``/`` (pooled, e.g. ``cIT+aIT``).
    """
    regions = set(neuroids["region"].astype(str)) if "region" in neuroids.columns else set()
    subregions = set(neuroids["subregion"].astype(str)) if "subregion" in neuroids.columns else set()
    if names is None:
        if subregions & {"pIT", "cIT", "aIT"}:
            areas = {}
            for name, selector in NAYEBI_AREAS.items():
                coord, wanted = next(iter(selector.items()))
                values = {wanted} if isinstance(wanted, str) else set(wanted)
                have = regions if coord == "region" else subregions
                if values & have:
                    areas[name] = dict(selector)
            return areas
        if regions:
            return {r: {"region": r} for r in sorted(regions, key=list(neuroids["region"].astype(str)).index)}
        return {"all": {}}
    areas: dict[str, dict[str, Any]] = {}
    for name in names:
        parts = [p for p in name.replace("/", "+").split("+") if p]
        if name in NAYEBI_AREAS and subregions:
            areas[name] = dict(NAYEBI_AREAS[name])
        elif name in regions:
            areas[name] = {"region": name}
        elif name in subregions:
            areas[name] = {"subregion": name}
        elif len(parts) > 1 and all(p in subregions for p in parts):
            areas[name] = {"subregion": parts}
        elif len(parts) > 1 and all(p in regions for p in parts):
            areas[name] = {"region": parts}
        else:
            known = sorted(set(NAYEBI_AREAS) if subregions else set()) + sorted(regions) + sorted(subregions)
            raise ValueError(f"unknown area {name!r}; choose from {sorted(set(known))} (or join values with '+')")
    return areas


def _choose_strata(stimuli: pd.DataFrame, preferred: str | None, n_test: int, n_train: int) -> str | None:
    """The first of ``preferred``, category_name that a stratified split can use, else None (plain shuffle).

    Why: sklearn's stratified split needs at least one test and one train image per class; a small stimulus set
    (e.g. 384 synthetic images: 39 test images, 64 objects) cannot be stratified by object.
    """
    for coord in dict.fromkeys([preferred, "category_name"]):
        if coord is None or coord not in stimuli.columns:
            continue
        counts = stimuli[coord].astype(str).value_counts()
        if len(counts) <= n_test and len(counts) <= n_train and counts.min() >= 2:
            if coord != preferred:
                logger.warning("cannot stratify %d test images by %r (%d classes); stratifying by %r",
                               n_test, preferred, stimuli[preferred].nunique() if preferred in stimuli else 0,
                               coord)
            return coord
    if preferred is not None:
        logger.warning("splits are not stratified (no usable %r/'category_name' coordinate)", preferred)
    return None


def _image_list(path: str | os.PathLike) -> list[str]:
    """A folder of images (sorted, recursive) or a stimulus-set CSV -> image references for the PCA fit."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_stimulus_set(path)["image_path"].tolist()
    if not path.is_dir():
        raise FileNotFoundError(f"PCA images: {path} is neither a folder nor a stimulus-set CSV")
    files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"PCA images: no image files in {path}")
    return files


# ----------------------------------------------------------------------------------------------------------------
# stages


def _load_data(config: FitConfig) -> tuple[xr.DataArray | TrialData, pd.DataFrame, SyntheticRecordings | None]:
    if config.data == "synthetic":
        root = Path(config.synthetic_dir) if config.synthetic_dir else Path(config.out) / "synthetic_data"
        if config.synthetic is None and (root / PARAMS_FILE).exists():
            rec = load_synthetic(root)
        else:
            rec = generate(root, config.synthetic or SyntheticConfig(), progress=config.progress)
        return rec.assembly, rec.stimulus_set, rec
    if config.stimuli is None:
        raise ValueError("--stimuli CSV is required with an assembly file (only --data synthetic has its own)")
    path = Path(config.data)
    if not path.is_file():
        raise FileNotFoundError(f"assembly not found: {path}")
    stimuli = load_stimulus_set(config.stimuli, config.stimuli_images)
    if path.suffix.lower() in PLAIN_SUFFIXES:
        if config.bins is None:
            raise ValueError(f"--bins is required with the responses array {path} (a .csv with time_bin_start, "
                             "time_bin_end in ms, or a .npy of (start, end) pairs or edges): bins decide the model "
                             "step each bin is fit to")
        plain = load_plain(path, config.stimuli, config.neuroids, config.bins, key=config.responses_key)
        return merge_stimulus_set(plain, stimuli), stimuli, None
    assembly = load_assembly(path, stimulus_set=stimuli)
    return assembly, stimuli, None


def _load_model(config: FitConfig, synthetic: SyntheticRecordings | None) -> LoadedModel:
    spec = config.model
    input_size, width = config.input_size, config.width
    if synthetic is not None:
        syn = synthetic.config
        if spec is None:
            spec = syn.teacher
            logger.warning("no --model: scoring an UNTRAINED %s (seed %d), i.e. the teacher's architecture with "
                           "other random weights, not the teacher; --model teacher scores the teacher itself",
                           spec, config.seed)
        if spec != "teacher" and not str(spec).endswith((".ckpt", ".pt", ".pth")):  # checkpoints keep their size
            input_size = syn.input_size if input_size is None else input_size
            width = syn.width_multiplier if width is None else width
    if spec is None:
        raise ValueError("--model is required with user data (a zoo name, a YAML graph or a train.py checkpoint)")
    if spec == "teacher" and synthetic is None:
        raise ValueError("--model teacher only makes sense with --data synthetic")
    teacher_config = synthetic.config if spec == "teacher" and synthetic is not None else None
    return load_model(spec, weights=config.weights, input_size=input_size, width_multiplier=width,
                      seed=config.seed, teacher_config=teacher_config)


def _best_layers(time_averaged: pd.DataFrame, selection: pd.DataFrame, areas: Sequence[str],
                 convention: str) -> pd.DataFrame:
    """Per area the layer with the highest ``selection_raw_r`` (``score_model``'s rule) and its time averages."""
    rows = []
    for area in areas:
        sel = selection[selection["area"] == area]
        if sel.empty or not np.isfinite(sel["selection_raw_r"]).any():
            continue
        pick = sel.loc[sel["selection_raw_r"].idxmax()]
        ta = time_averaged[(time_averaged["area"] == area) & (time_averaged["layer"] == pick["layer"])].iloc[0]
        rows.append(dict(area=area, layer=pick["layer"], selection_raw_r=pick["selection_raw_r"],
                         raw_r=ta["raw_r"], ceiling=ta["ceiling"], score=ta["score"], convention=convention))
    return pd.DataFrame(rows, columns=["area", "layer", "selection_raw_r", "raw_r", "ceiling", "score", "convention"])


def _score(features: Any, td: TrialData, layers: Sequence[str], areas: dict[str, dict[str, Any]],
           steps: Sequence[int], config: FitConfig, strata: str | None) -> ScoringResult:
    """``score_model`` per layer (progress bar), merged into one result."""
    splits = _evaluation_splits(td, config, strata) if config.n_splits is not None else None
    parts: list[ScoringResult] = []
    bar = tqdm(layers, desc="fitting", unit="layer", disable=not config.progress)
    for layer in bar:
        bar.set_postfix_str(layer)
        n_components = config.n_components
        if config.regression == "pls":
            available = [s for s in steps if s in set(features.steps(layer))]
            n_units = features.get(layer, available[0]).shape[1] if available else n_components
            if n_units < n_components:
                logger.warning("%s has %d units < %d PLS components; using %d", layer, n_units, n_components,
                               n_units)
                n_components = n_units
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            part = score_model(features, td, layers=[layer], areas=areas, regression=config.regression,
                               n_components=n_components, weights=config.mapping, split_scheme=config.splits,
                               stratify_by=strata, splits=splits, n_selection_splits=config.n_selection_splits,
                               steps=list(steps), convention=config.convention, device=config.device,
                               gram_dtype="float32" if config.device == "cpu" else None)
        constant = 0
        for w in caught:
            if _CONSTANT_FEATURES in str(w.message):
                constant += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if constant:
            logger.info("%s: features without stimulus variance in some bins (before the image reaches the layer, or "
                        "a feedforward layer after image offset); PLS has nothing to fit there: the map predicts a "
                        "constant, so those bins score ~0 (NaN where r is undefined)",
                        layer)
        part.scores["n_components"] = n_components if config.regression == "pls" else np.nan
        parts.append(part)
    bar.close()
    time_averaged = pd.concat([p.time_averaged for p in parts], ignore_index=True)
    selection = pd.concat([p.selection for p in parts], ignore_index=True)
    return ScoringResult(
        scores=pd.concat([p.scores for p in parts], ignore_index=True),
        time_averaged=time_averaged,
        best_layers=_best_layers(time_averaged, selection, list(areas), config.convention),
        selection=selection,
        ceilings=parts[0].ceilings,
        neuroid_r=xr.concat([p.neuroid_r for p in parts], dim="layer"),
        info={**parts[0].info, "layers": list(layers)},
    )


def _evaluation_splits(td: TrialData, config: FitConfig, strata: str | None) -> list:
    labels = td.stimuli[strata].astype(str).to_numpy() if strata else None
    return make_splits(len(td.stimulus_ids), labels, scheme=config.splits, n_splits=config.n_splits)


def _nayebi_scores(features: Any, td: TrialData, best_of: Mapping[str, str], areas: dict[str, dict[str, Any]],
                   steps: Sequence[int], config: FitConfig, strata: str | None) -> pd.DataFrame:
    """Nayebi's r̃ per (area, best layer, bin): maps refit on each trial half, model reliability in the denominator.

    Why only the best layers: every (split, seed) needs two extra fits, so all layers would multiply the cost of
    scoring by ~2 x ``nayebi_seeds``.
    """
    splits = _evaluation_splits(td, config, strata)
    masks = _area_masks(td.neuroids, areas)

    def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        if config.regression == "pls":
            estimator = PLSRegression(min(config.n_components, *x_train.shape), device=config.device)
        else:
            estimator = RidgeCV(device=config.device)
        return np.asarray(estimator.fit(x_train, y_train).predict(x_test))

    rows = []
    bar = tqdm(total=len(best_of) * len(steps), desc="Nayebi r~", unit="bin", disable=not config.progress)
    for area, layer in best_of.items():
        for b, step in enumerate(steps):
            X = np.asarray(features.get(layer, step), dtype=np.float64)
            value = np.nan
            if np.ptp(X, axis=0).max(initial=0.0) > 0:  # no stimulus variance: r~ is undefined, left NaN
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # near-constant targets of single halves
                    value = nayebi_consistency(X, td.trials[:, :, masks[area], b], fit_predict, splits,
                                               n_seeds=config.nayebi_seeds).score()
            rows.append(dict(area=area, layer=layer, bin=td.bins[b, 0], nayebi_r=value))
            bar.update()
    bar.close()
    return pd.DataFrame(rows, columns=["area", "layer", "bin", "nayebi_r"])


# ----------------------------------------------------------------------------------------------------------------
# main entry point


def run(config: FitConfig) -> FitResult:
    """Run the whole fit and write its files under ``config.out`` (see the module doc)."""
    with torch_threads(config.threads):
        return _run(config)


def _run(config: FitConfig) -> FitResult:
    if config.convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {config.convention!r}; choose from {sorted(CONVENTIONS)}")
    if config.mapping not in ("per_bin", "shared"):
        raise ValueError(f"mapping must be 'per_bin' or 'shared', got {config.mapping!r}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = t0 = time.perf_counter()

    assembly, stimuli, synthetic = _load_data(config)
    td = assembly if isinstance(assembly, TrialData) else trial_array(assembly)
    if td.bins is None:
        raise ValueError("the assembly has no time_bin_start/time_bin_end coordinates")
    areas = resolve_areas(td.neuroids, config.regions)
    timings["data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    loaded = _load_model(config, synthetic)
    model = loaded.model
    layers = list(config.layers) if config.layers else list(model.layer_names[:-1])  # all but the readout
    unknown = [layer for layer in layers if layer not in model.layer_names]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; {loaded.name} has {model.layer_names}")
    steps = default_bin_steps(td.bins, offset=config.offset)
    bad = [(int(b[0]), s) for b, s in zip(td.bins, steps, strict=True) if not 0 <= s < config.times]
    if bad:
        raise ValueError(f"bins map to model steps outside [0, {config.times}) with offset {config.offset}: "
                         f"(bin start, step) {bad[:5]}; change --offset or --times")
    timings["model_s"] = time.perf_counter() - t0

    # features: only the stimuli of the assembly, in its (sorted) order
    table = stimuli.set_index(stimuli["stimulus_id"].astype(str))
    missing = [s for s in td.stimulus_ids if s not in table.index]
    if missing:
        raise KeyError(f"{len(missing)} stimuli of the assembly are not in the stimulus set, e.g. {missing[:5]}")
    paths = table.loc[list(td.stimulus_ids), "image_path"].tolist()
    pca = None
    t0 = time.perf_counter()
    if config.pca:
        if config.pca_images:
            pca_paths = _image_list(config.pca_images)
        elif synthetic is not None:
            pca_csv = write_pca_images(out / "pca_images", synthetic.config,
                                       split_seed=synthetic.config.split_seed + 1)
            pca_paths = load_stimulus_set(pca_csv)["image_path"].tolist()
        else:
            raise ValueError("--pca needs --pca-images DIR (a separate image set) with user data")
        pca = fit_pca(model, pca_paths, layers, config.pca, times=config.times, image_off=config.image_off,
                      batch_size=config.batch_size, device=config.device, mean=loaded.mean, std=loaded.std,
                      threads=config.model_threads, progress=config.progress)
    timings["pca_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    feature_dir = out / "features"
    features = extract_features(model, paths, list(td.stimulus_ids), layers, feature_dir, times=config.times,
                                image_off=config.image_off, steps=sorted(set(steps)), batch_size=config.batch_size,
                                device=config.device, pca=pca, mean=loaded.mean, std=loaded.std,
                                threads=config.model_threads, progress=config.progress)
    timings["features_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n = len(td.stimulus_ids)
    train_frac = 0.9 if config.splits == "brainscore" else 0.8
    n_train = math.floor(train_frac * n) if config.splits == "brainscore" else math.ceil(train_frac * n)
    strata = _choose_strata(td.stimuli, config.stratify_by, n - n_train, n_train) \
        if config.splits == "brainscore" else None
    result = _score(features, td, layers, areas, steps, config, strata)
    timings["scoring_s"] = time.perf_counter() - t0
    best_of = dict(zip(result.best_layers["area"], result.best_layers["layer"], strict=True))
    nayebi = None
    if config.nayebi_seeds > 0:
        t0 = time.perf_counter()
        nayebi = _nayebi_scores(features, td, best_of, areas, steps, config, strata)
        timings["nayebi_s"] = time.perf_counter() - t0
    if not config.keep_features:
        del features
        shutil.rmtree(feature_dir, ignore_errors=True)

    t0 = time.perf_counter()
    best = result.best_layers
    rows = result.scores.copy()
    if nayebi is not None:
        rows = rows.merge(nayebi, on=["area", "layer", "bin"], how="left")
        best = best.merge(nayebi.groupby(["area", "layer"])["nayebi_r"].mean().reset_index(), on=["area", "layer"],
                          how="left")
    rows["is_best"] = [best_of.get(a) == layer for a, layer in zip(rows["area"], rows["layer"], strict=True)]
    rows["reliable"] = rows["ceiling"] >= config.min_ceiling
    rows["model"] = loaded.name
    reliable_mean = (rows[rows["reliable"]].groupby(["area", "layer"])["score"].mean()
                     .rename("score_reliable_bins").reset_index())
    time_averaged = result.time_averaged.merge(reliable_mean, on=["area", "layer"], how="left")
    best = best.merge(reliable_mean, on=["area", "layer"], how="left")
    truth: dict[str, Any] = {}
    if synthetic is not None:
        analytic = synthetic.analytic_ceilings(areas)
        rows = rows.merge(analytic[["area", "bin", "analytic_ceiling"]], on=["area", "bin"], how="left")
        truth = dict(
            true_layers={sub: sorted(g["teacher_layer"].unique()) for sub, g in synthetic.sites.groupby("subregion")},
            true_steps=dict(zip([int(b) for b in synthetic.bins[:, 0]], synthetic.steps, strict=True)),
            analytic_ceilings=analytic,
            root=synthetic.root,
        )
    front = ["area", "layer", "bin", "bin_end", "step", "score", "ceiling", "raw_r"]
    rows = rows[front + [c for c in rows.columns if c not in front]]
    paths_out = {"scores_csv": out / "scores.csv", "scores_json": out / "scores.json",
                 "best_layers_csv": out / "best_layers.csv",
                 "plot": out / "predictivity_over_time.png", "plot_raw": out / "raw_over_time.png"}
    _atomic_write_text(paths_out["scores_csv"], rows.to_csv(index=False))
    _atomic_write_text(paths_out["best_layers_csv"], best.to_csv(index=False))
    plot_over_time(rows, best_of, paths_out["plot"], value="score", layer_order=layers,
                   ylabel=f"noise-corrected predictivity ({CONVENTIONS[config.convention]})",
                   title=f"{loaded.name}: predictivity over time", min_ceiling=config.min_ceiling)
    plot_over_time(rows, best_of, paths_out["plot_raw"], value="raw_r", layer_order=layers, ylabel="raw r",
                   title=f"{loaded.name}: raw r (dashed: sqrt(ceiling))", min_ceiling=config.min_ceiling,
                   reference=None, show_ceiling=True)
    timings["write_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all
    cfg = asdict(replace(config, synthetic=synthetic.config if synthetic is not None else None))
    report = dict(
        config=cfg,
        model=dict(name=loaded.name, kind=loaded.kind, **loaded.info),
        data=dict(source=config.data, n_stimuli=n, n_neuroids=len(td.neuroids),
                  n_repetitions=int(td.trials.shape[0]), bins=td.bins, steps=steps, stratified_by=strata),
        areas=areas,
        convention=dict(name=config.convention, formula=CONVENTIONS[config.convention]),
        best_layers=best,
        time_averaged=time_averaged,
        ceilings=result.ceilings,
        scoring_info=result.info,
        ground_truth=truth,
        timings=timings,
        scores=rows,
    )
    _atomic_write_text(paths_out["scores_json"], json.dumps(_jsonable(report), indent=1))
    return FitResult(scoring=result, table=rows, best_layers=best, time_averaged=time_averaged, paths=paths_out,
                     timings=timings, synthetic=synthetic)
