"""The feed handler agent: UDP packet -> MoldUDP64 sequencing -> ITCH books -> ring and market state.

One duty cycle: read up to ``max_packets_per_cycle`` packets from the feed socket, and from the
re-request channel while a gap is open (else once per slow tick: it only carries answers); hand
each to the sequencer; apply in-order packets (and whatever buffered packets they release) to the
books; after each packet, publish one BookUpdate for each subscribed book whose top levels, trading
state or last trade it changed (``outputs.py``: coalesced per packet, a trade print never coalesced
away). With the compiled books, a live packet that is the next expected one takes all of that in
one C call (``fast.py`` ``bind_sequencer``). Then the slow checks (every millisecond): re-request
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

Rebuilds from a GLIMPSE snapshot (``params.snapshot`` set; ``snapshot.py``, the exchange's
``glimpse.py``). The sequencer then never asks for history (``skip_history``); instead:

- every book, at a late join (the first packet's sequence is above 1), after a session
  restart, and after a lost gap: every book cleared and published stale, live packets kept
  (not applied);
- one book (more if more go bad meanwhile), when it is inconsistent (an execute, cancel, delete
  or replace named an unknown order, an over-execution, a duplicate add: the book's own
  ``inconsistent`` latch) or has been crossed for ``snapshot.crossed_ms``: that book cleared,
  published stale and inconsistent, its stock locate taken out of the scanner's filter; the
  other books stay live. Live packets are kept (and applied to the other books).

Then a snapshot (``SnapshotClient``, polled from the slow path every millisecond, never
blocking): once it names the ITCH sequence N to continue from and the live stream has reached
N, the affected books are cleared, loaded from the snapshot, and the kept messages from N on
replayed into them; they are published live again. One log line per rebuild names the trigger,
the books, N and what was replayed; ``feed.snapshot_rebuilds`` counts rebuilds,
``feed.snapshot_trigger_<trigger>`` what started them, ``feed.snapshot_failures`` failed
attempts (refused, cut short, garbage, timed out after ``snapshot.timeout_ms``, the kept
packets over ``snapshot.max_buffered_packets``, or a snapshot older than the kept packets),
each retried after a backoff from 50 ms doubling to 5 s. A session restart during a rebuild
starts it again for every book, as does a lost gap during a rebuild of some books (during a
rebuild of every book only the packets kept before the hole are dropped). The hot path pays one
attribute test per packet.
"""
from __future__ import annotations

import json
import logging
import os
import time

from appliance.messages.catalog import BOOK_DEPTH, BOOK_UPDATE
from appliance.messages.codes import FeedStaleReason
from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.channels import PRODUCER, RingUse, check_ring_uses
from appliance.runtime.counters import CounterKind
from appliance.runtime.layout import LayoutError
from appliance.wire import itch, moldudp64

from . import fast
from .fast import IN_ORDER_TAKEN
from .books import LOCATES, BookSet
from .config import FeedConfigError, parse_feed_params
from .outputs import BookOutputs
from .receiver import RerequestChannel, UdpReceiver
from .sequencer import COUNTER_NAMES as SEQUENCER_COUNTERS
from .sequencer import RESTARTED, MoldSequencer
from .snapshot import SnapshotClient

log = logging.getLogger("appliance.feed")

BOOK_RING = RingUse("book_updates", PRODUCER, BOOK_UPDATE)
REBUILD_BACKOFF_MIN_NS = 1_000_000_000      # between rebuilds after lost gaps, doubling while they fail
REBUILD_BACKOFF_MAX_NS = 64_000_000_000
FOREIGN_LOG_INTERVAL_NS = 10_000_000_000    # at most one warning about foreign senders per interval
SNAPSHOT_RETRY_MIN_NS = 50_000_000          # between failed snapshot attempts, doubling
SNAPSHOT_RETRY_MAX_NS = 5_000_000_000
# What starts a snapshot rebuild (the counter feed.snapshot_trigger_<name> each).
LATE_JOIN, SESSION_RESTART, GAP_LOST, INCONSISTENT_BOOK, CROSSED_BOOK = SNAPSHOT_TRIGGERS = (
    "late_join", "session_restart", "gap_lost", "inconsistent_book", "crossed_book")
