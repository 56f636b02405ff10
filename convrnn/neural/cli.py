"""``convrnn-fit-neural`` (also ``python scripts/fit_neural.py``, ``python -m convrnn.neural.cli``): score a
ConvRNN against time-binned V4/IT responses and plot predictivity over time.

Examples:
  convrnn-fit-neural --data synthetic --out runs/neural_demo               # untrained zoo model
  convrnn-fit-neural --data synthetic --model teacher --out runs/neural_teacher   # sanity check
  convrnn-fit-neural --data synthetic --model runs/demo/checkpoints/last.ckpt --out runs/neural_ckpt
  convrnn-fit-neural --model rgc_intermediate --weights w.pt --data assy.nc \\
      --stimuli stimulus_set.csv --stimuli-images stimuli.zip --out runs/hvm
  convrnn-fit-neural --model ckpt.ckpt --data responses.h5 --key rates --stimuli stimulus_set.csv \\
      --neuroids neuroids.csv --bins bins.csv --out runs/mine        # no brainio file: plain arrays
  convrnn-fit-neural --config my_scoring.yaml --out runs/mine     # YAML keys = FitConfig's field names

Writes scores.csv, best_layers.csv, scores.json, predictivity_over_time.png and raw_over_time.png to --out
(see convrnn/neural/pipeline.py and docs/neural.md). Bad input stops the command before any work with
"error: ..." and exit status 2; --out is created only once the inputs pass, and a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from collections.abc import Sequence
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from convrnn.errors import UserError
from convrnn.neural.config import CeilingMissing, FitConfig, fit_config_from_mapping
from convrnn.neural.pipeline import run
from convrnn.neural.synthetic import SyntheticConfig

__all__ = ["FIELD_HELP", "build_parser", "config_from_args", "main"]

#: Help of each :class:`FitConfig` field (the flag is ``--`` + the field name with dashes). Defaults and choices are
#: not written here: the parser reads them from the dataclass (choices are ``Literal`` types there).
FIELD_HELP: dict[str, str] = {
    "model": "zoo name, YAML graph, train.py checkpoint (.ckpt), or 'teacher' (synthetic data's hidden teacher). "
             "Default with --data synthetic: the teacher's architecture, untrained (NOT the teacher)",
    "weights": "checkpoint weights for a zoo/YAML model (.pt state dict or .ckpt)",
    "input_size": "input size of a zoo/YAML model (default: 64 with synthetic data, else 224, raised to the smallest "
                  "size the model builds at, e.g. 65 for the shallow models)",
    "width": "width multiplier of a zoo/YAML model (default: 0.125 with synthetic data, else 1)",
    "trust_checkpoint": "load a checkpoint that needs full unpickling (it can run code: only for files you trust)",
    "seed": "seed of an untrained zoo model's weights",
    "layers": "layers to score, space- or comma-separated (default: all but the readout)",
    "times": "model steps (neural presentation: 26)",
    "image_off": "step at which the image is replaced by blank",
    "batch_size": "images per model batch",
    "device": "torch device for the model and the fits",
    "model_threads": "torch CPU threads while the model runs (1: small convolutions lose to threading overhead; "
                     "0 = torch's default)",
    "threads": "torch CPU threads for the fits (1 is robust on a shared machine; 0 = torch's default)",
    "data": "'synthetic', a brainio assembly (.nc), or responses [repetitions, stimuli, neurons, bins] as "
            ".npy/.npz/.h5 (stimuli in the order of the --stimuli CSV's rows)",
    "stimuli": "stimulus-set CSV (stimulus_id, filename, e.g. object_name) for an assembly or a responses array",
    "neuroids": "responses array only: CSV with one row per neuron (neuroid_id, region, subregion, ...), in the "
                "array's order",
    "bins": "responses array only (required): CSV with time_bin_start,time_bin_end in ms, or .npy of (start, end) "
            "pairs or edges",
    "responses_key": "responses array only: the array's name in .npz/HDF5",
    "stimuli_images": "zip or folder with the stimulus images (default: next to the CSV)",
    "regions": "areas: V4 pIT cIT/aIT (default if a subregion coordinate exists), region or subregion values, or "
               "values joined by '+'",
    "synthetic_dir": "where the synthetic data are generated/reused (default: OUT/synthetic_data)",
    "synthetic": "the synthetic data's SyntheticConfig (a YAML mapping, or --synthetic.FIELD VALUE); unset: an "
                 "existing --synthetic-dir is reused as it is, else the default config is generated",
    "pca": "project each layer on K principal components fit on a separate image set",
    "pca_images": "folder (or stimulus CSV) of the PCA images (synthetic data: rendered)",
    "regression": "the map from features to responses",
    "n_components": "PLS components",
    "mapping": "per_bin: one regression map per time bin; shared: one map for all bins (Brain-Score's temporal "
               "benchmarks). Also --shared",
    "offset": "model step = bin_start // 10 + offset",
    "convention": "noise correction: r2_over_c = R**2/c (~1 = perfect), r_over_c_squared = (R/c)**2, r_over_c = R/c",
    "splits": "evaluation split scheme",
    "n_splits": "evaluation splits (default: 10 brainscore, 5 nayebi)",
    "n_selection_splits": "separate splits on which the best layer per area is chosen",
    "stratify_by": "stimulus coordinate the Brain-Score splits are stratified by",
    "ceiling_missing": "split-half ceiling where a stimulus has no trial in one half: drop_neuroid (Brain-Score: "
                       "that neuroid is NaN for the split and left out of the median; default with --splits "
                       "brainscore) or drop_stimulus (the stimulus is left out of that neuroid's correlation; "
                       "default with --splits nayebi); dashes work too",
    "nayebi_seeds": "also report Nayebi's r~ (brainmodel_utils r_xy_n_sb: maps refit on trial halves) for each "
                    "area's best layer, over N split-half seeds (brainmodel_utils uses 1000; each seed costs two "
                    "extra fits per split and bin). Column nayebi_r; 0 = off",
    "min_ceiling": "bins with a lower area ceiling are flagged unreliable, not plotted, and left out of the time "
                   "averages (mean_*_ceiled_bins in best_layers.csv)",
    "out": "output folder",
    "keep_features": "keep OUT/features (memmapped .npy files)",
    "progress": "no progress bars",
}

_GROUPS = {
    "model": ("model", "weights", "input_size", "width", "trust_checkpoint", "seed", "layers", "times", "image_off",
              "batch_size", "device", "model_threads", "threads"),
    "data": ("data", "stimuli", "neuroids", "bins", "responses_key", "stimuli_images", "regions", "synthetic_dir",
             "synthetic", "pca", "pca_images"),
    "output": ("out", "keep_features", "progress"),
}


class _Alias(argparse.Action):
    """A flag that sets another field to ``const`` (``--shared`` = ``--mapping shared``). Its own dest is suppressed,
    so ``--print_config`` holds FitConfig's fields only; ``deprecated`` prints a one-line notice to stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, target: str = "", const: Any = None,
                 deprecated: str | None = None, **kwargs: Any) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, const=const, **kwargs)
        self.target, self.deprecated = target, deprecated

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        if self.deprecated:
            print(f"convrnn-fit-neural: {option_string} is deprecated; {self.deprecated}", file=sys.stderr)
        namespace[self.target] = self.const


