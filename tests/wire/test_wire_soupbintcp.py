"""SoupBinTCP 3.0 codec: hand-written packets both ways, bad packets, stream reassembly, round trips."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.wire import soupbintcp as soup
from appliance.wire.errors import WireFormatError
from wire_testkit import TEXT_ALPHABET

LOGIN_BYTES = (b"\x00\x2f" + b"L" + b"ALICE " + b"secret    " + b"SESS1     " + b" " * 19 + b"5")
ACCEPTED_BYTES = b"\x00\x1f" + b"A" + b"SESS1     " + b" " * 18 + b"17"
REJECTED_BYTES = b"\x00\x02JA"
SEQUENCED_BYTES = b"\x00\x06Shello"
UNSEQUENCED_BYTES = b"\x00\x04Uabc"
DEBUG_BYTES = b"\x00\x03+hi"


def test_hand_written_packets_encode():
    assert soup.login_request("ALICE", "secret", "SESS1", 5) == LOGIN_BYTES
    assert soup.login_accepted("SESS1", 17) == ACCEPTED_BYTES
    assert soup.login_rejected("A") == REJECTED_BYTES
    assert soup.sequenced_data(b"hello") == SEQUENCED_BYTES
    assert soup.unsequenced_data(b"abc") == UNSEQUENCED_BYTES
    assert soup.debug("hi") == DEBUG_BYTES
    assert soup.SERVER_HEARTBEAT_BYTES == b"\x00\x01H" and soup.CLIENT_HEARTBEAT_BYTES == b"\x00\x01R"
    buffer = bytearray(16)
    assert soup.write_data_into(buffer, 2, b"S", b"hello") == 8
    assert bytes(buffer[2:10]) == SEQUENCED_BYTES


def test_hand_written_packets_decode():
    assert soup.decode_packet(LOGIN_BYTES) == {"packet_type": "L", "username": "ALICE", "password": "secret",
                                               "requested_session": "SESS1", "requested_sequence_number": 5}
    assert soup.decode_packet(ACCEPTED_BYTES) == {"packet_type": "A", "session": "SESS1", "sequence_number": 17}
    assert soup.decode_packet(REJECTED_BYTES) == {"packet_type": "J", "reject_reason_code": "A"}
    assert soup.decode_packet(SEQUENCED_BYTES) == {"packet_type": "S", "message": b"hello"}
    assert soup.decode_packet(b"\x00\x01Z") == {"packet_type": "Z"}


def test_left_justified_and_padded_numbers_from_a_peer_are_accepted():
    left = b"\x00\x1f" + b"A" + b"SESS1     " + b"17" + b" " * 18
    assert soup.decode_packet(left)["sequence_number"] == 17
    centred = b"\x00\x1f" + b"A" + b"SESS1     " + b"   17" + b" " * 15
    assert soup.decode_packet(centred)["sequence_number"] == 17


@pytest.mark.parametrize("packet,offset,words", [
    (b"\x00\x1f" + b"A" + b"SESS1     " + b" " * 17 + b"1x7", 13, "not a decimal"),
    (b"\x00\x1f" + b"A" + b"SESS1     " + b" " * 17 + b"-17", 13, "not a decimal"),
    (b"\x00\x00", 0, "length 0"),
    (b"\x00\x01?", 2, "unknown"),
    (b"\x00\x02H!", 0, "oversized"),
    (ACCEPTED_BYTES[:-1], 0, "truncated"),
    (b"\x00\x1eA" + b" " * 29, 0, "truncated Login Accepted"),
    (SEQUENCED_BYTES + b"x", 8, "oversized"),
])
def test_bad_packets_raise_with_offset(packet, offset, words):
    with pytest.raises(WireFormatError) as info:
        soup.decode_packet(packet)
    assert info.value.offset == offset
    assert words in info.value.reason


def test_packet_reader_reassembles_byte_by_byte():
    stream = LOGIN_BYTES + SEQUENCED_BYTES + b"\x00\x01H"
    reader = soup.PacketReader()
    types = []
    for i in range(len(stream)):
        reader.feed(stream[i:i + 1])
        while (packet := reader.next_packet()) is not None:
            types.append(packet[0].type_code)
    assert types == ["L", "S", "H"]


_alpha = lambda n: st.text(TEXT_ALPHABET, max_size=n)  # noqa: E731


@settings(max_examples=100, deadline=None)
@given(packet=st.one_of(
    st.builds(lambda u, p, s, n: (soup.login_request(u, p, s, n), {"packet_type": "L", "username": u, "password": p,
                                                                   "requested_session": s, "requested_sequence_number": n}),
              _alpha(6), _alpha(10), _alpha(10), st.integers(0, 10**20 - 1)),
    st.builds(lambda s, n: (soup.login_accepted(s, n), {"packet_type": "A", "session": s, "sequence_number": n}),
              _alpha(10), st.integers(0, 10**20 - 1)),
    st.builds(lambda r: (soup.login_rejected(r), {"packet_type": "J", "reject_reason_code": r}), st.sampled_from("AS")),
    st.builds(lambda m: (soup.sequenced_data(m), {"packet_type": "S", "message": m}), st.binary(max_size=300)),
    st.builds(lambda m: (soup.unsequenced_data(m), {"packet_type": "U", "message": m}), st.binary(max_size=300)),
    st.builds(lambda t: (soup.debug(t), {"packet_type": "+", "text": t}), st.text(TEXT_ALPHABET + " ", max_size=50)),
    st.sampled_from([(soup.SERVER_HEARTBEAT_BYTES, {"packet_type": "H"}), (soup.CLIENT_HEARTBEAT_BYTES, {"packet_type": "R"}),
                     (soup.END_OF_SESSION_BYTES, {"packet_type": "Z"}), (soup.LOGOUT_REQUEST_BYTES, {"packet_type": "O"})]),
))
def test_round_trip_every_packet_type(packet):
    raw, fields = packet
    assert soup.decode_packet(raw) == fields
    assert int.from_bytes(raw[:2], "big") == len(raw) - 2
