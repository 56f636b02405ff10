"""Neural assemblies: brainio netCDF files in and out, plus a plain NumPy/HDF5 route.

Why our own reader: brainio pulls in netCDF4, boto3 and an S3 catalogue; we only need its file format
(described in ``docs/neural.md``, "Data in"). Files are read and written with xarray's ``h5netcdf`` engine, which
writes netCDF-4 files that brainio's ``xr.open_dataarray`` (netCDF4 engine) loads.

In memory an assembly is a plain :class:`xarray.DataArray` with dims ``presentation``, ``neuroid`` and optionally
``time_bin``; like brainio's ``gather_indexes``, every coordinate on a dim becomes a level of a pandas MultiIndex
named after the dim, so ``assembly.sel(region="IT")`` works. Scoring code does not work on the xarray object
directly: :func:`trial_array` turns it into a dense ``[repetition, stimulus, neuroid, bin]`` array (NaN = missing
trial) once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from convrnn.errors import UserError

__all__ = [
    "TrialData",
    "average_repetitions",
    "check_time_bins",
    "check_trials",
    "from_arrays",
    "gather_indexes",
    "load_assembly",
    "load_plain",
    "merge_stimulus_set",
    "save_assembly",
    "trial_array",
]

logger = logging.getLogger(__name__)

NEUROID_DIMS = ({"presentation", "neuroid"}, {"presentation", "neuroid", "time_bin"})
_DATA_VARIABLES = ("data", "__xarray_dataarray_variable__")
_NETCDF_INTERNAL_ATTRS = {"_NCProperties", "coordinates", "_FillValue", "DIMENSION_LIST", "_Netcdf4Dimid"}


def _preview(values: Sequence[Any], limit: int = 10) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", ... ({len(values)} in total)" if len(values) > limit else ""
    return f"[{shown}{more}]"


# ----------------------------------------------------------------------------------------------------------------
# indexes


def gather_indexes(assembly: xr.DataArray) -> xr.DataArray:
    """Make every coordinate on a dim a level of that dim's MultiIndex (brainio's ``gather_indexes``).

    Unlike ``set_index(append=True)`` this also builds a (one-level) MultiIndex when a dim has a single coordinate,
    so the coordinate keeps its own name (e.g. ``stimulus_id``) instead of being renamed to the dim.
    """
    result = assembly
    for dim in assembly.dims:
        if dim in result.indexes:
            index = result.indexes[dim]
            if isinstance(index, pd.MultiIndex):
                result = result.reset_index(dim)
            else:  # a plain dimension coordinate: keep its values as a level named "<dim>_value"
                result = result.drop_vars(dim).assign_coords({f"{dim}_value": (dim, np.asarray(index))})
        names = [name for name, coord in result.coords.items() if coord.dims == (dim,) and name != dim]
        if not names:
            continue
        arrays = [result.coords[name].values for name in names]
        multi = pd.MultiIndex.from_arrays(arrays, names=names)
        # xarray < 2023.8 (the Brain-Score environment's) has no Coordinates.from_pandas_multiindex
        coords = xr.Coordinates.from_pandas_multiindex(multi, dim) if hasattr(xr, "Coordinates") else {dim: multi}
        result = result.drop_vars(names).assign_coords(coords)
    return result


def _reset_indexes(assembly: xr.DataArray) -> xr.DataArray:
    """Plain 1-D coordinates only (what netCDF can store and what brainio writes)."""
    result = assembly
    if result.indexes:
        result = result.reset_index(list(result.indexes))
    return result.drop_vars([d for d in result.dims if d in result.coords])


def _num(value: float) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else value


def check_time_bins(starts: Sequence[float], ends: Sequence[float]) -> np.ndarray:
    """Validate time bins given in any order; return the index order that sorts them by start.

    Raises :class:`UserError` naming the offending bins when a bin is empty (end <= start), occurs twice (the same
    (start, end) pair), or overlaps its neighbour once sorted. Why no "must be sorted": nothing needs the stored
    order, so callers sort the bins (and the data with them) with the returned order.
    """
    starts = np.asarray(starts, dtype=float)
    ends = np.asarray(ends, dtype=float)
    if starts.shape != ends.shape:
        raise UserError(f"time bins: {starts.size} starts but {ends.size} ends")
    pairs = [(_num(s), _num(e)) for s, e in zip(starts, ends, strict=True)]
    empty = [pair for pair in pairs if not pair[1] > pair[0]]
    if empty:
        raise UserError(f"time bins must have end > start; offending bins (start, end): {_preview(empty)}")
    counts = pd.Series(pairs, dtype=object).value_counts(sort=False)
    duplicated = [pair for pair, n in counts.items() if n > 1]
    if duplicated:
        raise UserError(f"time bins must be unique; bins (start, end) given more than once: {_preview(duplicated)}")
    order = np.lexsort((ends, starts))  # by start, then end
    s, e = starts[order], ends[order]
    overlap = [(pairs[order[i]], pairs[order[i + 1]]) for i in range(len(order) - 1) if s[i + 1] < e[i]]
    if overlap:
        raise UserError(f"time bins overlap; offending neighbours (start, end): {_preview(overlap)}")
    return order


# ----------------------------------------------------------------------------------------------------------------
# reading


def _list_groups(path: str | os.PathLike) -> list[str]:
    import h5netcdf

    with h5netcdf.File(path, "r") as f:
        return list(f.groups)


def _unreadable(path: str | os.PathLike, exc: BaseException) -> UserError:
    """The error for a file that h5py/h5netcdf cannot open: names the file, says it is damaged or not HDF5."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"{path}: cannot read this file; it is damaged (e.g. truncated by an interrupted copy) or not "
                     f"a netCDF-4/HDF5 file ({type(exc).__name__}: {reason})")


