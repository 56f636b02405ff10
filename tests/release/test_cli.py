"""convrnn-import-release end to end: import → .pt → convrnn.build_model gives the same model; --verify; errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convrnn
from convrnn.checkpoint import read_checkpoint
from convrnn.release import load_release_checkpoint
from convrnn.release.cli import main
from convrnn.release.verify import logit_stats

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> tuple[Path, list[str]]:
    info = json.loads((FIXTURES / name / "manifest.json").read_text())
    o = info["overrides"]
    flags = ["--width-multiplier", str(o["width_multiplier"]), "--input-size", str(o["input_size"]),
             "--num-classes", str(o["num_classes"])]
    return FIXTURES / name / info["checkpoint"], flags


def test_import_then_build_model_gives_the_same_outputs(tmp_path, capsys):
    ckpt, flags = fixture("rgc_intermediate_tmaxconf")
    out = tmp_path / "rgc.pt"
    assert main(["--model", "rgc_intermediate_tmaxconf", "--checkpoint", str(ckpt), "--out", str(out), *flags]) == 0
    assert "imported 145 tensors" in capsys.readouterr().out
    rebuilt = convrnn.build_model(str(out))
    direct = load_release_checkpoint("rgc_intermediate_tmaxconf", ckpt, width_multiplier=0.125, input_size=64,
                                     num_classes=10)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = rebuilt(images).logits, direct(images).logits
    assert torch.equal(a, b) and a.shape == (17, 2, 10)
    assert torch.equal(rebuilt.decode(a), direct.decode(b)) and rebuilt.decoder == "tmaxconf"
    assert rebuilt.decoder_beta.item() == direct.decoder_beta.item()
    meta = read_checkpoint(out)["meta"]
    assert meta["release_global_step"] == 1000 and meta["release_model"] == "rgc_intermediate_tmaxconf"


def test_verify_reports_per_step_accuracy_and_logit_statistics(tmp_path, capsys):
    ckpt, flags = fixture("lstm_shallow")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    (tmp_path / "labels.csv").write_text("filename,label\nim0.png,3\nim1.png,7\n")
    report = tmp_path / "verify.json"
    rc = main(["--model", "lstm_shallow", "--checkpoint", str(ckpt), "--out", str(tmp_path / "lstm.pt"), *flags,
               "--verify", "--verify-images", str(images), "--verify-labels", str(tmp_path / "labels.csv"),
               "--verify-json", str(report)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "64 synthetic objects, 8 categories" in text and "decoder output: synthetic accuracy" in text
    data = json.loads(report.read_text())
    steps = data["steps"]
    assert steps == 16
    syn = data["synthetic"]
    assert len(syn["accuracy"]) == steps and all(0 <= a <= 1 for a in syn["accuracy"])
    assert all(0 <= e <= 1 + 1e-9 for e in syn["entropy"]) and len(syn["max_prob"]) == steps
    # before the image reaches the readout (t < 5) the logits cannot depend on it: one class wins everywhere
    assert syn["distinct_top1"][:5] == [1] * 5 and syn["accuracy"][:5] == [0.125] * 5
    assert max(syn["image_std"][:5]) < 1e-6 < min(syn["image_std"][5:])
    img = data["images"]
    assert len(img["files"]) == 3 and img["labelled"] == 2 and len(img["top1"]) == steps
    assert len(img["decoder_top5_classes"][0]) == 5
    for row in range(steps):
        assert f"\n{row:4d}  " in text


def test_logit_statistics_flag_uniform_logits():
    uniform = logit_stats(torch.zeros(2, 4, 1000))
    assert uniform["entropy"] == pytest.approx([1.0, 1.0]) and uniform["max_prob"] == pytest.approx([1e-3] * 2)
    peaked = torch.zeros(1, 4, 1000)
    peaked[0, :, 7] = 20.0
    stats = logit_stats(peaked)
    assert stats["entropy"][0] < 0.01 and stats["max_prob"][0] > 0.99 and stats["distinct_top1"] == [1]
    assert stats["image_std"] == [0.0]
    varied = torch.zeros(1, 2, 3)
    varied[0, 1] = torch.tensor([2.0, 4.0, 6.0])  # per class: std over the two images = |diff| / sqrt(2)
    assert logit_stats(varied)["image_std"][0] == pytest.approx(4 / math.sqrt(2))
    assert stats["logit_mean"][0] == pytest.approx(20 / 1000) and not math.isnan(stats["logit_std"][0])


def test_errors_exit_2_and_write_nothing(tmp_path, capsys, fixture_copy):
    ckpt = fixture_copy("lstm_shallow")
    os.remove(f"{ckpt}.data-00000-of-00001")
    _, flags = fixture("lstm_shallow")
    out = tmp_path / "x.pt"
    assert main(["--model", "lstm_shallow", "--checkpoint", str(ckpt), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data-00000-of-00001: data shard missing" in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []
    good, _ = fixture("lstm_shallow")
    assert main(["--model", "gru_shallow", "--checkpoint", str(good), "--out", str(out), *flags]) == 2
    assert "does not match 'gru_shallow'" in capsys.readouterr().err and not out.exists()
    assert main(["--model", "lstm_shallow", "--checkpoint", str(good), "--out", str(tmp_path / "x.bin")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["--model", "lstm_shallow", "--checkpoint", str(good), "--out", str(out), *flags, "--verify",
                 "--verify-images", str(tmp_path / "nowhere")]) == 2
    assert "--verify-images:" in capsys.readouterr().err and not out.exists()  # checked before importing


def test_script_wrapper_runs_the_same_command(tmp_path):
    ckpt, flags = fixture("timedecay_shallow")
    out = tmp_path / "td.pt"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "import_release.py"), "--model",
                             "timedecay_shallow", "--checkpoint", str(ckpt), "--out", str(out), *flags],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout and convrnn.build_model(str(out)).name == "timedecay_shallow"
