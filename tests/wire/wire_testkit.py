"""Helpers shared by the wire tests: hypothesis strategies derived from a layout, framing helpers, the
ITCH backends to run and hand-written ITCH messages (bytes from the spec table, not from the encoder)."""
from __future__ import annotations

import string

from hypothesis import strategies as st

from appliance.wire import itch

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


C_BUILT = itch._itch_fast is not None
BACKENDS = [False, True] if C_BUILT else [False]


# --- hand-written byte strings (from the spec table, not from the encoder) ---------------

ADD_ORDER_BYTES = (b"A" + b"\x00\x05" + b"\x00\x01" + b"\x00\x1c\xbe\x99\x1a\x14"   # ts 123456789012
                   + b"\x00\x00\x00\x00\x00\x00\x00\x63" + b"B" + b"\x00\x00\x00\x64"
                   + b"AAPL    " + b"\x00\x12\xd6\x44")
ADD_ORDER = {"type": "A", "stock_locate": 5, "tracking_number": 1, "timestamp": 123456789012,
             "order_reference_number": 99, "buy_sell_indicator": "B", "shares": 100, "stock": "AAPL",
             "price": 1234500}
EXECUTED_BYTES = (b"E" + b"\x01\x02" + b"\x00\x00" + b"\x00\x00\x00\x00\x00\x2a"
                  + b"\x00\x00\x00\x00\x00\x00\x00\x63" + b"\x00\x00\x00\x32" + b"\x00\x00\x00\x00\x00\x01\x00\x00")
EXECUTED = {"type": "E", "stock_locate": 258, "tracking_number": 0, "timestamp": 42,
            "order_reference_number": 99, "executed_shares": 50, "match_number": 65536}
SYSTEM_EVENT_BYTES = b"S\x00\x00\x00\x07\x00\x00\x00\x00\x00\x01O"
SYSTEM_EVENT = {"type": "S", "stock_locate": 0, "tracking_number": 7, "timestamp": 1, "event_code": "O"}
REPLACE_BYTES = (b"U\x00\x09\x00\x00" + b"\xff\xff\xff\xff\xff\xff"
                 + (1).to_bytes(8, "big") + (2**64 - 1).to_bytes(8, "big") + b"\x00\x00\x01\x2c" + b"\x7f\xff\xff\xff")
REPLACE = {"type": "U", "stock_locate": 9, "tracking_number": 0, "timestamp": 2**48 - 1,
           "original_order_reference_number": 1, "new_order_reference_number": 2**64 - 1, "shares": 300,
           "price": 0x7FFFFFFF}
DIRECTORY_BYTES = (b"R\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00" + b"MSFT    " + b"Q" + b"N" + b"\x00\x00\x00\x64"
                   + b"N" + b"C" + b"Z " + b"P" + b"N" + b" " + b"1" + b"N" + b"\x00\x00\x00\x00" + b" ")
DIRECTORY = {"type": "R", "stock_locate": 1, "tracking_number": 0, "timestamp": 0, "stock": "MSFT",
             "market_category": "Q", "financial_status_indicator": "N", "round_lot_size": 100,
             "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "Z", "authenticity": "P",
             "short_sale_threshold_indicator": "N", "ipo_flag": " ", "luld_reference_price_tier": "1",
             "etp_flag": "N", "etp_leverage_factor": 0, "inverse_indicator": " "}
HAND_WRITTEN = [(ADD_ORDER_BYTES, ADD_ORDER), (EXECUTED_BYTES, EXECUTED), (SYSTEM_EVENT_BYTES, SYSTEM_EVENT),
                (REPLACE_BYTES, REPLACE), (DIRECTORY_BYTES, DIRECTORY)]
