"""Helpers shared by the wire tests: hypothesis strategies derived from a layout, framing helpers."""
from __future__ import annotations

import string

from hypothesis import strategies as st

# Text without spaces, so trailing padding stripped on decode cannot be confused with content.
TEXT_ALPHABET = string.ascii_letters + string.digits + "!#$%&*+-./:;<=>?@^_~"


def field_strategy(field):
    if field.kind in ("u8", "u16", "u32", "u48", "u64"):
        return st.integers(0, (1 << (8 * field.size)) - 1)
    if field.kind == "char":
        return st.sampled_from(TEXT_ALPHABET + " ")
    if field.kind == "alpha":
        return st.text(TEXT_ALPHABET, max_size=field.size)
    if field.kind == "numeric":
        return st.integers(0, 10 ** field.size - 1)
    raise AssertionError(field.kind)


def message_dicts(layout):
    """Dicts accepted by ``layout.encode`` (type filled in)."""
    fixed = {layout.type_field: layout.type_code} if layout.type_field else {}
    return st.fixed_dictionaries({
        **{f.name: field_strategy(f) for f in layout.fields if f.name != layout.type_field},
        **{k: st.just(v) for k, v in fixed.items()},
    })


def frame(*messages: bytes) -> bytes:
    """BinaryFILE / MoldUDP64 blocks: each message after its u16 length."""
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)
