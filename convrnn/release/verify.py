"""A quick look at an imported model: does it behave like a trained network, step by step?

Why: an import with a layout or naming error still runs; it just computes something else, and the usual symptom
is near-uniform logits (or logits that do not depend on the image). This runs the model, with its own schedule
and decoder, on

- the embedded synthetic objects (no download): per step, how well the step's logits tell the object
  categories apart (nearest class mean, cosine, centroids from half of the objects, tested on the others;
  chance = 1 / categories); the release's models never saw these shapes, so this measures how
  category-consistent the responses are, not ImageNet accuracy;
- optionally a handful of the user's images (resize shorter side to 256/224 × input size, centre crop, ImageNet
  normalisation; the release's preprocessing): top-5 classes of the decoder's output per image and, with labels
  (ImageNet class indices), top-1/top-5 accuracy per step and of the decoder;

and reports for every step the logit statistics that expose a broken import: logit mean and std, the mean
largest softmax probability, the mean softmax entropy as a fraction of log(classes) (1 = uniform), how much the
logits vary across images (``image_std``: std over images, averaged over classes; 0 = the image does not matter),
and how many distinct classes win across the images.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convrnn.data.synthetic_objects import SyntheticObjects
from convrnn.data.transforms import Normalize, decode_resize_center_crop
from convrnn.errors import UserError
from convrnn.graph.model import ConvRNN

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class VerifyReport:
    """Per-step statistics (lists of length T) on the synthetic objects and, if given, the user's images."""

    model: str
    steps: int
    synthetic: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "steps": self.steps, "synthetic": self.synthetic, "images": self.images}


def logit_stats(logits: torch.Tensor) -> dict[str, list[float]]:
    """Per-step statistics of logits [T, B, K]."""
    logits = logits.double()
    probs = torch.softmax(logits, dim=-1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-300))).sum(-1) / math.log(logits.shape[-1])
    winners = logits.argmax(-1)
    return {
        "logit_mean": logits.mean(dim=(1, 2)).tolist(),
        "logit_std": logits.std(dim=(1, 2)).tolist(),
        "image_std": (logits.std(dim=1).mean(-1) if logits.shape[1] > 1 else torch.zeros(len(logits))).tolist(),
        "max_prob": probs.amax(-1).mean(-1).tolist(),
        "entropy": entropy.mean(-1).tolist(),
        "distinct_top1": [len(torch.unique(w)) for w in winners],
    }


def _nearest_mean_accuracy(features: torch.Tensor, labels: np.ndarray, train: np.ndarray) -> float:
    """Accuracy of nearest class mean (cosine) on the rows not in ``train``."""
    x = torch.nn.functional.normalize(features.double(), dim=-1)
    classes = np.unique(labels[train])
    centroids = torch.stack([x[torch.from_numpy(train & (labels == c))].mean(0) for c in classes])
    predicted = classes[(x[torch.from_numpy(~train)] @ centroids.T).argmax(-1).numpy()]
    return float((predicted == labels[~train]).mean())


@torch.inference_mode()
def run_logits(model: ConvRNN, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Logits [T, B, K] with the model's own schedule, in batches (channels_last: fast on CPU)."""
    parts = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].contiguous(memory_format=torch.channels_last)
        parts.append(model(batch).logits.float())
    return torch.cat(parts, dim=1)


