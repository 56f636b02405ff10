"""TensorFlow initialisers (docs/models.md, 'Conventions'): the released models were trained with TF's fan-in
conventions."""

from __future__ import annotations

import math

import torch

# std of a unit normal truncated at ±2σ; TF divides by it so the truncated draw has the requested std
_TRUNCATED_STD = 0.87962566103423978


def tf_fans(weight: torch.Tensor, depthwise: bool = False) -> tuple[int, int]:
    """TF fan-in/fan-out of a PyTorch conv or linear weight.

    TF counts a depthwise kernel [kh, kw, C, 1] as fan_in = kh·kw·C (PyTorch's grouped conv would say kh·kw).
    """
    if weight.dim() == 2:  # linear [out, in]
        return weight.shape[1], weight.shape[0]
    out_ch, in_per_group, kh, kw = weight.shape
    receptive = kh * kw
    if depthwise:
        return receptive * out_ch, receptive  # multiplier 1: fan_out = kh·kw·1
    return receptive * in_per_group, receptive * out_ch


@torch.no_grad()
def variance_scaling_(weight: torch.Tensor, scale: float = 1.0, depthwise: bool = False) -> torch.Tensor:
    """TF `variance_scaling(scale, mode='fan_in', distribution='truncated_normal')`."""
    fan_in, _ = tf_fans(weight, depthwise)
    std = math.sqrt(scale / fan_in) / _TRUNCATED_STD
    return torch.nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


@torch.no_grad()
def glorot_uniform_(weight: torch.Tensor, depthwise: bool = False) -> torch.Tensor:
    """TF Glorot/Xavier uniform (also TF's default for variables created without an initialiser)."""
    fan_in, fan_out = tf_fans(weight, depthwise)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return weight.uniform_(-limit, limit)


@torch.no_grad()
def init_tensor(weight: torch.Tensor, spec: str | float | dict | None, depthwise: bool = False) -> torch.Tensor:
    """Initialise `weight` from a config value.

    Accepted: "glorot_uniform" / "xavier"; {"variance_scaling": s} or "vs:s"; {"normal": std};
    {"constant": c} or a bare number (constant); None → glorot_uniform (TF's default).
    """
    if spec is None or spec in ("glorot_uniform", "xavier", "gu"):
        return glorot_uniform_(weight, depthwise)
    if isinstance(spec, (int, float)):
        return weight.fill_(float(spec))
    if isinstance(spec, str) and spec.startswith("vs:"):
        return variance_scaling_(weight, float(spec[3:]), depthwise)
    if isinstance(spec, str) and spec == "zeros":
        return weight.zero_()
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, value), = spec.items()
        if kind == "variance_scaling":
            return variance_scaling_(weight, float(value), depthwise)
        if kind == "normal":
            return weight.normal_(0.0, float(value))
        if kind == "constant":
            return weight.fill_(float(value))
    raise ValueError(
        f"unknown initialiser {spec!r}: use 'glorot_uniform', 'zeros', {{variance_scaling: s}}, "
        "{normal: std} or {constant: c}"
    )
