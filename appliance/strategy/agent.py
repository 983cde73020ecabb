"""The strategy process: rings in and out, the timer, the ``strategy_ready`` word, counters.

One duty cycle: first the intents still waiting for room in ``order_intents`` (back-pressure),
then execution reports (``exec_to_strategy``) and risk rejects (``risk_rejects``), so the
strategy's view is current, then book updates (``book_updates``), then the timers that are due
(``Strategy.schedule`` and ``on_timer``, on the host's clock). While intents still wait, no book
update is read and no timer fires: a strategy that outruns risk is slowed down, and the feed's
ring (full snapshots) absorbs the gap. A parked strategy wakes for its next timer
(``next_deadline_ns``), not a park timeout later.

Start: the host asks the OMS (through risk) for this strategy's open orders and the positions and
runs ``on_start`` when the answer is complete (RiskSnapshot records on ``exec_to_strategy``) or
after ``SNAPSHOT_TIMEOUT_NS`` without one (fail closed: CANCEL_ALL, logged). ``strategy_ready``
becomes 1 when ``on_start`` has run.

Everything about the strategy itself (the view, callbacks, intents, the safety net) is in
``host.py``. A strategy that raised is stopped for good; the agent keeps running and
heartbeating so the supervisor sees a live process whose ``strategy_ready`` is 0, with
``strategy.stopped`` = 1 and ``strategy.errors`` > 0, and the log says why.
"""
from __future__ import annotations

import logging
import time

from appliance.messages.catalog import BOOK_UPDATE, EXECUTION_REPORT, ORDER_INTENT, ORDER_REJECT
from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.channels import CONSUMER, PRODUCER, RingUse, check_ring_uses
from appliance.runtime.control import GATE_OPEN_BIT, WRITER_OF
from appliance.runtime.counters import CounterKind
from appliance.runtime.layout import LayoutError

from .config import StrategyConfigError, parse_strategy_params
from .ids import ClientOrderIds
from .intents import IntentWriter
from .loader import load_strategy
from .host import StrategyStats, StrategyHost, drain

log = logging.getLogger("appliance.strategy")

BOOK_RING = RingUse("book_updates", CONSUMER, BOOK_UPDATE)
INTENT_RING = RingUse("order_intents", PRODUCER, ORDER_INTENT)
REJECT_RING = RingUse("risk_rejects", CONSUMER, ORDER_REJECT, required=False)
EXEC_RING = RingUse("exec_to_strategy", CONSUMER, EXECUTION_REPORT, required=False)
RINGS = (BOOK_RING, INTENT_RING, REJECT_RING, EXEC_RING)

MAX_BOOKS_PER_CYCLE = 128
MAX_REPORTS_PER_CYCLE = 256
COUNTERS_INTERVAL_NS = 10_000_000
CLOSE_FLUSH_TIMEOUT_NS = 2_000_000_000
SNAPSHOT_TIMEOUT_NS = 5_000_000_000      # the OMS answers once it has recovered (venue replay drained)

GAUGES = ("open_orders", "pending_intents")


def control_readers(control):
    """(feed live, gate open) as callables the market maker may ask on every book update: one atomic load
    each at the word's offset (``ControlWords.get`` looks the name up and decodes the whole gate word)."""
    load, feed_at, gate_at = control.atomics.load, control.word_offset("feed_ready"), control.word_offset("gate")

    def feed_live() -> bool:
        return load(feed_at) == 1

    def gate_open() -> bool:
        return load(gate_at) & GATE_OPEN_BIT != 0
    return feed_live, gate_open


