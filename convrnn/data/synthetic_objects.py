"""Synthetic objects: a small, deterministic, HvM-like object recognition set (numpy + PIL only).

Why: the demo has to train and be scored without downloads, and the neural-data code needs stimuli with
known category, object and pose. This mimics the structure of the HvM image set of Majaj et al. (2015):
categories x objects, each object shown at three variation levels (V0, V3, V6) of position, scale and
rotation, on backgrounds with natural-image statistics.

- Each *category* is a family of 2-D shapes (triangles, stars, crosses, rings, ...). Each *object* is a
  fixed random member of its family: its own geometry, colours, texture and a small base rotation.
- *Variation level* ``v`` (0..6, as HvM's V0/V3/V6) draws, per image, independently and uniformly:
  position ``tx, ty`` in [-0.05 v, 0.05 v] (fractions of the image size, origin at the centre, +tx right,
  +ty down); log scale ``log s`` in [-log(1.6) v/6, +log(1.6) v/6]; in-plane rotation ``rxy`` in
  [-15 v, 15 v] degrees (counter-clockwise on screen). Level 0 is centred, at scale 1 and unrotated.
- *Backgrounds* are colour 1/f ("pink") noise: a luminance and two colour-opponent fields whose amplitude
  spectrum falls as 1/f^1.2, as in natural images. ``background_id`` seeds one.

Everything is a pure function of the generator's ``seed`` and the row, so the same row renders the same
bytes anywhere. :func:`write_synthetic_shards` renders a train and a val split (disjoint: different
``split_seed`` values, so different stimulus ids and backgrounds) into the same shard format and
``dataset.json`` as the ImageNet converter. It uses split seeds 1000 (train) and 1001 (val), so tables
drawn with other split seeds (the default is 0) are not training images.
"""

from __future__ import annotations

import colorsys
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from convrnn.data.index import INDEX_NAME, read_index, write_index
from convrnn.data.scan import SampleSpec
from convrnn.data.writer import write_splits
from convrnn.io import atomic_write_bytes

GENERATOR_VERSION = 1
TRAIN_SPLIT_SEED = 1000
VAL_SPLIT_SEED = 1001
#: object radius at scale 1, as a fraction of the image size
CANONICAL_RADIUS = 0.3
#: background amplitude spectrum ~ 1/f**slope (natural images: about 0.8-1.5, typically near 1.2)
BACKGROUND_SLOPE = 1.2
TABLE_COLUMNS = (
    "stimulus_id",
    "object_name",
    "category_name",
    "category_index",
    "object_index",
    "variation",
    "tx",
    "ty",
    "s",
    "rxy",
    "background_id",
)

Polygon = tuple[np.ndarray, int]  # vertices [N, 2] in object units (y down), +1 fill / -1 cut


