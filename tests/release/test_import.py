"""The importer: every tensor reproduced bit for bit after the layout change, the skip/β/constant rules, the
release's names for the full-size models, and the errors for checkpoints that do not match."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import convrnn
from convrnn.errors import UserError
from convrnn.release import TensorBundle, load_release_checkpoint, load_release_model
from convrnn.release.names import release_mapping, release_shape, to_release

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())


def manifest(name: str) -> dict:
    return json.loads((FIXTURES / name / "manifest.json").read_text())


def prefix(name: str) -> Path:
    return FIXTURES / name / manifest(name)["checkpoint"]


def sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_tensor_bit_for_bit(name):
    """Each model tensor, put back into the release's layout, has exactly the bytes TensorFlow wrote; every
    parameter is set and every checkpoint tensor is accounted for."""
    info = manifest(name)
    model, report = load_release_model(info["model"], prefix(name), **info["overrides"])
    state = model.state_dict()
    mapping = release_mapping(model)
    assert {m.target for m in mapping} >= {n for n, _ in model.named_parameters()}
    for m in mapping:
        tensor = state[m.target]
        assert tensor.dtype == torch.float32
        assert sha(to_release(tensor, m.layout)) == info["tensors"][m.release_name]["sha256"], m.release_name
    accounted = set(report.imported) | set(report.constants) | {n for v in report.skipped.values() for n in v}
    assert accounted == set(info["tensors"])
    assert not model.training


def test_skip_and_decoder_rules():
    info = manifest("rgc_intermediate_tmaxconf")
    model, report = load_release_model("rgc_intermediate_tmaxconf", prefix("rgc_intermediate_tmaxconf"),
                                       **info["overrides"])
    slots = report.skipped["optimiser slot (momentum)"]
    assert len(slots) == len(report.imported) and all(s.endswith("/Momentum") for s in slots)
    assert report.skipped["training step counter"] == ["global_step"] and report.global_step == 1000
    assert sorted(report.skipped["decoder diagnostic (feeds no output)"]) == [
        "tnn_model/alpha/softmax_beta", "tnn_model/probs/softmax_beta"]
    assert sorted(report.constants) == [f"tnn_model/{n}/memory_decay" for n in ("conv1", "conv2", "conv3",
                                                                                  "imnetds")]
    beta = TensorBundle(prefix("rgc_intermediate_tmaxconf")).read("tnn_model/normalize/softmax_beta")
    assert model.decoder_beta.shape == () and model.decoder_beta.item() == beta.item() and 0 < beta.item() < 1
    # the imported β is the one the decoder uses
    logits = torch.randn(17, 3, 10) * 3
    assert torch.equal(model.decode(logits), convrnn.decoders.decode(logits, "tmaxconf", window_start=11,
                                                                     beta=beta.item()))


def test_dthresh_constants_and_timedecay_memory():
    info = manifest("rgc_intermediate_dthresh")
    _, report = load_release_model("rgc_intermediate_dthresh", prefix("rgc_intermediate_dthresh"),
                                   **info["overrides"])
    assert {"tnn_model/normalize/softmax_beta", "tnn_model/decoder_threshold"} <= set(report.constants)
    info = manifest("timedecay_shallow")
    model = load_release_checkpoint("timedecay_shallow", prefix("timedecay_shallow"), **info["overrides"])
    decay = TensorBundle(prefix("timedecay_shallow")).read("tnn_model/conv4/memory_decay")
    assert model.nodes["conv4"].cell.decay.item() == decay.item() != 0.0


def test_full_size_rgc_intermediate_names_the_issue_lists():
    """conv6 of the full-size rgc_intermediate: the 21 release tensors and shapes, one to one with our 21."""
    model = convrnn.build_model("rgc_intermediate")
    state = model.state_dict()
    conv6 = {m.release_name[len("tnn_model/conv6/"):]: release_shape(tuple(state[m.target].shape), m.layout)
             for m in release_mapping(model) if m.release_name.startswith("tnn_model/conv6/")}
    cell = "ReciprocalGateCell"
    expected = {
        "pre_0/weights_basenet": (3, 3, 128, 256), "pre_0/bias": (256,),
        f"{cell}/cell/input_to_cell_weights": (2, 2, 256, 64), f"{cell}/cell/input_to_cell_bias": (64,),
        f"{cell}/cell/tau/depthwise_weights": (7, 7, 64, 1), f"{cell}/cell/tau/pointwise_weights": (1, 1, 64, 64),
        f"{cell}/cell/tau/bias": (64,),
        f"{cell}/cell/out_to_cell/depthwise_weights": (7, 7, 256, 1),
        f"{cell}/cell/out_to_cell/pointwise_weights": (1, 1, 256, 64), f"{cell}/cell/out_to_cell/bias": (64,),
        f"{cell}/out/input_to_out_weights": (3, 3, 256, 256), f"{cell}/out/input_to_out_bias": (256,),
        f"{cell}/out/residual_add_weights": (1, 1, 128, 256),
        f"{cell}/out/feedback_to_out_weights": (1, 1, 768, 256), f"{cell}/out/feedback_to_out_bias": (256,),
        f"{cell}/out/tau/depthwise_weights": (7, 7, 256, 1), f"{cell}/out/tau/pointwise_weights": (1, 1, 256, 256),
        f"{cell}/out/tau/bias": (256,),
        f"{cell}/out/gate/depthwise_weights": (7, 7, 64, 1), f"{cell}/out/gate/pointwise_weights": (1, 1, 64, 256),
        f"{cell}/out/gate/bias": (256,),
    }
    assert conv6 == expected
    assert sum(p.numel() for n, p in model.named_parameters() if n.startswith("nodes.conv6.")) == 1_314_880


@pytest.mark.parametrize("name", convrnn.list_models())
def test_every_zoo_model_has_a_release_name_for_every_parameter(name):
    model = convrnn.build_model(name, width_multiplier=0.125, input_size=96, num_classes=10)
    mapping = release_mapping(model)
    targets = [m.target for m in mapping]
    assert sorted(targets) == sorted({*dict(model.named_parameters()), *(
        ["decoder_beta"] if model.decoder == "tmaxconf" else [])})
    assert len({m.release_name for m in mapping}) == len(mapping)


def test_wrong_architecture_lists_unmatched_names():
    info = manifest("lstm_shallow")
    with pytest.raises(UserError) as err:
        load_release_checkpoint("gru_shallow", prefix("lstm_shallow"), **info["overrides"])
    text = str(err.value)
    assert "the checkpoint does not match 'gru_shallow'" in text and "nothing was loaded" in text
    assert "checkpoint tensors the model has no place for" in text
    assert "tnn_model/conv3/ConvLSTMCell/weights [2, 2, 24, 32]" in text
    assert "tnn_model/conv3/ConvGRUCell/gates/weights" in text  # listed as missing, with its shape


def test_wrong_width_lists_shape_mismatches():
    info = manifest("lstm_shallow")
    overrides = {**info["overrides"], "width_multiplier": info["overrides"]["width_multiplier"] * 2}
    with pytest.raises(UserError, match=r"(?s)shape mismatches.*tnn_model/conv1/pre_0/weights_basenet: checkpoint "
                                        r"\[7, 7, 3, 4\], model nodes\.conv1\.pre\.weight needs \[7, 7, 3, 8\]"):
        load_release_checkpoint("lstm_shallow", prefix("lstm_shallow"), **overrides)


def test_decoder_variables_are_not_dropped_silently():
    """The tmaxconf checkpoint loaded as the plain model: its β has no place, so the import stops."""
    info = manifest("rgc_intermediate_tmaxconf")
    with pytest.raises(UserError, match=r"(?s)no place for.*tnn_model/normalize/softmax_beta \[1\]"):
        load_release_checkpoint("rgc_intermediate", prefix("rgc_intermediate_tmaxconf"), **info["overrides"])


def test_unknown_model_name():
    with pytest.raises(UserError, match="unknown model 'rgc_deep'; the release's models: gru_intermediate"):
        load_release_checkpoint("rgc_deep", prefix("lstm_shallow"))


def test_top_level_convrnn_load_release_checkpoint():
    """``convrnn.load_release_checkpoint`` (the public name) gives the same model as the release package's."""
    info = manifest("ugrnn_shallow")
    a = convrnn.load_release_checkpoint("ugrnn_shallow", str(prefix("ugrnn_shallow")), **info["overrides"])
    b = load_release_checkpoint("ugrnn_shallow", prefix("ugrnn_shallow"), **info["overrides"])
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_schedule_overrides_keep_the_weights():
    """Overrides that change how the model runs (the neural schedule, as fit_neural.py uses) import the same way."""
    info = manifest("rgc_intermediate_tmaxconf")
    plain = load_release_checkpoint("rgc_intermediate_tmaxconf", prefix("rgc_intermediate_tmaxconf"),
                                    **info["overrides"])
    neural = load_release_checkpoint("rgc_intermediate_tmaxconf", prefix("rgc_intermediate_tmaxconf"),
                                     presentation="neural", **info["overrides"])
    assert (neural.times, neural.image_off) == (26, 10) and (plain.times, plain.image_off) == (17, 12)
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in neural.state_dict().items())
