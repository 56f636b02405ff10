"""The TensorBundle reader against checkpoints written by real TensorFlow, and its errors on damaged files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from convrnn.errors import UserError
from convrnn.release.tensorbundle import TensorBundle, resolve_prefix

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())


def manifest(name: str) -> dict:
    return json.loads((FIXTURES / name / "manifest.json").read_text())


def prefix(name: str) -> Path:
    return FIXTURES / name / manifest(name)["checkpoint"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_reader_returns_what_tensorflow_wrote(name):
    """Every tensor: same names, dtypes and shapes as TF's reader, and the same bytes (SHA-256 of TF's values)."""
    expected = manifest(name)["tensors"]
    bundle = TensorBundle(prefix(name))
    assert bundle.names() == sorted(expected)
    for tensor, info in expected.items():
        value = bundle.read(tensor)
        assert value.dtype.name == info["dtype"], tensor
        assert list(value.shape) == info["shape"], tensor
        assert hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() == info["sha256"], tensor


def test_sample_values_equal_tensorflow_arrays():
    for name in ("rgc_intermediate_tmaxconf", "lstm_shallow"):
        bundle = TensorBundle(prefix(name))
        stored = np.load(FIXTURES / name / "ops.npz")
        for key in manifest(name)["samples"]:
            np.testing.assert_array_equal(bundle.read(key.split(":", 1)[1]), stored[key])


def test_scalar_int64_and_prefix_forms():
    bundle = TensorBundle(prefix("rgc_intermediate_tmaxconf"))
    assert bundle.read("global_step").item() == 1000 and bundle.entry("global_step").dtype_name == "int64"
    for form in (f"{prefix('lstm_shallow')}.index", f"{prefix('lstm_shallow')}.data-00000-of-00001",
                 f"{prefix('lstm_shallow')}.meta"):
        assert resolve_prefix(form) == prefix("lstm_shallow")


def test_directory_names_the_checkpoints_inside():
    with pytest.raises(UserError, match=r"is a directory.*model\.ckpt-1000"):
        TensorBundle(FIXTURES / "rgc_intermediate_tmaxconf")


def test_missing_index(tmp_path):
    with pytest.raises(UserError, match=r"model\.ckpt\.index: checkpoint index not found"):
        TensorBundle(tmp_path / "model.ckpt")


def test_missing_data_shard(fixture_copy):
    p = fixture_copy("lstm_shallow")
    os.remove(f"{p}.data-00000-of-00001")
    with pytest.raises(UserError, match=r"model\.ckpt\.data-00000-of-00001: data shard missing.*tensor 'tnn_model/"):
        TensorBundle(p)


def test_truncated_data_file(fixture_copy):
    p = fixture_copy("lstm_shallow")
    data = f"{p}.data-00000-of-00001"
    os.truncate(data, os.path.getsize(data) - 10)
    with pytest.raises(UserError, match=r"data-00000-of-00001: truncated: .* but tensor 'tnn_model/[^']+' ends"):
        TensorBundle(p)


def test_truncated_index(fixture_copy):
    p = fixture_copy("lstm_shallow")
    index = f"{p}.index"
    os.truncate(index, os.path.getsize(index) - 7)
    with pytest.raises(UserError, match=r"model\.ckpt\.index: not a TensorFlow checkpoint index"):
        TensorBundle(p)


def test_wrong_crc_in_data_names_file_and_tensor(fixture_copy):
    p = fixture_copy("lstm_shallow")
    bundle = TensorBundle(p)
    victim = "tnn_model/conv4/ConvLSTMCell/peepholes/w_f_diag"
    entry = bundle.entry(victim)
    data = f"{p}.data-00000-of-00001"
    with open(data, "r+b") as f:  # flip one bit in the middle of that tensor
        f.seek(entry.offset + entry.size // 2)
        byte = f.read(1)
        f.seek(entry.offset + entry.size // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(UserError, match=rf"data-00000-of-00001: tensor '{victim}' fails its checksum"):
        TensorBundle(p).read(victim)
    TensorBundle(p).read("tnn_model/conv4/ConvLSTMCell/weights")  # other tensors still read


def test_wrong_crc_in_index_block(fixture_copy):
    p = fixture_copy("lstm_shallow")
    index = f"{p}.index"
    with open(index, "r+b") as f:  # a byte inside the first data block (tensor names live there)
        f.seek(20)
        byte = f.read(1)
        f.seek(20)
        f.write(bytes([byte[0] ^ 0x20]))
    with pytest.raises(UserError, match=r"model\.ckpt\.index: block at byte 0 fails its checksum"):
        TensorBundle(p)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "model.ckpt.index").write_bytes(b"x" * 100)
    with pytest.raises(UserError, match="bad magic number"):
        TensorBundle(tmp_path / "model.ckpt")
