"""The end-to-end neural fit behind ``scripts/fit_neural.py``: data -> model -> features -> scores -> files.

Settings: :class:`~convrnn.neural.config.FitConfig`. Steps of :func:`run`:

0. **Checks, before any work** (:mod:`convrnn.neural.checks`). Flags, files, the model (built first: it takes well
   under a second, while the data may take minutes) and its input size (:mod:`convrnn.neural.inputs`), the layers
   and the bins' steps. Every problem is a :class:`convrnn.errors.UserError` that names the flag, file or value.
1. **Data** (:func:`convrnn.neural.inputs.load_data`): the synthetic recordings, or a brainio assembly or plain
   responses array with its stimulus set. The trials are checked at once
   (:func:`convrnn.neural.checks.check_data`: repetitions, entries without a valid trial), with the areas, the
   bins' steps and the stimulus images. Only then is ``out`` created.
2. **Model** (:func:`convrnn.neural.inputs.load_model_for`, loaded in step 0): a zoo name/YAML, a ``train.py``
   checkpoint, ``release:NAME`` or ``"teacher"``; with synthetic data and no model, the teacher's architecture,
   untrained (not the teacher).
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

``FitConfig``, ``FitResult``, ``resolve_areas`` and ``smallest_input_size`` are re-exported here from their homes
(:mod:`convrnn.neural.config`, :mod:`convrnn.neural.areas`, :mod:`convrnn.neural.inputs`) for older imports.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from convrnn.errors import UserError
from convrnn.neural.areas import area_masks, resolve_areas
from convrnn.neural.checkpoint import LoadedModel
from convrnn.neural.checks import check_data, check_flags, check_steps, check_user_files, choose_strata
from convrnn.neural.config import FitConfig, FitResult
from convrnn.neural.features import extract_features, fit_pca
from convrnn.neural.fit import fit_nayebi
from convrnn.neural.inputs import load_data, load_model_for, pca_image_list, smallest_input_size, synthetic_plan
from convrnn.neural.metrics import CONVENTIONS
from convrnn.neural.report import write_report
from convrnn.neural.scoring import score_model
from convrnn.neural.splits import make_splits, train_count
from convrnn.neural.stimuli import load_stimulus_set
from convrnn.neural.summarise import ScoringResult, add_nayebi, mark_best
from convrnn.neural.synthetic import SyntheticRecordings, write_pca_images
from convrnn.neural.trials import TrialData, trial_array
from convrnn.threads import torch_threads

# FitConfig, FitResult, resolve_areas, smallest_input_size: re-exported from their homes for older imports
__all__ = ["FitConfig", "FitResult", "resolve_areas", "run", "smallest_input_size"]

logger = logging.getLogger(__name__)


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


def _run(config: FitConfig) -> FitResult:
    timings: dict[str, float] = {}
    t_all = t0 = time.perf_counter()
    # 1. inputs, cheapest first; nothing is written until they pass
    check_flags(config)
    out = Path(config.out)
    synthetic_config, synthetic_root = synthetic_plan(config) if config.data == "synthetic" else (None, None)
    if synthetic_config is None:
        check_user_files(config)
    pca_paths = pca_image_list(config.pca_images) if config.pca and config.pca_images else None
    loaded = load_model_for(config, synthetic_config)
    model = loaded.model
    layers = list(config.layers) if config.layers else list(model.layer_names[:-1])  # all but the readout
    unknown = [layer for layer in layers if layer not in model.layer_names]
    if unknown:
        raise UserError(f"--layers: unknown layer(s) {unknown}; {loaded.name} has {model.layer_names}")
    if synthetic_config is not None:
        check_steps(synthetic_config.bins, config)  # before generating the data
    timings["model_s"] = time.perf_counter() - t0

    # what this run creates, removed again if it fails
    fresh = [p for p in (out, synthetic_root, out / "pca_images") if p is not None and not p.exists()]
    feature_dir = out / "features"
    made_features = False
    try:
        t0 = time.perf_counter()
        with _bar(config, None, "synthetic data (teacher)", "img") as progress:
            assembly, stimuli, synthetic = load_data(config, synthetic_root, progress)
        td = assembly if isinstance(assembly, TrialData) else trial_array(assembly)
        areas, steps, paths = check_data(td, stimuli, config)
        timings["data_s"] = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)  # inputs passed

        pca = None
        t0 = time.perf_counter()
        if config.pca:
            if pca_paths is None:
                assert synthetic is not None  # check_flags: user data need --pca-images
                pca_csv = write_pca_images(out / "pca_images", synthetic.config,
                                           split_seed=synthetic.config.split_seed + 1)
                pca_paths = load_stimulus_set(pca_csv)["image_path"].tolist()
            with _bar(config, len(pca_paths), "pca images", "img") as progress:
                pca = fit_pca(model, pca_paths, layers, config.pca, times=config.times, image_off=config.image_off,
                              batch_size=config.batch_size, device=config.device, mean=loaded.mean, std=loaded.std,
                              threads=config.model_threads, progress=progress)
        timings["pca_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        made_features = True
        with _bar(config, len(paths), "features", "img") as progress:
            features = extract_features(model, paths, list(td.stimulus_ids), layers, feature_dir,
                                        times=config.times, image_off=config.image_off, steps=sorted(set(steps)),
                                        batch_size=config.batch_size, device=config.device, pca=pca,
                                        mean=loaded.mean, std=loaded.std, threads=config.model_threads,
                                        progress=progress)
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


@contextlib.contextmanager
def _bar(config: FitConfig, total: int | None, desc: str, unit: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar (hidden with ``--no-progress``) whose ``update`` is the stage's ``progress`` callback.

    With ``total=None`` (work that may not happen, e.g. synthetic data that already exist) the bar appears only at
    the first update.
    """
    bars: list[Any] = []

    def start() -> Any:
        bars.append(tqdm(total=total, desc=desc, unit=unit, disable=not config.progress))
        return bars[0]

    if total is not None:
        start()

    def update(n: int) -> None:
        (bars[0] if bars else start()).update(n)

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


# ----------------------------------------------------------------------------------------------------------------
# scoring and writing


def _score_and_write(config: FitConfig, features: Any, td: TrialData, layers: list[str],
                     areas: dict[str, dict[str, Any]], steps: list[int], loaded: LoadedModel,
                     synthetic: SyntheticRecordings | None, timings: dict[str, float], t_all: float) -> FitResult:
    out = Path(config.out)
    t0 = time.perf_counter()
    n = len(td.stimulus_ids)
    n_train = train_count(n, config.splits)
    strata = choose_strata(td.stimuli, config.stratify_by, n - n_train, n_train) \
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
    best, rows = result.best_layers, result.scores
    if nayebi is not None:
        rows, best = add_nayebi(rows, best, nayebi)
    rows = mark_best(rows, best_of)
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
                             convention=config.convention)
    timings["write_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all
    return FitResult(scoring=result, table=rows, best_layers=best, time_averaged=time_averaged, paths=paths_out,
                     timings=timings, synthetic=synthetic)


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
    """Nayebi's r̃ of the best layers (:func:`convrnn.neural.fit.fit_nayebi`) on the evaluation splits; a tqdm bar
    follows its progress callback."""
    with _bar(config, len(best_of) * len(steps), "Nayebi r~", "bin") as progress:
        return fit_nayebi(features, td.trials, list(td.stimulus_ids), best_of, area_masks(td.neuroids, areas), steps,
                          td.bins[:, 0], _evaluation_splits(td, config, strata), regression=config.regression,
                          n_components=config.n_components, n_seeds=config.nayebi_seeds, device=config.device,
                          progress=progress)
