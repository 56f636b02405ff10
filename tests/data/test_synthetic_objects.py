"""Synthetic objects: table contract, determinism, separable categories, variation grows with level,
stimulus sets and shards (idempotent, disjoint splits, same format as the ImageNet shards)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from convrnn.data.index import read_index
from convrnn.data.synthetic_objects import TABLE_COLUMNS, SyntheticObjects, write_synthetic_shards


@pytest.fixture(scope="module")
def gen() -> SyntheticObjects:
    return SyntheticObjects(image_size=64, n_categories=8, objects_per_category=8, seed=0)


def test_table_contract(gen: SyntheticObjects) -> None:
    assert len(gen.categories) == 8 and len(gen.objects) == 64 and len(set(gen.objects)) == 64
    df = gen.sample_table(3, levels=(0, 3, 6), split_seed=0)
    assert list(df.columns) == list(TABLE_COLUMNS)
    assert len(df) == 64 * 3 * 3 and df["stimulus_id"].is_unique
    assert not df["stimulus_id"].str.contains(r"\.").any()
    assert df["category_index"].dtype == np.int64 and set(df["variation"]) == {0, 3, 6}
    assert (df["category_name"] == [gen.categories[i] for i in df["category_index"]]).all()
    assert (df.groupby("category_name")["object_name"].nunique() == 8).all()
    lv0 = df[df["variation"] == 0]
    assert (lv0[["tx", "ty", "rxy"]] == 0).all().all() and (lv0["s"] == 1).all()
    with pytest.raises(ValueError):
        SyntheticObjects(n_categories=99)


def test_deterministic_render_and_table(gen: SyntheticObjects) -> None:
    other = SyntheticObjects(image_size=64, n_categories=8, objects_per_category=8, seed=0)
    df1, df2 = gen.sample_table(1, split_seed=5), other.sample_table(1, split_seed=5)
    pd.testing.assert_frame_equal(df1, df2)
    for i in (0, 100, 191):
        row = df1.iloc[i]
        img = gen.render(row)
        assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
        assert img.tobytes() == other.render(df2.iloc[i]).tobytes()
        assert gen.encode(row) == other.encode(row.to_dict())  # Series or dict, same JPEG bytes
    assert not df1.equals(gen.sample_table(1, split_seed=6))
    third = SyntheticObjects(image_size=64, seed=1)
    assert gen.render(df1.iloc[0]).tobytes() != third.render(df1.iloc[0]).tobytes()


def _features(gen: SyntheticObjects, df: pd.DataFrame) -> np.ndarray:
    """Images block-averaged to 16x16 RGB, flattened."""
    imgs = np.stack([gen.render(r) for r in df.itertuples(index=False)]).astype(np.float32) / 255
    return imgs.reshape(len(df), 16, 4, 16, 4, 3).mean(axis=(2, 4)).reshape(len(df), -1)


def test_categories_are_separable_at_level_0(gen: SyntheticObjects) -> None:
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = gen.sample_table(4, levels=(0,), split_seed=10)
    test = gen.sample_table(2, levels=(0,), split_seed=11)  # same objects, new backgrounds
    xtr, xte = _features(gen, train), _features(gen, test)
    ytr, yte = train["category_index"].to_numpy(), test["category_index"].to_numpy()
    clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0)).fit(xtr, ytr)
    acc = clf.score(xte, yte)
    assert acc > 0.45, acc  # chance is 1/8; this linear pixel readout gets ~0.68
    # generalising to *unseen objects* of each category is harder, but still well above chance (~0.4)
    seen = train["object_index"].to_numpy() % 8 < 6
    unseen = test["object_index"].to_numpy() % 8 >= 6
    clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0)).fit(xtr[seen], ytr[seen])
    acc_unseen = clf.score(xte[unseen], yte[unseen])
    assert acc_unseen > 0.25, acc_unseen


def test_variation_grows_with_level(gen: SyntheticObjects) -> None:
    """Measured on the rendered silhouettes: spread of centroid, area and orientation over images."""
    df = gen.sample_table(12, levels=(0, 3, 6), split_seed=3)
    df = df[df["object_name"].isin(gen.objects[::9])]  # one object from each category
    spread = {}
    for lv in (0, 3, 6):
        rows = df[df["variation"] == lv]
        cents, logarea, orient = [], [], []
        for _, r in rows.iterrows():
            m = gen.object_mask(r)
            yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
            a = m.sum()
            cy, cx = (m * yy).sum() / a, (m * xx).sum() / a
            cov = np.cov(np.stack([xx.ravel() - cx, yy.ravel() - cy]), aweights=m.ravel() + 1e-9)
            cents.append((cx, cy))
            logarea.append(np.log(a))
            orient.append(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
        per_obj = rows["object_name"].to_numpy()
        c = np.asarray(cents)
        la, th = np.asarray(logarea), np.asarray(orient)
        spread[lv] = (
            np.mean([c[per_obj == o].std(axis=0).sum() for o in set(per_obj)]),
            np.mean([la[per_obj == o].std() for o in set(per_obj)]),
            np.mean([np.abs(np.exp(2j * th[per_obj == o]).mean()) for o in set(per_obj)]),  # 1 = no rotation
        )
    assert spread[0][0] < 1e-6 and spread[0][1] < 1e-6 and spread[0][2] > 0.999  # level 0: identical poses
    assert spread[0][0] < spread[3][0] < spread[6][0]  # position
    assert spread[0][1] < spread[3][1] < spread[6][1]  # size
    assert spread[0][2] > spread[3][2] > spread[6][2]  # orientation concentration falls


def test_backgrounds_have_falling_spectrum(gen: SyntheticObjects) -> None:
    power = np.mean([np.abs(np.fft.fft2(gen.background(i).mean(axis=-1) - 0.5)) ** 2 for i in range(20)], axis=0)
    f = np.sqrt(np.fft.fftfreq(64)[:, None] ** 2 + np.fft.fftfreq(64)[None, :] ** 2)
    low, high = power[(f > 0.02) & (f < 0.06)].mean(), power[(f > 0.2) & (f < 0.3)].mean()
    slope = np.log(low / high) / np.log(0.25 / 0.04)
    assert 1.8 < slope < 3.2, slope  # power ~ 1/f^2.4 (amplitude 1/f^1.2), like natural images


def test_render_speed(gen: SyntheticObjects) -> None:
    df = gen.sample_table(2, split_seed=1).iloc[:300]
    t0 = time.perf_counter()
    for r in df.itertuples(index=False):
        gen.encode(r)
    per_image = (time.perf_counter() - t0) / len(df)
    assert per_image < 0.02, per_image  # ~1 ms on an idle core; 3000 images well under a minute


def test_write_stimulus_set(gen: SyntheticObjects, tmp_path: Path) -> None:
    df = gen.sample_table(1, levels=(3,), split_seed=2).iloc[:10]
    csv = gen.write_stimulus_set(tmp_path / "stim", df)
    table = pd.read_csv(csv)
    assert list(table.columns) == [*TABLE_COLUMNS, "filename"]
    assert list(table["stimulus_id"]) == list(df["stimulus_id"])
    for row, fn in zip(df.itertuples(index=False), table["filename"], strict=True):
        png = np.asarray(Image.open(tmp_path / "stim" / fn))
        assert np.array_equal(png, gen.render(row))
    assert not list((tmp_path / "stim").glob(".*tmp*"))


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}


def test_synthetic_shards(tmp_path: Path) -> None:
    kw = dict(image_size=32, train_per_object_per_level=2, val_per_object_per_level=1, seed=0, shard_size=40,
              n_categories=4, objects_per_category=3, workers=1)  # fmt: skip
    index = write_synthetic_shards(tmp_path / "a", **kw)
    assert index == read_index(tmp_path / "a")
    assert index["classes"] == ["triangle", "star", "cross", "ring"] and index["num_classes"] == 4
    tr, va = index["splits"]["train"], index["splits"]["val"]
    assert tr["num_samples"] == 4 * 3 * 3 * 2 and va["num_samples"] == 4 * 3 * 3
    assert [sh["name"] for sh in tr["shards"]] == ["synthetic-train-000000.tar", "synthetic-train-000001.tar"]

    # same parameters elsewhere -> byte-identical shards
    write_synthetic_shards(tmp_path / "b", **kw)
    for p in sorted((tmp_path / "a").glob("*.tar")):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()

    # idempotent: a second call writes nothing
    stats = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}
    assert write_synthetic_shards(tmp_path / "a", **kw) == index
    assert stats == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}
    with pytest.raises(FileExistsError):
        write_synthetic_shards(tmp_path / "a", **{**kw, "seed": 1})

    # samples: JPEG that decodes to the rendered row, cls = category index, json = the row; splits disjoint
    gen = SyntheticObjects(image_size=32, n_categories=4, objects_per_category=3, seed=0)
    rows = {}
    for split in ("train", "val"):
        for sh in index["splits"][split]["shards"]:
            members = _tar_members(tmp_path / "a" / sh["name"])
            for name, data in members.items():
                if name.endswith(".json"):
                    key = name[: -len(".json")]
                    row = json.loads(data)
                    assert int(members[f"{key}.cls"]) == row["category_index"] and key == row["stimulus_id"]
                    jpg = members[f"{key}.jpg"]
                    assert jpg == gen.encode(row, "JPEG", 90)  # re-rendering the stored row gives the same bytes
                    img = np.asarray(Image.open(io.BytesIO(jpg)), dtype=np.float32)
                    own = np.abs(img - gen.render(row)).mean()
                    other = np.abs(img - gen.render({**row, "background_id": row["background_id"] + 1})).mean()
                    assert own < 0.5 * other, (own, other)  # a JPEG of this image, not another background
                    rows.setdefault(split, []).append(row)
    tr_rows, va_rows = pd.DataFrame(rows["train"]), pd.DataFrame(rows["val"])
    assert (tr_rows["background_id"] < 2**53).all()  # exact in any JSON reader
    assert len(tr_rows) == tr["num_samples"] and len(va_rows) == va["num_samples"]
    assert not set(tr_rows["stimulus_id"]) & set(va_rows["stimulus_id"])
    assert not set(tr_rows["background_id"]) & set(va_rows["background_id"])
    assert set(tr_rows["object_name"]) == set(va_rows["object_name"]) == set(gen.objects)
