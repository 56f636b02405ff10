"""Mistakes fail early with a message that names the problem (and, where useful, the valid choices)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import convrnn
from convrnn.cells import build_cell
from convrnn.cells.rgc import build_rgc
from convrnn.graph.spec import ConfigError

BACKBONE = Path(__file__).resolve().parents[2] / "configs" / "models" / "backbones" / "shallow.yaml"
SMALL = {"width_multiplier": 0.125, "num_classes": 10}


@pytest.fixture(scope="module")
def shallow():
    return convrnn.build_model("gru_shallow", input_size=96, **SMALL)


@pytest.fixture(scope="module")
def intermediate():
    return convrnn.build_model("rgc_intermediate", input_size=32, **SMALL)


# -------------------------------------------------------------------------------------- model names
def test_unknown_model_name_lists_known_models():
    with pytest.raises(ValueError, match="unknown model 'rgc_deep'") as info:
        convrnn.build_model("rgc_deep")
    for known in ("rgc_intermediate", "ugrnn_intermediate_t30_tmaxconf", "timedecay_shallow"):
        assert known in str(info.value)


def test_missing_yaml_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        convrnn.build_model(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------- inputs
def test_wrong_channel_count(shallow):
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        shallow(torch.randn(2, 1, 96, 96))
    with pytest.raises(ValueError, match="expected 3 input channels, got 4"):
        shallow(torch.randn(2, 6, 4, 96, 96))  # a movie with 4 channels


def test_wrong_spatial_size_says_how_to_fix(shallow):
    with pytest.raises(ValueError, match=r"96×96.*got 80×80.*input_size=80"):
        shallow(torch.randn(1, 3, 80, 80))


def test_wrong_rank(shallow):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\].*got shape \(3, 96, 96\)"):
        shallow(torch.randn(3, 96, 96))


def test_input_too_small_for_the_graph():
    # shallow: 32 px → conv5 leaves a 1×1 map and imnetds' 2×2 VALID conv has nothing to read
    with pytest.raises(
        ValueError, match=r"input too small: node 'imnetds' would produce a 0×0 map.*input_size"
    ):
        convrnn.build_model("rgc_shallow", input_size=32)
    with pytest.raises(ValueError, match="input too small"):
        convrnn.build_model("rgc_shallow", input_size=64)
    convrnn.build_model("rgc_shallow", input_size=65, **SMALL)  # the smallest size that works


def test_times_shorter_than_first_image_driven_readout(shallow, intermediate):
    with pytest.raises(ValueError, match=r"times=5 is too short.*'imnetds'.*step 5.*at least 6"):
        shallow(torch.randn(1, 3, 96, 96), times=5)
    with pytest.raises(ValueError, match=r"times=10 is too short.*step 10.*at least 11"):
        intermediate(torch.randn(1, 3, 32, 32), times=10)
    short = convrnn.build_model("gru_shallow", input_size=96, times=3, **SMALL)
    with pytest.raises(ValueError, match="times=3 is too short"):
        short(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="times=3 is too short"):
        shallow(torch.randn(1, 3, 3, 96, 96))  # a 3-frame movie
    assert shallow(torch.randn(1, 3, 96, 96), times=6).logits.shape[0] == 6  # the minimum works


def test_movie_length_disagrees_with_times(shallow):
    with pytest.raises(ValueError, match="times=8 but the movie has 7 frames"):
        shallow(torch.randn(1, 7, 3, 96, 96), times=8)


def test_unknown_return_features_layer(shallow):
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['conv9'\] in return_features") as info:
        shallow(torch.randn(1, 3, 96, 96), return_features=["conv3", "conv9"])
    assert "conv5" in str(info.value) and "imnetds" in str(info.value)  # lists the layers


def test_unknown_unroll_and_decoder(shallow):
    with pytest.raises(ValueError, match="unroll must be 'biological' or 'engineering'"):
        shallow(torch.randn(1, 3, 96, 96), unroll="fast")
    with pytest.raises(ValueError, match="unknown decoder 'median'"):
        shallow.decode(torch.randn(16, 1, 10), "median")
    with pytest.raises(ValueError, match=r"logits must be \[T, B, K\]"):
        shallow.decode(torch.randn(1, 10))


# ---------------------------------------------------------------------------------------- overrides
def test_unknown_override_is_named():
    with pytest.raises(ConfigError, match=r"unknown override\(s\) \['input_sise'\]") as info:
        convrnn.build_model("gru_shallow", input_sise=64)
    assert "input_size" in str(info.value)  # lists the allowed ones
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"presentation": "flash"}, "presentation must be one of"),
        ({"unroll": "fast"}, "unroll must be one of"),
        ({"times": 0}, "times must be a positive integer"),
        ({"input_size": 12.5}, "input_size must be a positive integer"),
        ({"width_multiplier": -1}, "width_multiplier must be > 0"),
    ],
)
def test_bad_override_values(override, message):
    with pytest.raises(ConfigError, match=message):
        convrnn.build_model("gru_shallow", **override)


# --------------------------------------------------------------------------------------------- YAML
def write(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_top_level_yaml_key(tmp_path):
    path = write(tmp_path, f"extends: {BACKBONE}\ntims: 20\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key\(s\) \['tims'\] in the top level") as info:
        convrnn.build_model(path)
    assert "'times'" in str(info.value)  # lists what is allowed


@pytest.mark.parametrize(
    ("snippet", "key", "where"),
    [
        ("nodes:\n  conv3: {cel: {type: gru}}\n", "cel", "nodes.conv3"),
        ("nodes:\n  conv3: {pre: {kernal: 5}}\n", "kernal", "nodes.conv3.pre"),
        ("nodes:\n  conv3: {post: {pooling: 2}}\n", "pooling", "nodes.conv3.post"),
        ("defaults:\n  cel: {type: gru}\n", "cel", "defaults"),
        ("feedback:\n  - {source: conv5, target: conv3, gain: 2}\n", "gain", "feedback[0]"),
    ],
)
def test_unknown_nested_yaml_keys_are_named_with_their_place(tmp_path, snippet, key, where):
    path = write(tmp_path, f"extends: {BACKBONE}\n{snippet}")
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) \['{key}'\] in {re.escape(where)}"):
        convrnn.build_model(path)


def test_unknown_cell_option_and_type(tmp_path):
    path = write(tmp_path, f"extends: {BACKBONE}\nnodes:\n  conv3: {{cell: {{type: gru, kernel_sise: 3}}}}\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['kernel_sise'\] for cell 'gru'"):
        convrnn.build_model(path)
    path = write(
        tmp_path, f"extends: {BACKBONE}\nnodes:\n  conv3: {{cell: {{type: transformer}}}}\n", "b.yaml"
    )
    with pytest.raises(ValueError, match=r"unknown cell type 'transformer'; known: .*'rgc'"):
        convrnn.build_model(path)
    path = write(
        tmp_path, f"extends: {BACKBONE}\nnodes:\n  conv3: {{cell: {{layer_norm: true}}}}\n", "c.yaml"
    )
    with pytest.raises(ConfigError, match=r"nodes\.conv3\.cell needs a 'type'"):
        convrnn.build_model(path)
    path = write(
        tmp_path, f"extends: {BACKBONE}\nnodes:\n  conv3: {{cell: {{type: rgc, preset: mean}}}}\n", "d.yaml"
    )
    with pytest.raises(ValueError, match=r"unknown RGC preset 'mean'; known: .*'median'"):
        convrnn.build_model(path)


def test_feedback_edge_to_unknown_node(tmp_path):
    path = write(tmp_path, f"extends: {BACKBONE}\nfeedback:\n  - {{source: conv8, target: conv3}}\n")
    with pytest.raises(ConfigError, match=r"feedback\[0\]\.source 'conv8' is not a node"):
        convrnn.build_model(path)


def test_missing_required_key_and_bad_extends(tmp_path):
    path = write(tmp_path, "name: x\ninput_size: 32\nnodes:\n  conv1: {pre: {channels: 4}}\n")
    with pytest.raises(ConfigError, match="missing required key 'times'"):
        convrnn.build_model(path)
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="circular 'extends'"):
        convrnn.build_model(tmp_path / "a.yaml")
    path = write(tmp_path, "extends: missing_parent.yaml\n", "c.yaml")
    with pytest.raises(ConfigError, match="model config not found: .*missing_parent.yaml"):
        convrnn.build_model(path)


def test_malformed_yaml_graph_is_a_config_error_naming_file_and_line(tmp_path):
    path = write(tmp_path, f"extends: {BACKBONE}\nnodes:\n  conv2: {{input: conv1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}, line \d+, column \d+: model config is not "
                                          r"valid YAML"):
        convrnn.build_model(path)
    write(tmp_path, "[1, 2", "parent.yaml")  # the error names the file that is broken, not the one built
    path = write(tmp_path, "extends: parent.yaml\n", "child.yaml")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path / 'parent.yaml'))}, line 1"):
        convrnn.build_model(path)
    path = write(tmp_path, "- conv1\n- conv2\n", "list.yaml")
    with pytest.raises(ConfigError, match="list.yaml: a model config must be a mapping, got list"):
        convrnn.build_model(path)


def test_bad_node_input_reference(tmp_path):
    path = write(tmp_path, f"extends: {BACKBONE}\nnodes:\n  conv2: {{input: conv4}}\n")
    with pytest.raises(ConfigError, match=r"nodes\.conv2\.input 'conv4' must name an earlier node"):
        convrnn.build_model(path)


# -------------------------------------------------------------------------------------------- cells
def test_cell_constraints_are_explained():
    with pytest.raises(
        ValueError, match=r"intersection_rnn needs input depth == out_channels \(got 8 and 4\)"
    ):
        build_cell("intersectionrnn", 8, 4, (5, 5))
    with pytest.raises(ValueError, match="time_decay keeps the input depth"):
        build_cell("timedecay", 8, 4, (5, 5))
    with pytest.raises(ValueError, match="feedback_entry must be 'input', 'cell' or 'out'"):
        build_rgc(4, 4, (5, 5), preset="median", feedback_entry="gate")
    cell = build_rgc(4, 4, (5, 5), residual_channels=4, preset="median", cell_depth=2)
    state = cell.initial_state(1, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="pass residual=x"):
        cell(torch.randn(1, 4, 5, 5), state)
