"""The exchange's GLIMPSE 5.0 snapshot service: the venue's current book over SoupBinTCP.

A client connects, sends a SoupBinTCP Login Request (for sequence 1, as the spec asks) and
receives, as sequenced data: one System Event (where the day stands), per symbol a Stock
Directory and a Stock Trading Action (halted or trading), an Add Order ('A', or 'F' when
attributed) for every displayed resting order in time priority (bids best first, then asks),
and the GLIMPSE Snapshot message naming the next ITCH sequence number N. Then End of Session,
and the server closes the connection.

Consistency with the MoldUDP64 stream: ``build_snapshot`` reads the matching engine's books
and the message store's next sequence number in one call on the exchange's single-threaded
loop, between two venue requests, and every request both changes the books and appends its
ITCH messages to the store before it returns. So the snapshot is exactly "every ITCH message
before N applied": a feed applies the live stream from N on.

Login: any username and password are accepted (the username is logged). The same data goes
unauthenticated to anyone on the market-data network (the MoldUDP64 feed and its re-request
server), so a password here would protect nothing and would put one more secret into the
appliance's layout. The requested session must be blank or the venue's.

Bad clients never hang the venue: a client that has not logged in within ``login_timeout_s``,
one that sends more than ``MAX_INBOUND_BYTES`` (a login is 49 bytes), garbage (a SoupBinTCP
protocol error), or any connection still open ``deadline_s`` after it was made (a client that
does not read its snapshot) is dropped and counted; at most ``max_clients`` connections at once.
"""
from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from appliance.wire import glimpse
from appliance.wire.soupbintcp_session import ClientLoggedIn, LoginRefused, ProtocolError, SequencedStore, ServerSession
from appliance.wire.venue_time import ns_since_midnight

from . import itch_encoder as ie
from .events import AddOrder, TradingAction

MAX_INBOUND_BYTES = 4096        # a client says one Login Request (49 bytes) and maybe a heartbeat or a logout
LOGIN_TIMEOUT_S = 2.0
DEADLINE_S = 30.0               # the whole connection: a client that does not read its snapshot is aborted
MAX_CLIENTS = 16


def build_snapshot(venue) -> list[bytes]:
    """The venue's state now as GLIMPSE messages, the Snapshot message (next ITCH sequence) last."""
    itch = venue.itch
    ts = ns_since_midnight(venue.clock())
    encode = itch.encode
    event = ie.START_OF_MARKET_HOURS if venue.state == "open" else \
        ie.END_OF_MESSAGES if venue.state == "closed" else ie.START_OF_MESSAGES
    out = [itch.system_event(event, ts)]
    for symbol in itch.symbols:
        locate = itch.locate[symbol]
        book = venue.engine.books[symbol]
        out.append(itch.stock_directory(symbol, ts))
        out.append(encode(TradingAction(symbol, "H" if book.halted else "T"), locate, ts))
        for side in (book.bid_side, book.ask_side):
            levels, sign = side.levels, side.sign
            for key in reversed(side.keys):              # best first
                for order in levels[key * sign].orders:  # time priority
                    if order.leaves and order.displayed:
                        out.append(encode(AddOrder(order.ref, order.side, order.leaves, symbol, order.price,
                                                   order.attribution), locate, ts))
    out.append(glimpse.snapshot(venue.store.next_sequence))
    return out


@dataclass
class SnapshotCounters:
    connections: int = 0
    snapshots: int = 0              # snapshots sent (logins accepted)
    messages: int = 0               # messages in them, Snapshot messages included
    refused: int = 0                # logins refused (wrong session name)
    protocol_errors: int = 0        # garbage, oversized packets, unexpected packets
    oversized: int = 0              # clients that sent more than MAX_INBOUND_BYTES
    timeouts: int = 0               # no login in time, or still connected at the deadline
    over_limit: int = 0             # connections beyond max_clients, closed at once


class GlimpseServer:
    """Serves snapshots of ``venue`` (a ``Venue``, or what ``build`` reads) on one TCP port; ``log`` takes one line."""

    def __init__(self, venue, log, *, login_timeout_s: float = LOGIN_TIMEOUT_S, deadline_s: float = DEADLINE_S,
                 max_clients: int = MAX_CLIENTS, build=build_snapshot) -> None:
        self.venue = venue
        self.build = build              # venue -> the snapshot's messages (a replay's: its recorded book)
        self.log = log
        self.login_timeout_s = login_timeout_s
        self.deadline_s = deadline_s
        self.max_clients = max_clients
        self.counters = SnapshotCounters()
        self.connections: set[GlimpseConnection] = set()

    def store_for_login(self, username: str) -> SequencedStore:
        """A store holding a snapshot of now: built at the login, in one step on the loop."""
        store = SequencedStore(self.venue.session)
        for message in self.build(self.venue):
            store.append(message)
        self.counters.snapshots += 1
        self.counters.messages += len(store.messages)
        return store

    async def start(self, host: str, port: int):
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: GlimpseConnection(self), host, port, reuse_address=True)

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.abort()


def _any_credentials(username: str, password: str) -> bool:
    """Any login is accepted: see the module docstring."""
    return True


class GlimpseConnection(asyncio.Protocol):
    """One snapshot client: login, the snapshot, End of Session, close."""

    def __init__(self, server: GlimpseServer) -> None:
        self.server = server
        self.session = ServerSession(server.store_for_login, _any_credentials)
        self.transport: asyncio.Transport | None = None
        self.received = 0
        self._timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        server = self.server
        server.counters.connections += 1
        if len(server.connections) >= server.max_clients:
            server.counters.over_limit += 1
            transport.abort()
            return
        server.connections.add(self)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.session.connection_made(time.monotonic_ns())
        loop = asyncio.get_running_loop()
        self._timers = [loop.call_later(server.login_timeout_s, self._login_timeout),
                        loop.call_later(server.deadline_s, self._deadline)]

    def data_received(self, data: bytes) -> None:
        server = self.server
        self.received += len(data)
        if self.received > MAX_INBOUND_BYTES:
            server.counters.oversized += 1
            server.log(f"snapshot client dropped: {self.received} bytes sent, more than {MAX_INBOUND_BYTES}")
            self.abort()
            return
        session = self.session
        for event in session.receive(data, time.monotonic_ns()):
            kind = type(event)
            if kind is ClientLoggedIn:
                session.end_session(time.monotonic_ns())
                messages = len(session.store.messages)
                server.log(f"snapshot for {event.username or '(blank)'}: {messages - 1} messages, "
                           f"continue from ITCH sequence {server.venue.store.next_sequence}")
            elif kind is LoginRefused:
                server.counters.refused += 1
                server.log(f"snapshot login refused for {event.username!r}: reason {event.reason}")
            elif kind is ProtocolError:
                server.counters.protocol_errors += 1
                server.log(f"snapshot client dropped: protocol error: {event.error}")
        out = session.take_outbound()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
        if session.state in ("closed", "ended") and self.transport is not None:
            self.transport.close()          # after the queued bytes are written (or the deadline aborts)

    def _login_timeout(self) -> None:
        if self.session.state == "awaiting_login":
            self.server.counters.timeouts += 1
            self.server.log(f"snapshot client dropped: no login within {self.server.login_timeout_s:g} s")
            self.abort()

    def _deadline(self) -> None:
        self.server.counters.timeouts += 1
        self.server.log(f"snapshot client dropped: still connected after {self.server.deadline_s:g} s")
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        self.session.connection_lost()
        self.server.connections.discard(self)
