"""convrnn-make-shards (convrnn.data.make_shards:main): undecodable images are left out and listed (index and
stderr), or kept with --keep-undecodable; resuming does not decode everything again; bad input exits 2."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convrnn.data import image_check
from convrnn.data.image_check import check_image
from convrnn.data.index import read_index
from convrnn.data.make_shards import main

WNIDS = ["n01440764", "n01443537", "n02102040", "n03000134"]  # the fake ImageNet's classes (conftest.py)


def jpeg_bytes(width: int, height: int, seed: int = 5) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


BAD = {  # path under the root -> a word the reason must contain
    f"train/{WNIDS[1]}/truncated.JPEG": "truncated",
    f"train/{WNIDS[2]}/error_page.JPEG": "HTML",
    f"val/{WNIDS[0]}/empty.JPEG": "0 bytes",
}


@pytest.fixture
def dirty_imagenet(fake_imagenet: Path, tmp_path: Path) -> Path:
    """The fake ImageNet plus a truncated JPEG, an HTML page named .JPEG and a 0-byte .JPEG."""
    root = tmp_path / "imagenet"
    shutil.copytree(fake_imagenet, root)
    good = jpeg_bytes(120, 96)
    (root / f"train/{WNIDS[1]}/truncated.JPEG").write_bytes(good[: len(good) - 200])
    (root / f"train/{WNIDS[2]}/error_page.JPEG").write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>")
    (root / f"val/{WNIDS[0]}/empty.JPEG").write_bytes(b"")
    return root


def shard_sources(out: Path, split: str) -> list[str]:
    """The json 'filename' of every sample in a split's shards (read with tarfile)."""
    names = []
    for sh in read_index(out)["splits"][split]["shards"]:
        with tarfile.open(out / sh["name"]) as tf:
            names += [json.loads(tf.extractfile(m).read())["filename"] for m in tf if m.name.endswith(".json")]
    return names


def test_truncated_jpeg_passes_verify_but_not_check_image() -> None:
    data = jpeg_bytes(200, 152)
    Image.open(io.BytesIO(data[:-200])).verify()  # PIL's verify() does not notice
    assert "truncated" in check_image(data[:-200])
    assert check_image(data) is None
    assert check_image(b"") == "empty file: 0 bytes"
    assert "HTML" in check_image(b"<html>moved</html>")


def test_undecodable_images_are_left_out_and_listed(
    dirty_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert main([str(dirty_imagenet), str(out), "--shard-size", "5", "--workers", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "train: 24 samples in 5 shards" in captured.out and "val: 12 samples" in captured.out
    summary = [line for line in captured.err.splitlines() if "undecodable" in line]
    assert len(summary) == 1 and summary[0].startswith("left out 3 undecodable image(s)")
    index = read_index(out)
    listed = {b["source"]: b["reason"] for sp in ("train", "val") for b in index["splits"][sp]["undecodable"]}
    assert set(listed) == set(BAD)
    for path, word in BAD.items():
        assert word in listed[path] and path in summary[0]
    assert not index["splits"]["train"]["undecodable_kept"]
    stored = shard_sources(out, "train") + shard_sources(out, "val")
    assert len(stored) == 36 and not {Path(p).name for p in BAD} & set(stored)


def test_keep_undecodable_keeps_and_still_lists_them(
    dirty_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = [str(dirty_imagenet), str(out), "--shard-size", "5", "--workers", "1", "--quiet", "--keep-undecodable"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "kept (--keep-undecodable) 3 undecodable image(s)" in err
    index = read_index(out)
    assert index["splits"]["train"]["num_samples"] == 26 and index["splits"]["val"]["num_samples"] == 13
    assert index["splits"]["train"]["undecodable_kept"] and len(index["splits"]["train"]["undecodable"]) == 2
    assert {Path(p).name for p in BAD} <= set(shard_sources(out, "train") + shard_sources(out, "val"))


def test_resume_uses_the_recorded_check(
    dirty_imagenet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = [str(dirty_imagenet), str(out), "--shard-size", "5", "--workers", "1", "--quiet"]
    assert main(args) == 0
    first = read_index(out)
    victim = out / first["splits"]["train"]["shards"][2]["name"]
    before = victim.read_bytes()
    victim.unlink()  # as if the run had been killed before writing it

    def no_second_check(*a: object, **k: object) -> None:
        raise AssertionError("images decoded again on resume")

    monkeypatch.setattr(image_check, "find_undecodable", no_second_check)
    assert main(args) == 0
    assert victim.read_bytes() == before and read_index(out) == first
    assert "left out 3 undecodable" in capsys.readouterr().err
    # the flag changes the plan: refused without --overwrite, with the reason
    assert main([*args, "--keep-undecodable"]) == 2
    assert "undecodable_kept changed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard-size", "0"], "error: --shard-size must be >= 1, got 0"),
        (["--classes", "/nonexistent/classes.txt"], "error: --classes /nonexistent/classes.txt"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    fake_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    assert main([str(fake_imagenet), str(tmp_path / "out"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_missing_root_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "no_such_root"), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: the ImageNet root {tmp_path / 'no_such_root'} is not a directory\n"
    assert not (tmp_path / "out").exists()
