"""MoldUDP64: hand-written packets, packing under a payload limit, the feed scanner, sequence tracking."""
from __future__ import annotations

import pytest

from appliance.wire import itch, moldudp64 as mold
from appliance.wire.errors import WireEncodeError, WireFormatError
from wire_testkit import ADD_ORDER_BYTES, BACKENDS, EXECUTED_BYTES, SYSTEM_EVENT_BYTES

SESSION = b"SESSION001"

HEARTBEAT = SESSION + b"\x00\x00\x00\x00\x00\x00\x00\x2a" + b"\x00\x00"
END_OF_SESSION = SESSION + b"\x00\x00\x00\x00\x00\x00\x01\x00" + b"\xff\xff"
REQUEST = b"ABC       " + b"\x00\x00\x00\x00\x00\x00\x00\x05" + b"\x00\x03"
DOWNSTREAM = (SESSION + b"\x00\x00\x00\x00\x00\x00\x00\x07" + b"\x00\x02"
              + b"\x00\x24" + ADD_ORDER_BYTES + b"\x00\x1f" + EXECUTED_BYTES)


def test_hand_written_heartbeat_end_and_request():
    assert mold.heartbeat("SESSION001", 42) == HEARTBEAT
    assert mold.end_of_session(SESSION, 256) == END_OF_SESSION
    assert mold.request("ABC", 5, 3) == REQUEST
    assert mold.decode_request(REQUEST) == ("ABC", 5, 3)
    packet = mold.decode_packet(HEARTBEAT)
    assert packet.is_heartbeat and packet.sequence_number == 42 and packet.messages == ()
    assert mold.decode_packet(END_OF_SESSION).is_end_of_session


def test_hand_written_downstream_packet():
    packet = mold.decode_packet(DOWNSTREAM)
    assert (packet.session, packet.sequence_number, packet.message_count) == ("SESSION001", 7, 2)
    assert packet.messages == (ADD_ORDER_BYTES, EXECUTED_BYTES)
    assert list(mold.iter_messages(DOWNSTREAM)) == [(7, 22, 36), (8, 60, 31)]
    assert mold.pack_messages("SESSION001", 7, [ADD_ORDER_BYTES, EXECUTED_BYTES]) == [DOWNSTREAM]


def test_packing_respects_payload_limit_and_numbers_messages():
    messages = [ADD_ORDER_BYTES, EXECUTED_BYTES, SYSTEM_EVENT_BYTES] * 100
    packets = mold.pack_messages("S1", 1000, messages, max_payload=200)
    assert all(len(p) <= 20 + 200 for p in packets)
    seen = []
    expected_sequence = 1000
    for p in packets:
        decoded = mold.decode_packet(p)
        assert decoded.sequence_number == expected_sequence
        expected_sequence += decoded.message_count
        seen.extend(decoded.messages)
    assert seen == messages
    assert max(len(p) for p in packets) > 150          # packets are filled, not one message each


def test_builder_refuses_message_larger_than_payload():
    builder = mold.PacketBuilder("S1", max_payload=30)
    with pytest.raises(WireEncodeError):
        builder.add(ADD_ORDER_BYTES)


@pytest.mark.parametrize("packet,offset,words", [
    (DOWNSTREAM[:19], 0, "shorter than its 20-byte header"),
    (DOWNSTREAM[:-1], 58, "truncated"),
    (DOWNSTREAM + b"\x00", 91, "oversized"),
    (DOWNSTREAM[:18] + b"\x00\x03" + DOWNSTREAM[20:], 91, "truncated"),
    (HEARTBEAT + b"x", 20, "after a heartbeat"),
])
def test_bad_packets_raise_with_offset(packet, offset, words):
    with pytest.raises(WireFormatError) as info:
        mold.decode_packet(packet)
    assert info.value.offset == offset
    assert words in info.value.reason


@pytest.mark.parametrize("bad", [REQUEST[:-1], REQUEST + b"\x00"])
def test_bad_request(bad):
    with pytest.raises(WireFormatError):
        mold.decode_request(bad)


