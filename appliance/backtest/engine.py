"""The backtest: a recorded ITCH day through the same feed books, strategy host and risk engine as live,
in one process, against the venue model of ``appliance.replay``; it fills a ``BacktestRecord``.

What runs is the live code: the file's blocks go through the feed's compiled path
(``feed.fast.FastFeed.apply_packet``: the locate filter, the books, one BookUpdate per changed symbol on
a ring and the market-state slots), the user's ``Strategy`` runs in ``strategy.host.StrategyHost`` (the
BookUpdates drained from that ring, ExecutionReports and OrderRejects as records, timers on the event
clock, fees from the fee schedule), and every intent passes ``risk.checks.RiskEngine`` with the limits
file and the instruments (a refusal goes back as the OrderReject risk sends, with its reason). The
ExecutionReports carry the position, cost basis and realized P&L of the OMS's ``PositionLedger``.

Event time, never wall time: a recorded message stamped t changes the venue's book at t and reaches
the strategy at t + ``latency.feed_ns`` (the feed's books are applied then, so the strategy never sees
a later message early); messages of one stamp arrive together (one packet: one ``on_book`` per changed
symbol). The strategy's clock (``clock``, timers) shows the event being handled. Actions reach the venue
``latency.entry_ns`` after they are sent; the venue's answers reach the strategy ``latency.ack_ns``
after they happen (``replay/venue.py`` for the order of events at the venue). The event loop
(``_run_until``) hands the strategy, in time order, everything due before the next recorded message
reaches the venue: book updates, venue answers, timers; and lets the venue handle our actions that
arrive before it.

The day's date: ITCH stamps are ns since midnight; the strategy's and risk's clocks need an epoch, the
midnight of ``BacktestConfig.date`` (a fixed default, so a run never depends on the day it runs).

``--from``/``--to``: the books are built from the first message; the strategy starts at ``from`` (its
books published then, as a feed's start does) and stops at ``to`` (``on_stop``), the day ends there.
"""
from __future__ import annotations

import datetime
import gzip
import heapq
import mmap
import os
import time
from collections import deque
from dataclasses import dataclass, field

from appliance.backtest.record import (EQUITY_INTERVAL_NS, MARKOUT_HORIZONS_S, BacktestFill, BacktestRecord,
                                       EquityPoint)
from appliance.feed.fast import FastFeed
from appliance.messages.catalog import EXECUTION_REPORT, ORDER_INTENT, ORDER_REJECT
from appliance.messages.codes import REJECT_REASON_NO_SUCH_ORDER, Action, ExecEvent, RejectSource, RiskReason, Side
from appliance.oms.positions import PositionLedger
from appliance.replay import venue as replay_venue
from appliance.replay.latency import Latency
from appliance.replay.venue import ReplayVenue
from appliance.risk.checks import RiskEngine
from appliance.risk.fast import compiled_check
from appliance.risk.paper_market import PaperMarket
from appliance.runtime import _shm
from appliance.strategy.host import StrategyHost
from appliance.strategy.ids import ClientOrderIds
from appliance.strategy.intents import IntentWriter
from appliance.wire import itch
from appliance.wire.errors import WireFormatError

DEFAULT_DATE = datetime.date(2026, 1, 5)          # a Monday: the epoch day of every run unless told
STRATEGY_ID = 1
CHUNK = 1 << 20
GROUP_MESSAGES = 256                               # a packet holds at most this many messages (the book ring's room)
HOUSEKEEPING_NS = 10_000_000                       # risk's marks and loss limits, as the risk agent's default
INTENTS_PER_EVENT = 100_000                        # more at one event time: the strategy loops on itself
_NS = 1_000_000_000

_NEW, _REPLACE, _CANCEL, _CANCEL_ALL, _REDUCE = (int(Action.NEW), int(Action.REPLACE), int(Action.CANCEL),
                                                  int(Action.CANCEL_ALL), int(Action.REDUCE))
