"""SoupBinTCP 3.0 sessions: the client and server state machines over the codec in ``soupbintcp``.

The state machines do no I/O and read no clock: ``receive(data, now_ns)`` takes
bytes from the peer and returns events, ``tick(now_ns)`` drives heartbeats and
timeouts, and ``take_outbound()`` hands over the bytes to write. So the same
code runs under asyncio, a busy-polling agent or a test that drives time by hand.

Server side, a ``SequencedStore`` per session holds every sequenced message and
outlives TCP connections; a ``ServerSession`` per connection logs the client in
and replays from the requested sequence number, then continues live. Client
side, ``ClientSession`` counts sequenced messages so it can log in again with its
next expected number after a disconnect.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from appliance.wire.errors import WireFormatError
from appliance.wire.schema import pad_alpha
from appliance.wire.soupbintcp import (
    CLIENT_HEARTBEAT_BYTES, END_OF_SESSION_BYTES, LOGOUT_REQUEST_BYTES, PREFIX_SIZE, REJECT_NOT_AUTHORIZED,
    REJECT_SESSION_NOT_AVAILABLE, SERVER_HEARTBEAT_BYTES, PacketReader, login_accepted, login_rejected,
    login_request, sequenced_data, unsequenced_data,
)

HEARTBEAT_INTERVAL_NS = 1_000_000_000
PEER_TIMEOUT_NS = 15_000_000_000


# ------------------------------------------------------------------ events

@dataclass(frozen=True)
class LoginAccepted:
    session: str
    sequence_number: int


@dataclass(frozen=True)
class LoginRejected:
    reason: str


@dataclass(frozen=True)
class SequencedMessage:
    sequence_number: int
    message: bytes


@dataclass(frozen=True)
class UnsequencedMessage:
    message: bytes


@dataclass(frozen=True)
class ClientLoggedIn:
    username: str
    session: str
    first_sequence_number: int  # where replay starts


@dataclass(frozen=True)
class LoginRefused:
    username: str
    reason: str


@dataclass(frozen=True)
class DebugText:
    text: str


@dataclass(frozen=True)
class EndOfSession:
    pass


@dataclass(frozen=True)
class ServerHeartbeat:
    """The server had nothing to send for its heartbeat interval: everything it queued before
    (the replay after a login, say) has arrived."""


@dataclass(frozen=True)
class LoggedOut:
    pass


@dataclass(frozen=True)
class PeerTimedOut:
    silent_ns: int


@dataclass(frozen=True)
class ProtocolError:
    error: WireFormatError


_SERVER_HEARTBEAT = ServerHeartbeat()


class SessionStateError(RuntimeError):
    """The application asked a session for something its state does not allow."""


# ------------------------------------------------------------------ shared machinery

class _Endpoint:
    """Byte collection, packet reassembly and heartbeat/timeout bookkeeping common to both sides."""

    def __init__(self, heartbeat_interval_ns: int, peer_timeout_ns: int, heartbeat_bytes: bytes,
                 on_protocol_error: Callable[[], None]) -> None:
        self._protocol_failed = on_protocol_error
        self.heartbeat_interval_ns = heartbeat_interval_ns
        self.peer_timeout_ns = peer_timeout_ns
        self._heartbeat_bytes = heartbeat_bytes
        self._out = bytearray()
        self._reader = PacketReader()
        self.last_sent_ns = 0
        self.last_received_ns = 0

    def _reset_connection(self, now_ns: int) -> None:
        self._out = bytearray()
        self._reader = PacketReader()
        self.last_sent_ns = now_ns
        self.last_received_ns = now_ns

    def _send(self, data: bytes, now_ns: int | None = None) -> None:
        self._out += data
        if now_ns is not None:
            self.last_sent_ns = now_ns

    def take_outbound(self) -> bytes:
        """Everything queued for the peer since the last call (write it to the socket in order)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def _packets(self, data, now_ns: int, events: list):
        """Yield complete packets; a framing error ends the connection with a ProtocolError event."""
        self.last_received_ns = now_ns
        self._reader.feed(data)
        while True:
            try:
                packet = self._reader.next_packet()
            except WireFormatError as exc:
                events.append(ProtocolError(exc))
                self._protocol_failed()
                return
            if packet is None:
                return
            yield packet

    def _heartbeat_and_timeout(self, now_ns: int, events: list, heartbeat: bool = True) -> bool:
        """Send a heartbeat after ``heartbeat_interval_ns`` of our silence; True if the peer timed out."""
        silent = now_ns - self.last_received_ns
        if silent >= self.peer_timeout_ns:
            events.append(PeerTimedOut(silent))
            return True
        if heartbeat and now_ns - self.last_sent_ns >= self.heartbeat_interval_ns:
            self._send(self._heartbeat_bytes, now_ns)
        return False


