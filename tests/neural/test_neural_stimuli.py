"""Stimulus sets from a CSV plus a folder or a zip archive."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from convrnn.errors import UserError
from convrnn.neural import load_image, load_stimulus_set, open_stimulus

CSV = "image_test_ten_images.csv"


def test_folder(fixtures: Path) -> None:
    stimuli = load_stimulus_set(fixtures / "stimuli" / CSV)
    assert list(stimuli.columns[:3]) == ["stimulus_id", "filename", "thing"]
    assert len(stimuli) == 10 and stimuli.attrs["identifier"] == "image_test_ten_images"
    first = stimuli.iloc[0]
    with open_stimulus(first["image_path"]) as handle:
        raw = handle.read()
    assert raw == (fixtures / "stimuli" / "n0.png").read_bytes()
    image = load_image(first["image_path"])
    reference = Image.open(fixtures / "stimuli" / "n0.png").convert("RGB")
    assert image.size == reference.size and image.tobytes() == reference.tobytes()


def test_zip(fixtures: Path, tmp_path: Path) -> None:
    archive = tmp_path / "image_test_ten_images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(10):
            zf.write(fixtures / "stimuli" / f"n{i}.png", arcname=f"n{i}.png")
    shutil.copy(fixtures / "stimuli" / CSV, tmp_path / CSV)
    stimuli = load_stimulus_set(tmp_path / CSV)  # the sibling zip is found by default
    assert stimuli.attrs["images"] == str(archive.resolve())
    assert stimuli["image_path"].iloc[3].endswith("::n3.png")
    with open_stimulus(stimuli["image_path"].iloc[3]) as handle:
        assert handle.read() == (fixtures / "stimuli" / "n3.png").read_bytes()


def test_missing_files_are_listed(fixtures: Path, tmp_path: Path) -> None:
    table = pd.read_csv(fixtures / "stimuli" / CSV)
    table.loc[2, "filename"] = "nope.png"
    table.loc[7, "filename"] = "gone.png"
    table.to_csv(tmp_path / "set.csv", index=False)
    with pytest.raises(UserError, match=r"2 stimulus files.*'nope\.png', 'gone\.png'"):
        load_stimulus_set(tmp_path / "set.csv", images=fixtures / "stimuli")


def test_legacy_image_id_and_required_columns(fixtures: Path, tmp_path: Path) -> None:
    table = pd.read_csv(fixtures / "stimuli" / CSV).rename(columns={"stimulus_id": "image_id"})
    table.to_csv(tmp_path / "legacy.csv", index=False)
    stimuli = load_stimulus_set(tmp_path / "legacy.csv", images=fixtures / "stimuli")
    assert list(stimuli["stimulus_id"]) == list(table["image_id"])
    table.drop(columns=["filename"]).to_csv(tmp_path / "nofile.csv", index=False)
    with pytest.raises(UserError, match="filename"):
        load_stimulus_set(tmp_path / "nofile.csv", images=fixtures / "stimuli")


@pytest.mark.parametrize("images", ["folder", "zip"])
def test_filenames_that_leave_the_folder_or_zip_are_refused(fixtures: Path, tmp_path: Path, images: str) -> None:
    """A stimulus set from someone else may not make us read files outside its images (issue 13 part 3)."""
    root = tmp_path / "set"
    root.mkdir()
    secret = tmp_path / "secret.png"  # a real file outside the images: the escape would succeed without the check
    shutil.copy(fixtures / "stimuli" / "n0.png", secret)
    if images == "folder":
        for i in range(10):
            shutil.copy(fixtures / "stimuli" / f"n{i}.png", root / f"n{i}.png")
        source = root
    else:
        source = tmp_path / "images.zip"
        with zipfile.ZipFile(source, "w") as zf:
            for i in range(10):
                zf.write(fixtures / "stimuli" / f"n{i}.png", arcname=f"n{i}.png")
            zf.write(secret, arcname="../secret.png")  # the archive itself may hold such a member
    table = pd.read_csv(fixtures / "stimuli" / CSV)
    assert load_stimulus_set(_write(table, tmp_path / "ok.csv"), images=source)["image_path"].notna().all()
    climbing = table.copy()
    climbing.loc[3, "filename"] = "../secret.png"
    with pytest.raises(UserError, match=r"climbing\.csv.*row 4: filename '\.\./secret\.png' climbs out"):
        load_stimulus_set(_write(climbing, tmp_path / "climbing.csv"), images=source)
    absolute = table.copy()
    absolute.loc[0, "filename"] = str(secret)
    absolute.loc[9, "filename"] = "sub\\..\\..\\secret.png"
    with pytest.raises(UserError, match=rf"row 1: filename '{secret}' is an absolute path; row 10: .*climbs out"):
        load_stimulus_set(_write(absolute, tmp_path / "absolute.csv"), images=source)


def _write(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def test_an_undecodable_image_is_named(fixtures: Path, tmp_path: Path) -> None:
    data = (fixtures / "stimuli" / "n0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    (tmp_path / "page.png").write_text("<html>not an image</html>")
    for name in ("cut.png", "page.png"):
        with pytest.raises(UserError, match=rf"stimulus image .*{name}: cannot decode it"):
            load_image(str(tmp_path / name))
