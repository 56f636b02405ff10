"""The end-to-end neural fit behind ``scripts/fit_neural.py``: data -> model -> features -> scores -> files.

Steps of :func:`run`:

0. **Checks, before any work.** Flags, files, the model (built first: it takes well under a second, while the data
   may take minutes) and its input size (a zoo/YAML model's default is raised to the smallest size at which it
   builds, :func:`smallest_input_size`; a too-small ``--input-size`` is refused), the layers and the bins' steps.
   Every problem is a :class:`convrnn.errors.UserError` that names the flag, file or value.
1. **Data.** ``data="synthetic"``: the embedded synthetic V4/IT recordings (:mod:`convrnn.neural.synthetic`),
   generated once into ``synthetic_dir`` (default ``<out>/synthetic_data``) and reused. Otherwise a brainio
   assembly (``.nc``) or a plain responses array (``.npy``/``.npz``/``.h5``), plus the stimulus set (CSV +
   zip/folder). The trials are checked at once (:func:`convrnn.neural.assembly.check_trials`: repetitions, entries
   without a valid trial), with the areas, the bins' steps and the stimulus images. Only then is ``out`` created.
2. **Model.** :func:`convrnn.neural.checkpoint.load_model`: a zoo name/YAML (random weights from ``seed`` unless
   ``weights``), a ``train.py`` checkpoint, or ``"teacher"`` (the synthetic data's hidden teacher; a sanity check
   that must score high). With synthetic data and no model, the teacher's architecture is used as an untrained
   zoo model: the same graph with *different* random weights, so it is not the teacher.
3. **Features.** The neural presentation (``times`` = 26 steps, image off at ``image_off`` = 10), only the steps
   matched to the bins, streamed to disk per (layer, step) (:func:`convrnn.neural.features.extract_features`);
   optionally projected on a PCA fit on a separate image set (``pca``).
4. **Scores.** One :func:`convrnn.neural.scoring.score_model` call for all layers (a progress bar follows its
   ``progress`` callback); the best layer per area maximises the bin-averaged raw score on the selection splits
   (chosen once, by ``score_model``).
5. **Files** (each written atomically with :func:`convrnn.io.atomic_write_text`): ``scores.csv`` (one row per area x
   layer x bin: area, layer, bin, bin_end, step, score, ceiling, raw_r, raw_r_sem, ..., is_best, reliable and,
   for synthetic data, analytic_ceiling), ``best_layers.csv``, ``scores.json`` (config, provenance, best layers,
   time-averaged scores, ceilings, all rows, timings) and the PNGs ``predictivity_over_time.png`` (noise-corrected)
   and ``raw_over_time.png`` (raw r with sqrt(ceiling)).

A run that fails after the checks (or is interrupted) removes what it wrote: ``out`` if it created it, else the
feature files, PCA images and synthetic data it made.
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
import torch
import xarray as xr
from tqdm.auto import tqdm

import convrnn
from convrnn.checkpoint import CHECKPOINT_SUFFIXES, is_checkpoint_path
from convrnn.errors import UserError
from convrnn.graph.spec import InputTooSmallError
from convrnn.neural.areas import NAYEBI_AREAS, area_masks, default_bin_steps
from convrnn.neural.assembly import (
    TrialData,
    check_trials,
    load_assembly,
    load_plain,
    merge_stimulus_set,
    trial_array,
)
from convrnn.neural.checkpoint import DEFAULT_ZOO_SEED, LoadedModel, load_model
from convrnn.neural.features import extract_features, fit_pca, torch_threads
from convrnn.neural.metrics import CEILING_MISSING, CONVENTIONS, nayebi_consistency
from convrnn.neural.pls import PLSRegression
from convrnn.neural.report import write_report
from convrnn.neural.ridge import RidgeCV
from convrnn.neural.scoring import score_model
from convrnn.neural.splits import make_splits
from convrnn.neural.stimuli import load_stimulus_set
from convrnn.neural.summarise import DEFAULT_MIN_CEILING, ScoringResult
from convrnn.neural.synthetic import (
    PARAMS_FILE,
    SyntheticConfig,
    SyntheticRecordings,
    generate,
    load_synthetic,
    write_pca_images,
)

__all__ = ["FitConfig", "FitResult", "resolve_areas", "run", "smallest_input_size"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: ``data`` files read by the plain route (:func:`convrnn.neural.load_plain`) rather than as brainio assemblies
PLAIN_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
#: how the graph builder says that a node's map would shrink below 1x1 (convrnn.graph.node)
#: ``--model`` values that ``load_model`` reads as checkpoints (by suffix) and as release TF checkpoints (prefix)
_RELEASE_PREFIX = "release:"


@dataclass
class FitConfig:
    """Settings of one fit (the CLI flags of ``scripts/fit_neural.py``; see its ``--help``).

    ``model=None`` with synthetic data: the teacher's architecture, untrained (seed ``seed``). ``input_size`` /
    ``width`` apply to zoo/YAML models (defaults: the synthetic data's 64 px / 0.125 with synthetic data, 224 / 1
    otherwise). ``mapping``: ``"per_bin"`` (one regression map per time bin) or ``"shared"`` (one map for all
    bins); not to be confused with ``weights``, the checkpoint weights of a zoo/YAML model.
    ``n_splits=None``: the scheme's default (Brain-Score 10, Nayebi 5). ``min_ceiling``: bins whose area ceiling
    is below it are flagged unreliable and not drawn. ``model_threads``: torch threads while the model runs (1: its
    small convolutions lose to OpenMP overhead, badly so on a busy machine); ``threads``: torch threads for the fits
    (1 by default: on a shared 2-core machine 2 threads took 107 s instead of 39 s for the synthetic demo's fits;
    None: torch's default).
    ``data``: ``"synthetic"``, a brainio assembly (``.nc``), or a responses array (``.npy``/``.npz``/``.h5``,
    ``[repetitions, stimuli, neurons, bins]`` in the stimulus CSV's row order) read with ``neuroids`` (CSV),
    ``bins`` (CSV or .npy, required) and ``responses_key`` (the array's name in .npz/HDF5).
    ``nayebi_seeds``: when > 0, also Nayebi's r̃ (brainmodel_utils ``r_xy_n_sb``) of each area's best layer per
    bin, over that many split-half seeds (brainmodel_utils: 1,000), on the evaluation splits.
    ``synthetic``: the synthetic data's config; None = reuse the dataset in ``synthetic_dir`` whatever its
    config, or generate the default one. ``ceiling_missing``: the ceiling's rule for missing trials
    (:data:`convrnn.neural.metrics.CEILING_MISSING`); None = ``drop_neuroid`` (Brain-Score's) with
    ``splits="brainscore"``, ``drop_stimulus`` with ``"nayebi"``. ``min_ceiling`` also decides which bins the time
    averages use (``mean_*_ceiled_bins``). ``trust_checkpoint``: allow full unpickling of a checkpoint
    (``load_model(trusted=True)``); only for files you trust.
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
    trust_checkpoint: bool = False
    min_ceiling: float = DEFAULT_MIN_CEILING
    ceiling_missing: str | None = None
    model_threads: int | None = 1
    threads: int | None = 1
    progress: bool = True
    nayebi_seeds: int = 0


@dataclass
class FitResult:
    """What :func:`run` produced: the merged :class:`ScoringResult`, the written tables and the file paths.

    ``best_layers`` / ``time_averaged``: :func:`convrnn.neural.scoring.time_average` over the bins whose ceiling is
    at least ``min_ceiling`` (``best_layers`` adds ``mean_nayebi_r_ceiled_bins`` with ``nayebi_seeds``).
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
        raise UserError(f"--pca-images: {path} is neither a folder nor a stimulus-set CSV")
    files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--pca-images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    return files


# ----------------------------------------------------------------------------------------------------------------
# stages


def _synthetic_plan(config: FitConfig) -> tuple[SyntheticConfig, Path]:
    """The synthetic data's config and folder, read without generating anything (so flags can be checked first)."""
    root = Path(config.synthetic_dir) if config.synthetic_dir else Path(config.out) / "synthetic_data"
    params = root / PARAMS_FILE
    if params.is_file():
        try:
            existing = SyntheticConfig.from_json(json.loads(params.read_text())["config"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"--synthetic-dir {root}: unreadable {PARAMS_FILE} ({exc}); use another folder") from None
        if config.synthetic is not None and config.synthetic.to_json() != existing.to_json():
            raise UserError(f"--synthetic-dir {root} holds synthetic recordings with another config; use another "
                            "folder, delete this one, or drop --synthetic-images to reuse it as it is")
        return existing, root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"--synthetic-dir {root} exists and is not a synthetic-recordings folder")
    return config.synthetic or SyntheticConfig(), root


def _load_data(config: FitConfig, synthetic_root: Path | None
               ) -> tuple[xr.DataArray, pd.DataFrame, SyntheticRecordings | None]:
    if synthetic_root is not None:
        if config.synthetic is None and (synthetic_root / PARAMS_FILE).exists():
            rec = load_synthetic(synthetic_root)
        else:
            rec = generate(synthetic_root, config.synthetic or SyntheticConfig(), progress=config.progress)
        return rec.assembly, rec.stimulus_set, rec
    path = Path(config.data)
    stimuli = load_stimulus_set(config.stimuli, config.stimuli_images)
    if path.suffix.lower() in PLAIN_SUFFIXES:
        plain = load_plain(path, config.stimuli, config.neuroids, config.bins, key=config.responses_key)
        return merge_stimulus_set(plain, stimuli), stimuli, None
    return load_assembly(path, stimulus_set=stimuli), stimuli, None


def _check_user_files(config: FitConfig) -> None:
    """The files of user data exist and the route's required flags are there (before anything is loaded)."""
    path = Path(config.data)
    if not path.is_file():
        raise UserError(f"--data: {path} does not exist (give 'synthetic', a brainio .nc assembly, or a responses "
                        "array .npy/.npz/.h5)")
    if config.stimuli is None:
        raise UserError("--stimuli CSV is required with user data (only --data synthetic has its own)")
    if path.suffix.lower() in PLAIN_SUFFIXES and config.bins is None:
        raise UserError(f"--bins is required with the responses array {path} (a .csv with time_bin_start, "
                        "time_bin_end in ms, or a .npy of (start, end) pairs or edges): bins decide the model step "
                        "each bin is fit to")
    for flag, value in (("--stimuli", config.stimuli), ("--neuroids", config.neuroids), ("--bins", config.bins)):
        if value is not None and not Path(value).is_file():
            raise UserError(f"{flag}: {value} does not exist")
    if config.stimuli_images is not None and not Path(config.stimuli_images).exists():
        raise UserError(f"--stimuli-images: {config.stimuli_images} does not exist")


def _builds_at(spec: str | os.PathLike, size: int) -> bool:
    """Whether the zoo model or YAML graph ``spec`` builds at ``size`` px (at width 0.125, see
    :func:`smallest_input_size`); other build errors propagate."""
    from convrnn.graph.model import ConvRNN
    from convrnn.zoo import model_config

    try:
        ConvRNN(model_config(spec, input_size=size, width_multiplier=0.125))
    except InputTooSmallError:
        return False
    return True


def smallest_input_size(spec: str | os.PathLike, *, limit: int = 4096) -> int:
    """The smallest input size (px) at which the zoo model or YAML graph ``spec`` builds: every node keeps a map of
    at least 1x1 (a shallow model's VALID-padded layers need more than 64 px).

    Found by bisection on real builds (sizes only shrink when the input does), at width 0.125: spatial sizes do not
    depend on the width, and small builds take ~0.1 s. Raises :class:`UserError` when even ``limit`` px fails.
    """
    hi = 64
    while not _builds_at(spec, hi):
        if hi >= limit:
            raise UserError(f"--model {spec}: no input size up to {limit} px builds")
        hi = min(2 * hi, limit)
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _builds_at(spec, mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _model_kind(spec: str) -> str:
    """``teacher``, ``release``, ``checkpoint``, ``yaml`` or ``zoo``; :class:`UserError` for a file that is not there
    or a name that is not in the zoo."""
    if spec == "teacher":
        return "teacher"
    if spec.startswith(_RELEASE_PREFIX):
        return "release"
    path = Path(spec)
    if is_checkpoint_path(path):
        if not path.is_file():
            raise UserError(f"--model: checkpoint {path} does not exist")
        return "checkpoint"
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"--model: YAML graph {path} does not exist")
        return "yaml"
    known = convrnn.list_models()
    if spec not in known:
        raise UserError(f"--model: unknown model {spec!r}; give a zoo name ({', '.join(known)}), a YAML graph, a "
                        f"checkpoint ({'/'.join(CHECKPOINT_SUFFIXES)}), release:NAME or 'teacher'")
    return "zoo"


def _load_model(config: FitConfig, synthetic: SyntheticConfig | None) -> LoadedModel:
    """The model to score, with every problem of ``--model``/``--weights``/``--input-size`` as a UserError."""
    spec = config.model
    input_size, width = config.input_size, config.width
    if synthetic is not None and spec is None:
        spec = synthetic.teacher
        logger.warning("no --model: scoring an UNTRAINED %s (seed %d), i.e. the teacher's architecture with other "
                       "random weights, not the teacher; --model teacher scores the teacher itself", spec, config.seed)
    if spec is None:
        raise UserError("--model is required with user data (a zoo name, a YAML graph or a train.py checkpoint)")
    spec = str(spec)
    kind = _model_kind(spec)
    if kind == "teacher":
        if synthetic is None:
            raise UserError("--model teacher only makes sense with --data synthetic")
        if config.weights is not None or input_size not in (None, synthetic.input_size) or \
                width not in (None, synthetic.width_multiplier):
            raise UserError("--model teacher is fixed by the synthetic config; drop --weights/--input-size/--width")
        return load_model(spec, teacher_config=synthetic)
    if config.weights is not None and kind in ("checkpoint", "zoo", "yaml"):
        if kind == "checkpoint":
            raise UserError("--weights: a checkpoint carries its own weights; --weights is for zoo/YAML models")
        if not Path(config.weights).is_file():
            raise UserError(f"--weights: {config.weights} does not exist")
    if kind in ("zoo", "yaml"):
        default = synthetic.input_size if synthetic is not None else 224
        if synthetic is not None and width is None:
            width = synthetic.width_multiplier
        if _builds_at(spec, input_size or default):  # one cheap build; search only when it fails
            input_size = input_size or default
        else:
            smallest = smallest_input_size(spec)
            if input_size is not None:
                raise UserError(f"--input-size {input_size} is too small for {spec}: it needs at least {smallest} px "
                                f"(a layer's map would shrink to 0x0); use --input-size {smallest} or more")
            input_size = smallest
            logger.warning("%s needs inputs of at least %d px; presenting the images at %d px (the default %d is "
                           "too small; --input-size sets it)", spec, smallest, input_size, default)
    try:
        return load_model(spec, weights=config.weights, input_size=input_size, width_multiplier=width,
                          seed=config.seed, trusted=config.trust_checkpoint)
    except InputTooSmallError as exc:
        if kind == "checkpoint" and input_size is not None:
            raise UserError(f"--input-size {input_size} is too small for the model of {spec} ({exc})") from None
        raise


def _score(features: Any, td: TrialData, layers: Sequence[str], areas: dict[str, dict[str, Any]],
           steps: Sequence[int], config: FitConfig, strata: str | None) -> ScoringResult:
    """One ``score_model`` call for all layers; a tqdm bar follows its progress callback."""
    splits = _evaluation_splits(td, config, strata) if config.n_splits is not None else None
    components = {layer: config.n_components for layer in layers}
    if config.regression == "pls":
        for layer in layers:
            available = [s for s in steps if s in set(features.steps(layer))]
            n_units = features.get(layer, available[0]).shape[1] if available else config.n_components
            if n_units < config.n_components:
                logger.warning("%s has %d units < %d PLS components; using %d", layer, n_units, config.n_components,
                               n_units)
                components[layer] = n_units
    same = len(set(components.values())) == 1
    bar = tqdm(total=len(layers), desc="fitting", unit="layer", disable=not config.progress)

    def progress(layer: str, done: int, total: int) -> None:
        bar.set_postfix_str(layer)
        bar.update(1)

    try:
        result = score_model(features, td, layers=list(layers), areas=areas, regression=config.regression,
                             n_components=components[layers[0]] if same else components, mapping=config.mapping,
                             split_scheme=config.splits, stratify_by=strata, splits=splits,
                             n_selection_splits=config.n_selection_splits, steps=list(steps),
                             convention=config.convention, min_ceiling=config.min_ceiling,
                             ceiling_missing=config.ceiling_missing, device=config.device,
                             gram_dtype="float32" if config.device == "cpu" else None, progress=progress)
    finally:
        bar.close()
    for layer in result.info.get("constant_feature_warnings", {}):
        logger.info("%s: features without stimulus variance in some bins (before the image reaches the layer, or "
                    "a feedforward layer after image offset); PLS has nothing to fit there: the map predicts a "
                    "constant, so those bins score ~0 (NaN where r is undefined)", layer)
    order = {layer: i for i, layer in enumerate(layers)}
    for name in ("scores", "time_averaged", "selection"):  # layer-major, as the files have always been written
        table = getattr(result, name)
        setattr(result, name, table.sort_values("layer", key=lambda col: col.map(order), kind="stable")
                .reset_index(drop=True))
    result.scores["n_components"] = (result.scores["layer"].map(components) if config.regression == "pls"
                                     else np.nan)
    result.info["layers"] = list(layers)
    return result


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
    masks = area_masks(td.neuroids, areas)

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
    """Run the whole fit and write its files under ``config.out`` (see the module doc).

    Every problem with the inputs raises :class:`UserError` before the model runs and before ``out`` is created;
    a run that fails later (or is interrupted) removes what it wrote: ``out`` itself if it created it, else the
    feature files, PCA images and synthetic data it made.
    """
    with torch_threads(config.threads):
        return _run(config)


def _check_flags(config: FitConfig) -> None:
    """Flag values that need no file: checked first, in no time."""
    if config.convention not in CONVENTIONS:
        raise UserError(f"--convention: unknown {config.convention!r}; choose from {sorted(CONVENTIONS)}")
    if config.mapping not in ("per_bin", "shared"):
        raise UserError(f"mapping must be 'per_bin' or 'shared', got {config.mapping!r}")
    if config.regression not in ("pls", "ridgecv"):
        raise UserError(f"--regression: unknown {config.regression!r}; use 'pls' or 'ridgecv'")
    if config.splits not in ("brainscore", "nayebi"):
        raise UserError(f"--splits: unknown {config.splits!r}; use 'brainscore' or 'nayebi'")
    if config.ceiling_missing is not None and config.ceiling_missing not in CEILING_MISSING:
        raise UserError(f"--ceiling-missing: unknown {config.ceiling_missing!r}; choose from "
                        f"{sorted(v.replace('_', '-') for v in CEILING_MISSING)}")
    for flag, value, least in (("--n-components", config.n_components, 1), ("--times", config.times, 1),
                               ("--batch-size", config.batch_size, 1), ("--n-splits", config.n_splits, 1),
                               ("--pca", config.pca, 1), ("--nayebi-seeds", config.nayebi_seeds, 0),
                               ("--input-size", config.input_size, 1)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be >= {least}, got {value}")
    if config.synthetic is not None and config.synthetic.images_per_object_per_level < 1:
        raise UserError(f"--synthetic-images must be >= 1, got {config.synthetic.images_per_object_per_level}")
    if config.width is not None and not config.width > 0:
        raise UserError(f"--width must be > 0, got {config.width}")
    if config.pca and config.data != "synthetic" and not config.pca_images:
        raise UserError("--pca needs --pca-images DIR (a separate image set) with user data")
    if config.pca_images and not Path(config.pca_images).exists():
        raise UserError(f"--pca-images: {config.pca_images} does not exist")
    try:
        device = torch.device(config.device)
    except RuntimeError as exc:
        raise UserError(f"--device: {config.device!r} is not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {config.device}: CUDA is not available on this machine; use --device cpu")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder")


def _check_steps(bins: np.ndarray, config: FitConfig) -> list[int]:
    """The model step of every bin, all inside the presentation (``--offset``, ``--times``)."""
    steps = default_bin_steps(bins, offset=config.offset)
    bad = [(int(b[0]), s) for b, s in zip(bins, steps, strict=True) if not 0 <= s < config.times]
    if bad:
        raise UserError(f"bins map to model steps outside [0, {config.times}) with --offset {config.offset}: "
                        f"(bin start ms, step) {bad[:5]}; change --offset or --times")
    return steps


def _check_data(td: TrialData, stimuli: pd.DataFrame, config: FitConfig) -> tuple[dict[str, dict[str, Any]],
                                                                                  list[int], list[str]]:
    """Everything scoring would find wrong with the data, found right after loading: (areas, steps, image paths)."""
    if td.bins is None:
        raise UserError(f"{config.data}: the assembly has no time_bin_start/time_bin_end coordinates")
    check_trials(td)
    try:
        areas = resolve_areas(td.neuroids, config.regions)
    except ValueError as exc:
        raise UserError(f"--regions: {exc}") from None
    try:
        area_masks(td.neuroids, areas)
    except (ValueError, KeyError) as exc:
        raise UserError(f"--regions: {exc.args[0] if exc.args else exc}") from None
    steps = _check_steps(td.bins, config)
    table = stimuli.set_index(stimuli["stimulus_id"].astype(str))
    missing = [s for s in td.stimulus_ids if s not in table.index]
    if missing:
        raise UserError(f"{len(missing)} stimuli of the data are not in the stimulus set, e.g. {missing[:5]}")
    n = len(td.stimulus_ids)
    n_train = math.floor(0.9 * n) if config.splits == "brainscore" else math.ceil(0.8 * n)
    if config.regression == "pls" and config.n_components > n_train:
        raise UserError(f"--n-components {config.n_components} exceeds the {n_train} training stimuli of a split "
                        f"({n} stimuli); use fewer components")
    return areas, steps, table.loc[list(td.stimulus_ids), "image_path"].tolist()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _run(config: FitConfig) -> FitResult:
    timings: dict[str, float] = {}
    t_all = t0 = time.perf_counter()
    # 1. inputs, cheapest first; nothing is written until they pass
    _check_flags(config)
    out = Path(config.out)
    synthetic_config, synthetic_root = _synthetic_plan(config) if config.data == "synthetic" else (None, None)
    if synthetic_config is None:
        _check_user_files(config)
    pca_paths = _image_list(config.pca_images) if config.pca and config.pca_images else None
    loaded = _load_model(config, synthetic_config)
    model = loaded.model
    layers = list(config.layers) if config.layers else list(model.layer_names[:-1])  # all but the readout
    unknown = [layer for layer in layers if layer not in model.layer_names]
    if unknown:
        raise UserError(f"--layers: unknown layer(s) {unknown}; {loaded.name} has {model.layer_names}")
    if synthetic_config is not None:
        _check_steps(synthetic_config.bins, config)  # before generating the data
    timings["model_s"] = time.perf_counter() - t0

    # what this run creates, removed again if it fails
    fresh = [p for p in (out, synthetic_root, out / "pca_images") if p is not None and not p.exists()]
    feature_dir = out / "features"
    made_features = False
    try:
        t0 = time.perf_counter()
        assembly, stimuli, synthetic = _load_data(config, synthetic_root)
        td = assembly if isinstance(assembly, TrialData) else trial_array(assembly)
        areas, steps, paths = _check_data(td, stimuli, config)
        timings["data_s"] = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)  # inputs passed

        pca = None
        t0 = time.perf_counter()
        if config.pca:
            if pca_paths is None:
                assert synthetic is not None  # _check_flags: user data need --pca-images
                pca_csv = write_pca_images(out / "pca_images", synthetic.config,
                                           split_seed=synthetic.config.split_seed + 1)
                pca_paths = load_stimulus_set(pca_csv)["image_path"].tolist()
            pca = fit_pca(model, pca_paths, layers, config.pca, times=config.times, image_off=config.image_off,
                          batch_size=config.batch_size, device=config.device, mean=loaded.mean, std=loaded.std,
                          threads=config.model_threads, progress=config.progress)
        timings["pca_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        made_features = True
        features = extract_features(model, paths, list(td.stimulus_ids), layers, feature_dir, times=config.times,
                                    image_off=config.image_off, steps=sorted(set(steps)),
                                    batch_size=config.batch_size, device=config.device, pca=pca, mean=loaded.mean,
                                    std=loaded.std, threads=config.model_threads, progress=config.progress)
        timings["features_s"] = time.perf_counter() - t0
        result = _score_and_write(config, features, td, layers, areas, steps, loaded, synthetic, timings, t_all)
        del features
    except BaseException:
        if made_features:
            _remove(feature_dir)
        for path in reversed(fresh):  # out last: it holds the others
            _remove(path)
        raise
    if not config.keep_features:
        _remove(feature_dir)
    return result


def _score_and_write(config: FitConfig, features: Any, td: TrialData, layers: list[str],
                     areas: dict[str, dict[str, Any]], steps: list[int], loaded: LoadedModel,
                     synthetic: SyntheticRecordings | None, timings: dict[str, float], t_all: float) -> FitResult:
    out = Path(config.out)
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

    t0 = time.perf_counter()
    best = result.best_layers
    rows = result.scores.copy()
    if nayebi is not None:
        rows = rows.merge(nayebi, on=["area", "layer", "bin"], how="left")
        ceiled = rows[(rows["ceiling"] >= config.min_ceiling) & rows["nayebi_r"].notna()]
        nayebi_mean = (ceiled.groupby(["area", "layer"])["nayebi_r"].mean().rename("mean_nayebi_r_ceiled_bins")
                       .reset_index())
        best = best.merge(nayebi_mean, on=["area", "layer"], how="left")
    rows["is_best"] = [best_of.get(a) == layer for a, layer in zip(rows["area"], rows["layer"], strict=True)]
    rows["reliable"] = rows["ceiling"] >= config.min_ceiling
    rows["model"] = loaded.name
    time_averaged = result.time_averaged
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
    timings["write_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all
    cfg = asdict(replace(config, synthetic=synthetic.config if synthetic is not None else None))
    summary = dict(
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
    paths_out = write_report(out, rows, best, summary, best_of=best_of, layer_order=layers, model_name=loaded.name,
                             convention=config.convention, min_ceiling=config.min_ceiling)
    timings["write_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all
    return FitResult(scoring=result, table=rows, best_layers=best, time_averaged=time_averaged, paths=paths_out,
                     timings=timings, synthetic=synthetic)
