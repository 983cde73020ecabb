"""SoupBinTCP 3.0: hand-written packets, and the client and server state machines driven against each other."""
from __future__ import annotations

import pytest

from appliance.wire import soupbintcp as soup
from appliance.wire.errors import WireFormatError

S = 1_000_000_000  # one second in ns

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


# --- state machines against each other -------------------------------------------------

class Wire:
    """Connects a client and a server session: moves bytes both ways until both are quiet."""

    def __init__(self, client: soup.ClientSession, server: soup.ServerSession):
        self.client, self.server = client, server
        self.client_events: list = []
        self.server_events: list = []

    def pump(self, now):
        while True:
            to_server = self.client.take_outbound()
            to_client = self.server.take_outbound()
            if not to_server and not to_client:
                return
            if to_server:
                self.server_events += self.server.receive(to_server, now)
            if to_client:
                self.client_events += self.client.receive(to_client, now)

    def take(self):
        c, s = self.client_events, self.server_events
        self.client_events, self.server_events = [], []
        return c, s


def _pair(store, now=0, password="secret", session="", next_sequence=1):
    client = soup.ClientSession("ALICE", password, session, next_sequence)
    server = soup.ServerSession(store, lambda user, pw: (user, pw) == ("ALICE", "secret"))
    server.connection_made(now)
    client.connect(now)
    wire = Wire(client, server)
    wire.pump(now)
    return client, server, wire


def test_login_and_sequenced_stream_with_implicit_numbers():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    c, s = wire.take()
    assert c == [soup.LoginAccepted("SESS1", 1)]
    assert s == [soup.ClientLoggedIn("ALICE", "SESS1", 1)]
    for i in range(5):
        server.send_sequenced(b"msg%d" % i, 10)
    client.send_unsequenced(b"order", 10)
    wire.pump(10)
    c, s = wire.take()
    assert c == [soup.SequencedMessage(i + 1, b"msg%d" % i) for i in range(5)]
    assert s == [soup.UnsequencedMessage(b"order")]
    assert client.next_sequence_number == 6 and client.state == server.state == "logged_in"


def test_rejected_logins():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store, password="wrong")
    c, s = wire.take()
    assert c == [soup.LoginRejected("A")] and s == [soup.LoginRefused("ALICE", "A")]
    assert client.state == "rejected" and server.state == "closed"
    client, server, wire = _pair(store, session="OTHER")
    c, _ = wire.take()
    assert c == [soup.LoginRejected("S")]
    with pytest.raises(soup.SessionStateError):
        client.send_unsequenced(b"x", 0)


def test_disconnect_and_relogin_replays_from_next_expected():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    for i in range(3):
        server.send_sequenced(b"a%d" % i, 1)
    wire.pump(1)
    wire.take()
    # the connection drops; the server keeps sequencing into the store
    client.connection_lost()
    server.connection_lost()
    store.append(b"b0")
    store.append(b"b1")
    assert client.next_sequence_number == 4
    server2 = soup.ServerSession(store, lambda u, p: True)
    server2.connection_made(5 * S)
    client.connect(5 * S)
    wire2 = Wire(client, server2)
    wire2.pump(5 * S)
    c, s = wire2.take()
    assert c == [soup.LoginAccepted("SESS1", 4), soup.SequencedMessage(4, b"b0"), soup.SequencedMessage(5, b"b1")]
    assert s == [soup.ClientLoggedIn("ALICE", "SESS1", 4)]
    server2.send_sequenced(b"live", 6 * S)
    wire2.pump(6 * S)
    assert wire2.take()[0] == [soup.SequencedMessage(6, b"live")]


def test_login_with_explicit_older_sequence_replays_everything_from_there():
    store = soup.SequencedStore("SESS1")
    for i in range(4):
        store.append(b"m%d" % i)
    client, _, wire = _pair(store, session="SESS1", next_sequence=2)
    c, _ = wire.take()
    assert c[0] == soup.LoginAccepted("SESS1", 2)
    assert [e.sequence_number for e in c[1:]] == [2, 3, 4]


