"""A journal record's bytes declared once, as ``messages.schema.Record`` declares ring messages.

A ``JournalSchema`` is a list of (field name, type code[, audit column]) entries, packed
little-endian without padding, with the type codes of ``messages.schema``. From that one list it
derives everything else that used to be written by hand beside it:

- ``struct``, ``offset_of`` and ``size_of``: the format and where each field is (the C append and the scan
  read the record header's offsets from here);
- ``pack(...)``: the writer, a generated function taking the fields by name or in order (fields
  left out are 0 or empty; ``pad*`` fields are always zero and not arguments);
- ``parse(payload)``: the reader, a named tuple of the fields without the pads;
- ``audit``: (field, audit column) pairs, the columns of the audit trail a field fills;
- ``describe()``: a canonical description; the journal's file header carries a hash of every
  record's description (``events.RECORDS_HASH``), so a journal written with other shapes is
  refused instead of misread.

A last field of type ``bytes`` is a variable-length tail (a venue message after its sequence).
Journal payloads carry no per-record header (the journal's record header has the type), which
is why this is not a ``Record``.
"""
from __future__ import annotations

import collections
import hashlib
import json
import keyword
import operator
import struct

from appliance.messages.schema import _TYPES as FIELD_TYPES

TAIL = "bytes"


class JournalSchema:
    """One journal record's payload (or the journal's own headers): fields, format, reader, writer."""

    def __init__(self, name: str, fields: list[tuple], *, type_id: int = 0, version: int = 1):
        self.name = name
        self.type_id = type_id
        self.version = version
        self.offset_of: dict[str, int] = {}
        self.size_of: dict[str, int] = {}
        self.audit: tuple[tuple[str, str], ...] = ()
        codes, described, audit = [], [], []
        self.tail = None
        offset = 0
        for i, entry in enumerate(fields):
            field_name, type_code = entry[0], entry[1]
            if not field_name.isidentifier() or keyword.iskeyword(field_name):
                raise ValueError(f"journal record {name}: {field_name!r} is not a field name")
            if field_name in self.offset_of:
                raise ValueError(f"journal record {name}: field {field_name!r} declared twice")
            if type_code == TAIL:
                if i != len(fields) - 1:
                    raise ValueError(f"journal record {name}: only the last field may be {TAIL!r}")
                if any(f[0].startswith("pad") for f in fields):
                    raise ValueError(f"journal record {name}: a record with a {TAIL!r} tail has no pads")
                self.tail = field_name
            elif type_code not in FIELD_TYPES:
                raise ValueError(f"journal record {name}: field {field_name!r} has unknown type {type_code!r}")
            else:
                codes.append(FIELD_TYPES[type_code][0])
            self.offset_of[field_name] = offset
            self.size_of[field_name] = 0 if type_code == TAIL else FIELD_TYPES[type_code][2]
            described.append([field_name, type_code, offset])
            if len(entry) > 2:
                audit.append((field_name, entry[2]))
            offset += self.size_of[field_name]
        self.fields = tuple(entry[0] for entry in fields)
        self.struct = struct.Struct("<" + "".join(codes))
        self.size = self.struct.size                 # of the fixed part
        self.audit = tuple(audit)
        self._described = described
        public = [n for n in self.fields if not n.startswith("pad")]
        self.view = collections.namedtuple(name, public)
        self.pack = self._writer(fields)
        self.parse = self._reader()

    def _writer(self, fields):
        """A function packing the record: keyword or positional arguments in field order, pads zero."""
        params, values = [], []
        for entry in fields:
            field_name, type_code = entry[0], entry[1]
            if field_name.startswith("pad"):
                values.append("0")
                continue
            empty = 'b""' if type_code == TAIL or type_code.startswith("char") else "0"
            params.append(f"{field_name}={empty}")
            if type_code != TAIL:
                values.append(field_name)
        body = f"_pack({', '.join(values)})" + (f" + {self.tail}" if self.tail else "")
        source = f"def pack({', '.join(params)}):\n    return {body}\n"
        namespace = {"_pack": self.struct.pack}
        exec(source, namespace)                      # noqa: S102 - built from the declared field names only
        pack = namespace["pack"]
        pack.__doc__ = f"The {self.name} payload's bytes."
        return pack

    def _reader(self):
        """A function reading a payload into ``view`` (struct.error when it is too short)."""
        # tuple.__new__ straight (view._make is a Python call more): recovery reads a million of these
        unpack, new, view, size = self.struct.unpack_from, tuple.__new__, self.view, self.size
        kept = [i for i, n in enumerate(n for n in self.fields if n != self.tail) if not n.startswith("pad")]
        if self.tail is not None:
            return lambda payload: new(view, unpack(payload) + (payload[size:],))
        if len(kept) == len(self.fields):
            return lambda payload, offset=0: new(view, unpack(payload, offset))
        pick = operator.itemgetter(*kept)
        return lambda payload, offset=0: new(view, pick(unpack(payload, offset)))

    def compiled_shape(self) -> list[tuple[int, int, str]]:
        """The (offset, width, kind) of each value ``pack`` takes, in order, for a compiled packer
        (``_journal_fast.set_step_record``): 'u' unsigned, 'i' signed (little-endian), 's' text (NUL-padded); pads are 0."""
        if self.tail is not None:
            raise ValueError(f"journal record {self.name}: a variable tail has no fixed shape")
        return [(offset, self.size_of[name], "s" if type_code.startswith("char") else type_code[0])
                for name, type_code, offset in self._described if not name.startswith("pad")]

    def describe(self) -> dict:
        """Canonical description (hashed into the journal's file header)."""
        return {"name": self.name, "type_id": self.type_id, "version": self.version, "fields": self._described}

    def __repr__(self) -> str:
        return f"JournalSchema({self.name}, type_id={self.type_id}, size={self.size})"


def records_hash(schemas) -> int:
    """64 bits of the SHA-256 of the schemas' descriptions, in type order: any change of a name,
    type id, version, field, type or offset changes it."""
    described = sorted((schema.describe() for schema in schemas), key=lambda d: (d["type_id"], d["name"]))
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little")
