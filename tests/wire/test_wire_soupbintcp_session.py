"""SoupBinTCP 3.0 sessions: the client and server state machines driven against each other."""
from __future__ import annotations

import pytest

from appliance.wire import soupbintcp, soupbintcp_session as soup

S = 1_000_000_000  # one second in ns


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


@pytest.mark.parametrize("side,end_state", [("server", "closed"), ("client", "dead")])
def test_a_side_whose_peer_is_silent_times_it_out(side, end_state):
    store = soup.SequencedStore("SESS1")
    client, server, wire = _pair(store)
    wire.take()
    session = server if side == "server" else client
    events = []
    for second in range(1, 20):
        events += session.tick(second * S)      # the other side never ticks: it is silent
        session.take_outbound()
    assert events == [soup.PeerTimedOut(15 * S)]
    assert session.state == end_state


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
    assert events[0].error.offset == soupbintcp.LOGIN_REQUEST.size + 2   # after the client's login
    assert server.state == "closed"
    events = client.receive(b"\x00\x02L!", 1)          # a login request sent to the client
    assert isinstance(events[0], soup.ProtocolError) and client.state == "dead"


def test_data_before_login_is_refused():
    store = soup.SequencedStore("SESS1")
    server = soup.ServerSession(store, lambda u, p: True)
    server.connection_made(0)
    events = server.receive(soupbintcp.unsequenced_data(b"abc"), 0)
    assert isinstance(events[0], soup.ProtocolError) and server.state == "closed"


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
