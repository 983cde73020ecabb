"""The OMS's venue session (``oms/session.py``): telling the venue's replay from live traffic by the
OUCH outbound timestamp, and against a scripted peer on loopback: login, readiness after the
replay, heartbeats, the peer timeout, reconnects and their backoff, refused logins, End of
Session, garbage."""
from __future__ import annotations

import logging
import socket
import time

import pytest

from appliance.oms.session import VenueSession
from appliance.wire import ouch, soupbintcp
from appliance.wire.venue_time import NS_PER_DAY

DAY = 20_000 * NS_PER_DAY              # some UTC midnight, as epoch ns
LIVE_AFTER = DAY + 10 * 3_600 * 10**9  # 10:00 UTC


def _executed(since_midnight_ns: int) -> bytes:
    return ouch.encode_outbound({"type": "E", "timestamp": since_midnight_ns, "order_token": "T1",
                                 "executed_shares": 1, "execution_price": 1, "liquidity_flag": "A",
                                 "match_number": 1})


@pytest.mark.parametrize("since_midnight,live", [
    (LIVE_AFTER - DAY + 1, True),                # stamped just after the login: live
    (LIVE_AFTER - DAY, False),                   # at the instant: still replay
    (LIVE_AFTER - DAY - 10**9, False),           # a second before: replay
])
def test_stamped_live_reads_the_timestamp_from_the_outbound_header(since_midnight, live):
    session = VenueSession("127.0.0.1", 1, "ALGO1", "secret1")
    session.live_after_ns = LIVE_AFTER
    assert session._stamped_live(_executed(since_midnight)) is live


def test_stamped_before_midnight_with_a_login_after_it_is_replay_and_a_short_message_is_not_live():
    session = VenueSession("127.0.0.1", 1, "ALGO1", "secret1")
    session.live_after_ns = DAY + 60 * 10**9                 # logged in a minute after midnight
    assert session._stamped_live(_executed(NS_PER_DAY - 10**9)) is False    # 23:59:59 the day before
    assert session._stamped_live(_executed(2 * 60 * 10**9)) is True         # 00:02 today
    assert session._stamped_live(b"E" + b"\x00" * 7) is False               # shorter than the header


# ---------------------------------------------------------------- against a scripted peer on loopback

class Peer:
    """The venue's end of one TCP connection at a time, driven byte by byte by the test."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.reader = soupbintcp.PacketReader()

    def accept(self, session: VenueSession) -> None:
        """Accept the session's next connection (driving it meanwhile)."""
        self.listener.setblocking(False)

        def accepted():
            try:
                self.conn, _ = self.listener.accept()
                return True
            except BlockingIOError:
                return False
        drive(session, accepted, "the session to connect")
        self.conn.settimeout(5)
        self.reader = soupbintcp.PacketReader()

    def packet(self, session: VenueSession) -> dict:
        """The session's next packet (driving it meanwhile)."""
        self.conn.setblocking(False)
        got = []

        def arrived():
            while (found := self.reader.next_packet()) is not None:
                _layout, offset, length = found
                got.append(soupbintcp.decode_packet(self.reader.buffer, offset, length + 2))
            if got:
                return True
            try:
                self.reader.feed(self.conn.recv(65536))
            except BlockingIOError:
                pass
            return False
        drive(session, arrived, "a packet from the session")
        return got[0]

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def close_connection(self) -> None:
        self.conn.close()
        self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def drive(session: VenueSession, until, message: str, timeout: float = 10.0) -> list:
    """The agent's duty cycle (maintain, receive) until ``until()`` holds; every event seen."""
    events = []
    deadline = time.monotonic() + timeout
    while not until():
        now = time.monotonic_ns()
        events += session.maintain(now)
        events += session.receive(now)
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.001)
    return events


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


@pytest.fixture
def client(peer):
    """``client(**kw)`` -> a VenueSession for the peer (session S1, next sequence 5); all closed after the test."""
    made = []

    def make(**kw) -> VenueSession:
        kw = {"reconnect_min_ns": 1_000_000, "reconnect_max_ns": 8_000_000, **kw}
        made.append(VenueSession("127.0.0.1", peer.port, "ALGO1", "secret1", kw.pop("session", "S1"),
                                 kw.pop("next_sequence_number", 5), **kw))
        return made[-1]
    yield make
    for session in made:
        session.close()