# ------------------------------------------------------------------------------------- shape families
def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _radial(angles: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _triangle(rng: np.random.Generator) -> list[Polygon]:
    a = np.deg2rad(-90 + np.array([0, 120, 240]) + rng.normal(0, 10, 3))
    return [(_radial(a, rng.uniform(0.8, 1.0, 3)), 1)]


def _star(rng: np.random.Generator) -> list[Polygon]:
    n = int(rng.integers(5, 8))
    a = np.deg2rad(-90) + np.arange(2 * n) * np.pi / n
    r = np.where(np.arange(2 * n) % 2 == 0, rng.uniform(0.9, 1.0, 2 * n), rng.uniform(0.35, 0.5))
    return [(_radial(a, r), 1)]


def _cross(rng: np.random.Generator) -> list[Polygon]:
    w = rng.uniform(0.28, 0.4) / 2
    left, right, up, down = rng.uniform(0.75, 1.0, 4)
    h = np.array([[-left, -w], [right, -w], [right, w], [-left, w]])
    v = np.array([[-w, -up], [w, -up], [w, down], [-w, down]])
    return [(h, 1), (v, 1)]


def _ring(rng: np.random.Generator) -> list[Polygon]:
    ry = rng.uniform(0.75, 1.0)
    k = rng.uniform(0.45, 0.6)
    dx, dy = rng.uniform(-0.08, 0.08, 2)
    return [(_ellipse(0, 0, 1.0, ry), 1), (_ellipse(dx, dy, k, k * ry), -1)]


def _crescent(rng: np.random.Generator) -> list[Polygon]:
    r = rng.uniform(0.85, 1.0)
    r2 = r * rng.uniform(0.75, 0.9)
    d = rng.uniform(0.35, 0.55)
    return [(_ellipse(0, 0, r, r), 1), (_ellipse(d, -0.15 * d, r2, r2), -1)]


def _arrow(rng: np.random.Generator) -> list[Polygon]:
    sw = rng.uniform(0.12, 0.2)
    hw = rng.uniform(0.4, 0.55)
    neck = rng.uniform(-0.05, 0.2)
    pts = [(-1, -sw), (neck, -sw), (neck, -hw), (1, 0), (neck, hw), (neck, sw), (-1, sw)]
    return [(np.array(pts, dtype=float), 1)]


def _blobs(rng: np.random.Generator) -> list[Polygon]:
    out = []
    a0 = rng.uniform(0, 2 * np.pi)
    for k in range(3):
        a = a0 + k * 2 * np.pi / 3 + rng.normal(0, 0.2)
        d = rng.uniform(0.3, 0.45)
        out.append(
            (
                _ellipse(d * math.cos(a), d * math.sin(a), rng.uniform(0.35, 0.55), rng.uniform(0.25, 0.4), a),
                1,
            )
        )
    return out


def _gear(rng: np.random.Generator) -> list[Polygon]:
    n = int(rng.integers(6, 11))
    r_in, r_out = rng.uniform(0.7, 0.8), 1.0
    duty = rng.uniform(0.4, 0.6)
    step = 2 * np.pi / n
    a, r = [], []
    for k in range(n):
        base = k * step
        a += [base, base + 0.1 * step, base + (0.1 + duty) * step, base + (0.2 + duty) * step]
        r += [r_in, r_out, r_out, r_in]
    return [(_radial(np.array(a), np.array(r)), 1)]


def _ell(rng: np.random.Generator) -> list[Polygon]:
    w = rng.uniform(0.3, 0.45)
    x0, length = -0.6, rng.uniform(0.6, 0.9)
    pts = np.array([[x0, -1], [x0 + w, -1], [x0 + w, 1 - w], [length, 1 - w], [length, 1], [x0, 1]], dtype=float)
    return [(pts - pts.mean(axis=0), 1)]


def _bowtie(rng: np.random.Generator) -> list[Polygon]:
    h = rng.uniform(0.55, 0.85)
    waist = rng.uniform(0.05, 0.2)
    pts = [(-1, -h), (0, -waist), (1, -h), (1, h), (0, waist), (-1, h)]
    return [(np.array(pts, dtype=float), 1)]


def _wave(rng: np.random.Generator) -> list[Polygon]:
    amp, freq, phase = rng.uniform(0.25, 0.4), rng.uniform(0.75, 1.25), rng.uniform(0, 2 * np.pi)
    t = rng.uniform(0.12, 0.18)
    x = np.linspace(-1, 1, 40)
    y = amp * np.sin(2 * np.pi * freq * x / 2 + phase)
    top = np.stack([x, y - t], axis=1)
    bottom = np.stack([x[::-1], y[::-1] + t], axis=1)
    return [(np.concatenate([top, bottom]), 1)]


def _hexagon(rng: np.random.Generator) -> list[Polygon]:
    a = np.deg2rad(np.arange(6) * 60 + rng.normal(0, 6, 6))
    return [(_radial(a, rng.uniform(0.85, 1.0, 6)), 1)]


#: category families, most distinct first (the first ``n_categories`` are used)
FAMILIES: dict[str, Callable[[np.random.Generator], list[Polygon]]] = {
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
    "crescent": _crescent,
    "arrow": _arrow,
    "blobs": _blobs,
    "gear": _gear,
    "ell": _ell,
    "bowtie": _bowtie,
    "wave": _wave,
    "hexagon": _hexagon,
}
TEXTURES = ("flat", "stripes", "checker", "dots", "radial")


@dataclass(frozen=True)
class ObjectModel:
    """The fixed identity of one object: geometry, base rotation, colours, texture and shading."""

    name: str
    category: str
    polygons: tuple[Polygon, ...]
    base_rotation: float  # degrees
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    texture: str
    tex_freq: float
    tex_angle: float
    light: tuple[float, float]


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)))


