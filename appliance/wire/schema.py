"""Declarative message layouts: one table per protocol drives encode and decode.

A message is declared once as an ordered list of fields (name, kind, size).
Offsets are never written by hand: they are the running sum of the sizes, so a
layout cannot disagree with itself. From that one list a ``MessageLayout``
derives

* a precompiled big-endian ``struct.Struct`` for ``pack_into`` / ``unpack_from``
  (the allocation-free hot paths: the caller owns the buffer);
* field offsets (``layout.offset_of["price"]``) for code that reads one field;
* a convenience ``encode`` / ``decode`` that speaks dicts with ``str`` text;
* the ``(kind, size)`` signature the C fast path is configured from, so the C
  side interprets this table rather than carrying a copy of it.

Value representations:

* *raw* tuples (``unpack_from`` / ``pack_into``): integers as ``int``, text
  fields as the exact padded ``bytes`` found on the wire, one entry per field in
  declaration order (the first is the type byte as a 1-byte ``bytes``).
* *dicts* (``decode`` / ``encode``): text as ``str`` without trailing padding,
  integers as ``int``; the type is the one-character ``str`` under ``"type"``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable

from appliance.wire.errors import WireEncodeError, WireFormatError

# kind -> struct code (None: size-dependent). "numeric" is SoupBinTCP's ASCII
# decimal, right-justified and space-padded; the rest are NASDAQ binary fields.
_INT_KINDS = {"u8": ("B", 1), "u16": ("H", 2), "u32": ("I", 4), "u48": ("HI", 6), "u64": ("Q", 8)}
_TEXT_KINDS = ("char", "alpha")
KINDS = tuple(_INT_KINDS) + _TEXT_KINDS + ("numeric",)


@dataclass(frozen=True)
class Field:
    """One field of a message: its name (snake_case), kind and size in bytes."""

    name: str
    kind: str
    size: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")
        if self.kind in _INT_KINDS and _INT_KINDS[self.kind][1] != self.size:
            raise ValueError(f"field {self.name}: {self.kind} is {_INT_KINDS[self.kind][1]} bytes, not {self.size}")
        if self.kind == "char" and self.size != 1:
            raise ValueError(f"field {self.name}: char is 1 byte")
        if self.size <= 0:
            raise ValueError(f"field {self.name}: size must be positive")


# Short constructors so protocol tables read like the spec tables.
def u8(name: str) -> Field: return Field(name, "u8", 1)
def u16(name: str) -> Field: return Field(name, "u16", 2)
def u32(name: str) -> Field: return Field(name, "u32", 4)
def u48(name: str) -> Field: return Field(name, "u48", 6)
def u64(name: str) -> Field: return Field(name, "u64", 8)
def char(name: str) -> Field: return Field(name, "char", 1)
def alpha(name: str, size: int) -> Field: return Field(name, "alpha", size)
def numeric(name: str, size: int) -> Field: return Field(name, "numeric", size)


def pad_alpha(value: str | bytes, size: int, field_name: str = "alpha") -> bytes:
    """Left-justify ``value`` in ``size`` bytes, padded with spaces (NASDAQ Alpha)."""
    raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if len(raw) > size:
        raise WireEncodeError(f"{field_name}: {value!r} is longer than {size} bytes")
    return raw.ljust(size, b" ")


def format_numeric(value: int, size: int, field_name: str = "numeric") -> bytes:
    """Right-justify the decimal ``value`` in ``size`` bytes, padded with spaces (SoupBinTCP)."""
    if not isinstance(value, int) or value < 0:
        raise WireEncodeError(f"{field_name}: {value!r} is not a non-negative integer")
    text = str(value).encode("ascii")
    if len(text) > size:
        raise WireEncodeError(f"{field_name}: {value} needs more than {size} digits")
    return text.rjust(size, b" ")


def parse_numeric(raw: bytes, offset: int, field_name: str = "numeric") -> int:
    """Parse an ASCII numeric field, stripping spaces on both sides (peers may left-justify); blank is 0."""
    text = raw.strip(b" ")
    if not text:
        return 0
    if not text.isdigit():  # bytes.isdigit is ASCII-only: no signs, underscores or exotic digits
        raise WireFormatError(offset, f"{field_name}: {bytes(raw)!r} is not a decimal number")
    return int(text)


class MessageLayout:
    """The derived codec of one message: struct, offsets, size, encode and decode.

    ``fields`` includes every byte of the message, the type byte first, declared
    as ``char("type")``; ``type_code`` is the value of that byte.
    """

    def __init__(self, type_code: str | None, name: str, fields: Iterable[Field], *,
                 expected_size: int | None = None, type_field: str | None = "type") -> None:
        self.type_code = type_code
        self.type_byte = type_code.encode("ascii") if type_code is not None else b""
        self.name = name
        self.fields: tuple[Field, ...] = tuple(fields)
        self.type_field = type_field
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: duplicate field names")
        if type_field is not None and type_field not in names:
            raise ValueError(f"{name}: no {type_field!r} field")
        self.field_names: tuple[str, ...] = tuple(names)
        self.index_of: dict[str, int] = {n: i for i, n in enumerate(names)}   # in unpack_from's tuple
        offsets: dict[str, int] = {}
        position = 0
        codes = [">"]
        for f in self.fields:
            offsets[f.name] = position
            position += f.size
            if f.kind in _INT_KINDS:
                codes.append(_INT_KINDS[f.kind][0])
            elif f.kind == "char":
                codes.append("c")
            else:
                codes.append(f"{f.size}s")
        self.offset_of: dict[str, int] = offsets
        self.size = position
        if expected_size is not None and expected_size != position:
            raise ValueError(f"{name}: fields add up to {position} bytes, the spec says {expected_size}")
        self.struct = struct.Struct("".join(codes))
        assert self.struct.size == self.size
        self._u48_indexes = [i for i, f in enumerate(self.fields) if f.kind == "u48"]
        self._numeric_indexes = [i for i, f in enumerate(self.fields) if f.kind == "numeric"]
        self.signature: tuple[tuple[str, int], ...] = tuple((f.kind, f.size) for f in self.fields)
        self.unpack_from = self._build_unpack()

    # -- raw, allocation-light paths ------------------------------------------------

    def _build_unpack(self):
        """An ``unpack_from(buffer, offset)`` returning the raw tuple (u48 joined, numerics parsed)."""
        unpack = self.struct.unpack_from
        if not self._u48_indexes and not self._numeric_indexes:
            return unpack
        if len(self._u48_indexes) == 1 and not self._numeric_indexes:
            i = self._u48_indexes[0]

            def unpack_u48(buffer, offset=0, _unpack=unpack, _i=i):
                v = _unpack(buffer, offset)
                return v[:_i] + (v[_i] << 32 | v[_i + 1],) + v[_i + 2:]
            return unpack_u48

        fields = self.fields

        def unpack_general(buffer, offset=0):
            v = unpack(buffer, offset)
            out = []
            j = 0
            position = offset
            for f in fields:
                if f.kind == "u48":
                    out.append(v[j] << 32 | v[j + 1])
                    j += 2
                elif f.kind == "numeric":
                    out.append(parse_numeric(v[j], position, f.name))
                    j += 1
                else:
                    out.append(v[j])
                    j += 1
                position += f.size
            return tuple(out)
        return unpack_general

    def pack_into(self, buffer, offset: int, *values) -> int:
        """Write raw values (ints, exactly-sized padded bytes) at ``offset``; returns the size written."""
        if self._u48_indexes or self._numeric_indexes:
            values = self._flatten(values)
        try:
            self.struct.pack_into(buffer, offset, *values)
        except struct.error as exc:
            raise WireEncodeError(f"{self.name}: {exc}") from None
        return self.size

    def _flatten(self, values) -> list:
        if len(values) != len(self.fields):
            raise WireEncodeError(f"{self.name}: {len(values)} values for {len(self.fields)} fields")
        flat = []
        for f, v in zip(self.fields, values):
            if f.kind == "u48":
                if not isinstance(v, int) or not 0 <= v < 1 << 48:
                    raise WireEncodeError(f"{self.name}.{f.name}: {v!r} does not fit u48")
                flat.append(v >> 32)
                flat.append(v & 0xFFFFFFFF)
            elif f.kind == "numeric":
                flat.append(v if isinstance(v, bytes) else format_numeric(v, f.size, f.name))
            else:
                flat.append(v)
        return flat

    # -- convenience: dicts with str text ---------------------------------------------

    def raw_values(self, fields: dict[str, Any]) -> tuple:
        """Turn a dict (str text, missing type filled in) into the raw tuple ``pack_into`` takes."""
        unknown = set(fields) - set(self.field_names)
        if unknown:
            raise WireEncodeError(f"{self.name}: unknown fields {sorted(unknown)}")
        values = []
        for f in self.fields:
            if self.type_field is not None and f.name == self.type_field:
                given = fields.get(f.name, self.type_code)
                if given not in (self.type_code, self.type_byte):
                    raise WireEncodeError(f"{self.name}: type {given!r} is not {self.type_code!r}")
                values.append(self.type_byte)
                continue
            if f.name not in fields:
                raise WireEncodeError(f"{self.name}: missing field {f.name!r}")
            v = fields[f.name]
            if f.kind in _TEXT_KINDS:
                values.append(pad_alpha(v, f.size, f.name))
            elif f.kind == "numeric":
                values.append(format_numeric(v, f.size, f.name))
            else:
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << (8 * f.size):
                    raise WireEncodeError(f"{self.name}.{f.name}: {v!r} does not fit {f.kind}")
                values.append(v)
        return tuple(values)

    def encode_into(self, buffer, offset: int, fields: dict[str, Any]) -> int:
        """Validate and write a dict at ``offset``; returns the size written."""
        return self.pack_into(buffer, offset, *self.raw_values(fields))

    def encode(self, fields: dict[str, Any]) -> bytes:
        """Validate and encode a dict into new bytes (convenience; not for hot paths)."""
        out = bytearray(self.size)
        self.encode_into(out, 0, fields)
        return bytes(out)

    def check_room(self, buffer, offset: int, available: int | None = None) -> None:
        """Raise ``WireFormatError`` unless ``size`` bytes are available at ``offset``."""
        have = (len(buffer) - offset) if available is None else available
        if have < self.size:
            raise WireFormatError(offset, f"{self.name} ({self.type_code!r}) needs {self.size} bytes, only {max(have, 0)} available")

    def to_dict(self, raw: tuple, offset: int = 0) -> dict[str, Any]:
        """Turn a raw tuple into a dict with text decoded (ASCII) and trailing padding removed."""
        out: dict[str, Any] = {}
        position = offset
        for f, v in zip(self.fields, raw):
            if f.kind in _TEXT_KINDS:
                try:
                    text = v.decode("ascii")
                except UnicodeDecodeError:
                    raise WireFormatError(position, f"{self.name}.{f.name}: non-ASCII bytes {v!r}") from None
                out[f.name] = text.rstrip(" ") if f.kind == "alpha" else text
            else:
                out[f.name] = v
            position += f.size
        return out

    def decode(self, buffer, offset: int = 0, length: int | None = None) -> dict[str, Any]:
        """Decode one message at ``offset``; ``length`` (if the framing gives one) must equal ``size``."""
        if length is not None and length != self.size:
            kind = "oversized" if length > self.size else "truncated"
            raise WireFormatError(offset, f"{kind} {self.name} ({self.type_code!r}): length {length}, expected {self.size}")
        self.check_room(buffer, offset)
        return self.to_dict(self.unpack_from(buffer, offset), offset)

    def __repr__(self) -> str:
        return f"MessageLayout({self.type_code!r}, {self.name!r}, size={self.size})"


def prefixed(prefix: MessageLayout, message: MessageLayout) -> MessageLayout:
    """One layout of a framing prefix (a block length, a packet's length and type) followed by one
    fixed-size message, so a single ``struct`` call packs both; the prefix's type, if any, is the type."""
    return MessageLayout(prefix.type_code, f"{prefix.name} ({message.name})", prefix.fields + message.fields,
                         type_field=prefix.type_field)


class Protocol:
    """A set of layouts keyed by their type byte: the one table of a protocol (or a direction of one)."""

    def __init__(self, name: str, layouts: Iterable[MessageLayout]) -> None:
        self.name = name
        self.layouts: tuple[MessageLayout, ...] = tuple(layouts)
        self.by_code: dict[str, MessageLayout] = {}
        # Indexed by the type byte's integer value: a list lookup, no hashing, no allocation.
        self.by_byte: list[MessageLayout | None] = [None] * 256
        for layout in self.layouts:
            if layout.type_code in self.by_code:
                raise ValueError(f"{name}: type {layout.type_code!r} declared twice")
            self.by_code[layout.type_code] = layout
            self.by_byte[layout.type_byte[0]] = layout
        self.size_by_byte: list[int] = [lay.size if lay else 0 for lay in self.by_byte]

    def layout_at(self, buffer, offset: int, available: int | None = None) -> MessageLayout:
        """The layout of the message starting at ``offset``; ``WireFormatError`` if empty or unknown."""
        end = len(buffer) if available is None else offset + available
        if offset >= end:
            raise WireFormatError(offset, f"{self.name}: empty message")
        layout = self.by_byte[buffer[offset]]
        if layout is None:
            raise WireFormatError(offset, f"{self.name}: unknown message type {bytes([buffer[offset]])!r}")
        return layout

    def decode(self, buffer, offset: int = 0, length: int | None = None) -> dict[str, Any]:
        """Decode the message at ``offset`` into a dict; ``length`` defaults to the rest of the buffer."""
        if length is None:
            length = len(buffer) - offset
        if length < 0 or offset < 0:
            raise WireFormatError(offset, f"{self.name}: offset beyond the buffer")
        layout = self.layout_at(buffer, offset, length)
        return layout.decode(buffer, offset, length)

    def encode(self, fields: dict[str, Any]) -> bytes:
        """Encode a dict whose ``type`` names the message."""
        code = fields.get("type")
        if isinstance(code, bytes):
            code = code.decode("ascii", "replace")
        layout = self.by_code.get(code) if isinstance(code, str) else None
        if layout is None:
            raise WireEncodeError(f"{self.name}: unknown message type {code!r}")
        return layout.encode(fields)
