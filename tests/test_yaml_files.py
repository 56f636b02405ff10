"""convrnn.yaml_files: a bad YAML file is a user error that names the file (and the line), never a yaml traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from convrnn.errors import UserConfigError, UserError
from convrnn.yaml_files import load_yaml_mapping


def test_reads_a_mapping_and_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\nb: [x, y]\n")
    assert load_yaml_mapping(tmp_path / "a.yaml", "config") == {"a": 1, "b": ["x", "y"]}
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_yaml_mapping(tmp_path / "empty.yaml", "config") == {}


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}, line \d+, column \d+: search config is not "
                                        r"valid YAML: ") as exc:
        load_yaml_mapping(path, "search config")
    assert "line 1," not in str(exc.value)


def test_non_mapping_top_level_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: a model config must be a mapping, got list"):
        load_yaml_mapping(path, "model config")
    with pytest.raises(UserError, match="model config not found: .*nope.yaml"):
        load_yaml_mapping(tmp_path / "nope.yaml", "model config")


def test_error_factory_carries_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("key: : :\n")
    with pytest.raises(UserConfigError, match=rf"^trial.base_config: {re.escape(str(path))}, line 1") as exc:
        load_yaml_mapping(path, "train.py config", error=lambda m: UserConfigError("trial.base_config", m))
    assert exc.value.key == "trial.base_config"
