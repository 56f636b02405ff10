"""A model is data: YAML graphs (configs/models/*.yaml) resolved into one validated dict.

A file may `extends:` another (path relative to itself); mappings merge recursively, the child winning.
Unknown keys are errors that name the key and where it sits, so a typo never silently changes a model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from convrnn.cells.rgc import PRESETS as RGC_PRESETS
from convrnn.cells.rgc import RGCSettings
from convrnn.errors import UserError
from convrnn.graph.schema import (
    ConvSpec,
    DefaultsSpec,
    EdgeSpec,
    FCSpec,
    GraphSpec,
    NodeSpec,
    PostSpec,
    field_defaults,
    field_names,
)
from convrnn.yaml_files import load_yaml_mapping

# the keys of each section are the fields of its type (convrnn.graph.schema)
TOP_KEYS = field_names(GraphSpec) | {"extends", "defaults"}
NODE_KEYS = field_names(NodeSpec)
CONV_KEYS = field_names(ConvSpec)
POST_KEYS = field_names(PostSpec)
FC_KEYS = field_names(FCSpec)
DEFAULT_KEYS = field_names(DefaultsSpec)
EDGE_KEYS = field_names(EdgeSpec)
OVERRIDES = {"input_size", "in_channels", "num_classes", "times", "image_off", "presentation", "blank", "decoder",
             "decoder_window_start", "unroll", "width_multiplier"}
PRESENTATIONS = ("default", "constant", "neural")
UNROLLS = ("biological", "engineering")


class ConfigError(UserError):
    """A model YAML or override is wrong; the message names the key and file."""


class InputTooSmallError(ConfigError):
    """The input size shrinks some node's map to nothing (too many strides and pools for it)."""