class _SyntheticImages(argparse.Action):
    """``--synthetic-images N`` (the flag older commands used) in ``--help``; :class:`_Parser` reads it as
    ``--synthetic.images_per_object_per_level N`` before parsing, so this action only runs for an abbreviation."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.error(f"{option_string}: write --synthetic-images or --synthetic.images_per_object_per_level")


_RENAMED = {"--synthetic-images": "--synthetic.images_per_object_per_level"}


#: the flags that set ``mapping`` (``--shared`` and ``--weights-per-bin`` are aliases): at most one per command
_MAPPING_FLAGS = frozenset({"--mapping", "--shared", "--weights-per-bin"})


class _Parser(ArgumentParser):
    """The command's parser: old flags that set a nested field are renamed to it (see :data:`_RENAMED`) first."""

    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        given = set()
        for i, arg in enumerate(argv):
            if arg == "--":
                break
            name, eq, value = arg.partition("=")
            given.add(name)
            if name in _RENAMED:
                argv[i] = _RENAMED[name] + eq + value
        both = sorted(given & _MAPPING_FLAGS)
        if "--mapping" in both and len(both) > 1:  # jsonargparse cannot put a typed flag in an exclusive group
            self.error(f"{' and '.join(both)} both set the regression mapping: give one")
        return super().parse_args(argv, *rest, **kwargs)


class _Verbose(argparse.Action):
    """``-v``: debug logging. Not a FitConfig field, so it is kept off the namespace (and ``--print_config``): the
    parser remembers it (``parser.verbose``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.verbose = True


class _Names(argparse.Action):
    """``--layers conv5 conv6`` and ``--layers conv5,conv6`` alike, stored as one list (what ``--print_config``
    prints and a YAML config holds)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        namespace[self.dest] = _names(values)


