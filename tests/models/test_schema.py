"""Typed configs: the graph, node and RGC settings are frozen dataclasses holding the keys and their defaults."""

from __future__ import annotations

import dataclasses
import inspect
import io

import pytest
import torch

import convrnn
from convrnn.cells import CELLS, RGC_PRESETS, cell_options
from convrnn.cells.rgc import RGCSettings, build_rgc, rgc_settings
from convrnn.graph.node import Node
from convrnn.graph.schema import ConvSpec, GraphSpec, NodeSpec
from convrnn.graph.spec import CONV_KEYS, TOP_KEYS

SMALL = {"input_size": 32, "width_multiplier": 0.125, "num_classes": 10}


def test_rgc_presets_are_frozen_settings_and_the_constructor_lists_every_field():
    assert all(isinstance(p, RGCSettings) for p in RGC_PRESETS.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        RGC_PRESETS["median"].tau_kernel = 3  # type: ignore[misc]
    params = inspect.signature(CELLS["rgc"].__init__).parameters
    for f in dataclasses.fields(RGCSettings):
        assert params[f.name].kind == inspect.Parameter.KEYWORD_ONLY
        assert params[f.name].default == f.default  # what the search space type-checks against
    assert cell_options("rgc") == {f.name for f in dataclasses.fields(RGCSettings)} | {"preset"}


def test_rgc_settings_from_a_preset_and_bad_knobs_named_by_the_type():
    s = rgc_settings("median", cell_depth=4)
    assert (s.cell_depth, s.tau_kernel, s.gate_nonlinearity) == (4, 7, "tanh")
    assert RGC_PRESETS["median"].cell_depth == 64  # the preset itself is untouched
    shallow = rgc_settings("rgc_shallow")
    assert (shallow.cell_depth, shallow.in_out_kernel, shallow.clip_kernels) == (None, 0, "all")
    # a knob no preset sets keeps the one default
    assert shallow.feedback_kernel == RGCSettings().feedback_kernel == 1
    with pytest.raises(TypeError, match="tau_kernal"):
        build_rgc(4, 4, (5, 5), preset="median", tau_kernal=3)
    with pytest.raises(TypeError, match="tau_kernal"):
        CELLS["rgc"](4, 4, (5, 5), tau_kernal=3)
    cell = build_rgc(4, 4, (5, 5), residual_channels=4, preset="median", cell_depth=2)
    assert cell.settings == rgc_settings("median", cell_depth=2)


def test_yaml_keys_are_the_fields_of_the_types():
    assert {f.name for f in dataclasses.fields(ConvSpec)} == CONV_KEYS
    assert {f.name for f in dataclasses.fields(GraphSpec)} | {"extends", "defaults"} == TOP_KEYS


def test_resolved_config_is_plain_and_its_typed_view_matches_the_model():
    model = convrnn.build_model("rgc_intermediate", **SMALL)
    buffer = io.BytesIO()
    torch.save(model.config, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == model.config  # plain types only
    spec = GraphSpec.from_config(model.config)
    assert list(spec.nodes) == model.layer_names
    assert (spec.times, spec.input_size, spec.num_classes) == (model.times, 32, 10)
    assert {(e.source, e.target) for e in spec.feedback} == {
        (s, t) for t, sources in model.feedback_sources.items() for s in sources}
    # the RGC memory depth comes from the median preset (64) and is scaled with the width like every depth
    rgc_nodes = [n for n in spec.nodes.values() if n.cell and n.cell["type"] == "rgc"]
    assert rgc_nodes and all(n.cell["cell_depth"] == 8 for n in rgc_nodes)


def test_node_defaults_come_from_the_conv_spec():
    node = Node("n", {"pre": {"channels": 4}}, 3, (8, 8))
    default = ConvSpec(channels=4)
    assert node.pre.kernel_size == (default.kernel, default.kernel) and node.pre.stride == default.stride
    assert node.pre.bias is not None and node.out_size == (8, 8)
    assert isinstance(NodeSpec.from_config({"pre": {"channels": 4}}).pre, ConvSpec)
