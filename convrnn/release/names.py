"""The release's TensorFlow variable names ↔ our parameter names, derived from a built model.

Why derived from the model rather than listed per zoo name: the names follow from which modules a node has
(pre-memory conv, cell type and its convs, post conv, skip projection, readout), so one set of rules covers
every architecture, width and input size, and a module without a release name is caught by the importer's
"every parameter set exactly once" check instead of silently keeping random weights.

How the release names its variables (read in neuroailab/convrnns: ``models/model_func.py``, ``utils/main.py``,
``utils/cells.py``, ``utils/median_rgcell.py``, ``utils/cell_utils.py``, ``utils/model_tool.py``,
``utils/decoders.py`` and the model JSONs):

- Everything sits under ``tnn_model/<node>/``. The i-th pre-memory function runs in scope ``pre_<i>``, the
  i-th post-memory function in ``post_<i>``; the cell in a scope named after its class.
- Pre-memory conv of conv1…convN: ``component_conv`` → ``pre_0/weights_basenet`` (its feed-forward input
  only; the feedback of rgc_intermediate goes to the cell) and ``pre_0/bias``.
- Readout: shallow graphs run [dropout, conv 2×2 VALID] → ``imnetds/pre_1/{weights,bias}``; intermediate graphs
  run [global pool, dropout, flatten, fc] → ``imnetds/pre_3/{weights [in, out], bias}``.
- Intermediate residual blocks: second conv ``post_0/{weights,bias}``; the 1×1 projection of the bypass (only
  when depths differ) ``post_1/residual_add_weights``.
- Nodes without a cell keep the tnn "memory" with a constant ``memory_decay`` of 0 (skipped, checked to be 0);
  the time-decay models' cell *is* that variable, made trainable.
- Cells: ``ConvLSTMCell/{weights,bias}`` (+ ``peepholes/w_{i,f,o}_diag`` [H, W, C], layer norms
  ``{input,transform,forget,output,state}/{gamma,beta}``), ``ConvGRUCell/{gates,candidates}/{weights,bias}``,
  ``ConvUGRNNCell/{weights,bias}``, ``ConvIntersectionRNNCell/{weights,bias}``,
  ``ConvNormBasicCell/{i,s}/{weights,bias}`` (+ ``layer_norm/{gamma,beta}``) and ``ReciprocalGateCell/...``.
  The RGC has two codings: 11-node graphs use the "median" cell code (``median_rgcell.py``: full convs as
  ``<from>_to_<to>_weights``/``_bias``, separable ones in scopes ``tau``, ``out_to_cell``, ``gate``), other
  graphs the general cell code (``cells.py``: every conv in its own scope, ``weights`` and never a bias for full
  convs, ``depthwise_weights``/``pointwise_weights``/``bias`` for separable ones).
- Decoders (``utils/decoders.py``, under ``tnn_model/``): tmaxconf's β is ``normalize/softmax_beta`` [1];
  dthresh has constants ``normalize/softmax_beta`` (1) and ``decoder_threshold`` (0.9); both also create
  ``probs/softmax_beta`` and ``alpha/softmax_beta``, which feed only a diagnostic tensor (skipped).
- Training left ``<variable>/Momentum`` optimiser slots and ``global_step`` (skipped).

Layouts (TF → PyTorch): conv kernels HWIO → OIHW; depthwise [kh, kw, C, 1] → [C, 1, kh, kw]; fully connected
[in, out] → [out, in]; LSTM peepholes [H, W, C] → [C, H, W]; [1]-shaped scalars → 0-d. Concatenated inputs use
the same channel order in both (cell input before state; feed-forward before feedback, feedback sources sorted
by name), so no kernel flips or channel permutations are needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from convrnn.cells import (
    GRUCell,
    IntersectionRNNCell,
    LSTMCell,
    ReciprocalGatedCell,
    SimpleRNNCell,
    TimeDecayCell,
    UGRNNCell,
)
from convrnn.graph.model import ConvRNN
from convrnn.layers import SameConv2d, SeparableConv2d

SCOPE = "tnn_model"

#: layout name → permutation taking the TF array to the PyTorch tensor (None: reshape only)
LAYOUTS: dict[str, tuple[int, ...] | None] = {
    "conv": (3, 2, 0, 1),  # [kh, kw, in, out] → [out, in, kh, kw]
    "depthwise": (2, 3, 0, 1),  # [kh, kw, C, 1] → [C, 1, kh, kw]
    "fc": (1, 0),  # [in, out] → [out, in]
    "peephole": (2, 0, 1),  # [H, W, C] → [C, H, W]
    "vector": None,  # biases, layer-norm γ/β: same shape
    "scalar": None,  # [1] → 0-d
}


@dataclass(frozen=True)
class TensorMapping:
    """One release variable and the model tensor (parameter or buffer) it becomes."""

    release_name: str
    target: str
    layout: str


@dataclass(frozen=True)
class ConstantCheck:
    """A release variable that must hold a fixed value our model builds in (checked if present, then dropped)."""

    release_name: str
    value: float
    why: str


def release_shape(torch_shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The shape the release stores for a tensor of ``torch_shape`` in ``layout``."""
    if layout == "scalar":
        return (1,)
    perm = LAYOUTS[layout]
    if perm is None:
        return tuple(torch_shape)
    inverse = np.argsort(perm)
    return tuple(torch_shape[i] for i in inverse)


