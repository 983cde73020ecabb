"""ITCH 5.0 market data: the 23 message layouts and the feed's fast paths.

The ``MESSAGES`` table below is the single source of every ITCH layout; the
struct codecs, the dict API, the day-file tools and the C scanner
(``_itch_fast``, configured from this table at import) all derive from it.

Hot-path API (no allocation beyond the result):

* ``read_type_locate(buffer, offset) -> (type_byte_int, stock_locate)``: the two
  things the feed needs to decide whether a message is worth decoding.
* ``LAYOUT_BY_BYTE[type_byte].unpack_from(buffer, offset)``: raw tuple of one message.
* ``BlockScanner``: walks ``[u16 length][message]`` blocks (BinaryFILE and
  MoldUDP64 share this framing), skips unsubscribed stock locates, decodes the
  rest into raw tuples and counts bad blocks instead of raising (or raises
  ``WireFormatError`` in strict mode). Uses the C extension when built.

Convenience API: ``decode(buffer) -> dict``, ``encode(dict) -> bytes``.
"""
from __future__ import annotations

import struct
from array import array
from typing import Any, Iterator

from appliance.wire.errors import WireFormatError
from appliance.wire.schema import MessageLayout, Protocol, alpha, char, u16, u32, u48, u64

HEADER = (char("type"), u16("stock_locate"), u16("tracking_number"), u48("timestamp"))
HEADER_SIZE = sum(f.size for f in HEADER)  # 11: message fields start here
TIMESTAMP_INDEX = 3  # position of the timestamp in every raw tuple


def _message(code: str, name: str, size: int, *fields) -> MessageLayout:
    return MessageLayout(code, name, HEADER + fields, expected_size=size)


MESSAGES: tuple[MessageLayout, ...] = (
    _message("S", "System Event", 12, char("event_code")),
    _message("R", "Stock Directory", 39,
             alpha("stock", 8), char("market_category"), char("financial_status_indicator"),
             u32("round_lot_size"), char("round_lots_only"), char("issue_classification"),
             alpha("issue_sub_type", 2), char("authenticity"), char("short_sale_threshold_indicator"),
             char("ipo_flag"), char("luld_reference_price_tier"), char("etp_flag"),
             u32("etp_leverage_factor"), char("inverse_indicator")),
    _message("H", "Stock Trading Action", 25,
             alpha("stock", 8), char("trading_state"), char("reserved"), alpha("reason", 4)),
    _message("Y", "Reg SHO Restriction", 20, alpha("stock", 8), char("reg_sho_action")),
    _message("L", "Market Participant Position", 26,
             alpha("mpid", 4), alpha("stock", 8), char("primary_market_maker"),
             char("market_maker_mode"), char("market_participant_state")),
    _message("V", "MWCB Decline Level", 35, u64("level_1"), u64("level_2"), u64("level_3")),
    _message("W", "MWCB Status", 12, char("breached_level")),
    _message("K", "IPO Quoting Period Update", 28,
             alpha("stock", 8), u32("ipo_quotation_release_time"),
             char("ipo_quotation_release_qualifier"), u32("ipo_price")),
    _message("J", "LULD Auction Collar", 35,
             alpha("stock", 8), u32("auction_collar_reference_price"), u32("upper_auction_collar_price"),
             u32("lower_auction_collar_price"), u32("auction_collar_extension")),
    _message("h", "Operational Halt", 21, alpha("stock", 8), char("market_code"), char("operational_halt_action")),
    _message("A", "Add Order", 36,
             u64("order_reference_number"), char("buy_sell_indicator"), u32("shares"),
             alpha("stock", 8), u32("price")),
    _message("F", "Add Order with MPID Attribution", 40,
             u64("order_reference_number"), char("buy_sell_indicator"), u32("shares"),
             alpha("stock", 8), u32("price"), alpha("attribution", 4)),
    _message("E", "Order Executed", 31,
             u64("order_reference_number"), u32("executed_shares"), u64("match_number")),
    _message("C", "Order Executed with Price", 36,
             u64("order_reference_number"), u32("executed_shares"), u64("match_number"),
             char("printable"), u32("execution_price")),
    _message("X", "Order Cancel", 23, u64("order_reference_number"), u32("canceled_shares")),
    _message("D", "Order Delete", 19, u64("order_reference_number")),
    _message("U", "Order Replace", 35,
             u64("original_order_reference_number"), u64("new_order_reference_number"),
             u32("shares"), u32("price")),
    _message("P", "Trade (non-cross)", 44,
             u64("order_reference_number"), char("buy_sell_indicator"), u32("shares"),
             alpha("stock", 8), u32("price"), u64("match_number")),
    _message("Q", "Cross Trade", 40,
             u64("shares"), alpha("stock", 8), u32("cross_price"), u64("match_number"), char("cross_type")),
    _message("B", "Broken Trade", 19, u64("match_number")),
    _message("I", "NOII", 50,
             u64("paired_shares"), u64("imbalance_shares"), char("imbalance_direction"),
             alpha("stock", 8), u32("far_price"), u32("near_price"), u32("current_reference_price"),
             char("cross_type"), char("price_variation_indicator")),
    _message("N", "Retail Price Improvement Indicator", 20, alpha("stock", 8), char("interest_flag")),
    _message("O", "DLCR Price Discovery", 48,
             alpha("stock", 8), char("open_eligibility_status"), u32("minimum_allowable_price"),
             u32("maximum_allowable_price"), u32("near_execution_price"), u64("near_execution_time"),
             u32("lower_price_range_collar"), u32("upper_price_range_collar")),
)

