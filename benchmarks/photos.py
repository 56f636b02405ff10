"""Synthetic stand-ins for ImageNet photographs: about 400x350, JPEG quality 90, 50-120 KB each.

Why not just noise: JPEG size and decode cost depend on image content. These images mix a 1/f colour
field (natural-image spectrum), hard-edged shapes (occlusion edges), fine texture and sensor-like noise,
so they compress to sizes similar to real ImageNet photos.

A helper module, not a benchmark: ``benchmarks/data.py`` imports it (``from photos import ...``, with
``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def make_photo(rng: np.random.Generator, width: int = 400, height: int = 350, quality: int = 90) -> bytes:
    """One photo-like JPEG (bytes)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    z = rng.standard_normal((2, 3, *f.shape))
    field = np.fft.irfft2((z[0] + 1j * z[1]) / f, s=(height, width), axes=(-2, -1))
    field = np.moveaxis(field, 0, -1) @ (np.eye(3) + 0.3 * rng.standard_normal((3, 3)))
    field = 128 + 45 * (field - field.mean()) / field.std()
    img = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 16))):
        pts = rng.random((int(rng.integers(3, 8)), 2)) * (width, height)
        draw.polygon([tuple(p) for p in pts.tolist()], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    img = img.filter(ImageFilter.GaussianBlur(0.7))
    arr = np.asarray(img, dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    texture = 10 * np.sin(xx * rng.uniform(0.3, 1.2) + yy * rng.uniform(0.3, 1.2))[..., None]
    arr = arr + texture * (rng.random() < 0.5) + rng.normal(0, 14, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_photo_folder(root: str | Path, n: int, n_classes: int = 10, seed: int = 0) -> dict:
    """Write ``n`` photos as ``root/train/<wnid>/<wnid>_<i>.JPEG`` (ImageNet layout); return size stats."""
    rng = np.random.default_rng(seed)
    sizes, dims = [], []
    for i in range(n):
        wnid = f"n{1000000 + i % n_classes:08d}"
        w, h = int(rng.integers(360, 441)), int(rng.integers(300, 401))
        data = make_photo(rng, w, h)
        d = Path(root) / "train" / wnid
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{wnid}_{i}.JPEG").write_bytes(data)
        sizes.append(len(data))
        dims.append((w, h))
    return {
        "n": n,
        "mean_kb": float(np.mean(sizes)) / 1e3,
        "min_kb": min(sizes) / 1e3,
        "max_kb": max(sizes) / 1e3,
        "mean_wh": tuple(np.mean(dims, axis=0).round().astype(int).tolist()),
    }
