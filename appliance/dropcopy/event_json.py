"""The drop copy's events as JSON bytes, written by the drop copy and read by the risk hub and
``appliance audit --nats``: one compact JSON object per event (the audit row's columns, ``publisher.
event_of``).

orjson (a dependency) does it: here about 0.6 us to encode an event where the standard library's
encoder takes about 9, and 2 us to decode one where ``json.loads`` takes 7, on paths that handle
every event (``appliance bench dropcopy``). Without it the standard library's json is used: the
same values, the same bytes for ASCII text (orjson writes other text as UTF-8, json as \\u escapes;
both read back the same). A decode error is a ValueError either way.
"""
from __future__ import annotations

import json

try:
    import orjson
except ImportError:                       # pragma: no cover - orjson is a dependency
    orjson = None

if orjson is not None:
    IMPLEMENTATION = "orjson"
    encode = orjson.dumps
    decode = orjson.loads
else:                                     # pragma: no cover
    IMPLEMENTATION = "json"
    _encode = json.JSONEncoder(separators=(",", ":")).encode

    def encode(row: dict) -> bytes:
        return _encode(row).encode()

    decode = json.loads
