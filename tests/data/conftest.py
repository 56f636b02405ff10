"""Fixtures for the data tests: a tiny fake ImageNet folder of real JPEGs and shards written from it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convrnn.data.imagenet import convert_imagenet
from convrnn.data.scan import SampleSpec
from convrnn.data.tars import write_tar

# deliberately not created in sorted order, so class indices must come from sorting
WNIDS = ["n03000134", "n01440764", "n02102040", "n01443537"]


def make_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random colour image with some noise (compresses like a photo, unlike pure noise)."""
    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), dtype=np.float32)
    img = img + rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def build_fake_imagenet(root: Path, n_train: int = 6, n_val: int = 3, seed: int = 0) -> Path:
    """root/train/<wnid>/*.JPEG (plus a nested folder, a PNG, a .txt) and root/val/<wnid>/*.JPEG."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for ci, wnid in enumerate(WNIDS):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                img = make_image(rng, int(rng.integers(48, 120)), int(rng.integers(40, 100)))
                stem = f"{wnid}_{i}" if split == "train" else f"ILSVRC2012_val_{ci * 100 + i:08d}"
                if split == "train" and ci == 0 and i == 0:
                    img.save(d / f"{stem}.png")
                elif split == "train" and ci == 1 and i == 0:
                    (d / "nested").mkdir()
                    (d / "nested" / f"{stem}.JPEG").write_bytes(jpeg_bytes(img))
                else:
                    (d / f"{stem}.JPEG").write_bytes(jpeg_bytes(img))
    (root / "train" / WNIDS[0] / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def fake_imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-class fake ImageNet: 24 train images (nested folder, a PNG, a stray .txt) and 12 val images."""
    return build_fake_imagenet(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="session")
def imagenet_shards(fake_imagenet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of ``fake_imagenet`` with 3 samples per shard: 8 train shards, 4 val shards."""
    out = tmp_path_factory.mktemp("shards")
    convert_imagenet(fake_imagenet, out, shard_size=3, seed=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def photo() -> tuple[bytes, Image.Image]:
    """A 640x480 JPEG (bytes) and its full PIL decode."""
    data = jpeg_bytes(make_image(np.random.default_rng(1), 640, 480))
    return data, Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="session")
def corrupt_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """16 samples in 4 shards (a brace pattern, no dataset.json); sample 'bad' is a truncated JPEG."""
    rng = np.random.default_rng(3)
    items = [(f"s{i:02d}", i % 3, jpeg_bytes(make_image(rng, 60, 50))) for i in range(16)]
    items[5] = ("bad", 2, items[5][2][:300])
    d = tmp_path_factory.mktemp("corrupt")
    data = {k: b for k, _, b in items}
    specs = [SampleSpec(k, c, "jpg", k) for k, c, _ in items]
    for i in range(4):
        write_tar(d / f"x-{i:06d}.tar", specs[4 * i : 4 * i + 4], lambda s: data[s.key])
    return str(d / "x-{000000..000003}.tar")
