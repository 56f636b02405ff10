"""CRC-32C (Castagnoli), the checksum TensorFlow stores for every tensor and every table block of a checkpoint.

Why our own: the standard library only has CRC-32 (IEEE, a different polynomial), and a C-extension package
would be one more dependency for a few hundred megabytes checked once per import. A byte-at-a-time loop in
Python runs at a few MB/s; here the buffer is cut into many equal lanes whose CRCs are computed side by side
with numpy table lookups (about 100 MB/s on one core), then combined exactly: the CRC register is linear over
GF(2), so ``crc(A + B) = Z_len(B)(crc(A)) ^ crc(B)`` for the register without its initial value and final
xor, where ``Z_n`` (the effect of ``n`` zero bytes) is a 32×32 bit matrix.

TensorFlow stores "masked" CRCs (``mask``/``unmask``) so that a CRC of data containing CRCs stays robust.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np

POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_LANES = 1 << 14  # lanes processed side by side (a power of two, for the pairwise combine)
_SMALL = 4096  # below this many bytes a plain table loop is faster than setting up lanes


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
        table[i] = c
    return table


TABLE = _make_table()
_TABLE_LIST = [int(v) for v in TABLE]


def _raw_small(data: memoryview | bytes, crc: int = 0) -> int:
    """The bare register (no initial value, no final xor) after feeding ``data`` to ``crc``."""
    table = _TABLE_LIST
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


# ----------------------------------------------------------------------------------- GF(2) bit matrices
# A matrix is a tuple of 32 ints: column b is the image of the register with only bit b set.
def _mat_times(mat: tuple[int, ...], vec: int) -> int:
    out, b = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[b]
        vec >>= 1
        b += 1
    return out


def _mat_square(mat: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_mat_times(mat, mat[b]) for b in range(32))


@cache
def _zero_bits_operator(power_of_two: int) -> tuple[int, ...]:
    """Z for 2**power_of_two zero *bits*."""
    if power_of_two == 0:
        return (POLY,) + tuple(1 << (b - 1) for b in range(1, 32))
    return _mat_square(_zero_bits_operator(power_of_two - 1))


@lru_cache(maxsize=4096)
def _zero_bytes_operator(n: int) -> tuple[int, ...]:
    """Z_n: the register's change over ``n`` zero bytes, as a bit matrix (square-and-multiply over bits)."""
    bits, k = 8 * n, 0
    result = tuple(1 << b for b in range(32))  # identity
    while bits:
        if bits & 1:
            op = _zero_bits_operator(k)
            result = tuple(_mat_times(op, result[b]) for b in range(32))
        bits >>= 1
        k += 1
    return result


def shift(crc: int, n: int) -> int:
    """Advance a bare register over ``n`` zero bytes."""
    return _mat_times(_zero_bytes_operator(n), crc) if n else crc


def _apply_vectorized(mat: tuple[int, ...], values: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values)
    for b in range(32):
        out ^= np.where((values >> np.uint32(b)) & np.uint32(1), np.uint32(mat[b]), np.uint32(0))
    return out


def _raw(data: np.ndarray) -> int:
    """Bare register of ``data`` (uint8, 1-D) started from zero."""
    n = data.size
    if n < _SMALL:
        return _raw_small(data.tobytes())
    lanes = _LANES
    while lanes > 1 and n // lanes < 64:
        lanes //= 2
    length = n // lanes
    body = data[: lanes * length].reshape(lanes, length).T  # [length, lanes]: row j = byte j of every lane
    body = np.ascontiguousarray(body)
    crc = np.zeros(lanes, dtype=np.uint32)
    eight = np.uint32(8)
    for j in range(length):
        crc = TABLE[(crc ^ body[j]) & 0xFF] ^ (crc >> eight)
    # combine neighbouring lanes pairwise: every lane at one level has the same length
    span = length
    while crc.size > 1:
        crc = _apply_vectorized(_zero_bytes_operator(span), crc[0::2]) ^ crc[1::2]
        span *= 2
    result = int(crc[0])
    rest = data[lanes * length:]
    if rest.size:
        result = shift(result, rest.size) ^ _raw(rest)
    return result


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The standard CRC-32C of ``data`` (initial value and final xor 0xFFFFFFFF); crc32c(b"123456789") = 0xE3069283."""
    array = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(
        np.uint8)
    n = array.size
    return (shift(0xFFFFFFFF, n) ^ _raw(array)) ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """TensorFlow's masked form of a CRC (what checkpoints store)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
