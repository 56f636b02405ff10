"""Per-sample decode + augment for the shard pipelines (training and validation).

Why not torchvision's PIL transforms: decoding is 75-80% of the cost per sample (docs/benchmarks.md). JPEGs
are decoded by simplejpeg (libjpeg-turbo's TurboJPEG API): PIL's pixels exactly, ~1.4x cheaper than PIL's
decode + conversion and ~1.1x cheaper than torchvision's ``decode_jpeg``. The RandomResizedCrop box is chosen
in *original* coordinates *before* decoding, from the size in the JPEG header, with torchvision's algorithm.
With PIL's ``Image.draft``, libjpeg can also decode at 1/2, 1/4 or 1/8 scale in the DCT domain; we do so at
the largest reduction that still leaves the crop at least as large as the output ("reduced-size decoding"),
when that reduction is cheaper than a full decode (:func:`worth_drafting`: 1/4 and 1/8 only, since Huffman
decoding, which no reduction saves, dominates).
The box is then resampled from the reduced image with PIL's fractional-box resize, so it maps exactly.
At full scale we resize with torch's antialiased uint8 bilinear kernel instead. It matches PIL's BILINEAR
resize (which torchvision uses on PIL images) to within ~0.01 grey levels on average, and is 2-3x faster.

Everything here is picklable so that it can run inside DataLoader worker processes.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from convrnn.presentation import IMAGENET_MEAN, IMAGENET_STD, normalisation, normalise

#: sample keys tried, in order, for the image bytes of a webdataset sample
IMAGE_KEYS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "ppm", "bmp")

#: exceptions that mean "this sample's bytes are bad", as opposed to a bug in the pipeline
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    UnidentifiedImageError,
    OSError,  # includes "image file is truncated", broken data streams
    SyntaxError,  # PIL raises it for some broken PNG/GIF headers
    ValueError,
    struct.error,
    Image.DecompressionBombError,
    EOFError,
    IndexError,
)


class CorruptSampleError(Exception):
    """A sample whose image or label cannot be decoded; the pipeline skips and counts it.

    ``url`` is the shard the sample came from, when known (it is counted per shard).
    """

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


def random_resized_crop_params(
    width: int,
    height: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    rng: random.Random | None = None,
) -> tuple[int, int, int, int]:
    """Sample ``(top, left, h, w)`` as torchvision's RandomResizedCrop does (10 tries, then a centre crop).

    Uses a ``random.Random`` (the global one by default, which DataLoader seeds per worker), so the box can be
    chosen before the image is decoded.
    """
    r = rng if rng is not None else random
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * r.uniform(scale[0], scale[1])
        aspect = math.exp(r.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = r.randint(0, height - h)
            left = r.randint(0, width - w)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draft_factor(region_w: float, region_h: float, out_w: int, out_h: int) -> int:
    """Largest libjpeg reduction (8, 4, 2 or 1) that keeps a ``region_w x region_h`` region >= the output."""
    for s in (8, 4, 2):
        if region_w / s >= out_w and region_h / s >= out_h:
            return s
    return 1


def worth_drafting(factor: int) -> bool:
    """Is a 1/factor libjpeg decode through PIL cheaper than the full-scale path?

    Measured on ~400x350 quality-90 photos, where Huffman decoding dominates: PIL's 1/2-scale decode costs
    about 90% of PIL's full decode, more than simplejpeg's full decode. So only 1/4 and 1/8 pay off.
    """
    return factor >= 4


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except DECODE_ERRORS as exn:
        raise CorruptSampleError(f"cannot open image: {exn!r}") from exn


def _draft(img: Image.Image, factor: int) -> float:
    """Ask libjpeg for a 1/factor decode; return the scale actually obtained (1.0 if not a JPEG)."""
    if factor <= 1 or img.format != "JPEG":
        return 1.0
    w, h = img.size
    res = img.draft("RGB", (max(1, w // factor), max(1, h // factor)))
    if res is None:
        return 1.0
    box = res[1]
    return w / box[2]


#: JPEG colour spaces that libjpeg-turbo turns into RGB exactly as PIL does; CMYK and YCCK go to PIL
_FAST_COLORSPACES = frozenset({"YCbCr", "Gray", "RGB"})


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's header, without decoding (what PIL reports as ``size``).

    None when ``data`` is not a JPEG that the fast decoder takes (not a JPEG, no readable header, or CMYK/YCCK):
    PIL then opens it and has the final word. Saves opening the file with PIL on the fast path.
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (width, height) if colorspace in _FAST_COLORSPACES and width and height else None


def _to_hwc_uint8(img: Image.Image) -> np.ndarray:
    """Decode (if not done yet) and return an RGB uint8 HWC array."""
    try:
        if img.mode != "RGB":
            img = img.convert("RGB")
        else:
            img.load()
        return np.asarray(img)
    except DECODE_ERRORS as exn:
        raise CorruptSampleError(f"cannot decode image: {exn!r}") from exn


def _full_scale_region(
    img: Image.Image | None, data: bytes, width: int, height: int, top: int, left: int, h: int, w: int
) -> torch.Tensor:
    """Decode at full scale and return the region as a [1, 3, h, w] uint8 tensor with channels-last strides.

    JPEGs in YCbCr, grey or RGB go through simplejpeg (libjpeg-turbo): it returns an HWC array directly, and on
    400x350 photos it is ~1.4x cheaper than PIL's decode + conversion and ~1.1x cheaper than torchvision's
    ``decode_jpeg`` (docs/benchmarks.md). It gives PIL's pixels exactly and is as strict about truncated files.
    Anything it rejects, CMYK/YCCK JPEGs and every other format are decoded by PIL (``img``, opened here if
    the caller has not), which has the final word on whether a sample is corrupt.
    """
    if img is None or (img.format == "JPEG" and img.mode in ("RGB", "L")):
        try:
            hwc = simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:
            hwc = None
        if hwc is not None and hwc.shape[:2] == (height, width):
            region = torch.from_numpy(hwc[top : top + h, left : left + w]).permute(2, 0, 1).unsqueeze(0)
            return region.contiguous(memory_format=torch.channels_last)
    if img is None:
        img = _open(data)
    if (top, left, h, w) != (0, 0, img.size[1], img.size[0]):
        try:
            img = img.crop((left, top, left + w, top + h))  # converting only the crop is cheaper
        except DECODE_ERRORS as exn:
            raise CorruptSampleError(f"cannot decode image: {exn!r}") from exn
    hwc = _to_hwc_uint8(img)
    hwc = hwc.copy() if not hwc.flags.writeable or not hwc.flags.c_contiguous else hwc
    return torch.from_numpy(hwc).permute(2, 0, 1).unsqueeze(0)  # channels-last strides: the fast path


def _resize_uint8(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Antialiased bilinear resize of a [1, 3, h, w] uint8 tensor (torch's uint8 kernel, fastest when
    channels-last); returns a [3, out_h, out_w] uint8 tensor, channels-last in memory (the batch is stacked,
    i.e. copied, anyway; a contiguous copy here costs ~3% of a sample)."""
    if tuple(x.shape[-2:]) != (out_h, out_w):
        x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)
    return x[0]


