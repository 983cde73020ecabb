"""The feed's GLIMPSE 5.0 client: one snapshot over a non-blocking TCP socket, driven by ``poll``.

``start(now_ns)`` opens a non-blocking connection; each ``poll(now_ns)`` does what the socket
allows without waiting (finish the connect, send the SoupBinTCP Login Request for sequence 1,
read at most ``MAX_READ_PER_POLL`` bytes) and returns the state: ``connecting``, ``receiving``,
``done`` or ``failed``. Done means the GLIMPSE Snapshot message arrived: ``messages`` holds the
ITCH messages before it (raw bytes, checked as ITCH later by the caller) and ``next_sequence``
the ITCH sequence number to continue from; ``session`` is the SoupBinTCP session name.

Everything from the server is untrusted: a refused login, a framing error, data after the
Snapshot message, more than ``max_messages`` messages, a message no ITCH layout fits, or the
connection closing before the Snapshot message fail the attempt with ``error`` set, as does
``timeout_ns`` passing since ``start``. The caller retries with a backoff.
"""
from __future__ import annotations

import errno
import socket

from appliance.wire import glimpse, itch
from appliance.wire.errors import WireFormatError
from appliance.wire.soupbintcp_session import (
    ClientSession, DebugText, EndOfSession, LoginAccepted, LoginRejected, ProtocolError, SequencedMessage,
    ServerHeartbeat,
)

MAX_READ_PER_POLL = 1 << 20        # bytes read per poll: a big snapshot takes a few duty cycles, none long
MAX_MESSAGES = 4_000_000           # a snapshot larger than this is not a book we can hold
USERNAME = "FEED"                  # the server accepts any login (see appliance/exchange/glimpse.py)

_SIZE_BY_BYTE = itch.SIZE_BY_BYTE
_CONNECT_PENDING = (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY, errno.EWOULDBLOCK, 0)


class SnapshotClient:
    """One GLIMPSE snapshot at a time from ``(host, port)``; see the module docstring."""

    def __init__(self, host: str, port: int, *, timeout_ns: int, max_messages: int = MAX_MESSAGES) -> None:
        self.address = (host, port)
        self.timeout_ns = timeout_ns
        self.max_messages = max_messages
        self.state = "idle"
        self.error: str | None = None
        self.messages: list[bytes] = []
        self.next_sequence = 0
        self.session: str | None = None
        self._sock: socket.socket | None = None
        self._client: ClientSession | None = None
        self._deadline_ns = 0
        self._out = b""
        self.attempts = 0
        self.bytes_received = 0

    def start(self, now_ns: int) -> None:
        """Open a connection (never blocks); any attempt in progress is abandoned."""
        self.close()
        self.attempts += 1
        self.state = "connecting"
        self.error = None
        self.messages = []
        self.next_sequence = 0
        self.session = None
        self.bytes_received = 0
        self._deadline_ns = now_ns + self.timeout_ns
        self._client = ClientSession(USERNAME, "", "", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        self._sock = sock
        try:
            code = sock.connect_ex(self.address)
        except OSError as exc:
            code = exc.errno
        if code not in _CONNECT_PENDING:
            self._fail(f"cannot connect to {self.address[0]}:{self.address[1]}: {errno.errorcode.get(code, code)}")

    def poll(self, now_ns: int) -> str:
        """Progress without blocking; the state afterwards."""
        if self.state not in ("connecting", "receiving"):
            return self.state
        if now_ns > self._deadline_ns:
            self._fail(f"no complete snapshot within {self.timeout_ns // 1_000_000} ms")
            return self.state
        sock = self._sock
        if self.state == "connecting":
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._fail(f"cannot connect to {self.address[0]}:{self.address[1]}: "
                           f"{errno.errorcode.get(code, code)}")
                return self.state
            try:
                sock.getpeername()
            except OSError:                       # not connected yet
                return self.state
            self._client.connect(now_ns)
            self._out = self._client.take_outbound()
            self.state = "receiving"
        if self._out:
            try:
                sent = sock.send(self._out)
                self._out = self._out[sent:]
            except BlockingIOError:
                pass
            except OSError as exc:
                self._fail(f"send failed: {exc}")
                return self.state
        budget = MAX_READ_PER_POLL
        while budget > 0 and self.state == "receiving":
            try:
                data = sock.recv(min(budget, 262144))
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(f"receive failed: {exc}")
                break
            if not data:
                self._fail("the server closed the connection before the Snapshot message")
                break
            budget -= len(data)
            self.bytes_received += len(data)
            self._events(self._client.receive(data, now_ns))
        return self.state

    def _events(self, events: list) -> None:
        for event in events:
            if self.state != "receiving":
                return
            kind = type(event)
            if kind is SequencedMessage:
                self._message(event.message)
            elif kind is LoginAccepted:
                self.session = event.session
            elif kind is EndOfSession:
                if self.next_sequence:
                    self._done()
                else:
                    self._fail("End of Session before the Snapshot message")
            elif kind is LoginRejected:
                self._fail(f"login rejected: reason {event.reason}")
            elif kind is ProtocolError:
                self._fail(f"protocol error: {event.error}")
            elif kind in (ServerHeartbeat, DebugText):
                pass

    def _message(self, message: bytes) -> None:
        if self.next_sequence:
            self._fail("data after the Snapshot message")
        elif message[:1] == b"M":
            try:
                self.next_sequence = glimpse.decode_snapshot(message)
            except WireFormatError as exc:
                self._fail(f"bad Snapshot message: {exc}")
        elif not message or _SIZE_BY_BYTE[message[0]] != len(message):
            self._fail(f"not an ITCH message: {message[:12]!r} ({len(message)} bytes)")
        elif len(self.messages) >= self.max_messages:
            self._fail(f"more than {self.max_messages} messages")
        else:
            self.messages.append(message)

    def _done(self) -> None:
        self.state = "done"
        self._close_socket()

    def _fail(self, reason: str) -> None:
        self.state = "failed"
        self.error = reason
        self.messages = []
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Abandon any attempt in progress (the state goes back to idle)."""
        self._close_socket()
        self.state = "idle"
