"""What a :class:`~convrnn.neural.config.FitConfig` names, turned into data and a model (steps 1 and 2 of
:func:`convrnn.neural.pipeline.run`).

**Data.** ``data="synthetic"``: the embedded synthetic V4/IT recordings (:mod:`convrnn.neural.synthetic`), generated
once into ``synthetic_dir`` (default ``<out>/synthetic_data``) and reused; :func:`synthetic_plan` reads their
config without generating anything, :func:`load_data` generates or loads them. Otherwise a brainio assembly
(``.nc``) or a plain responses array (``.npy``/``.npz``/``.h5``), plus the stimulus set (CSV + zip/folder).
:func:`pca_image_list`: the separate image set of ``--pca``.

**Model** (:func:`load_model_for`, through :func:`convrnn.neural.checkpoint.load_model`): a zoo name/YAML (random
weights from ``seed`` unless ``weights``), a ``train.py`` checkpoint, ``release:NAME``, or ``"teacher"`` (the
synthetic data's hidden teacher; a sanity check that must score high). With synthetic data and no model, the
teacher's architecture is used as an untrained zoo model: the same graph with *different* random weights, so it
is not the teacher. A zoo/YAML model's default input size is raised to the smallest size at which it builds
(:func:`smallest_input_size`); a too-small ``--input-size`` is refused.

Every problem is a :class:`convrnn.errors.UserError` that names the flag, file or value.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import xarray as xr

import convrnn
from convrnn.checkpoint import CHECKPOINT_SUFFIXES, is_checkpoint_path
from convrnn.errors import UserError
from convrnn.graph.spec import InputTooSmallError
from convrnn.neural.assembly import load_assembly, merge_stimulus_set
from convrnn.neural.checkpoint import RELEASE_PREFIX, LoadedModel, load_model
from convrnn.neural.config import IMAGE_SUFFIXES, PLAIN_SUFFIXES, FitConfig
from convrnn.neural.plain import load_plain
from convrnn.neural.stimuli import load_stimulus_set
from convrnn.neural.synthetic import PARAMS_FILE, SyntheticConfig, SyntheticRecordings, generate, load_synthetic

__all__ = ["load_data", "load_model_for", "pca_image_list", "smallest_input_size", "synthetic_plan"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# data


def synthetic_plan(config: FitConfig) -> tuple[SyntheticConfig, Path]:
    """The synthetic data's config and folder, read without generating anything.

    Why apart from :func:`load_data`: the run needs the config (bins, teacher, input size) to check the flags and
    build the model before it spends minutes generating the data.
    """
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


def load_data(config: FitConfig, synthetic_root: Path | None, progress: Callable[[int], None] | None = None
              ) -> tuple[xr.DataArray, pd.DataFrame, SyntheticRecordings | None]:
    """(responses, stimulus set, synthetic recordings or None) of ``config.data``.

    ``synthetic_root`` (from :func:`synthetic_plan`) set: the synthetic recordings there, generated on first use.
    Else a plain responses array (:data:`PLAIN_SUFFIXES`) or a brainio assembly, each merged with the stimulus
    set. Run after the checks: this is the step that may take minutes. ``progress(n)``: called as the synthetic
    data's teacher runs on each batch of ``n`` images (the caller draws any bar).
    """
    if synthetic_root is not None:
        if config.synthetic is None and (synthetic_root / PARAMS_FILE).exists():
            rec = load_synthetic(synthetic_root)
        else:
            rec = generate(synthetic_root, config.synthetic or SyntheticConfig(), progress=progress)
        return rec.assembly, rec.stimulus_set, rec
    path = Path(config.data)
    stimuli = load_stimulus_set(config.stimuli, config.stimuli_images)
    if path.suffix.lower() in PLAIN_SUFFIXES:
        plain = load_plain(path, config.stimuli, config.neuroids, config.bins, key=config.responses_key)
        return merge_stimulus_set(plain, stimuli), stimuli, None
    return load_assembly(path, stimulus_set=stimuli), stimuli, None


def pca_image_list(path: str | os.PathLike) -> list[str]:
    """A folder of images (sorted, recursive) or a stimulus-set CSV -> image references for the PCA fit.

    Public because the run reads ``--pca-images`` before the model is built (a bad folder stops it at once).
    """
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
# model


def _model_kind(spec: str) -> str:
    """``teacher``, ``release``, ``checkpoint``, ``yaml`` or ``zoo``; :class:`UserError` for a file that is not there
    or a name that is not in the zoo."""
    if spec == "teacher":
        return "teacher"
    if spec.startswith(RELEASE_PREFIX):
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


def load_model_for(config: FitConfig, synthetic: SyntheticConfig | None) -> LoadedModel:
    """The model to score, with every problem of ``--model``/``--weights``/``--input-size`` as a UserError.

    ``synthetic``: the synthetic data's config (:func:`synthetic_plan`), which supplies the default model (the
    teacher's architecture), input size and width; None with user data. Wraps
    :func:`convrnn.neural.checkpoint.load_model` with the command's defaults and flag-named errors; the run calls
    it before loading the data because a build takes well under a second.
    """
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
        # load_model checks that no flag contradicts the synthetic config (one place, also for other callers)
        return load_model(spec, weights=config.weights, input_size=input_size, width_multiplier=width,
                          teacher_config=synthetic)
    if config.weights is not None and kind in ("zoo", "yaml") and not Path(config.weights).is_file():
        raise UserError(f"--weights: {config.weights} does not exist")  # a checkpoint's --weights: load_model
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
