"""The folder written by convrnn-brainscore-plugin imports, registers with Brain-Score's loader and scores."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("brainscore_vision", reason="Brain-Score vision is not installed here: run make test-brainscore "
                    "(it lives in .venv-brainscore; see docs/brainscore.md)")

import brainscore_vision  # noqa: E402
from brainscore_core.benchmarks import score_benchmark  # noqa: E402

from convrnn.brainscore.plugin import main  # noqa: E402
from convrnn.neural.checkpoint import load_model  # noqa: E402

from .conftest import TEACHER  # noqa: E402

IDENTIFIER = "convrnn-test-plugin"


@pytest.fixture
def registered(tmp_path: Path, recordings):
    """The plugin written from a state dict (the teacher's weights) and fit_neural.py's best_layers.csv, linked
    into brainscore_vision/models/ as a submitted plugin would be; unlinked afterwards."""
    weights = tmp_path / "teacher.pt"
    teacher = load_model("rgc_intermediate", input_size=64, width_multiplier=0.125, seed=TEACHER["seed"]).model
    torch.save(teacher.state_dict(), weights)
    out = tmp_path / "convrnn_test_plugin"
    status = main(["--model", "rgc_intermediate", "--input-size", "64", "--width", "0.125", "--seed", "7",
                   "--weights", str(weights), "--best-layers", str(recordings["best_layers"]),
                   "--identifier", IDENTIFIER, "--out", str(out)])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["__init__.py", "model.py", "requirements.txt", "test.py"]
    models_dir = Path(brainscore_vision.__file__).parent / "models"
    link = models_dir / f"zz_{out.name}_{os.getpid()}"
    if not os.access(models_dir, os.W_OK):
        pytest.skip(f"cannot link the plugin into {models_dir} (read-only)")
    link.symlink_to(out, target_is_directory=True)
    try:
        yield out, link
    finally:
        link.unlink()


@pytest.mark.slow
def test_plugin_registers_and_scores_like_fit_neural(registered, recordings, v4_benchmark) -> None:
    out, link = registered
    model = brainscore_vision.load_model(IDENTIFIER)  # Brain-Score's own lookup: scans models/*/__init__.py
    assert model.identifier == IDENTIFIER
    best = pd.read_csv(recordings["best_layers"]).set_index("area")["layer"].to_dict()
    assert model.region_layer_map == {area: [layer] for area, layer in best.items()}
    model.progress = False
    score = score_benchmark(v4_benchmark, model)
    ours = pd.read_csv(recordings["scores"])
    ours = ours[(ours["area"] == "V4") & (ours["layer"] == best["V4"])].sort_values("bin")
    np.testing.assert_allclose(np.asarray(score.values, dtype=float), ours["score"].to_numpy(), atol=1e-4)
    # the plugin's own test file (what Brain-Score runs on submission)
    spec = importlib.util.spec_from_file_location("convrnn_plugin_test", out / "test.py")
    plugin_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin_test)
    plugin_test.test_has_identifier()
    plugin_test.test_records_committed_regions()


def test_checkpoint_by_url_builds_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model checkpoint referenced by a (file://) URL: fetched into the cache, rebuilt from its stored graph."""
    import convrnn
    from convrnn.brainscore.plugin import build_plugin_model

    monkeypatch.setenv("CONVRNN_BRAINSCORE_CACHE", str(tmp_path / "cache"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = convrnn.build_model("rgc_intermediate", input_size=32, width_multiplier=0.125)
    ckpt = convrnn.save_model_checkpoint(model, tmp_path / "tiny.pt")
    brain = build_plugin_model("tiny-ckpt", ckpt.as_uri(), {"V4": ["conv5"]}, progress=False)
    assert brain.identifier == "tiny-ckpt" and brain.region_layer_map == {"V4": ["conv5"]}
    assert (tmp_path / "cache").is_dir()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(brain.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert (brain.task_times, brain.task_image_off) == (None, None)  # a checkpoint keeps its own schedule
