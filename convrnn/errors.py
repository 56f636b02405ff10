"""Errors that mean "the user's input is wrong", as opposed to a bug.

Every command catches ``UserError`` at its entry point and exits with status 2 and the message alone (no
traceback). The message starts with what is wrong: the config key (``data.batch_size: ...``), the file or the
value, so that the user can fix it without reading our code.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (a config value, a file, a command-line flag); the message names it."""


class UserConfigError(UserError):
    """A config key has a bad value. ``key`` is the dotted config key (``data.batch_size``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