ITCH = Protocol("ITCH 5.0", MESSAGES)
LAYOUT_BY_BYTE = ITCH.by_byte          # list[256] of MessageLayout | None
SIZE_BY_BYTE = ITCH.size_by_byte       # list[256] of int (0 = unknown type)
MAX_MESSAGE_SIZE = max(layout.size for layout in MESSAGES)
# Index of "stock" in each layout's raw tuple (None where the message has no stock field).
STOCK_INDEX_BY_BYTE: list[int | None] = [
    (lay.field_names.index("stock") if lay is not None and "stock" in lay.field_names else None)
    for lay in LAYOUT_BY_BYTE
]
# Types that pass a locate filter whatever their locate: system-wide events and the
# stock directory, which is how a subscriber learns which locate its symbols got today.
ALWAYS_PASS_TYPES = "SRVW"

_TYPE_LOCATE = struct.Struct(">BH")
# The u16 length before each message in a MoldUDP64 packet and a BinaryFILE (``prefixed(BLOCK, layout)``
# packs a whole block in one call).
BLOCK = MessageLayout(None, "block length", (u16("block_length"),), type_field=None)
_BLOCK_LENGTH = BLOCK.struct
read_type_locate = _TYPE_LOCATE.unpack_from
"""``read_type_locate(buffer, offset) -> (type byte as int, stock_locate)``: the feed's first look."""


def decode(buffer, offset: int = 0, length: int | None = None) -> dict[str, Any]:
    """Decode one ITCH message into a dict (text as ``str`` without padding)."""
    return ITCH.decode(buffer, offset, length)


def encode(fields: dict[str, Any]) -> bytes:
    """Encode a dict whose ``type`` is one of the 23 ITCH codes."""
    return ITCH.encode(fields)


def raw_to_dict(raw: tuple) -> dict[str, Any]:
    """Turn a raw tuple (from ``unpack_from`` or a ``BlockScanner``) into a dict."""
    return LAYOUT_BY_BYTE[raw[0][0]].to_dict(raw)


# --------------------------------------------------------------------------------------
# Block scanner: the feed's fast path over [u16 length][message] framing.
# --------------------------------------------------------------------------------------

# Counter slots of a BlockScanner (an array('q') the C side updates in place).
DECODED, FILTERED_OUT, MALFORMED = 0, 1, 2
COUNTER_NAMES = ("decoded", "filtered_out", "malformed")

try:  # the compiled fast path, built from setup.py (or by hand: see _itch_fast.c)
    from appliance.wire import _itch_fast  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _itch_fast = None

if _itch_fast is not None:
    _KIND_CODES = {"char": 0, "alpha": 1, "u8": 2, "u16": 3, "u32": 4, "u48": 5, "u64": 6}
    _itch_fast.configure(
        [None if lay is None else tuple((_KIND_CODES[k], n) for k, n in lay.signature) for lay in LAYOUT_BY_BYTE],
        WireFormatError,
    )