def to_torch(array: np.ndarray, layout: str) -> torch.Tensor:
    """A release array in our layout (a contiguous copy; values untouched)."""
    if layout == "scalar":
        if array.size != 1:
            raise ValueError(f"expected one value, got shape {array.shape}")
        return torch.from_numpy(np.ascontiguousarray(array.reshape(()))).clone()
    perm = LAYOUTS[layout]
    if perm is not None:
        array = array.transpose(perm)
    return torch.from_numpy(np.ascontiguousarray(array)).clone()


def to_release(tensor: torch.Tensor, layout: str) -> np.ndarray:
    """Our tensor in the release's layout (the inverse of ``to_torch``)."""
    array = tensor.detach().cpu().numpy()
    if layout == "scalar":
        return array.reshape(1)
    perm = LAYOUTS[layout]
    if perm is not None:
        array = array.transpose(np.argsort(perm))
    return np.ascontiguousarray(array)


# ---------------------------------------------------------------------------------------------- helpers
class _Collector:
    def __init__(self) -> None:
        self.mappings: list[TensorMapping] = []

    def add(self, release_name: str, target: str, layout: str) -> None:
        self.mappings.append(TensorMapping(release_name, target, layout))

    def conv(self, module: SameConv2d, ours: str, weights: str, bias: str) -> None:
        """A full conv: kernel → ``weights``; its bias, if the module has one, → ``bias`` (reported missing if the
        release has none, never ignored)."""
        self.add(weights, f"{ours}.weight", "conv")
        if module.bias is not None:
            self.add(bias, f"{ours}.bias", "vector")

    def separable(self, module: SeparableConv2d, ours: str, scope: str) -> None:
        if module.repeat is not None:
            self.add(f"{scope}/depthwise_weights_0", f"{ours}.repeat.0.weight", "depthwise")
        self.add(f"{scope}/depthwise_weights", f"{ours}.depthwise.weight", "depthwise")
        self.add(f"{scope}/pointwise_weights", f"{ours}.pointwise.weight", "conv")
        if module.pointwise.bias is not None:
            self.add(f"{scope}/bias", f"{ours}.pointwise.bias", "vector")

    def any_conv(self, module: nn.Module, ours: str, scope: str, flat: tuple[str, str]) -> None:
        """A cell conv: separable → scope/{depthwise,pointwise}_weights + bias; full → the ``flat`` names."""
        if isinstance(module, SeparableConv2d):
            self.separable(module, ours, scope)
        else:
            self.conv(module, ours, *flat)

    def norm(self, ours: str, scope: str) -> None:
        self.add(f"{scope}/gamma", f"{ours}.weight", "vector")
        self.add(f"{scope}/beta", f"{ours}.bias", "vector")


# ------------------------------------------------------------------------------------------------ cells
def _lstm(c: _Collector, cell: LSTMCell, ours: str, tf: str) -> None:
    tf = f"{tf}/ConvLSTMCell"
    c.conv(cell.conv, f"{ours}.conv", f"{tf}/weights", f"{tf}/bias")
    if cell.peepholes:
        for gate in ("i", "f", "o"):
            c.add(f"{tf}/peepholes/w_{gate}_diag", f"{ours}.peep_{gate}", "peephole")
    if cell.norms is not None:
        for k, scope in enumerate(("input", "transform", "forget", "output", "state")):
            c.norm(f"{ours}.norms.{k}", f"{tf}/{scope}")


