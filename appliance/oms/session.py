"""The OMS's SoupBinTCP client: a non-blocking TCP socket polled by the agent's duty cycle.

The protocol itself (login, implicit sequence numbers, heartbeats, timeouts, logout) is
``appliance.wire.soupbintcp_session.ClientSession``, which does no I/O and reads no clock; this class
owns the socket around it:

- ``maintain(now)`` (the slow path): start a non-blocking connect when the backoff allows,
  finish it when the socket turns writable, log in with the journaled session name and the
  next sequence number the journal has not seen, drive heartbeats and the peer timeout.
- ``receive(now)``: read until the socket would block; returns the session's events
  (LoginAccepted, SequencedMessage, EndOfSession, ...). Never blocks.
- ``send_packet(packet, now, tag)``: one Unsequenced Data packet; a partial write keeps the rest
  queued (in order) for the next duty cycle. If the connection is lost while bytes of a packet
  are still queued here (never handed to the kernel), its ``tag`` lands in ``unsent``: the
  caller knows that message never left.
- Any failure (refused connect, reset, protocol error, peer timeout, login rejected) closes the
  socket and schedules a reconnect after a backoff doubling from ``reconnect_min`` to
  ``reconnect_max``. End of Session ends the day: no reconnect. A login refused with 'S'
  (session not available) for a named session is tried again asking for whatever session the
  venue has now; the caller compares what it gets with what it knew.

The replay after a login has no end marker in SoupBinTCP. It is known to be drained (``ready``)
when either arrives after the LoginAccepted, both of which the venue can only send after the
replay it queued at the login: a server heartbeat (sent only when it had nothing else to send),
or a sequenced message stamped later than the LoginAccepted's arrival plus ``replay_margin``
(made after the login, so live; the margin covers both clocks' error). Nothing else counts: a
quiet time proves nothing about a venue that is slow to send. Until then new orders wait.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time

from appliance.wire import ouch, soupbintcp
from appliance.wire.venue_time import NS_PER_DAY, epoch_of_stamp
from appliance.wire.soupbintcp_session import (
    ClientSession, EndOfSession, LoginAccepted, LoginRejected, PeerTimedOut, ProtocolError, SequencedMessage,
    ServerHeartbeat,
)

log = logging.getLogger("appliance.oms.session")

CONNECT_TIMEOUT_NS = 5_000_000_000
RECEIVE_BUFFER = 1 << 16
MAX_READS_PER_CYCLE = 16
DISCONNECTED, CONNECTING, CONNECTED, ENDED = "disconnected", "connecting", "connected", "ended"
_unpack_outbound_header = ouch.OUTBOUND_HEADER.struct.unpack_from
_OUTBOUND_HEADER_SIZE = ouch.OUTBOUND_HEADER.size
_SOCKET = socket.socket


class VenueSession:
    def __init__(self, host: str, port: int, username: str, password: str, session: str = "",
                 next_sequence_number: int = 1, *, heartbeat_ns: int = 1_000_000_000,
                 peer_timeout_ns: int = 15_000_000_000, reconnect_min_ns: int = 100_000_000,
                 reconnect_max_ns: int = 5_000_000_000, replay_margin_ns: int = 1_000_000):
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
        self.replay_margin_ns = replay_margin_ns
        self.login_ns = 0
        self.live_after_ns = 0                 # wall clock: a message stamped after this is live
        self.replayed = False
        self.replayed_by = ""                  # "heartbeat" or "live message" (logged)
        self._buffer = bytearray(RECEIVE_BUFFER)
        self._view = memoryview(self._buffer)
        self._pending = bytearray()
        self._pending_tags: list[tuple[int, object]] = []   # (end offset in _pending, tag) of queued packets
        self.unsent: list = []                 # tags of packets the connection was lost with, never sent
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

    @property
    def write_pending(self) -> bool:
        """Bytes the kernel did not take yet: ``flush`` must run again soon."""
        return bool(self._pending)

    def ready(self, now_ns: int) -> bool:
        """Logged in and the replay since the login known to be drained (module docstring)."""
        return self.replayed and self.logged_in

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
        self._pending_tags.clear()
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
        if self._pending_tags:                 # queued here, never handed to the kernel: never sent
            self.unsent.extend(tag for _end, tag in self._pending_tags)
            self._pending_tags.clear()
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
                if not self.replayed and self._stamped_live(event.message):
                    self._drained("a message made after the login")
            elif kind is ServerHeartbeat:
                if not self.replayed:
                    self._drained("the venue's heartbeat")
            elif kind is LoginAccepted:
                self.logins += 1
                self.login_ns = now_ns
                self.live_after_ns = time.time_ns() + self.replay_margin_ns
                self.replayed = False
                self.backoff_ns = self.reconnect_min_ns
                log.info("logged in: session %r, the venue sends from sequence %d", event.session,
                         event.sequence_number)
            elif kind is LoginRejected:
                self.login_rejects += 1
                if event.reason == soupbintcp.REJECT_NOT_AUTHORIZED:
                    self.backoff_ns = self.reconnect_max_ns
                elif event.reason == soupbintcp.REJECT_SESSION_NOT_AVAILABLE:
                    # the fence of a takeover from another box: while the old primary's session is live at
                    # the venue, the venue refuses this one; each refusal said, the login tried again
                    log.warning("login refused by the venue ('S', session not available: refusal %d; a connection "
                                "of this firm may still be live there, e.g. an old primary's until the venue ends "
                                "it): trying again after the backoff", self.login_rejects)
                    if self.client.session.strip():
                        log.warning("the venue refused session %r: asking for its current session next time",
                                    self.client.session)
                        self.client.session = ""
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

    def _stamped_live(self, message: bytes) -> bool:
        """Is this OUCH message stamped (ns since midnight, in its outbound header) after the login's arrival?"""
        if len(message) < _OUTBOUND_HEADER_SIZE:
            return False
        live_after = self.live_after_ns
        _type, since_midnight = _unpack_outbound_header(message)
        return epoch_of_stamp(since_midnight, live_after, ahead_ns=NS_PER_DAY // 2) > live_after

    def _drained(self, by: str) -> None:
        self.replayed = True
        self.replayed_by = by
        log.info("the venue's replay is drained (%s)", by)

    def send(self, message: bytes, now_ns: int) -> bool:
        """Hand one OUCH message to the socket (queued behind earlier bytes). False if not logged in."""
        client = self.client
        if self.state != CONNECTED or client.state != "logged_in":
            return False
        client.send_unsequenced(message, now_ns)
        return self._write(client.take_outbound(), now_ns)

    def send_packet(self, packet: bytes, now_ns: int, tag=None) -> bool:
        """Hand a complete Unsequenced Data packet to the socket (the hot path: the OMS packs the
        SoupBinTCP prefix and the OUCH message in one call). Bypassing ``ClientSession`` only means
        its heartbeat clock does not see these bytes: at worst one redundant heartbeat a second.
        False if not logged in, or if the connection failed with the packet not sent."""
        if self.state != CONNECTED or self.client.state != "logged_in":
            return False
        return self._write(packet, now_ns, tag)

    def _flush_session(self, now_ns: int) -> None:
        data = self.client.take_outbound()
        if data or self._pending:
            self._write(data, now_ns)

    def _write(self, data: bytes, now_ns: int, tag=None) -> bool:
        pending = self._pending
        tags = self._pending_tags
        if pending:
            pending += data
            if tag is not None:
                tags.append((len(pending), tag))
            data = bytes(pending)
            pending.clear()
        elif tag is not None:
            tags.append((len(data), tag))
        if not data:
            return True
        if self.stamp_sends:
            self.t_handed_ns = time.perf_counter_ns()
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            return self._send_failed(data, now_ns, tag, exc.strerror or exc)
        return self._sent(data, sent)

    def _send_failed(self, data, now_ns: int, tag, why) -> bool:
        """None of ``data`` left and the connection is gone: ``_lost`` reports every queued tag as unsent
        but ``tag``'s (the caller learns that from the False it gets)."""
        self._pending += data
        self._lost(now_ns, f"send: {why}")
        if tag is not None and self.unsent and self.unsent[-1] is tag:
            self.unsent.pop()
        return False

    def _sent(self, data, sent: int) -> bool:
        """The kernel took ``sent`` bytes of ``data``: the rest stays queued, in order, with its tags."""
        self.bytes_sent += sent
        if sent < len(data):
            self._pending += data[sent:]
            tags = self._pending_tags
            if tags:
                self._pending_tags = [(end - sent, t) for end, t in tags if end > sent]
        elif self._pending_tags:
            self._pending_tags.clear()
        return True

    def direct_fd(self) -> int:
        """The socket's descriptor when a packet may go straight to the kernel (logged in, nothing
        queued before it, a real socket: a stand-in object's ``send`` would be bypassed): the OMS's
        compiled order step sends there; -1 otherwise (the caller uses ``send_packet``)."""
        sock = self.sock
        if self._pending or self.state != CONNECTED or self.client.state != "logged_in" or type(sock) is not _SOCKET:
            return -1
        return sock.fileno()

    def handed(self, data, result: int, now_ns: int, tag) -> bool:
        """The compiled order step sent ``data`` on ``direct_fd()``: ``result`` bytes the kernel took, or
        -errno. The same bookkeeping as ``send_packet`` after its send: the rest queued with ``tag``, or
        the connection lost (its clock read before the send: ``_journal_fast.handed_ns``)."""
        if result == len(data):
            self.bytes_sent += result
            return True
        if tag is not None:
            self._pending_tags.append((len(data), tag))
        if result < 0:
            return self._send_failed(bytes(data), now_ns, tag, os.strerror(-result))
        return self._sent(data, result)

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
