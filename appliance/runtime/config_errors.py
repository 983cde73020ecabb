"""The two shapes every configuration error of the appliance takes, defined once.

``ParamsError``: a value inside an already parsed mapping (a process's ``params``): ``key.path: reason``.
``ConfigFileError``: a problem in a file: ``file:line: key.path: reason``. Each component subclasses
one of them so its errors keep their own name.
"""
from __future__ import annotations


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