_BUY = int(Side.BUY)
_INTENT = ORDER_INTENT.struct.unpack_from
_REPORT_TYPE = EXECUTION_REPORT
_REASON_NAMES = {int(r): r.name for r in RiskReason}
_EVENT_OF_KIND = {replay_venue.ACCEPTED: int(ExecEvent.ACCEPTED), replay_venue.REPLACED: int(ExecEvent.REPLACED),
                  replay_venue.CANCELED: int(ExecEvent.CANCELED), replay_venue.EXECUTED: int(ExecEvent.EXECUTED),
                  replay_venue.REJECTED: int(ExecEvent.REJECTED),
                  replay_venue.CANCEL_REJECT: int(ExecEvent.CANCEL_REJECTED)}
_EXECUTED = int(ExecEvent.EXECUTED)
_RISK, _EXCHANGE = int(RejectSource.RISK), int(RejectSource.EXCHANGE)


class BacktestError(Exception):
    """A backtest that cannot run: a bad file (with the offset), bad settings; the message says which."""


@dataclass(frozen=True)
class BacktestSetup:
    """What a run needs, loaded and checked (``cli.py`` builds it from the options)."""
    day_file: str
    strategy_spec: str                 # "module:Class" or "path.py:Class", as given
    strategy_class: type
    parameters: object
    limits: object                     # risk.limits.Limits over ``symbols``
    instruments: object                # config.instruments.Instruments over ``symbols`` (ids = positions)
    symbols: tuple[str, ...]           # the universe: books, risk and the strategy's symbols (the instruments')
    traded: tuple[str, ...]            # the symbols the strategy trades (given order)
    fees: object                       # strategy.fees.FeeSchedule
    latency: Latency = field(default_factory=Latency)
    queue_model: str = "risk-averse"
    seed: int = 0
    start_ns: int | None = None        # --from: ns since midnight (None: the first message)
    end_ns: int | None = None          # --to
    date: datetime.date = DEFAULT_DATE
    timer_interval_ns: int = 100_000_000
    venue_compiled: bool = True        # the venue's recorded book in C when built (False: the Python reference)


def _open_day(path: str):
    """The day file, plain or gzip, as a binary stream (gzip told by its magic bytes)."""
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise BacktestError(f"{path}: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        file.close()
        raise BacktestError(f"{path}: is a directory, not an ITCH day file")
    magic = file.read(2)
    file.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=file, mode="rb"), file
    return file, file


def _stamped_after(data, start: int, stop: int, end_ns: int) -> int:
    """How many of the whole blocks in ``data[start:stop]`` are stamped after ``end_ns`` (``--to``): the
    scanner counts the messages it passes over, the locate filter's too, before the engine sees a stamp."""
    count = 0
    for offset, _ in itch.iter_blocks(data, start, stop):
        if int.from_bytes(data[offset + 5:offset + 11], "big") > end_ns:
            count += 1
    return count


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class _Ring:
    """An in-process SPSC ring (the appliance's ring code on anonymous memory): producer and consumer ends."""

    def __init__(self, slot_size: int, capacity: int):
        size = _shm.RING_HEADER_SIZE + slot_size * capacity
        self.buffer = mmap.mmap(-1, size)
        _shm.ring_format(self.buffer, 0, slot_size, capacity)
        self.producer = _shm.Ring(self.buffer, 0, slot_size, capacity, "p")
        self.consumer = _shm.Ring(self.buffer, 0, slot_size, capacity, "c")


def _capacity(n: int) -> int:
    c = 64
    while c < n:
        c <<= 1
    return c


