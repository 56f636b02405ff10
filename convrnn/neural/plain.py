"""The plain route into an assembly, for users without brainio files: NumPy/HDF5 responses
``[repetition, stimulus, neuron(, bin)]`` plus metadata tables (:func:`from_arrays`, :func:`load_plain`).

Why its own module: it shares only the assembly layout (:func:`convrnn.neural.assembly.gather_indexes`) and the
time-bin check with the netCDF route; its job is reading arrays and CSVs and turning their problems into
:class:`convrnn.errors.UserError` messages that name the file.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from convrnn.errors import UserError
from convrnn.neural.assembly import check_time_bins, gather_indexes, preview

__all__ = ["from_arrays", "load_plain"]

logger = logging.getLogger(__name__)


def _bins_from(bins: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(bins [B, 2] sorted by start, the order that sorted them) or None."""
    if bins is None:
        return None
    arr = np.asarray(bins, dtype=float)
    if arr.ndim == 1:
        if arr.size != n_bins + 1:
            raise UserError(f"bin edges: expected {n_bins + 1} edges for {n_bins} bins, got {arr.size}")
        arr = np.stack([arr[:-1], arr[1:]], axis=1)
    if arr.shape != (n_bins, 2):
        raise UserError(f"bins: expected {n_bins + 1} edges or {n_bins} (start, end) pairs, got shape {arr.shape}")
    order = check_time_bins(arr[:, 0], arr[:, 1])
    return arr[order], order


def _frame(table: pd.DataFrame | Sequence[Any] | None, id_column: str, n: int, what: str,
           plural: str) -> pd.DataFrame:
    if table is None:
        frame = pd.DataFrame({id_column: [f"{what}{i}" for i in range(n)]})
    elif isinstance(table, pd.DataFrame):
        frame = table.reset_index(drop=True).copy()
        if id_column not in frame.columns and id_column == "stimulus_id" and "image_id" in frame.columns:
            frame[id_column] = frame["image_id"]
        if id_column not in frame.columns:
            raise UserError(f"{what} table needs a {id_column!r} column; has {list(frame.columns)}")
    else:
        frame = pd.DataFrame({id_column: list(table)})
    if len(frame) != n:
        raise UserError(f"responses have {n} {plural} but the {what} table has {len(frame)} rows")
    frame[id_column] = frame[id_column].astype(str)
    dup = frame[id_column][frame[id_column].duplicated()]
    if len(dup):
        raise UserError(f"duplicate {id_column} values: {preview(dup.unique())}")
    return frame