def test_heartbeats_both_ways_keep_the_session_alive():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    wire.take()
    for second in range(1, 40):
        now = second * S
        assert client.tick(now) == []
        assert server.tick(now) == []
        wire.pump(now)
    c, s = wire.take()
    assert s == [] and c and set(c) == {soup.ServerHeartbeat()}   # the client hears the server's heartbeats
    assert client.state == server.state == "logged_in"


def test_heartbeat_is_sent_only_after_a_second_of_silence():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    server.tick(S - 1)
    client.tick(S - 1)
    assert server.take_outbound() == b"" and client.take_outbound() == b""
    server.tick(S)
    client.tick(S)
    assert server.take_outbound() == b"\x00\x01H"
    assert client.take_outbound() == b"\x00\x01R"


def test_server_detects_silent_client():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    wire.take()
    events = []
    for second in range(1, 20):
        events += server.tick(second * S)      # the client never ticks: it is silent
        server.take_outbound()
    assert events == [soup.PeerTimedOut(15 * S)]
    assert server.state == "closed"


def test_client_detects_silent_server():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    wire.take()
    events = []
    for second in range(1, 20):
        events += client.tick(second * S)
        client.take_outbound()
    assert events == [soup.PeerTimedOut(15 * S)]
    assert client.state == "dead"


def test_logout():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    wire.take()
    client.logout(1)
    wire.pump(1)
    c, s = wire.take()
    assert s == [soup.LoggedOut()] and server.state == "closed" and client.state == "logged_out"


def test_end_of_session():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    wire.take()
    server.send_sequenced(b"last", 1)
    server.end_session(1)
    wire.pump(1)
    c, _ = wire.take()
    assert c == [soup.SequencedMessage(1, b"last"), soup.EndOfSession()]
    assert client.state == "ended"
    # a later login to the ended session is refused
    client2, _, wire2 = _pair(store)
    assert wire2.take()[0] == [soup.LoginRejected("S")]


def test_garbage_from_peer_is_a_protocol_error_event_not_an_exception():
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    wire.take()
    events = server.receive(b"\x00\x05?oops", 1)
    assert len(events) == 1 and isinstance(events[0], soup.ProtocolError)
    assert events[0].error.offset == LOGIN_BYTES.__len__() + 2
    assert server.state == "closed"
    events = client.receive(b"\x00\x02L!", 1)          # a login request sent to the client
    assert isinstance(events[0], soup.ProtocolError) and client.state == "dead"


def test_data_before_login_is_refused():
    store = soup.SequencedStore("SESS1")
    server = soup.ServerSession(store, lambda u, p: True)
    server.connection_made(0)
    events = server.receive(UNSEQUENCED_BYTES, 0)
    assert isinstance(events[0], soup.ProtocolError) and server.state == "closed"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from wire_testkit import TEXT_ALPHABET  # noqa: E402

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


def test_a_session_per_firm_is_chosen_at_login():
    stores = {"ALICE": soup.SequencedStore("ALICESESS"), "BOB": soup.SequencedStore("BOBSESS")}
    stores["BOB"].append(b"bob's first")
    users = {"ALICE": "secret", "BOB": "hunter2", "CAROL": "pw"}

    def connect(user, password):
        client = soup.ClientSession(user, password)
        server = soup.ServerSession(stores.get, lambda u, p: users.get(u) == p)
        assert server.store is None
        server.connection_made(0)
        client.connect(0)
        wire = Wire(client, server)
        wire.pump(0)
        return client, server, wire

    client, server, wire = connect("BOB", "hunter2")
    c, s = wire.take()
    assert c[0] == soup.LoginAccepted("BOBSESS", 1) and c[1] == soup.SequencedMessage(1, b"bob's first")
    assert server.store is stores["BOB"]
    server.send_sequenced(b"second", 5)
    wire.pump(5)
    assert wire.take()[0] == [soup.SequencedMessage(2, b"second")]
    assert stores["ALICE"].next_sequence_number == 1          # nothing leaked into another firm's stream
    client, server, wire = connect("CAROL", "pw")               # authenticated, but no session for her
    c, _ = wire.take()
    assert c == [soup.LoginRejected("S")] and server.state == "closed"
    with pytest.raises(soup.SessionStateError, match="before login"):
        server.send_sequenced(b"x", 0)
