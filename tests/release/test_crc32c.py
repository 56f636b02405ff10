"""CRC-32C against published check values and a plain bit-by-bit reference."""

from __future__ import annotations

import numpy as np
import pytest

from convrnn.release.crc32c import crc32c, mask, unmask


def reference_crc32c(data: bytes) -> int:
    """The textbook bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_published_check_values():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC catalogue's check value for CRC-32C
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 (iSCSI) B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of 0xff
    assert crc32c(bytes(range(32))) == 0x46DD794E  # RFC 3720 B.4: incrementing 0..31
    assert crc32c(b"") == 0


@pytest.mark.parametrize("size", [1, 7, 4095, 4096, 4097, 65_537, 300_001])
def test_lane_parallel_equals_reference(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == reference_crc32c(data)


def test_mask_round_trip_and_tensorflow_value():
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(mask(value)) == value
    # TensorFlow's crc32c::Mask: rotate right by 15, add 0xa282ead8
    assert mask(0xE3069283) == ((((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