def from_arrays(
    responses: Any,
    stimuli: pd.DataFrame | Sequence[Any],
    neuroids: pd.DataFrame | Sequence[Any] | None = None,
    bins: Any = None,
    *,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Build an assembly from ``responses[repetition, stimulus, neuron(, bin)]``.

    ``stimuli``: a DataFrame with one row per stimulus and a ``stimulus_id`` column (other columns, e.g.
    ``object_name``, become presentation coordinates) or just the ids. ``neuroids``: a DataFrame with
    ``neuroid_id`` (plus e.g. ``region``, ``subregion``) or ids, default ``n0, n1, ...``. ``bins``: B+1 edges or
    B (start, end) pairs in ms, in any order (validated: non-empty, unique, non-overlapping; sorted by start here,
    the responses' bin axis with them). NaN entries are missing trials; they stay
    NaN here and are averaged out by :func:`convrnn.neural.trials.trial_array` /
    :func:`~convrnn.neural.trials.average_repetitions`.
    """
    data = np.asarray(responses)
    if data.ndim == 3:
        data = data[..., None]
        has_bins = bins is not None
    elif data.ndim == 4:
        has_bins = True
    else:
        raise UserError(f"responses must be [repetitions, stimuli, neurons(, bins)], got shape {data.shape}")
    n_rep, n_stim, n_neur, n_bins = data.shape
    stim = _frame(stimuli, "stimulus_id", n_stim, "stimulus", "stimuli")
    neur = _frame(neuroids, "neuroid_id", n_neur, "neuroid", "neuroids")
    sorted_bins = _bins_from(bins, n_bins)
    edges = None
    if sorted_bins is not None:
        edges, order = sorted_bins
        if not np.array_equal(order, np.arange(len(order))):  # no copy of an already sorted array
            data = data[..., order]
    if has_bins and edges is None:
        edges = np.stack([np.arange(n_bins), np.arange(1, n_bins + 1)], axis=1).astype(float)
        logger.warning("no bin edges given: using placeholder bins [i, i+1)")
    flat = data.reshape(n_rep * n_stim, n_neur, n_bins)  # repetition-major
    coords: dict[str, Any] = {"repetition": ("presentation", np.repeat(np.arange(n_rep), n_stim))}
    for column in stim.columns:
        coords[column] = ("presentation", np.tile(stim[column].to_numpy(), n_rep))
    for column in neur.columns:
        coords[column] = ("neuroid", neur[column].to_numpy())
    dims = ["presentation", "neuroid", "time_bin"]
    if has_bins:
        coords["time_bin_start"] = ("time_bin", _int_if_whole(edges[:, 0]))
        coords["time_bin_end"] = ("time_bin", _int_if_whole(edges[:, 1]))
    else:
        flat = flat[..., 0]
        dims = dims[:2]
    n_missing = int(np.isnan(flat).sum()) if np.issubdtype(flat.dtype, np.floating) else 0
    if n_missing:
        logger.info("from_arrays: %d missing (NaN) trial values", n_missing)
    da = xr.DataArray(flat, dims=dims, coords=coords, attrs=dict(attrs or {}))
    return gather_indexes(da)


def _int_if_whole(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) if np.all(np.equal(np.mod(values, 1), 0)) else values


def _read_array(path: Path, key: str | None) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".h5", ".hdf5", ".hdf"):
        raise UserError(f"{path}: unsupported responses file type {suffix!r} (use .npy, .npz or .h5)")
    try:
        if suffix == ".npy":
            return np.load(path)
        if suffix == ".npz":
            with np.load(path) as z:
                if key is None:
                    if len(z.files) != 1:
                        raise UserError(f"{path}: several arrays {z.files}; pass key= (fit_neural.py: --key)")
                    key = z.files[0]
                if key not in z.files:
                    raise UserError(f"{path}: no array {key!r}; it holds {z.files}")
                return z[key]
        import h5py

        with h5py.File(path, "r") as f:
            names = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
            if key is None:
                if len(names) != 1:
                    raise UserError(f"{path}: datasets {names}; pass key= (fit_neural.py: --key)")
                key = names[0]
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise UserError(f"{path}: no dataset {key!r}; it holds {names}")
            return f[key][()]
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated or foreign file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read this responses file; it is damaged (e.g. truncated) or not a valid "
                        f"{suffix} file ({type(exc).__name__}: {reason})") from None


def _read_csv(path: str | os.PathLike, what: str) -> pd.DataFrame:
    """``pd.read_csv`` with a :class:`UserError` naming the file when it is missing or not a CSV."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"{what}: {path} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{what}: {path} is not a readable CSV file ({exc})") from None


def load_plain(
    responses: str | os.PathLike,
    stimuli_csv: str | os.PathLike,
    neuroids_csv: str | os.PathLike | None = None,
    bins: Any = None,
    *,
    key: str | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Load ``[repetitions, stimuli, neurons, bins]`` responses from .npy/.npz/HDF5 plus metadata CSVs.

    For users without brainio files. ``stimuli_csv`` has one row per stimulus, in response order, with a
    ``stimulus_id`` column; ``neuroids_csv`` one row per neuron with ``neuroid_id``. ``bins``: edges/pairs, or a
    path to a .npy/.csv (columns ``time_bin_start, time_bin_end``) file. ``key`` picks the array in .npz/HDF5.
    """
    data = _read_array(Path(responses), key)
    stim = _read_csv(stimuli_csv, "stimuli")
    neur = _read_csv(neuroids_csv, "neuroids") if neuroids_csv is not None else None
    if isinstance(bins, str | os.PathLike):
        bpath = Path(bins)
        if bpath.suffix.lower() == ".csv":
            table = _read_csv(bpath, "bins")
            absent = [c for c in ("time_bin_start", "time_bin_end") if c not in table.columns]
            if absent:
                raise UserError(f"bins: {bpath} needs columns time_bin_start, time_bin_end (ms); missing {absent}, "
                                f"has {list(table.columns)}")
            bins = table[["time_bin_start", "time_bin_end"]].to_numpy()
        else:
            if not bpath.is_file():
                raise UserError(f"bins: {bpath} does not exist")
            try:
                bins = np.load(bpath)
            except (OSError, ValueError, EOFError) as exc:
                raise UserError(f"bins: cannot read {bpath} as a .npy array ({exc})") from None
    return from_arrays(data, stim, neur, bins, attrs=attrs)