def _open_dataarray(path: str | os.PathLike, group: str | None = None) -> xr.DataArray:
    with xr.open_dataset(path, engine="h5netcdf", group=group, phony_dims="sort") as ds:
        names = list(ds.data_vars)
        name = next((n for n in _DATA_VARIABLES if n in names), None)
        if name is None:
            if len(names) != 1:
                raise UserError(
                    f"{path}: expected one data variable named 'data' or '__xarray_dataarray_variable__', "
                    f"found {names}"
                )
            name = names[0]
        da = ds[name].load()
        attrs = {k: v for k, v in ds.attrs.items() if k not in _NETCDF_INTERNAL_ATTRS}
    attrs.update({k: v for k, v in da.attrs.items() if k not in _NETCDF_INTERNAL_ATTRS})
    da.attrs = attrs
    da.name = None if name == "__xarray_dataarray_variable__" else name
    return da


def load_assembly(
    path: str | os.PathLike, stimulus_set: pd.DataFrame | None = None, *, gather: bool = True
) -> xr.DataArray:
    """Read a brainio assembly file (netCDF-4) into an indexed DataArray.

    * Accepts the data variable ``data`` (current writer) or ``__xarray_dataarray_variable__`` (legacy).
    * Legacy ``image_id`` is copied into ``stimulus_id``.
    * Time bins are checked (non-empty, unique, non-overlapping; any order: :func:`trial_array` sorts them).
    * A file h5netcdf cannot open (truncated, not HDF5) raises :class:`UserError` naming it.
    * ``stimulus_set`` (from :func:`convrnn.neural.load_stimulus_set`) is left-joined onto ``presentation`` by
      ``stimulus_id``; ids missing from it raise ``KeyError``.
    * Files that are not NeuroidAssemblies (e.g. brainio's SpikeTimesAssembly with dim ``event``) are returned
      with their own dims; netCDF groups (extra metadata) are loaded into ``attrs[group_name]`` as DataArrays.
      ``attrs["assembly_type"]`` says which kind was found.
    """
    try:
        da = _open_dataarray(path)
        groups = _list_groups(path)
    except UserError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # h5py/h5netcdf on a truncated or foreign file
        raise _unreadable(path, exc) from None
    if "image_id" in da.coords and "stimulus_id" not in da.coords:
        da = da.assign_coords(stimulus_id=da.coords["image_id"])
    for group in groups:
        try:
            meta = _open_dataarray(path, group=group)
            da.attrs[group] = gather_indexes(meta) if gather else meta
        except Exception as exc:  # brainio also tolerates unreadable groups, with a warning
            logger.warning("%s: group %r is not loadable as a metadata assembly (%s)", path, group, exc)
    dims = set(da.dims)
    if dims in NEUROID_DIMS:
        da.attrs["assembly_type"] = "NeuroidAssembly"
        if "time_bin_start" in da.coords and "time_bin_end" in da.coords:
            check_time_bins(da["time_bin_start"].values, da["time_bin_end"].values)  # stored order kept here
    elif dims == {"event"}:
        da.attrs["assembly_type"] = "SpikeTimesAssembly"
        logger.info("%s is a SpikeTimesAssembly (dim 'event'), not a NeuroidAssembly; returned as is", path)
    else:
        da.attrs["assembly_type"] = "DataAssembly"
        logger.info("%s has dims %s, not a NeuroidAssembly; returned as is", path, sorted(dims))
    if stimulus_set is not None:
        da = merge_stimulus_set(da, stimulus_set, gather=False)
    return gather_indexes(da) if gather else da