class StrategyAgent(Agent):
    name = "strategy"

    def __init__(self, context: AgentContext):
        super().__init__(context)
        self.config, self.loaded = self.load(context.layout, context.process)
        check_ring_uses(context.layout, context.process.name, RINGS, "the strategy agent")
        self.host: StrategyHost | None = None
        self.control = None

    @staticmethod
    def load(layout, process):
        """The strategy params checked and the user's class loaded with its parameters (LayoutError naming
        the file, key and line otherwise): at process start, and by ``up``/``preflight`` before anything starts."""
        path = f"processes.{process.name}.params"
        if not layout.symbols:
            raise LayoutError(layout.path, "symbols", "the strategy needs the layout's symbols list")
        try:
            config = parse_strategy_params(process.params, path, layout.symbols)
            loaded = load_strategy(config, key_path=path, layout_path=layout.path, layout_symbols=layout.symbols,
                                   instruments=layout.instruments)
        except StrategyConfigError as exc:
            raise LayoutError(exc.file or layout.path, exc.key_path, exc.reason, exc.line) from None
        return config, loaded

    @classmethod
    def check_params(cls, layout, process) -> None:
        """``appliance up`` and ``preflight``: a strategy that cannot load stops ``up`` at once (exit 2), not
        the strategy process later."""
        cls.load(layout, process)

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        ctx, cfg = self.context, self.config
        layout, memory = ctx.layout, ctx.memory
        self._setup_counters()
        has = {t.kind for t in layout.tables.values()}
        if "control" in has:
            if WRITER_OF["strategy_ready"] == ctx.process.name:
                self.control = memory.control(ctx.process.name)
                self.control.set("strategy_ready", 0)
            else:
                log.warning("process %r is not the writer of strategy_ready (%r): not publishing readiness",
                            ctx.process.name, WRITER_OF["strategy_ready"])
        feed_live, gate_open = control_readers(self.control) if self.control else (None, None)
        self.rings = memory.channels(RINGS, ctx.process.name)
        intent_channel = self.rings[INTENT_RING.name]
        intents = IntentWriter(intent_channel, intent_channel.buffer, cfg.strategy_id, cfg.max_pending_intents)
        self.host = host = StrategyHost(
            self.loaded.strategy_class, self.loaded.parameters, symbols=layout.symbols, traded=cfg.symbols,
            strategy_id=cfg.strategy_id, intents=intents, ids=ClientOrderIds(), feed_live=feed_live, gate_open=gate_open,
            on_failed=self._on_strategy_failed, fees=self.loaded.fees, instruments=layout.instruments,
            timer_interval_ns=cfg.timer_interval_ms * 1_000_000, snapshot_timeout_ns=SNAPSHOT_TIMEOUT_NS)
        if "positions" in has:
            self._seed_positions(memory.positions_reader(), host)
        # What the duty cycle reads, looked up once: an idle cycle is a few peeks, and a BookUpdate that lands
        # during one waits for it. Reports first, then risk's rejects (the view current before on_book).
        self._inputs = tuple((ring, ring.peek, ring.buffer, handle) for ring, handle in (
            (self.rings.get(EXEC_RING.name), host.handle_exec_record),
            (self.rings.get(REJECT_RING.name), host.handle_order_reject)) if ring is not None)
        books = self.rings[BOOK_RING.name]
        self._books, self._books_peek, self._books_buffer = books, books.peek, books.buffer
        self._next_counters_ns = time.monotonic_ns()
        self._counters_behind = False      # work done since the counters were last published
        self._ready_published = False
        log.info("strategy %s (parameters %s), strategy id %d, trading %s, timer %d ms, fees %s",
                 self.loaded.source, self.loaded.parameters_source, cfg.strategy_id,
                 ", ".join(host.traded_symbols), cfg.timer_interval_ms, self.loaded.fees.source)
        host.start()
        self._publish_ready()
        self._publish_counters()

    def _publish_ready(self) -> None:
        """strategy_ready = 1 once on_start has run (and the strategy did not fail in it)."""
        if self.host.running and not self._ready_published:
            self._ready_published = True
            if self.control is not None:
                self.control.set("strategy_ready", 1)

    def _seed_positions(self, reader, host: StrategyHost) -> None:
        """Start from the OMS's positions (a restarted strategy must respect its cap from the first quote)."""
        from appliance.runtime.seqlock import TornRead
        for sid in range(len(host.symbols)):
            try:
                view = reader.read(sid)
            except TornRead as exc:
                log.warning("positions table: %s; %s starts at 0 until the next report", exc, host.symbols[sid])
                continue
            host.positions._position[sid] = view.position
            host.positions._cost_basis[sid] = view.cost_basis
            host.positions._realized_pnl[sid] = view.realized_pnl

    def on_close(self) -> None:
        host = self.host
        if host is not None:
            host.stop()
            intents = host.intents
            deadline = time.monotonic_ns() + CLOSE_FLUSH_TIMEOUT_NS
            while intents.pending and time.monotonic_ns() < deadline:
                if not intents.flush():
                    time.sleep(0.001)
            if intents.pending:
                log.error("%d intents (cancels) could not be written: order_intents stayed full for %d s",
                          len(intents.pending), CLOSE_FLUSH_TIMEOUT_NS // 1_000_000_000)
            self._publish_counters()
        if self.control is not None:
            self.control.set("strategy_ready", 0)

    def _on_strategy_failed(self) -> None:
        if self.control is not None:
            self.control.set("strategy_ready", 0)
        self._publish_counters()

    # ------------------------------------------------------------------ waiting (a parked strategy)

    def next_deadline_ns(self) -> int | None:
        """The strategy's next timer (or the snapshot's timeout) as a monotonic time: a parked strategy
        wakes for it, not a park timeout later. Timers are on the host's clock: the distance is kept.
        After work, also the counters' next publication (else a long park hides the work from shmtop)."""
        host = self.host
        if host is None:
            return None
        deadline = host.snapshot_deadline_ns if host.awaiting_snapshot else host.next_timer_ns()
        counters = self._next_counters_ns if self._counters_behind else None    # shmtop sees the work soon
        if deadline is None:
            return counters
        deadline = time.monotonic_ns() + max(0, deadline - host.clock_ns())
        return deadline if counters is None or deadline < counters else counters

    # ------------------------------------------------------------------ duty cycle

    def do_work(self) -> int:
        host = self.host
        intents = host.intents
        work = 0
        if intents.pending:
            work += intents.flush()
        for ring, peek, buffer, handle in self._inputs:
            if peek() >= 0:
                work += drain(ring, buffer, handle, MAX_REPORTS_PER_CYCLE)
        if not self._ready_published:
            if host.awaiting_snapshot and host.check_snapshot_timeout():
                work += 1
            if host.running:
                self._publish_ready()
        now = time.monotonic_ns()
        if not intents.pending:
            if self._books_peek() >= 0:
                work += host.drain_book_updates(self._books, self._books_buffer, MAX_BOOKS_PER_CYCLE)
            clock_now = host.clock_ns()
            if clock_now >= host.timers.due_ns:          # one compare per cycle; NEVER without timers
                work += host.run_timers(clock_now)
        if now >= self._next_counters_ns:
            self._next_counters_ns = now + COUNTERS_INTERVAL_NS
            self._counters_behind = False
            self._publish_counters()
        elif work:
            self._counters_behind = True
        return work

    # ------------------------------------------------------------------ counters

    def _setup_counters(self) -> None:
        allocate = self.context.counters.allocate
        self._stat_counters = [(name, allocate(f"strategy.{name}")) for name in StrategyStats.__slots__]
        self._intents_counter = allocate("strategy.intents")
        self._backpressure_counter = allocate("strategy.backpressure")
        self._refused_counter = allocate("strategy.backpressure_refused")
        self._withdrawn_counter = allocate("strategy.intents_withdrawn")
        self._open_orders_gauge = allocate("strategy.open_orders", CounterKind.GAUGE)
        self._pending_gauge = allocate("strategy.pending_intents", CounterKind.GAUGE)

    def _publish_counters(self) -> None:
        host = self.host
        if host is None:
            return
        stats = host.stats
        for name, counter in self._stat_counters:
            counter.set(getattr(stats, name))
        intents = host.intents
        self._intents_counter.set(intents.written)
        self._backpressure_counter.set(intents.queued)
        self._refused_counter.set(intents.refused)
        self._withdrawn_counter.set(intents.dropped_orders)
        self._open_orders_gauge.set(len(host.open_orders))
        self._pending_gauge.set(len(intents.pending))
