"""The feed handler under test: as a process (``FeedUnderTest``) or in this process (``InProcessFeed``),
and a simulated exchange in this process (``InProcessVenue``) to drive the in-process one.

``InProcessFeed`` runs a ``FeedAgent`` on shared memory the test owns: the test calls ``pump``,
which runs the agent's duty cycle (and the venue's, when given) until a condition holds, parking
briefly whenever neither did any work. ``InProcessVenue`` is the exchange's own ``Venue`` and
``RerequestServer`` over real loopback UDP sockets; ``restart`` replaces the venue (a new store,
sequences and order references from 1) on the same sockets, as an exchange restarted on the same
ports would. Every socket and segment is released by ``close`` (the fixtures call it).
"""
from __future__ import annotations

import socket
import time

import pytest

from appliance.exchange.market_data import RerequestServer
from appliance.exchange.participants import BackgroundFlow
from appliance.exchange.venue import Venue
from appliance.messages.catalog import BOOK_UPDATE
from appliance.runtime.agent import AgentContext
from appliance.runtime.counters import ProcessState
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document, output_of, wait_until
from exchange_process import RunningExchange, base_config

PRICES = {"AAPL": 1_900_000, "MSFT": 4_200_000, "SPY": 5_600_000}
SUBSCRIBED = ["AAPL", "SPY"]             # the exchange also trades MSFT: filtered by locate


def feed_layout(name: str, feed_port: int, rerequest_port: int, *, source_port: int | None, control: bool = False,
                **params) -> dict:
    """A feed and a strategy reader; ``source_port`` is the publisher's (None: any port of 127.0.0.1)."""
    source = {"host": "127.0.0.1"} if source_port is None else {"host": "127.0.0.1", "port": source_port}
    doc = layout_document(
        name,
        processes=[{"name": "feed", "agent": "appliance.feed.agent:FeedAgent",
                    "idle": {"strategy": "backoff", "spins": 100, "yields": 10, "min_park_ns": 10_000,
                             "max_park_ns": 200_000},
                    "params": {"listen": {"host": "127.0.0.1", "port": feed_port},
                               "rerequest": {"host": "127.0.0.1", "port": rerequest_port},
                               "source": source, "stale_after_ms": 1000, **params}},
                   {"name": "strategy", "agent": "appliance.strategy.agent:StrategyAgent",
                    "idle": {"strategy": "sleep"}}],
        rings=[{"name": "book_updates", "segment": "main", "producer": "feed", "consumer": "strategy",
                "message": "BookUpdate", "slot_size": 192, "capacity": 1 << 18}],
        slots_per_process=128, symbols=SUBSCRIBED)
    if control:
        doc["tables"].append({"name": "control", "kind": "control", "segment": "main"})
    return doc


class FeedUnderTest:
    """Shared memory, the feed process, and a strategy-side reader of what it writes."""

    def __init__(self, write_layout, spawner, document: dict):
        self.layout = load_layout(write_layout(document))
        self.memory = SharedMemory.create(self.layout)
        self.ring = self.memory.ring("book_updates", "consumer")
        self.buffer = self.memory.ring_buffer("book_updates")
        self.market = self.memory.market_state_reader()
        self.proc = spawner.start(self.layout.path, "feed")
        table = self.memory.process_table()
        wait_until(lambda: table.read("feed").state is ProcessState.RUNNING or self.proc.poll() is not None, 30,
                   message="the feed agent running")
        assert self.proc.poll() is None, output_of(self.proc)
        self.latest: dict[int, tuple] = {}       # symbol id -> last BookUpdate
        self.updates = 0
        self.out_of_order = 0
        self._last_sequence: dict[int, int] = {}

    def counters(self) -> dict[str, int]:
        return self.memory.counters_reader().by_label()

    def drain(self) -> int:
        n = 0
        ring, buffer = self.ring, self.buffer
        while True:
            offset = ring.peek()
            if offset < 0:
                return n
            record = BOOK_UPDATE.as_dict(buffer, offset)
            ring.release()
            sid = record["symbol_id"]
            if record["update_sequence"] < self._last_sequence.get(sid, 0):
                self.out_of_order += 1
            self._last_sequence[sid] = record["update_sequence"]
            self.latest[sid] = record
            self.updates += 1
            n += 1

    def levels(self, symbol: str) -> tuple[list, list]:
        u = self.latest[self.layout.symbol_id(symbol)]
        bids = [[u[f"bid_price_{i}"], u[f"bid_shares_{i}"]] for i in range(u["bid_levels"])]
        asks = [[u[f"ask_price_{i}"], u[f"ask_shares_{i}"]] for i in range(u["ask_levels"])]
        return bids, asks

    def caught_up_with(self, published: int) -> bool:
        """Every message up to ``published`` delivered (by position: a rebuild delivers some twice)."""
        self.drain()
        return self.counters().get("feed.next_expected", 0) > published

    def close(self) -> None:
        self.memory.close()
        self.memory.unlink()


@pytest.fixture
def exchange_factory():
    """Start exchange processes (``extra_feed_ports``: feeds under test); all closed afterwards."""
    running = []

    def start(extra_feed_ports=(), **sections) -> RunningExchange:
        ex = RunningExchange(base_config(**sections), records=False, extra_subscribers=extra_feed_ports)
        running.append(ex)
        return ex
    yield start
    for ex in running:
        ex.close()