# ------------------------------------------------------------------ client

class ClientSession:
    """The client side: login, sequenced stream with implicit numbers, heartbeats, logout, re-login.

    States: ``disconnected`` -> (``connect``) ``login_sent`` -> ``logged_in`` ->
    ``logged_out`` | ``ended`` | ``rejected`` | ``dead`` (timeout or protocol
    error). ``connection_lost`` returns to ``disconnected`` keeping the session
    name and ``next_sequence_number``, so ``connect`` logs in again where it left off.
    """

    def __init__(self, username: str, password: str, session: str = "", next_sequence_number: int = 1, *,
                 heartbeat_interval_ns: int = HEARTBEAT_INTERVAL_NS, peer_timeout_ns: int = PEER_TIMEOUT_NS) -> None:
        pad_alpha(username, 6, "username")   # fail early, not at login
        pad_alpha(password, 10, "password")
        self.username = username
        self.password = password
        self.session = session
        self.next_sequence_number = next_sequence_number
        self.state = "disconnected"
        self._io = _Endpoint(heartbeat_interval_ns, peer_timeout_ns, CLIENT_HEARTBEAT_BYTES, self._protocol_failed)

    def connect(self, now_ns: int) -> None:
        """A new TCP connection is up: queue the login with the session and next expected number."""
        self._io._reset_connection(now_ns)
        self._io._send(login_request(self.username, self.password, self.session, self.next_sequence_number), now_ns)
        self.state = "login_sent"

    def connection_lost(self) -> None:
        self.state = "disconnected"

    def take_outbound(self) -> bytes:
        return self._io.take_outbound()

    def send_unsequenced(self, message: bytes, now_ns: int) -> None:
        if self.state != "logged_in":
            raise SessionStateError(f"cannot send data while {self.state}")
        self._io._send(unsequenced_data(message), now_ns)

    def logout(self, now_ns: int) -> None:
        if self.state not in ("logged_in", "login_sent"):
            raise SessionStateError(f"cannot log out while {self.state}")
        self._io._send(LOGOUT_REQUEST_BYTES, now_ns)
        self.state = "logged_out"

    def _protocol_failed(self) -> None:
        self.state = "dead"

    def receive(self, data, now_ns: int) -> list:
        """Bytes from the server -> events (LoginAccepted, SequencedMessage, ...)."""
        events: list = []
        if self.state in ("disconnected", "dead", "rejected"):
            return events
        for layout, offset, length in self._io._packets(data, now_ns, events):
            buffer = self._io._reader.buffer
            code = layout.type_code
            if code == "S":
                if self.state != "logged_in":
                    self._fail(events, offset, "sequenced data before login was accepted")
                    break
                events.append(SequencedMessage(self.next_sequence_number, bytes(buffer[offset + PREFIX_SIZE:offset + 2 + length])))
                self.next_sequence_number += 1
            elif code == "H":
                if self.state == "logged_in":
                    events.append(_SERVER_HEARTBEAT)
            elif code == "A" and self.state == "login_sent":
                try:
                    fields = layout.to_dict(layout.unpack_from(buffer, offset), offset)
                except WireFormatError as exc:
                    events.append(ProtocolError(exc))
                    self.state = "dead"
                    break
                self.session = fields["session"]
                self.next_sequence_number = fields["sequence_number"]
                self.state = "logged_in"
                events.append(LoginAccepted(self.session, self.next_sequence_number))
            elif code == "J" and self.state == "login_sent":
                reason = chr(buffer[offset + PREFIX_SIZE])
                self.state = "rejected"
                events.append(LoginRejected(reason))
                break
            elif code == "Z":
                self.state = "ended"
                events.append(EndOfSession())
                break
            elif code == "+":
                events.append(DebugText(bytes(buffer[offset + PREFIX_SIZE:offset + 2 + length]).decode("ascii", "replace")))
            else:
                self._fail(events, offset, f"unexpected {layout.name} from the server while {self.state}")
                break
        return events

    def _fail(self, events: list, offset: int, reason: str) -> None:
        events.append(ProtocolError(WireFormatError(self._io._reader.stream_offset + offset, reason)))
        self.state = "dead"

    def tick(self, now_ns: int) -> list:
        """Drive time: heartbeat after 1 s of our silence, ``PeerTimedOut`` after 15 s of the server's."""
        events: list = []
        if self.state in ("login_sent", "logged_in") and self._io._heartbeat_and_timeout(now_ns, events):
            self.state = "dead"
        return events


