"""The typed graph: what a resolved model config holds, as frozen dataclasses (docs/models.md, 'Graph YAML').

These types are the one place where the keys of a graph YAML and their defaults are written down: the resolver
(`convrnn.graph.spec`) takes the allowed keys of each section from their fields, and the builders
(`convrnn.graph.node`, `convrnn.graph.model`) read the defaults from them. The resolved config itself stays a
plain dict of plain types (`ConvRNN.config`, what a checkpoint stores and loads with ``weights_only=True``);
`GraphSpec.from_config` gives the typed view of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ConvSpec:
    """A convolution (a node's `pre`, `post.conv`, or `defaults.conv`): TF-"SAME" padding unless "valid"."""

    channels: int | str  # "num_classes" in YAML: the readout's depth
    kernel: int = 3
    stride: int = 1
    padding: str = "same"
    activation: str | None = None
    bias: bool = True
    init: str | dict | None = None
    bias_init: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class FCSpec:
    """The fully connected readout after a global pool (`post.fc`)."""

    channels: int | str
    init: str | dict | None = None
    bias_init: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class PostSpec:
    """After the cell: conv, residual S(x), activation, max-pool, global pool, fc — in that order."""

    conv: ConvSpec | None = None
    residual: bool = False
    activation: str | None = None
    pool: int | None = None
    global_pool: bool = False
    fc: FCSpec | None = None


@dataclass(frozen=True)
class NodeSpec:
    """One node: harbor → `pre` conv → `cell` (its `type` and the cell's own options) → `post`."""

    input: str | None = None  # the feed-forward source: an earlier node or "image" (default: the previous node)
    pre: ConvSpec | None = None
    cell: Mapping[str, Any] | None = None
    post: PostSpec = PostSpec()

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> NodeSpec:
        """The typed view of one resolved node."""
        post = dict(node.get("post") or {})
        if post.get("conv") is not None:
            post["conv"] = ConvSpec(**post["conv"])
        if post.get("fc") is not None:
            post["fc"] = FCSpec(**post["fc"])
        pre = ConvSpec(**node["pre"]) if node.get("pre") is not None else None
        return cls(input=node.get("input"), pre=pre, cell=node.get("cell"), post=PostSpec(**post))


@dataclass(frozen=True)
class EdgeSpec:
    """A feedback edge: `source`'s output at t−1 joins `target`'s harbor at t."""

    source: str
    target: str


@dataclass(frozen=True)
class DefaultsSpec:
    """YAML-only section merged into every node's convs (`conv`) and cells (`cell`) before resolution."""

    conv: Mapping[str, Any] | None = None
    cell: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GraphSpec:
    """A whole model graph and its run settings (the top level of a graph YAML, less `extends`/`defaults`)."""

    input_size: int
    times: int
    nodes: Mapping[str, NodeSpec]
    name: str | None = None
    description: str | None = None
    in_channels: int = 3
    num_classes: int = 1000
    image_off: int | None = None
    presentation: str = "default"
    blank: float = 0.5
    decoder: str = "last"
    decoder_window_start: int | None = None
    unroll: str = "biological"
    width_multiplier: float = 1.0
    feedback: tuple[EdgeSpec, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GraphSpec:
        """The typed view of a resolved config (`convrnn.graph.spec.resolve_graph`'s output)."""
        top = {k: v for k, v in config.items() if k in field_names(cls)}
        top["nodes"] = {name: NodeSpec.from_config(node) for name, node in config["nodes"].items()}
        top["feedback"] = tuple(EdgeSpec(**edge) for edge in config.get("feedback") or ())
        return cls(**top)


def field_names(cls: type) -> set[str]:
    """The keys a section may have: its type's fields."""
    return {f.name for f in fields(cls)}


def field_defaults(cls: type) -> dict[str, Any]:
    """The fields of `cls` that have a default other than None, with that default."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING and f.default is not None}
