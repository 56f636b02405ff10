"""ConvRNNBrainModel by hand on a tiny model: time bins -> steps, the assembly's brainio layout, the tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("brainscore_vision", reason="Brain-Score vision is not installed here: run make test-brainscore "
                    "(it lives in .venv-brainscore; see docs/brainscore.md)")

from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet  # noqa: E402
from brainscore_vision.model_interface import BrainModel  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import convrnn  # noqa: E402
from convrnn.brainscore.adapter import ConvRNNBrainModel, imagenet_synsets  # noqa: E402
from convrnn.errors import UserError  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def tiny() -> convrnn.ConvRNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return convrnn.build_model("rgc_intermediate", input_size=SIZE, width_multiplier=0.125, num_classes=1000)


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory: pytest.TempPathFactory) -> StimulusSet:
    folder = tmp_path_factory.mktemp("stimuli")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        size = SIZE if i % 2 else 48  # some need resizing
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
        rows.append(dict(stimulus_id=f"im{i}", filename=f"im{i}.png", image_label=["dog", "cat"][i % 2],
                         object_name=f"obj{i}"))
    table = StimulusSet(rows)
    table.stimulus_paths = {r["stimulus_id"]: folder / r["filename"] for r in rows}
    table.identifier = "convrnn.tiny"
    return table


def by_hand(model: convrnn.ConvRNN, stimuli: StimulusSet, layer: str) -> torch.Tensor:
    """[T, N, units] features of ``layer``: PIL bilinear resize, /255, ImageNet mean/std, 26 steps, off at 10."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    images = []
    for sid in stimuli["stimulus_id"]:
        img = Image.open(stimuli.get_stimulus(sid)).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        images.append((torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std)
    with torch.no_grad():
        out = model(torch.stack(images), times=26, image_off=10, return_features=[layer])
    return out.features[layer].flatten(2)


def test_time_bins_map_to_steps_by_hand(tiny, stimuli) -> None:
    model = ConvRNNBrainModel(tiny, "tiny", {"V4": "conv5", "IT": ["conv7", "conv8"]}, batch_size=4, progress=False)
    bins = [(70, 80), (95, 115), (0, 10), (250, 260)]
    model.start_recording("V4", bins)
    assembly = model.look_at(stimuli)
    assert assembly.dims == ("presentation", "neuroid", "time_bin")
    feats = by_hand(tiny, stimuli, "conv5")
    expected = torch.stack([feats[7], 0.25 * feats[9] + 0.5 * feats[10] + 0.25 * feats[11], feats[0], feats[25]],
                           dim=-1)
    np.testing.assert_allclose(assembly.values, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert list(assembly["time_bin_start"].values) == [70, 95, 0, 250]
    assert list(assembly["time_bin_end"].values) == [80, 115, 10, 260]
    assert list(assembly["stimulus_id"].values) == list(stimuli["stimulus_id"])
    assert list(assembly["object_name"].values) == list(stimuli["object_name"])  # every StimulusSet column
    assert set(assembly["region"].values) == {"V4"} and set(assembly["layer"].values) == {"conv5"}
    assert assembly["neuroid_id"].values[0] == "conv5.0" and len(set(assembly["neuroid_id"].values)) == feats.shape[2]
    # the offset shifts every bin by whole steps; two layers are concatenated on neuroid
    shifted = ConvRNNBrainModel(tiny, "tiny", {"IT": "conv7+conv8"}, offset=2, progress=False)
    shifted.start_recording("IT", [(70, 80)])
    it = shifted.look_at([str(stimuli.get_stimulus(s)) for s in stimuli["stimulus_id"]])
    expected_it = torch.cat([by_hand(tiny, stimuli, "conv7")[9], by_hand(tiny, stimuli, "conv8")[9]], dim=1)
    np.testing.assert_allclose(it.values[:, :, 0], expected_it.numpy(), rtol=1e-5, atol=1e-6)
    assert list(dict.fromkeys(it["layer"].values)) == ["conv7", "conv8"]


def test_bins_outside_the_steps_and_unknown_regions_are_named(tiny) -> None:
    model = ConvRNNBrainModel(tiny, "tiny", {"V4": "conv5"}, progress=False)
    with pytest.raises(UserError, match=r"\(250, 270\) ms -> steps 25\.\.26"):
        model.start_recording("V4", [(70, 80), (250, 270)])
    with pytest.raises(UserError, match=r"region 'IT' has no layer"):
        model.start_recording("IT", [(70, 80)])
    with pytest.raises(UserError, match=r"unknown layer\(s\) \['conv99'\]"):
        ConvRNNBrainModel(tiny, "tiny", {"V4": "conv99"})
    with pytest.raises(UserError, match="end must be greater"):
        model.start_recording("V4", [(80, 70)])


def _decoded(tiny: convrnn.ConvRNN, stimuli: StimulusSet) -> np.ndarray:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    images = []
    for sid in stimuli["stimulus_id"]:
        img = Image.open(stimuli.get_stimulus(sid)).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        images.append((torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std)
    with torch.no_grad():
        return tiny.decode(tiny(torch.stack(images)).logits).numpy()  # the model's own schedule and decoder


def test_label_task_returns_the_decoders_answer(tiny, stimuli) -> None:
    model = ConvRNNBrainModel(tiny, "tiny", {"V4": "conv5"}, progress=False)
    logits = _decoded(tiny, stimuli)
    model.start_task(BrainModel.Task.label, "imagenet")
    labels = model.look_at(stimuli)
    synsets = imagenet_synsets()
    assert len(synsets) == 1000 and synsets[0] == "n01440764"
    assert list(labels.values[0]) == [synsets[i] for i in logits.argmax(axis=1)]
    assert list(labels["logit"].values) == list(logits.argmax(axis=1))
    # custom labels: mean softmax probability over Brain-Score's ImageNet classes of each label
    from brainscore_vision.model_helpers.brain_transformation.behavior import LabelToImagenetIndices

    model.start_task(BrainModel.Task.label, ["dog", "cat"])
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    per_label = np.stack([probs[:, LabelToImagenetIndices.label_to_indices(x)].mean(1) for x in ("dog", "cat")], 1)
    assert list(model.look_at(stimuli).values[0]) == [["dog", "cat"][i] for i in per_label.argmax(1)]
    model.start_task(BrainModel.Task.label, ["dog", "cat"], aggregation="max")  # as some benchmarks ask
    per_label = np.stack([probs[:, LabelToImagenetIndices.label_to_indices(x)].max(1) for x in ("dog", "cat")], 1)
    assert list(model.look_at(stimuli, number_of_trials=10).values[0]) == [["dog", "cat"][i]
                                                                          for i in per_label.argmax(1)]
    with pytest.raises(UserError, match="aggregation"):
        model.start_task(BrainModel.Task.label, ["dog"], aggregation="median")


def test_probabilities_task_is_a_logistic_readout_of_the_decoded_logits(tiny, stimuli) -> None:
    model = ConvRNNBrainModel(tiny, "tiny", {"V4": "conv5"}, progress=False)
    model.start_task(BrainModel.Task.probabilities, fitting_stimuli=stimuli, number_of_trials=1)
    proba = model.look_at(stimuli)
    logits = _decoded(tiny, stimuli)
    scaler = StandardScaler().fit(logits)
    # Brain-Score's readout: multinomial (sklearn 1.5 warns that multi_class is deprecated), newton-cg, C=1e-3
    reference = LogisticRegression(multi_class="multinomial", solver="newton-cg", C=1e-3)
    reference.fit(scaler.transform(logits), [0 if x == "dog" else 1 for x in stimuli["image_label"]])
    expected = reference.predict_proba(scaler.transform(logits))
    assert list(proba["choice"].values) == ["dog", "cat"]
    np.testing.assert_allclose(proba.values, expected, atol=1e-5)
    model.start_task(BrainModel.Task.passive)
    assert model.look_at(stimuli) is None


def test_imagenet_labels_need_a_1000_way_readout() -> None:
    small = convrnn.build_model("rgc_intermediate", input_size=SIZE, width_multiplier=0.125, num_classes=8)
    model = ConvRNNBrainModel(small, "small", {"V4": "conv5"})
    with pytest.raises(UserError, match="1000-way"):
        model.start_task(BrainModel.Task.label, "imagenet")


def test_from_spec_records_with_the_neural_presentation_and_decides_with_the_trained_one() -> None:
    model = ConvRNNBrainModel.from_spec("rgc_intermediate", {"V4": "conv5"}, input_size=SIZE, width_multiplier=0.125)
    trained = convrnn.model_config("rgc_intermediate")
    assert (model.times, model.image_off) == (26, 10)
    assert (model.task_times, model.task_image_off) == (trained["times"], trained["image_off"]) == (17, 12)
    assert model.identifier == "convrnn-rgc_intermediate" and model.visual_degrees() == 8
