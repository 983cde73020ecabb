"""The OMS's SoupBinTCP client: a non-blocking TCP socket polled by the agent's duty cycle.

The protocol itself (login, implicit sequence numbers, heartbeats, timeouts, logout) is
``appliance.wire.soupbintcp.ClientSession``, which does no I/O and reads no clock; this class
owns the socket around it:

- ``maintain(now)`` (the slow path): start a non-blocking connect when the backoff allows,
  finish it when the socket turns writable, log in with the journaled session name and the
  next sequence number the journal has not seen, drive heartbeats and the peer timeout.
- ``receive(now)``: read until the socket would block; returns the session's events
  (LoginAccepted, SequencedMessage, EndOfSession, ...). Never blocks.
- ``send(message, now)``: one OUCH message in an Unsequenced Data packet; a partial write keeps
  the rest queued (in order) for the next duty cycle.
- Any failure (refused connect, reset, protocol error, peer timeout, login rejected) closes the
  socket and schedules a reconnect after a backoff doubling from ``reconnect_min`` to
  ``reconnect_max``. End of Session ends the day: no reconnect.

The replay after a login has no end marker in SoupBinTCP: it is taken as complete when no
sequenced message has arrived for ``replay_quiet`` (or ``max(1 s, 20 x replay_quiet)`` after
the login, whichever comes first). Until then ``ready`` is False and new orders wait.
"""
from __future__ import annotations

import errno
import logging
import select
import socket
import time

from appliance.wire import soupbintcp
from appliance.wire.soupbintcp import (
    ClientSession, EndOfSession, LoginAccepted, LoginRejected, PeerTimedOut, ProtocolError, SequencedMessage,
)

log = logging.getLogger("appliance.oms.session")

CONNECT_TIMEOUT_NS = 5_000_000_000
RECEIVE_BUFFER = 1 << 16
MAX_READS_PER_CYCLE = 16
DISCONNECTED, CONNECTING, CONNECTED, ENDED = "disconnected", "connecting", "connected", "ended"


