"""ITCH 5.0: layouts against the spec, hand-written bytes, round trips, the C scanner against the schema."""
from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.wire import itch
from appliance.wire.errors import WireEncodeError, WireFormatError
from appliance.wire.schema import prefixed
from wire_testkit import (
    ADD_ORDER, ADD_ORDER_BYTES, BACKENDS, C_BUILT, DIRECTORY_BYTES, EXECUTED_BYTES, HAND_WRITTEN, REPLACE_BYTES,
    SYSTEM_EVENT_BYTES, frame, message_dicts,
)

# type -> size, straight from the spec table (PROTOCOLS.md), not from the schema.
SPEC_SIZES = {"S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21,
              "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19,
              "I": 50, "N": 20, "O": 48}
# A few offsets from the spec table: the schema computes them, the spec states them.
SPEC_OFFSETS = [("R", "round_lot_size", 21), ("R", "issue_sub_type", 27), ("R", "inverse_indicator", 38),
                ("H", "reason", 21), ("L", "stock", 15), ("V", "level_3", 27), ("K", "ipo_price", 24),
                ("J", "auction_collar_extension", 31), ("A", "price", 32), ("F", "attribution", 36),
                ("C", "execution_price", 32), ("U", "price", 31), ("P", "match_number", 36),
                ("Q", "cross_type", 39), ("I", "price_variation_indicator", 49), ("O", "upper_price_range_collar", 44),
                ("O", "near_execution_time", 32), ("h", "operational_halt_action", 20)]

def test_all_23_types_with_spec_sizes():
    assert {lay.type_code: lay.size for lay in itch.MESSAGES} == SPEC_SIZES


@pytest.mark.parametrize("code,field,offset", SPEC_OFFSETS)
def test_offsets_match_spec(code, field, offset):
    assert itch.ITCH.by_code[code].offset_of[field] == offset


def test_common_header_offsets():
    for layout in itch.MESSAGES:
        assert layout.offset_of["stock_locate"] == 1
        assert layout.offset_of["tracking_number"] == 3
        assert layout.offset_of["timestamp"] == 5
        assert layout.fields[4].name not in ("type", "stock_locate", "tracking_number", "timestamp")


@pytest.mark.parametrize("raw,fields", HAND_WRITTEN, ids=[f["type"] for _, f in HAND_WRITTEN])
def test_hand_written_bytes_decode_and_encode(raw, fields):
    assert itch.decode(raw) == fields
    assert itch.encode(fields) == raw
    assert list(itch.decode(raw))[:4] == ["type", "stock_locate", "tracking_number", "timestamp"]


def test_decode_at_offset_in_a_larger_buffer():
    buffer = b"xyz" + ADD_ORDER_BYTES + b"tail"
    assert itch.decode(buffer, 3, len(ADD_ORDER_BYTES)) == ADD_ORDER


def test_read_type_locate_fast_path():
    assert itch.read_type_locate(b"..." + EXECUTED_BYTES, 3) == (ord("E"), 258)


def test_pack_into_callers_buffer_at_offset():
    layout = itch.ITCH.by_code["A"]
    buffer = bytearray(b"\xee" * 50)
    written = layout.pack_into(buffer, 7, b"A", 5, 1, 123456789012, 99, b"B", 100, b"AAPL    ", 1234500)
    assert written == 36
    assert bytes(buffer[7:43]) == ADD_ORDER_BYTES
    assert buffer[:7] == b"\xee" * 7 and buffer[43:] == b"\xee" * 7


def test_alpha_is_space_padded_not_nul_padded():
    assert itch.encode(ADD_ORDER)[24:32] == b"AAPL    "


@pytest.mark.parametrize("bad", [
    {**ADD_ORDER, "shares": -1}, {**ADD_ORDER, "shares": 2**32}, {**ADD_ORDER, "stock": "TOOLONGSYM"},
    {**ADD_ORDER, "timestamp": 2**48}, {**ADD_ORDER, "buy_sell_indicator": "BS"}, {**ADD_ORDER, "bogus": 1},
    {k: v for k, v in ADD_ORDER.items() if k != "price"}, {**ADD_ORDER, "type": "Z"},
])
def test_encode_rejects_values_that_do_not_fit(bad):
    with pytest.raises(WireEncodeError):
        itch.encode(bad)


@pytest.mark.parametrize("buffer,offset_expected,words", [
    (ADD_ORDER_BYTES[:-1], 0, "truncated"),
    (ADD_ORDER_BYTES + b"!", 0, "oversized"),
    (b"Z" + b"\x00" * 20, 0, "unknown"),
    (b"", 0, "empty"),
    (ADD_ORDER_BYTES[:24] + b"AAP\xffL   " + ADD_ORDER_BYTES[32:], 24, "non-ASCII"),
])
def test_decode_errors_carry_offset_and_reason(buffer, offset_expected, words):
    with pytest.raises(WireFormatError) as info:
        itch.decode(buffer)
    assert info.value.offset == offset_expected
    assert words in info.value.reason


