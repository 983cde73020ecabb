"""What shmtop, the exporter and scripts see of a running appliance: one read-only pass over its
shared memory.

``Observer`` attaches every segment read-only (PROT_READ: it cannot disturb the
hot path even by mistake), and ``snapshot()`` reads rings, process records,
counters, the control words, and the positions and market-state tables with
acquire loads and seqlock retries, no locks. Rates come from the difference
with the previous snapshot, so the first one has none. A layout without some
of the tables (older or test layouts) gets the parts it has: ``control`` and
``trading`` stay None, ``symbols`` empty or partly filled.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import psutil

from appliance.oms import latency
from appliance.runtime import _shm
from appliance.runtime.counters import IdleStrategyId, ProcessState
from appliance.runtime.layout import Layout
from appliance.runtime.market_state import view_problem
from appliance.runtime.memory import SharedMemory
from appliance.messages.codes import PRICE_SCALE
from appliance.runtime.seqlock import TornRead
from appliance.runtime.segment import BACKING_NAMES


@dataclass
class RingView:
    name: str
    producer: str
    consumer: str
    message: str
    capacity: int
    depth: int
    published: int
    consumed: int
    full_events: int
    max_depth: int
    in_per_s: float | None = None
    out_per_s: float | None = None


@dataclass
class ProcessView:
    name: str
    pid: int
    state: str
    cpu: int | None
    idle: str
    beats: int
    heartbeat_age_ms: float | None
    max_duty_us: float
    last_duty_us: float
    alive: bool
    cpu_percent: float | None = None
    ctx_switches_voluntary: int | None = None
    ctx_switches_involuntary: int | None = None


@dataclass
class SegmentView:
    name: str
    path: str
    backing: str
    size: int
    creator_pid: int
    created_ns: int


@dataclass
class SymbolView:
    """One symbol's position and P&L (from the OMS's positions table) and book top (from the
    feed's market-state table); the fields of a table the layout lacks stay None."""
    symbol: str
    position: int | None = None
    average_price: float | None = None
    cost_basis: float | None = None          # dollars, signed (what the open position cost)
    realized_pnl: float | None = None        # dollars
    unrealized_pnl: float | None = None      # dollars, marked at ``mark`` (market_state.mark_of)
    orders_sent: int | None = None
    fills: int | None = None
    filled_shares: int | None = None
    rejects: int | None = None
    open_orders: int | None = None
    bid: float | None = None                 # dollars; 0 when the side is empty
    bid_shares: int | None = None
    ask: float | None = None
    ask_shares: int | None = None
    last: float | None = None
    last_shares: int | None = None
    flags: list[str] | None = None           # stale, crossed, locked, halted, inconsistent
    mark: float | None = None                # dollars: the good mark, or the last good one when ``mark_old``
    mark_old: bool | None = None             # the book is bad now: marked at its last good price
    problem: str | None = None               # why the book is bad ("" when good): market_state.view_problem
    trading_state: str | None = None         # ITCH trading state byte (T, H, P, Q), "" before the directory
    book_updated_ns: int | None = None       # epoch ns of the feed's last write, 0: never
    error: str | None = None                 # a slot left mid-write by a writer that died

    @property
    def pnl(self) -> float | None:
        if self.realized_pnl is None:
            return None
        return self.realized_pnl + (self.unrealized_pnl or 0.0)


@dataclass
class Snapshot:
    layout: str
    layout_version: int
    layout_hash: str
    taken_ns: int
    segments: list[SegmentView] = field(default_factory=list)
    rings: list[RingView] = field(default_factory=list)
    processes: list[ProcessView] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    control: dict[str, int] | None = None        # raw control words; None: the layout has no control table
    trading: dict | None = None                  # gate/clock/risk/oms/feed as ``appliance status`` shows them
    symbols: list[SymbolView] = field(default_factory=list)
    tick_to_trade: dict[str, dict] = field(default_factory=dict)   # hop -> count, mean and percentiles in ns

    def as_dict(self) -> dict:
        return asdict(self)


class Observer:
    """Read-only handles on every ring, the process table and the counters of one layout."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.memory = SharedMemory.attach(layout, writable=False)
        self.rings = {name: self.memory.ring(name, "observer") for name in layout.rings}
        self.processes = self.memory.process_table()
        self.counters = self.memory.counters_reader()
        kinds = {t.kind for t in layout.tables.values()}
        self.control = self.memory.control() if "control" in kinds else None
        self.positions = self.memory.positions_reader() if "positions" in kinds else None
        self.market = self.memory.market_state_reader() if "market_state" in kinds else None
        self.counter_infos = []
        self._identity = self._segment_identity()
        self._previous: tuple[int, dict[str, tuple[int, int]]] | None = None
        self._psutil: dict[int, psutil.Process] = {}

    def close(self) -> None:
        self.rings.clear()
        self.processes.close()
        self.counters.close()
        for handle in (self.control, self.positions, self.market):
            if handle is not None:
                handle.close()
        self.memory.close()

    def _segment_identity(self) -> dict[str, tuple[int, int] | None]:
        identity = {}
        for segment in self.memory.segments.values():
            try:
                st = os.stat(segment.path)
                identity[segment.name] = (st.st_dev, st.st_ino)
            except OSError:
                identity[segment.name] = None
        return identity

    def replaced(self) -> str | None:
        """Why the mapped segments are no longer the appliance's (removed, or a new appliance
        created new ones), else None. Mapped memory outlives its file: without this check a
        viewer would show a stopped appliance's last values forever."""
        now = self._segment_identity()
        for name, before in self._identity.items():
            if now.get(name) is None:
                return f"segment {name} was removed (the appliance stopped)"
            if now[name] != before:
                return f"segment {name} was replaced (the appliance restarted)"
        return None

    def snapshot(self) -> Snapshot:
        now_mono = _shm.monotonic_ns()
        snap = Snapshot(layout=self.layout.path, layout_version=self.layout.version,
                        layout_hash=self.layout.hash_hex, taken_ns=time.time_ns())
        for segment in self.memory.segments.values():
            header = segment.header
            snap.segments.append(SegmentView(segment.name, segment.path, BACKING_NAMES.get(header.backing, "?"),
                                             header.size, header.creator_pid, header.created_ns))
        indices: dict[str, tuple[int, int]] = {}
        elapsed = (now_mono - self._previous[0]) / 1e9 if self._previous else None
        for name, ring in self.rings.items():
            spec = self.layout.rings[name]
            consumed, published = ring.head, ring.tail      # head first: depth is never negative
            view = RingView(name, spec.producer, spec.consumer, spec.message, spec.capacity,
                            max(0, published - consumed), published, consumed, ring.full_events, ring.max_depth)
            if elapsed and name in self._previous[1]:
                before_in, before_out = self._previous[1][name]
                view.in_per_s = (published - before_in) / elapsed
                view.out_per_s = (consumed - before_out) / elapsed
            indices[name] = (published, consumed)
            snap.rings.append(view)
        for record in self.processes:
            age = record.heartbeat_age_ns(now_mono)
            view = ProcessView(
                name=record.name, pid=record.pid, state=record.state.name.lower(),
                cpu=None if record.cpu < 0 or (record.pid == 0 and record.state is ProcessState.ABSENT)
                else record.cpu,
                idle=IdleStrategyId(record.idle_strategy).name.lower() if record.idle_strategy in
                IdleStrategyId._value2member_map_ else "-",
                beats=record.beats, heartbeat_age_ms=None if age is None else age / 1e6,
                max_duty_us=record.max_duty_ns / 1e3, last_duty_us=record.last_duty_ns / 1e3,
                alive=record.pid > 0 and psutil.pid_exists(record.pid))
            if view.alive and record.state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING):
                self._add_os_view(view)
            snap.processes.append(view)
        self.counter_infos = list(self.counters)       # with their kinds, for the exporter
        snap.counters = {info.label: info.value for info in self.counter_infos}
        snap.tick_to_trade = latency.summary(snap.counters)
        if self.control is not None:
            snap.control = self.control.snapshot()
            snap.trading = self._trading()
        snap.symbols = self._symbols()
        self._previous = (now_mono, indices)
        return snap

    def _trading(self) -> dict | None:
        """The control words in words, from the same function ``appliance status`` uses."""
        from appliance.supervisor.status import build_status
        try:
            status = build_status(self.layout, self.memory)
        except TornRead as exc:
            return {"error": str(exc)}
        trading = {key: status[key] for key in ("gate", "clock", "risk", "oms", "feed", "market_data")
                   if key in status}
        words = self.control.snapshot()
        trading["gate"] = {**trading.get("gate", {}), "changed_ns": words["gate_changed_ns"],
                           "epoch": words["gate_epoch"]}
        trading["clock"] = {**trading.get("clock", {}), "checked_ns": words["clock_checked_ns"]}
        trading["oms"] = {**trading.get("oms", {}), "cancel_all_epoch": words["oms_cancel_all_epoch"]}
        trading["strategy"] = {"ready": bool(words["strategy_ready"])}
        return trading

    def _symbols(self) -> list[SymbolView]:
        if self.positions is None and self.market is None:
            return []
        views = []
        feed_stale_reason = self.control.get("feed_stale_reason") if self.control is not None else 0
        for sid, symbol in enumerate(self.layout.symbols):
            view = SymbolView(symbol)
            try:
                mark = 0
                if self.market is not None:
                    m = self.market.read(sid)
                    view.bid, view.bid_shares = m.bid_price / PRICE_SCALE, m.bid_shares
                    view.ask, view.ask_shares = m.ask_price / PRICE_SCALE, m.ask_shares
                    view.last, view.last_shares = m.last_trade_price / PRICE_SCALE, m.last_trade_shares
                    view.flags, view.trading_state, view.book_updated_ns = m.flag_names, m.trading_state, m.t_update_ns
                    mark, view.mark_old = m.mark
                    view.mark, view.problem = mark / PRICE_SCALE, view_problem(m, feed_stale_reason)
                if self.positions is not None:
                    p = self.positions.read(sid)
                    view.position, view.average_price = p.position, p.average_price()
                    view.cost_basis = p.cost_basis / PRICE_SCALE
                    view.realized_pnl = p.realized_pnl / PRICE_SCALE
                    view.unrealized_pnl = p.unrealized_pnl(mark) / PRICE_SCALE
                    view.orders_sent, view.fills, view.filled_shares = p.orders_sent, p.fills, p.filled_shares
                    view.rejects, view.open_orders = p.rejects, p.open_orders
            except TornRead as exc:
                view.error = str(exc)
            views.append(view)
        return views

    def _add_os_view(self, view: ProcessView) -> None:
        try:
            proc = self._psutil.get(view.pid)
            if proc is None:
                proc = self._psutil[view.pid] = psutil.Process(view.pid)
                proc.cpu_percent(None)            # first call primes the measurement
            else:
                view.cpu_percent = proc.cpu_percent(None)
            switches = proc.num_ctx_switches()
            view.ctx_switches_voluntary, view.ctx_switches_involuntary = switches.voluntary, switches.involuntary
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._psutil.pop(view.pid, None)