@pytest.fixture
def feed_factory(write_layout, spawner):
    """Start feed processes on layouts the test writes; processes and segments gone afterwards."""
    made = []

    def start(document: dict) -> FeedUnderTest:
        feed = FeedUnderTest(write_layout, spawner, document)
        made.append(feed)
        return feed
    yield start
    spawner.cleanup()
    for feed in made:
        feed.close()


# ------------------------------------------------------------------ in this process

class InProcessVenue:
    """The simulated exchange's venue and re-request server in this process, over loopback UDP.

    ``serve()`` (called by ``InProcessFeed.pump``) answers waiting re-requests and ticks the
    publisher (heartbeats) unless ``silent``; ``answering = False`` leaves requests unanswered."""

    def __init__(self, feed_port: int, session: str = "TEST000001", *, seed: int = 1,
                 heartbeat_interval_ms: int = 50) -> None:
        self.feed_address = ("127.0.0.1", feed_port)
        self.heartbeat_interval_ns = heartbeat_interval_ms * 1_000_000
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind(("127.0.0.1", 0))
        self.source_port = self.sender.getsockname()[1]      # the publisher the feed accepts
        self.server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.setblocking(False)
        self.rerequest_port = self.server.getsockname()[1]
        self.answering = True
        self.silent = False
        self.restart(session, seed=seed)

    def restart(self, session: str, *, seed: int) -> None:
        """A new venue on the same sockets: a new store, sequences and order references from 1."""
        self.session = session
        self.venue = Venue([(s, 100) for s in PRICES], {}, session=session, send_packet=self._send,
                           heartbeat_interval_ns=self.heartbeat_interval_ns,
                           background=BackgroundFlow(PRICES, rate=0, seed=seed))
        self.rerequests = RerequestServer(session, self.venue.store, self.server.sendto)
        self.silent = False
        self.venue.open()

    def _send(self, packet: bytes) -> None:
        if not self.silent:
            self.sender.sendto(packet, self.feed_address)

    def send_raw(self, packet: bytes) -> None:
        """Any datagram to the feed's port (a stray, a replay, garbage)."""
        self.sender.sendto(packet, self.feed_address)

    def trade(self, operations: int) -> None:
        self.venue.run_background(operations)
        self.venue.publisher.flush()

    @property
    def published(self) -> int:
        return len(self.venue.store)

    def orders(self, symbol: str) -> dict:
        """The engine's displayed orders, as ``OrderBook.orders()`` shows them."""
        return {ref: (o.side.encode() if isinstance(o.side, str) else o.side, o.price, o.leaves)
                for ref, o in self.venue.engine.book(symbol).resting().items() if o.displayed}

    def serve(self) -> int:
        work = 0
        while True:
            try:
                data, address = self.server.recvfrom(65536)
            except BlockingIOError:
                break
            work += 1
            if self.answering and not self.silent:
                self.rerequests.handle(data, address)
        if not self.silent:
            self.venue.publisher.tick(time.monotonic_ns())
        return work

    def close(self) -> None:
        self.sender.close()
        self.server.close()


class InProcessFeed:
    """A FeedAgent in this process on shared memory the test owns (started; drive it with ``pump``)."""

    def __init__(self, write_layout, document: dict) -> None:
        from appliance.feed.agent import FeedAgent
        self.layout = load_layout(write_layout(document))
        self.memory = SharedMemory.create(self.layout)
        self.agent = None
        try:
            self.ring = self.memory.ring("book_updates", "consumer")
            self.buffer = self.memory.ring_buffer("book_updates")
            self.market = self.memory.market_state_reader()
            self.control = self.memory.control("*") if "control" in self.layout.tables else None
            context = AgentContext(self.layout, self.layout.processes["feed"], self.memory,
                                   self.memory.counters_writer("feed"))
            agent = FeedAgent(context)
            agent.on_start()
            self.agent = agent
        except BaseException:
            self.memory.close()
            self.memory.unlink()
            raise
        self.updates: list[dict] = []        # every BookUpdate drained so far, in order

    @property
    def sequencer(self):
        return self.agent.sequencer

    def book(self, symbol: str):
        return self.agent.books.book(symbol)

    def pump(self, until=None, timeout: float = 5.0, message: str = "condition", venue: InProcessVenue | None = None,
             at_least: float = 0.0) -> None:
        """Run duty cycles (the venue's too) until ``until()`` holds and ``at_least`` seconds passed."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            work = self.agent.do_work()
            if venue is not None:
                work += venue.serve()
            self.drain()
            if (until is None or until()) and time.monotonic() - start >= at_least:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {message}")
            if not work:
                time.sleep(0.0005)

    def drain(self) -> int:
        n = 0
        ring, buffer = self.ring, self.buffer
        while (offset := ring.peek()) >= 0:
            self.updates.append(BOOK_UPDATE.as_dict(buffer, offset))
            ring.release()
            n += 1
        return n

    def counters(self) -> dict[str, int]:
        """The shared-memory counters (the agent refreshes them every ``counters_interval_ms``)."""
        return self.memory.counters_reader().by_label()

    def feed_ready(self) -> int:
        return self.control.get("feed_ready")

    def all_stale(self) -> bool:
        return all(self.market.read(i).stale for i in range(len(self.layout.symbols)))

    def none_stale(self) -> bool:
        return not any(self.market.read(i).stale for i in range(len(self.layout.symbols)))

    def caught_up(self, venue: InProcessVenue) -> bool:
        return self.sequencer.next_expected == venue.published + 1 and not self.sequencer.gap_open

    def close(self) -> None:
        try:
            if self.agent is not None:
                self.agent.on_close()
        finally:
            self.memory.close()
            self.memory.unlink()
