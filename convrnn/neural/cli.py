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

Writes scores.csv, best_layers.csv, scores.json, predictivity_over_time.png and raw_over_time.png to --out
(see convrnn/neural/pipeline.py and docs/neural.md). Bad input stops the command before any work with
"error: ..." and exit status 2; --out is created only once the inputs pass, and a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from convrnn.errors import UserError
from convrnn.neural.checkpoint import DEFAULT_ZOO_SEED
from convrnn.neural.metrics import CEILING_MISSING, CONVENTIONS
from convrnn.neural.pipeline import FitConfig, run
from convrnn.neural.synthetic import SyntheticConfig


def _names(values: Sequence[str] | None) -> list[str] | None:
    """``--layers conv5 conv6`` and ``--layers conv5,conv6`` alike."""
    if not values:
        return None
    return [v for value in values for v in value.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", help="zoo name, YAML graph, train.py checkpoint (.ckpt), or 'teacher' (synthetic "
                                   "data's hidden teacher). Default with --data synthetic: the teacher's "
                                   "architecture, untrained (NOT the teacher)")
    g.add_argument("--weights", help="weights for a zoo/YAML model (.pt state dict or .ckpt)")
    g.add_argument("--input-size", type=int, help="input size of a zoo/YAML model (default: 64 with synthetic "
                                                  "data, else 224, raised to the smallest size the model builds "
                                                  "at, e.g. 65 for the shallow models)")
    g.add_argument("--width", type=float, help="width multiplier of a zoo/YAML model (default: 0.125 with "
                                               "synthetic data, else 1)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="load a checkpoint that needs full unpickling (it can run code: only for files you trust)")
    g.add_argument("--seed", type=int, default=DEFAULT_ZOO_SEED, help="seed of an untrained zoo model's weights")
    g.add_argument("--layers", nargs="+", help="layers to score (default: all but the readout)")
    g.add_argument("--times", type=int, default=26, help="model steps (neural presentation: 26)")
    g.add_argument("--image-off", type=int, default=10, help="step at which the image is replaced by blank")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--device", default="cpu", help="torch device for the model and the fits")
    g.add_argument("--model-threads", type=int, default=1,
                   help="torch CPU threads while the model runs (default 1: small convolutions lose to threading "
                        "overhead; 0 = torch's default)")
    g.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for the fits (default 1, robust on a shared machine; 0 = torch's default)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="synthetic",
                   help="'synthetic', a brainio assembly (.nc), or responses [repetitions, stimuli, neurons, bins] "
                        "as .npy/.npz/.h5 (stimuli in the order of the --stimuli CSV's rows)")
    g.add_argument("--stimuli", help="stimulus-set CSV (stimulus_id, filename, e.g. object_name) for an assembly "
                                     "or a responses array")
    g.add_argument("--neuroids", help="responses array only: CSV with one row per neuron (neuroid_id, region, "
                                      "subregion, ...), in the array's order")
    g.add_argument("--bins", help="responses array only (required): CSV with time_bin_start,time_bin_end in ms, or "
                                  ".npy of (start, end) pairs or edges")
    g.add_argument("--key", dest="responses_key", help="responses array only: the array's name in .npz/HDF5")
    g.add_argument("--stimuli-images", help="zip or folder with the stimulus images (default: next to the CSV)")
    g.add_argument("--regions", nargs="+", help="areas: V4 pIT cIT/aIT (default if a subregion coordinate "
                                                "exists), region or subregion values, or values joined by '+'")
    g.add_argument("--synthetic-dir", help="where the synthetic data are generated/reused (default: "
                                           "OUT/synthetic_data)")
    g.add_argument("--synthetic-images", type=int,
                   help="synthetic images per object per variation level (x 64 objects x 3 levels; default "
                        f"{SyntheticConfig.images_per_object_per_level} -> 384 images; 4 -> 768). Without it an "
                        "existing --synthetic-dir is reused as it is")
    g.add_argument("--pca", type=int, metavar="K", help="project each layer on K principal components fit on a "
                                                        "separate image set")
    g.add_argument("--pca-images", help="folder (or stimulus CSV) of the PCA images (synthetic data: rendered)")
    g = p.add_argument_group("fitting")
    g.add_argument("--regression", choices=["pls", "ridgecv"], default="pls")
    g.add_argument("--n-components", type=int, default=25, help="PLS components")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--weights-per-bin", dest="mapping", action="store_const", const="per_bin",
                   help="one map per time bin (default)")
    w.add_argument("--shared", dest="mapping", action="store_const", const="shared",
                   help="one map shared by all bins (Brain-Score's temporal benchmarks)")
    g.add_argument("--offset", type=int, default=0, help="model step = bin_start // 10 + offset")
    g.add_argument("--convention", choices=sorted(CONVENTIONS), default="r2_over_c",
                   help="noise correction: R**2/c (default; ~1 = perfect), (R/c)**2 or R/c")
    g.add_argument("--splits", choices=["brainscore", "nayebi"], default="brainscore")
    g.add_argument("--ceiling-missing", choices=sorted(v.replace("_", "-") for v in CEILING_MISSING),
                   help="split-half ceiling where a stimulus has no trial in one half: drop-neuroid (Brain-Score: "
                        "that neuroid is NaN for the split and left out of the median; default with --splits "
                        "brainscore) or drop-stimulus (the stimulus is left out of that neuroid's correlation; "
                        "default with --splits nayebi)")
    g.add_argument("--n-splits", type=int, help="evaluation splits (default: 10 brainscore, 5 nayebi)")
    g.add_argument("--nayebi-seeds", type=int, default=0, metavar="N",
                   help="also report Nayebi's r~ (brainmodel_utils r_xy_n_sb: maps refit on trial halves) for each "
                        "area's best layer, over N split-half seeds (brainmodel_utils uses 1000; each seed costs two "
                        "extra fits per split and bin). Column nayebi_r; default 0 = off")
    g.add_argument("--min-ceiling", type=float, default=0.2,
                   help="bins with a lower area ceiling are flagged unreliable, not plotted, and left out of the "
                        "time averages (mean_*_ceiled_bins in best_layers.csv)")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, type=Path, help="output folder")
    g.add_argument("--keep-features", action="store_true", help="keep OUT/features (memmapped .npy files)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(mapping="per_bin")
    return p


def config_from_args(args: argparse.Namespace) -> FitConfig:
    synthetic = None
    if args.synthetic_images is not None:
        synthetic = replace(SyntheticConfig(), images_per_object_per_level=args.synthetic_images)
    return FitConfig(
        out=args.out, model=args.model, weights=args.weights, data=args.data, stimuli=args.stimuli,
        stimuli_images=args.stimuli_images, neuroids=args.neuroids, bins=args.bins, responses_key=args.responses_key,
        layers=_names(args.layers), regions=_names(args.regions),
        regression=args.regression, n_components=args.n_components, mapping=args.mapping, offset=args.offset,
        convention=args.convention, splits=args.splits, n_splits=args.n_splits, device=args.device,
        input_size=args.input_size, width=args.width, seed=args.seed, times=args.times, image_off=args.image_off,
        batch_size=args.batch_size, pca=args.pca, pca_images=args.pca_images, synthetic=synthetic,
        synthetic_dir=args.synthetic_dir, keep_features=args.keep_features, min_ceiling=args.min_ceiling,
        nayebi_seeds=args.nayebi_seeds, model_threads=args.model_threads or None, threads=args.threads or None,
        progress=not args.no_progress, trust_checkpoint=args.trust_checkpoint,
        ceiling_missing=args.ceiling_missing.replace("-", "_") if args.ceiling_missing else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
