"""The feed handler agent: UDP packet -> MoldUDP64 sequencing -> ITCH books -> ring and market state.

One duty cycle: read up to ``max_packets_per_cycle`` packets from the feed socket and from the
re-request channel; hand each to the sequencer; apply in-order packets (and whatever buffered
packets they release) to the books; publish a BookUpdate for each message that changed a
subscribed book's top levels, trading state or last trade. Then the slow checks: re-request
timeouts, staleness, and the shared-memory counters every ``counters_interval_ms``.

A book is stale (flag in every update and in the market-state table; ``feed_ready`` 0 while
the whole feed is) before its stock directory arrives; when an execution or cancel named an
unknown order (that book only); and every book, when:

- the followed session has sent nothing that proves it alive for ``stale_after_ms``
  (delivered or held data and heartbeats count; duplicates, packets of other sessions, bad
  packets and end-of-session packets do not);
- the feed is rebuilding: it joined late, or restarted from sequence 1, and has not yet
  delivered the history up to where the session stood;
- the session ended (latched until a new session is adopted);
- a gap could not be recovered (latched: we cannot know which books the lost messages
  touched). No packet clears that: the feed rebuilds every book from sequence 1 of the same
  session (the exchange keeps the day's messages for re-requests), at once and then, while the
  rebuilds keep failing, no more often than a backoff from 1 s doubling to 64 s.

A new session, or the same session restarted (the rule is the sequencer's; see its module
docstring): every book is cleared and published stale, the warning names the old and new
session and sequences, ``feed.session_restarts`` counts it, and the books are rebuilt from
sequence 1 of the new session by re-request; they are live again once caught up.
"""
from __future__ import annotations

import json
import logging
import os
import time

from appliance.messages.catalog import BOOK_DEPTH
from appliance.messages.codes import FeedStaleReason
from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.layout import LayoutError
from appliance.wire import moldudp64

from .books import BookSet
from .config import FeedConfigError, parse_feed_params
from .outputs import BookOutputs
from .receiver import RerequestChannel, UdpReceiver
from .sequencer import COUNTER_NAMES as SEQUENCER_COUNTERS
from .sequencer import RESTARTED, MoldSequencer

log = logging.getLogger("appliance.feed")

BOOK_RING = "book_updates"
REBUILD_BACKOFF_MIN_NS = 1_000_000_000      # between rebuilds after lost gaps, doubling while they fail
REBUILD_BACKOFF_MAX_NS = 64_000_000_000


def _name(session: bytes | None) -> str:
    """A MoldUDP64 session name for a log line."""
    return "(none)" if session is None else session.decode("latin-1").rstrip() or "(blank)"


