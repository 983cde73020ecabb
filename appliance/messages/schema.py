"""Fixed-size little-endian records: one definition per message, used by every reader and writer.

A ``Record`` is declared once as a list of (field name, type code) pairs. From
that single list it derives the ``struct.Struct`` used by ``pack_into`` /
``unpack_from``, the field offsets, the fields' indices in the unpacked tuple as
attributes (``at``: hot readers say ``r[at.client_order_id]``, not ``r[3]``, at the
cost of an index), a view with named fields (``read``: a named tuple, ``r.price``;
it copies the record, so it is for the paths that are not hot), a numpy dtype for
batch views (tests, shmtop), and a canonical description that goes into the
layout hash, so that a process built against a different message shape refuses
to attach.

Every record starts with the same 8-byte header: ``type_id u16``,
``schema_version u16``, ``size u32``.
"""
from __future__ import annotations

import struct
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

# type code -> (struct code, numpy code, size)
_TYPES: dict[str, tuple[str, str, int]] = {
    "u8": ("B", "u1", 1),
    "u16": ("H", "<u2", 2),
    "u32": ("I", "<u4", 4),
    "u64": ("Q", "<u8", 8),
    "i32": ("i", "<i4", 4),
    "i64": ("q", "<i8", 8),
    "char8": ("8s", "S8", 8),
    "char10": ("10s", "S10", 10),      # the OMS journal's session names and order tokens
    "char14": ("14s", "S14", 14),
    "char16": ("16s", "S16", 16),
}

HEADER_FIELDS: tuple[tuple[str, str], ...] = (("type_id", "u16"), ("schema_version", "u16"), ("size", "u32"))
HEADER_COUNT = len(HEADER_FIELDS)      # a read record's body (what ``pack_into`` takes) is ``r[HEADER_COUNT:]``


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    offset: int
    size: int


class _FieldIndices:
    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only")


def _field_indices(record: str, index_of: dict[str, int]):
    """An object whose attributes are the fields' indices (slots: an attribute read is as cheap as a local's)."""
    cls = type(f"{record}Indices", (_FieldIndices,), {"__slots__": tuple(index_of)})
    at = cls()
    for name, index in index_of.items():
        object.__setattr__(at, name, index)
    return at


class Record:
    """One message type: its fields, packed little-endian without padding."""

    def __init__(self, name: str, type_id: int, version: int, fields: list[tuple[str, str]]):
        all_fields = list(HEADER_FIELDS) + list(fields)
        seen: set[str] = set()
        offset = 0
        specs = []
        for field_name, type_code in all_fields:
            if field_name in seen:
                raise ValueError(f"record {name}: field {field_name!r} declared twice")
            if type_code not in _TYPES:
                raise ValueError(f"record {name}: field {field_name!r} has unknown type {type_code!r}")
            seen.add(field_name)
            size = _TYPES[type_code][2]
            specs.append(FieldSpec(field_name, type_code, offset, size))
            offset += size
        self.name = name
        self.type_id = type_id
        self.version = version
        self.fields: tuple[FieldSpec, ...] = tuple(specs)
        self.size = offset
        self.struct = struct.Struct("<" + "".join(_TYPES[f.type][0] for f in specs))
        assert self.struct.size == self.size
        self.dtype = np.dtype({"names": [f.name for f in specs], "formats": [_TYPES[f.type][1] for f in specs],
                               "offsets": [f.offset for f in specs], "itemsize": self.size})
        self.field_names: tuple[str, ...] = tuple(f.name for f in specs)
        self.offset_of: dict[str, int] = {f.name: f.offset for f in specs}
        self.index_of: dict[str, int] = {f.name: i for i, f in enumerate(specs)}   # in unpack_from's tuple
        self.at = _field_indices(name, self.index_of)
        self.view = view = namedtuple(name, self.field_names)
        unpack, make = self.struct.unpack_from, tuple.__new__

        def read(buffer, offset: int = 0):
            """All fields, header included, as the named view (``r.symbol_id``; a tuple underneath)."""
            return make(view, unpack(buffer, offset))
        self.read = read

    def fields_struct(self, names, start: str | None = None) -> struct.Struct:
        """A Struct that unpacks only ``names`` (given in record order) in one call, the others
        skipped as padding, from the offset of field ``start`` (the record's start when None): a hot
        reader's few fields at the types this record gives them."""
        base = 0 if start is None else self.offset_of[start]
        fmt, position = "<", base
        for name in names:
            spec = self.fields[self.index_of[name]]
            if spec.offset < position:
                raise ValueError(f"record {self.name}: {name!r} is out of record order or before {start!r}")
            fmt += "x" * (spec.offset - position) + _TYPES[spec.type][0]
            position = spec.offset + spec.size
        return struct.Struct(fmt)

    def body(self, **fields) -> list:
        """The values ``pack_into`` takes, by name, zero for every field not named (a template for
        drivers and tests; a hot writer sets its few fields in a copy by ``at`` - HEADER_COUNT)."""
        values = [0] * (len(self.fields) - HEADER_COUNT)
        for name, value in fields.items():
            if name not in self.index_of or self.index_of[name] < HEADER_COUNT:
                raise KeyError(f"record {self.name} has no body field {name!r}")
            values[self.index_of[name] - HEADER_COUNT] = value
        return values

    def pack_into(self, buffer, offset: int, *values) -> None:
        """Write the record at ``offset``; ``values`` are the fields after the header, in order."""
        self.struct.pack_into(buffer, offset, self.type_id, self.version, self.size, *values)

    def unpack_from(self, buffer, offset: int = 0) -> tuple:
        """All fields, header included, as a tuple (allocates; hot paths use offsets)."""
        return self.struct.unpack_from(buffer, offset)

    def as_dict(self, buffer, offset: int = 0) -> dict:
        return dict(zip(self.field_names, self.unpack_from(buffer, offset)))

    def describe(self) -> dict:
        """Canonical description (goes into the layout hash)."""
        return {"type_id": self.type_id, "version": self.version, "size": self.size,
                "fields": [[f.name, f.type, f.offset] for f in self.fields]}

    def __repr__(self) -> str:
        return f"Record({self.name}, type_id={self.type_id}, size={self.size})"