def _pil_box_resize(img: Image.Image, box: tuple[float, float, float, float], out_h: int, out_w: int) -> torch.Tensor:
    """PIL's antialiased bilinear resize of a fractional ``box`` (left, top, right, bottom): [3,H,W] uint8."""
    try:
        if img.mode != "RGB":
            img = img.convert("RGB")
        arr = np.array(img.resize((out_w, out_h), Image.BILINEAR, box=box))
    except DECODE_ERRORS as exn:
        raise CorruptSampleError(f"cannot decode image: {exn!r}") from exn
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def decode_resized_crop(
    data: bytes,
    box: tuple[int, int, int, int] | None,
    size: int | tuple[int, int],
    draft: bool = True,
    box_fn: Any = None,
) -> torch.Tensor:
    """Decode ``data``, crop ``box = (top, left, h, w)`` (original pixel coordinates) and resize to ``size``.

    Returns a [3, H, W] uint8 tensor. With ``draft``, a JPEG is decoded at the largest 1/2^k scale that still
    leaves the crop at least ``size``, and the box is mapped exactly (fractionally) onto the reduced image.
    ``box_fn(width, height) -> box`` may replace ``box``, so that the box can be sampled from the size in
    the header before anything is decoded.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    header = jpeg_size(data)  # simplejpeg will decode: PIL not needed
    img = None if header is not None else _open(data)
    width, height = header if header is not None else img.size  # type: ignore[union-attr]
    if box_fn is not None:
        box = box_fn(width, height)
    if box is None:
        box = (0, 0, height, width)
    top, left, h, w = box
    f = draft_factor(w, h, out_w, out_h)
    if draft and worth_drafting(f):
        img = img if img is not None else _open(data)
        s = _draft(img, f)
        if s != 1.0:
            return _pil_box_resize(img, (left / s, top / s, (left + w) / s, (top + h) / s), out_h, out_w)
    return _resize_uint8(_full_scale_region(img, data, width, height, top, left, h, w), out_h, out_w)


def resize_shorter_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """Output ``(h, w)`` of torchvision's ``Resize(resize)``: shorter side = resize, longer side truncated."""
    if width <= height:
        return int(resize * height / width), resize
    return resize, int(resize * width / height)


