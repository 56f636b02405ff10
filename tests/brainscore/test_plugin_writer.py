"""convrnn-brainscore-plugin without Brain-Score: the files it writes, its errors, the region map and the time-bin
rule (these run in the main environment too)."""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import convrnn
from convrnn.brainscore.plugin import _replace_dir, fetch_weights, main
from convrnn.brainscore.regions import parse_regions, regions_from_best_layers
from convrnn.brainscore.timebins import bin_step_weights
from convrnn.errors import UserError
from convrnn.neural.areas import default_bin_steps

SMALL = ["--input-size", "64", "--width", "0.125"]


def test_ten_ms_bins_use_fit_neurals_steps() -> None:
    bins = [(70 + 10 * i, 80 + 10 * i) for i in range(19)]
    for offset in (0, -3, 1):
        weights = bin_step_weights(bins, times=30, offset=offset)
        assert [list(w) for w in weights] == [[s] for s in default_bin_steps(bins, offset=offset)]
        assert all(list(w.values()) == [1.0] for w in weights)
    assert bin_step_weights([(70, 170)], times=26) == [{t: 0.1 for t in range(7, 17)}]
    assert bin_step_weights([(72, 75)], times=26) == [{7: 1.0}]
    squeezed = np.empty((), dtype=object)  # how Brain-Score hands over a single squeezed bin
    squeezed[()] = (90, 100)
    assert bin_step_weights([squeezed], times=26) == [{9: 1.0}]
    with pytest.raises(UserError, match=r"\(250, 270\) ms -> steps 25\.\.26"):
        bin_step_weights([(250, 270)], times=26)
    with pytest.raises(UserError, match=r"\(0, 10\) ms -> steps -1\.\.-1"):
        bin_step_weights([(0, 10)], times=26, offset=-1)


def test_region_maps() -> None:
    assert parse_regions("V4=conv5, IT=conv9+conv10") == {"V4": ["conv5"], "IT": ["conv9", "conv10"]}
    for bad, message in (("V4", "not REGION=LAYER"), ("V4=conv5,V4=conv6", "given twice"), ("", "no region"),
                         ("IT=conv9+", "empty layer")):
        with pytest.raises(UserError, match=message):
            parse_regions(bad)


def test_best_layers_csv(tmp_path: Path) -> None:
    csv = tmp_path / "best_layers.csv"
    csv.write_text("area,layer,selection_raw_r\nV4,conv5,0.8\npIT,conv7,0.7\ncIT/aIT,conv9,0.6\n")
    assert regions_from_best_layers(csv) == {"V4": ["conv5"], "pIT": ["conv7"], "cIT/aIT": ["conv9"]}
    assert regions_from_best_layers(csv, ["V4"]) == {"V4": ["conv5"]}
    with pytest.raises(UserError, match=r"no row for \['IT'\].*--regions V4 IT"):
        regions_from_best_layers(csv, ["V4", "IT"])
    with pytest.raises(UserError, match="does not exist"):
        regions_from_best_layers(tmp_path / "nope.csv")