def stamped(offset_ns: int) -> bytes:
    """An OUCH System Event stamped ``offset_ns`` from now (ns since UTC midnight, as venues stamp)."""
    return soupbintcp.sequenced_data(ouch.encode_outbound({"type": "S", "timestamp": (time.time_ns() + offset_ns)
                                                           % NS_PER_DAY, "event_code": "S"}))


def logged_in(peer: Peer, session: VenueSession, sequence: int = 5) -> None:
    peer.accept(session)
    assert peer.packet(session)["packet_type"] == "L"
    peer.send(soupbintcp.login_accepted("S1", sequence))
    drive(session, lambda: session.logged_in, "the login accepted")


def test_it_logs_in_with_its_session_and_next_sequence_and_is_ready_only_after_the_venues_heartbeat(peer, client):
    session = client()
    peer.accept(session)
    login = peer.packet(session)
    assert (login["packet_type"], login["username"].strip(), login["password"].strip(),
            login["requested_session"].strip(), int(login["requested_sequence_number"])) == \
        ("L", "ALGO1", "secret1", "S1", 5)
    assert not session.logged_in
    peer.send(soupbintcp.login_accepted("S1", 5))
    drive(session, lambda: session.logged_in, "the login accepted")
    assert session.logins == 1 and not session.ready(time.monotonic_ns())
    peer.send(stamped(-60 * 10**9))                         # the replay: made before the login
    drive(session, lambda: session.client.next_sequence_number == 6, "the replayed message")
    assert not session.ready(time.monotonic_ns())           # quiet after a replay proves nothing
    peer.send(soupbintcp.SERVER_HEARTBEAT_BYTES)            # only sent with nothing else queued: drained
    drive(session, lambda: session.ready(time.monotonic_ns()), "ready")
    assert session.replayed_by == "the venue's heartbeat"


def test_a_message_made_after_the_login_also_ends_the_replay(peer, client):
    session = client()
    logged_in(peer, session)
    peer.send(stamped(-5 * 10**9) + stamped(60 * 10**9))
    drive(session, lambda: session.ready(time.monotonic_ns()), "ready")
    assert session.replayed_by == "a message made after the login" and session.client.next_sequence_number == 7


def test_it_heartbeats_when_quiet_and_drops_a_silent_venue_then_logs_in_again_where_it_left_off(peer, client):
    session = client(heartbeat_ns=20_000_000, peer_timeout_ns=300_000_000)
    logged_in(peer, session)
    peer.send(stamped(-10**9))                              # one replayed message: next is 6
    assert peer.packet(session)["packet_type"] == "R"       # the client's heartbeat while quiet
    events = drive(session, lambda: session.state == "disconnected", "the peer timeout")
    assert any(type(e).__name__ == "PeerTimedOut" for e in events)
    assert session.disconnects == 1 and "venue silent" in session.last_error
    peer.close_connection()
    peer.accept(session)                                    # it comes back by itself
    login = peer.packet(session)
    assert int(login["requested_sequence_number"]) == 6 and login["requested_session"].strip() == "S1"
    assert session.connects == 2


def test_a_venue_that_closes_the_connection_is_reconnected_with_a_backoff_that_a_login_resets(peer, client):
    session = client(reconnect_min_ns=1_000_000, reconnect_max_ns=8_000_000)
    logged_in(peer, session)
    peer.close_connection()
    drive(session, lambda: session.state == "disconnected", "the loss noticed")
    assert session.last_error == "the venue closed the connection" and session.backoff_ns == 2_000_000
    peer.accept(session)
    assert peer.packet(session)["packet_type"] == "L"
    peer.close_connection()                                 # lost again before the login answer
    drive(session, lambda: session.state == "disconnected", "the second loss")
    assert session.backoff_ns == 4_000_000 and session.disconnects == 2
    peer.accept(session)
    assert peer.packet(session)["packet_type"] == "L"
    peer.send(soupbintcp.login_accepted("S1", 5))
    drive(session, lambda: session.logged_in, "logged in again")
    assert session.backoff_ns == 1_000_000