class FeedAgent(Agent):
    name = "feed"

    def __init__(self, context: AgentContext):
        super().__init__(context)
        try:
            self.config = parse_feed_params(context.params, f"processes.{context.process.name}.params")
        except FeedConfigError as exc:
            raise LayoutError(context.layout.path, exc.key_path, exc.reason) from None
        if not context.layout.symbols:
            raise LayoutError(context.layout.path, "symbols", "the feed needs the layout's symbols list")

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        cfg, ctx = self.config, self.context
        layout, memory = ctx.layout, ctx.memory
        self.books = BookSet(layout.symbols, BOOK_DEPTH)
        self.scanner = moldudp64.FeedPacketScanner(self.books.subscribed_locates)
        self.receiver = UdpReceiver(cfg.listen_host, cfg.listen_port, multicast_group=cfg.multicast_group,
                                    interface=cfg.interface, rcvbuf=cfg.rcvbuf_bytes)
        self.rerequest = RerequestChannel(cfg.rerequest_host, cfg.rerequest_port)
        self.sequencer = MoldSequencer(
            session=cfg.session.encode().ljust(10) if cfg.session else None,
            send_request=self.rerequest.send, max_buffered_packets=cfg.max_buffered_packets,
            request_timeout_ns=cfg.rerequest_timeout_ms * 1_000_000, max_retries=cfg.rerequest_retries,
            silence_ns=cfg.stale_after_ms * 1_000_000)
        ring_spec = layout.rings[BOOK_RING]
        if ring_spec.producer != ctx.process.name:
            raise LayoutError(layout.path, f"rings.{BOOK_RING}.producer",
                              f"is {ring_spec.producer!r}, but the feed agent runs as {ctx.process.name!r}")
        self.outputs = BookOutputs(memory.ring(BOOK_RING, "producer"), memory.buffer_of(ring_spec.segment),
                                   memory.market_state_writer())
        self._stale_after_ns = cfg.stale_after_ms * 1_000_000
        self._counters_interval_ns = cfg.counters_interval_ms * 1_000_000
        self._max_packets = cfg.max_packets_per_cycle
        self._next_slow_ns = 0
        self._next_rebuild_ns = 0           # monotonic: no rebuild after a lost gap before this
        self._rebuild_backoff_ns = REBUILD_BACKOFF_MIN_NS
        self._next_counters_ns = 0
        self._feed_stale = True
        self._stale_code_written = -1       # the feed_stale_reason word as last stored
        self._setup_counters()
        has_control = any(t.kind == "control" for t in layout.tables.values())
        self.control = memory.control(ctx.process.name) if has_control else None
        if self.control is not None:
            self.control.set("feed_ready", 0)
        self._write_stale_code()
        address = self.receiver.address
        log.info("feed listening on %s:%d%s, re-requests to %s:%d, %d symbols, rcvbuf %d",
                 address[0], address[1], f" (multicast {cfg.multicast_group} on {cfg.interface})"
                 if cfg.multicast_group else "", cfg.rerequest_host, cfg.rerequest_port,
                 len(layout.symbols), getattr(self.receiver, "rcvbuf_effective", 0))
        # Every symbol starts stale in the market-state table until its directory and traffic arrive.
        for book in self.books.books:
            self.outputs.publish(book, 0, 0)

    def on_close(self) -> None:
        self._publish_counters()
        if self.control is not None:
            self.control.set("feed_ready", 0)
        if self.config.book_dump:
            self._dump_books(self.config.book_dump)
        self.receiver.close()
        self.rerequest.close()
        self.outputs.market_state.close()

    # ------------------------------------------------------------------ duty cycle

    def do_work(self) -> int:
        work = 0
        receiver = self.receiver
        receive = receiver.receive
        for _ in range(self._max_packets):
            n = receive()
            if n < 0:
                break
            self._on_packet(receiver.buffer, n, receiver.rx_ns, True)
            work += 1
        channel = self.rerequest
        for _ in range(self._max_packets):
            n = channel.receive()
            if n < 0:
                break
            self._on_packet(channel.buffer, n, channel.rx_ns, False)
            work += 1
        now = time.monotonic_ns()
        if now >= self._next_slow_ns:
            self._next_slow_ns = now + 1_000_000
            work += self._slow_checks(now)
        return work

    def _on_packet(self, buffer, nbytes: int, rx_ns: int, live: bool) -> None:
        sequencer = self.sequencer
        skip = sequencer.accept(buffer, nbytes, rx_ns, time.monotonic_ns(), live)
        if skip < 0:                        # dropped, held behind a gap, or a new session
            if skip == RESTARTED:
                self._session_restarted()
            return
        self._apply(buffer, nbytes, skip, rx_ns)
        if sequencer.pending:
            for packet, size, skipped, packet_rx_ns in sequencer.drain():
                self._apply(packet, size, skipped, packet_rx_ns)
        if self._feed_stale and sequencer.live:     # never after a lost gap, an end or mid-rebuild
            self._set_feed_stale(False)

    def _apply(self, buffer, nbytes: int, skip: int, rx_ns: int) -> None:
        scanner = self.scanner
        apply = self.books.apply
        books = self.books.books
        publish = self.outputs.publish
        messages = scanner.scan(buffer, nbytes, skip)
        mold_sequence = scanner.sequence_number + skip
        for raw in messages:
            sid = apply(raw)
            if sid >= 0:
                publish(books[sid], mold_sequence, rx_ns)

    # ------------------------------------------------------------------ slow path (every ms)

    def _slow_checks(self, now: int) -> int:
        work = 0
        sequencer = self.sequencer
        if sequencer.gap_open and sequencer.poll(now):
            log.warning("gap abandoned after %d re-requests: %d messages lost; every book is stale",
                        self.config.rerequest_retries, sequencer.messages_lost)
            for packet, size, skipped, packet_rx_ns in sequencer.drain():
                self._apply(packet, size, skipped, packet_rx_ns)
            work += 1
        if sequencer.lost and now >= self._next_rebuild_ns:
            self._rebuild_after_loss(now)
            work += 1
        last_live = sequencer.last_live_ns
        silent = last_live is None or now - last_live > self._stale_after_ns
        should_be_stale = silent or not sequencer.live
        if should_be_stale != self._feed_stale:
            self._set_feed_stale(should_be_stale)
            work += 1
        elif should_be_stale:
            self._write_stale_code()        # the reason can change while the feed stays stale
        if now >= self._next_counters_ns:
            self._next_counters_ns = now + self._counters_interval_ns
            self._publish_counters()
        return work

    def _session_restarted(self) -> None:
        old, old_next, new, new_high = self.sequencer.last_restart
        log.warning("session restart: session %s at next sequence %d -> session %s up to sequence %d%s; "
                    "every book cleared and stale, rebuilding from sequence 1",
                    _name(old), old_next, _name(new), new_high - 1, " (same name)" if old == new else "")
        self._clear_books()

    def _rebuild_after_loss(self, now: int) -> None:
        sequencer = self.sequencer
        self._next_rebuild_ns = now + self._rebuild_backoff_ns
        self._rebuild_backoff_ns = min(2 * self._rebuild_backoff_ns, REBUILD_BACKOFF_MAX_NS)
        log.warning("rebuilding every book from sequence 1 of session %s up to sequence %d after a lost gap "
                    "(next attempt, if this one fails too, in %d s or later)", _name(sequencer.session),
                    sequencer.high_water - 1, (self._next_rebuild_ns - now) // 1_000_000_000)
        sequencer.restart(sequencer.session, sequencer.high_water, now)
        self._clear_books()

    def _clear_books(self) -> None:
        """After ``sequencer.restart``: every book empty and published stale."""
        self.books.clear()
        self._set_feed_stale(True)

    def _stale_code(self) -> FeedStaleReason:
        """Why the feed is (or would be) stale, as readers of ``feed_stale_reason`` show it."""
        s = self.sequencer
        return (FeedStaleReason.GAP_LOST if s.lost else FeedStaleReason.SESSION_ENDED if s.ended else
                FeedStaleReason.REBUILDING if s.rebuilding else FeedStaleReason.SILENT)

    def _write_stale_code(self) -> None:
        """``feed_stale_reason``: LIVE, or why every book is stale (stored only when it changed)."""
        code = self._stale_code() if self._feed_stale else FeedStaleReason.LIVE
        if code != self._stale_code_written and self.control is not None:
            self.control.set("feed_stale_reason", int(code))
            self._stale_code_written = code

    def _stale_reason(self) -> str:
        s = self.sequencer
        code = self._stale_code()
        if code == FeedStaleReason.GAP_LOST:
            return "gap not recovered"
        if code == FeedStaleReason.SESSION_ENDED:
            return "session ended"
        if code == FeedStaleReason.REBUILDING:
            return (f"rebuilding session {_name(s.session)} from sequence 1: "
                    f"{s.next_expected - 1} of {s.rebuild_until - 1} messages")
        return f"no packet of session {_name(s.session)} for {self.config.stale_after_ms} ms"

    def _set_feed_stale(self, stale: bool) -> None:
        """Set the feed's staleness and publish every book with it (also when it did not change)."""
        if stale and not self._feed_stale:
            log.warning("feed stale: %s", self._stale_reason())
        elif not stale and self._feed_stale:
            log.info("feed live")
            self._rebuild_backoff_ns = REBUILD_BACKOFF_MIN_NS
        self._feed_stale = stale
        self._write_stale_code()
        if self.control is not None:
            self.control.set("feed_ready", 0 if stale else 1)
        outputs = self.outputs
        outputs.feed_stale = stale
        for book in self.books.books:
            outputs.publish(book, self.sequencer.next_expected - 1, 0)

    def _dump_books(self, path: str) -> None:
        """Every book, order by order, written atomically (tmp + rename) for reconciliation."""
        document = {"next_expected": self.sequencer.next_expected, "books": {}}
        for book in self.books.books:
            document["books"][book.symbol] = {
                "trading_state": book.trading_state.decode("latin-1").strip(),
                "bids": [list(level) for level in book.levels(True)],
                "asks": [list(level) for level in book.levels(False)],
                "orders": {str(ref): [side.decode(), price, shares]
                           for ref, (side, price, shares) in sorted(book.orders().items())},
            }
        try:
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                json.dump(document, f)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write the book dump %s: %s", path, exc)

    # ------------------------------------------------------------------ counters

    def _setup_counters(self) -> None:
        allocate = self.context.counters.allocate
        self._sequencer_counters = [allocate(f"feed.{name}") for name in SEQUENCER_COUNTERS]
        self._book_counters = [allocate(f"feed.book.{name}") for name in self.books.COUNTER_NAMES]
        self._scanner_counters = [allocate("feed.messages_decoded"), allocate("feed.messages_filtered"),
                                  allocate("feed.messages_malformed"), allocate("feed.bad_packets")]
        self._output_counters = [allocate("feed.book_updates"), allocate("feed.book_updates_dropped")]
        self._receiver_counters = [allocate("feed.rx_packets"), allocate("feed.rx_truncated"),
                                   allocate("feed.rx_missing_timestamps"), allocate("feed.rerequest_foreign")]

    def _publish_counters(self) -> None:
        for counter, value in zip(self._sequencer_counters, self.sequencer.counter_values()):
            counter.set(value)
        for counter, value in zip(self._book_counters, self.books.counters):
            counter.set(value)
        scanner = self.scanner
        for counter, value in zip(self._scanner_counters, (scanner.scanner.decoded, scanner.scanner.filtered_out,
                                                           scanner.scanner.malformed, scanner.bad_packets)):
            counter.set(value)
        self._output_counters[0].set(self.outputs.published)
        self._output_counters[1].set(self.outputs.dropped)
        r = self.receiver
        for counter, value in zip(self._receiver_counters, (r.packets, r.truncated, r.missing_timestamps,
                                                            self.rerequest.foreign)):
            counter.set(value)