def _gru(c: _Collector, cell: GRUCell, ours: str, tf: str) -> None:
    tf = f"{tf}/ConvGRUCell"
    c.conv(cell.gate_conv, f"{ours}.gate_conv", f"{tf}/gates/weights", f"{tf}/gates/bias")
    c.conv(cell.candidate_conv, f"{ours}.candidate_conv", f"{tf}/candidates/weights", f"{tf}/candidates/bias")


def _ugrnn(c: _Collector, cell: UGRNNCell, ours: str, tf: str) -> None:
    c.conv(cell.conv, f"{ours}.conv", f"{tf}/ConvUGRNNCell/weights", f"{tf}/ConvUGRNNCell/bias")


def _intersection(c: _Collector, cell: IntersectionRNNCell, ours: str, tf: str) -> None:
    c.conv(cell.conv, f"{ours}.conv", f"{tf}/ConvIntersectionRNNCell/weights", f"{tf}/ConvIntersectionRNNCell/bias")


def _simple(c: _Collector, cell: SimpleRNNCell, ours: str, tf: str) -> None:
    tf = f"{tf}/ConvNormBasicCell"
    c.conv(cell.input_conv, f"{ours}.input_conv", f"{tf}/i/weights", f"{tf}/i/bias")
    c.conv(cell.recurrent_conv, f"{ours}.recurrent_conv", f"{tf}/s/weights", f"{tf}/s/bias")
    if cell.norm is not None:
        c.norm(f"{ours}.norm", f"{tf}/layer_norm")


def _rgc_median(c: _Collector, cell: ReciprocalGatedCell, ours: str, tf: str) -> None:
    """``median_rgcell.py``: full convs are bare variables named after their path, separable ones scoped."""
    tf = f"{tf}/ReciprocalGateCell"

    def put(name: str, scope: str, flat: str) -> None:
        module = getattr(cell, name)
        if module is not None:
            c.any_conv(module, f"{ours}.{name}", f"{tf}/{scope}", (f"{tf}/{flat}_weights", f"{tf}/{flat}_bias"))

    put("cell_tau", "cell/tau", "cell/cell_to_cell")
    put("cell_gate", "cell/out_to_cell", "cell/out_to_cell")
    put("input_to_cell", "cell/input_to_cell", "cell/input_to_cell")
    put("out_tau", "out/tau", "out/out_to_out")
    put("out_gate", "out/gate", "out/cell_to_out")
    put("input_to_out", "out/input_to_out", "out/input_to_out")
    if cell.residual_projection is not None:
        c.add(f"{tf}/out/residual_add_weights", f"{ours}.residual_projection.weight", "conv")
    if cell.feedback is not None:
        entry = cell.feedback_entry
        c.any_conv(cell.feedback[0], f"{ours}.feedback.0", f"{tf}/{entry}/feedback",
                   (f"{tf}/{entry}/feedback_to_{entry}_weights", f"{tf}/{entry}/feedback_to_{entry}_bias"))


def _rgc_general(c: _Collector, cell: ReciprocalGatedCell, ours: str, tf: str) -> None:
    """``cells.py``: every conv in its own scope; full convs have ``weights`` only (the release never makes a bias)."""
    tf = f"{tf}/ReciprocalGateCell"

    def put(module: nn.Module | None, name: str, scope: str) -> None:
        if module is None:
            return
        if isinstance(module, SeparableConv2d):
            c.separable(module, f"{ours}.{name}", f"{tf}/{scope}")
        else:
            c.conv(module, f"{ours}.{name}", f"{tf}/{scope}/weights", f"{tf}/{scope}/bias")

    put(cell.cell_tau, "cell_tau", "cell/tau")
    put(cell.cell_gate, "cell_gate", "cell/gate")
    put(cell.input_to_cell, "input_to_cell", "cell/input_to_cell")
    put(cell.cell_residual, "cell_residual", "cell/res_to_cell")
    put(cell.out_tau, "out_tau", "out/tau")
    put(cell.out_gate, "out_gate", "out/gate")
    if "out_gate" in cell.residual_terms:  # the only residual term the general cell code implements
        put(cell.residual_terms["out_gate"], "residual_terms.out_gate", "out/residual_to_out_gate")
    if cell.input_to_out is not None:
        if isinstance(cell.input_to_out, SeparableConv2d):
            c.separable(cell.input_to_out, f"{ours}.input_to_out", f"{tf}/out/input_to_out")
        else:
            c.conv(cell.input_to_out, f"{ours}.input_to_out", f"{tf}/out/input_to_out_weights",
                   f"{tf}/out/input_to_out_bias")
    if cell.residual_projection is not None:
        c.add(f"{tf}/out/res_add/residual_add_weights", f"{ours}.residual_projection.weight", "conv")
    if cell.feedback is not None:
        put(cell.feedback[0], "feedback.0", f"{cell.feedback_entry}/feedback")
    if cell.cell_norm is not None:
        c.norm(f"{ours}.cell_norm", f"{tf}/cell/cell_layer_norm")
    if cell.out_norm is not None:
        c.norm(f"{ours}.out_norm", f"{tf}/out/out_layer_norm")