ATOMIC_KEYS = {"init", "kernel_init"}  # initialiser specs replace each other, never merge


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ATOMIC_KEYS:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml_graph(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a graph YAML, following `extends`."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"circular 'extends' through {path}")
    data = load_yaml_mapping(path, "model config", error=ConfigError)
    parent = data.pop("extends", None)
    if parent is not None:
        data = deep_merge(load_yaml_graph(path.parent / parent, (*_seen, path)), data)
    data["_source"] = str(path)  # errors name the file being built, not the root of its `extends` chain
    return data


def _check_keys(section: Any, allowed: set[str], where: str, source: str) -> None:
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {section!r}")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def _scale(channels: Any, width: float) -> Any:
    if isinstance(channels, int) and width != 1.0:
        return max(1, round(channels * width))
    return channels


def resolve_graph(raw: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Validate a loaded graph, apply overrides and defaults, and return the resolved config."""
    source = raw.get("_source", "<dict>")
    unknown = sorted(set(overrides) - OVERRIDES)
    if unknown:
        raise ConfigError(f"unknown override(s) {unknown}; allowed: {sorted(OVERRIDES)}")
    cfg = {k: v for k, v in raw.items() if k != "_source"}
    _check_keys(cfg, TOP_KEYS, "the top level", source)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    for key, default in field_defaults(GraphSpec).items():
        cfg.setdefault(key, default)
    for key in ("input_size", "times", "nodes"):
        if key not in cfg:
            raise ConfigError(f"{source}: missing required key {key!r}")
    if cfg["presentation"] not in PRESENTATIONS:
        raise ConfigError(f"presentation must be one of {PRESENTATIONS}, got {cfg['presentation']!r}")
    if cfg["unroll"] not in UNROLLS:
        raise ConfigError(f"unroll must be one of {UNROLLS}, got {cfg['unroll']!r}")
    if cfg["presentation"] == "neural":  # the 26-step neural-comparison schedule (docs/models.md, 'Unrolling')
        cfg["times"] = overrides.get("times") or 26
        cfg["image_off"] = overrides.get("image_off") or 10
        cfg["presentation"] = "default"
    if cfg["presentation"] == "constant":
        cfg["image_off"] = None
    for key in ("input_size", "times", "num_classes", "in_channels"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"{source}: {key} must be a positive integer, got {cfg[key]!r}")
    if not isinstance(cfg["width_multiplier"], (int, float)) or cfg["width_multiplier"] <= 0:
        raise ConfigError(f"width_multiplier must be > 0, got {cfg['width_multiplier']!r}")
    defaults = cfg.pop("defaults", None) or {}
    _check_keys(defaults, DEFAULT_KEYS, "defaults", source)
    _check_keys(defaults.get("conv"), CONV_KEYS, "defaults.conv", source)
    width = float(cfg["width_multiplier"])

    nodes = cfg["nodes"]
    if not isinstance(nodes, dict) or not nodes:
        raise ConfigError(f"{source}: 'nodes' must be a non-empty mapping of node name → node")
    resolved_nodes: dict[str, dict[str, Any]] = {}
    for name, node in nodes.items():
        where = f"nodes.{name}"
        node = dict(node or {})
        _check_keys(node, NODE_KEYS, where, source)
        for section in ("pre",):
            if node.get(section) is not None:
                _check_keys(node[section], CONV_KEYS, f"{where}.{section}", source)
                node[section] = deep_merge(defaults.get("conv") or {}, node[section])
        post = dict(node.get("post") or {})
        _check_keys(post, POST_KEYS, f"{where}.post", source)
        if post.get("conv") is not None:
            _check_keys(post["conv"], CONV_KEYS, f"{where}.post.conv", source)
            post["conv"] = deep_merge(defaults.get("conv") or {}, post["conv"])
        if post.get("fc") is not None:
            _check_keys(post["fc"], FC_KEYS, f"{where}.post.fc", source)
        node["post"] = post
        if node.get("cell") is not None:
            cell = deep_merge(defaults.get("cell") or {}, node["cell"])
            if "type" not in cell:
                raise ConfigError(f"{source}: {where}.cell needs a 'type'")
            node["cell"] = cell
        # width multiplier: every depth but the class readout ("num_classes") and the image
        for section in (node.get("pre"), post.get("conv"), post.get("fc")):
            if section is not None:
                if section.get("channels") == "num_classes":
                    section["channels"] = cfg["num_classes"]
                elif width != 1.0:
                    section["channels"] = _scale(section.get("channels"), width)
        if node.get("cell") is not None and width != 1.0:
            if node["cell"].get("type") == "rgc" and "cell_depth" not in node["cell"]:
                # the memory depth usually comes from the preset (median: 64); scale it like every other depth
                preset = node["cell"].get("preset")
                node["cell"]["cell_depth"] = (RGC_PRESETS.get(preset) or RGCSettings()).cell_depth
            for key in ("out_channels", "cell_depth"):
                if key in node["cell"]:
                    node["cell"][key] = _scale(node["cell"][key], width)
        resolved_nodes[name] = node
    cfg["nodes"] = resolved_nodes
    names = list(resolved_nodes)
    for i, (name, node) in enumerate(resolved_nodes.items()):
        ff = node.get("input", names[i - 1] if i else "image")
        if ff != "image" and (ff not in resolved_nodes or names.index(ff) >= i):
            raise ConfigError(f"{source}: nodes.{name}.input {ff!r} must name an earlier node or 'image'")
        node["input"] = ff
    edges = []
    for k, edge in enumerate(cfg["feedback"]):
        _check_keys(edge, EDGE_KEYS, f"feedback[{k}]", source)
        for end in ("source", "target"):
            if edge.get(end) not in resolved_nodes:
                raise ConfigError(f"{source}: feedback[{k}].{end} {edge.get(end)!r} is not a node; "
                                  f"nodes: {names}")
        edges.append({"source": edge["source"], "target": edge["target"]})
    cfg["feedback"] = edges
    if cfg.get("decoder_window_start") is None:
        cfg["decoder_window_start"] = len(names)  # N = number of nodes (docs/models.md, 'Decoders')
    return cfg


#: Overrides that change a model's weight shapes: a stored graph cannot take them (its weights would not fit).
SHAPE_OVERRIDES = {"width_multiplier", "num_classes", "in_channels"}


def rebuild_config(graph: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Re-resolve an already resolved graph (one stored in a checkpoint) with run-time overrides.

    Resolving is idempotent except for the width multiplier, which has already scaled every depth: the graph is
    re-resolved at width 1 and keeps its recorded multiplier. Shape-changing overrides are refused.
    """
    refused = sorted(k for k, v in overrides.items() if k in SHAPE_OVERRIDES and v is not None
                     and v != graph.get(k))
    if refused:
        raise ConfigError(f"cannot override {refused} of a stored model: its weights have fixed shapes")
    raw = copy.deepcopy(graph)
    width = raw.get("width_multiplier", 1.0)
    raw["width_multiplier"] = 1.0
    raw["_source"] = "<stored graph>"
    cfg = resolve_graph(raw, **{k: v for k, v in overrides.items() if k not in SHAPE_OVERRIDES})
    cfg["width_multiplier"] = width
    return cfg