def decode_resize_center_crop(data: bytes, resize: int, crop: int, draft: bool = True) -> torch.Tensor:
    """Validation geometry: resize the shorter side to ``resize``, then centre-crop ``crop`` (as torchvision).

    Returns [3, crop, crop] uint8. With ``draft``, libjpeg decodes at the largest reduction that keeps the
    image at least as large as the resized one; the crop is then resampled straight from the reduced image.
    """
    header = jpeg_size(data)  # simplejpeg will decode: PIL not needed unless drafting
    img = None if header is not None else _open(data)
    width, height = header if header is not None else img.size  # type: ignore[union-attr]
    new_h, new_w = resize_shorter_size(width, height, resize)
    if new_h < crop or new_w < crop:
        raise ValueError(f"val_resize={resize} gives a {new_w}x{new_h} image, smaller than the {crop} crop")
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    f = draft_factor(width, height, new_w, new_h)
    factor = 1.0
    if draft and worth_drafting(f):
        img = img if img is not None else _open(data)
        factor = _draft(img, f)
    if factor != 1.0:
        sx, sy = width / new_w / factor, height / new_h / factor  # resized -> reduced coordinates
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        return _pil_box_resize(img, box, crop, crop)
    full = _resize_uint8(_full_scale_region(img, data, width, height, 0, 0, height, width), new_h, new_w)
    return full[:, top : top + crop, left : left + crop].contiguous()


class Normalize:
    """uint8 [3,H,W] or [B,3,H,W] -> float32, normalised with mean/std in [0, 1] units (ImageNet's default).

    The DataModule normalises whole batches: stacking uint8 images and converting once is cheaper than
    stacking per-image float tensors (4x less memory traffic, one allocation). Works on any device.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self._mean, self._std = normalisation(mean, std)  # checks 3 values each
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean.device != x.device:
            self._mean, self._std = self._mean.to(x.device), self._std.to(x.device)
        return normalise(x, constants=(self._mean, self._std))


def sample_image_bytes(sample: Mapping[str, Any]) -> bytes:
    """The image bytes of a webdataset sample (first of ``IMAGE_KEYS`` present)."""
    for k in IMAGE_KEYS:
        if k in sample:
            return sample[k]
    raise CorruptSampleError(f"sample {sample.get('__key__')!r} has no image (keys: {sorted(sample)})")


def sample_label(sample: Mapping[str, Any]) -> int:
    """The integer class of a webdataset sample (``cls`` stored as ASCII text, or already an int)."""
    try:
        v = sample["cls"]
        return int(v.decode("ascii") if isinstance(v, (bytes, bytearray)) else v)
    except (KeyError, ValueError, UnicodeDecodeError) as exn:
        raise CorruptSampleError(f"sample {sample.get('__key__')!r} has no valid 'cls': {exn!r}") from exn


@contextlib.contextmanager
def _name_sample(sample: Mapping[str, Any]) -> Iterator[None]:
    """Prefix a CorruptSampleError with the sample's key and shard, so the log says which file to fix."""
    try:
        yield
    except CorruptSampleError as exn:
        url = sample.get("__url__")
        raise CorruptSampleError(f"sample {sample.get('__key__')!r} in {url}: {exn}", url=url) from None


class TrainTransform:
    """Sample -> (image [3,S,S], label, key): RandomResizedCrop, h-flip, then normalise to float32
    (or keep uint8 with ``normalize=False``)."""

    def __init__(
        self,
        image_size: int,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        flip_p: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        draft: bool = True,
        rng: random.Random | None = None,
        normalize: bool = True,
    ) -> None:
        self.image_size = int(image_size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.flip_p = float(flip_p)
        self.draft = bool(draft)
        self.normalize = Normalize(mean, std) if normalize else None
        self.rng = rng

    def _box(self, width: int, height: int) -> tuple[int, int, int, int]:
        return random_resized_crop_params(width, height, self.scale, self.ratio, self.rng)

    def __call__(self, sample: Mapping[str, Any]) -> tuple[torch.Tensor, int, str]:
        with _name_sample(sample):
            label = sample_label(sample)
            img = decode_resized_crop(sample_image_bytes(sample), None, self.image_size, self.draft, box_fn=self._box)
        r = self.rng if self.rng is not None else random
        if r.random() < self.flip_p:
            img = img.flip(-1)
        return (self.normalize(img) if self.normalize else img), label, sample.get("__key__", "")


class ValTransform:
    """Sample -> (image [3,S,S], label, key): resize the shorter side, centre crop, then normalise to
    float32 (or keep uint8 with ``normalize=False``)."""

    def __init__(
        self,
        image_size: int,
        resize: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        draft: bool = True,
        normalize: bool = True,
    ) -> None:
        self.image_size = int(image_size)
        self.resize = int(resize) if resize is not None else default_val_resize(self.image_size)
        if self.resize < self.image_size:
            raise ValueError(f"val_resize ({self.resize}) must be >= image_size ({self.image_size})")
        self.draft = bool(draft)
        self.normalize = Normalize(mean, std) if normalize else None

    def __call__(self, sample: Mapping[str, Any]) -> tuple[torch.Tensor, int, str]:
        with _name_sample(sample):
            label = sample_label(sample)
            img = decode_resize_center_crop(sample_image_bytes(sample), self.resize, self.image_size, self.draft)
        return (self.normalize(img) if self.normalize else img), label, sample.get("__key__", "")


def default_val_resize(image_size: int) -> int:
    """The usual ImageNet ratio: resize to image_size * 256 / 224 (256 for 224) before the centre crop."""
    return int(round(image_size * 256 / 224))