def test_writes_a_plugin_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.pt"
    model = convrnn.build_model("rgc_intermediate", input_size=64, width_multiplier=0.125)
    torch.save(model.state_dict(), weights)
    out = tmp_path / "plugin"
    assert main(["--model", "rgc_intermediate", *SMALL, "--weights", str(weights), "--regions", "V4=conv5,IT=conv8",
                 "--out", str(out)]) == 0
    assert "wrote the Brain-Score plugin" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["__init__.py", "model.py", "requirements.txt", "test.py"]
    init = (out / "__init__.py").read_text()
    # Brain-Score finds a plugin by this literal line in its __init__.py
    assert "model_registry['convrnn-rgc_intermediate'] = lambda: get_model('convrnn-rgc_intermediate')" in init
    source = (out / "model.py").read_text()
    tree = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(source).body
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and n.targets[0].id.isupper()}
    assert tree["MODEL"] == "rgc_intermediate"
    assert tree["WEIGHTS"] == str(weights.resolve())
    assert tree["WEIGHTS_SHA256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert tree["REGION_LAYER_MAP"] == {"V4": ["conv5"], "IT": ["conv8"]}
    assert tree["SETTINGS"] == dict(visual_degrees=8.0, times=26, image_off=10, offset=0, input_size=64,
                                    width_multiplier=0.125)
    assert (out / "requirements.txt").read_text() == f"convrnn=={convrnn.__version__}\n"
    compile((out / "test.py").read_text(), "test.py", "exec")
    # a YAML graph travels inside the folder; a URL is referenced as it is
    yaml = Path(convrnn.__file__).parent / "configs" / "models" / "rgc_intermediate.yaml"
    out2 = tmp_path / "plugin2"
    assert main(["--model", str(yaml), *SMALL, "--weights", "https://example.org/w.pt", "--regions", "V4=conv5",
                 "--identifier", "my-convrnn", "--out", str(out2)]) == 0
    assert (out2 / "graph.yaml").read_bytes() == yaml.read_bytes()
    assert "WEIGHTS = 'https://example.org/w.pt'" in (out2 / "model.py").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--model", "rgc_intermediate", *SMALL, "--regions", "V4=conv99"], r"unknown layer\(s\) \['conv99'\]"),
    (["--model", "no_such_model", "--regions", "V4=conv5"], "unknown model 'no_such_model'"),
    (["--model", "rgc_intermediate", *SMALL, "--weights", "missing.pt", "--regions", "V4=conv5"], "does not exist"),
    (["--model", "missing.ckpt", "--regions", "V4=conv5"], "checkpoint missing.ckpt does not exist"),
    (["--model", "rgc_intermediate", *SMALL, "--regions", "V4"], "not REGION=LAYER"),
    (["--model", "rgc_intermediate", *SMALL, "--regions", "V4=conv5", "--identifier", "a b"], "--identifier"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                              message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "plugin"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary sibling


def test_refuses_a_non_empty_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plugin"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["--model", "rgc_intermediate", *SMALL, "--regions", "V4=conv5", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"


def test_force_replaces_the_folder_and_leaves_no_sibling(tmp_path: Path) -> None:
    out = tmp_path / "plugin"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    assert main(["--model", "rgc_intermediate", *SMALL, "--regions", "V4=conv5", "--out", str(out), "--force"]) == 0
    assert (out / "model.py").is_file() and not (out / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["plugin"]


def test_replace_dir_keeps_the_old_folder_when_the_new_one_cannot_go_in(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    out, new = tmp_path / "plugin", tmp_path / ".plugin.new"
    out.mkdir()
    (out / "model.py").write_text("old")
    new.mkdir()
    (new / "model.py").write_text("new")
    real_replace = os.replace

    def replace(src: object, dst: object) -> None:
        if Path(src) == new:
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        _replace_dir(new, out)
    assert (out / "model.py").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".plugin.new", "plugin"]  # no old folder left aside
    monkeypatch.setattr(os, "replace", real_replace)
    _replace_dir(new, out)
    assert (out / "model.py").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["plugin"]


def test_fetch_weights_failed_download_leaves_no_partial_file(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.bin").as_uri()
    with pytest.raises(OSError):
        fetch_weights(missing, cache_dir=tmp_path / "cache")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_fetch_weights_by_url_caches_and_checks(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    cached = fetch_weights(source.as_uri(), digest, cache_dir=tmp_path / "cache")  # file:// URL: no network
    assert cached.read_bytes() == b"weights" and cached.parent.parent == tmp_path / "cache"
    source.write_bytes(b"changed")  # a second call reads the cache, not the URL
    assert fetch_weights(source.as_uri(), digest, cache_dir=tmp_path / "cache") == cached
    with pytest.raises(UserError, match="expected 0000"):
        fetch_weights(str(source), "0000")


def test_console_script_help() -> None:
    import subprocess

    run = subprocess.run([sys.executable, "-m", "convrnn.brainscore.plugin", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "--regions" in run.stdout and "--best-layers" in run.stdout


def test_checkpoint_model_is_referenced_by_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = convrnn.build_model("rgc_intermediate", input_size=32, width_multiplier=0.125)
    convrnn.save_model_checkpoint(model, tmp_path / "tiny.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["--model", "tiny.pt", "--regions", "V4=conv5", "--out", "plugin"]) == 0
    source = (tmp_path / "plugin" / "model.py").read_text()
    assert f"MODEL = {str((tmp_path / 'tiny.pt').resolve())!r}" in source and "WEIGHTS = None" in source
    assert "model_registry['convrnn-rgc_intermediate']" in (tmp_path / "plugin" / "__init__.py").read_text()
    assert main(["--model", "tiny.pt", "--weights", "tiny.pt", "--regions", "V4=conv5", "--out", "p2"]) == 2
