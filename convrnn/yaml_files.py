"""Reading a user's YAML file (model graphs, search configs, the train config a search starts from).

Why one home: each reader used to call ``yaml.safe_load`` itself, and one of them let a malformed file escape as
a raw ``yaml.ParserError`` traceback instead of a user error. Here every failure is a
:class:`convrnn.errors.UserError` (exit 2, no traceback) that names the file and, for a syntax error, the line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from convrnn.errors import UserError

__all__ = ["load_yaml_mapping"]


def load_yaml_mapping(path: str | os.PathLike, what: str,
                      error: Callable[[str], UserError] = UserError) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (an empty file reads as ``{}``).

    ``what`` names the file's role in messages (``"model config"``); ``error`` builds the exception from a
    message, for callers whose errors carry more (a config key, a subclass callers catch). Raised when the file
    is missing, is not valid YAML (the message gives the line and column) or its top level is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.MarkedYAMLError as exn:
        mark = exn.problem_mark or exn.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(p for p in (exn.context, exn.problem) if p)
        raise error(f"{where}: {what} is not valid YAML: {problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exn:
        raise error(f"{path}: {what} is not valid YAML: {exn}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a mapping, got {type(data).__name__}")
    return data
