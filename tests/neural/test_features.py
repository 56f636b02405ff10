"""Feature extraction to disk: equal to the in-memory model output, atomic, bounded, PCA-projected on request."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import convrnn
from convrnn.data.synthetic_objects import SyntheticObjects
from convrnn.neural import MemmapFeatures, load_stimulus_set
from convrnn.neural.features import extract_features, fit_pca, image_tensor

LAYERS = ["conv2", "conv5", "conv8"]


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """10 rendered PNGs (a stimulus set on disk)."""
    gen = SyntheticObjects(image_size=32, n_categories=2, objects_per_category=1)
    table = gen.sample_table(5, levels=(3,))
    csv = gen.write_stimulus_set(tmp_path_factory.mktemp("stimuli"), table)
    return load_stimulus_set(csv)


@pytest.fixture(scope="module")
def model() -> convrnn.ConvRNN:
    torch.manual_seed(0)
    return convrnn.build_model("rgc_intermediate", input_size=32, width_multiplier=0.125, presentation="neural").eval()


def test_memmap_files_equal_in_memory_features(model: convrnn.ConvRNN, stimuli: pd.DataFrame,
                                               tmp_path: Path) -> None:
    paths, ids = stimuli["image_path"].tolist(), stimuli["stimulus_id"].tolist()
    # batch 4 over 10 images: three batches, the last one short
    disk = extract_features(model, paths, ids, LAYERS, tmp_path, batch_size=4)
    images = torch.stack([image_tensor(p, 32) for p in paths])
    with torch.no_grad():
        out = model(images, times=26, image_off=10, return_features=LAYERS)
    assert list(disk.stimulus_ids) == ids and sorted(disk.layers) == sorted(LAYERS)
    for layer in LAYERS:
        assert list(disk.steps(layer)) == list(range(26))
        for t in (0, model.first_image_step(layer), 9, 10, 25):
            stored = disk.get(layer, t)
            assert isinstance(stored, np.memmap) and stored.dtype == np.float32
            expected = out.features[layer][t].reshape(len(ids), -1).numpy()
            np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.rglob("*.partial"))


def test_step_subset_and_stale_files_removed(model: convrnn.ConvRNN, stimuli: pd.DataFrame, tmp_path: Path) -> None:
    paths, ids = stimuli["image_path"].tolist(), stimuli["stimulus_id"].tolist()
    extract_features(model, paths, ids, LAYERS, tmp_path, steps=[3, 4])
    again = extract_features(model, paths[:6], ids[:6], ["conv5"], tmp_path, steps=[7, 25])
    assert again.layers == ["conv5"] and list(again.steps("conv5")) == [7, 25]
    assert again.get("conv5", 7).shape[0] == 6
    with pytest.raises(ValueError, match="outside"):
        extract_features(model, paths, ids, ["conv5"], tmp_path, steps=[26])
    with pytest.raises(ValueError, match="unknown layer"):
        extract_features(model, paths, ids, ["conv99"], tmp_path)


def test_interrupted_run_leaves_only_partial_files(model: convrnn.ConvRNN, stimuli: pd.DataFrame, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    forward = type(model).forward

    def failing(self: convrnn.ConvRNN, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("interrupted in the second batch")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", failing)
    with pytest.raises(KeyboardInterrupt):
        extract_features(model, stimuli["image_path"].tolist(), stimuli["stimulus_id"].tolist(), LAYERS, tmp_path,
                         batch_size=4)
    assert calls["n"] == 2
    assert not list(tmp_path.rglob("step_*.npy"))
    assert len(list(tmp_path.rglob("step_*.npy.partial"))) == len(LAYERS) * 26
    assert not (tmp_path / "stimulus_ids.txt").exists()


def test_pca_projection(model: convrnn.ConvRNN, stimuli: pd.DataFrame, tmp_path: Path) -> None:
    paths, ids = stimuli["image_path"].tolist(), stimuli["stimulus_id"].tolist()
    pca = fit_pca(model, paths[5:], ["conv2", "conv8"], 8, batch_size=5)
    assert set(pca) == {"conv2", "conv8"}
    center, components = pca["conv2"]
    assert components.shape == (center.shape[0], 8)
    np.testing.assert_allclose(components.T @ components, np.eye(8), atol=1e-4)  # orthonormal axes
    few = fit_pca(model, paths[5:], ["conv8"], 10_000)
    assert few == {}  # a layer with no more units than components stays unprojected
    disk = extract_features(model, paths[:5], ids[:5], ["conv2"], tmp_path, pca=pca, steps=[5])
    raw = extract_features(model, paths[:5], ids[:5], ["conv2"], tmp_path / "raw", steps=[5])
    expected = (torch.from_numpy(np.array(raw.get("conv2", 5))) - center) @ components
    assert disk.get("conv2", 5).shape == (5, 8)
    np.testing.assert_allclose(disk.get("conv2", 5), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_load_image_from_zip_equals_folder(stimuli: pd.DataFrame, tmp_path: Path) -> None:
    folder = Path(stimuli.attrs["images"])
    archive = tmp_path / "stimuli.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in stimuli["filename"]:
            zf.write(folder / name, arcname=name)
    zipped = load_stimulus_set(folder / "stimulus_set.csv", archive)
    a = image_tensor(stimuli["image_path"].iloc[0], 32)
    b = image_tensor(zipped["image_path"].iloc[0], 32)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    # normalised with the ImageNet statistics: (x - mean) / std
    with Image.open(folder / stimuli["filename"].iloc[0]) as img:
        raw = np.asarray(img.convert("RGB"))
    np.testing.assert_allclose(a[0].numpy(), (raw[..., 0] / 255.0 - 0.485) / 0.229, rtol=1e-5, atol=1e-6)
    assert image_tensor(stimuli["image_path"].iloc[0], 16).shape == (3, 16, 16)


def test_memmap_source_reads_what_was_written(model: convrnn.ConvRNN, stimuli: pd.DataFrame, tmp_path: Path) -> None:
    extract_features(model, stimuli["image_path"].tolist(), stimuli["stimulus_id"].tolist(), ["conv8"], tmp_path,
                     steps=[12])
    reopened = MemmapFeatures(tmp_path)
    assert reopened.layers == ["conv8"] and list(reopened.steps("conv8")) == [12]
    assert reopened.get("conv8", 12).shape[0] == len(stimuli)


def test_progress_callback_counts_images(model: convrnn.ConvRNN, stimuli: pd.DataFrame, tmp_path: Path) -> None:
    """``progress(n)`` is called once per batch with its image count; the caller (the pipeline) draws the bar."""
    paths, ids = stimuli["image_path"].tolist(), stimuli["stimulus_id"].tolist()
    calls: list[int] = []
    extract_features(model, paths, ids, ["conv2"], tmp_path, steps=[5], batch_size=4, progress=calls.append)
    assert calls == [4, 4, 2]
    calls.clear()
    fit_pca(model, paths, ["conv2"], 3, batch_size=6, progress=calls.append)
    assert calls == [6, 4]
