"""The model zoo (docs/models.md, 'Backbones', 'Cells', 'The zoo'): names, exact parameter counts, architecture
shapes at 224 px, weight-decay groups, initialisers, forward + backward at a small size, overrides and YAML paths.

Full-size checks build on the `meta` device: structure and parameter shapes without allocating or initialising
weights, so the 15 M–85 M-parameter models cost milliseconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convrnn
from convrnn.zoo import model_config

REPO = Path(__file__).resolve().parents[2]
#: The release's configs/lstm_shallow.npz, every value at full precision (read with numpy from the release)
LSTM_SHALLOW_NPZ = json.loads((Path(__file__).parent / "fixtures" / "release_lstm_shallow_npz.json").read_text())

# docs/models.md, 'The zoo'
PARAM_COUNTS = {
    "timedecay_shallow": 4_197_739,
    "timedecay_intermediate": 16_403_439,
    "simplernn_shallow": 6_272_872,
    "simplernn_intermediate": 33_512_936,
    "gru_shallow": 25_434_472,
    "gru_intermediate": 67_725_032,
    "lstm_shallow": 21_126_248,
    "lstm_intermediate": 84_832_232,
    "intersectionrnn_shallow": 32_513_384,
    "intersectionrnn_intermediate": 84_832_232,
    "ugrnn_shallow": 18_355_560,
    "ugrnn_intermediate": 50_617_832,
    "rgc_shallow": 23_956_840,
    "rgc_intermediate": 15_445_800,
}
# variants share their base's graph (identical release JSON; docs/models.md, 'The zoo');
# name → (base, times, image_off, decoder)
VARIANTS = {
    "rgc_intermediate_dthresh": ("rgc_intermediate", 17, 12, "dthresh"),
    "rgc_intermediate_tmaxconf": ("rgc_intermediate", 17, 12, "tmaxconf"),
    "rgc_intermediate_t22": ("rgc_intermediate", 22, None, "last"),
    "rgc_intermediate_t22_tmaxconf": ("rgc_intermediate", 22, None, "tmaxconf"),
    "ugrnn_intermediate_t30": ("ugrnn_intermediate", 30, None, "last"),
    "ugrnn_intermediate_t30_dthresh": ("ugrnn_intermediate", 30, None, "dthresh"),
    "ugrnn_intermediate_t30_tmaxconf": ("ugrnn_intermediate", 30, None, "tmaxconf"),
}
ALL_MODELS = sorted([*PARAM_COUNTS, *VARIANTS])
SMALL = {"width_multiplier": 0.125, "num_classes": 10}


def small_size(name: str) -> int:
    return 96 if name.endswith("shallow") else 64


def meta_model(name: str, **overrides) -> convrnn.ConvRNN:
    with torch.device("meta"):
        return convrnn.build_model(name, **overrides)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------- registry
def test_list_models_has_the_21_release_names():
    names = convrnn.list_models()
    assert len(names) == 21
    assert set(names) == set(ALL_MODELS)
    assert names == sorted(names)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_count_matches_spec(name):
    model = meta_model(name)
    base = VARIANTS[name][0] if name in VARIANTS else name
    assert n_params(model) == PARAM_COUNTS[base]
    # the tmaxconf β is not a parameter (docs/models.md, 'The zoo' excludes it; it gets no gradient)
    assert "decoder_beta" not in dict(model.named_parameters())


def test_rgc_intermediate_counts_by_node():
    """docs/models.md, 'The zoo': per node, per median cell, skip projections and feedback convs."""
    model = meta_model("rgc_intermediate")
    by_node = {
        "conv1": 9_472,
        "conv2": 73_856,
        "conv3": 147_584,
        "conv4": 384_064,
        "conv5": 416_960,
        "conv6": 1_314_880,
        "conv7": 1_511_488,
        "conv8": 1_380_160,
        "conv9": 4_454_208,
        "conv10": 5_240_128,
        "imnetds": 513_000,
    }
    assert {n: n_params(model.nodes[n]) for n in model.layer_names} == by_node
    skip = {"conv6": 32_768, "conv9": 131_072}
    feedback = {"conv5": 32_896, "conv6": 196_864, "conv7": 131_328, "conv9": 262_656}
    core = {128: 236_480, 256: 790_080, 512: 2_880_320}
    for name in [f"conv{i}" for i in range(4, 11)]:
        cell = model.nodes[name].cell
        proj = cell.residual_projection
        assert (n_params(proj) if proj is not None else 0) == skip.get(name, 0), name
        fb = cell.feedback
        assert (n_params(fb) if fb is not None else 0) == feedback.get(name, 0), name
        own = (
            n_params(cell)
            - (n_params(proj) if proj is not None else 0)
            - (n_params(fb) if fb is not None else 0)
        )
        assert own == core[cell.out_channels], name


# --------------------------------------------------------------------------- architecture at 224 px
SHALLOW_DEPTHS = {  # docs/models.md, 'Backbones': (C3, C4, C5)
    "gru_shallow": (256, 256, 512),
    "ugrnn_shallow": (256, 256, 512),
    "intersectionrnn_shallow": (256, 256, 512),
    "rgc_shallow": (256, 256, 512),
    "timedecay_shallow": (256, 256, 512),
    "simplernn_shallow": (128, 256, 256),
    "lstm_shallow": (128, 256, 256),
}


@pytest.mark.parametrize("name", sorted(SHALLOW_DEPTHS))
def test_shallow_architecture(name):
    model = meta_model(name)
    assert model.layer_names == ["conv1", "conv2", "conv3", "conv4", "conv5", "imnetds"]
    c3, c4, c5 = SHALLOW_DEPTHS[name]
    out = {n: (model.nodes[n].out_channels, model.nodes[n].out_size) for n in model.layer_names}
    assert out == {
        "conv1": (64, (56, 56)),
        "conv2": (128, (28, 28)),
        "conv3": (c3, (14, 14)),
        "conv4": (c4, (7, 7)),
        "conv5": (c5, (4, 4)),
        "imnetds": (1000, (1, 1)),
    }
    # cells run at the pre-pool resolution 28/14/7; pre-memory convs 256/256/512
    for node, size, pre in [("conv3", 28, 256), ("conv4", 14, 256), ("conv5", 7, 512)]:
        assert model.nodes[node].cell.spatial_size == (size, size)
        assert model.nodes[node].pre.weight.shape[0] == pre
        # pre-memory conv is linear except for rgc_shallow (ELU)
        act = model.nodes[node].pre_activation
        assert isinstance(act, nn.ELU) if name == "rgc_shallow" else isinstance(act, nn.Identity)
    for node in ("conv1", "conv2", "imnetds"):
        assert model.nodes[node].cell is None
    assert model.nodes["conv1"].pre.kernel_size == (7, 7) and model.nodes["conv1"].pre.stride == 2
    ds = model.nodes["imnetds"].pre
    assert ds.kernel_size == (2, 2) and ds.padding == "valid" and ds.weight.shape == (1000, c5, 2, 2)


INTERMEDIATE = [
    "gru_intermediate",
    "intersectionrnn_intermediate",
    "lstm_intermediate",
    "simplernn_intermediate",
    "timedecay_intermediate",
    "ugrnn_intermediate",
]


@pytest.mark.parametrize("name", INTERMEDIATE)
def test_intermediate_architecture(name):
    model = meta_model(name)
    names = [f"conv{i}" for i in range(1, 11)] + ["imnetds"]
    assert model.layer_names == names
    channels = [64, 64, 64, 128, 128, 256, 256, 512, 512, 512]
    sizes = [56, 56, 56, 28, 28, 14, 7, 7, 7, 4]
    for n, c, s in zip(names[:-1], channels, sizes, strict=True):
        assert (model.nodes[n].out_channels, model.nodes[n].out_size) == (c, (s, s)), n
    assert model.nodes["imnetds"].out_channels == 1000
    cell_sizes = {"conv4": 56, "conv5": 28, "conv6": 28, "conv7": 14, "conv8": 7, "conv9": 7, "conv10": 7}
    for n in names:
        node = model.nodes[n]
        if n in cell_sizes:
            assert node.cell is not None and node.cell.spatial_size == (cell_sizes[n],) * 2, n
        else:
            assert node.cell is None, n
    # bias-free 1×1 skip projections where the depth changes, identity elsewhere (conv2–conv10)
    for n in names[1:-1]:
        skip = model.nodes[n].skip
        if n in ("conv4", "conv6", "conv8"):
            assert skip.weight.shape[-2:] == (1, 1) and skip.bias is None, n
        else:
            assert isinstance(skip, nn.Identity), n
    fc = model.nodes["imnetds"].fc
    assert fc.weight.shape == (1000, 512)
    assert model.feedback_sources == {n: [] for n in names}


def test_rgc_intermediate_architecture():
    model = meta_model("rgc_intermediate")
    names = [f"conv{i}" for i in range(1, 11)] + ["imnetds"]
    channels = [64, 128, 128, 128, 128, 256, 256, 256, 512, 512]
    sizes = [56, 56, 56, 28, 28, 14, 7, 7, 7, 4]
    for n, c, s in zip(names[:-1], channels, sizes, strict=True):
        assert (model.nodes[n].out_channels, model.nodes[n].out_size) == (c, (s, s)), n
    cell_sizes = {"conv4": 56, "conv5": 28, "conv6": 28, "conv7": 14, "conv8": 7, "conv9": 7, "conv10": 7}
    for n, s in cell_sizes.items():
        node = model.nodes[n]
        assert node.cell.spatial_size == (s, s)
        assert node.cell.cell_depth == 64
        assert isinstance(node.pre_activation, nn.Identity)  # linear pre-conv; the cell applies ELU
        assert node.skip is None and node.post_conv is None  # no residual block in this backbone
    assert {t: sorted(s) for t, s in model.feedback_sources.items() if s} == {
        "conv5": ["conv8"],
        "conv6": ["conv7", "conv9"],
        "conv7": ["conv10"],
        "conv9": ["conv10"],
    }
    # feedback 1×1 convs sized by the (concatenated) source depths → target C (docs/models.md, 'Feedback')
    fb_shapes = {"conv5": (128, 256), "conv6": (256, 768), "conv7": (256, 512), "conv9": (512, 512)}
    for n, (cout, cin) in fb_shapes.items():
        assert model.nodes[n].cell.feedback[0].weight.shape == (cout, cin, 1, 1)


# ------------------------------------------------------------------------------------- weight decay
def decays_by_name(model) -> dict[str, float]:
    groups = model.parameter_groups()
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    named = dict(model.named_parameters())
    assert set(ids) == {id(p) for p in named.values()}, "parameter_groups() must cover every parameter"
    decays = [g["weight_decay"] for g in groups]
    assert len(decays) == len(set(decays))
    by_id = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in named.items()}


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_groups_cover_everything_with_spec_decays(name):
    model = meta_model(name)
    decay = decays_by_name(model)
    lstm_shallow_cells = {node: p["cell_params"]["weight_decay"] for node, p in LSTM_SHALLOW_NPZ["model_params"][
        "layer_params"].items() if p}
    checked = 0
    for pname, value in decay.items():
        parts = pname.split(".")
        node, leaf = parts[1], parts[-1]
        if ".pre." in pname or ".post_conv." in pname or ".fc." in pname:
            expected = 1e-4  # backbone convs and the readout: kernel and bias
            if name == "lstm_shallow" and node != "imnetds":
                expected = LSTM_SHALLOW_NPZ["model_params"]["ff_weight_decay"]  # npz backbone L2
        elif ".skip." in pname or "residual_projection" in pname:
            expected = 0.0  # bias-free 1×1 projections: no L2
        elif ".norm" in pname or leaf.startswith("peep") or leaf == "decay":
            expected = 0.0  # LN γ/β, peepholes, time-decay scalars: no L2 listed
        elif name == "rgc_intermediate":
            expected = (
                2.034e-4 if leaf == "weight" else 0.0
            )  # median cell + feedback kernels; biases undecayed
        elif name == "rgc_shallow":
            assert leaf == "weight"
            expected = 1e-4
        elif name == "lstm_shallow":
            expected = lstm_shallow_cells[node]
        elif leaf == "weight" or name.split("_")[0] in ("gru", "simplernn", "lstm"):
            expected = 1e-4  # cell kernels; gru/simplernn/lstm also decay cell biases (docs/models.md, 'Cells')
        else:
            continue  # ugrnn / intersectionrnn cell biases: the release does not say
        assert value == pytest.approx(expected, rel=1e-12, abs=0), pname
        checked += 1
    assert checked >= len(decay) - 14


def test_parameter_groups_work_with_an_optimizer(small_model):
    model = small_model("rgc_intermediate")
    opt = torch.optim.SGD(model.parameter_groups(), lr=0.1, momentum=0.9, nesterov=True)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 1e-4, 2.034e-4}


# ------------------------------------------------------------------------------------- initialisers
def test_initialisers_are_wired_as_specified():
    torch.manual_seed(0)
    # 128 px: conv8–10 run at 4×4, so only the 7×7 separable kernels are clipped, not the 3×3 / 2×2 ones
    model = convrnn.build_model("rgc_intermediate", input_size=128, width_multiplier=0.5)
    nodes = model.nodes

    def vs_ok(w, fan_in, scale):
        return abs(w.std().item() / math.sqrt(scale / fan_in) - 1) < 0.05

    assert vs_ok(nodes["conv9"].pre.weight, 9 * 128, 1.0)  # backbone VS(1.0); width 0.5: conv8 has 128 ch
    assert vs_ok(nodes["conv9"].cell.input_to_out.weight, 9 * 256, 0.6393)  # cell VS(0.6393)
    assert vs_ok(
        nodes["conv6"].cell.out_tau.depthwise.weight, 49 * 128, 0.6393
    )  # TF depthwise fan-in kh·kw·C
    assert vs_ok(nodes["conv9"].cell.out_tau.depthwise.weight, 16 * 256, 0.6393)  # clipped to 4×4
    assert vs_ok(nodes["conv6"].cell.feedback[0].weight, 384, 0.6393)
    fc = nodes["imnetds"].fc
    assert abs(fc.weight.std().item() - 0.01) < 0.001 and torch.all(fc.bias == 1.0)  # N(0.01), bias 1.0
    for pname, p in model.named_parameters():
        if pname.endswith("bias") and "imnetds" not in pname:
            assert torch.all(p == 0), pname
    lstm = convrnn.build_model("lstm_shallow", input_size=96, width_multiplier=0.5)
    assert vs_ok(lstm.nodes["conv2"].pre.weight, 9 * 32, 1.726)  # npz backbone init
    assert torch.all(lstm.nodes["conv3"].cell.conv.bias == 1.6427688907776656)
    assert torch.all(lstm.nodes["conv5"].cell.conv.bias == -1.3495015766804237)
    shallow = convrnn.build_model("gru_shallow", input_size=96, width_multiplier=0.5)
    ds = shallow.nodes["imnetds"].pre
    assert abs(ds.weight.std().item() - 0.01) < 0.001 and torch.all(ds.bias == 0)


# ------------------------------------------------------------------------------- forward + backward
@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = convrnn.build_model(name, input_size=small_size(name), **SMALL)
    x = torch.randn(2, 3, model.input_size, model.input_size)
    out = model(x)
    assert out.logits.shape == (model.times, 2, 10)
    assert torch.isfinite(out.logits).all()
    loss = F.cross_entropy(out.logits[-1], torch.tensor([1, 7]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad
    # every parameter can influence the last-step logits here, and does (nonzero gradient)
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().gt(0).any()]
    assert not zero, f"zero gradient for {zero}"


# ---------------------------------------------------------------------------------------- overrides
def test_small_overrides():
    torch.manual_seed(0)
    model = convrnn.build_model(
        "rgc_intermediate", input_size=128, width_multiplier=0.25, times=13, num_classes=7, image_off=5
    )
    assert (model.input_size, model.times, model.image_off, model.num_classes) == (128, 13, 5, 7)
    assert model.nodes["conv1"].pre.weight.shape == (16, 3, 7, 7)  # 64 × 0.25
    assert model.nodes["conv9"].cell.cell_depth == 16  # memory depth 64 scales too
    assert model.nodes["conv10"].out_size == (2, 2)  # 128 px: conv8–10 run at 4×4, pooled to 2×2
    assert model.nodes["conv10"].cell.out_tau.depthwise.weight.shape[-2:] == (4, 4)  # 7×7 clipped to 4×4
    assert model.nodes["imnetds"].fc.weight.shape == (7, 128)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128))
    assert out.logits.shape == (13, 1, 7)
    shallow = convrnn.build_model("lstm_shallow", input_size=128, width_multiplier=0.125, num_classes=3)
    assert shallow.nodes["conv3"].cell.out_channels == 16  # 128 × 0.125
    assert shallow.nodes["imnetds"].pre.weight.shape == (3, 32, 2, 2)  # readout depth = num_classes, unscaled
    other = convrnn.build_model(
        "gru_shallow", input_size=96, decoder="mean", unroll="engineering", presentation="constant", **SMALL
    )
    assert (other.decoder, other.unroll, other.image_off, other.times) == ("mean", "engineering", None, 16)


def test_build_from_yaml_path_equals_build_by_name():
    path = REPO / "configs" / "models" / "gru_shallow.yaml"
    by_path = meta_model(str(path))
    assert by_path.name == "gru_shallow"
    assert n_params(by_path) == PARAM_COUNTS["gru_shallow"]
    assert n_params(meta_model(path)) == PARAM_COUNTS["gru_shallow"]  # a Path works too


def test_build_from_hand_written_yaml(tmp_path):
    backbone = REPO / "configs" / "models" / "backbones" / "shallow.yaml"
    (tmp_path / "my_ugrnn.yaml").write_text(
        f"extends: {backbone}\n"
        "defaults:\n  cell: {type: ugrnn}\n"
        "nodes:\n  conv3: {cell: {}}\n  conv4: {cell: {}}\n  conv5: {cell: {}}\n"
    )
    model = meta_model(tmp_path / "my_ugrnn.yaml")
    assert model.name == "my_ugrnn"
    assert n_params(model) == PARAM_COUNTS["ugrnn_shallow"]
    # a self-contained graph with a non-RGC feedback edge (added to the cell input through a 1×1 conv)
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\ninput_size: 16\ntimes: 6\nimage_off: 4\nnum_classes: 5\n"
        "nodes:\n"
        "  conv1: {pre: {channels: 4, kernel: 3, stride: 2, activation: elu}, post: {pool: 2}}\n"
        "  conv2: {pre: {channels: 6, activation: elu}, cell: {type: gru}}\n"
        "  conv3: {pre: {channels: 6}, cell: {type: simplernn, layer_norm: true}, post: {pool: 2}}\n"
        "  imnetds: {post: {global_pool: true, fc: {channels: num_classes}}}\n"
        "feedback:\n  - {source: conv3, target: conv2}\n"
    )
    tiny = convrnn.build_model(tmp_path / "tiny.yaml")
    assert tiny.layer_names == ["conv1", "conv2", "conv3", "imnetds"]
    assert tiny.nodes["conv2"].feedback_projection.weight.shape == (6, 6, 1, 1)
    out = tiny(torch.randn(2, 3, 16, 16), return_features=["conv2"])
    assert out.logits.shape == (6, 2, 5)
    assert out.features["conv2"].shape == (6, 2, 6, 4, 4)


def test_variants_are_their_base_graph_with_own_schedule_and_decoder():
    for name, (base, times, image_off, decoder) in VARIANTS.items():
        cfg, base_cfg = model_config(name), model_config(base)
        assert (cfg["times"], cfg.get("image_off"), cfg["decoder"]) == (times, image_off, decoder), name
        assert cfg["nodes"] == base_cfg["nodes"] and cfg["feedback"] == base_cfg["feedback"], name
        assert cfg["decoder_window_start"] == 11
    for name in PARAM_COUNTS:
        cfg = model_config(name)
        assert cfg["decoder"] == "last" and cfg["image_off"] == 12
        assert cfg["times"] == (16 if name.endswith("shallow") else 17)
        assert cfg["decoder_window_start"] == (6 if name.endswith("shallow") else 11)
    model = convrnn.build_model("rgc_intermediate_t22_tmaxconf", input_size=32, **SMALL)
    assert (model.times, model.image_off, model.decoder) == (22, None, "tmaxconf")
    assert float(model.decoder_beta) == 1.0  # β = 1 when unknown (docs/models.md, 'Decoders')
    model = meta_model("ugrnn_intermediate_t30_dthresh")
    assert (model.times, model.image_off, model.decoder) == (30, None, "dthresh")


def test_lstm_shallow_constants_equal_the_release_npz_exactly():
    """Every per-cell constant and training-time model constant of lstm_shallow.npz, compared at full precision
    with the resolved graph (and the built cells), not with rounded copies."""
    npz = LSTM_SHALLOW_NPZ["model_params"]
    cfg = model_config("lstm_shallow")
    assert cfg["times"] == npz["times"] and cfg["image_off"] == npz["image_off"]
    backbone = [n["pre"] for name, n in cfg["nodes"].items() if n.get("pre") and name != "imnetds"]
    assert all(pre["weight_decay"] == npz["ff_weight_decay"] for pre in backbone)
    assert all(pre["init"] == {"variance_scaling": npz["ff_kernel_initializer_kwargs"]["scale"]} for pre in backbone)
    model = convrnn.build_model("lstm_shallow", input_size=96, width_multiplier=0.125)
    checked = 0
    for node, params in npz["layer_params"].items():
        if not params:
            assert cfg["nodes"][node].get("cell") is None
            continue
        p, cell = params["cell_params"], cfg["nodes"][node]["cell"]
        assert cell["kernel_size"] == int(p["filter_size"])
        assert cell["forget_bias"] == p["forget_bias"]
        assert cell["bias_init"] == p["bias_initializer_kwargs"]["value"]
        assert cell["kernel_init"] == {"variance_scaling": p["kernel_initializer_kwargs"]["scale"]}
        assert cell["weight_decay"] == p["weight_decay"]
        assert bool(cell.get("peepholes", False)) == p["use_peepholes"]
        assert cell["layer_norm"] == p["layer_norm"]
        assert model_config("lstm_shallow", width_multiplier=1.0)["nodes"][node]["cell"]["out_channels"] == \
            p["out_depth"]
        built = model.nodes[node].cell
        assert built.forget_bias == p["forget_bias"]
        assert torch.all(built.conv.bias == torch.tensor(p["bias_initializer_kwargs"]["value"], dtype=torch.float32))
        checked += 1
    assert checked == 3