def merge_stimulus_set(
    assembly: xr.DataArray, stimulus_set: pd.DataFrame, *, gather: bool = True
) -> xr.DataArray:
    """Left-join stimulus-set columns onto ``presentation`` by ``stimulus_id`` (brainio's StimulusMergeLoader).

    Columns the assembly already has are kept as they are. Raises :class:`UserError` naming the stimulus ids that
    the stimulus set lacks. The DataFrame is kept in ``attrs["stimulus_set"]`` (dropped when saving).
    """
    plain = _reset_indexes(assembly)
    if "stimulus_id" not in plain.coords:
        raise UserError("assembly has no 'stimulus_id' (or legacy 'image_id') coordinate on presentation")
    ids = pd.Index(stimulus_set["stimulus_id"].astype(str))
    if ids.has_duplicates:
        raise UserError(f"stimulus set has duplicate stimulus_id values: {_preview(ids[ids.duplicated()].unique())}")
    wanted = pd.Index(np.asarray(plain["stimulus_id"].values).astype(str))
    missing = wanted.unique().difference(ids)
    if len(missing):
        raise UserError(f"{len(missing)} stimulus ids of the assembly are missing from the stimulus set: "
                       f"{_preview(sorted(missing))}")
    table = stimulus_set.set_index(ids)
    for column in stimulus_set.columns:
        if column in plain.coords or column in ("stimulus_id", "image_path"):
            continue
        plain = plain.assign_coords({column: ("presentation", table[column].reindex(wanted).to_numpy())})
    plain.attrs["stimulus_set"] = stimulus_set
    return gather_indexes(plain) if gather else plain


# ----------------------------------------------------------------------------------------------------------------
# writing


def _serialisable_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, xr.DataArray]]:
    keep, groups = {}, {}
    for key, value in attrs.items():
        if isinstance(value, xr.DataArray):
            groups[key] = value
        elif value is None or isinstance(value, pd.DataFrame | xr.Dataset | dict | list | tuple | set):
            continue
        elif isinstance(value, bool | np.bool_):
            keep[key] = int(value)
        else:
            keep[key] = value
    return keep, groups


def _to_netcdf_dataset(assembly: xr.DataArray, attrs: Mapping[str, Any]) -> xr.Dataset:
    plain = _reset_indexes(assembly).copy(deep=False)  # new Variables: never touch the caller's attrs
    plain.attrs = dict(attrs)
    for name in list(plain.coords):
        values = plain.coords[name].values
        if values.dtype == object:  # netCDF stores these as variable-length strings
            plain = plain.assign_coords({name: (plain.coords[name].dims, values.astype(str).astype(object))})
    ds = plain.to_dataset(name="data", promote_attrs=False)
    ds.attrs = dict(attrs)  # global attributes too (the brainio spec asks for identifier at file level)
    return ds


def save_assembly(
    assembly: xr.DataArray,
    path: str | os.PathLike,
    *,
    identifier: str,
    stimulus_set_identifier: str,
    extras: Mapping[str, xr.DataArray] | None = None,
    complevel: int = 9,
) -> Path:
    """Write ``assembly`` as a brainio netCDF-4 file, atomically (temp file + ``os.replace``).

    MultiIndexes are reset to plain coordinates, the values go in one variable named ``data`` (zlib), and attrs
    ``identifier`` / ``stimulus_set_identifier`` are set on the variable (what brainio's reader returns as
    ``attrs``) and globally. Attributes that netCDF cannot hold (DataFrames, None, dicts) are dropped;
    DataArray attributes and ``extras`` are written as netCDF groups (brainio's metadata assemblies).
    """
    path = Path(path)
    attrs, groups = _serialisable_attrs(assembly.attrs)
    attrs.pop("assembly_type", None)
    attrs.update(identifier=identifier, stimulus_set_identifier=stimulus_set_identifier)
    groups.update(extras or {})
    ds = _to_netcdf_dataset(assembly, attrs)
    encoding = {name: {"zlib": True, "complevel": complevel} for name in ds.variables}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, mode="w", engine="h5netcdf", encoding=encoding)
        for name, extra in groups.items():
            group_attrs, _ = _serialisable_attrs(extra.attrs)
            gds = _to_netcdf_dataset(extra, group_attrs)
            genc = {v: {"zlib": True, "complevel": complevel} for v in gds.variables}
            gds.to_netcdf(tmp, mode="a", group=name, engine="h5netcdf", encoding=genc)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


