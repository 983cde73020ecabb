"""The two shapes every configuration error takes, defined once (the appliance's and the exchange's).

``ParamsError``: a value inside an already parsed mapping (a process's ``params``): ``key.path: reason``.
``ConfigFileError``: a problem in a file: ``file:line: key.path: reason``. Each component subclasses
one of them so its errors keep their own name.
"""
from __future__ import annotations

from typing import Callable

# (key path, reason, line) -> the caller's own error: every loader and checker reports the same way
ErrorFactory = Callable[[str, str, "int | None"], Exception]


class ParamsError(ValueError):
    def __init__(self, key_path: str, reason: str):
        super().__init__(f"{key_path}: {reason}")
        self.key_path = key_path
        self.reason = reason


class ConfigFileError(ValueError):
    def __init__(self, file: str, key_path: str, reason: str, line: int | None = None):
        self.file, self.key_path, self.reason, self.line = file, key_path, reason, line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key_path or '<top>'}: {reason}")


def join(path: str, key) -> str:
    """``path.key`` (or ``key`` at the top): how every error names where it is."""
    return f"{path}.{key}" if path else str(key)


def line_of(container, key) -> int | None:
    """The line of ``container[key]`` when the YAML loader recorded it (``yaml_lines``)."""
    lines = getattr(container, "lines", None)
    if lines is None:
        return None
    try:
        return lines[key]
    except (KeyError, IndexError, TypeError):
        return None
