"""Imported models against the release's own TensorFlow graph code, step by step.

``make_release_outputs.py`` built each fixture's model with the release's ``model_func`` (its unroller, cells,
harbors and decoders, under TensorFlow with ``tf.compat.v1``), restored the fixture checkpoint with the release's
own loader (every graph variable restored, no checkpoint variable left over) and stored the outputs of four
layers at every step and the decoder's output for a fixed input. Our model, built from the zoo and filled by the
importer, must give the same numbers up to float32 rounding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from convrnn.release import load_release_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FOLDERS = sorted(p for p in FIXTURES.iterdir() if (p / "release_outputs.npz").is_file())
# optional: the full-size pair written by `make_release_outputs.py SRC --full-size DIR` (too large to commit)
if os.environ.get("CONVRNN_RELEASE_FULL"):
    FOLDERS += sorted(p for p in Path(os.environ["CONVRNN_RELEASE_FULL"]).iterdir()
                      if (p / "release_outputs.npz").is_file())


def test_every_fixture_has_release_outputs():
    assert len([f for f in FOLDERS if f.parent == FIXTURES]) == 10


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f"{f.parent.name}/{f.name}")
def test_imported_model_reproduces_the_release_forward_pass(folder):
    info = json.loads((folder / "manifest.json").read_text())
    model = load_release_checkpoint(info["model"], folder / info["checkpoint"], **info["overrides"])
    ref = np.load(folder / "release_outputs.npz")
    layers = [k.split(":", 1)[1] for k in ref.files if k.startswith("features:")]
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # the release's normalisation, as the script did it
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    x = (ref["pixels"].astype(np.float32) / np.float32(255.0) - mean) / std
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NHWC → NCHW
    with torch.no_grad():
        out = model(x, return_features=[la for la in layers if la != model.output_name])
    assert len(layers) == 4
    for layer in layers:
        expected = torch.from_numpy(ref[f"features:{layer}"])  # [T, B, H, W, C] or [T, B, K]
        ours = out.logits if layer == model.output_name else out.features[layer].permute(0, 1, 3, 4, 2)
        assert ours.shape == expected.shape, layer
        scale = max(1.0, expected.abs().max().item())
        assert (ours - expected).abs().max().item() <= 2e-5 * scale, layer
    decoded = torch.from_numpy(ref["decoded"])
    assert (model.decode(out.logits) - decoded).abs().max().item() <= 2e-5 * max(1.0, decoded.abs().max().item())