class Backtest:
    """One run over one day file: ``run(progress=None) -> BacktestRecord``."""

    def __init__(self, setup: BacktestSetup) -> None:
        self.setup = setup
        symbols = setup.symbols
        self.symbols = symbols
        self.traded_ids = [symbols.index(s) for s in setup.traded]
        self.latency = setup.latency
        self.feed_ns, self.entry_ns = setup.latency.feed_ns, setup.latency.entry_ns
        self.midnight = int(datetime.datetime.combine(setup.date, datetime.time(),
                                                      tzinfo=datetime.timezone.utc).timestamp()) * _NS
        self.now = self.midnight                  # the strategy's clock (epoch ns)
        self.record = BacktestRecord(day_file=os.path.basename(setup.day_file), symbols=tuple(setup.traded),
                                     strategy=setup.strategy_spec, seed=setup.seed)
        # the feed's compiled books, writing BookUpdates to a ring and the market state risk reads
        self.market = PaperMarket(symbols)
        self.book_ring = _Ring(192, _capacity(2 * len(symbols) + 2 * GROUP_MESSAGES))
        self.subscribed = bytearray(65536)
        self.scanner = itch.BlockScanner(self.subscribed, strict=True)
        self.feed = FastFeed(symbols, self.book_ring.producer, self.book_ring.buffer, self.market.writer,
                             subscribed_locates=self.subscribed)
        self.feed.midnight_ns = self.midnight
        self.feed.feed_stale = False
        self.feed.event_clock = True              # its output stamps (a book's t_feed_out_ns) on event time too
        self.venue = ReplayVenue(symbols, setup.queue_model, setup.latency, setup.seed, self.subscribed)
        # risk, as the risk agent runs it
        self.risk = RiskEngine(setup.limits, symbols, self.market.reader)
        self.check = compiled_check(self.risk)   # the risk agent's compiled check set (its default), checks.py behind it
        if not setup.venue_compiled:
            self.venue.use_reference()            # the venue's Python recorded book (tests compare the two)
        self.reducing = False
        self.ledger = PositionLedger(len(symbols))
        self.open_orders: dict[int, int] = {}    # client order id -> symbol id, live at the venue (the OMS's view)
        self.order_sid: dict[int, int] = {}      # client order id -> symbol id, every order sent today
        self.replacing: dict[int, tuple] = {}    # client order id -> its replacement (id, side, shares, price)
                                                 # while the replace is on its way
        # the strategy host, on rings and records like the strategy agent's
        self.intent_ring = _Ring(128, 4096)
        self.writer = IntentWriter(self.intent_ring.producer, self.intent_ring.buffer, STRATEGY_ID, 1024,
                                   clock_ns=self.clock)
        self.host = StrategyHost(setup.strategy_class, setup.parameters, symbols=symbols, traded=setup.traded,
                                 strategy_id=STRATEGY_ID, intents=self.writer, ids=ClientOrderIds(clock_ns=self.clock),
                                 feed_live=None, gate_open=None, clock_ns=self.clock,     # None: live, open
                                 instruments=setup.instruments, fees=setup.fees,
                                 timer_interval_ns=setup.timer_interval_ns, snapshot_timeout_ns=None)
        self.report_buffer = bytearray(EXECUTION_REPORT.size)
        self.reject_buffer = bytearray(ORDER_REJECT.size)
        self.fees = setup.fees
        self.started = False
        self.stopped = False
        self._books = deque()                     # [strategy time (ns since midnight), data, start, end]
        self._feed_sequence = 0
        self._next_housekeeping = 0
        self._next_equity = None
        self._markouts: list = []                 # heap of (due ns, fill number, horizon s, symbol id, mid_after)
        self._last_mid: dict[int, float] = {}
        self._intents_now = 0

    # ------------------------------------------------------------------ the clock

    def clock(self) -> int:
        return self.now

    # ------------------------------------------------------------------ the run

    def run(self, progress=None) -> BacktestRecord:
        """Replay the day; ``progress(stats)`` (optional) is called about twice a second of wall time."""
        started = time.perf_counter()
        record = self.record
        path = self.setup.day_file
        stream, raw_file = _open_day(path)
        total = _file_size(path)
        start_ns, end_ns = self.setup.start_ns, self.setup.end_ns
        scanner, on_itch = self.scanner, self.venue.on_itch
        books = self._books
        feed_ns = self.feed_ns
        group_ts = -1
        group = [0, None, 0, 0, 0]
        base = 0
        pending = b""
        last_progress = started
        stop_ts = None
        venue_out = self.venue._out
        next_t = 0                                # no event of ours before this (a lower bound is safe)
        past_end = 0                              # messages stamped after --to the scanner counted
        try:
            while stop_ts is None:
                try:
                    chunk = stream.read(CHUNK)
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise BacktestError(f"{path}: cannot read past byte {base + len(pending)} of the data: "
                                        f"{exc}") from None
                if not chunk:
                    break
                data = pending + chunk if pending else chunk
                walk = scanner.scan(data)
                start = 0
                try:
                    for raw in walk:
                        ts = raw[3]
                        if ts != group_ts or group[1] is not data or group[4] >= GROUP_MESSAGES:
                            if end_ns is not None and ts > end_ns:
                                stop_ts = end_ns
                                break
                            if ts < group_ts:
                                record.warnings.append(f"timestamp goes back at offset {base + walk.offset}: "
                                                       f"{ts} after {group_ts} (handled in file order)")
                            if not self.started and (start_ns is None or ts >= start_ns):
                                self._flush_feed_now()
                                self._start(ts if start_ns is None else start_ns)
                                next_t = 0
                            if self.started:
                                if next_t < ts:
                                    next_t = self._run_until(ts)
                                if ts >= self._next_equity:
                                    self._equity_until(ts)
                                if self._markouts and self._markouts[0][0] < ts:
                                    self._resolve_markouts(ts)
                            group_ts = ts
                            group = [ts + feed_ns, data, start, walk.offset, 1]     # one packet: one stamp
                            books.append(group)
                            if ts + feed_ns < next_t:
                                next_t = ts + feed_ns
                        else:
                            group[3] = walk.offset
                            group[4] += 1
                        start = walk.offset
                        on_itch(raw)
                        if venue_out and venue_out[0][0] < next_t:    # the venue said something: when it arrives
                            next_t = venue_out[0][0]
                except WireFormatError as exc:
                    raise BacktestError(f"{path}: bad ITCH data at byte offset {base + exc.offset}: "
                                        f"{exc.reason}") from None
                if end_ns is not None:          # messages past --to since the last one replayed: not the day's
                    past = _stamped_after(data, start, walk.offset, end_ns)
                    past_end = past if start else past_end + past
                if stop_ts is None and start < walk.offset and group[1] is data:
                    group[3] = walk.offset       # filtered-out blocks after the last message: the feed counts them
                stop = walk.offset
                pending = data[stop:]
                base += stop
                if not self.started:
                    self._flush_feed_now()
                if progress is not None:
                    now = time.perf_counter()
                    if now - last_progress >= 0.5:
                        last_progress = now
                        position = raw_file.tell() if not raw_file.closed else total
                        progress(self._progress(now - started, position, total))
            if pending and stop_ts is None:
                length = pending[0] << 8 | pending[1] if len(pending) > 1 else None
                what = (f"block says {length} bytes, only {len(pending) - 2} present" if length is not None
                        else "1 byte of a 2-byte block length")
                record.warnings.append(f"file ends mid-message at offset {base}: {what}; the day ends there")
        finally:
            stream.close()
            if raw_file is not stream:
                raw_file.close()
        if not self.started:
            self._flush_feed_now()
            self._start(start_ns if start_ns is not None else max(group_ts, 0))
        end = stop_ts if stop_ts is not None else max(group_ts, record.start_ns)
        self._finish(end)
        counters = scanner.counters
        record.messages = counters[itch.DECODED] + counters[itch.FILTERED_OUT] - past_end
        record.seconds = time.perf_counter() - started
        return record

    def _progress(self, seconds: float, position: int, total: int) -> dict:
        counters = self.scanner.counters
        messages = counters[itch.DECODED] + counters[itch.FILTERED_OUT]
        share = position / total if total else 0.0
        rate = messages / seconds if seconds > 0 else 0.0
        eta = seconds * (1 - share) / share if share > 0 else None
        realized = sum(self.ledger.realized_pnl)
        return {"messages": messages, "share": share, "msgs_per_s": rate, "eta_s": eta,
                "fills": len(self.record.fills), "realized_pnl": realized}

    # ------------------------------------------------------------------ start and end

    def _start(self, start_ns: int) -> None:
        """The strategy starts at ``start_ns``: risk ready, the strategy built and started, every book
        published (what it would see from a feed that has just caught up)."""
        self.started = True
        self.record.start_ns = start_ns
        self.now = self.midnight + start_ns
        self.risk.control.start(self.now)
        self.risk.mark_ready(self.now)
        self._next_housekeeping = start_ns + HOUSEKEEPING_NS
        self._next_equity = start_ns
        self.host.start()
        self._intents()
        sequence = self._feed_sequence
        for book in self.feed.books:
            if book.locate is not None:
                self.feed.publish(book, sequence, self.now)
        self._deliver_books()

    def _finish(self, end_ns: int) -> None:
        """The end of the day at ``end_ns``: everything due by then, the strategy stopped (``on_stop``), its
        last actions answered; the last equity point and the markouts the day still covers."""
        self._run_until(end_ns + 1)
        self.now = self.midnight + max(end_ns, self.now - self.midnight)
        if self.host.running:
            self.host.stop()
            self._intents()
        settle = end_ns + self.latency.entry_ns + self.latency.ack_ns + 1
        self._run_until(settle, timers=False)
        self.venue.advance(settle)
        self._run_until(settle + self.latency.ack_ns + 1, timers=False)
        self._equity_until(end_ns + 1)
        self._resolve_markouts(end_ns + 1)
        for _, _, horizon, _, mid_after in self._markouts:
            mid_after[horizon] = None
        self._markouts.clear()
        record = self.record
        record.end_ns = end_ns
        if not record.equity or record.equity[-1].time_ns != end_ns:
            record.equity.append(EquityPoint(end_ns, self._mids()))
        stats = self.host.stats
        if stats.errors:
            record.warnings.append(f"the strategy stopped after {stats.errors} error(s) in its code (see the log)")
        if stats.trades_missed:
            record.warnings.append(f"{stats.trades_missed} trade prints never reached the strategy")

    # ------------------------------------------------------------------ the event loop

    def _run_until(self, limit: int, timers: bool = True) -> int:
        """Everything on our side that happens before ``limit`` (ns since midnight), in time order; at equal
        times: our actions reaching the venue, the venue's answers, then book updates, then timers. Returns
        when the next of those happens (at or after ``limit``; with timers, maybe earlier than the next one: a
        lower bound, which the caller may use); only a recorded message adds events then."""
        books, venue, host, midnight = self._books, self.venue, self.host, self.midnight
        out, inbound = venue._out, venue._inbound          # the venue's queues, read here on the hot path
        apply_packet, never = self.feed.apply_packet, 1 << 62
        queue = host.timers
        while True:                                # t = the earliest of the four (compares: cheaper than min())
            t = t_book = books[0][0] if books else never
            t_delivery = out[0][0] if out else never
            if t_delivery < t:
                t = t_delivery
            t_arrival = inbound[0][0] if inbound else never
            if t_arrival < t:
                t = t_arrival
            # the timer queue's ``due_ns`` (its heap's first deadline, maybe of a cancelled timer) is a lower
            # bound of the next timer, as the strategy agent's duty cycle reads it: exact only when it is due
            t_timer = queue.due_ns - midnight if timers and host.running else never
            if t_timer < t:
                t = t_timer
            if t >= limit:
                return t                           # a lower bound: the caller's next call is then early, no harm
            if t == t_timer:
                exact = host.next_timer_ns()       # drops cancelled timers; due_ns is then exact
                if exact is None or exact - midnight != t:
                    continue
            if t_arrival == t:
                venue.advance(t)                 # our actions reach the venue before what happens at t here
                continue
            if t > self.now - midnight:
                self.now = midnight + t
            self._intents_now = 0
            if t >= self._next_housekeeping:
                self._housekeeping(t)
            if t_delivery == t:
                self._deliver_reports(t)
            elif t_book == t:
                group = books.popleft()
                self._feed_sequence += 1
                if apply_packet(group[1], group[2], group[3], self._feed_sequence, midnight + t):
                    self._deliver_books()        # only when a published book changed (the top levels, a print)
            else:
                host.run_timers(midnight + t)
                self._intents()

    def _flush_feed_now(self) -> None:
        """Before the strategy starts: the books follow the file at once (nobody to delay them for)."""
        books = self._books
        consumer = self.book_ring.consumer
        while books:
            group = books.popleft()
            self._feed_sequence += 1
            self.feed.apply_packet(group[1], group[2], group[3], self._feed_sequence, self.midnight + group[0])
            while consumer.peek() >= 0:
                consumer.release()

    def _deliver_books(self) -> None:
        self.host.drain_book_updates(self.book_ring.consumer, self.book_ring.buffer, 1 << 20)
        self._intents()

    def _housekeeping(self, t: int) -> None:
        self.risk.housekeeping(self.midnight + t)
        self._next_housekeeping = t - t % HOUSEKEEPING_NS + HOUSEKEEPING_NS

    # ------------------------------------------------------------------ intents: risk, then the venue

    def _intents(self) -> None:
        """Every intent the strategy wrote, through risk to the venue (refusals back to the strategy)."""
        ring = self.intent_ring.consumer
        buffer = self.intent_ring.buffer
        writer = self.writer
        while True:
            offset = ring.peek()
            if offset < 0:
                if writer.pending and writer.flush():
                    continue
                return
            intent = _INTENT(buffer, offset)
            ring.release()
            self._intents_now += 1
            if self._intents_now > INTENTS_PER_EVENT:
                raise BacktestError(f"the strategy sent more than {INTENTS_PER_EVENT} intents at one event time "
                                    f"({self.now - self.midnight} ns): it answers its own events forever")
            self._intent(intent)

    def _intent(self, intent) -> None:
        (_type, _version, _size, cid, orig, strategy_id, sid, action, side, display, capacity, shares, price, tif,
         minimum_quantity, iso, _p0, _p1, _t_rx, _t_feed, _t_out) = intent
        record = self.record
        now = self.now
        if action == _REDUCE:
            self.reducing = True
            return
        if action != _CANCEL_ALL:
            record.intents += 1                  # the record's "new, replace, cancel" (not the host's cancel-alls)
        risk = self.risk
        reason = self.check(action, cid, orig, sid, side, shares, price, tif, now, display, capacity,
                            minimum_quantity, iso)
        if not reason and self.reducing:
            reason = risk.held_reducing(action, orig, sid, side, shares)      # the risk agent's rule
        if reason:
            name = _REASON_NAMES.get(reason, str(reason))
            record.refusals[name] = record.refusals.get(name, 0) + 1
            symbol = self.symbols[sid] if 0 <= sid < len(self.symbols) else str(sid)
            per = record.refusals_by_symbol.setdefault(symbol, {})
            per[name] = per.get(name, 0) + 1
            ORDER_REJECT.pack_into(self.reject_buffer, 0, cid, strategy_id, sid, _RISK, reason, now)
            self.host.handle_order_reject(self.reject_buffer, 0)
            return
        risk.record(action, cid, orig, sid, side, shares, price, strategy_id, now)
        t = now - self.midnight
        venue = self.venue
        if action == _NEW:
            record.orders += 1
            symbol = self.symbols[sid]
            record.orders_by_symbol[symbol] = record.orders_by_symbol.get(symbol, 0) + 1
            self.open_orders[cid] = self.order_sid[cid] = sid
            venue.submit(cid, symbol, chr(side), shares, price, tif, t)
        elif action == _REPLACE:
            self.open_orders[cid] = self.order_sid[cid] = sid
            self.replacing[orig] = (cid, side, shares, price)
            venue.replace(orig, cid, shares, price, t)
        elif action == _CANCEL:
            venue.cancel(orig, t)
        elif action == _CANCEL_ALL:
            everything = sid == 0xFFFFFFFF
            for order, order_sid in list(self.open_orders.items()):
                if everything or order_sid == sid:
                    venue.cancel(order, t)

    # ------------------------------------------------------------------ the venue's answers

    def _deliver_reports(self, t: int) -> None:
        for event in self.venue.poll(t):
            self._report(event)
            self._intents()

    def _report(self, e) -> None:
        """One venue event as the OMS reports it: position, cost and realized P&L after it, to risk and the
        strategy; a fill into the record."""
        sid = self.order_sid.get(e.token, -1)
        if sid < 0:
            return
        kind = e.kind
        if kind == replay_venue.CANCEL_REJECT and e.token in self.replacing:
            e = self._replace_refused(e)
            kind = e.kind
        event = _EVENT_OF_KIND[kind]
        ledger = self.ledger
        side = ord(e.side) if e.side else 0
        token, orig = e.token, e.orig_token
        reason, source, liquidity = 0, 0, 0
        if kind == replay_venue.EXECUTED:
            signed = e.shares if side == _BUY else -e.shares
            ledger.fill(sid, signed, e.price)
            liquidity = ord(e.liquidity)
            fee = self.fees.fee(e.symbol, e.liquidity, e.shares, e.price)
            mid_after: dict = {}
            self.record.fills.append(BacktestFill(e.time_ns, e.symbol, "B" if side == _BUY else "S", e.shares,
                                                  e.price, e.liquidity, fee, token, mid_after))
            number = len(self.record.fills)
            for horizon in MARKOUT_HORIZONS_S:
                heapq.heappush(self._markouts, (e.time_ns + horizon * _NS, number, horizon, sid, mid_after))
        elif kind == replay_venue.REJECTED:
            reason, source = ord(e.reason), _EXCHANGE
        elif kind == replay_venue.CANCELED:
            reason = ord(e.reason)
        elif kind == replay_venue.REPLACED:
            self.open_orders.pop(orig, None)
            self.replacing.pop(orig, None)
        if e.leaves == 0 and kind in (replay_venue.EXECUTED, replay_venue.CANCELED, replay_venue.REJECTED,
                                      replay_venue.CANCEL_REJECT, replay_venue.ACCEPTED):
            self.open_orders.pop(token, None)
        if kind == replay_venue.CANCEL_REJECT:
            side = 0
        position, cost, realized = ledger.position[sid], ledger.cost_basis[sid], ledger.realized_pnl[sid]
        now = self.now
        EXECUTION_REPORT.pack_into(self.report_buffer, 0, token, orig, 0, 0, STRATEGY_ID, sid, event, side, reason,
                                   source, e.shares, e.price, e.leaves, position, cost, realized,
                                   self.midnight + e.time_ns, now, liquidity)
        self.risk.on_report(event, token, orig, sid, side, e.shares, e.price, e.leaves, position, cost, realized,
                            STRATEGY_ID, now)
        self.host.handle_exec_record(self.report_buffer, 0)

    def _replace_refused(self, e):
        """The venue refused a replace (its order was gone: filled or canceled before the replace arrived): as
        the OMS answers it (``oms/orders.py`` ``_cancel_reject``), the replacement is rejected, no such order,
        unless it is no longer open (the venue rejected it itself). Otherwise a cancel reject of the order."""
        replacement, side, shares, price = self.replacing.pop(e.token)
        if replacement not in self.open_orders:
            return e
        return e._replace(kind=replay_venue.REJECTED, token=replacement, side=chr(side), shares=shares, price=price,
                          leaves=0, reason=chr(REJECT_REASON_NO_SUCH_ORDER), orig_token=0)

    # ------------------------------------------------------------------ marks

    def _mid(self, sid: int) -> float | None:
        """The recorded book's mid now (the venue's view: event time, not the strategy's), or None."""
        best = self.venue.best_price
        bid, ask = best(sid, True), best(sid, False)
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    def _mids(self) -> dict[str, float]:
        mids = {}
        last = self._last_mid
        for sid in self.traded_ids:
            mid = self._mid(sid)
            if mid is not None:
                last[sid] = mid
            if sid in last:
                mids[self.symbols[sid]] = last[sid]
        return mids

    def _equity_until(self, ts: int) -> None:
        """The equity points due before a message stamped ``ts`` changes the books."""
        equity = self.record.equity
        while self._next_equity < ts:
            equity.append(EquityPoint(self._next_equity, self._mids()))
            self._next_equity += EQUITY_INTERVAL_NS

    def _resolve_markouts(self, ts: int) -> None:
        markouts = self._markouts
        while markouts and markouts[0][0] < ts:
            _, _, horizon, sid, mid_after = heapq.heappop(markouts)
            mid_after[horizon] = self._mid(sid)
