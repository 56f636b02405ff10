"""brainio files in and out, the plain NumPy/HDF5 route, and the dense trial view."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from convrnn.errors import UserError
from convrnn.neural import (
    average_repetitions,
    check_trials,
    from_arrays,
    load_assembly,
    load_plain,
    load_stimulus_set,
    save_assembly,
    split_half_ceiling,
    trial_array,
)


def _h5_strings(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


# ---------------------------------------------------------------------------------------------- fixtures load


def test_legacy_package_assembly_matches_raw_hdf5(fixtures: Path) -> None:
    path = fixtures / "assy_test_package_assembly.nc"
    da = load_assembly(path)
    assert da.dims == ("presentation", "neuroid", "time_bin")
    assert da.shape == (6, 3, 1)
    with h5py.File(path, "r") as f:
        raw = f["__xarray_dataarray_variable__"][()]
        image_id = _h5_strings(f["image_id"][()])
        neuroid_id = _h5_strings(f["neuroid_id"][()])
        starts, ends = f["time_bin_start"][()], f["time_bin_end"][()]
    np.testing.assert_array_equal(da.values, raw)
    assert list(da["image_id"].values) == image_id
    assert list(da["stimulus_id"].values) == image_id  # legacy image_id copied into stimulus_id
    assert list(da["neuroid_id"].values) == neuroid_id
    assert list(da["time_bin_start"].values) == list(starts) and list(da["time_bin_end"].values) == list(ends)
    # brainio's gather_indexes: every coord on a dim is a MultiIndex level of that dim
    assert list(da.indexes["presentation"].names) == ["image_id", "image_type", "stimulus_id"]
    assert list(da.indexes["neuroid"].names) == ["neuroid_id", "neuroid_type"]
    assert list(da.indexes["time_bin"].names) == ["time_bin_start", "time_bin_end"]
    assert int(da.sel(neuroid_id="B").sel(stimulus_id="n4").squeeze()) == int(raw[4, 1, 0])
    assert da.attrs["assembly_type"] == "NeuroidAssembly"


def test_testme_assembly_matches_raw_hdf5(fixtures: Path) -> None:
    path = fixtures / "assy_test_TestMe.nc"
    da = load_assembly(path)
    assert da.dims == ("presentation", "neuroid") and da.shape == (6, 3)
    with h5py.File(path, "r") as f:
        raw = f["data"][()]
        stim = _h5_strings(f["stimulus_id"][()])
        rep = f["repetition"][()]
        foo = f["foo"][()]
    np.testing.assert_array_equal(da.values, raw)
    assert list(da["stimulus_id"].values) == stim
    np.testing.assert_array_equal(da["repetition"].values, rep)
    np.testing.assert_array_equal(da["foo"].values, foo)
    assert list(da.indexes["presentation"].names) == ["stimulus_id", "repetition"]


def test_spike_times_assembly_with_groups(fixtures: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = fixtures / "assy_test_package_assembly_extras.nc"
    with caplog.at_level(logging.INFO):
        da = load_assembly(path)
    assert "SpikeTimesAssembly" in caplog.text
    assert da.dims == ("event",) and da.shape == (1000,)
    assert da.attrs["assembly_type"] == "SpikeTimesAssembly"
    with h5py.File(path, "r") as f:
        raw = f["data"][()]
        group_raw = f["test"]["data"][()]
        group_stim = _h5_strings(f["test"]["stimulus_id"][()])
        regions = _h5_strings(f["region"][()])
    np.testing.assert_array_equal(da.values, raw)
    assert list(da["region"].values) == regions
    meta = da.attrs["test"]
    assert isinstance(meta, xr.DataArray) and meta.dims == ("event",) and meta.shape == (40,)
    np.testing.assert_array_equal(meta.values, group_raw)
    assert list(meta["stimulus_id"].values) == group_stim
    assert np.issubdtype(da["datetime"].dtype, np.datetime64)  # CF-encoded int with units decodes


def test_stimulus_set_fixture_and_merge(fixtures: Path) -> None:
    stimuli = load_stimulus_set(fixtures / "stimuli" / "image_test_ten_images.csv")
    assert list(stimuli["stimulus_id"]) == [f"n{i}" for i in range(10)]
    assert all(Path(p).is_file() for p in stimuli["image_path"])
    da = load_assembly(fixtures / "assy_test_package_assembly.nc", stimulus_set=stimuli)
    assert list(da["thing"].values) == [f"foo{i}" for i in range(6)]
    assert "thing" in da.indexes["presentation"].names


def test_missing_stimulus_ids_are_named(fixtures: Path) -> None:
    stimuli = load_stimulus_set(fixtures / "stimuli" / "image_test_ten_images.csv")
    partial = stimuli[~stimuli["stimulus_id"].isin(["n2", "n5"])]
    with pytest.raises(UserError, match=r"2 stimulus ids.*'n2'.*'n5'"):
        load_assembly(fixtures / "assy_test_package_assembly.nc", stimulus_set=partial)


def test_duplicate_stimulus_repetition_pair_is_named(fixtures: Path) -> None:
    # the upstream TestMe fixture really contains ('n0', repetition 1) twice
    da = load_assembly(fixtures / "assy_test_TestMe.nc")
    with pytest.raises(ValueError, match=r"\('n0', 0\)"):
        trial_array(da)


# ---------------------------------------------------------------------------------------------- writer


def _example(rng: np.random.Generator) -> xr.DataArray:
    resp = rng.standard_normal((3, 5, 4, 2)).astype(np.float32)
    resp[1, 2, 3, 0] = np.nan
    stim = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(5)], "object_name": list("aabbc")})
    neur = pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(4)], "region": ["V4", "V4", "IT", "IT"],
                         "x": [0.5, 1.5, 2.5, 3.5]})
    return from_arrays(resp, stim, neur, [70, 80, 90], attrs={"note": "synthetic"})


def test_round_trip(tmp_path: Path) -> None:
    da = _example(np.random.default_rng(0))
    da.attrs["stimulus_set"] = pd.DataFrame({"a": [1]})  # dropped on write, as brainio does
    path = save_assembly(da, tmp_path / "assy_test_Round.nc", identifier="test.Round",
                         stimulus_set_identifier="test.stimuli")
    back = load_assembly(path)
    np.testing.assert_array_equal(back.values, da.values)
    for coord in ["stimulus_id", "repetition", "object_name", "neuroid_id", "region", "x", "time_bin_start"]:
        np.testing.assert_array_equal(back[coord].values, da[coord].values)
    assert back.attrs["identifier"] == "test.Round"
    assert back.attrs["stimulus_set_identifier"] == "test.stimuli"
    assert back.attrs["note"] == "synthetic"
    assert "stimulus_set" not in back.attrs
    assert list(back.indexes["presentation"].names) == list(da.indexes["presentation"].names)
    # on disk: brainio's layout
    with h5py.File(path, "r") as f:
        assert f["data"].compression == "gzip"
        assert f.attrs["identifier"] in (b"test.Round", "test.Round")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert list(ds.data_vars) == ["data"]
        assert "presentation" not in ds.variables and "neuroid" not in ds.variables  # reset MultiIndexes
        assert set(ds["data"].dims) == {"presentation", "neuroid", "time_bin"}
    assert [p.name for p in tmp_path.iterdir()] == ["assy_test_Round.nc"]  # no temp file left behind


def test_written_file_loads_with_brainio_reader(tmp_path: Path) -> None:
    """brainio reads with ``xr.open_dataarray`` and the netCDF4 engine (netCDF4 is optional here)."""
    pytest.importorskip("netCDF4")
    da = _example(np.random.default_rng(1))
    path = save_assembly(da, tmp_path / "a.nc", identifier="test.A", stimulus_set_identifier="s")
    plain = xr.open_dataarray(path, engine="netcdf4")
    assert plain.name == "data" and plain.attrs["identifier"] == "test.A"
    np.testing.assert_array_equal(plain.values, da.values)


def test_round_trip_of_spike_file_keeps_groups(fixtures: Path, tmp_path: Path) -> None:
    da = load_assembly(fixtures / "assy_test_package_assembly_extras.nc")
    path = save_assembly(da, tmp_path / "spikes.nc", identifier="test.Spikes", stimulus_set_identifier="s")
    back = load_assembly(path)
    np.testing.assert_array_equal(back.values, da.values)
    np.testing.assert_array_equal(back.attrs["test"].values, da.attrs["test"].values)
    np.testing.assert_array_equal(back["datetime"].values, da["datetime"].values)


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.nc"
    save_assembly(_example(np.random.default_rng(2)), target, identifier="test.A", stimulus_set_identifier="s")
    before = target.read_bytes()
    bad = _example(np.random.default_rng(3))
    bad = bad.assign_attrs(unwritable=object())  # not a netCDF attribute type
    with pytest.raises(Exception):  # noqa: B017 - any serialisation error; what matters is the file state
        save_assembly(bad, target, identifier="test.A", stimulus_set_identifier="s")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.nc"]


# ---------------------------------------------------------------------------------------------- plain route


def test_plain_route_npy_npz_h5_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    resp = rng.standard_normal((4, 6, 3, 2))
    stim = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(6)], "object_name": list("aabbcc")})
    neur = pd.DataFrame({"neuroid_id": ["a", "b", "c"], "region": ["V4", "IT", "IT"]})
    stim.to_csv(tmp_path / "stim.csv", index=False)
    neur.to_csv(tmp_path / "neur.csv", index=False)
    np.save(tmp_path / "r.npy", resp)
    np.savez(tmp_path / "r.npz", responses=resp, other=np.zeros(2))
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["responses"] = resp
    pd.DataFrame({"time_bin_start": [70, 80], "time_bin_end": [80, 90]}).to_csv(tmp_path / "bins.csv", index=False)
    a = load_plain(tmp_path / "r.npy", tmp_path / "stim.csv", tmp_path / "neur.csv", bins=[70, 80, 90])
    b = load_plain(tmp_path / "r.npz", tmp_path / "stim.csv", tmp_path / "neur.csv", bins=[(70, 80), (80, 90)],
                   key="responses")
    c = load_plain(tmp_path / "r.h5", tmp_path / "stim.csv", tmp_path / "neur.csv", bins=tmp_path / "bins.csv")
    for other in (b, c):
        xr.testing.assert_identical(a, other)
    td = trial_array(a)
    np.testing.assert_array_equal(td.trials, resp)  # [rep, stimulus, neuron, bin] comes back unchanged
    assert list(td.stimuli["object_name"]) == list("aabbcc")
    assert list(td.neuroids["region"]) == ["V4", "IT", "IT"]
    np.testing.assert_array_equal(td.bins, [[70, 80], [80, 90]])


def test_nan_trials_are_averaged_out_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    resp = np.arange(3 * 2 * 1 * 1, dtype=float).reshape(3, 2, 1, 1)  # rep r, stim s: 2r + s
    resp[0, 1, 0, 0] = np.nan
    resp[2, 1, 0, 0] = np.nan
    da = from_arrays(resp, ["s0", "s1"], ["n0"], [0, 10])
    with caplog.at_level(logging.INFO):
        avg = average_repetitions(da)
    assert avg.attrs["n_missing_trials"] == 2
    assert "2 missing trial values" in caplog.text
    # stimulus s0: (0 + 2 + 4) / 3; stimulus s1: only repetition 1 left -> 3
    np.testing.assert_allclose(avg.values[:, 0, 0], [2.0, 3.0])


def test_absent_repetitions_become_missing_trials() -> None:
    resp = np.ones((2, 3, 2))
    da = from_arrays(resp, ["a", "b", "c"], None, None)
    dropped = da.isel(presentation=[i for i in range(6) if i != 4])  # repetition 1 of stimulus "b"
    td = trial_array(dropped)
    assert td.trials.shape == (2, 3, 2, 1) and td.n_missing == 2  # both neurons of that trial
    assert np.isnan(td.trials[1, 1]).all()


@pytest.mark.parametrize(
    "bins, message",
    [
        ([(70, 80), (75, 90)], r"overlap.*\(\(70, 80\), \(75, 90\)\)"),
        ([(80, 90), (65, 75), (70, 80)], r"overlap.*\(\(65, 75\), \(70, 80\)\)"),  # found once sorted
        ([(70, 70), (80, 90)], r"end > start.*\(70, 70\)"),
        ([(80, 90), (70, 80), (80, 90)], r"unique.*more than once: \[\(80, 90\)\]"),
    ],
)
def test_bad_bins_are_named(bins: list, message: str) -> None:
    with pytest.raises(UserError, match=message):
        from_arrays(np.zeros((2, 3, 1, len(bins))), ["a", "b", "c"], None, bins)


def test_bins_out_of_order_are_sorted_with_their_data(tmp_path: Path) -> None:
    """Nothing needs the stored order: the plain route and a .nc file with shuffled bins give sorted bins, and each
    bin keeps its own data."""
    rng = np.random.default_rng(6)
    resp = rng.standard_normal((2, 3, 2, 3))
    shuffled = [(90, 100), (70, 80), (80, 90)]
    da = from_arrays(resp, ["a", "b", "c"], None, shuffled)
    np.testing.assert_array_equal(da["time_bin_start"].values, [70, 80, 90])
    td = trial_array(da)
    np.testing.assert_array_equal(td.bins, [[70, 80], [80, 90], [90, 100]])
    np.testing.assert_array_equal(td.trials, resp[..., [1, 2, 0]])
    # an assembly file that stores its bins out of order (as another writer may) loads and sorts the same way
    stored = xr.DataArray(resp.reshape(6, 2, 3), dims=["presentation", "neuroid", "time_bin"], coords={
        "stimulus_id": ("presentation", ["a", "b", "c"] * 2), "repetition": ("presentation", [0, 0, 0, 1, 1, 1]),
        "neuroid_id": ("neuroid", ["n0", "n1"]), "time_bin_start": ("time_bin", [90, 70, 80]),
        "time_bin_end": ("time_bin", [100, 80, 90])})
    path = save_assembly(stored, tmp_path / "shuffled.nc", identifier="t", stimulus_set_identifier="s")
    from_file = trial_array(load_assembly(path))
    np.testing.assert_array_equal(from_file.bins, td.bins)
    np.testing.assert_array_equal(from_file.trials, td.trials)


@pytest.mark.parametrize("cut", [0.5, 0.02])
def test_truncated_netcdf_names_the_file(tmp_path: Path, cut: float) -> None:
    """A .nc cut short (an interrupted copy) is a UserError naming the file, not an h5py traceback."""
    path = save_assembly(_example(np.random.default_rng(7)), tmp_path / "assy.nc", identifier="t",
                         stimulus_set_identifier="s")
    data = path.read_bytes()
    damaged = tmp_path / "damaged.nc"
    damaged.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(UserError, match=rf"{damaged}: cannot read this file; it is damaged"):
        load_assembly(damaged)


def test_truncated_responses_array_names_the_file(tmp_path: Path) -> None:
    stim = pd.DataFrame({"stimulus_id": ["a", "b"]})
    stim.to_csv(tmp_path / "stim.csv", index=False)
    for name in ("r.npy", "r.npz", "r.h5"):
        whole = tmp_path / f"whole_{name}"
        if name.endswith(".npy"):
            np.save(whole, np.zeros((2, 2, 1, 1)))
        elif name.endswith(".npz"):
            np.savez(whole, rates=np.zeros((2, 2, 1, 1)))
        else:
            with h5py.File(whole, "w") as f:
                f["rates"] = np.zeros((2, 2, 1, 1))
        cut = tmp_path / name
        cut.write_bytes(whole.read_bytes()[:60])
        with pytest.raises(UserError, match=rf"{cut}: cannot read this responses file"):
            load_plain(cut, tmp_path / "stim.csv", bins=[0, 10])


def test_check_trials_finds_what_scoring_would() -> None:
    """Too few repetitions and (stimulus, neuroid, bin) entries without a valid trial, named before any scoring."""
    neuroids = pd.DataFrame({"neuroid_id": ["u", "v"]})
    single = trial_array(from_arrays(np.zeros((1, 3, 2, 1)), ["a", "b", "c"], neuroids, [70, 80]))
    with pytest.raises(UserError, match="at least 2 repetitions per stimulus; the data have 1"):
        check_trials(single)
    resp = np.random.default_rng(8).standard_normal((3, 3, 2, 2))
    resp[:, 1, 1, 1] = np.nan  # stimulus b, neuroid v, bin 80-90: every repetition missing
    resp[0, 2, 0, 0] = np.nan  # one missing trial is fine
    td = trial_array(from_arrays(resp, ["a", "b", "c"], neuroids, [70, 80, 90]))
    with pytest.raises(UserError, match=r"1 \(stimulus, neuroid, bin\) entries have no valid trial.*"
                                        r"\(stimulus 'b', neuroid 'v', bin 80-90 ms\)"):
        check_trials(td)
    resp[:, 1, 1, 1] = 1.0
    check_trials(trial_array(from_arrays(resp, ["a", "b", "c"], neuroids, [70, 80, 90])))
    # two repetitions in name, but no stimulus was recorded twice: split halves are impossible
    once = np.full((2, 3, 2, 1), np.nan)
    once[0, :2] = 1.0
    once[1, 2] = 1.0
    with pytest.raises(UserError, match="only 0 stimulus/stimuli have 2 or more repetitions"):
        check_trials(trial_array(from_arrays(once, ["a", "b", "c"], neuroids, [70, 80])))


def test_duplicate_ids_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"duplicate stimulus_id.*'a'"):
        from_arrays(np.zeros((2, 3, 1)), ["a", "a", "b"])
    with pytest.raises(ValueError, match="3 stimuli but the stimulus table has 2 rows"):
        from_arrays(np.zeros((2, 3, 1)), ["a", "b"])


def test_too_few_repetitions_for_split_halves() -> None:
    da = from_arrays(np.zeros((1, 4, 2, 1)), ["a", "b", "c", "d"], None, [0, 10])
    with pytest.raises(ValueError, match="at least 2 repetitions.*got 1"):
        split_half_ceiling(trial_array(da).trials)


def test_unloadable_group_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    da = _example(np.random.default_rng(5))
    path = save_assembly(da, tmp_path / "g.nc", identifier="test.G", stimulus_set_identifier="s")
    with h5py.File(path, "a") as f:
        grp = f.create_group("junk")
        grp["a"] = np.zeros(2)
        grp["b"] = np.zeros(3)
    with caplog.at_level(logging.WARNING):
        back = load_assembly(path)
    assert "junk" not in back.attrs and "junk" in caplog.text
    assert os.path.getsize(path) > 0