# ----------------------------------------------------------------------------------------------------------------
# plain arrays


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
        raise UserError(f"duplicate {id_column} values: {_preview(dup.unique())}")
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
    NaN here and are averaged out by :func:`trial_array` / :func:`average_repetitions`.
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


# ----------------------------------------------------------------------------------------------------------------
# dense views for scoring


@dataclass
class TrialData:
    """Dense view of an assembly, built once for scoring.

    ``trials[r, s, n, b]``: repetition r (sorted unique ``repetition`` values, or order of appearance),
    stimulus s (sorted unique ``stimulus_id``), neuroid n (assembly order), bin b (sorted). NaN = missing trial.
    """

    trials: np.ndarray
    stimulus_ids: np.ndarray
    stimuli: pd.DataFrame  # one row per stimulus: presentation coords constant within a stimulus
    neuroids: pd.DataFrame  # one row per neuroid: all neuroid coords
    bins: np.ndarray | None  # [B, 2] (start, end) ms, or None without a time_bin dim
    n_missing: int  # NaN trial values (absent (stimulus, repetition) pairs included)

    def mean(self) -> np.ndarray:
        """Trial average ``[S, N, B]`` ignoring NaNs (missing trials); computed bin by bin to bound memory."""
        out = np.empty(self.trials.shape[1:], dtype=self.trials.dtype)
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            for b in range(self.trials.shape[-1]):
                out[..., b] = np.nanmean(self.trials[..., b], axis=0)
        return out


class _quiet_nanmean:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _coord_frame(assembly: xr.DataArray, dim: str) -> pd.DataFrame:
    plain = _reset_indexes(assembly)
    names = [name for name, c in plain.coords.items() if c.dims == (dim,)]
    return pd.DataFrame({name: plain.coords[name].values for name in names})


def trial_array(assembly: xr.DataArray) -> TrialData:
    """Reshape a (presentation, neuroid[, time_bin]) assembly into ``[repetition, stimulus, neuroid, bin]``.

    Bins are sorted by start (the data with them). Raises :class:`UserError` naming duplicates when a
    (stimulus_id, repetition) pair occurs twice, and naming bins that are empty, duplicated or overlap. Absent
    (stimulus, repetition) pairs become NaN; the NaN count is logged and returned. :func:`check_trials` says
    whether the result can be scored.
    """
    if "presentation" not in assembly.dims or "neuroid" not in assembly.dims:
        raise UserError(f"expected dims presentation, neuroid(, time_bin); got {assembly.dims}")
    pres = _coord_frame(assembly, "presentation")
    if "stimulus_id" not in pres.columns:
        if "image_id" in pres.columns:
            pres["stimulus_id"] = pres["image_id"]
        else:
            raise UserError("assembly needs a 'stimulus_id' coordinate on presentation")
    neur = _coord_frame(assembly, "neuroid")
    has_time = "time_bin" in assembly.dims
    order = ["presentation", "neuroid"] + (["time_bin"] if has_time else [])
    values = np.asarray(assembly.transpose(*order).values)
    if not has_time:
        values = values[..., None]
        bins = None
    else:
        tb = _coord_frame(assembly, "time_bin")
        if {"time_bin_start", "time_bin_end"} <= set(tb.columns):
            starts, ends = tb["time_bin_start"].to_numpy(), tb["time_bin_end"].to_numpy()
            sort = check_time_bins(starts, ends)
            values = values[..., sort]
            bins = np.stack([starts[sort], ends[sort]], axis=1)
        else:
            bins = None
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    stim_codes, stimulus_ids = pd.factorize(pres["stimulus_id"].astype(str), sort=True)
    if "repetition" in pres.columns:
        rep_codes, _ = pd.factorize(pres["repetition"], sort=True)
    else:
        rep_codes = pres.groupby(stim_codes).cumcount().to_numpy()
    pairs = pd.Series(list(zip(stim_codes, rep_codes, strict=True)))
    dup = pairs.duplicated()
    if dup.any():
        bad = [(str(stimulus_ids[s]), int(r)) for s, r in pairs[dup].unique()]
        raise UserError(f"(stimulus_id, repetition) pairs occur more than once: {_preview(bad)}")
    n_rep, n_stim = int(rep_codes.max()) + 1, len(stimulus_ids)
    trials = np.full((n_rep, n_stim) + values.shape[1:], np.nan, dtype=values.dtype)
    trials[rep_codes, stim_codes] = values
    n_missing = int(np.isnan(trials).sum())
    if n_missing:
        logger.info("%d missing trial values (NaN); averaged out with a NaN-mean", n_missing)
    first = pd.Series(np.arange(len(pres))).groupby(stim_codes).first().to_numpy()
    stim_cols = [c for c in pres.columns if c != "repetition" and
                 pres.groupby(stim_codes)[c].nunique(dropna=False).max() <= 1]
    stimuli = pres.iloc[first][stim_cols].reset_index(drop=True)
    stimuli["stimulus_id"] = np.asarray(stimulus_ids)
    return TrialData(
        trials=trials,
        stimulus_ids=np.asarray(stimulus_ids),
        stimuli=stimuli,
        neuroids=neur,
        bins=bins,
        n_missing=n_missing,
    )