@pytest.mark.parametrize("use_c", BACKENDS)
def test_feed_scanner_walks_in_place_with_filter_and_counts(use_c):
    feed = mold.FeedPacketScanner(itch.BlockScanner.locate_map([5]), use_c=use_c)
    buffer = bytearray(2048)                       # a recv_into buffer, bigger than the packet
    buffer[:len(DOWNSTREAM)] = DOWNSTREAM
    got = list(feed.scan(buffer, len(DOWNSTREAM)))
    assert [raw[0] for raw in got] == [b"A"]       # E has locate 258: skipped after type+locate
    assert feed.sequence_number == 7 and feed.message_count == 2
    assert feed.scanner.filtered_out == 1
    assert list(feed.scan(buffer, 10)) == [] and feed.bad_packets == 1
    assert list(feed.scan(HEARTBEAT, len(HEARTBEAT))) == [] and feed.bad_packets == 1
    garbage = DOWNSTREAM[:20] + b"\x00\x05ZZZZZ" + b"\x00\x24" + ADD_ORDER_BYTES
    assert [raw[0] for raw in feed.scan(garbage, len(garbage))] == [b"A"]
    assert feed.scanner.malformed == 1


def test_sequence_tracker_gaps_duplicates_overlaps():
    tracker = mold.SequenceTracker()
    assert tracker.accept(1, 3) == 0 and tracker.next_expected == 4
    assert tracker.accept(1, 3) == -1 and tracker.duplicates == 1
    assert tracker.accept(2, 4) == 2 and tracker.next_expected == 6        # overlap: skip 2
    assert tracker.accept(10, 1) == 0 and tracker.gap == (6, 4) and tracker.gaps == 1
    assert tracker.accept(12, mold.HEARTBEAT_COUNT) == -1 and tracker.gap == (11, 1)


@pytest.mark.parametrize("use_c", BACKENDS)
def test_feed_scanner_skips_already_seen_leading_messages(use_c):
    tracker = mold.SequenceTracker(next_expected=8)            # message 7 was in an earlier packet
    feed = mold.FeedPacketScanner(use_c=use_c)
    skip = tracker.accept(7, 2)
    assert skip == 1
    assert [raw[0] for raw in feed.scan(DOWNSTREAM, len(DOWNSTREAM), skip)] == [b"E"]
    assert tracker.next_expected == 9
    assert list(feed.scan(DOWNSTREAM, len(DOWNSTREAM), skip=5)) == []   # more than the packet holds


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=100, deadline=None)
@given(messages=st.lists(st.binary(min_size=1, max_size=120), max_size=60),
       first=st.integers(1, 2**63), limit=st.integers(130, 1400))
def test_round_trip_packets(messages, first, limit):
    packets = mold.pack_messages("SESS", first, messages, limit)
    out, sequence = [], first
    for p in packets:
        decoded = mold.decode_packet(p)
        assert decoded.session == "SESS" and decoded.sequence_number == sequence and len(p) <= 20 + limit
        sequence += decoded.message_count
        out.extend(decoded.messages)
    assert out == messages


@pytest.mark.parametrize("use_c", BACKENDS)
def test_feed_scanner_counts_a_block_cut_short_by_the_packet_end(use_c):
    feed = mold.FeedPacketScanner(use_c=use_c)
    cut = DOWNSTREAM[:-4]
    walk = feed.scan(cut, len(cut))
    assert [raw[0] for raw in walk] == [b"A"]
    assert feed.scanner.malformed == 1 and walk.offset == len(cut)
    assert list(walk) == [] and feed.scanner.malformed == 1        # counted once


@pytest.mark.parametrize("use_c", BACKENDS)
def test_final_strict_scan_raises_on_cut_tail(use_c):
    with pytest.raises(WireFormatError) as info:
        list(itch.BlockScanner(strict=True, use_c=use_c).scan(DOWNSTREAM[:-4], 20, final=True))
    assert info.value.offset == 58 and "truncated" in info.value.reason
