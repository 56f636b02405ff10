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

import dataclasses
import logging
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from convrnn.errors import UserError
from convrnn.neural.config import FitConfig
from convrnn.neural.metrics import CEILING_MISSING, CONVENTIONS
from convrnn.neural.pipeline import run
from convrnn.neural.synthetic import SyntheticConfig

__all__ = ["FIELD_HELP", "build_parser", "config_from_args", "main"]

#: Help of each :class:`FitConfig` field (the flag is ``--`` + the field name with dashes). Defaults are not
#: written here: the parser reads them from the dataclass.
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
    "pca": "project each layer on K principal components fit on a separate image set",
    "pca_images": "folder (or stimulus CSV) of the PCA images (synthetic data: rendered)",
    "regression": "the map from features to responses",
    "n_components": "PLS components",
    "mapping": "per_bin: one regression map per time bin; shared: one map for all bins (Brain-Score's temporal "
               "benchmarks). Also --weights-per-bin / --shared",
    "offset": "model step = bin_start // 10 + offset",
    "convention": "noise correction: r2_over_c = R**2/c (~1 = perfect), r_over_c_squared = (R/c)**2, r_over_c = R/c",
    "splits": "evaluation split scheme",
    "n_splits": "evaluation splits (default: 10 brainscore, 5 nayebi)",
    "n_selection_splits": "separate splits on which the best layer per area is chosen",
    "stratify_by": "stimulus coordinate the Brain-Score splits are stratified by",
    "ceiling_missing": "split-half ceiling where a stimulus has no trial in one half: drop-neuroid (Brain-Score: "
                       "that neuroid is NaN for the split and left out of the median; default with --splits "
                       "brainscore) or drop-stimulus (the stimulus is left out of that neuroid's correlation; "
                       "default with --splits nayebi)",
    "nayebi_seeds": "also report Nayebi's r~ (brainmodel_utils r_xy_n_sb: maps refit on trial halves) for each "
                    "area's best layer, over N split-half seeds (brainmodel_utils uses 1000; each seed costs two "
                    "extra fits per split and bin). Column nayebi_r; 0 = off",
    "min_ceiling": "bins with a lower area ceiling are flagged unreliable, not plotted, and left out of the time "
                   "averages (mean_*_ceiled_bins in best_layers.csv)",
    "out": "output folder",
    "keep_features": "keep OUT/features (memmapped .npy files)",
    "progress": "no progress bars",
}

#: FitConfig fields with a hand-written flag (name -> why): everything else is generated from the type.
_CHOICES: dict[str, list[str]] = {
    "regression": ["pls", "ridgecv"],
    "convention": sorted(CONVENTIONS),
    "splits": ["brainscore", "nayebi"],
    "ceiling_missing": sorted({*CEILING_MISSING, *(v.replace("_", "-") for v in CEILING_MISSING)}),
}
_GROUPS = {
    "model": ("model", "weights", "input_size", "width", "trust_checkpoint", "seed", "layers", "times", "image_off",
              "batch_size", "device", "model_threads", "threads"),
    "data": ("data", "stimuli", "neuroids", "bins", "responses_key", "stimuli_images", "regions", "synthetic_dir",
             "synthetic", "pca", "pca_images"),
    "output": ("out", "keep_features", "progress"),
}


def _names(values: Sequence[str] | None) -> list[str] | None:
    """``--layers conv5 conv6`` and ``--layers conv5,conv6`` alike."""
    if not values:
        return None
    return [v for value in values for v in value.split(",") if v]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(group: Any, field: dataclasses.Field, hint: Any) -> None:
    """One FitConfig field as a flag: its type and default come from the dataclass."""
    name, default = field.name, field.default
    help_ = FIELD_HELP.get(name, "")
    if name == "synthetic":  # a nested config: the CLI sets its size only
        group.add_argument("--synthetic-images", type=int, default=None,
                           help="synthetic images per object per variation level (x 64 objects x 3 levels; default "
                                f"{SyntheticConfig.images_per_object_per_level} -> 384 images; 4 -> 768). Without it "
                                "an existing --synthetic-dir is reused as it is")
    elif name == "mapping":
        exclusive = group.add_mutually_exclusive_group()
        exclusive.add_argument("--mapping", choices=["per_bin", "shared"], help=help_)
        exclusive.add_argument("--weights-per-bin", dest="mapping", action="store_const", const="per_bin",
                               help="one regression map per time bin (the default): --mapping per_bin")
        exclusive.add_argument("--shared", dest="mapping", action="store_const", const="shared",
                               help="one regression map shared by all bins: --mapping shared")
    elif name in ("layers", "regions"):
        group.add_argument(_flag(name), type=str, nargs="+", default=None, help=help_)
    elif name == "progress":
        group.add_argument("--no-progress", dest="progress", action="store_false", help=help_)
    elif hint is bool:
        group.add_argument(_flag(name), action="store_true", help=help_)
    elif name in _CHOICES:
        group.add_argument(_flag(name), choices=_CHOICES[name], default=default, help=help_)
    elif name == "responses_key":
        group.add_argument("--key", "--responses-key", dest=name, type=hint, default=default, help=help_)
    elif default is dataclasses.MISSING:
        group.add_argument(_flag(name), type=hint, required=True, help=help_)
    else:
        group.add_argument(_flag(name), type=hint, default=default, help=help_)


def build_parser() -> ArgumentParser:
    """The ``convrnn-fit-neural`` parser, generated from :class:`FitConfig` (``--config`` reads a YAML of its
    fields; flags given after it override it)."""
    p = ArgumentParser(description=__doc__, prog="convrnn-fit-neural", exit_on_error=True)
    p.add_argument("--config", action=ActionConfigFile, help="YAML file of FitConfig fields (e.g. n_components: 10)")
    hints = typing.get_type_hints(FitConfig)
    groups = {title: p.add_argument_group(title) for title in (*_GROUPS, "fitting")}
    for field in dataclasses.fields(FitConfig):
        title = next((t for t, names in _GROUPS.items() if field.name in names), "fitting")
        _add_field(groups[title], field, hints[field.name])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(args: Namespace) -> FitConfig:
    """The parsed flags as a :class:`FitConfig` (``--threads 0`` = torch's default, dashes in choices allowed)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FitConfig) if hasattr(args, f.name)}
    values["layers"] = _names(values.get("layers"))
    values["regions"] = _names(values.get("regions"))
    values["mapping"] = values.get("mapping") or FitConfig.mapping  # none of --mapping/--shared/--weights-per-bin
    values["synthetic"] = None
    if args.synthetic_images is not None:
        values["synthetic"] = dataclasses.replace(SyntheticConfig(), images_per_object_per_level=args.synthetic_images)
    values["model_threads"] = values["model_threads"] or None
    values["threads"] = values["threads"] or None
    if values["ceiling_missing"]:
        values["ceiling_missing"] = values["ceiling_missing"].replace("-", "_")
    values["out"] = Path(values["out"])
    return FitConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
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
