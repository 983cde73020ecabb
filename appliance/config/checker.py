"""The one configuration checker: every setting of the appliance and the exchange is read through it.

A ``Checker`` turns each problem into the caller's own error (``error(key_path, reason, line)``:
``file:line: key.path: reason`` for a file, ``key.path: reason`` for a params mapping) and says
each kind of problem one way:

    unknown key (allowed: a, b)          missing required key
    expected an integer, got a boolean   expected a string, got an integer (quote it)
    must be 1..65535, got 70000          must not be negative, got -1
    must be greater than 0, got 0        nan is not a finite number
    must be one of a, b, got 'x'         'aapl' must be 1..8 upper-case letters

A ``Section`` is one mapping of the document: its keys checked once, then typed values read
by key with their path and line (a default for an optional key). Values come from an untrusted
file or mapping, so nothing here raises anything but the caller's error: a boolean is never an
integer, an integer of thousands of digits is shown by its size, a long string is cut short.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, NoReturn

from .errors import ErrorFactory, join, line_of

REQUIRED: Any = object()          # the default of a key that must be there

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
               list: "a list", type(None): "null"}


def type_name(value) -> str:
    """What a value is, in words (``a boolean``, ``an integer``, ``a mapping`` ...)."""
    for kind, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"),
                        (int, "an integer"), (float, "a number"), (type(None), "null")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


def shown(value) -> str:
    """A value in a message: an absurd integer by its size (Python refuses to print one of over 4300
    digits), a long string cut short."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        text = repr(value[:60])
        return text[:-1] + "...'" if len(value) > 60 else text
    return str(value)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Checker:
    """Checks values at key paths, raising ``error(key_path, reason, line)`` on the first problem."""

    def __init__(self, error: ErrorFactory):
        self.error = error

    @classmethod
    def for_file(cls, error_class, file: str) -> "Checker":
        """Errors ``error_class(file, key_path, reason, line)``: a file's problems."""
        return cls(lambda path, reason, line: error_class(file, path, reason, line))

    @classmethod
    def for_params(cls, error_class) -> "Checker":
        """Errors ``error_class(key_path, reason)``: a mapping that is not a file of its own."""
        return cls(lambda path, reason, line: error_class(path, reason))

    def fail(self, path: str, reason: str, line: int | None = None) -> NoReturn:
        raise self.error(path, reason, line)

    def expected(self, what: str, value, path: str, line: int | None = None) -> NoReturn:
        hint = " (quote it)" if what.startswith("a string") and isinstance(value, (bool, int, float)) else ""
        self.fail(path, f"expected {what}, got {type_name(value)}{hint}", line)

    # ------------------------------------------------------------------ scalars

    def integer(self, value, path: str, line: int | None = None, lo: int | None = None,
                hi: int | None = None) -> int:
        """An int (never a boolean) in lo..hi."""
        if not is_int(value):
            self.expected("an integer", value, path, line)
        self._in_range(value, path, line, lo, hi)
        return value

    def number(self, value, path: str, line: int | None = None, lo: float | None = None, hi: float | None = None,
               *, above: float | None = None) -> int | float:
        """An int or a finite float (never a boolean) in lo..hi; ``above``: strictly greater than it."""
        if not is_number(value):
            self.expected("a number", value, path, line)
        if not math.isfinite(value):
            self.fail(path, f"{value} is not a finite number", line)
        self._in_range(value, path, line, lo, hi)
        if above is not None and value <= above:
            self.fail(path, f"must be greater than {above}, got {shown(value)}", line)
        return value

    def _in_range(self, value, path: str, line: int | None, lo, hi) -> None:
        if lo is not None and lo >= 0 and value < 0:
            self.fail(path, f"must not be negative, got {shown(value)}", line)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"{lo}..{hi}" if lo is not None and hi is not None else \
                f">= {lo}" if lo is not None else f"<= {hi}"
            self.fail(path, f"must be {bounds}, got {shown(value)}", line)

    def boolean(self, value, path: str, line: int | None = None) -> bool:
        if not isinstance(value, bool):
            self.expected("true or false", value, path, line)
        return value

    def string(self, value, path: str, line: int | None = None, *, pattern: re.Pattern | None = None,
               rule: str = "", empty: bool = False) -> str:
        """A string, not empty unless ``empty``; with ``pattern``, matching it whole (``rule`` says how)."""
        if not isinstance(value, str):
            self.expected("a string", value, path, line)
        if not value and not empty:
            self.fail(path, "must not be empty", line)
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(path, f"{shown(value)} must be {rule}", line)
        return value

    def choice(self, value, path: str, line: int | None, choices: Iterable) -> Any:
        """One of ``choices`` (compared by type too: ``1`` is not ``True``)."""
        choices = tuple(choices)
        if not any(value == c and type(value) is type(c) for c in choices):
            self.fail(path, f"must be one of {', '.join(map(str, choices))}, got {shown(value)}", line)
        return value

    def typed(self, value, kinds, path: str, line: int | None = None):
        """``value`` is one of the types ``kinds`` (int, float, str, bool, dict, list, None; a boolean
        is an int only where bool is named, an int is a float)."""
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        kinds = tuple(type(None) if k is None else k for k in kinds)
        ok = any((isinstance(value, k) and not (isinstance(value, bool) and k is not bool))
                 or (k is float and is_int(value)) for k in kinds)
        if not ok:
            self.expected(" or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds), value, path, line)
        return value

    # ------------------------------------------------------------------ containers

    def listing(self, value, path: str, line: int | None = None) -> list:
        if not isinstance(value, list):
            self.expected("a list", value, path, line)
        return value

    def items(self, value, path: str, line: int | None = None):
        """(index, item, item path, item line) of a list."""
        for i, item in enumerate(self.listing(value, path, line)):
            yield i, item, f"{path}[{i}]", line_of(value, i) or line

    def mapping(self, value, path: str, line: int | None, keys, required: Iterable[str] = (),
                hints: dict | None = None) -> dict:
        """A mapping whose keys are among ``keys`` (listed sorted when one is not) and holds
        every ``required`` one (``hints[key]`` says what a missing one is for). When ``keys`` is a
        dict of key -> type(s), each present value is checked with ``typed``."""
        if not isinstance(value, dict):
            self.expected("a mapping", value, path, line)
        for key in value:
            if key not in keys:
                self.fail(join(path, key), f"unknown key (allowed: {', '.join(sorted(map(str, keys))) or 'none'})",
                          line_of(value, key) or line)
        for key in required:
            if key not in value:
                hint = (hints or {}).get(key)
                self.fail(join(path, key), "missing required key" + (f" ({hint})" if hint else ""), line)
        if isinstance(keys, dict):
            for key, value_of_key in value.items():
                self.typed(value_of_key, keys[key], join(path, key), line_of(value, key) or line)
        return value

    def section(self, value, path: str, line: int | None, keys, required: Iterable[str] = (), *,
                optional: bool = False, hints: dict | None = None) -> "Section":
        """A ``Section`` over ``value``; ``optional``: null or absent reads as an empty mapping."""
        return Section(self, value, path, line, keys, required, optional=optional, hints=hints)


class Section:
    """One mapping of a document, its keys checked: read typed values by key, with path and line."""

    def __init__(self, checker: Checker, value, path: str, line: int | None, keys, required=(), *,
                 optional: bool = False, hints: dict | None = None):
        if value is None and optional:
            value = {}
        self.checker, self.path, self.line, self.hints = checker, path, line, hints or {}
        self.value = checker.mapping(value, path, line, keys, required, hints)

    def __contains__(self, key) -> bool:
        return key in self.value

    def line_of(self, key) -> int | None:
        return line_of(self.value, key) or self.line

    def key_path(self, key) -> str:
        return join(self.path, key)

    def fail(self, key, reason: str) -> NoReturn:
        self.checker.fail(self.key_path(key), reason, self.line_of(key))

    def get(self, key: str, default=REQUIRED):
        """The raw value, or ``default``; a missing key without one is 'missing required key'."""
        if key in self.value:
            return self.value[key]
        if default is REQUIRED:
            hint = self.hints.get(key)
            self.checker.fail(self.key_path(key), "missing required key" + (f" ({hint})" if hint else ""),
                              self.line)
        return default

    def _where(self, key):
        return self.key_path(key), self.line_of(key)

    def integer(self, key: str, lo: int | None = None, hi: int | None = None, default=REQUIRED) -> int:
        return self.checker.integer(self.get(key, default), *self._where(key), lo, hi)

    def number(self, key: str, lo=None, hi=None, default=REQUIRED, *, above=None, nullable: bool = False):
        value = self.get(key, default)
        if value is None and nullable:
            return None
        if not is_number(value):
            self.checker.expected("a number or null" if nullable else "a number", value, *self._where(key))
        return self.checker.number(value, *self._where(key), lo, hi, above=above)

    def boolean(self, key: str, default=REQUIRED) -> bool:
        return self.checker.boolean(self.get(key, default), *self._where(key))

    def string(self, key: str, default=REQUIRED, *, nullable: bool = False, **rules) -> str | None:
        value = self.get(key, default)
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.checker.expected("a string or null" if nullable else "a string", value, *self._where(key))
        return self.checker.string(value, *self._where(key), **rules)

    def choice(self, key: str, choices: Iterable, default=REQUIRED):
        return self.checker.choice(self.get(key, default), *self._where(key), choices)

    def listing(self, key: str, default=REQUIRED) -> list:
        return self.checker.listing(self.get(key, default), *self._where(key))

    def items(self, key: str, default=REQUIRED):
        """(index, item, item path, item line) of the list at ``key``."""
        return self.checker.items(self.get(key, default), *self._where(key))

    def section(self, key: str, keys, required=(), *, optional: bool = True, hints: dict | None = None) -> "Section":
        """The mapping at ``key``; ``optional``: absent or null reads as empty (its defaults apply)."""
        return Section(self.checker, self.value.get(key), self.key_path(key), self.line_of(key), keys, required,
                       optional=optional, hints=hints)