# ------------------------------------------------------------------ server

class SequencedStore:
    """Every sequenced message of one session, numbered from 1; outlives client connections."""

    def __init__(self, session: str) -> None:
        pad_alpha(session, 10, "session")
        self.session = session
        self.messages: list[bytes] = []
        self.ended = False

    @property
    def next_sequence_number(self) -> int:
        return len(self.messages) + 1

    def append(self, message: bytes) -> int:
        """Store a message; returns its sequence number."""
        if self.ended:
            raise SessionStateError(f"session {self.session!r} has ended")
        self.messages.append(bytes(message))
        return len(self.messages)

    def message(self, sequence_number: int) -> bytes:
        return self.messages[sequence_number - 1]


Authenticator = Callable[[str, str], bool]
StoreResolver = Callable[[str], "SequencedStore | None"]


class ServerSession:
    """The server side of one TCP connection, bound to a ``SequencedStore``.

    ``store`` is either the one store of a single-session server, or a callable
    ``username -> SequencedStore | None`` for a server with a session per firm:
    the store is then chosen at login (None rejects the login with 'S').

    On a Login Request it checks credentials (``authenticate(username, password)``)
    and the requested session, answers Login Accepted with the first sequence
    number it will send, replays the store from there and then streams whatever is
    appended (``send_sequenced`` or ``store.append`` followed by ``pump``/``tick``).
    Requested sequence 0 means "from now on" (no replay).
    """

    def __init__(self, store: SequencedStore | StoreResolver, authenticate: Authenticator, *,
                 heartbeat_interval_ns: int = HEARTBEAT_INTERVAL_NS, peer_timeout_ns: int = PEER_TIMEOUT_NS) -> None:
        if isinstance(store, SequencedStore):
            self._resolve_store: StoreResolver = lambda _username, _store=store: _store
            self.store: SequencedStore | None = store
        else:
            self._resolve_store = store
            self.store = None                   # known after login
        self.authenticate = authenticate
        self.state = "awaiting_login"
        self.username = ""
        self.next_to_send = 0
        self._io = _Endpoint(heartbeat_interval_ns, peer_timeout_ns, SERVER_HEARTBEAT_BYTES, self._protocol_failed)

    def connection_made(self, now_ns: int) -> None:
        self._io._reset_connection(now_ns)
        self.state = "awaiting_login"

    def connection_lost(self) -> None:
        self.state = "closed"

    def take_outbound(self) -> bytes:
        return self._io.take_outbound()

    def _protocol_failed(self) -> None:
        self.state = "closed"

    def send_sequenced(self, message: bytes, now_ns: int) -> int:
        """Append to the store and stream it if the client is logged in; returns the sequence number."""
        if self.store is None:
            raise SessionStateError("no session store before login")
        sequence_number = self.store.append(message)
        self.pump(now_ns)
        return sequence_number

    def pump(self, now_ns: int) -> None:
        """Send every stored message the logged-in client has not been sent yet."""
        if self.state != "logged_in":
            return
        messages = self.store.messages
        if self.next_to_send <= len(messages):
            send = self._io._send
            for index in range(self.next_to_send - 1, len(messages)):
                send(sequenced_data(messages[index]))
            self._io.last_sent_ns = now_ns
            self.next_to_send = len(messages) + 1

    def end_session(self, now_ns: int) -> None:
        """Mark the session ended and tell the client (End of Session)."""
        self.pump(now_ns)
        if self.store is not None:
            self.store.ended = True
        if self.state == "logged_in":
            self._io._send(END_OF_SESSION_BYTES, now_ns)
            self.state = "ended"

    def receive(self, data, now_ns: int) -> list:
        """Bytes from the client -> events (ClientLoggedIn, UnsequencedMessage, LoggedOut, ...)."""
        events: list = []
        if self.state in ("closed", "ended"):
            return events
        for layout, offset, length in self._io._packets(data, now_ns, events):
            buffer = self._io._reader.buffer
            code = layout.type_code
            if code == "U" and self.state == "logged_in":
                events.append(UnsequencedMessage(bytes(buffer[offset + PREFIX_SIZE:offset + 2 + length])))
            elif code == "R":
                pass
            elif code == "L" and self.state == "awaiting_login":
                try:
                    fields = layout.to_dict(layout.unpack_from(buffer, offset), offset)
                except WireFormatError as exc:
                    events.append(ProtocolError(WireFormatError(self._io._reader.stream_offset + exc.offset, exc.reason)))
                    self.state = "closed"
                    break
                self._login(fields, now_ns, events)
                if self.state != "logged_in":
                    break
            elif code == "O":
                self.state = "closed"
                events.append(LoggedOut())
                break
            elif code == "+":
                events.append(DebugText(bytes(buffer[offset + PREFIX_SIZE:offset + 2 + length]).decode("ascii", "replace")))
            else:
                events.append(ProtocolError(WireFormatError(self._io._reader.stream_offset + offset,
                                                            f"unexpected {layout.name} from the client while {self.state}")))
                self.state = "closed"
                break
        return events

    def _login(self, fields: dict, now_ns: int, events: list) -> None:
        username = fields["username"].strip()
        requested = fields["requested_session"].strip()
        store = None
        if not self.authenticate(username, fields["password"].strip()):
            reason = REJECT_NOT_AUTHORIZED
        else:
            store = self._resolve_store(username)
            if store is None or (requested and requested != store.session) or store.ended:
                reason = REJECT_SESSION_NOT_AVAILABLE
            else:
                reason = ""
        if reason:
            self._io._send(login_rejected(reason), now_ns)
            self.state = "closed"
            events.append(LoginRefused(username, reason))
            return
        self.store = store
        wanted = fields["requested_sequence_number"]
        next_sequence = store.next_sequence_number
        first = next_sequence if wanted == 0 or wanted > next_sequence else wanted
        self.username = username
        self.next_to_send = first
        self._io._send(login_accepted(store.session, first), now_ns)
        self.state = "logged_in"
        events.append(ClientLoggedIn(username, store.session, first))
        self.pump(now_ns)

    def tick(self, now_ns: int) -> list:
        """Drive time: stream new messages, heartbeat after 1 s of silence, time out after 15 s."""
        events: list = []
        if self.state in ("awaiting_login", "logged_in"):
            self.pump(now_ns)
            if self._io._heartbeat_and_timeout(now_ns, events, heartbeat=self.state == "logged_in"):
                self.state = "closed"
        return events
