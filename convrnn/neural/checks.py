"""The run's checks before any work (step 0 of :func:`convrnn.neural.pipeline.run`), cheapest first.

:func:`check_flags` (flag values that need no file), :func:`check_user_files` (the user data's files and the
route's required flags), :func:`check_steps` (every bin maps to a model step inside the presentation),
:func:`check_data` (right after loading: trials, areas, steps, stimuli, PLS components) and
:func:`choose_strata` (the stimulus coordinate the Brain-Score splits can be stratified by). The model and its
input size are checked where they are loaded (:func:`convrnn.neural.inputs.load_model_for`).

Every problem is a :class:`convrnn.errors.UserError` that names the flag, file or value.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import torch

from convrnn.errors import UserError
from convrnn.neural.areas import area_masks, default_bin_steps, resolve_areas
from convrnn.neural.config import PLAIN_SUFFIXES, BinMapping, FitConfig, Regression, Splits
from convrnn.neural.metrics import CEILING_MISSING, CONVENTIONS
from convrnn.neural.splits import train_count
from convrnn.neural.trials import TrialData, check_trials

__all__ = ["check_data", "check_flags", "check_steps", "check_user_files", "choose_strata"]

logger = logging.getLogger(__name__)


def check_flags(config: FitConfig) -> None:
    """Flag values that need no file: checked first, in no time (before the model is built or a file read)."""
    if config.convention not in CONVENTIONS:
        raise UserError(f"--convention: unknown {config.convention!r}; choose from {sorted(CONVENTIONS)}")
    for flag, value, choices in (("--mapping", config.mapping, BinMapping), ("--regression", config.regression,
                                  Regression), ("--splits", config.splits, Splits)):
        if value not in get_args(choices):  # FitConfig built in Python: its Literal types are not enforced there
            raise UserError(f"{flag}: unknown {value!r}; use one of {list(get_args(choices))}")
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


def check_user_files(config: FitConfig) -> None:
    """The files of user data exist and the route's required flags are there.

    Run before anything is loaded, so that a missing file stops the command before minutes of loading.
    """
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


def check_steps(bins: np.ndarray, config: FitConfig) -> list[int]:
    """The model step of every bin, all inside the presentation (``--offset``, ``--times``).

    Called on the synthetic data's bins before they are generated, and on any data's bins by :func:`check_data`.
    """
    steps = default_bin_steps(bins, offset=config.offset)
    bad = [(int(b[0]), s) for b, s in zip(bins, steps, strict=True) if not 0 <= s < config.times]
    if bad:
        raise UserError(f"bins map to model steps outside [0, {config.times}) with --offset {config.offset}: "
                        f"(bin start ms, step) {bad[:5]}; change --offset or --times")
    return steps


def check_data(td: TrialData, stimuli: pd.DataFrame, config: FitConfig) -> tuple[dict[str, dict[str, Any]],
                                                                                 list[int], list[str]]:
    """Everything scoring would find wrong with the data, found right after loading: (areas, steps, image paths).

    The trials (:func:`convrnn.neural.trials.check_trials`), the areas (``--regions``), the bins' steps, the
    stimuli and the PLS components against the training stimuli of a split; the run creates ``out`` only after.
    """
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
    steps = check_steps(td.bins, config)
    table = stimuli.set_index(stimuli["stimulus_id"].astype(str))
    missing = [s for s in td.stimulus_ids if s not in table.index]
    if missing:
        raise UserError(f"{len(missing)} stimuli of the data are not in the stimulus set, e.g. {missing[:5]}")
    n = len(td.stimulus_ids)
    n_train = train_count(n, config.splits)
    if config.regression == "pls" and config.n_components > n_train:
        raise UserError(f"--n-components {config.n_components} exceeds the {n_train} training stimuli of a split "
                        f"({n} stimuli); use fewer components")
    return areas, steps, table.loc[list(td.stimulus_ids), "image_path"].tolist()


def choose_strata(stimuli: pd.DataFrame, preferred: str | None, n_test: int, n_train: int) -> str | None:
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
