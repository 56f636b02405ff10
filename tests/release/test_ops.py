"""Imported modules compute what TensorFlow's ops computed with the same weights on the same inputs.

The fixture script ran tf.nn.conv2d (SAME with the asymmetric 7×7/2, 2×2 and 4×4 paddings; VALID),
tf.nn.separable_conv2d (a 7×7 and a clipped 4×4 depthwise kernel) and the fully connected readout (matmul + bias)
with the checkpoint's weights, and stored inputs and outputs (NHWC) in ops.npz.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convrnn.layers import SameConv2d, SeparableConv2d
from convrnn.release import load_release_checkpoint
from convrnn.release.names import release_mapping

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES = [(name, op["key"]) for name in ("rgc_intermediate_tmaxconf", "lstm_shallow")
         for op in json.loads((FIXTURES / name / "manifest.json").read_text())["ops"]]


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize(("name", "key"), CASES)
def test_module_output_equals_tensorflow_op(name, key):
    info = json.loads((FIXTURES / name / "manifest.json").read_text())
    op = next(o for o in info["ops"] if o["key"] == key)
    model = load_release_checkpoint(info["model"], FIXTURES / name / info["checkpoint"], **info["overrides"])
    target = {m.release_name: m.target for m in release_mapping(model)}[op["weights"]]
    arrays = np.load(FIXTURES / name / "ops.npz")
    x, y = arrays[f"{key}_x"], torch.from_numpy(arrays[f"{key}_y"])
    with torch.no_grad():
        if op["kind"] == "conv":
            module = model.get_submodule(target.removesuffix(".weight"))
            assert isinstance(module, SameConv2d) and module.stride == op["stride"]
            assert module.padding == op["padding"].lower()
            out = module(_nchw(x)).permute(0, 2, 3, 1)
        elif op["kind"] == "separable":
            module = model.get_submodule(target.removesuffix(".depthwise.weight"))
            assert isinstance(module, SeparableConv2d)
            out = module(_nchw(x)).permute(0, 2, 3, 1)
        else:
            module = model.get_submodule(target.removesuffix(".weight"))
            out = module(torch.from_numpy(x))
    assert out.shape == y.shape
    torch.testing.assert_close(out, y, rtol=1e-5, atol=2e-5)
