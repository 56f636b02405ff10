"""The settings of one neural fit (:class:`FitConfig`, the flags of ``scripts/fit_neural.py``) and what a run
returns (:class:`FitResult`), with the file suffixes that decide how ``--data`` and ``--pca-images`` are read.

Why a module of its own: the CLI (:mod:`convrnn.neural.cli`), the search objective
(:mod:`convrnn.search.objectives`), the input loaders (:mod:`convrnn.neural.inputs`), the checks
(:mod:`convrnn.neural.checks`) and the run (:mod:`convrnn.neural.pipeline`) all read a ``FitConfig``; none of them
needs the others to get it.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from convrnn.errors import UserConfigError
from convrnn.neural.checkpoint import DEFAULT_ZOO_SEED
from convrnn.neural.summarise import DEFAULT_MIN_CEILING, ScoringResult
from convrnn.neural.synthetic import SyntheticConfig, SyntheticRecordings

__all__ = ["IMAGE_SUFFIXES", "PLAIN_SUFFIXES", "BinMapping", "CeilingMissing", "Convention", "FitConfig", "FitResult",
           "Regression", "Splits", "fit_config_from_mapping", "fit_config_parser"]

#: image files taken from a ``--pca-images`` folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: ``data`` files read by the plain route (:func:`convrnn.neural.load_plain`) rather than as brainio assemblies
PLAIN_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")

#: the choices of the FitConfig fields that take one; typed as ``Literal`` so that jsonargparse (the CLI, a YAML
#: config, the search's ``neural.fit``) rejects any other value by itself, naming the field and the value.
#: ``Convention`` / ``CeilingMissing`` are the keys of :data:`convrnn.neural.metrics.CONVENTIONS` /
#: :data:`~convrnn.neural.metrics.CEILING_MISSING` (a test keeps them equal).
Regression = Literal["pls", "ridgecv"]
BinMapping = Literal["per_bin", "shared"]
Convention = Literal["r2_over_c", "r_over_c_squared", "r_over_c"]
Splits = Literal["brainscore", "nayebi"]
CeilingMissing = Literal["drop_neuroid", "drop_stimulus"]


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
    0 or None: torch's default, as with ``--threads 0``).
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
    regression: Regression = "pls"
    n_components: int = 25
    mapping: BinMapping = "per_bin"
    offset: int = 0
    convention: Convention = "r2_over_c"
    splits: Splits = "brainscore"
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
    ceiling_missing: CeilingMissing | None = None
    model_threads: int | None = 1
    threads: int | None = 1
    progress: bool = True
    nayebi_seeds: int = 0


@dataclass
class FitResult:
    """What :func:`convrnn.neural.pipeline.run` produced: the merged :class:`ScoringResult`, the written tables and
    the file paths.

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


