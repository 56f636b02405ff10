"""Decode + augment: checked against torchvision's transforms on a full decode (the independent reference)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from convrnn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptSampleError,
    TrainTransform,
    ValTransform,
    decode_resized_crop,
    draft_factor,
    jpeg_size,
    random_resized_crop_params,
    worth_drafting,
)

# torchvision 0.29 deprecates its JPEG decoder (our optional fast path; PIL takes over once it is gone)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy().astype(np.float32)


def test_crop_params_follow_torchvision_distribution() -> None:
    w, h, n = 400, 300, 4000
    rng = random.Random(0)
    ours = np.array([random_resized_crop_params(w, h, rng=rng) for _ in range(n)], dtype=float)
    torch.manual_seed(0)
    ref = np.array(
        [v2.RandomResizedCrop.get_params(torch.empty(3, h, w), (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(n)]
    )
    for boxes in (ours, ref):
        top, left, bh, bw = boxes.T
        assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    for col in range(4):  # same distribution: means agree within a few standard errors
        se = np.sqrt(ours[:, col].var() / n + ref[:, col].var() / n)
        assert abs(ours[:, col].mean() - ref[:, col].mean()) < 4 * se, col
    area = ours[:, 2] * ours[:, 3] / (w * h)
    assert area.min() >= 0.08 - 0.01 and area.max() <= 1.0
    for fw, fh in ((1000, 10), (10, 1000)):  # every try fails -> the same fallback centre crop as torchvision
        expected = v2.RandomResizedCrop.get_params(torch.empty(3, fh, fw), (0.08, 1.0), (3 / 4, 4 / 3))
        assert random_resized_crop_params(fw, fh) == tuple(expected)


def test_full_decode_crop_equals_torchvision(photo: tuple[bytes, Image.Image]) -> None:
    data, full = photo
    rng = random.Random(1)
    for _ in range(10):
        top, left, h, w = random_resized_crop_params(640, 480, rng=rng)
        ref = np.asarray(TF.resized_crop(full, top, left, h, w, [64, 64], antialias=True), dtype=np.float32)
        ours = _hwc(decode_resized_crop(data, (top, left, h, w), 64, draft=False))
        assert np.abs(ours - ref).mean() < 0.5 and np.abs(ours - ref).max() <= 2


def test_reduced_size_decode_matches_full_decode(photo: tuple[bytes, Image.Image]) -> None:
    data, full = photo
    rng = random.Random(2)
    factors = []
    for _ in range(30):
        top, left, h, w = random_resized_crop_params(640, 480, rng=rng)
        factors.append(draft_factor(w, h, 64, 64))
        ref = np.asarray(TF.resized_crop(full, top, left, h, w, [64, 64], antialias=True), dtype=np.float32)
        ours = _hwc(decode_resized_crop(data, (top, left, h, w), 64, draft=True))
        # DCT-domain downscaling is not bilinear filtering, but the crops agree to ~1 grey level
        assert np.abs(ours - ref).mean() < 2.5, (top, left, h, w)
    assert sum(worth_drafting(f) for f in factors) >= 10  # the reduced decode was actually exercised


def test_val_transform_equals_torchvision_pipeline(photo: tuple[bytes, Image.Image]) -> None:
    data, full = photo
    sample = {"__key__": "k", "jpg": data, "cls": b"3"}
    for size, draft, tol in ((64, False, 0.002), (64, True, 0.05), (112, True, 0.05)):
        vt = ValTransform(size, draft=draft)
        assert vt.resize == round(size * 256 / 224)
        ref = v2.Compose(
            [
                v2.Resize(vt.resize, antialias=True),
                v2.CenterCrop(size),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )(full)
        img, label, key = vt(sample)
        assert img.dtype == torch.float32 and img.shape == (3, size, size) and img.is_contiguous()
        assert (label, key) == (3, "k")
        assert (img - ref).abs().mean() < tol, (size, draft)


def test_train_transform_output_and_flip(photo: tuple[bytes, Image.Image]) -> None:
    data, _ = photo
    sample = {"__key__": "k", "jpg": data, "cls": b"7"}
    t = TrainTransform(32, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3), flip_p=0.0, rng=random.Random(0))
    img, label, _ = t(sample)
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and label == 7
    raw = img * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    assert raw.min() > -1e-4 and raw.max() < 1 + 1e-4  # normalised with ImageNet mean/std
    flipped, _, _ = TrainTransform(32, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3), flip_p=1.0, rng=random.Random(0))(sample)
    assert torch.allclose(flipped, img.flip(-1))


def test_corrupt_bytes_raise_corrupt_sample_error(photo: tuple[bytes, Image.Image]) -> None:
    data, _ = photo
    vt = ValTransform(32)
    for bad in (data[: len(data) // 3], b"not an image", b""):
        with pytest.raises(CorruptSampleError):
            vt({"__key__": "k", "jpg": bad, "cls": b"1"})
    with pytest.raises(CorruptSampleError):
        vt({"__key__": "k", "jpg": data, "cls": b"x"})
    with pytest.raises(CorruptSampleError):
        vt({"__key__": "k", "cls": b"1"})


def test_draft_only_when_cheaper() -> None:
    # PIL's 1/2-scale decode costs more than simplejpeg's full decode: only 1/4 and 1/8 pay off
    assert [worth_drafting(f) for f in (1, 2, 4, 8)] == [False, False, True, True]


def test_pil_and_simplejpeg_decoders_agree(photo: tuple[bytes, Image.Image], monkeypatch: pytest.MonkeyPatch) -> None:
    import convrnn.data.transforms as T

    data, _ = photo
    box = (37, 51, 300, 280)
    fast = decode_resized_crop(data, box, 48, draft=False)

    def rejected(*args: object, **kwargs: object) -> None:
        raise ValueError("rejected")  # what simplejpeg raises for data it cannot take: PIL decodes instead

    monkeypatch.setattr(T.simplejpeg, "decode_jpeg", rejected)
    assert torch.equal(decode_resized_crop(data, box, 48, draft=False), fast)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_give_pils_rgb(mode: str) -> None:
    """Grey JPEGs take the fast decoder, CMYK ones PIL's; either way the pixels are PIL's RGB conversion."""
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    buf = io.BytesIO()
    rgb.convert(mode).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    assert (jpeg_size(data) is None) == (mode == "CMYK")
    ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    ours = decode_resized_crop(data, (0, 0, 40, 56), (40, 56), draft=False)
    assert np.array_equal(_hwc(ours).astype(np.uint8), ref)


@pytest.mark.parametrize("kind", ["baseline", "progressive", "exif", "grey"])
def test_jpeg_size_reads_what_pil_reads(kind: str) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8))
    if kind == "grey":
        img = img.convert("L")
    buf = io.BytesIO()
    extra = {"progressive": {"progressive": True}, "exif": {"exif": Image.Exif().tobytes()}}.get(kind, {})
    img.save(buf, "JPEG", quality=90, **extra)
    data = buf.getvalue()
    assert jpeg_size(data) == Image.open(io.BytesIO(data)).size == (53, 37)
    assert jpeg_size(data[:20]) is None  # cut before the frame header: PIL decides


def test_jpeg_size_is_none_for_other_formats() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    assert jpeg_size(buf.getvalue()) is None and jpeg_size(b"") is None and jpeg_size(b"\xff\xd8\xff\xd9") is None