def _get(row: Any, name: str) -> Any:
    try:
        return row[name]
    except (KeyError, TypeError, IndexError):
        return getattr(row, name)


class SyntheticObjects:
    """Deterministic generator of HvM-like object images (see the module doc for the variation model).

    >>> gen = SyntheticObjects(image_size=64, n_categories=8, objects_per_category=8, seed=0)
    >>> df = gen.sample_table(2)            # 8*8 objects x 3 levels x 2 = 384 rows
    >>> img = gen.render(df.iloc[0])        # uint8 [64, 64, 3]
    """

    def __init__(self, image_size: int = 64, n_categories: int = 8, objects_per_category: int = 8, seed: int = 0):
        if not 1 <= n_categories <= len(FAMILIES):
            raise ValueError(f"n_categories must be in [1, {len(FAMILIES)}] (families: {list(FAMILIES)})")
        if objects_per_category < 1 or image_size < 8:
            raise ValueError("need objects_per_category >= 1 and image_size >= 8")
        self.image_size = int(image_size)
        self.n_categories = int(n_categories)
        self.objects_per_category = int(objects_per_category)
        self.seed = int(seed)
        self.categories: list[str] = list(FAMILIES)[: self.n_categories]
        self._models: dict[str, ObjectModel] = {}
        self._object_index: dict[str, int] = {}
        for ci, cat in enumerate(self.categories):
            for j in range(self.objects_per_category):
                m = self._make_object(ci, cat, j)
                self._object_index[m.name] = len(self._models)
                self._models[m.name] = m
        self.objects: list[str] = list(self._models)
        self._supersample = max(2, math.ceil(256 / self.image_size))
        s = self.image_size
        fy = np.fft.fftfreq(s)[:, None]
        fx = np.fft.rfftfreq(s)[None, :]
        f = np.sqrt(fx**2 + fy**2)
        f[0, 0] = 1.0
        self._inv_f = f**-BACKGROUND_SLOPE
        self._inv_f[0, 0] = 0.0
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
        self._xx, self._yy = xx, yy

    # ---------------------------------------------------------------------------------------- objects
    def _make_object(self, ci: int, cat: str, j: int) -> ObjectModel:
        rng = np.random.default_rng([self.seed, 0x0B1EC7, ci, j])
        polys = FAMILIES[cat](rng)
        hue = rng.uniform(0, 1)
        color_a = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
        color_b = _hsv(hue + rng.uniform(-0.2, 0.2), rng.uniform(0.3, 1.0), rng.uniform(0.15, 0.45))
        la = rng.uniform(0, 2 * np.pi)
        return ObjectModel(
            name=f"{cat}_{j:02d}",
            category=cat,
            polygons=tuple(polys),
            base_rotation=float(rng.uniform(-30, 30)),
            color_a=color_a,
            color_b=color_b,
            texture=str(rng.choice(TEXTURES)),
            tex_freq=float(rng.uniform(1.5, 3.0)),
            tex_angle=float(rng.uniform(0, np.pi)),
            light=(0.25 * math.cos(la), 0.25 * math.sin(la)),
        )

    # ------------------------------------------------------------------------------------------ table
    def sample_table(
        self, n_per_object_per_level: int, levels: Sequence[int] = (0, 3, 6), split_seed: int = 0
    ) -> pd.DataFrame:
        """One row per image: ids, labels and pose for ``n`` images of every object at every level.

        Rows are ordered by level, object, repetition. ``stimulus_id`` is
        ``{object}_v{level}_s{split_seed}_{rep}`` (unique across split seeds, no dots). ``background_id``
        is drawn per image.
        """
        if n_per_object_per_level < 1:
            raise ValueError("n_per_object_per_level must be >= 1")
        for lv in levels:
            if not 0 <= int(lv) <= 10:
                raise ValueError(f"variation level {lv} outside [0, 10]")
        rng = np.random.default_rng([self.seed, 0x7AB1E, int(split_seed)])
        rows = []
        for lv in levels:
            lv = int(lv)
            for name in self.objects:
                m = self._models[name]
                n = n_per_object_per_level
                tmax, smax, rmax = 0.05 * lv, math.log(1.6) * lv / 6, 15.0 * lv
                tx, ty = rng.uniform(-tmax, tmax, n), rng.uniform(-tmax, tmax, n)
                s = np.exp(rng.uniform(-smax, smax, n))
                rxy = rng.uniform(-rmax, rmax, n)
                bg = rng.integers(0, 2**52, n)  # < 2**53: exact even where JSON numbers are doubles
                for r in range(n):
                    rows.append(
                        (
                            f"{name}_v{lv}_s{split_seed}_{r:04d}",
                            name,
                            m.category,
                            self.categories.index(m.category),
                            self._object_index[name],
                            lv,
                            float(tx[r]),
                            float(ty[r]),
                            float(s[r]),
                            float(rxy[r]),
                            int(bg[r]),
                        )
                    )
        df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
        return df.astype(
            {
                "category_index": "int64",
                "object_index": "int64",
                "variation": "int64",
                "background_id": "int64",
            }
        )

    # ---------------------------------------------------------------------------------------- render
    def _geometry(self, row: Any) -> tuple[ObjectModel, float, float, float, float]:
        m = self._models[str(_get(row, "object_name"))]
        size = self.image_size
        cx = size / 2 + float(_get(row, "tx")) * size
        cy = size / 2 + float(_get(row, "ty")) * size
        scale = float(_get(row, "s")) * CANONICAL_RADIUS * size
        theta = math.radians(float(_get(row, "rxy")) + m.base_rotation)
        return m, cx, cy, scale, theta

    def object_mask(self, row: Any) -> np.ndarray:
        """The object's antialiased silhouette in the image: float32 [H, W] in [0, 1]."""
        m, cx, cy, scale, theta = self._geometry(row)
        ss = self._supersample
        c, s = math.cos(theta), math.sin(theta)
        # counter-clockwise on screen (y points down): x' = x c + y s, y' = -x s + y c
        rot = np.array([[c, s], [-s, c]])
        canvas = Image.new("L", (self.image_size * ss, self.image_size * ss), 0)
        draw = ImageDraw.Draw(canvas)
        for verts, op in m.polygons:
            p = (verts @ rot.T) * scale + (cx, cy)
            draw.polygon([tuple(v) for v in (p * ss).tolist()], fill=255 if op > 0 else 0)
        small = canvas.reduce(ss)
        return np.asarray(small, dtype=np.float32) / 255.0

    def _appearance(self, m: ObjectModel, cx: float, cy: float, scale: float, theta: float) -> np.ndarray:
        c, s = math.cos(theta), math.sin(theta)
        dx = (self._xx - cx) / scale
        dy = (self._yy - cy) / scale
        u = c * dx - s * dy  # inverse of the rotation used for the silhouette
        v = s * dx + c * dy
        f = m.tex_freq
        if m.texture == "flat":
            t = np.zeros_like(u)
        elif m.texture == "stripes":
            t = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * f * (u * math.cos(m.tex_angle) + v * math.sin(m.tex_angle))))
        elif m.texture == "checker":
            t = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * f * u) * np.sin(2 * np.pi * f * v))
        elif m.texture == "dots":
            gu = u * f - np.round(u * f)
            gv = v * f - np.round(v * f)
            t = 0.5 - 0.5 * np.tanh(12 * (np.sqrt(gu**2 + gv**2) - 0.25))
        else:  # radial
            t = np.clip(np.sqrt(u**2 + v**2), 0, 1)
        t = t[..., None]
        col = np.asarray(m.color_a, np.float32) * (1 - t) + np.asarray(m.color_b, np.float32) * t
        shade = 1.0 + m.light[0] * u + m.light[1] * v
        return np.clip(col * shade[..., None], 0, 1)

    def background(self, background_id: int) -> np.ndarray:
        """A colour 1/f-noise background, float32 [H, W, 3] in [0, 1], set by ``background_id`` alone."""
        rng = np.random.default_rng([self.seed, 0xB6, int(background_id)])
        size = self.image_size
        z = rng.standard_normal((2, 3, *self._inv_f.shape))
        x = np.fft.irfft2((z[0] + 1j * z[1]) * self._inv_f, s=(size, size), axes=(-2, -1))
        x /= x.std(axis=(-2, -1), keepdims=True) + 1e-12
        lum, rg, by = x  # a luminance and two colour-opponent fields, as in natural images
        mean = 0.5 + rng.uniform(-0.12, 0.12, 3)
        contrast = rng.uniform(0.12, 0.2)
        rgb = np.stack([lum + 0.25 * rg + 0.1 * by, lum - 0.25 * rg + 0.1 * by, lum - 0.25 * by], axis=-1)
        return np.clip(mean + contrast * rgb, 0, 1).astype(np.float32)

    def render(self, row: Any) -> np.ndarray:
        """The image of one table row (a Series, dict or namedtuple): uint8 [H, W, 3], deterministic."""
        m, cx, cy, scale, theta = self._geometry(row)
        mask = self.object_mask(row)[..., None]
        fg = self._appearance(m, cx, cy, scale, theta)
        bg = self.background(int(_get(row, "background_id")))
        img = bg * (1 - mask) + fg * mask
        return (img * 255 + 0.5).clip(0, 255).astype(np.uint8)

    def encode(self, row: Any, fmt: str = "JPEG", quality: int = 90) -> bytes:
        """The rendered image encoded as JPEG (``quality``) or PNG bytes (deterministic)."""
        buf = io.BytesIO()
        img = Image.fromarray(self.render(row))
        if fmt.upper() in ("JPEG", "JPG"):
            img.save(buf, "JPEG", quality=int(quality))
        else:
            img.save(buf, fmt.upper())
        return buf.getvalue()

    def params(self) -> dict:
        """The constructor arguments (what determines every image)."""
        return {
            "image_size": self.image_size,
            "n_categories": self.n_categories,
            "objects_per_category": self.objects_per_category,
            "seed": self.seed,
        }

    # --------------------------------------------------------------------------------- stimulus sets
    def write_stimulus_set(self, out_dir: str | os.PathLike, df: pd.DataFrame) -> Path:
        """Write a PNG per row and ``stimulus_set.csv`` (table + relative ``filename``); return the CSV path.

        Each file is written atomically and the CSV last, so a directory with a CSV is complete.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if df["stimulus_id"].duplicated().any():
            raise ValueError("stimulus_id values must be unique")
        filenames = []
        for row in df.itertuples(index=False):
            name = f"{row.stimulus_id}.png"
            atomic_write_bytes(out / name, self.encode(row, "PNG"))
            filenames.append(name)
        table = df.copy()
        table["filename"] = filenames
        csv_path = out / "stimulus_set.csv"
        atomic_write_bytes(csv_path, table.to_csv(index=False).encode())
        return csv_path


# ------------------------------------------------------------------------------------------- shards
_GENERATORS: dict[tuple, SyntheticObjects] = {}


def _cached_generator(params: Mapping[str, int]) -> SyntheticObjects:
    key = tuple(sorted(params.items()))
    if key not in _GENERATORS:
        _GENERATORS[key] = SyntheticObjects(**params)
    return _GENERATORS[key]


def _render_jpeg(params: dict, quality: int, spec: SampleSpec) -> bytes:
    """Shard loader: render the row stored in the sample's metadata and JPEG-encode it."""
    return _cached_generator(params).encode(spec.meta, "JPEG", quality)