# ------------------------------------------------------------------------------------------------ model
def release_mapping(model: ConvRNN) -> list[TensorMapping]:
    """Every release variable that carries a weight of ``model``, with the model tensor it fills."""
    c = _Collector()
    median_rgc = len(model.layer_names) == 11  # the release picks the median cell code for 11-node graphs
    for name, node in model.nodes.items():
        tf, ours = f"{SCOPE}/{name}", f"nodes.{name}"
        readout = name == model.output_name
        if node.pre is not None:
            if readout:
                c.conv(node.pre, f"{ours}.pre", f"{tf}/pre_1/weights", f"{tf}/pre_1/bias")
            else:
                c.conv(node.pre, f"{ours}.pre", f"{tf}/pre_0/weights_basenet", f"{tf}/pre_0/bias")
        if node.fc is not None:
            c.add(f"{tf}/pre_3/weights", f"{ours}.fc.weight", "fc")
            c.add(f"{tf}/pre_3/bias", f"{ours}.fc.bias", "vector")
        cell, cell_ours = node.cell, f"{ours}.cell"
        if isinstance(cell, LSTMCell):
            _lstm(c, cell, cell_ours, tf)
        elif isinstance(cell, GRUCell):
            _gru(c, cell, cell_ours, tf)
        elif isinstance(cell, UGRNNCell):
            _ugrnn(c, cell, cell_ours, tf)
        elif isinstance(cell, IntersectionRNNCell):
            _intersection(c, cell, cell_ours, tf)
        elif isinstance(cell, SimpleRNNCell):
            _simple(c, cell, cell_ours, tf)
        elif isinstance(cell, TimeDecayCell):
            c.add(f"{tf}/memory_decay", f"{cell_ours}.decay", "scalar")
        elif isinstance(cell, ReciprocalGatedCell):
            (_rgc_median if median_rgc else _rgc_general)(c, cell, cell_ours, tf)
        if node.post_conv is not None:
            c.conv(node.post_conv, f"{ours}.post_conv", f"{tf}/post_0/weights", f"{tf}/post_0/bias")
        if isinstance(node.skip, SameConv2d):
            c.add(f"{tf}/post_1/residual_add_weights", f"{ours}.skip.weight", "conv")
    if model.decoder == "tmaxconf":
        c.add(f"{SCOPE}/normalize/softmax_beta", "decoder_beta", "scalar")
    return c.mappings


def release_constants(model: ConvRNN) -> list[ConstantCheck]:
    """Release variables whose value our model fixes: checked when present, then dropped."""
    checks = [ConstantCheck(f"{SCOPE}/{name}/memory_decay", 0.0, "constant memory of a node without a cell")
              for name, node in model.nodes.items() if node.cell is None]
    if model.decoder == "dthresh":
        checks.append(ConstantCheck(f"{SCOPE}/normalize/softmax_beta", 1.0, "dthresh decoder's fixed softmax β"))
        checks.append(ConstantCheck(f"{SCOPE}/decoder_threshold", 0.9, "dthresh decoder's fixed threshold"))
    return checks


#: variables the decoders create that feed only a diagnostic tensor (the "alpha" weights), never the output
DECODER_DIAGNOSTICS = (f"{SCOPE}/probs/softmax_beta", f"{SCOPE}/alpha/softmax_beta")


def skip_reason(name: str, model: ConvRNN) -> str | None:
    """Why a checkpoint variable that carries no weight of ``model`` is dropped, or None if it should not exist."""
    if name.endswith("/Momentum"):
        return "optimiser slot (momentum)"
    if name == "global_step":
        return "training step counter"
    if model.decoder in ("tmaxconf", "dthresh") and name in DECODER_DIAGNOSTICS:
        return "decoder diagnostic (feeds no output)"
    return None
