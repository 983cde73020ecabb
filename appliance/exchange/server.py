"""The simulated exchange as a process: the venue behind its sockets, on one asyncio (uvloop) loop.

- Order entry: a SoupBinTCP server; each connection is a ``ServerSession`` bound at login to
  its firm's store (one live connection per firm: a second login for a firm already
  connected is refused with 'S'). Client OUCH messages go to ``Venue.client_message``; after
  every request the connections of the firms whose stores grew are pumped. Every way a
  logged-in connection ends (close, reset, peer timeout, ``disconnect``, logout, protocol
  error) arrives at ``connection_lost``, which tells the venue (``Venue.session_lost``: cancel
  on disconnect) before the firm can log in again, and logs one line saying why and what
  became of the firm's open orders.
- Market data: the venue's ``MoldPublisher`` sends each packet by UDP to every configured
  subscriber, or to the multicast group. A send the kernel refuses is counted, never raised.
- Re-requests: a UDP endpoint answering MoldUDP64 requests from the message store.
- Snapshots: a GLIMPSE 5.0 server on its own TCP port (``glimpse.py``): the venue's book now and
  the ITCH sequence number to continue from, built in one step on this loop.
- Background participants: every millisecond the Poisson number of operations due since the
  last run (capped at 50 ms worth, so a stalled loop does not bunch them up).
- Housekeeping every 20 ms: session heartbeats and timeouts, feed heartbeats, records flushed
  once a second, the configured duration.
- Control: a UNIX socket speaking one JSON object per line (``control.py``).
- Replay (``replay``: ``appliance exchange --replay DAYFILE``): a ``ReplayDay`` (``replay.py``) in
  the venue's place: the recorded day on the feed as its event time comes, the firms' orders
  matched against it by the backtest's venue model; no background flow; the exchange ends when
  the recorded day does.

The day ends on SIGTERM or SIGINT, at the configured duration, or on the control command
``end``: the venue closes (day orders expire, End of Session on both protocols, records and
report written), the connections get their last bytes, and the process exits 0 after a short
linger in which late re-requests are still answered.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

from appliance.wire import soupbintcp
from appliance.wire.soupbintcp_session import (
    ClientLoggedIn, LoggedOut, LoginRefused, PeerTimedOut, ProtocolError, ServerSession, UnsequencedMessage,
)

from .config_model import ExchangeConfig
from .glimpse import GlimpseServer
from .market_data import FeedFaults, RerequestServer
from .participants import BackgroundFlow
from .records import Records
from .replay import ReplayDay, ReplaySettings
from .venue import Venue

BACKGROUND_PERIOD_S = 0.001
HOUSEKEEPING_PERIOD_S = 0.02
MAX_CATCH_UP_NS = 50_000_000


class FeedSender:
    """Sends each MoldUDP64 packet to the subscribers (or the multicast group); counts failures."""

    def __init__(self, config) -> None:
        md = config.market_data
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        if md.multicast is not None:
            mc = md.multicast
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(mc.interface))
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, mc.ttl)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            self.destinations = [(mc.group, mc.port)] + list(md.subscribers)
        else:
            self.destinations = list(md.subscribers)
        self.sock.bind((md.source_host, md.source_port))     # a fixed source: feeds accept no other
        self.packets = 0
        self.send_errors = 0

    def send(self, packet: bytes) -> None:
        self.packets += 1
        sendto = self.sock.sendto
        for destination in self.destinations:
            try:
                sendto(packet, destination)
            except OSError:             # buffer full, nobody listening (ECONNREFUSED), ...
                self.send_errors += 1

    def close(self) -> None:
        self.sock.close()


class OrderEntryConnection(asyncio.Protocol):
    """One TCP connection of the order-entry server."""

    def __init__(self, exchange: "ExchangeServer") -> None:
        self.exchange = exchange
        self.session = ServerSession(exchange.store_for_login, exchange.authenticate,
                                     heartbeat_interval_ns=exchange.config.order_entry.heartbeat_interval_ms * 1_000_000,
                                     peer_timeout_ns=exchange.config.order_entry.peer_timeout_ms * 1_000_000)
        self.transport: asyncio.Transport | None = None
        self.firm: str | None = None
        self.end_reason: str | None = None      # why the session ended, when the server knows before TCP does

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.session.connection_made(time.monotonic_ns())
        self.exchange.connections.add(self)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        session = self.session
        events = session.receive(data, time.monotonic_ns())
        for event in events:
            kind = type(event)
            if kind is UnsequencedMessage:
                error = exchange.venue.client_message(self.firm, event.message)
                if error is not None:
                    self.transport.write(soupbintcp.debug(f"dropped malformed OUCH message: {error}"[:400]))
            elif kind is ClientLoggedIn:
                self.firm = event.username
                exchange.by_firm[event.username] = self
                exchange.log(f"login {event.username} from sequence {event.first_sequence_number}")
            elif kind is LoginRefused:
                exchange.log(f"login refused for {event.username!r}: reason {event.reason}")
            elif kind is ProtocolError:
                exchange.protocol_errors += 1
                self.end_reason = self.end_reason or "protocol error"
                exchange.log(f"protocol error from {self.firm or 'a client'}: {event.error}")
            elif kind is LoggedOut:
                self.end_reason = self.end_reason or "logout"
                exchange.log(f"logout {self.firm}")
        exchange.pump_touched()
        self.flush()
        if session.state == "closed":
            self.transport.close()

    def flush(self) -> None:
        out = self.session.take_outbound()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def tick(self, now_ns: int) -> None:
        for event in self.session.tick(now_ns):
            if type(event) is PeerTimedOut:
                self.end_reason = self.end_reason or "peer timeout"
                self.exchange.log(f"session {self.firm or '(not logged in)'} timed out")
        self.flush()
        if self.session.state == "closed" and self.transport is not None:
            self.transport.close()

    def disconnect(self) -> None:
        if self.transport is not None:
            self.end_reason = self.end_reason or "disconnect command"
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        self.session.connection_lost()
        exchange = self.exchange
        exchange.connections.discard(self)
        if self.firm is not None and exchange.by_firm.get(self.firm) is self:
            del exchange.by_firm[self.firm]
            why = self.end_reason or (f"connection reset: {exc}" if exc is not None else "connection closed")
            exchange.session_lost(self.firm, why)


class RerequestEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server: RerequestServer) -> None:
        self.server = server

    def connection_made(self, transport) -> None:
        self.server.send_to = transport.sendto

    def datagram_received(self, data: bytes, address) -> None:
        self.server.handle(data, address)


class ExchangeServer:
    """The running exchange: owns the venue, the sockets and the loop's tasks."""

    def __init__(self, config: ExchangeConfig, *, linger_s: float = 1.0, out=sys.stdout,
                 replay: ReplaySettings | None = None) -> None:
        self.config = config
        self.replay = replay
        self.linger_s = linger_s
        self.out = out
        self.feed = FeedSender(config)
        bg = config.background
        prices = {s.symbol: s.reference_price for s in config.symbols}
        lots = {s.symbol: s.round_lot for s in config.symbols}
        self.flow = BackgroundFlow(prices, rate=bg.rate if bg.enabled else 0.0, seed=bg.seed, firm=bg.firm,
                                   tick=bg.tick, volatility_bp=bg.volatility_bp,
                                   max_resting_per_symbol=bg.max_resting_per_symbol,
                                   round_lot=min(lots.values()))
        f = config.faults
        self.records = Records(config.records.directory, [firm.username for firm in config.firms]) \
            if config.records.directory else None
        feed = dict(session=config.market_data.session, send_packet=self.feed.send,
                    max_payload=config.market_data.max_payload,
                    heartbeat_interval_ns=config.market_data.heartbeat_interval_ms * 1_000_000,
                    faults=FeedFaults(f.drop, f.duplicate, f.reorder, f.seed), records=self.records,
                    cancel_on_disconnect=[f.username for f in config.firms if f.cancel_on_disconnect])
        firms = {firm.username: firm.mpid for firm in config.firms}
        if replay is None:
            self.venue = Venue([(s.symbol, s.round_lot) for s in config.symbols], firms,
                               max_shares=config.max_shares, background=self.flow, **feed)
            self.snapshots = GlimpseServer(self.venue, self.log)
        else:
            self.flow.rate = 0.0
            self.venue = ReplayDay(replay.day_file, [s.symbol for s in config.symbols], firms, speed=replay.speed,
                                   queue_model=replay.queue_model, seed=replay.seed,
                                   answer_lead_ns=int(replay.answer_lead_ms * 1_000_000), **feed)
            self.snapshots = GlimpseServer(self.venue, self.log, build=ReplayDay.snapshot)
        self.rerequests = RerequestServer(config.market_data.session, self.venue.store, lambda *_: None,
                                          max_payload=config.market_data.max_payload)
        self._passwords = {firm.username: firm.password for firm in config.firms}
        self.connections: set[OrderEntryConnection] = set()
        self.by_firm: dict[str, OrderEntryConnection] = {}
        self.protocol_errors = 0
        self.started_ns = 0
        self.ports: dict[str, object] = {}
        self._done: asyncio.Event | None = None
        self._servers: list = []
        self._tasks: list[asyncio.Task] = []

    # ---- sessions

    def authenticate(self, username: str, password: str) -> bool:
        expected = self._passwords.get(username)
        return expected is not None and expected == password

    def store_for_login(self, username: str):
        if username in self.by_firm:          # one live connection per firm
            return None
        return self.venue.stores.get(username)

    def pump_touched(self) -> None:
        touched = self.venue.touched
        if touched:
            now = time.monotonic_ns()
            for firm in touched:
                connection = self.by_firm.get(firm)
                if connection is not None:
                    connection.session.pump(now)
                    connection.flush()
            touched.clear()

    def session_lost(self, firm: str, why: str) -> None:
        """A logged-in firm's connection is gone: cancel on disconnect, then one log line."""
        venue = self.venue
        if venue.state != "open":        # the day's end closes every connection; the close expired the orders
            return
        canceled = venue.session_lost(firm)
        if canceled is None:
            live = venue.live_count(firm)
            self.log(f"session {firm} lost ({why}): cancel on disconnect off, {live} open orders stay")
        else:
            self.log(f"session {firm} lost ({why}): cancel on disconnect: {canceled} open orders canceled")
        self.pump_touched()

    def disconnect(self, firm: str) -> bool:
        connection = self.by_firm.get(firm)
        if connection is None:
            return False
        connection.disconnect()
        return True

    def log(self, text: str) -> None:
        print(f"exchange: {text}", file=self.out, flush=True)

    # ---- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        oe = self.config.order_entry
        server = await loop.create_server(lambda: OrderEntryConnection(self), oe.host, oe.port, reuse_address=True)
        self._servers.append(server)
        self.ports["order_entry"] = server.sockets[0].getsockname()[:2]
        md = self.config.market_data
        transport, _ = await loop.create_datagram_endpoint(lambda: RerequestEndpoint(self.rerequests),
                                                           local_addr=(md.rerequest_host, md.rerequest_port))
        self._servers.append(transport)
        self.ports["rerequest"] = transport.get_extra_info("sockname")[:2]
        self.ports["feed_source"] = self.feed.sock.getsockname()[:2]
        snapshot_server = await self.snapshots.start(md.snapshot_host, md.snapshot_port)
        self._servers.append(snapshot_server)
        self.ports["snapshot"] = snapshot_server.sockets[0].getsockname()[:2]
        if self.config.control.socket:
            from .control import ControlServer
            control = ControlServer(self)
            self._servers.append(await control.start(self.config.control.socket))
            self.ports["control"] = self.config.control.socket
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_end, f"signal {signal.Signals(sig).name}")
        self.venue.open()
        self.started_ns = time.monotonic_ns()
        if self.replay is not None:
            if not self.replay.hold:
                self.venue.start()
            self._tasks.append(asyncio.create_task(self._replay()))
        else:
            self._tasks.append(asyncio.create_task(self._background()))
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        self.announce()

    def announce(self) -> None:
        md = self.config.market_data
        host, port = self.ports["order_entry"]
        rr_host, rr_port = self.ports["rerequest"]
        src_host, src_port = self.ports["feed_source"]
        sn_host, sn_port = self.ports["snapshot"]
        destinations = " ".join(f"{h}:{p}" for h, p in self.feed.destinations) or "(none)"
        if self.replay is not None:
            held = " (held until the control command start)" if self.replay.hold else ""
            self.log(f"session {md.session}, replay of {self.replay.day_file} at speed {self.replay.speed or 'max'}"
                     f"{held}, {len(self.config.symbols)} symbols matched, firms {', '.join(self._passwords)}")
        else:
            self.log(f"session {md.session}, {len(self.config.symbols)} symbols, "
                     f"background {self.flow.rate:g} msg/s, firms {', '.join(self._passwords)}")
        print(f"exchange ready order_entry={host}:{port} rerequest={rr_host}:{rr_port} "
              f"source={src_host}:{src_port} snapshot={sn_host}:{sn_port} feed={destinations}"
              + (f" control={self.ports['control']}" if "control" in self.ports else ""), file=self.out, flush=True)

    def request_end(self, why: str = "control") -> None:
        if self._done is not None and not self._done.is_set():
            self.log(f"ending the session ({why})")
            self._done.set()

    def crash(self, why: str) -> None:
        """Die as a crashed venue would: no End of Session, no end-of-day report, every connection
        dropped by the kernel. The records written so far are flushed first (a real venue's are
        durable), so a test that restarts the venue can reconcile against both runs."""
        self.log(f"crashing ({why}): records flushed, no End of Session, no report")
        if self.records is not None:
            self.records.flush()
        sys.stdout.flush()
        os._exit(0)

    async def run(self) -> int:
        await self.start()
        await self._done.wait()
        await self.finish()
        return 0

    async def finish(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.venue.close()
        now = time.monotonic_ns()
        for connection in list(self.connections):
            connection.session.end_session(now)
            connection.flush()
        self.log(f"closed: {len(self.venue.store)} ITCH messages, {self.feed.packets} packets "
                 f"({self.feed.send_errors} send errors), report "
                 f"{self.records.report_path if self.records else '(no records directory)'}")
        deadline = time.monotonic() + self.linger_s
        while time.monotonic() < deadline:      # late re-requests are still answered
            self.venue.publisher.tick(time.monotonic_ns())
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        for server in self._servers:
            server.close()
        self.snapshots.close_all()
        self.feed.close()
        if self.config.control.socket:
            try:
                os.unlink(self.config.control.socket)
            except FileNotFoundError:
                pass

    async def _background(self) -> None:
        flow, venue = self.flow, self.venue
        last = time.monotonic_ns()
        while True:
            await asyncio.sleep(BACKGROUND_PERIOD_S)
            now = time.monotonic_ns()
            due = flow.arrivals(min(now - last, MAX_CATCH_UP_NS))
            last = now
            if due:
                venue.run_background(due)
                venue.publisher.flush()
                self.pump_touched()

    async def _replay(self) -> None:
        """Publish the recorded day as its event time comes; end the exchange when it is over."""
        day = self.venue
        while True:
            due = day.advance()
            self.pump_touched()
            if due is None:
                if day.error is not None:
                    self.log(f"replay stopped early: {day.error}")
                self.request_end(f"the recorded day {self.replay.day_file} is over")
                return
            await asyncio.sleep(max(0.0, min((due - time.monotonic_ns()) / 1e9, HOUSEKEEPING_PERIOD_S)))

    async def _housekeeping(self) -> None:
        venue = self.venue
        next_flush = time.monotonic() + 1.0
        duration = self.config.duration_s
        while True:
            await asyncio.sleep(HOUSEKEEPING_PERIOD_S)
            now_ns = time.monotonic_ns()
            venue.publisher.tick(now_ns)
            for connection in list(self.connections):
                connection.tick(now_ns)
            if time.monotonic() >= next_flush:
                next_flush += 1.0
                if self.records is not None:
                    self.records.flush()
            if duration is not None and now_ns - self.started_ns >= duration * 1e9:
                self.request_end(f"duration {duration:g} s reached")

    # ---- status for the control interface

    def status(self) -> dict:
        venue = self.venue
        c = venue.publisher.counters
        if self.replay is not None:
            return {"state": venue.state, "session": venue.session, "replay": venue.status(),
                    "uptime_s": (time.monotonic_ns() - self.started_ns) / 1e9,
                    "ports": {k: list(v) if isinstance(v, tuple) else v for k, v in self.ports.items()},
                    "feed": {"messages": len(venue.store), "packets": c.packets, "heartbeats": c.heartbeats,
                             "dropped": c.dropped, "send_errors": self.feed.send_errors},
                    "rerequests": {"requests": self.rerequests.requests, "bad": self.rerequests.bad_requests,
                                   "messages_resent": self.rerequests.messages_resent},
                    "snapshots": self.snapshots.counters.__dict__.copy(),
                    "sessions": {firm: {"connected": firm in self.by_firm,
                                        "messages": venue.stores[firm].next_sequence_number - 1}
                                 for firm in venue.stores},
                    "protocol_errors": self.protocol_errors}
        return {
            "state": venue.state, "session": venue.session, "uptime_s": (time.monotonic_ns() - self.started_ns) / 1e9,
            "ports": {k: list(v) if isinstance(v, tuple) else v for k, v in self.ports.items()},
            "feed": {"messages": len(venue.store), "packets": c.packets, "heartbeats": c.heartbeats,
                     "dropped": c.dropped, "duplicated": c.duplicated, "reordered": c.reordered,
                     "send_errors": self.feed.send_errors, "destinations": [f"{h}:{p}" for h, p in self.feed.destinations]},
            "faults": {"drop": venue.publisher.faults.drop, "duplicate": venue.publisher.faults.duplicate,
                       "reorder": venue.publisher.faults.reorder, "drop_next": venue.publisher.drop_next},
            "rerequests": {"requests": self.rerequests.requests, "bad": self.rerequests.bad_requests,
                           "wrong_session": self.rerequests.wrong_session,
                           "messages_resent": self.rerequests.messages_resent},
            "snapshots": self.snapshots.counters.__dict__.copy(),
            "background": {"rate": self.flow.rate, **self.flow.counters},
            "sessions": {firm: {"connected": firm in self.by_firm,
                                "messages": venue.stores[firm].next_sequence_number - 1,
                                "cancel_on_disconnect": firm in venue.cancel_on_disconnect,
                                "canceled_on_disconnect": venue.canceled_on_disconnect[firm]}
                         for firm in venue.stores},
            "live_orders": {firm: len(f.live) for firm, f in venue.engine.firms.items()},
            "halted": sorted(s for s, b in venue.engine.books.items() if b.halted),
            "counters": venue.counters.__dict__.copy(),
            "protocol_errors": self.protocol_errors,
        }


def serve(config: ExchangeConfig, *, linger_s: float = 1.0, replay: ReplaySettings | None = None) -> int:
    """Run the exchange until the day ends; the exit status."""
    server = ExchangeServer(config, linger_s=linger_s, replay=replay)
    try:
        import uvloop
    except ImportError:                   # pragma: no cover - uvloop is a dependency
        return asyncio.run(server.run())
    return uvloop.run(server.run())
