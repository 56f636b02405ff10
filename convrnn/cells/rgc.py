"""Reciprocal gated cell (RGC, docs/models.md, 'Cells').

Two leaky, gated integrators that gate each other: the memory c is gated by the previous output h, and the
output h by the previous memory c. One class covers the whole search space; `rgc_shallow` and the released
"median" cell are presets (see `PRESETS`), not separate classes.

    c_t = f_c( τ_c ⊙ c_{t−1} + γ_c ⊙ U_c ),   τ_c = o_τ + k_τ·g_τ(T_c),  γ_c = o_g + k_g·g_g(G_c)
    h_t = f_h( τ_h ⊙ h_{t−1} + γ_h ⊙ U_h ),   τ_h = o_τ + k_τ·g_τ(T_h),  γ_h = o_g + k_g·g_g(G_h)
    T_c = W(c_{t−1}), G_c = W(h_{t−1}), T_h = W(h_{t−1}), G_h = W(c_{t−1})  (+ optional input/residual terms)
    U_c = W_ff(a'),  U_h = W_io(a') (or a' itself when in_out_kernel = 0) + S(x) + F_t,  a' = f_in(a)

Choices where the release is silent (documented here, used nowhere in the zoo): `cell_to_out` adds a conv of
the *new* memory c_t to U_h; `cell_residual` adds a 1×1 projection of x to U_c; `residual_to_*` and
`input_to_*` terms are convs with the tau/gate kernel size and separability of the term they join; the scalar
tau/gate biases are added only on non-separable paths, as the release code does; `layer_norm` normalises the
pre-activation sums of c and h. `crelu` is not supported (it would change the state depth mid-update).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from convrnn.cells.base import RecurrentCell, State, activation, make_layer_norm
from convrnn.layers import SameConv2d, SeparableConv2d

MEDIAN_TAU = 0.9219348064291611
MEDIAN_GATE = 0.7006566684988862


@dataclass(frozen=True)
class RGCSettings:
    """Every knob of the RGC with its default: the one place the defaults live (presets are instances).

    The defaults are the released median cell's, except its feedback, memory-less and initialiser knobs.
    `cell_depth=None` means "as deep as the output"; `gate_kernel=0` removes the memory.
    """

    cell_depth: int | None = 64
    tau_kernel: int = 7
    gate_kernel: int = 7
    cell_tau_kernel: int | None = None
    ff_kernel: int = 2
    in_out_kernel: int = 3
    feedback_kernel: int = 1
    tau_separable: bool = True
    gate_separable: bool = True
    ff_separable: bool = False
    in_out_separable: bool = False
    feedback_separable: bool = False
    ds_repeat: bool = False
    tau_nonlinearity: str = "sigmoid"
    gate_nonlinearity: str = "tanh"
    input_activation: str = "elu"
    feedback_activation: str = "identity"
    cell_activation: str = "elu"
    out_activation: str = "elu"
    tau_offset: float = MEDIAN_TAU
    tau_multiplier: float = -MEDIAN_TAU
    gate_offset: float = MEDIAN_GATE
    gate_multiplier: float = -MEDIAN_GATE
    tau_bias: float = 0.0
    gate_bias: float = 0.0
    input_to_cell: bool = True
    input_to_out: bool = True
    cell_to_out: bool = False
    out_residual: bool = True
    cell_residual: bool = False
    residual_to_cell_tau: bool = False
    residual_to_cell_gate: bool = False
    residual_to_out_tau: bool = False
    residual_to_out_gate: bool = False
    input_to_tau: bool = False
    input_to_gate: bool = False
    feedback_entry: str = "out"
    conv_bias: bool = True
    kernel_init: str | dict | None = None
    weight_decay: float = 2.034e-4
    bias_decay: float = 0.0
    layer_norm: bool = False
    clip_kernels: str = "separable"


PRESETS: dict[str, RGCSettings] = {
    # docs/models.md, 'Cells': all kernels 3×3 and full, 1−σ(·) factors, no biases anywhere, GU init, L2 1e-4
    "rgc_shallow": RGCSettings(
        cell_depth=None, tau_kernel=3, gate_kernel=3, ff_kernel=3, in_out_kernel=0,
        tau_separable=False, gate_separable=False, ff_separable=False,
        tau_nonlinearity="sigmoid", gate_nonlinearity="sigmoid", input_activation="identity",
        cell_activation="elu", out_activation="elu",
        tau_offset=1.0, tau_multiplier=-1.0, gate_offset=1.0, gate_multiplier=-1.0, tau_bias=0.0, gate_bias=0.0,
        input_to_cell=True, input_to_out=True, out_residual=False, residual_to_out_gate=True,
        conv_bias=False, kernel_init="glorot_uniform", weight_decay=1e-4, clip_kernels="all",
    ),
    # docs/models.md, 'Cells' (median_rgcell_cfg) + the release's feedback ('Feedback'): 1×1, full, identity, into U_h
    "median": RGCSettings(
        cell_depth=64, tau_kernel=7, gate_kernel=7, ff_kernel=2, in_out_kernel=3, feedback_kernel=1,
        tau_separable=True, gate_separable=True, ff_separable=False, in_out_separable=False,
        feedback_separable=False,
        tau_nonlinearity="sigmoid", gate_nonlinearity="tanh", input_activation="elu",
        feedback_activation="identity", cell_activation="elu", out_activation="elu",
        tau_offset=MEDIAN_TAU, tau_multiplier=-MEDIAN_TAU, gate_offset=MEDIAN_GATE, gate_multiplier=-MEDIAN_GATE,
        tau_bias=4.147, gate_bias=2.777,  # inert: the release adds them only on non-separable paths
        input_to_cell=True, input_to_out=True, out_residual=True, feedback_entry="out",
        conv_bias=True, kernel_init={"variance_scaling": 0.6393}, weight_decay=2.034e-4,
    ),
}
# what the median config itself says about feedback, before the release overrode it (docs/models.md, 'Feedback')
PRESETS["median_search_feedback"] = replace(
    PRESETS["median"], feedback_kernel=8, feedback_separable=True, feedback_activation="elu", feedback_entry="input",
)


class ReciprocalGatedCell(RecurrentCell):
    """The RGC. Its keyword arguments are the fields of `RGCSettings` (its signature lists them, with defaults)."""

    handles_feedback = True

    def __init__(self, in_channels: int, out_channels: int, spatial_size: tuple[int, int], residual_channels: int = 0,
                 feedback_channels: int = 0, *, preset: str | None = None, **knobs: Any) -> None:
        super().__init__(in_channels, out_channels, spatial_size)
        if preset is not None:
            raise TypeError("resolve presets with build_rgc(...) or the YAML 'preset' key, not the constructor")
        s = self.settings = RGCSettings(**knobs)  # an unknown knob is a TypeError naming it
        if s.cell_activation == "crelu" or s.out_activation == "crelu":
            raise ValueError("crelu activations are not supported by this RGC implementation")
        if s.feedback_entry not in ("input", "cell", "out"):
            raise ValueError(f"feedback_entry must be 'input', 'cell' or 'out', got {s.feedback_entry!r}")
        cell_depth = out_channels if s.cell_depth is None else s.cell_depth
        if s.gate_kernel == 0:
            cell_depth = 0  # gate_filter_size = 0 removes the memory (output-only cell)
        if s.in_out_kernel == 0 and s.input_to_out and in_channels != out_channels:
            raise ValueError(f"in_out_kernel=0 passes the input straight to h, so in_channels ({in_channels}) "
                             f"must equal out_channels ({out_channels})")
        if s.feedback_entry == "cell" and cell_depth == 0 and feedback_channels:
            raise ValueError("feedback_entry='cell' needs a memory (cell_depth > 0 and gate_kernel > 0)")
        self.cell_depth = cell_depth
        self.residual_channels = residual_channels
        self.feedback_entry = s.feedback_entry
        self.tau_offset, self.tau_multiplier = s.tau_offset, s.tau_multiplier
        self.gate_offset, self.gate_multiplier = s.gate_offset, s.gate_multiplier
        self.tau_bias = 0.0 if s.tau_separable else s.tau_bias
        self.gate_bias = 0.0 if s.gate_separable else s.gate_bias
        self.tau_nonlinearity = activation(s.tau_nonlinearity)
        self.gate_nonlinearity = activation(s.gate_nonlinearity)
        self.input_activation = activation(s.input_activation)
        self.cell_activation = activation(s.cell_activation)
        self.out_activation = activation(s.out_activation)
        cell_tau_kernel = s.tau_kernel if s.cell_tau_kernel is None else s.cell_tau_kernel
        if s.clip_kernels not in ("separable", "all", "none"):
            raise ValueError(f"clip_kernels must be 'separable', 'all' or 'none', got {s.clip_kernels!r}")
        repeat = nn.ELU() if s.ds_repeat else None

        def conv(cin: int, cout: int, kernel: int, separable: bool, bias: bool = s.conv_bias) -> nn.Module:
            # kernels larger than the map are clipped: separable ones in the median cell, all in rgc_shallow
            clipped = s.clip_kernels == "all" or (s.clip_kernels == "separable" and separable and kernel > 1)
            clip = self.spatial_size if clipped else None
            if separable and kernel > 1:
                return SeparableConv2d(cin, cout, kernel, bias=bias, init=s.kernel_init,
                                       weight_decay=s.weight_decay, bias_decay=s.bias_decay, clip_to=clip,
                                       repeat_activation=repeat)
            return SameConv2d(cin, cout, kernel, bias=bias, init=s.kernel_init, weight_decay=s.weight_decay,
                              bias_decay=s.bias_decay, clip_to=clip)

        C, Cc, Cx = out_channels, cell_depth, residual_channels
        has_cell = Cc > 0
        # memory path
        self.cell_tau = conv(Cc, Cc, cell_tau_kernel, s.tau_separable) if has_cell else None
        self.cell_gate = conv(C, Cc, s.gate_kernel, s.gate_separable) if has_cell else None
        self.input_to_cell = (conv(in_channels, Cc, s.ff_kernel, s.ff_separable)
                              if has_cell and s.input_to_cell else None)
        # output path
        self.out_tau = conv(C, C, s.tau_kernel, s.tau_separable)
        self.out_gate = conv(Cc, C, s.gate_kernel, s.gate_separable) if has_cell else None
        self.input_to_out = (conv(in_channels, C, s.in_out_kernel, s.in_out_separable)
                             if s.input_to_out and s.in_out_kernel > 0 else None)
        self.pass_input_to_out = s.input_to_out and s.in_out_kernel == 0
        self.cell_to_out = (conv(Cc, C, max(s.in_out_kernel, 1), s.in_out_separable)
                            if has_cell and s.cell_to_out else None)
        # optional extra terms (all off in the released cells)
        self.input_terms = nn.ModuleDict()
        if s.input_to_tau:
            self.input_terms["cell_tau"] = conv(in_channels, Cc, s.tau_kernel, s.tau_separable) if has_cell else None
            self.input_terms["out_tau"] = conv(in_channels, C, s.tau_kernel, s.tau_separable)
        if s.input_to_gate:
            self.input_terms["cell_gate"] = (conv(in_channels, Cc, s.gate_kernel, s.gate_separable)
                                              if has_cell else None)
            self.input_terms["out_gate"] = conv(in_channels, C, s.gate_kernel, s.gate_separable)
        self.residual_terms = nn.ModuleDict()
        wanted = {"cell_tau": s.residual_to_cell_tau and has_cell,
                  "cell_gate": s.residual_to_cell_gate and has_cell,
                  "out_tau": s.residual_to_out_tau, "out_gate": s.residual_to_out_gate}
        for term, on in wanted.items():
            if on:
                if not Cx:
                    raise ValueError(f"residual_to_{term} needs the node's raw input (residual_channels > 0)")
                target = Cc if term.startswith("cell") else C
                kernel, separable = ((s.tau_kernel, s.tau_separable) if term.endswith("tau")
                                     else (s.gate_kernel, s.gate_separable))
                self.residual_terms[term] = conv(Cx, target, kernel, separable)
        self.input_terms = nn.ModuleDict({k: v for k, v in self.input_terms.items() if v is not None})
        # bypass S(x): identity when depths match, else a 1×1 projection, no bias, GU init, no L2
        # (docs/models.md, 'The node')
        self.out_residual = s.out_residual and Cx > 0
        self.residual_projection = (SameConv2d(Cx, C, 1, bias=False, init="glorot_uniform")
                                    if self.out_residual and Cx != C else None)
        self.cell_residual = (SameConv2d(Cx, Cc, 1, bias=False, init="glorot_uniform")
                              if s.cell_residual and has_cell and Cx else None)
        # long-range feedback into input, memory or output
        self.feedback = None
        if feedback_channels:
            target = {"input": in_channels, "cell": Cc, "out": C}[s.feedback_entry]
            self.feedback = nn.Sequential(
                conv(feedback_channels, target, s.feedback_kernel, s.feedback_separable, bias=True),
                activation(s.feedback_activation),
            )
        self.cell_norm = make_layer_norm(Cc) if s.layer_norm and has_cell else None
        self.out_norm = make_layer_norm(C) if s.layer_norm else None

    def state_shapes(self) -> list[tuple[int, ...]]:
        shapes = [(self.out_channels, *self.spatial_size)]
        if self.cell_depth:
            shapes.insert(0, (self.cell_depth, *self.spatial_size))
        return shapes  # (c, h) or (h,)

    def _factor(self, z: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "tau":
            return self.tau_offset + self.tau_multiplier * self.tau_nonlinearity(z + self.tau_bias)
        return self.gate_offset + self.gate_multiplier * self.gate_nonlinearity(z + self.gate_bias)

    def _extra(self, term: str, a: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        if term in self.input_terms:
            total = total + self.input_terms[term](a)
        if term in self.residual_terms:
            total = total + self.residual_terms[term](x)
        return total

    def forward(self, input: torch.Tensor, state: State, feedback: torch.Tensor | None = None,
                residual: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        if (self.residual_terms or self.out_residual or self.cell_residual is not None) and residual is None:
            raise ValueError("this RGC uses the node's raw input; pass residual=x")
        if self.cell_depth:
            c, h = state
        else:
            (h,), c = state, None
        fb = self.feedback(feedback) if (self.feedback is not None and feedback is not None) else None
        a = input + fb if (fb is not None and self.feedback_entry == "input") else input
        a = self.input_activation(a)

        c_new = None
        if c is not None:
            tau_c = self._factor(self.cell_tau(c) + self._extra("cell_tau", a, residual), "tau")
            gate_c = self._factor(self.cell_gate(h) + self._extra("cell_gate", a, residual), "gate")
            u_c = self.input_to_cell(a) if self.input_to_cell is not None else torch.zeros_like(c)
            if self.cell_residual is not None:
                u_c = u_c + self.cell_residual(residual)
            if fb is not None and self.feedback_entry == "cell":
                u_c = u_c + fb
            z_c = tau_c * c + gate_c * u_c
            c_new = self.cell_activation(self.cell_norm(z_c) if self.cell_norm is not None else z_c)

        tau_h = self._factor(self.out_tau(h) + self._extra("out_tau", a, residual), "tau")
        gate_pre = self._extra("out_gate", a, residual)
        if c is not None:
            gate_pre = self.out_gate(c) + gate_pre
        gate_h = self._factor(torch.as_tensor(gate_pre) if isinstance(gate_pre, float) else gate_pre, "gate")
        u_h = torch.zeros_like(h)
        if self.input_to_out is not None:
            u_h = self.input_to_out(a)
        elif self.pass_input_to_out:
            u_h = a
        if self.cell_to_out is not None:
            u_h = u_h + self.cell_to_out(c_new)
        if self.out_residual:
            u_h = u_h + (residual if self.residual_projection is None else self.residual_projection(residual))
        if fb is not None and self.feedback_entry == "out":
            u_h = u_h + fb
        z_h = tau_h * h + gate_h * u_h
        h_new = self.out_activation(self.out_norm(z_h) if self.out_norm is not None else z_h)
        return h_new, ((c_new, h_new) if c_new is not None else (h_new,))


# The constructor takes RGCSettings' fields as keyword arguments; say so in its signature, so that introspection
# (`convrnn.cells.cell_options`, the search space's type checks) sees every knob and its default.
ReciprocalGatedCell.__init__.__signature__ = inspect.signature(ReciprocalGatedCell.__init__).replace(  # type: ignore[attr-defined]
    parameters=[
        *[p for p in inspect.signature(ReciprocalGatedCell.__init__).parameters.values() if p.kind != p.VAR_KEYWORD],
        *[inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
          for f in fields(RGCSettings)],
    ]
)


def rgc_settings(preset: str | None = None, **knobs: Any) -> RGCSettings:
    """The settings of a named preset (or the defaults) with `knobs` replaced; names the unknown preset."""
    if preset is None:
        return RGCSettings(**knobs)
    if preset not in PRESETS:
        raise ValueError(f"unknown RGC preset {preset!r}; known: {sorted(PRESETS)}")
    return replace(PRESETS[preset], **knobs)


def build_rgc(in_channels: int, out_channels: int, spatial_size: tuple[int, int], residual_channels: int = 0,
              feedback_channels: int = 0, preset: str | None = None, **knobs: Any) -> ReciprocalGatedCell:
    """An RGC from a named preset plus overrides (what the YAML `cell: {type: rgc, preset: ...}` calls)."""
    settings = rgc_settings(preset, **knobs)
    return ReciprocalGatedCell(in_channels, out_channels, spatial_size, residual_channels, feedback_channels,
                               **{f.name: getattr(settings, f.name) for f in fields(settings)})