def test_refused_connects_back_off_doubling_to_the_cap():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()                                            # nobody listens there now
    session = VenueSession("127.0.0.1", port, "ALGO1", "secret1", reconnect_min_ns=1_000,
                           reconnect_max_ns=4_000)
    try:
        now = 10**12
        backoffs = []
        for _ in range(5):
            session.maintain(now)                               # connect: refused at once or on finishing
            deadline = time.monotonic() + 10
            while session.state == "connecting":
                assert time.monotonic() < deadline
                session.maintain(now)
                time.sleep(0.001)
            backoffs.append(session.next_attempt_ns - now)
            assert session.maintain(now) == [] and session.state == "disconnected"    # not before its time
            now = session.next_attempt_ns
        assert backoffs == [1_000, 2_000, 4_000, 4_000, 4_000] and session.connects == 5
        assert "ECONNREFUSED" in session.last_error
    finally:
        session.close()


@pytest.mark.parametrize("reason,session_after,backoff", [
    ("A", "S1", 8_000_000),        # not authorized: waits the longest before trying again
    ("S", "", 1_000_000),          # session not available: asks for whatever session the venue has now
])
def test_a_refused_login_is_tried_again_as_its_reason_says(peer, client, reason, session_after, backoff):
    session = client()
    peer.accept(session)
    assert peer.packet(session)["packet_type"] == "L"
    peer.send(soupbintcp.login_rejected(reason))
    drive(session, lambda: session.state == "disconnected", "the rejection")
    assert session.login_rejects == 1 and session.last_error == f"login rejected ({reason})"
    assert session.client.session == session_after and session.next_attempt_ns - time.monotonic_ns() <= backoff
    assert session.backoff_ns == min(2 * backoff, 8_000_000)
    peer.close_connection()
    peer.accept(session)
    assert peer.packet(session)["requested_session"].strip() == session_after


def test_end_of_session_ends_the_day_with_no_reconnect(peer, client):
    session = client()
    logged_in(peer, session)
    peer.send(soupbintcp.END_OF_SESSION_BYTES)
    drive(session, lambda: session.ended, "the end of session")
    assert session.sock is None
    time.sleep(0.02)                                        # past every backoff: still nothing
    peer.listener.setblocking(False)
    session.maintain(time.monotonic_ns() + 10**12)
    with pytest.raises(BlockingIOError):
        peer.listener.accept()
    assert session.connects == 1 and not session.send(b"x", time.monotonic_ns())


def test_garbage_from_the_venue_is_a_protocol_error_and_a_reconnect_not_a_crash(peer, client):
    session = client()
    logged_in(peer, session)
    peer.send(b"\x00\x02Q!")                                # no such packet type
    drive(session, lambda: session.state == "disconnected", "the protocol error")
    assert session.protocol_errors == 1 and session.last_error.startswith("protocol error")
    peer.close_connection()
    peer.accept(session)
    assert peer.packet(session)["packet_type"] == "L"


def test_each_login_refused_with_s_is_logged_as_a_refusal_to_be_tried_again(peer, client, caplog):
    """The fence of a takeover from another box is the venue refusing a live firm's second login ('S'):
    every refused attempt says so in the OMS's log (with no session name to drop as well)."""
    session = client(session="")                   # no session name to drop: the refusal is still said
    for attempt in (1, 2):
        peer.accept(session)
        assert peer.packet(session)["packet_type"] == "L"
        with caplog.at_level(logging.WARNING, logger="appliance.oms.session"):
            peer.send(soupbintcp.login_rejected("S"))
            drive(session, lambda: session.state == "disconnected", "the rejection")
        peer.close_connection()
        assert [r.getMessage() for r in caplog.records if "login refused by the venue ('S'" in r.getMessage()
                and f"refusal {attempt};" in r.getMessage()], caplog.text
        session.next_attempt_ns = 0
