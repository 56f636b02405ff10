"""convrnn.io: the atomic writers leave the old file or the new one, never a partial file or a stray temp file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convrnn.io import atomic_path, atomic_write_json


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".weights.bin.tmp.")
        assert not tmp.exists()
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["weights.bin"]


def test_atomic_path_creates(tmp_path: Path) -> None:
    target = tmp_path / "fresh.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("hello")
    assert target.read_text() == "hello"
    assert _names(tmp_path) == ["fresh.txt"]


def test_atomic_path_failure_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="download broke"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("download broke")
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["weights.bin"]


def test_atomic_path_failure_before_writing_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "never.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(target):
        raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_atomic_path_block_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["x.bin"]


def test_atomic_write_json_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    assert atomic_write_json(target, {"b": 1, "a": [1, 2]}, indent=2, sort_keys=True) == target
    text = target.read_text()
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [1, 2], "b": 1}
    atomic_write_json(target, {"c": 3})
    assert json.loads(target.read_text()) == {"c": 3}
    assert _names(target.parent) == ["result.json"]


def test_atomic_write_json_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": True}
    assert _names(tmp_path) == ["result.json"]
