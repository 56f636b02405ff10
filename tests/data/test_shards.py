"""Shard writing: labels as ImageFolder, original bytes, global shuffle, index, resume, parallel, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds

from convrnn.data import imagenet, scan
from convrnn.data.imagenet import convert_imagenet
from convrnn.data.index import read_index
from convrnn.data.scan import read_labels_file
from convrnn.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def read_tar_samples(path: Path) -> list[dict]:
    """Samples of one shard read with tarfile (independent of the writer and of webdataset)."""
    samples: dict[str, dict] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tf.extractfile(m).read()
    return list(samples.values())


def all_samples(out: Path, split: str) -> list[dict]:
    index = read_index(out)
    return [s for sh in index["splits"][split]["shards"] for s in read_tar_samples(out / sh["name"])]


def image_of(sample: dict) -> bytes:
    return next(sample[k] for k in ("jpg", "png") if k in sample)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_files(root: Path) -> dict[str, Path]:
    """sha256 -> path of every image below root (ImageFolder's extensions)."""
    return {sha(p.read_bytes()): p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpeg", ".png")}


def test_labels_equal_torchvision_imagefolder(fake_imagenet: Path, imagenet_shards: Path) -> None:
    from torchvision.datasets import ImageFolder

    for split in ("train", "val"):
        folder = ImageFolder(str(fake_imagenet / split))
        expected = {sha(Path(p).read_bytes()): y for p, y in folder.samples}
        got = {sha(image_of(s)): int(s["cls"]) for s in all_samples(imagenet_shards, split)}
        assert got == expected
        assert read_index(imagenet_shards)["classes"] == folder.classes
    # the stray .txt is not a sample, the PNG and the nested JPEG are
    assert len(ImageFolder(str(fake_imagenet / "train"))) == 24


def test_bytes_identical_each_file_once_and_metadata(fake_imagenet: Path, imagenet_shards: Path) -> None:
    for split in ("train", "val"):
        sources = source_files(fake_imagenet / split)
        samples = all_samples(imagenet_shards, split)
        hashes = Counter(sha(image_of(s)) for s in samples)
        assert set(hashes) == set(sources) and set(hashes.values()) == {1}
        keys = [s["__key__"] for s in samples]
        assert len(set(keys)) == len(keys) and not any("." in k for k in keys)
        for s in samples:
            meta = json.loads(s["json"])
            src = sources[sha(image_of(s))]
            assert meta["filename"] == src.name
            assert meta["wnid"] == src.relative_to(fake_imagenet / split).parts[0]
            assert ("png" in s) == (src.suffix == ".png")


def test_webdataset_reads_the_shards(imagenet_shards: Path) -> None:
    index = read_index(imagenet_shards)
    urls = [str(imagenet_shards / sh["name"]) for sh in index["splits"]["val"]["shards"]]
    ds = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg;png", "cls", "json", "__key__")
    rows = list(ds)
    assert len(rows) == index["splits"]["val"]["num_samples"] == 12
    for img, cls, meta, _key in rows:
        assert img.mode == "RGB" and isinstance(cls, int)
        assert index["classes"][cls] == meta["wnid"]


def test_index_counts_and_global_shuffle(imagenet_shards: Path) -> None:
    index = read_index(imagenet_shards)
    assert index["num_classes"] == 4 and index["classes"] == sorted(index["classes"])
    for split, total in (("train", 24), ("val", 12)):
        info = index["splits"][split]
        assert info["num_samples"] == total == sum(sh["num_samples"] for sh in info["shards"])
        assert info["num_shards"] == len(info["shards"]) == -(-total // 3)
        for sh in info["shards"]:
            assert len(read_tar_samples(imagenet_shards / sh["name"])) == sh["num_samples"]
    # shuffled before writing: shards are not single-class and classes are not in sorted order
    labels = [int(s["cls"]) for s in all_samples(imagenet_shards, "train")]
    assert labels != sorted(labels)
    first = read_tar_samples(imagenet_shards / index["splits"]["train"]["shards"][0]["name"])
    assert len({int(s["cls"]) for s in first}) > 1


def test_same_seed_same_bytes_parallel_equals_serial_other_seed_other_order(
    fake_imagenet: Path, imagenet_shards: Path, tmp_path: Path
) -> None:
    convert_imagenet(fake_imagenet, tmp_path / "par", shard_size=3, seed=0, workers=2, progress=False)
    for p in sorted(imagenet_shards.glob("*.tar")):
        assert (tmp_path / "par" / p.name).read_bytes() == p.read_bytes(), p.name
    convert_imagenet(fake_imagenet, tmp_path / "s1", shard_size=3, seed=1, workers=1, progress=False)
    keys0 = [s["__key__"] for s in all_samples(imagenet_shards, "train")]
    keys1 = [s["__key__"] for s in all_samples(tmp_path / "s1", "train")]
    assert sorted(keys0) == sorted(keys1) and keys0 != keys1


def test_resume_after_interruption(fake_imagenet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert_imagenet(fake_imagenet, out, shard_size=3, seed=0, workers=1, progress=False)
    names = sorted(p.name for p in out.glob("imagenet-train-*.tar"))
    before = {n: (out / n).stat() for n in names}
    # simulate a crash: one shard never written, one left as garbage (not from our writer), a stale temp
    # file and no dataset.json yet
    (out / names[2]).unlink()
    (out / names[5]).write_bytes(b"garbage")
    (out / f".{names[4]}.tmp.12345.deadbeef").write_bytes(b"half a shard")
    (out / "dataset.json").unlink()
    convert_imagenet(fake_imagenet, out, shard_size=3, seed=0, workers=1, progress=False)
    assert not list(out.glob(".*tmp*"))
    for n in names:
        if n not in (names[2], names[5]):  # complete shards are kept, not rewritten
            st = (out / n).stat()
            assert (st.st_ino, st.st_mtime_ns) == (before[n].st_ino, before[n].st_mtime_ns)
    sources = source_files(fake_imagenet / "train")
    hashes = Counter(sha(image_of(s)) for s in all_samples(out, "train"))
    assert set(hashes) == set(sources) and set(hashes.values()) == {1}
    for h, p in sources.items():  # bytes identical to the source files
        assert h == sha(p.read_bytes())


def test_crash_midway_then_resume(fake_imagenet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    real = imagenet.read_file_bytes
    calls = {"n": 0}

    def flaky(root: str, spec: scan.SampleSpec) -> bytes:
        calls["n"] += 1
        if calls["n"] == 10:  # in the middle of the 4th shard
            raise KeyboardInterrupt
        return real(root, spec)

    monkeypatch.setattr(imagenet, "read_file_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        convert_imagenet(fake_imagenet, out, splits=["train"], shard_size=3, seed=0, workers=1, progress=False)
    assert not (out / "dataset.json").exists()  # the index is written last
    assert len(list(out.glob("imagenet-train-*.tar"))) == 3
    assert not list(out.glob(".*tmp*"))  # the half-written shard's temp file was removed
    monkeypatch.setattr(imagenet, "read_file_bytes", real)
    convert_imagenet(fake_imagenet, out, splits=["train"], shard_size=3, seed=0, workers=1, progress=False)
    hashes = Counter(sha(image_of(s)) for s in all_samples(out, "train"))
    assert set(hashes) == set(source_files(fake_imagenet / "train")) and set(hashes.values()) == {1}


def test_resume_refuses_a_different_plan(fake_imagenet: Path, tmp_path: Path) -> None:
    convert_imagenet(fake_imagenet, tmp_path, splits=["val"], shard_size=3, seed=0, workers=1, progress=False)
    with pytest.raises(UserError, match="seed changed"):
        convert_imagenet(fake_imagenet, tmp_path, splits=["val"], shard_size=3, seed=7, workers=1, progress=False)
    index = convert_imagenet(
        fake_imagenet,
        tmp_path,
        splits=["val"],
        shard_size=4,
        seed=7,
        workers=1,
        progress=False,
        overwrite=True,
    )
    assert index["splits"]["val"]["num_shards"] == 3
    assert sorted(p.name for p in tmp_path.glob("imagenet-val-*.tar")) == [
        f"imagenet-val-{i:06d}.tar" for i in range(3)
    ]


def _flat_val(fake_imagenet: Path, dest: Path) -> dict[str, str]:
    """Copy val/<wnid>/* into a flat folder; return filename -> wnid."""
    dest.mkdir(parents=True)
    truth = {}
    for p in sorted((fake_imagenet / "val").rglob("*.JPEG")):
        shutil.copy(p, dest / p.name)
        truth[p.name] = p.parent.name
    return truth


@pytest.mark.parametrize("fmt", ["space_wnid", "csv_index_with_header", "kaggle_loc"])
def test_flat_val_with_labels_file(fake_imagenet: Path, imagenet_shards: Path, tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "root"
    shutil.copytree(fake_imagenet / "train", root / "train")
    truth = _flat_val(fake_imagenet, root / "val")
    classes = sorted(set(truth.values()))
    if fmt == "space_wnid":
        labels = root / "my_labels.txt"
        labels.write_text("".join(f"{n} {w}\n" for n, w in truth.items()))
    elif fmt == "csv_index_with_header":
        labels = root / "my_labels.csv"
        labels.write_text("file,label\n" + "".join(f"{n},{classes.index(w)}\n" for n, w in truth.items()))
    else:  # Kaggle's LOC_val_solution.csv, found by its default name; ids have no extension
        (root / "LOC_val_solution.csv").write_text(
            "ImageId,PredictionString\n"
            + "".join(f"{Path(n).stem},{w} 10 20 30 40 {w} 1 2 3 4\n" for n, w in truth.items())
        )
        labels = None
    out = tmp_path / "out"
    convert_imagenet(root, out, splits=["val"], shard_size=5, workers=1, progress=False, val_labels=labels)
    got = {sha(image_of(s)): int(s["cls"]) for s in all_samples(out, "val")}
    expected = {sha(image_of(s)): int(s["cls"]) for s in all_samples(imagenet_shards, "val")}
    assert got == expected


def test_labels_file_errors(tmp_path: Path) -> None:
    classes = ["n01", "n02"]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.JPEG n01\nb.JPEG n99\n")
    with pytest.raises(ValueError, match="n99"):
        read_labels_file(bad, classes)
    bad.write_text("a.JPEG 0\nb.JPEG 2\n")
    with pytest.raises(ValueError, match="outside"):
        read_labels_file(bad, classes)
    ok = tmp_path / "ok.txt"
    ok.write_text("# comment\na.JPEG n02\nb 0\n")
    assert read_labels_file(ok, classes) == {"a.JPEG": 1, "b": 0}


def test_flat_val_without_labels_file_names_what_it_looked_for(fake_imagenet: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(fake_imagenet / "train", root / "train")
    _flat_val(fake_imagenet, root / "val")
    with pytest.raises(FileNotFoundError, match="LOC_val_solution.csv"):
        convert_imagenet(root, tmp_path / "out", splits=["val"], workers=1, progress=False)


def test_cli(fake_imagenet: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, str(REPO / "scripts" / "make_shards.py"), str(fake_imagenet), str(out)]
    res = subprocess.run([*cmd, "--shard-size", "5", "--quiet"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "train: 24 samples in 5 shards" in res.stdout
    index = read_index(out)
    assert index["splits"]["val"]["num_samples"] == 12
    assert os.path.exists(out / "imagenet-train.plan.jsonl.gz")
