"""convrnn-import-release: convert one of the release's TensorFlow checkpoints into a convrnn checkpoint.

    convrnn-import-release --model rgc_intermediate --checkpoint ckpts/rgc_intermediate/model.ckpt \\
        --out rgc_intermediate.pt --verify

The output loads with ``convrnn.build_model("rgc_intermediate.pt")``, ``scripts/fit_neural.py --model`` and
``train.py`` fine-tuning. Nothing is downloaded: fetch the release's files first (docs/pretrained.md). A failed
import writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from convrnn.checkpoint import is_checkpoint_path, save_model_checkpoint
from convrnn.errors import UserError
from convrnn.release.importer import load_release_model
from convrnn.release.verify import collect_images, format_report, read_labels, verify_model
from convrnn.zoo import list_models


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convrnn-import-release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=f"release model name ({', '.join(list_models())})")
    p.add_argument("--checkpoint", required=True,
                   help="the release checkpoint prefix: DIR/model.ckpt (or DIR/model.ckpt-NNN), without .index")
    p.add_argument("--out", required=True, help="the convrnn checkpoint to write (.pt)")
    p.add_argument("--verify", action="store_true",
                   help="after importing, run the model on the synthetic objects (and --verify-images) and print "
                        "per-step decoder accuracy and logit statistics")
    p.add_argument("--verify-images", nargs="+", default=None, metavar="PATH",
                   help="image files or folders to run in --verify (resize, centre crop, ImageNet normalisation)")
    p.add_argument("--verify-labels", default=None, metavar="CSV",
                   help="filename,class_index rows (ImageNet indices) for --verify-images: adds top-1/top-5 per step")
    p.add_argument("--verify-json", default=None, metavar="PATH", help="also write the --verify report as JSON")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass in --verify (default 16)")
    # shape overrides: only for reduced copies of a model (tests, experiments); the release's files are full size
    p.add_argument("--width-multiplier", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--input-size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--num-classes", type=int, default=None, help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not is_checkpoint_path(out):
        raise UserError(f"--out {out}: use a .pt file name (also .pth or .ckpt), so that build_model and the "
                        "scripts recognise it as a checkpoint")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if (args.verify_images or args.verify_labels or args.verify_json) and not args.verify:
        raise UserError("--verify-images, --verify-labels and --verify-json need --verify")
    if args.verify_labels and not Path(args.verify_labels).is_file():
        raise UserError(f"--verify-labels: {args.verify_labels} not found")
    if args.verify_images:  # check the verify inputs before the (slower) import
        collect_images(args.verify_images)
    if args.verify_labels:
        read_labels(args.verify_labels)
    overrides = {k: v for k, v in (("width_multiplier", args.width_multiplier), ("input_size", args.input_size),
                                   ("num_classes", args.num_classes)) if v is not None}
    model, report = load_release_model(args.model, args.checkpoint, **overrides)
    print(report.summary())
    meta = {**report.as_meta(), "release_model": args.model, "overrides": overrides}
    save_model_checkpoint(model, out, meta=meta)
    print(f"wrote {out}")
    if args.verify:
        result = verify_model(model, image_paths=args.verify_images, labels_path=args.verify_labels,
                              batch_size=args.batch_size)
        print(format_report(result))
        if args.verify_json:
            Path(args.verify_json).write_text(json.dumps(result.as_dict(), indent=1) + "\n")
            print(f"wrote {args.verify_json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``convrnn-import-release``; bad input → ``error: ...`` on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