def _names(values: Sequence[str] | None) -> list[str] | None:
    """``--layers conv5 conv6`` and ``--layers conv5,conv6`` alike (anything but strings is left for the type
    check of :func:`~convrnn.neural.config.fit_config_from_mapping`)."""
    if not values:
        return None
    if isinstance(values, str):  # a YAML "layers: conv5,conv6"
        values = [values]
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        return values  # type: ignore[return-value]
    return [v for value in values for v in value.split(",") if v]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _ceiling_missing(value: str | None) -> str | None:
    """``--ceiling-missing``: one of FitConfig's ``CeilingMissing`` choices, dashes read as underscores
    (``drop-stimulus``), so that the parsed value (and ``--print_config``) is FitConfig's spelling."""
    if value is None or value == "null":
        return None
    choices = typing.get_args(CeilingMissing)
    normal = str(value).replace("-", "_")
    if normal not in choices:
        raise ValueError(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return normal


def _add_field(group: Any, field: dataclasses.Field, hint: Any) -> None:
    """One FitConfig field as a flag: its type (choices included) and default come from the dataclass."""
    name, default = field.name, field.default
    help_ = FIELD_HELP.get(name, "")
    if name == "synthetic":  # a nested dataclass: --synthetic.FIELD VALUE, or a mapping in a YAML --config
        group.add_argument("--synthetic", type=hint, default=None, help=help_)
        group.add_argument("--synthetic-images", action=_SyntheticImages, metavar="N",
                           help="synthetic images per object per variation level (x 64 objects x 3 levels; default "
                                f"{SyntheticConfig.images_per_object_per_level} -> 384 images; 4 -> 768): "
                                "--synthetic.images_per_object_per_level N")
    elif name == "mapping":
        group.add_argument("--mapping", type=hint, default=default, help=help_)
        aliases = group.add_mutually_exclusive_group()
        aliases.add_argument("--shared", action=_Alias, target="mapping", const="shared",
                             help="one regression map shared by all bins: --mapping shared")
        aliases.add_argument("--weights-per-bin", action=_Alias, target="mapping", const="per_bin",
                             deprecated="use --mapping per_bin (renamed: 'weights' are a checkpoint's)",
                             help="deprecated alias of --mapping per_bin")
    elif name in ("layers", "regions"):
        group.add_argument(_flag(name), action=_Names, nargs="+", default=None, help=help_)
    elif name == "progress":
        group.add_argument("--no-progress", dest="progress", action="store_false", help=help_)
    elif hint is bool:
        group.add_argument(_flag(name), action="store_true", help=help_)
    elif name == "ceiling_missing":
        group.add_argument(_flag(name), type=_ceiling_missing, default=default, help=help_)
    elif name == "responses_key":
        group.add_argument("--key", "--responses-key", dest=name, type=hint, default=default, help=help_)
    elif default is dataclasses.MISSING:
        group.add_argument(_flag(name), type=hint, required=True, help=help_)
    else:
        group.add_argument(_flag(name), type=hint, default=default, help=help_)


def build_parser() -> ArgumentParser:
    """The ``convrnn-fit-neural`` parser, generated from :class:`FitConfig` (``--config`` reads a YAML of its
    fields; flags given after it override it; ``--print_config`` prints exactly such a YAML)."""
    p = _Parser(description=__doc__, prog="convrnn-fit-neural", exit_on_error=True)
    p.add_argument("--config", action=ActionConfigFile, help="YAML file of FitConfig fields (e.g. n_components: 10)")
    hints = typing.get_type_hints(FitConfig)
    groups = {title: p.add_argument_group(title) for title in (*_GROUPS, "fitting")}
    for field in dataclasses.fields(FitConfig):
        title = next((t for t, names in _GROUPS.items() if field.name in names), "fitting")
        _add_field(groups[title], field, hints[field.name])
    p.add_argument("-v", "--verbose", action=_Verbose, help="debug logging")
    p.verbose = False
    return p


def config_from_args(args: Namespace) -> FitConfig:
    """The parsed flags as a :class:`FitConfig`, through :func:`~convrnn.neural.config.fit_config_from_mapping`
    (the parser the search's ``neural.fit`` uses too): comma-separated ``--layers``/``--regions`` split, everything
    else as given (``--threads 0`` stays 0: torch's default)."""
    values = {f.name: args[f.name] for f in dataclasses.fields(FitConfig) if f.name in args}
    values["layers"] = _names(values.get("layers"))
    values["regions"] = _names(values.get("regions"))
    if isinstance(values.get("synthetic"), Namespace):
        values["synthetic"] = values["synthetic"].as_dict()
    values["out"] = str(values["out"])
    return fit_config_from_mapping(values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success, 2 on bad input (one ``error:`` line, nothing written)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.DEBUG if parser.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = run(config_from_args(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.best_layers.to_string(index=False))
    print("timings (s): " + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in result.timings.items()))
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