def check_trials(td: TrialData, *, min_repetitions: int = 2) -> None:
    """Raise :class:`UserError` unless ``td`` can be scored: what scoring would find only after the model ran.

    * At least ``min_repetitions`` (2) repetitions, and at least two stimuli with two repetitions each: split-half
      ceilings correlate the averages of two halves of the repetitions across stimuli.
    * Every (stimulus, neuroid, bin) has at least one valid (non-NaN) trial: the map's target is the trial average.

    Why here: ``fit_neural.py`` calls it right after loading the data, before the model runs (minutes on a real set).
    """
    n_rep, n_stim = td.trials.shape[:2]
    if n_rep < min_repetitions:
        raise UserError(f"split-half ceilings need at least {min_repetitions} repetitions per stimulus; the data "
                        f"have {n_rep} (repetitions come from a 'repetition' coordinate, or from a stimulus_id "
                        "presented more than once)")
    present = np.zeros((n_rep, n_stim), dtype=bool)  # a repetition of a stimulus with any valid value
    empty = np.zeros(td.trials.shape[1:], dtype=bool)  # [S, N, B]: no valid trial
    for b in range(td.trials.shape[-1]):  # bin by bin: temporaries stay at [reps, stimuli, neuroids]
        valid = ~np.isnan(td.trials[..., b])
        present |= valid.any(axis=2)
        empty[..., b] = ~valid.any(axis=0)
    repeated = int((present.sum(axis=0) >= min_repetitions).sum())
    if repeated < 2:
        raise UserError(f"only {repeated} stimulus/stimuli have {min_repetitions} or more repetitions with data; "
                        "split-half ceilings need at least two")
    if empty.any():
        where = np.argwhere(empty)
        ids = td.neuroids["neuroid_id"].astype(str).to_numpy() if "neuroid_id" in td.neuroids.columns else None
        examples = []
        for s, n, b in where[:5]:
            neuroid = ids[n] if ids is not None else f"#{n}"
            bin_ = f"{_num(td.bins[b, 0])}-{_num(td.bins[b, 1])} ms" if td.bins is not None else f"#{b}"
            examples.append(f"(stimulus {td.stimulus_ids[s]!r}, neuroid {neuroid!r}, bin {bin_})")
        stimuli = np.unique(where[:, 0])
        raise UserError(f"{len(where)} (stimulus, neuroid, bin) entries have no valid trial (every repetition is "
                        f"NaN or absent), in {len(stimuli)} stimuli, e.g. {', '.join(examples)}; the trial average "
                        "there is undefined: drop those stimuli or neuroids, or fill the trials")


def average_repetitions(assembly: xr.DataArray) -> xr.DataArray:
    """NaN-mean over repetitions: one presentation per stimulus (stimulus-level coords kept).

    The number of missing trial values is logged and stored in ``attrs["n_missing_trials"]``.
    """
    td = trial_array(assembly)
    mean = td.mean()
    coords: dict[str, Any] = {c: ("presentation", td.stimuli[c].to_numpy()) for c in td.stimuli.columns}
    coords.update({c: ("neuroid", td.neuroids[c].to_numpy()) for c in td.neuroids.columns})
    dims = ["presentation", "neuroid", "time_bin"]
    if "time_bin" in assembly.dims:
        if td.bins is not None:
            coords["time_bin_start"] = ("time_bin", td.bins[:, 0])
            coords["time_bin_end"] = ("time_bin", td.bins[:, 1])
    else:
        mean = mean[..., 0]
        dims = dims[:2]
    attrs = {k: v for k, v in assembly.attrs.items()}
    attrs["n_missing_trials"] = td.n_missing
    return gather_indexes(xr.DataArray(mean, dims=dims, coords=coords, attrs=attrs))
