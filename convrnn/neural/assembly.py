"""Neural assemblies: brainio netCDF files in and out, and the index and time-bin helpers they share.

Why our own reader: brainio pulls in netCDF4, boto3 and an S3 catalogue; we only need its file format
(described in ``docs/neural.md``, "Data in"). Files are read and written with xarray's ``h5netcdf`` engine, which
writes netCDF-4 files that brainio's ``xr.open_dataarray`` (netCDF4 engine) loads.

In memory an assembly is a plain :class:`xarray.DataArray` with dims ``presentation``, ``neuroid`` and optionally
``time_bin``; like brainio's ``gather_indexes``, every coordinate on a dim becomes a level of a pandas MultiIndex
named after the dim, so ``assembly.sel(region="IT")`` works. Scoring code does not work on the xarray object
directly: :func:`convrnn.neural.trials.trial_array` turns it into a dense ``[repetition, stimulus, neuroid, bin]``
array (NaN = missing trial) once. The plain NumPy/HDF5 route (``from_arrays``, ``load_plain``) is
:mod:`convrnn.neural.plain`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from convrnn.errors import UserError
from convrnn.io import atomic_path

__all__ = [
    "NEUROID_DIMS",
    "check_time_bins",
    "gather_indexes",
    "load_assembly",
    "merge_stimulus_set",
    "plain_number",
    "preview",
    "reset_indexes",
    "save_assembly",
]

logger = logging.getLogger(__name__)

NEUROID_DIMS = ({"presentation", "neuroid"}, {"presentation", "neuroid", "time_bin"})
_DATA_VARIABLES = ("data", "__xarray_dataarray_variable__")
_NETCDF_INTERNAL_ATTRS = {"_NCProperties", "coordinates", "_FillValue", "DIMENSION_LIST", "_Netcdf4Dimid"}


def preview(values: Sequence[Any], limit: int = 10) -> str:
    """The first ``limit`` values for an error message, with the total when there are more."""
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


def reset_indexes(assembly: xr.DataArray) -> xr.DataArray:
    """Plain 1-D coordinates only (what netCDF can store and what brainio writes)."""
    result = assembly
    if result.indexes:
        result = result.reset_index(list(result.indexes))
    return result.drop_vars([d for d in result.dims if d in result.coords])


def plain_number(value: float) -> float | int:
    """``value`` as an int when it is whole (bin edges print as ``70``, not ``70.0``, in messages)."""
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
    pairs = [(plain_number(s), plain_number(e)) for s, e in zip(starts, ends, strict=True)]
    empty = [pair for pair in pairs if not pair[1] > pair[0]]
    if empty:
        raise UserError(f"time bins must have end > start; offending bins (start, end): {preview(empty)}")
    counts = pd.Series(pairs, dtype=object).value_counts(sort=False)
    duplicated = [pair for pair, n in counts.items() if n > 1]
    if duplicated:
        raise UserError(f"time bins must be unique; bins (start, end) given more than once: {preview(duplicated)}")
    order = np.lexsort((ends, starts))  # by start, then end
    s, e = starts[order], ends[order]
    overlap = [(pairs[order[i]], pairs[order[i + 1]]) for i in range(len(order) - 1) if s[i + 1] < e[i]]
    if overlap:
        raise UserError(f"time bins overlap; offending neighbours (start, end): {preview(overlap)}")
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
    * Time bins are checked (non-empty, unique, non-overlapping; any order:
      :func:`convrnn.neural.trials.trial_array` sorts them).
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
    plain = reset_indexes(assembly)
    if "stimulus_id" not in plain.coords:
        raise UserError("assembly has no 'stimulus_id' (or legacy 'image_id') coordinate on presentation")
    ids = pd.Index(stimulus_set["stimulus_id"].astype(str))
    if ids.has_duplicates:
        raise UserError(f"stimulus set has duplicate stimulus_id values: {preview(ids[ids.duplicated()].unique())}")
    wanted = pd.Index(np.asarray(plain["stimulus_id"].values).astype(str))
    missing = wanted.unique().difference(ids)
    if len(missing):
        raise UserError(f"{len(missing)} stimulus ids of the assembly are missing from the stimulus set: "
                       f"{preview(sorted(missing))}")
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
    plain = reset_indexes(assembly).copy(deep=False)  # new Variables: never touch the caller's attrs
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
    """Write ``assembly`` as a brainio netCDF-4 file, atomically (:func:`convrnn.io.atomic_path`: a temp file
    beside ``path``, fsynced and ``os.replace``d; h5netcdf writes to a path, and appends the groups by reopening it).

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
    with atomic_path(path) as tmp:  # fsync + os.replace on success, temp file removed on error
        ds.to_netcdf(tmp, mode="w", engine="h5netcdf", encoding=encoding)
        for name, extra in groups.items():
            group_attrs, _ = _serialisable_attrs(extra.attrs)
            gds = _to_netcdf_dataset(extra, group_attrs)
            genc = {v: {"zlib": True, "complevel": complevel} for v in gds.variables}
            gds.to_netcdf(tmp, mode="a", group=name, engine="h5netcdf", encoding=genc)
    return path
