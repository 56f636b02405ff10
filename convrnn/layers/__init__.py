"""Building blocks with TensorFlow semantics, so that released TF checkpoints and their numerics carry over."""

from convrnn.layers.conv import SameConv2d, SameMaxPool2d, SeparableConv2d, same_padding
from convrnn.layers.init import glorot_uniform_, init_tensor, variance_scaling_

__all__ = [
    "SameConv2d",
    "SameMaxPool2d",
    "SeparableConv2d",
    "same_padding",
    "glorot_uniform_",
    "init_tensor",
    "variance_scaling_",
]