@pytest.mark.parametrize("layout", itch.MESSAGES, ids=lambda lay: lay.type_code)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_every_type(layout, data):
    fields = data.draw(message_dicts(layout))
    raw = layout.encode(fields)
    assert len(raw) == layout.size
    assert itch.decode(raw) == fields
    # the raw path gives the same bytes back
    out = bytearray(layout.size)
    layout.pack_into(out, 0, *layout.unpack_from(raw, 0))
    assert bytes(out) == raw


@pytest.mark.parametrize("layout", itch.MESSAGES, ids=lambda lay: lay.type_code)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_a_block_and_its_message_pack_as_one_layout(layout, data):
    """``prefixed(itch.BLOCK, layout)``: the u16 block length and the message in one struct call, the
    same bytes as the BinaryFILE / MoldUDP64 framing (a day-file generator's hot path)."""
    raw = layout.encode(data.draw(message_dicts(layout)))
    block = prefixed(itch.BLOCK, layout)
    out = bytearray(block.size)
    assert block.pack_into(out, 0, layout.size, *layout.unpack_from(raw, 0)) == 2 + layout.size
    assert bytes(out) == frame(raw)
    assert block.type_code is None and block.offset_of["type"] == itch.BLOCK.size


@pytest.mark.skipif(not C_BUILT, reason="C fast path not built")
@pytest.mark.parametrize("layout", itch.MESSAGES, ids=lambda lay: lay.type_code)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_c_scanner_matches_schema_on_every_type(layout, data):
    """The C side is driven by the schema; check it returns exactly what the struct codec returns."""
    messages = [layout.encode(data.draw(message_dicts(layout))) for _ in range(3)]
    stream = frame(*messages)
    got = list(itch.BlockScanner(use_c=True, strict=True).scan(stream))
    assert got == [layout.unpack_from(m, 0) for m in messages]
    assert got == list(itch.BlockScanner(use_c=False, strict=True).scan(stream))


def _stream():
    msgs = [SYSTEM_EVENT_BYTES, DIRECTORY_BYTES, ADD_ORDER_BYTES, EXECUTED_BYTES, REPLACE_BYTES]
    return frame(*msgs), msgs


@pytest.mark.parametrize("use_c", BACKENDS)
def test_scanner_locate_filter_counts_and_passes_directory(use_c):
    stream, msgs = _stream()
    scanner = itch.BlockScanner(itch.BlockScanner.locate_map([5]), use_c=use_c)
    got = [raw[0] for raw in scanner.scan(stream)]
    # S (locate 0) and R always pass; A has locate 5; E (258) and U (9) are filtered out.
    assert got == [b"S", b"R", b"A"]
    assert (scanner.decoded, scanner.filtered_out, scanner.malformed) == (3, 2, 0)


@pytest.mark.parametrize("use_c", BACKENDS)
def test_scanner_counts_and_skips_bad_blocks(use_c):
    stream = (frame(ADD_ORDER_BYTES) + b"\x00\x00"              # zero-length block
              + frame(b"Z" * 10)                                # unknown type
              + frame(ADD_ORDER_BYTES + b"xx")                  # oversized for A
              + frame(EXECUTED_BYTES[:-1])                      # truncated E
              + frame(EXECUTED_BYTES))
    scanner = itch.BlockScanner(use_c=use_c)
    got = [raw[0] for raw in scanner.scan(stream)]
    assert got == [b"A", b"E"]
    assert scanner.malformed == 4
    assert isinstance(scanner.counters, array)


@pytest.mark.parametrize("use_c", BACKENDS)
@pytest.mark.parametrize("mutate,offset,words", [
    (lambda s: s[:38] + b"\x00\x00" + s[38:], 38, "zero-length"),
    (lambda s: s[:38] + frame(b"Z" * 5) + s[38:], 40, "unknown"),
    (lambda s: s[:38] + frame(EXECUTED_BYTES + b"!") + s[38:], 38, "oversized"),
])
def test_strict_scanner_raises_with_offset(use_c, mutate, offset, words):
    stream = mutate(frame(ADD_ORDER_BYTES, EXECUTED_BYTES))
    with pytest.raises(WireFormatError) as info:
        list(itch.BlockScanner(use_c=use_c, strict=True).scan(stream))
    assert info.value.offset == offset
    assert words in info.value.reason


@pytest.mark.parametrize("use_c", BACKENDS)
def test_incomplete_tail_stops_and_reports_where(use_c):
    stream = frame(ADD_ORDER_BYTES, EXECUTED_BYTES)
    walk = itch.BlockScanner(use_c=use_c, strict=True).scan(stream[:-5])
    assert [raw[0] for raw in walk] == [b"A"]
    assert walk.offset == 38


def test_iter_blocks_strict():
    stream = frame(ADD_ORDER_BYTES, EXECUTED_BYTES)
    assert list(itch.iter_blocks(stream)) == [(2, 36), (40, 31)]
    with pytest.raises(WireFormatError) as info:
        list(itch.iter_blocks(stream[:-1]))
    assert info.value.offset == 38


def test_raw_to_dict():
    assert itch.raw_to_dict(itch.ITCH.by_code["A"].unpack_from(ADD_ORDER_BYTES, 0)) == ADD_ORDER
