"""Read TensorFlow "TensorBundle" checkpoints (``PREFIX.index`` + ``PREFIX.data-SSSSS-of-NNNNN``) without TensorFlow.

Why: the release's checkpoints were written by TensorFlow 1.13, which no current Python runs, and TensorFlow (the
usual reader) is a very large dependency for reading a few hundred megabytes of raw floats. We did not find a
maintained PyPI package that reads the format without TensorFlow; the format is small and has been stable since
TensorFlow 1.0, so we read it directly.

The format (TensorFlow's ``tensor_bundle`` and LevelDB-style ``table`` code; stable since TF 1.0):

- ``PREFIX.index`` is an immutable sorted table: data blocks of key/value entries (keys prefix-compressed,
  restart points at the end of each block), then a meta-index block, an index block (key → handle of a data
  block) and a 48-byte footer (two block handles as varints, padding, the magic 0xdb4775248b80fb57). Every
  block is followed by one compression byte (0 = none; bundles are never compressed) and the masked CRC-32C of
  the block plus that byte.
- The entry with the empty key is a ``BundleHeaderProto``: number of data shards, endianness (0 = little).
- Every other key is a tensor name, its value a ``BundleEntryProto``: dtype (field 1), shape (2), shard (3),
  byte offset (4) and size (5) in that shard, masked CRC-32C of the bytes (6), and slices (7) for partitioned
  variables (not used by the release and not supported here).
- ``PREFIX.data-SSSSS-of-NNNNN`` holds the raw tensor bytes in C order (row-major), little-endian.

Every block and every tensor read is checked against its CRC-32C; any inconsistency raises ``UserError`` naming
the file and the tensor.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convrnn.errors import UserError
from convrnn.release.crc32c import crc32c, unmask

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5

#: TensorFlow DataType enum → numpy dtype (little-endian); the numeric types a checkpoint can hold
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
    6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"), 17: np.dtype("<u2"), 19: np.dtype("<f2"),
    22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
               19: "float16", 22: "uint32", 23: "uint64"}


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives: ``shard``'s bytes [offset, offset + size), and its stored (unmasked) CRC-32C."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool = False

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype_code, f"dtype#{self.dtype_code}")


# ------------------------------------------------------------------------------------------ wire formats
def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise UserError(f"{where}: truncated or malformed varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes, where: str) -> list[tuple[int, int | bytes]]:
    """A protobuf message's (field number, value) pairs: ints for varint/fixed fields, bytes for the rest."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise UserError(f"{where}: truncated protobuf field {number}")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            if pos + length > len(buf):
                raise UserError(f"{where}: truncated protobuf field {number}")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise UserError(f"{where}: truncated protobuf field {number}")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise UserError(f"{where}: unsupported protobuf wire type {wire} (field {number})")
        fields.append((number, value))
    return fields


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_shape(buf: bytes, where: str) -> tuple[int, ...]:
    dims = []
    for number, value in _proto_fields(buf, where):
        if number == 2:
            size = 0
            for n, v in _proto_fields(value, where):
                if n == 1:
                    size = _int64(v)
            dims.append(size)
        elif number == 3 and value:
            raise UserError(f"{where}: tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes, where: str) -> BundleEntry:
    dtype = shard = offset = size = 0
    shape: tuple[int, ...] = ()
    crc: int | None = None
    sliced = False
    for number, value in _proto_fields(buf, where):
        if number == 1:
            dtype = value
        elif number == 2:
            shape = _parse_shape(value, where)
        elif number == 3:
            shard = value
        elif number == 4:
            offset = value
        elif number == 5:
            size = value
        elif number == 6:
            crc = unmask(value)
        elif number == 7:
            sliced = True
    return BundleEntry(name, int(dtype), shape, int(shard), int(offset), int(size), crc, sliced)


# ------------------------------------------------------------------------------------------- the table
def _read_block(data: bytes, offset: int, size: int, where: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or end > len(data):
        raise UserError(f"{where}: block [{offset}, {end}) lies outside the {len(data)}-byte file (truncated?)")
    contents = data[offset:offset + size]
    kind = data[offset + size]
    stored = unmask(struct.unpack_from("<I", data, offset + size + 1)[0])
    actual = crc32c(data[offset:offset + size + 1])
    if stored != actual:
        raise UserError(f"{where}: block at byte {offset} fails its checksum (stored crc32c {stored:#010x}, "
                        f"computed {actual:#010x}); the file is corrupt")
    if kind != 0:
        raise UserError(f"{where}: block at byte {offset} is compressed (type {kind}); "
                        "TensorFlow checkpoints are written uncompressed, so this is not a checkpoint index")
    return contents


def _block_entries(block: bytes, where: str) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise UserError(f"{where}: block of {len(block)} bytes is too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise UserError(f"{where}: block has a malformed restart array")
    entries, pos, key = [], 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        value_len, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise UserError(f"{where}: malformed block entry at byte {pos}")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _block_handle(buf: bytes, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, where)
    size, pos = _varint(buf, pos, where)
    return offset, size, pos


def read_index_table(path: Path) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of an index file, in key order, every block's CRC checked."""
    where = str(path)
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE:
        raise UserError(f"{where}: {len(data)} bytes is too short for a checkpoint index (truncated?)")
    footer = data[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0] != TABLE_MAGIC:
        raise UserError(f"{where}: not a TensorFlow checkpoint index (bad magic number; truncated or another "
                        "file type)")
    _, _, pos = _block_handle(footer, 0, where)  # meta-index: unused by bundles
    index_offset, index_size, _ = _block_handle(footer, pos, where)
    entries = []
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, where), where):
        offset, size, _ = _block_handle(handle, 0, where)
        entries.extend(_block_entries(_read_block(data, offset, size, where), where))
    return entries


# ----------------------------------------------------------------------------------------- the bundle
def resolve_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix for ``DIR/model.ckpt-NNN`` or one of its files (``.index``, ``.meta``, ``.data-*``)."""
    text = os.fspath(path)
    for suffix in (".index", ".meta"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    if ".data-" in Path(text).name:
        text = text[: text.rindex(".data-")]
    prefix = Path(text)
    if prefix.is_dir():
        found = sorted(p.name[: -len(".index")] for p in prefix.glob("*.index"))
        hint = (f"; it holds {', '.join(str(prefix / f) for f in found)}" if found else
                "; it holds no *.index file")
        raise UserError(f"{prefix}: is a directory; pass the checkpoint prefix (DIR/model.ckpt or "
                        f"DIR/model.ckpt-NNN){hint}")
    return prefix


class TensorBundle:
    """A checkpoint opened for reading: ``names()``, ``entry(name)``, ``read(name) -> np.ndarray``.

    Opening parses the index and checks that every data shard exists and is long enough for the tensors it
    should hold, so a missing or truncated file is reported before any tensor is read.
    """

    def __init__(self, prefix: str | os.PathLike) -> None:
        self.prefix = resolve_prefix(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        if not self.index_path.is_file():
            raise UserError(f"{self.index_path}: checkpoint index not found (checkpoint prefix {self.prefix})")
        where = str(self.index_path)
        self.num_shards = 1
        self.entries: dict[str, BundleEntry] = {}
        header_seen = False
        for key, value in read_index_table(self.index_path):
            if key == b"":
                header_seen = True
                for number, field_value in _proto_fields(value, where):
                    if number == 1:
                        self.num_shards = int(field_value)
                    elif number == 2 and field_value != 0:
                        raise UserError(f"{where}: big-endian checkpoints are not supported")
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{where}: tensor name {key!r} is not UTF-8") from exc
            self.entries[name] = _parse_entry(name, value, f"{where}: tensor {name!r}")
        if not header_seen:
            raise UserError(f"{where}: no bundle header (not a TensorFlow V2 checkpoint index)")
        self._check_shards()

    def data_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _check_shards(self) -> None:
        needed: dict[int, tuple[int, str]] = {}
        for entry in self.entries.values():
            if not 0 <= entry.shard < self.num_shards:
                raise UserError(f"{self.index_path}: tensor {entry.name!r} is in shard {entry.shard}, but the "
                                f"checkpoint has {self.num_shards} shard(s)")
            end = entry.offset + entry.size
            if end > needed.get(entry.shard, (-1, ""))[0]:
                needed[entry.shard] = (end, entry.name)
        for shard, (end, name) in sorted(needed.items()):
            path = self.data_path(shard)
            if not path.is_file():
                raise UserError(f"{path}: data shard missing (needed for tensor {name!r} and others listed in "
                                f"{self.index_path})")
            size = path.stat().st_size
            if size < end:
                raise UserError(f"{path}: truncated: {size} bytes, but tensor {name!r} ends at byte {end}")

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, name: str) -> BundleEntry:
        if name not in self.entries:
            raise UserError(f"{self.index_path}: no tensor {name!r} in this checkpoint")
        return self.entries[name]

    def read_bytes(self, name: str) -> bytes:
        """The tensor's raw bytes, checked against the stored CRC-32C."""
        entry = self.entry(name)
        path = self.data_path(entry.shard)
        with open(path, "rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) != entry.size:
            raise UserError(f"{path}: truncated: tensor {name!r} needs bytes [{entry.offset}, "
                            f"{entry.offset + entry.size}) but the file ends at byte {entry.offset + len(raw)}")
        if entry.crc32c is not None:
            actual = crc32c(raw)
            if actual != entry.crc32c:
                raise UserError(f"{path}: tensor {name!r} fails its checksum (stored crc32c {entry.crc32c:#010x}, "
                                f"computed {actual:#010x}); the file is corrupt")
        return raw

    def read(self, name: str) -> np.ndarray:
        """The tensor as a numpy array of its stored dtype and shape (C order, native byte order)."""
        entry = self.entry(name)
        if entry.sliced:
            raise UserError(f"{self.index_path}: tensor {name!r} is partitioned into slices; not supported")
        dtype = DTYPES.get(entry.dtype_code)
        if dtype is None:
            raise UserError(f"{self.index_path}: tensor {name!r} has dtype {entry.dtype_name}, which this "
                            "reader does not decode")
        count = int(np.prod(entry.shape, dtype=np.int64)) if entry.shape else 1
        if count * dtype.itemsize != entry.size:
            raise UserError(f"{self.index_path}: tensor {name!r}: {entry.size} bytes stored, but shape "
                            f"{list(entry.shape)} of {entry.dtype_name} needs {count * dtype.itemsize}")
        raw = self.read_bytes(name)
        return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=True)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry.shape for name, entry in self.entries.items()}

    def __repr__(self) -> str:
        return f"TensorBundle({str(self.prefix)!r}, {len(self.entries)} tensors, {self.num_shards} shard(s))"