def _table_specs(df: pd.DataFrame) -> list[SampleSpec]:
    specs = []
    for rec in df.to_dict(orient="records"):
        meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        specs.append(
            SampleSpec(
                key=meta["stimulus_id"],
                cls=int(meta["category_index"]),
                ext="jpg",
                source=meta["stimulus_id"],
                meta=meta,
            )
        )
    return specs


def write_synthetic_shards(
    out_dir: str | os.PathLike,
    image_size: int = 64,
    train_per_object_per_level: int = 20,
    val_per_object_per_level: int = 5,
    seed: int = 0,
    shard_size: int = 128,
    n_categories: int = 8,
    objects_per_category: int = 8,
    levels: Sequence[int] = (0, 3, 6),
    jpeg_quality: int = 90,
    workers: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Render a train and a val split as ``synthetic-{train,val}-%06d.tar`` shards plus ``dataset.json``.

    Idempotent: if ``out_dir/dataset.json`` exists with the same parameters and its shards are there,
    nothing is written and the index is returned. If it exists with other parameters, this raises unless
    ``overwrite``. An interrupted run resumes like :func:`convrnn.data.writer.write_splits`. Samples are
    JPEG-encoded (``jpg``), ``cls`` is the category index and ``json`` holds the full table row.
    Returns the ``dataset.json`` content.
    """
    out = Path(out_dir)
    gen_params = {
        "image_size": int(image_size),
        "n_categories": int(n_categories),
        "objects_per_category": int(objects_per_category),
        "seed": int(seed),
    }
    params = {
        "generator": "convrnn.data.synthetic_objects",
        "generator_version": GENERATOR_VERSION,
        **gen_params,
        "train_per_object_per_level": int(train_per_object_per_level),
        "val_per_object_per_level": int(val_per_object_per_level),
        "levels": [int(v) for v in levels],
        "shard_size": int(shard_size),
        "jpeg_quality": int(jpeg_quality),
        "split_seeds": {"train": TRAIN_SPLIT_SEED, "val": VAL_SPLIT_SEED},
    }
    index_path = out / INDEX_NAME
    if index_path.exists() and not overwrite:
        index = read_index(index_path)
        if index.get("params") != params:
            raise FileExistsError(
                f"{index_path} was written with other parameters ({index.get('params')}); use another "
                "directory or overwrite=True"
            )
        if all((out / sh["name"]).is_file() for sp in index["splits"].values() for sh in sp["shards"]):
            return index
    gen = _cached_generator(gen_params)
    load = partial(_render_jpeg, gen_params, int(jpeg_quality))
    tables = {
        "train": gen.sample_table(train_per_object_per_level, levels, split_seed=TRAIN_SPLIT_SEED),
        "val": gen.sample_table(val_per_object_per_level, levels, split_seed=VAL_SPLIT_SEED),
    }
    splits = write_splits(
        out,
        "synthetic",
        {k: _table_specs(df) for k, df in tables.items()},
        load,
        shard_size=shard_size,
        seed=seed,
        workers=workers,
        progress=progress,
        overwrite=overwrite,
    )
    return write_index(
        out,
        "synthetic",
        gen.categories,
        splits,
        objects=gen.objects,
        image_size=int(image_size),
        params=params,
    )
