"""OUCH 4.2: sizes and offsets from the spec, hand-written bytes, direction decides type U, round trips."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.wire import ouch, soupbintcp
from appliance.wire.errors import WireFormatError
from wire_testkit import message_dicts

INBOUND_SIZES = {"O": 49, "U": 47, "X": 19, "M": 20}
OUTBOUND_SIZES = {"S": 10, "A": 66, "U": 80, "C": 28, "E": 40, "J": 24, "B": 32, "P": 23, "I": 23}

TOKEN = b"ORD00000000001"
ENTER_BYTES = (b"O" + TOKEN + b"B" + b"\x00\x00\x01\x2c" + b"AAPL    " + b"\x7f\xff\xff\xff"
               + b"\x00\x01\x86\x9e" + b"FIRM" + b"Y" + b"A" + b"N" + b"\x00\x00\x00\x00" + b"N" + b"R")
ENTER = {"type": "O", "order_token": "ORD00000000001", "buy_sell_indicator": "B", "shares": 300, "stock": "AAPL",
         "price": ouch.MARKET_PRICE, "time_in_force": ouch.TIME_IN_FORCE_MARKET_HOURS, "firm": "FIRM",
         "display": "Y", "capacity": "A", "intermarket_sweep_eligibility": "N", "minimum_quantity": 0,
         "cross_type": "N", "customer_type": "R"}
CANCEL_BYTES = b"X" + b"T1            " + b"\x00\x00\x00\x00"
CANCEL = {"type": "X", "order_token": "T1", "shares": 0}
REPLACE_BYTES = (b"U" + b"T1            " + b"T2            " + b"\x00\x00\x00\x64" + b"\x00\x0f\x42\x40"
                 + b"\x00\x00\x00\x00" + b"Y" + b"N" + b"\x00\x00\x00\x0a")
REPLACE = {"type": "U", "existing_order_token": "T1", "replacement_order_token": "T2", "shares": 100,
           "price": 1_000_000, "time_in_force": 0, "display": "Y", "intermarket_sweep_eligibility": "N",
           "minimum_quantity": 10}
EXECUTED_BYTES = (b"E" + b"\x00\x00\x00\x00\x00\x00\x03\xe8" + b"T1            " + b"\x00\x00\x00\x64"
                  + b"\x00\x0f\x42\x40" + b"A" + b"\x00\x00\x00\x00\x00\x00\x00\x07")
EXECUTED = {"type": "E", "timestamp": 1000, "order_token": "T1", "executed_shares": 100,
            "execution_price": 1_000_000, "liquidity_flag": "A", "match_number": 7}
SYSTEM_BYTES = b"S" + b"\x00" * 7 + b"\x01" + b"S"
SYSTEM = {"type": "S", "timestamp": 1, "event_code": "S"}
CANCELED_BYTES = b"C" + b"\x00" * 8 + b"T1            " + b"\x00\x00\x00\x32" + b"U"
CANCELED = {"type": "C", "timestamp": 0, "order_token": "T1", "decrement_shares": 50, "reason": "U"}


def test_sizes_match_spec():
    assert {lay.type_code: lay.size for lay in ouch.INBOUND.layouts} == INBOUND_SIZES
    assert {lay.type_code: lay.size for lay in ouch.OUTBOUND.layouts} == OUTBOUND_SIZES


@pytest.mark.parametrize("layout,field,offset", [
    (ouch.ENTER_ORDER, "customer_type", 48), (ouch.ENTER_ORDER, "minimum_quantity", 43),
    (ouch.REPLACE_ORDER, "minimum_quantity", 43), (ouch.ACCEPTED, "order_reference_number", 49),
    (ouch.ACCEPTED, "bbo_weight_indicator", 65), (ouch.REPLACED, "previous_order_token", 65),
    (ouch.REPLACED, "bbo_weight_indicator", 79), (ouch.EXECUTED, "match_number", 32),
    (ouch.BROKEN_TRADE, "reason", 31), (ouch.CANCELED, "reason", 27),
])
def test_offsets_match_spec(layout, field, offset):
    assert layout.offset_of[field] == offset


@pytest.mark.parametrize("raw,fields,direction", [
    (ENTER_BYTES, ENTER, "in"), (CANCEL_BYTES, CANCEL, "in"), (REPLACE_BYTES, REPLACE, "in"),
    (EXECUTED_BYTES, EXECUTED, "out"), (SYSTEM_BYTES, SYSTEM, "out"), (CANCELED_BYTES, CANCELED, "out"),
])
def test_hand_written_bytes(raw, fields, direction):
    decode = ouch.decode_inbound if direction == "in" else ouch.decode_outbound
    encode = ouch.encode_inbound if direction == "in" else ouch.encode_outbound
    assert decode(raw) == fields
    assert encode(fields) == raw


def test_type_u_depends_on_direction():
    assert ouch.decode_inbound(REPLACE_BYTES)["replacement_order_token"] == "T2"
    with pytest.raises(WireFormatError) as info:      # 47 bytes are not an 80-byte Replaced
        ouch.decode_outbound(REPLACE_BYTES)
    assert "Replaced" in info.value.reason
    with pytest.raises(WireFormatError):
        ouch.decode_inbound(EXECUTED_BYTES)           # E is not an inbound type


@pytest.mark.parametrize("layout", ouch.INBOUND.layouts + ouch.OUTBOUND.layouts,
                         ids=lambda lay: f"{lay.type_code}-{lay.size}")
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_round_trip(layout, data):
    fields = data.draw(message_dicts(layout))
    raw = layout.encode(fields)
    protocol = ouch.INBOUND if layout in ouch.INBOUND.layouts else ouch.OUTBOUND
    assert protocol.decode(raw) == fields


@pytest.mark.parametrize("frame,fields,message", [
    (ouch.ENTER_ORDER_FRAME, ENTER, ENTER_BYTES),
    (ouch.REPLACE_ORDER_FRAME, REPLACE, REPLACE_BYTES),
    (ouch.CANCEL_ORDER_FRAME, CANCEL, CANCEL_BYTES),
])
def test_inbound_frames_are_the_unsequenced_packet_of_the_message(frame, fields, message):
    """A frame packs the SoupBinTCP prefix (length, 'U') and the message in one call: the same bytes as
    wrapping the encoded message, and the packet decodes back to it."""
    raw = frame.message.raw_values(fields)[1:]          # the values after the type byte, as a sender holds them
    packet = frame.pack(*raw)
    assert packet == soupbintcp.unsequenced_data(message)
    assert soupbintcp.decode_packet(packet) == {"packet_type": "U", "message": message}
    assert frame.layout.size == soupbintcp.PREFIX_SIZE + frame.message.size


def test_every_inbound_message_has_its_frame_and_outbound_none():
    frames = {ouch.ENTER_ORDER_FRAME, ouch.REPLACE_ORDER_FRAME, ouch.CANCEL_ORDER_FRAME, ouch.MODIFY_ORDER_FRAME}
    assert {f.message for f in frames} == set(ouch.INBOUND.layouts)
    assert all(f.packet is soupbintcp.UNSEQUENCED_DATA for f in frames)
    assert ouch.MODIFY_ORDER_FRAME.pack(b"T1".ljust(14), b"S", 5) == soupbintcp.unsequenced_data(
        ouch.encode_inbound({"type": "M", "order_token": "T1", "buy_sell_indicator": "S", "shares": 5}))


def test_a_frame_needs_a_data_packet_and_a_plain_typed_message():
    with pytest.raises(ValueError, match="carries no message"):
        soupbintcp.DataFrame(soupbintcp.LOGIN_REQUEST, ouch.CANCEL_ORDER)
    with pytest.raises(ValueError, match="carries no message"):
        soupbintcp.DataFrame(soupbintcp.DEBUG, ouch.CANCEL_ORDER)
    with pytest.raises(ValueError, match="plain struct fields"):
        soupbintcp.DataFrame(soupbintcp.SEQUENCED_DATA, soupbintcp.LOGIN_ACCEPTED)   # numeric fields


def test_every_outbound_message_starts_with_the_outbound_header():
    """A reader that needs only the venue's timestamp (the OMS telling replay from live) unpacks the header."""
    header = ouch.OUTBOUND_HEADER
    assert [(f.name, header.offset_of[f.name]) for f in header.fields] == [("type", 0), ("timestamp", 1)]
    for layout in ouch.OUTBOUND.layouts:
        assert layout.fields[:len(header.fields)] == header.fields
    assert header.struct.unpack_from(EXECUTED_BYTES) == (b"E", 1000)