class _PyScan:
    """Pure-Python twin of ``_itch_fast.scan`` (same results, same counters, same errors)."""

    __slots__ = ("buffer", "offset", "end", "subscribed", "always", "strict", "counters", "final")

    def __init__(self, buffer, start, end, subscribed, always, strict, counters, final=False):
        self.final = final
        self.buffer, self.offset, self.end = buffer, start, end
        self.subscribed, self.always, self.strict, self.counters = subscribed, always, strict, counters

    def __iter__(self):
        return self

    def __next__(self):
        buffer, end, counters = self.buffer, self.end, self.counters
        subscribed, always = self.subscribed, self.always
        offset = self.offset
        while offset + 2 <= end:
            length = buffer[offset] << 8 | buffer[offset + 1]
            body = offset + 2
            if body + length > end:
                break  # incomplete block: stop here, ``offset`` tells the caller where
            if length == 0:
                self.offset = body
                if self.strict:
                    raise WireFormatError(offset, "zero-length message block")
                counters[MALFORMED] += 1
                offset = body
                continue
            type_byte = buffer[body]
            layout = LAYOUT_BY_BYTE[type_byte]
            next_offset = body + length
            if layout is None or layout.size != length:
                self.offset = next_offset
                if self.strict:
                    if layout is None:
                        raise WireFormatError(body, f"unknown ITCH message type {bytes([type_byte])!r}")
                    kind = "oversized" if length > layout.size else "truncated"
                    raise WireFormatError(offset, f"{kind} {layout.name} ({layout.type_code!r}): block length {length}, expected {layout.size}")
                counters[MALFORMED] += 1
                offset = next_offset
                continue
            if subscribed is not None and not always[type_byte] and not subscribed[buffer[body + 1] << 8 | buffer[body + 2]]:
                counters[FILTERED_OUT] += 1
                offset = next_offset
                continue
            self.offset = next_offset
            counters[DECODED] += 1
            return layout.unpack_from(buffer, body)
        if self.final and offset < end:
            self.offset = end
            if self.strict:
                raise WireFormatError(offset, f"truncated block: {end - offset} bytes left at the end, block needs more")
            counters[MALFORMED] += 1
            raise StopIteration
        self.offset = offset
        raise StopIteration


class BlockScanner:
    """Walks ``[u16 length][ITCH message]`` blocks and yields raw tuples of the messages that pass.

    ``subscribed`` (optional) is a 65536-byte map indexed by stock locate: a zero
    byte drops messages for that locate after reading only type and locate.
    Types in ``ALWAYS_PASS_TYPES`` pass regardless. Unknown types and blocks
    whose length disagrees with the type's size are counted in ``malformed`` and
    skipped, or raise ``WireFormatError`` when ``strict``. An incomplete block at
    the end stops the walk; the iterator's ``offset`` then says where it starts.
    """

    def __init__(self, subscribed_locates=None, *, strict: bool = False, use_c: bool | None = None) -> None:
        if subscribed_locates is not None and len(subscribed_locates) != 65536:
            raise ValueError("subscribed_locates must be a 65536-byte map indexed by stock locate")
        self.subscribed = subscribed_locates
        self.always = bytearray(256)
        for code in ALWAYS_PASS_TYPES:
            self.always[ord(code)] = 1
        self.strict = strict
        self.counters = array("q", [0, 0, 0])
        if use_c is None:
            use_c = _itch_fast is not None
        if use_c and _itch_fast is None:
            raise RuntimeError("the C fast path appliance.wire._itch_fast is not built")
        self.uses_c = bool(use_c)

    @staticmethod
    def locate_map(locates) -> bytearray:
        """A subscription map with 1 for each stock locate in ``locates``."""
        subscribed = bytearray(65536)
        for locate in locates:
            subscribed[locate] = 1
        return subscribed

    def scan(self, buffer, start: int = 0, end: int | None = None, final: bool = False):
        """An iterator of raw tuples over the blocks in ``buffer[start:end]``; see the class docstring.

        ``final``: the range is complete (a whole MoldUDP64 packet), so an incomplete
        tail is malformed (counted, or raised when strict) rather than left pending.
        """
        if end is None:
            end = len(buffer)
        if not 0 <= start <= end <= len(buffer):
            raise ValueError(f"bad range {start}:{end} of a {len(buffer)}-byte buffer")
        if self.uses_c:
            return _itch_fast.scan(buffer, start, end, self.subscribed, self.always, self.strict, self.counters, final)
        return _PyScan(buffer, start, end, self.subscribed, self.always, self.strict, self.counters, final)

    @property
    def decoded(self) -> int:
        return self.counters[DECODED]

    @property
    def filtered_out(self) -> int:
        return self.counters[FILTERED_OUT]

    @property
    def malformed(self) -> int:
        return self.counters[MALFORMED]


def iter_blocks(buffer, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """Yield ``(message_offset, length)`` for each complete block; raise on a block cut short.

    The strict, allocation-light walker used by tools and tests; the feed uses ``BlockScanner``.
    """
    if end is None:
        end = len(buffer)
    offset = start
    while offset < end:
        if offset + 2 > end:
            raise WireFormatError(offset, f"block length cut short: {end - offset} of 2 bytes")
        (length,) = _BLOCK_LENGTH.unpack_from(buffer, offset)
        if offset + 2 + length > end:
            raise WireFormatError(offset, f"message cut short: block says {length} bytes, {end - offset - 2} remain")
        yield offset + 2, length
        offset += 2 + length


def encode_block_into(buffer, offset: int, message: bytes) -> int:
    """Write ``[u16 length][message]`` at ``offset``; returns the bytes written."""
    _BLOCK_LENGTH.pack_into(buffer, offset, len(message))
    buffer[offset + 2:offset + 2 + len(message)] = message
    return 2 + len(message)