class VenueSession:
    def __init__(self, host: str, port: int, username: str, password: str, session: str = "",
                 next_sequence_number: int = 1, *, heartbeat_ns: int = 1_000_000_000,
                 peer_timeout_ns: int = 15_000_000_000, reconnect_min_ns: int = 100_000_000,
                 reconnect_max_ns: int = 5_000_000_000, replay_quiet_ns: int = 50_000_000):
        self.address = (host, port)
        self.client = ClientSession(username, password, session, next_sequence_number,
                                    heartbeat_interval_ns=heartbeat_ns, peer_timeout_ns=peer_timeout_ns)
        self.state = DISCONNECTED
        self.sock: socket.socket | None = None
        self.reconnect_min_ns = reconnect_min_ns
        self.reconnect_max_ns = reconnect_max_ns
        self.backoff_ns = reconnect_min_ns
        self.next_attempt_ns = 0
        self.connect_started_ns = 0
        self.replay_quiet_ns = replay_quiet_ns
        self.replay_cap_ns = max(1_000_000_000, 20 * replay_quiet_ns)
        self.login_ns = 0
        self.last_sequenced_ns = 0
        self.replayed = False
        self._buffer = bytearray(RECEIVE_BUFFER)
        self._view = memoryview(self._buffer)
        self._pending = bytearray()
        # tallies (the agent publishes them as counters)
        self.connects = 0
        self.logins = 0
        self.login_rejects = 0
        self.disconnects = 0
        self.protocol_errors = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.last_error = ""
        self.stamp_sends = False           # a bench wants the time each send is handed to the socket
        self.t_handed_ns = 0

    # ------------------------------------------------------------------ state

    @property
    def logged_in(self) -> bool:
        return self.state == CONNECTED and self.client.state == "logged_in"

    @property
    def ended(self) -> bool:
        return self.state == ENDED

    def ready(self, now_ns: int) -> bool:
        """Logged in and the replay since the login applied."""
        if not self.logged_in:
            return False
        if not self.replayed:
            since = now_ns - self.login_ns
            if since >= self.replay_cap_ns or now_ns - max(self.login_ns, self.last_sequenced_ns) >= self.replay_quiet_ns:
                self.replayed = True
        return self.replayed

    # ------------------------------------------------------------------ connection management

    def maintain(self, now_ns: int) -> list:
        """Connect, finish connecting, heartbeat, time out. Returns session events (PeerTimedOut)."""
        state = self.state
        if state == DISCONNECTED:
            if now_ns >= self.next_attempt_ns:
                self._start_connect(now_ns)
            return []
        if state == CONNECTING:
            self._finish_connect(now_ns)
            return []
        if state == CONNECTED:
            events = self.client.tick(now_ns)
            self._flush_session(now_ns)
            if events:
                for event in events:
                    if type(event) is PeerTimedOut:
                        self._lost(now_ns, f"venue silent for {event.silent_ns / 1e9:.1f} s")
            return events
        return []

    def _start_connect(self, now_ns: int) -> None:
        self.connects += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            self._retry_later(now_ns, f"connect to {self.address[0]}:{self.address[1]}: {errno.errorcode.get(code, code)}")
            return
        self.sock = sock
        self.state = CONNECTING
        self.connect_started_ns = now_ns
        if code == 0:
            self._finish_connect(now_ns)

    def _finish_connect(self, now_ns: int) -> None:
        sock = self.sock
        try:
            _, writable, failed = select.select([], [sock], [sock], 0)
        except (OSError, ValueError) as exc:
            self._lost(now_ns, f"connect: {exc}")
            return
        if not writable and not failed:
            if now_ns - self.connect_started_ns > CONNECT_TIMEOUT_NS:
                self._lost(now_ns, "connect timed out")
            return
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._lost(now_ns, f"connect to {self.address[0]}:{self.address[1]}: {errno.errorcode.get(code, code)}")
            return
        self.state = CONNECTED
        self._pending.clear()
        self.client.connect(now_ns)
        self.replayed = False
        log.info("connected to %s:%d; login as %s, session %r, from sequence %d", self.address[0], self.address[1],
                 self.client.username, self.client.session, self.client.next_sequence_number)
        self._flush_session(now_ns)

    def _retry_later(self, now_ns: int, why: str) -> None:
        self.last_error = why
        self.next_attempt_ns = now_ns + self.backoff_ns
        log.warning("venue session: %s; reconnecting in %.3f s", why, self.backoff_ns / 1e9)
        self.backoff_ns = min(self.backoff_ns * 2, self.reconnect_max_ns)

    def _close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self._pending.clear()

    def _lost(self, now_ns: int, why: str) -> None:
        was_connected = self.state == CONNECTED
        self._close_socket()
        self.client.connection_lost()
        self.replayed = False
        if was_connected:
            self.disconnects += 1
        self.state = DISCONNECTED
        self._retry_later(now_ns, why)

    # ------------------------------------------------------------------ data

    def receive(self, now_ns: int) -> list:
        """Everything readable now, as session events; [] when nothing came."""
        if self.state != CONNECTED:
            return []
        sock = self.sock
        view = self._view
        events: list = []
        for _ in range(MAX_READS_PER_CYCLE):
            try:
                n = sock.recv_into(self._buffer, RECEIVE_BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._lost(now_ns, f"receive: {exc.strerror or exc}")
                return events
            if n == 0:
                self._lost(now_ns, "the venue closed the connection")
                return events
            self.bytes_received += n
            events += self.client.receive(view[:n], now_ns)
            if self.client.state != "logged_in":
                break
            if n < RECEIVE_BUFFER:
                break
        if events:
            self._after_events(events, now_ns)
        return events

    def _after_events(self, events: list, now_ns: int) -> None:
        for event in events:
            kind = type(event)
            if kind is SequencedMessage:
                self.last_sequenced_ns = now_ns
            elif kind is LoginAccepted:
                self.logins += 1
                self.login_ns = now_ns
                self.last_sequenced_ns = 0
                self.backoff_ns = self.reconnect_min_ns
                log.info("logged in: session %r, the venue sends from sequence %d", event.session,
                         event.sequence_number)
            elif kind is LoginRejected:
                self.login_rejects += 1
                if event.reason == soupbintcp.REJECT_NOT_AUTHORIZED:
                    self.backoff_ns = self.reconnect_max_ns
                self._lost(now_ns, f"login rejected ({event.reason})")
            elif kind is ProtocolError:
                self.protocol_errors += 1
                self._lost(now_ns, f"protocol error: {event.error}")
            elif kind is EndOfSession:
                log.info("the venue ended the session (End of Session)")
                self._close_socket()
                self.state = ENDED
        if self.state == CONNECTED and self.client.state == "dead":
            self._lost(now_ns, "session dead")

    def send(self, message: bytes, now_ns: int) -> bool:
        """Hand one OUCH message to the socket (queued behind earlier bytes). False if not logged in."""
        client = self.client
        if self.state != CONNECTED or client.state != "logged_in":
            return False
        client.send_unsequenced(message, now_ns)
        return self._write(client.take_outbound(), now_ns)

    def send_packet(self, packet: bytes, now_ns: int) -> bool:
        """Hand a complete Unsequenced Data packet to the socket (the hot path: the OMS packs the
        SoupBinTCP prefix and the OUCH message in one call). Bypassing ``ClientSession`` only means
        its heartbeat clock does not see these bytes: at worst one redundant heartbeat a second."""
        if self.state != CONNECTED or self.client.state != "logged_in":
            return False
        return self._write(packet, now_ns)

    def _flush_session(self, now_ns: int) -> None:
        data = self.client.take_outbound()
        if data or self._pending:
            self._write(data, now_ns)

    def _write(self, data: bytes, now_ns: int) -> bool:
        pending = self._pending
        if pending:
            pending += data
            data = bytes(pending)
            pending.clear()
        if not data:
            return True
        if self.stamp_sends:
            self.t_handed_ns = time.perf_counter_ns()
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(now_ns, f"send: {exc.strerror or exc}")
            return False
        self.bytes_sent += sent
        if sent < len(data):
            pending += data[sent:]
        return True

    def flush(self, now_ns: int) -> None:
        if self.state == CONNECTED and self._pending:
            self._write(b"", now_ns)

    def logout(self, now_ns: int) -> None:
        """Logout Request and close (shutdown)."""
        if self.state == CONNECTED and self.client.state in ("logged_in", "login_sent"):
            try:
                self.client.logout(now_ns)
                self._flush_session(now_ns)
            except Exception as exc:            # never let a shutdown path raise
                log.warning("logout: %s", exc)
        self._close_socket()
        if self.state != ENDED:
            self.state = DISCONNECTED

    def close(self) -> None:
        self._close_socket()