def _describe(hint: Any) -> str:
    """A type as a user reads it in an error: ``one of 'pls', 'ridgecv'``, ``int or null``."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in rest) + " or null"
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return str(hint.__name__)
    return str(hint).replace("typing.", "").replace("collections.abc.", "")


@functools.cache
def fit_config_parser() -> Any:
    """The schema of a :class:`FitConfig` mapping: one jsonargparse key per field, typed with the field's hint
    (``Literal`` choices, ``SyntheticConfig | None`` as a nested mapping) and defaulting to the field's default.

    Why: the CLI (after its flags and aliases are read) and the search's ``neural.fit`` both turn a mapping into a
    ``FitConfig`` through this one parser, so both check names and types the same way. Errors raise, not exit.
    """
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False, prog="FitConfig")
    hints = typing.get_type_hints(FitConfig)
    for f in fields(FitConfig):
        if f.default is MISSING:
            parser.add_argument("--" + f.name, type=hints[f.name], required=True)
        else:
            parser.add_argument("--" + f.name, type=hints[f.name], default=f.default)
    return parser


def _check_key(parser: Any, name: str, value: Any, key: str, hint: Any, shown: Any) -> None:
    """Raise a :class:`UserConfigError` naming ``key`` and ``shown`` if ``value`` alone does not parse as the field
    ``name``."""
    from argparse import ArgumentError

    try:
        parser.parse_object({"out": ".", name: value})
    except (ArgumentError, TypeError, ValueError):
        raise UserConfigError(key, f"expected {_describe(hint)}, got {shown!r}") from None


def fit_config_from_mapping(values: Mapping[str, Any], where: str = "") -> FitConfig:
    """A :class:`FitConfig` from a mapping of its field names (a YAML config, the search's ``neural.fit``), with
    the names and the types checked; ``synthetic`` may be a mapping of :class:`SyntheticConfig` fields.

    Raises :class:`~convrnn.errors.UserConfigError` naming the first bad key (prefixed by ``where``, e.g.
    ``neural.fit.``) and its value.
    """
    from argparse import ArgumentError

    if not isinstance(values, Mapping):
        raise UserConfigError(where.rstrip(".") or "config", "must be a mapping of FitConfig fields")
    hints = typing.get_type_hints(FitConfig)
    for name in values:
        if name not in hints:
            raise UserConfigError(f"{where}{name}", f"not a FitConfig field; fields: {sorted(hints)}")
    if "out" not in values:
        raise UserConfigError(f"{where}out", "required (the output folder)")
    synthetic = values.get("synthetic")
    if synthetic is not None and not isinstance(synthetic, (Mapping, SyntheticConfig)):
        raise UserConfigError(f"{where}synthetic", f"must be a mapping of SyntheticConfig fields, got {synthetic!r}")
    if isinstance(synthetic, SyntheticConfig):  # already built (Python callers): nothing to parse
        values = {k: v for k, v in values.items() if k != "synthetic"}
    parser = fit_config_parser()
    try:
        parsed = parser.parse_object(dict(values))
    except ArgumentError:
        for name, value in values.items():
            if name == "synthetic":
                sub_hints = typing.get_type_hints(SyntheticConfig)
                for sub, sub_value in value.items():
                    if sub not in sub_hints:
                        raise UserConfigError(f"{where}synthetic.{sub}",
                                              f"not a SyntheticConfig field; fields: {sorted(sub_hints)}") from None
                    _check_key(parser, name, {sub: sub_value}, f"{where}synthetic.{sub}", sub_hints[sub], sub_value)
                _synthetic_config(parser, value, where)
            _check_key(parser, name, value, f"{where}{name}", hints[name], value)
        raise
    kwargs = {f.name: parsed[f.name] for f in fields(FitConfig)}
    kwargs["out"] = Path(kwargs["out"])
    if isinstance(synthetic, SyntheticConfig):
        kwargs["synthetic"] = synthetic
    elif kwargs["synthetic"] is not None:
        kwargs["synthetic"] = _synthetic_config(parser, synthetic, where)
    return FitConfig(**kwargs)


def _like(value: Any, default: Any) -> Any:
    """``value`` with the containers of ``default`` (YAML lists -> the tuples a SyntheticConfig holds), so that a
    config read from YAML equals the same config built in Python."""
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(_like(v, default[0]) if default else v for v in value)
    if isinstance(default, Mapping) and isinstance(value, Mapping) and default:
        sample = next(iter(default.values()))
        return {k: _like(v, sample) for k, v in value.items()}
    return value


def _synthetic_config(parser: Any, value: Mapping[str, Any], where: str) -> SyntheticConfig:
    """``value`` (SyntheticConfig fields) as a SyntheticConfig; its own checks (``__post_init__``) name the key."""
    from argparse import ArgumentError

    try:
        parsed = parser.parse_object({"out": ".", "synthetic": dict(value)})["synthetic"]
        defaults = SyntheticConfig()
        return SyntheticConfig(**{k: _like(parsed[k], getattr(defaults, k)) for k in value})  # the rest: defaults
    except (ArgumentError, TypeError, ValueError) as exn:
        try:  # the coerced fields (e.g. levels as a tuple) straight into the dataclass: its own message
            SyntheticConfig(**{k: tuple(v) if k == "levels" else v for k, v in dict(value).items()})
        except (TypeError, ValueError) as inner:
            raise UserConfigError(f"{where}synthetic", str(inner)) from None
        raise UserConfigError(f"{where}synthetic", str(exn).splitlines()[0]) from None
