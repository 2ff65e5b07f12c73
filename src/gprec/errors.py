"""User-facing errors: the CLI prints these as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class GprecError(Exception):
    """An error caused by the user's input (files, configs, arguments)."""


class ConfigError(GprecError):
    """A config names a key, model or field that does not exist, or has a bad value."""


class DataError(GprecError):
    """A data file is missing, malformed or empty.

    The message names the file and, where known, the 1-based line number.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = Path(path) if path is not None else None
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