def synthetic_images(size: int, categories: int = 8, objects: int = 4, seed: int = 0
                     ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Normalised synthetic-object images [N, 3, size, size], category labels, and the object-half split."""
    generator = SyntheticObjects(image_size=size, n_categories=categories, objects_per_category=objects, seed=seed)
    table = generator.sample_table(1, levels=(0, 3), split_seed=7)
    pixels = np.stack([generator.render(row) for _, row in table.iterrows()])  # [N, H, W, 3] uint8
    images = Normalize()(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    labels = table["category_index"].to_numpy()
    within = table["object_index"].to_numpy() % objects  # object number inside its category
    return images, labels, within < objects // 2


def collect_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Image files named directly or found in the given folders (``UserError`` if there are none)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"--verify-images: {p} does not exist")
    if not found:
        raise UserError(f"--verify-images: no images ({', '.join(IMAGE_SUFFIXES)}) in {[str(p) for p in paths]}")
    return found


def read_labels(path: str | os.PathLike) -> dict[str, int]:
    """``filename,label`` rows (a header row is allowed): ImageNet class index per image file name."""
    labels: dict[str, int] = {}
    with open(path, newline="") as handle:
        for i, row in enumerate(csv.reader(handle)):
            if not row or (i == 0 and not row[-1].strip().lstrip("-").isdigit()):
                continue
            if len(row) < 2 or not row[1].strip().isdigit():
                raise UserError(f"{path}: line {i + 1}: expected 'filename,class_index', got {row}")
            labels[Path(row[0].strip()).name] = int(row[1])
    return labels


def verify_model(model: ConvRNN, *, image_paths: list[str | os.PathLike] | None = None,
                 labels_path: str | os.PathLike | None = None, categories: int = 8, objects: int = 4,
                 batch_size: int = 16) -> VerifyReport:
    """Run ``model`` on the synthetic objects (and the given images) and collect the per-step report."""
    model = model.eval()
    size = model.input_size
    images, labels, train = synthetic_images(size, categories, objects)
    logits = run_logits(model, images, batch_size)
    decoded = model.decode(logits)
    report = VerifyReport(model=model.name, steps=logits.shape[0])
    report.synthetic = {
        "images": int(images.shape[0]), "categories": categories, "chance": 1.0 / categories,
        "accuracy": [_nearest_mean_accuracy(z, labels, train) for z in logits],
        "decoder_accuracy": _nearest_mean_accuracy(decoded, labels, train),
        **logit_stats(logits),
    }
    if image_paths:
        files = collect_images(image_paths)
        known = read_labels(labels_path) if labels_path else {}
        resize = round(size * 256 / 224)
        batch = []
        for f in files:
            try:
                batch.append(decode_resize_center_crop(f.read_bytes(), resize, size))
            except Exception as exc:  # PIL raises many types for unreadable files
                raise UserError(f"--verify-images: cannot read {f} as an image ({exc})") from exc
        user = Normalize()(torch.stack(batch))
        user_logits = run_logits(model, user, batch_size)
        user_decoded = model.decode(user_logits)
        top5 = user_decoded.topk(min(5, user_decoded.shape[-1]), dim=-1)
        probs = torch.softmax(user_decoded.double(), -1)
        report.images = {
            "files": [str(f) for f in files],
            "decoder_top5_classes": top5.indices.tolist(),
            "decoder_top5_prob": probs.gather(-1, top5.indices).tolist(),
            **logit_stats(user_logits),
        }
        if known:
            have = [i for i, f in enumerate(files) if f.name in known]
            if have:
                target = torch.tensor([known[files[i].name] for i in have])
                step_logits, dec = user_logits[:, have], user_decoded[have]
                k = min(5, dec.shape[-1])
                report.images.update({
                    "labelled": len(have),
                    "top1": [float((z.argmax(-1) == target).double().mean()) for z in step_logits],
                    "top5": [float((z.topk(k, -1).indices == target[:, None]).any(-1).double().mean())
                             for z in step_logits],
                    "decoder_top1": float((dec.argmax(-1) == target).double().mean()),
                    "decoder_top5": float((dec.topk(k, -1).indices == target[:, None]).any(-1).double().mean()),
                })
    return report


def format_report(report: VerifyReport) -> str:
    """The report as a plain-text table (one row per step)."""
    syn = report.synthetic
    lines = [f"verify {report.model}: {syn['images']} synthetic objects, {syn['categories']} categories "
             f"(nearest class mean on held-out objects; chance {syn['chance']:.3f})",
             "step  synth_acc  logit_mean  logit_std  image_std  max_prob  entropy  distinct_top1"]
    for t in range(report.steps):
        lines.append(f"{t:4d}  {syn['accuracy'][t]:9.3f}  {syn['logit_mean'][t]:10.4f}  {syn['logit_std'][t]:9.4f}"
                     f"  {syn['image_std'][t]:9.4f}  {syn['max_prob'][t]:8.4f}  {syn['entropy'][t]:7.4f}"
                     f"  {syn['distinct_top1'][t]:13d}")
    lines.append(f"decoder output: synthetic accuracy {syn['decoder_accuracy']:.3f}")
    lines.append("entropy: fraction of log(classes) (1.0 = uniform logits); image_std: how much the logits change "
                 "with the image (0 = not at all). Near-uniform or image-independent logits after the image has "
                 "reached the readout mean a broken import or an untrained model (docs/pretrained.md)")
    img = report.images
    if img:
        lines.append(f"\nyour images ({len(img['files'])}): decoder top-5 classes (probability)")
        for f, classes, probs in zip(img["files"], img["decoder_top5_classes"], img["decoder_top5_prob"], strict=True):
            lines.append(f"  {f}: " + ", ".join(f"{c} ({p:.3f})" for c, p in zip(classes, probs, strict=True)))
        if "labelled" in img:
            lines.append(f"labelled images: {img['labelled']}; decoder top-1 {img['decoder_top1']:.3f}, "
                         f"top-5 {img['decoder_top5']:.3f}")
            lines.append("step  top1   top5   max_prob  entropy")
            for t in range(report.steps):
                lines.append(f"{t:4d}  {img['top1'][t]:.3f}  {img['top5'][t]:.3f}  {img['max_prob'][t]:8.4f}"
                             f"  {img['entropy'][t]:7.4f}")
    return "\n".join(lines)