_SIZE_BY_BYTE = itch.SIZE_BY_BYTE
_LAYOUT_BY_BYTE = itch.LAYOUT_BY_BYTE
_MOLD_HEADER = moldudp64.HEADER_SIZE
_unpack_mold = moldudp64.HEADER.struct.unpack_from


class _Rebuild:
    """One snapshot rebuild under way: which books (``sids`` None: all), why, and the attempt."""

    __slots__ = ("trigger", "sids", "started_ns", "attempt_ns", "next_attempt_ns", "backoff_ns", "failures",
                 "result")

    def __init__(self, trigger: str, sids: set | None, now_ns: int) -> None:
        self.trigger = trigger
        self.sids = sids
        self.started_ns = now_ns
        self.attempt_ns = 0
        self.next_attempt_ns = now_ns              # at once
        self.backoff_ns = SNAPSHOT_RETRY_MIN_NS
        self.failures = 0
        self.result: tuple[int, list] | None = None   # (next ITCH sequence, raw tuples) once the snapshot is in


def _itch_raw(message) -> tuple | None:
    """The raw tuple of one ITCH message, None if no layout fits it (untrusted bytes)."""
    if not message or _SIZE_BY_BYTE[message[0]] != len(message):
        return None
    return _LAYOUT_BY_BYTE[message[0]].unpack_from(message, 0)


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
        check_ring_uses(context.layout, context.process.name, (BOOK_RING,), "the feed agent")

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        cfg, ctx = self.config, self.context
        layout, memory = ctx.layout, ctx.memory
        subscribed = bytearray(LOCATES)
        self.scanner = itch.BlockScanner(subscribed, strict=False)
        book_ring = memory.channel(BOOK_RING, ctx.process.name)
        # The compiled path (feed/fast.py) holds the books and writes the outputs; the Python BookSet and
        # BookOutputs are its reference, used when it is not built or the layout says compiled_books: false.
        self._fast = None
        if cfg.compiled_books and fast.AVAILABLE:
            self._fast = fast.FastFeed(layout.symbols, book_ring, book_ring.buffer, memory.market_state_writer(),
                                       self.scanner.counters, subscribed)
            self.books = self.outputs = self._fast
        else:
            if cfg.compiled_books:
                log.warning("the compiled feed path appliance.feed._book_fast is not built (python setup.py "
                            "build_ext --inplace): the books run in Python, several times slower")
            self.books = BookSet(layout.symbols, BOOK_DEPTH, subscribed)
            self.outputs = BookOutputs(book_ring, book_ring.buffer, memory.market_state_writer())
        self.receiver = UdpReceiver(cfg.listen_host, cfg.listen_port, source=(cfg.source_host, cfg.source_port),
                                    multicast_group=cfg.multicast_group, interface=cfg.interface,
                                    rcvbuf=cfg.rcvbuf_bytes)
        self._foreign_logged = 0            # receiver.foreign when the last warning about it was logged
        self._next_foreign_log_ns = 0
        self.rerequest = RerequestChannel(cfg.rerequest_host, cfg.rerequest_port)
        self.sequencer = MoldSequencer(
            session=cfg.session.encode().ljust(10) if cfg.session else None,
            send_request=self.rerequest.send, max_buffered_packets=cfg.max_buffered_packets,
            request_timeout_ns=cfg.rerequest_timeout_ms * 1_000_000, max_retries=cfg.rerequest_retries,
            silence_ns=cfg.stale_after_ms * 1_000_000, skip_history=cfg.snapshot is not None)
        self._receive_in_order = None       # the live socket's receive and the in-order accept in one C call
        if self._fast is not None:
            self._fast.bind_sequencer(self.sequencer, self.receiver.c_receiver)
            self._receive_in_order = self._fast.receive_in_order
        snap = cfg.snapshot
        self.snapshots = SnapshotClient(snap.host, snap.port, timeout_ns=snap.timeout_ms * 1_000_000) \
            if snap is not None else None
        self._rebuild: _Rebuild | None = None
        # Live packets kept for a snapshot's replay (packet bytes, skip, rx_ns), from _kept_from on;
        # None when no rebuild is under way (the hot path's one test). _hold_all: every book is
        # being rebuilt, so kept packets are not applied. _joining: the first packet decides
        # whether this is a late join (snapshot) or the start of the day (apply what was kept).
        self._kept: list | None = [] if snap is not None else None
        self._kept_from = 0
        self._hold_all = snap is not None
        self._joining = snap is not None
        self._crossed_since: dict[int, int] = {}
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
        log.info("feed listening on %s:%d%s for the publisher %s:%s only, re-requests to %s:%d, %s, %d symbols, "
                 "rcvbuf %d, books %s", address[0], address[1], f" (multicast {cfg.multicast_group} on {cfg.interface})"
                 if cfg.multicast_group else "", cfg.source_host, cfg.source_port or "any port",
                 cfg.rerequest_host, cfg.rerequest_port,
                 f"snapshots from {snap.host}:{snap.port}" if snap is not None else "no snapshot server",
                 len(layout.symbols), getattr(self.receiver, "rcvbuf_effective", 0),
                 "compiled" if self._fast is not None else "python")
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
        if self.snapshots is not None:
            self.snapshots.close()
        self.outputs.market_state.close()

    # ------------------------------------------------------------------ duty cycle

    def do_work(self) -> int:
        work = 0
        receiver = self.receiver
        receive = receiver.receive
        # The next expected packet, no gap open: received, sequenced, applied and published in one C call
        # (fast.py bind_sequencer), while the books are live and no rebuild keeps packets; anything else the
        # sequencer declines comes back for the Python path (after which the condition is checked again).
        receive_in_order = self._receive_in_order
        if receive_in_order is not None and (self._kept is not None or self._feed_stale):
            receive_in_order = None
        for _ in range(self._max_packets):
            n = receive() if receive_in_order is None else receive_in_order()
            if n == IN_ORDER_TAKEN:
                work += 1
                continue
            if n < 0:
                break
            work += 1
            self._on_packet(receiver.buffer, n, receiver.rx_ns, True)
            if self._kept is not None or self._feed_stale:
                receive_in_order = None
            else:
                receive_in_order = self._receive_in_order
        now = time.monotonic_ns()
        slow = now >= self._next_slow_ns
        # The re-request socket only carries answers to our requests: read it every cycle while a gap is open
        # (a request outstanding), else once per slow tick (late or repeated answers, foreign datagrams), so an
        # idle cycle costs one empty receive, not two.
        if slow or self.sequencer.gap_open:
            work += self._receive_rerequests()
        if slow:
            self._next_slow_ns = now + 1_000_000
            work += self._slow_checks(now)
        return work

    def _receive_rerequests(self) -> int:
        channel = self.rerequest
        work = 0
        for _ in range(self._max_packets):
            n = channel.receive()
            if n < 0:
                break
            self._on_packet(channel.buffer, n, channel.rx_ns, False)
            work += 1
        return work

    def _on_packet(self, buffer, nbytes: int, rx_ns: int, live: bool) -> None:
        sequencer = self.sequencer
        skip = sequencer.accept(buffer, nbytes, rx_ns, time.monotonic_ns(), live)
        if skip < 0:                        # dropped, held behind a gap, or a new session
            if skip == RESTARTED:
                self._session_restarted()
            return
        if self._kept is None:
            self._publish(buffer, sequencer.payload_offset, nbytes, sequencer.next_expected - 1, rx_ns)
            if sequencer.pending:
                for packet, size, skipped, packet_rx_ns in sequencer.drain():
                    self._apply(packet, size, skipped, packet_rx_ns)
        else:                                       # a snapshot rebuild is under way
            self._keep(buffer, nbytes, skip, rx_ns)
            if sequencer.pending:
                for packet, size, skipped, packet_rx_ns in sequencer.drain():
                    self._keep(packet, size, skipped, packet_rx_ns)
        if self._feed_stale and sequencer.live and not self._hold_all:   # never after a lost gap, an end or mid-rebuild
            self._set_feed_stale(False)

    def _publish(self, buffer, start: int, nbytes: int, last_sequence: int, rx_ns: int) -> None:
        """One delivered packet, its new messages from byte ``start`` (the sequencer checked the header and
        the blocks): to the books, then one update per changed symbol."""
        if self._fast is not None:
            self._fast.apply_packet(buffer, start, nbytes, last_sequence, rx_ns)
        else:
            self.outputs.publish_packet(self.scanner.scan(buffer, start, nbytes, True), self.books, last_sequence,
                                        rx_ns)

    def _apply(self, buffer, nbytes: int, skip: int, rx_ns: int) -> None:
        """A packet the sequencer released from hold, or one kept for a rebuild: ``skip`` leading
        messages delivered before."""
        _session, sequence, count = _unpack_mold(buffer, 0)
        self._publish(buffer, moldudp64.block_offset(buffer, nbytes, skip), nbytes, sequence + count - 1, rx_ns)

    # ------------------------------------------------------------------ slow path (every ms)

    def _slow_checks(self, now: int) -> int:
        work = 0
        sequencer = self.sequencer
        if sequencer.gap_open and sequencer.poll(now):
            log.warning("gap abandoned after %d re-requests: %d messages lost; every book is stale",
                        self.config.rerequest_retries, sequencer.messages_lost)
            if self.snapshots is not None:
                self._gap_lost(now)         # before the packets after the hole are delivered
            for packet, size, skipped, packet_rx_ns in sequencer.drain():
                if self._kept is None:
                    self._apply(packet, size, skipped, packet_rx_ns)
                else:
                    self._keep(packet, size, skipped, packet_rx_ns)
            work += 1
        if self.snapshots is not None:
            work += self._snapshot_checks(now)
        elif sequencer.lost and now >= self._next_rebuild_ns:
            self._rebuild_after_loss(now)
            work += 1
        last_live = sequencer.last_live_ns
        silent = last_live is None or now - last_live > self._stale_after_ns
        should_be_stale = silent or not sequencer.live or self._hold_all
        if should_be_stale != self._feed_stale:
            self._set_feed_stale(should_be_stale)
            work += 1
        elif should_be_stale:
            self._write_stale_code()        # the reason can change while the feed stays stale
        if self.receiver.foreign != self._foreign_logged and now >= self._next_foreign_log_ns:
            self._log_foreign(now)
        if now >= self._next_counters_ns:
            self._next_counters_ns = now + self._counters_interval_ns
            self._publish_counters()
        return work

    def _log_foreign(self, now: int) -> None:
        """Datagrams from anyone but the publisher were dropped unparsed: say so, at most every 10 s."""
        receiver = self.receiver
        host, port = receiver.last_foreign or ("?", 0)
        log.warning("dropped %d datagrams not from the publisher %s:%s (latest from %s:%d); feed.rx_foreign %d",
                    receiver.foreign - self._foreign_logged, self.config.source_host,
                    self.config.source_port or "any port", host, port, receiver.foreign)
        self._foreign_logged = receiver.foreign
        self._next_foreign_log_ns = now + FOREIGN_LOG_INTERVAL_NS

    def _session_restarted(self) -> None:
        old, old_next, new, new_high = self.sequencer.last_restart
        log.warning("session restart: session %s at next sequence %d -> session %s up to sequence %d%s; "
                    "every book cleared and stale, rebuilding from %s",
                    _name(old), old_next, _name(new), new_high - 1, " (same name)" if old == new else "",
                    "a snapshot" if self.snapshots is not None else "sequence 1")
        if self.snapshots is not None:
            self._start_rebuild(SESSION_RESTART, None, time.monotonic_ns())
        else:
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
        rebuild = self._rebuild
        if rebuild is not None and rebuild.sids is None:
            return FeedStaleReason.SNAPSHOT
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
        if code == FeedStaleReason.SNAPSHOT:
            return f"rebuilding every book from a snapshot ({self._rebuild.trigger.replace('_', ' ')})"
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

    # ------------------------------------------------------------------ snapshot rebuilds (slow path)

    def _keep(self, buffer, nbytes: int, skip: int, rx_ns: int) -> None:
        """A packet delivered during a rebuild: kept for the replay, applied unless every book is rebuilt."""
        kept = self._kept
        if len(kept) >= self.config.snapshot.max_buffered_packets:
            kept.clear()                    # the next attempt keeps from here (a snapshot taken later)
            if self._rebuild is not None:
                self._snapshot_failed(f"more than {self.config.snapshot.max_buffered_packets} live packets "
                                      "arrived before the snapshot was applied", time.monotonic_ns())
        if not kept:
            self._kept_from = _unpack_mold(buffer, 0)[1] + skip
        kept.append((bytes(memoryview(buffer)[:nbytes]), skip))
        if not self._hold_all:
            self._apply(buffer, nbytes, skip, rx_ns)

    def _start_rebuild(self, trigger: str, sids: set | None, now: int) -> None:
        """Books (``sids``; None: every one) cleared and stale until a snapshot rebuilds them."""
        rebuild = self._rebuild
        if sids is None:
            self.snapshots.close()          # an attempt under way answers for other books, or a hole
            self.books.clear()
            self._crossed_since.clear()
            self._hold_all = True
            self._joining = False
            self._kept = []
            self._rebuild = _Rebuild(trigger, None, now)
            log.warning("snapshot rebuild of every book started (%s)%s", trigger.replace("_", " "),
                        f", replacing the rebuild for {rebuild.trigger.replace('_', ' ')}" if rebuild else "")
            self._set_feed_stale(True)
        else:
            if rebuild is not None and rebuild.sids is None:
                return                      # every book is being rebuilt already
            for sid in sids:
                self._isolate(sid)
            if rebuild is None:
                self._kept = []
                self._rebuild = _Rebuild(trigger, set(sids), now)
            else:
                rebuild.sids |= sids        # the attempt under way serves them too: its replay starts at N
            log.warning("snapshot rebuild of %s started (%s)",
                        ", ".join(self.books.books[i].symbol for i in sorted(sids)), trigger.replace("_", " "))
        self._trigger_counts[trigger] += 1

    def _gap_lost(self, now: int) -> None:
        """Messages were given up: every book is rebuilt. When that is under way already, only the
        packets kept before the hole are dropped (the replay needs those after the snapshot's N: a
        snapshot older than the hole fails its check and is taken again)."""
        rebuild = self._rebuild
        if rebuild is None or rebuild.sids is not None:
            self._start_rebuild(GAP_LOST, None, now)
        else:
            self._kept.clear()

    def _isolate(self, sid: int) -> None:
        """One book cleared, published stale (inconsistent), its messages filtered out until rebuilt."""
        book = self.books.books[sid]
        if book.locate is not None:
            self.books.subscribed_locates[book.locate] = 0
        book.reset()
        book.inconsistent = True
        book.last_error = "rebuilding"
        self._crossed_since.pop(sid, None)
        self.outputs.publish(book, self.sequencer.next_expected - 1, 0)

    def _snapshot_checks(self, now: int) -> int:
        """Triggers, then the snapshot attempt under way (never blocks)."""
        sequencer = self.sequencer
        if self._joining and sequencer.session is not None:
            if sequencer.origin > 1 or (self._kept and self._kept_from > 1):
                log.info("joined session %s at sequence %d: the books come from a snapshot",
                         _name(sequencer.session), sequencer.origin)
                self._start_rebuild(LATE_JOIN, None, now)
            elif self._kept:                # the start of the day: what was kept is the whole history
                self._joining = self._hold_all = False
                kept, self._kept = self._kept, None
                for packet, skip in kept:
                    self._apply(packet, len(packet), skip, 0)
        if sequencer.lost and (self._rebuild is None or self._rebuild.sids is not None):
            self._start_rebuild(GAP_LOST, None, now)
        elif not self._hold_all:
            self._book_checks(now)
        rebuild = self._rebuild
        if rebuild is None:
            return 0
        client = self.snapshots
        if rebuild.result is None:
            state = client.state
            if state == "idle":
                if now < rebuild.next_attempt_ns:
                    return 0
                rebuild.attempt_ns = now
                client.start(now)
            state = client.poll(now)
            if state == "failed":
                self._snapshot_failed(client.error, now)
                return 1
            if state != "done":
                return 1
            self._snapshot_received(now)
            if rebuild.result is None:
                return 1
        if sequencer.next_expected >= rebuild.result[0]:
            self._finish_rebuild(now)
        elif now - rebuild.attempt_ns > self.config.snapshot.timeout_ms * 1_000_000:
            self._snapshot_failed(f"the live stream did not reach the snapshot's ITCH sequence {rebuild.result[0]} "
                                  f"(at {sequencer.next_expected})", now)
        return 1

    def _book_checks(self, now: int) -> None:
        """Inconsistent books, and books crossed for ``snapshot.crossed_ms``, are rebuilt."""
        rebuild = self._rebuild
        busy = rebuild.sids if rebuild is not None else ()
        crossed_since = self._crossed_since
        inconsistent = crossed = None
        books = self.books.books if self._fast is None else self._fast.books_to_check(crossed_since)
        for book in books:
            sid = book.symbol_id
            if sid in busy:
                continue
            if book.inconsistent:
                inconsistent = (inconsistent or set()) | {sid}
                log.warning("book %s inconsistent (%s)", book.symbol, book.last_error)
            elif book.crossed:
                since = crossed_since.setdefault(sid, now)
                if now - since >= self.config.snapshot.crossed_ms * 1_000_000:
                    crossed = (crossed or set()) | {sid}
                    log.warning("book %s crossed for %d ms: bid %d over ask %d", book.symbol,
                                (now - since) // 1_000_000, book.best_bid()[0], book.best_ask()[0])
            elif crossed_since:
                crossed_since.pop(sid, None)
        if inconsistent:
            self._start_rebuild(INCONSISTENT_BOOK, inconsistent, now)
        if crossed:
            self._start_rebuild(CROSSED_BOOK, crossed, now)

    def _snapshot_received(self, now: int) -> None:
        """The client is done: check what it brought (untrusted) and hold it until the stream reaches N."""
        client, rebuild, sequencer = self.snapshots, self._rebuild, self.sequencer
        session = moldudp64.session_bytes(client.session or "")
        if sequencer.session is not None and session != sequencer.session:
            self._snapshot_failed(f"a snapshot of session {_name(session)}, the feed follows "
                                  f"{_name(sequencer.session)}", now)
            return
        raws = []
        for message in client.messages:
            raw = _itch_raw(message)
            if raw is None:
                self._snapshot_failed(f"not an ITCH message in the snapshot: {message[:12]!r}", now)
                return
            raws.append(raw)
        rebuild.result = (client.next_sequence, raws)
        client.close()

    def _snapshot_failed(self, reason: str, now: int) -> None:
        rebuild = self._rebuild
        self.snapshots.close()
        self._snapshot_failures += 1
        rebuild.failures += 1
        rebuild.result = None
        rebuild.next_attempt_ns = now + rebuild.backoff_ns
        rebuild.backoff_ns = min(2 * rebuild.backoff_ns, SNAPSHOT_RETRY_MAX_NS)
        self._kept.clear()                  # the next attempt keeps packets from its own start
        log.warning("snapshot rebuild (%s) attempt %d failed: %s; next attempt in %d ms",
                    rebuild.trigger.replace("_", " "), rebuild.failures, reason,
                    (rebuild.next_attempt_ns - now) // 1_000_000)

    def _finish_rebuild(self, now: int) -> None:
        """Clear the affected books, load the snapshot, replay the kept messages from its N on."""
        rebuild, sequencer, books = self._rebuild, self.sequencer, self.books
        first_sequence, raws = rebuild.result
        kept = self._kept
        kept_from = self._kept_from if kept else sequencer.next_expected
        if kept_from > first_sequence:
            self._snapshot_failed(f"the snapshot (up to ITCH sequence {first_sequence - 1}) is older than the "
                                  f"live packets kept (from {kept_from})", now)
            return
        sids = rebuild.sids
        book_of_locate = books.book_of_locate
        apply = books.apply
        if sids is None:
            books.clear()
        else:
            for sid in sids:
                books.books[sid].reset()
        loaded = 0
        for raw in raws:
            kind = raw[0]
            if sids is not None:
                if kind == b"S" or kind == b"R":
                    continue
                book = book_of_locate[raw[1]]
                if book is None or book.symbol_id not in sids:
                    continue
            apply(raw)
            loaded += 1
        replayed = 0
        for packet, skip in kept:
            _session, sequence, count = _unpack_mold(packet, 0)
            offset = _MOLD_HEADER
            for index in range(count):
                start = offset + 2
                offset = start + (packet[offset] << 8 | packet[offset + 1])
                if index < skip or sequence + index < first_sequence or offset - start < 3:
                    continue
                kind = packet[start]
                if kind != 0x53 and kind != 0x52:          # S and R pass every filter
                    book = book_of_locate[packet[start + 1] << 8 | packet[start + 2]]
                    if book is None or (sids is not None and book.symbol_id not in sids):
                        continue
                elif sids is not None:
                    continue
                raw = _itch_raw(packet[start:offset])
                if raw is not None:
                    apply(raw)
                    replayed += 1
        if sids is not None:
            for sid in sids:
                book = books.books[sid]
                if book.locate is not None:
                    books.subscribed_locates[book.locate] = 1
        self._kept = None
        self._hold_all = False
        self._rebuild = None
        if sequencer.lost:
            sequencer.books_rebuilt()
        self._snapshot_rebuilds += 1
        which = "every book" if sids is None else ", ".join(books.books[i].symbol for i in sorted(sids))
        log.info("snapshot rebuild (%s) of %s done: %d snapshot messages up to ITCH sequence %d, %d live messages "
                 "replayed up to %d, %d orders, %.1f ms, %d failed attempts", rebuild.trigger.replace("_", " "),
                 which, loaded, first_sequence - 1, replayed, sequencer.next_expected - 1,
                 sum(books.books[i].order_count for i in (sids if sids is not None else range(len(books.books)))),
                 (now - rebuild.started_ns) / 1e6, rebuild.failures)
        if sids is not None:
            for sid in sids:
                self.outputs.publish(books.books[sid], sequencer.next_expected - 1, 0)
        else:
            self._set_feed_stale(self._feed_stale)      # every book published; the staleness check follows

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
                                  allocate("feed.messages_malformed")]
        self._output_counters = [allocate("feed.book_updates"), allocate("feed.book_updates_dropped"),
                                 allocate("feed.book_update_messages")]
        self._snapshot_counters = [allocate("feed.snapshot_rebuilds"), allocate("feed.snapshot_failures"),
                                   allocate("feed.snapshot_in_progress")]
        self._trigger_counters = {t: allocate(f"feed.snapshot_trigger_{t}") for t in SNAPSHOT_TRIGGERS}
        self._trigger_counts = dict.fromkeys(SNAPSHOT_TRIGGERS, 0)
        self._snapshot_rebuilds = self._snapshot_failures = 0
        # Live orders held by the books (a feed adding orders without end grows them: watch this), and the
        # compiled path's own bytes and refused allocations (a refusal latches the book inconsistent).
        self._orders_gauge = allocate("feed.book_orders", CounterKind.GAUGE)
        self._memory_counters = ([allocate("feed.compiled_memory_bytes", CounterKind.GAUGE),
                                  allocate("feed.compiled_alloc_failures")] if self._fast is not None else [])
        self._receiver_counters = [allocate("feed.rx_packets"), allocate("feed.rx_truncated"),
                                   allocate("feed.rx_missing_timestamps"), allocate("feed.rerequest_foreign"),
                                   allocate("feed.rx_foreign")]

    def _publish_counters(self) -> None:
        for counter, value in zip(self._sequencer_counters, self.sequencer.counter_values()):
            counter.set(value)
        for counter, value in zip(self._book_counters, self.books.counters):
            counter.set(value)
        scanner = self.scanner
        for counter, value in zip(self._scanner_counters, (scanner.decoded, scanner.filtered_out, scanner.malformed)):
            counter.set(value)
        self._output_counters[0].set(self.outputs.published)
        self._output_counters[1].set(self.outputs.dropped)
        self._output_counters[2].set(self.outputs.messages)
        for counter, value in zip(self._snapshot_counters, (self._snapshot_rebuilds, self._snapshot_failures,
                                                            int(self._rebuild is not None))):
            counter.set(value)
        for trigger, counter in self._trigger_counters.items():
            counter.set(self._trigger_counts[trigger])
        if self._fast is not None:
            stats = self._fast.stats()
            self._orders_gauge.set(stats["order_count"])
            self._memory_counters[0].set(stats["memory_bytes"])
            self._memory_counters[1].set(stats["alloc_failures"])
        else:
            self._orders_gauge.set(sum(book.order_count for book in self.books.books))
        r = self.receiver
        for counter, value in zip(self._receiver_counters, (r.packets, r.truncated, r.missing_timestamps,
                                                            self.rerequest.foreign, r.foreign)):
            counter.set(value)
