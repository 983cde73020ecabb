"""The risk gateway as a process: intents in, approved orders or named rejects out, fail-closed.

Rings (names fixed by the layout): ``order_intents`` (strategy -> risk), ``approved_orders``
(risk -> OMS), ``risk_rejects`` (risk -> strategy), ``exec_to_risk`` (OMS -> risk),
``risk_commands`` (supervisor -> risk), ``risk_events`` (risk -> OMS). Control words written
here: ``risk_state``, ``risk_ready``, ``risk_kill_latched``, ``risk_state_changed_ns``; the
runner's heartbeat and these words are how the OMS and the supervisor judge risk alive.

One duty cycle: operator commands first, then execution reports (state before decisions), then
up to ``max_intents_per_cycle`` intents, then the events for the OMS and the control words.
Every ``housekeeping_ms``: every symbol re-marked to the market-state table and the loss limits
enforced without waiting for an order, the snapshot request repeated while unanswered, the
gauges published.

A strategy may put itself in REDUCING (an OrderIntent with Action.REDUCE, ``Strategy.request_reducing``):
from then on its new orders and replaces that would grow a position are refused TRADING_REDUCING
(the same test as the state REDUCING, on the symbol's worst-case position), logged, and counted in
``risk.strategies_reducing`` (how many strategies are held so). Only an operator lets it trade
again: SET_ACTIVE and RESET release every strategy held so (a strategy that asked to reduce cannot
undo it itself). It lives in memory: a restart of risk forgets it (the strategy asks again if it
still wants it). Action.SNAPSHOT (a strategy's request for its open orders) passes like a cancel.

Operator commands (RiskCommand; ``operator`` is logged with each and travels in its event):
KILL, RESET (needs a name), SET_REDUCING, SET_ACTIVE, RELOAD_LIMITS, and per symbol
(``argument`` = symbol id) KILL_SYMBOL and RESET_SYMBOL (needs a name); see ``kill_switch``.
Which symbols are latched is published as ``risk.symbol_killed.<SYM>`` (1 latched; for up to 64
symbols, like ``risk.position.<SYM>``) and ``risk.symbols_killed`` (how many).

The state file (param ``state_file``; ``persist`` has the format): the kill switch latch (reason,
operator, time), the symbol latches, REDUCING and the day's peak P&L, kept across ``appliance
down``/``up`` and crashes of the whole box. A change of the latches or the state is written,
and the agent waits for the write (~12 ms of fsyncs here, on the writer's thread; only on
operator commands and trips), before the events and control words announce it and before an
order is approved under it. The peak P&L is written at most once a second when it changed,
without waiting (the slow path hands the bytes to the writer's thread: ~25 us of encoding on
this thread once a second, the fsyncs on the other). At start: a file of today is restored (a restored latch
keeps its original reason; the drawdown is measured from max(the kept peak, the rebuilt
P&L)); a file of another trading day is not carried over (logged); no file is a first start
(logged). A file that cannot be read or used starts risk HALTED (kill reason STATE_FILE; the
file is copied aside as ``<file>.unreadable-<time>``) until a named reset. A write that fails
or takes longer than ``state_write_timeout_ms`` latches the kill switch (STATE_WRITE: a latch
not on disk would not survive a restart), is counted, and is retried every second; a named
reset is possible once a write succeeds again. Without a usable state file in today's day
the control words are the fallback: a latch they still show (risk restarted, the segment did
not) stays latched (PREVIOUS_RUN), a REDUCING is kept.

Start and restart: risk_ready=0, a SNAPSHOT_REQUEST to the OMS (again every
``snapshot_retry_ms`` until answered), NOT_READY for every new order and replace until
the snapshot's END record (cancels pass). Positions, open orders and the day's realized P&L come from the
OMS's snapshot (its journal survives ``down``), so the daily-loss limit sees the day's losses.

If ``approved_orders`` is full, intents wait in their ring (back-pressure; nothing is dropped).
A full ``risk_rejects`` loses the reject (counted: the order was still refused). Events for the
OMS wait in order until ``risk_events`` has room.

``params`` (all optional): ``limits`` (the limits file; default ``config/risk_limits.yaml``),
``state_file`` (default ``run/risk-state.json``; both relative to the layout file's directory),
``order_capacity`` (4096: open orders risk can hold), ``snapshot_retry_ms`` (1000),
``housekeeping_ms`` (10), ``max_intents_per_cycle`` (64), ``max_reports_per_cycle`` (256),
``state_write_timeout_ms`` (2000), ``compiled_checks`` (1: each intent checked by the compiled check
set, ``risk/fast.py``, which hands anything beyond the common case to ``checks.py``; 0: ``checks.py``
alone).
"""
from __future__ import annotations

import logging
import os
import time
from time import monotonic_ns

from appliance.config.checker import Checker
from appliance.messages.catalog import (APPROVED_ORDER, CONTROL_EVENT, EXECUTION_REPORT, ORDER_INTENT, ORDER_REJECT,
                                        RISK_COMMAND, RISK_SNAPSHOT)
from appliance.messages.schema import HEADER_COUNT
from appliance.messages.codes import Action, ControlCommand, ControlEventKind, RejectSource, RiskReason, RiskState
from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.channels import CONSUMER, PRODUCER, RingUse, check_ring_uses
from appliance.runtime.counters import CounterKind
from appliance.runtime.layout import LayoutError
from appliance.runtime.trading_day import trading_day_of

from .checks import RiskEngine
from .fast import compiled_check
from .kill_switch import FIRM, MANUAL, STATE_FILE, STATE_WRITE
from .limits import LimitsError, describe_changes, load_limits
from .persist import DurableState, Latch, StateFileError, StateWriter, describe, encode, keep_aside, read_state
from .state import APPLIED, BAD_REPORT, SNAPSHOT_COMPLETE, SNAPSHOT_IGNORED, UNKNOWN_ORDER

log = logging.getLogger("appliance.risk")

DEFAULT_LIMITS = "config/risk_limits.yaml"
DEFAULT_STATE_FILE = "run/risk-state.json"
PATH_PARAMS = {"limits": DEFAULT_LIMITS, "state_file": DEFAULT_STATE_FILE}     # relative to the layout's directory
PEAK_WRITE_INTERVAL_NS = 1_000_000_000    # the day's peak P&L goes to the state file at most this often
INTENTS = RingUse("order_intents", CONSUMER, ORDER_INTENT)
REPORTS = RingUse("exec_to_risk", CONSUMER, EXECUTION_REPORT)
COMMANDS = RingUse("risk_commands", CONSUMER, RISK_COMMAND)
APPROVED = RingUse("approved_orders", PRODUCER, APPROVED_ORDER)
REJECTS = RingUse("risk_rejects", PRODUCER, ORDER_REJECT)
EVENTS = RingUse("risk_events", PRODUCER, CONTROL_EVENT)
RINGS = (INTENTS, REPORTS, COMMANDS, APPROVED, REJECTS, EVENTS)
_PARAMS = {  # key -> (default, low, high)
    "order_capacity": (4096, 1, 1_000_000),
    "snapshot_retry_ms": (1000, 10, 600_000),
    "housekeeping_ms": (10, 1, 10_000),
    "max_intents_per_cycle": (64, 1, 100_000),
    "max_reports_per_cycle": (256, 1, 100_000),
    "state_write_timeout_ms": (2000, 10, 60_000),
    "compiled_checks": (1, 0, 1),
}
RISK_SOURCE = int(RejectSource.RISK)
KILL, RESET, RELOAD_LIMITS, SET_REDUCING, SET_ACTIVE, KILL_SYMBOL, RESET_SYMBOL = (int(c) for c in (
    ControlCommand.KILL, ControlCommand.RESET, ControlCommand.RELOAD_LIMITS, ControlCommand.SET_REDUCING,
    ControlCommand.SET_ACTIVE, ControlCommand.KILL_SYMBOL, ControlCommand.RESET_SYMBOL))
FIRM_KILL, FIRM_RESET = int(ControlCommand.FIRM_KILL), int(ControlCommand.FIRM_RESET)
MAX_POSITION_GAUGES = 64          # beyond that many symbols, positions and symbol latches are not published one by one
_INTENT_TYPE = ORDER_INTENT.type_id
_BAD_ORDER = int(RiskReason.BAD_ORDER)
_REDUCE = int(Action.REDUCE)
# ``_poll_intents`` reads an intent in one unpack into these names: the schema's field order, checked here
_INTENT_FIELDS = ("type_id", "schema_version", "size", "client_order_id", "orig_client_order_id", "strategy_id",
                  "symbol_id", "action", "side", "display", "capacity", "shares", "price", "time_in_force",
                  "minimum_quantity", "intermarket_sweep", "pad0", "pad1", "t_rx_ns", "t_feed_out_ns",
                  "t_strategy_out_ns")
if ORDER_INTENT.field_names != _INTENT_FIELDS or APPROVED_ORDER.field_names != (*_INTENT_FIELDS, "t_risk_out_ns"):
    raise ImportError("risk.agent: the OrderIntent / ApprovedOrder layouts changed; update _INTENT_FIELDS")


def parse_params(params: dict | None, layout_path: str, key_path: str) -> dict:
    """The risk process's ``params``, checked; raises LayoutError(file, key path, reason)."""
    top = Checker.for_file(LayoutError, layout_path).section(params, key_path, None, [*PATH_PARAMS, *_PARAMS],
                                                             optional=True)
    out = {key: top.integer(key, low, high, default) for key, (default, low, high) in _PARAMS.items()}
    base = os.path.dirname(os.path.abspath(layout_path)) if layout_path else os.getcwd()
    for key, default in PATH_PARAMS.items():
        path = top.get(key, default)
        if not isinstance(path, str) or not path:
            top.fail(key, f"expected the path of the {key.replace('_', ' ')}{' file' if key == 'limits' else ''}")
        out[key] = path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))
    return out


def _text16(value: str) -> bytes:
    return value.encode("utf-8", "replace")[:16]


def _decode(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


class RiskAgent(Agent):
    name = "risk"

    def __init__(self, context: AgentContext):
        super().__init__(context)
        layout = context.layout
        key_path = f"processes.{context.process.name}.params"
        self.config = parse_params(context.params, layout.path, key_path)
        if not layout.symbols:
            raise LayoutError(layout.path, "symbols", "risk needs the layout's symbols list")
        for kind in ("market_state",):
            if not any(t.kind == kind for t in layout.tables.values()):
                raise LayoutError(layout.path, "tables", f"risk needs a {kind!r} table")
        check_ring_uses(layout, context.process.name, RINGS, "the risk agent")
        try:
            self.limits = load_limits(self.config["limits"], layout.symbols, instruments=layout.instruments)
        except LimitsError as exc:
            raise LayoutError(exc.file, exc.key_path, exc.reason, exc.line) from None
        state_dir = os.path.dirname(self.config["state_file"])
        try:
            os.makedirs(state_dir, exist_ok=True)
        except OSError as exc:
            raise LayoutError(layout.path, f"{key_path}.state_file",
                              f"cannot create its directory {state_dir}: {exc.strerror or exc}") from None
        if os.path.isdir(self.config["state_file"]):
            raise LayoutError(layout.path, f"{key_path}.state_file", f"{self.config['state_file']} is a directory")

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        ctx, cfg = self.context, self.config
        layout, memory = ctx.layout, ctx.memory
        self.engine = RiskEngine(self.limits, layout.symbols, memory.market_state_reader(),
                                 order_capacity=cfg["order_capacity"])
        me = ctx.process.name
        self.intents, self.reports, self.commands = (memory.channel(use, me) for use in (INTENTS, REPORTS, COMMANDS))
        self.approved, self.rejects, self.events_ring = (memory.channel(use, me) for use in (APPROVED, REJECTS, EVENTS))
        has_control = any(t.kind == "control" for t in layout.tables.values())
        self.control_words = memory.control(ctx.process.name) if has_control else None
        if self.control_words is None:
            log.warning("no control table in the layout: the OMS and supervisor cannot see risk's state")
        self.state_file = cfg["state_file"]
        self.writer = StateWriter(self.state_file)
        self._write_timeout_s = cfg["state_write_timeout_ms"] / 1000
        self._saved_state: DurableState | None = None      # what the file holds (or is being written with)
        self._saved_epoch = -1                              # control.durable_epoch when last compared
        self._save_failed = False
        self._async_seq = 0                                 # the writer's sequence of a background write
        self._last_failure_log_mono = 0
        self._foreign_symbol_kills: dict[str, Latch] = {}   # latched in the file, not in the layout: kept
        self._setup_counters()
        self._cumulative = self._cumulative_sources()
        self._published_counts = [0] * len(self._cumulative)
        self.outbox: list[tuple] = []
        self._housekeeping_ns = cfg["housekeeping_ms"] * 1_000_000
        self._snapshot_retry_ns = cfg["snapshot_retry_ms"] * 1_000_000
        self._next_housekeeping = 0
        self._next_prune = 0
        self._logged_without_id = 0
        self._next_snapshot_request = 0
        self.strategies_reducing: dict[int, int] = {}       # strategy id -> when it asked (epoch ns)
        self._max_intents = cfg["max_intents_per_cycle"]
        self._max_reports = cfg["max_reports_per_cycle"]
        self._approved_ring_blocked = False
        self._events_ring_blocked = False
        intents, approved, c = self.intents, self.approved, self.counters
        check = compiled_check(self.engine) if cfg["compiled_checks"] else self.engine.check
        self._intent_path = (intents.peek, intents.release, intents.buffer, approved.claim, approved.commit,
                             approved.buffer, check, self.engine.record, ORDER_INTENT.struct.unpack_from,
                             APPROVED_ORDER.struct.pack_into,
                             (APPROVED_ORDER.type_id, APPROVED_ORDER.version, APPROVED_ORDER.size), time.time_ns,
                             c["approved"], c["rejected"], c["intents"], getattr(check, "approve", None))
        self._commands_waiting, self._reports_waiting, self._intents_waiting = (
            self.commands.peek, self.reports.peek, intents.peek)
        now = time.time_ns()
        self.engine.restart_rebuild()
        self._restore_state(now)                 # the state file, then the control words: before anything is announced
        self._publish_words()
        self._request_snapshot(now, time.monotonic_ns())
        missing = [s for s, sl in zip(layout.symbols, self.limits.symbols) if sl is None]
        log.info("risk started: limits %s (crc32 %08x), %d symbols%s; waiting for the OMS's snapshot",
                 self.limits.file, self.limits.digest, len(layout.symbols),
                 f", no limits (no new orders) for {', '.join(missing)}" if missing else "")

    def on_close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is None:                     # on_start failed before anything was set up
            return
        try:
            self._save_state(time.time_ns(), wait=True)      # the latest peak; and what the events below announce
        finally:
            writer.close(self._write_timeout_s)
        self._take_control_events()
        self._flush_events()
        self._publish_counters()
        if self.control_words is not None:
            self.control_words.set("risk_ready", 0)
        self.engine.market.close()

    # ------------------------------------------------------------------ counters

    def _setup_counters(self) -> None:
        allocate = self.context.counters.allocate
        self.reject_counters = [None] * (max(RiskReason) + 1)
        for reason in RiskReason:
            self.reject_counters[int(reason)] = allocate(f"risk.rejects.{reason.name}")
        c = {}
        for label in ("intents", "approved", "rejected", "cancels", "throttled", "cancels_over_rate", "bad_intents",
                      "exec_reports", "reports_unknown_order", "bad_reports", "snapshot_requests",
                      "snapshots_applied", "snapshot_reports_ignored", "kill_switch_trips", "resets",
                      "resets_refused", "commands", "commands_refused", "bad_commands", "limits_reloaded",
                      "limits_reload_failed", "approved_ring_full", "rejects_lost", "events_ring_full",
                      "torn_reads", "order_pool_overflow", "orders_without_id", "orphans_opened", "symbol_kills",
                      "symbol_resets", "state_file_writes", "state_file_write_failures", "state_file_unreadable"):
            c[label] = allocate(f"risk.{label}")
        for label in ("open_orders", "pnl", "gross_notional", "net_long_notional", "net_short_notional",
                      "peak_pnl", "symbols_killed", "marks_old", "strategies_reducing"):
            c[label] = allocate(f"risk.{label}", CounterKind.GAUGE)
        for label in ("state", "ready", "kill_latched", "limits_crc32"):
            c[label] = allocate(f"risk.{label}", CounterKind.INFO)
        self.counters = c
        symbols = self.context.layout.symbols
        self.position_gauges = [] if len(symbols) > MAX_POSITION_GAUGES else \
            [allocate(f"risk.position.{s}", CounterKind.GAUGE) for s in symbols]
        self.symbol_killed_words = [] if len(symbols) > MAX_POSITION_GAUGES else \
            [allocate(f"risk.symbol_killed.{s}", CounterKind.INFO) for s in symbols]
        c["limits_crc32"].set(self.limits.digest)

    def _cumulative_sources(self) -> list:
        """Counts kept by the engine, added to their shared counters as deltas (they carry on across restarts)."""
        engine = self.engine
        control, portfolio, c = engine.control, engine.portfolio, self.counters
        return [(c["throttled"], lambda: engine.throttled), (c["cancels_over_rate"], lambda: engine.cancels_over_rate),
                (c["cancels"], lambda: engine.cancels), (c["snapshots_applied"], lambda: engine.snapshots_applied),
                (c["snapshot_reports_ignored"], lambda: engine.snapshot_reports_ignored),
                (c["kill_switch_trips"], lambda: control.kills), (c["resets"], lambda: control.resets),
                (c["resets_refused"], lambda: control.resets_refused),
                (c["commands_refused"], lambda: control.commands_refused),
                (c["torn_reads"], lambda: engine.torn_reads),
                (c["order_pool_overflow"], lambda: portfolio.pool_overflow),
                (c["orders_without_id"], lambda: portfolio.orders_without_id),
                (c["orphans_opened"], lambda: portfolio.orphans_opened),
                (c["symbol_kills"], lambda: control.symbol_trips),
                (c["symbol_resets"], lambda: control.symbol_resets),
                (c["state_file_writes"], lambda: self.writer.writes),
                (c["state_file_write_failures"], lambda: self.writer.failures)]

    def _publish_counters(self) -> None:
        self._persist_changes()
        engine, c = self.engine, self.counters
        portfolio, control = engine.portfolio, engine.control
        c["open_orders"].set(portfolio.open_count)
        c["pnl"].set(portfolio.pnl())
        c["marks_old"].set(engine.marks_old)       # symbols marked at their last good price (bad books)
        c["peak_pnl"].set(engine.peak_pnl)
        c["gross_notional"].set(portfolio.gross_total)
        c["net_long_notional"].set(portfolio.long_total)
        c["net_short_notional"].set(portfolio.short_total)
        c["state"].set(control.state)
        c["ready"].set(int(engine.ready))
        c["kill_latched"].set(int(control.latched))
        for gauge, position in zip(self.position_gauges, portfolio.position):
            gauge.set(position)
        kills = control.symbol_kills
        c["symbols_killed"].set(len(kills))
        for s, word in enumerate(self.symbol_killed_words):
            word.set(1 if s in kills else 0)
        last = self._published_counts
        for i, (counter, read) in enumerate(self._cumulative):
            value = read()
            if value != last[i]:
                counter.add(value - last[i])
                last[i] = value

    # ------------------------------------------------------------------ duty cycle

    def do_work(self) -> int:
        work = 0
        control = self.engine.control
        if self._commands_waiting() >= 0:
            work += self._poll_commands()
            if control.durable_epoch != self._saved_epoch:     # on disk before an order is approved under it
                self._persist_changes()
        if self._reports_waiting() >= 0:
            work += self._poll_reports()
        if self._intents_waiting() >= 0:
            work += self._poll_intents()
        now_mono = monotonic_ns()
        if now_mono >= self._next_housekeeping:
            self._next_housekeeping = now_mono + self._housekeeping_ns
            work += self._housekeeping(now_mono)
        if control.events or self.outbox:
            self._take_control_events()
            work += self._flush_events()
        if control.epoch != self._published_epoch or self.engine.ready != self._published_ready:
            self._publish_words()
        return work

    def _poll_intents(self) -> int:
        """Up to ``max_intents_per_cycle`` intents: checked, then approved (ApprovedOrder committed,
        stamped just before) or rejected back; the booking of an approved order comes after its
        commit (it is not on the order's path). The hot path: the ring calls, the record's struct
        and the counters are bound once (``_intent_path``, set in ``on_start``) and each intent is
        read in one unpack into named locals (``_INTENT_FIELDS`` is checked against the schema).
        With the compiled check set (``compiled_checks``), read, check, ApprovedOrder write and
        stamp are one C call (``FastCheck.approve``) and the unpack comes after the commit."""
        (intents_peek, intents_release, intent_buffer, approved_claim, approved_commit, approved_buffer, check, record,
         unpack, pack_approved, approved_header, time_ns, c_approved, c_rejected, c_intents, approve) = self._intent_path
        reducing = self.strategies_reducing     # filled and cleared in place
        done = approved_count = own = 0         # own: a strategy's REDUCE, neither approved nor rejected
        for _ in range(self._max_intents):
            out = approved_claim()           # the same slot until committed: room first, then consume
            if out < 0:
                if not self._approved_ring_blocked:
                    self._approved_ring_blocked = True
                    self.counters["approved_ring_full"].inc()
                break
            if self._approved_ring_blocked:
                self._approved_ring_blocked = False
            offset = intents_peek()
            if offset < 0:
                break
            now = time_ns()
            # the compiled hop (risk/fast.py): read, checked and, approved, written and stamped in C; -1: not
            # an OrderIntent or a REDUCE (below). A strategy held in REDUCING takes the path below whole.
            reason = approve(intent_buffer, offset, approved_buffer, out, now) if approve is not None and \
                not reducing else -1
            if not reason:
                approved_commit()                # out first: what follows is not on the order's path
            intent = unpack(intent_buffer, offset)
            (type_id, _version, _size, client_order_id, orig_client_order_id, strategy_id, symbol_id, action, side,
             display, capacity, shares, price, time_in_force, minimum_quantity, intermarket_sweep, _pad0, _pad1,
             _t_rx, _t_feed, _t_strategy) = intent
            if reason >= 0:
                pass
            elif type_id != _INTENT_TYPE:
                self.counters["bad_intents"].inc()
                reason = _BAD_ORDER
            elif action == _REDUCE:
                self._strategy_reducing(strategy_id, now)
                intents_release()
                done += 1
                own += 1
                continue
            else:
                reason = check(action, client_order_id, orig_client_order_id, symbol_id, side, shares, price,
                               time_in_force, now, display, capacity, minimum_quantity, intermarket_sweep)
                if not reason and reducing and strategy_id in reducing:
                    reason = self.engine.held_reducing(action, orig_client_order_id, symbol_id, side, shares)
                if not reason:
                    pack_approved(approved_buffer, out, *approved_header, *intent[HEADER_COUNT:], time_ns())
                    approved_commit()            # out first: the booking below is not on the order's path
            if not reason:
                record(action, client_order_id, orig_client_order_id, symbol_id, side, shares, price, strategy_id,
                       now)
                approved_count += 1
            else:
                self._reject(reason, client_order_id, strategy_id, symbol_id)
            intents_release()
            done += 1
        if done:
            c_intents.add(done)
            if approved_count:
                c_approved.add(approved_count)
            if approved_count + own != done:
                c_rejected.add(done - approved_count - own)
        return done

    def _strategy_reducing(self, strategy_id: int, now: int) -> None:
        """A strategy asked for REDUCING of itself (Action.REDUCE): held until an operator's SET_ACTIVE or RESET."""
        if strategy_id in self.strategies_reducing:
            return
        self.strategies_reducing[strategy_id] = now
        self.counters["strategies_reducing"].set(len(self.strategies_reducing))
        log.warning("strategy %d asked for REDUCING: only its orders that shrink a position pass until an operator "
                    "sets ACTIVE (or resets)", strategy_id)

    def _release_strategies(self, operator: str) -> None:
        if self.strategies_reducing:
            log.warning("strategies %s released from REDUCING by %s", sorted(self.strategies_reducing),
                        operator or "?")
            self.strategies_reducing.clear()
            self.counters["strategies_reducing"].set(0)

    def _reject(self, reason: int, client_order_id: int, strategy_id: int, symbol_id: int) -> None:
        """A refused intent: counted by reason and sent back (a full ``risk_rejects`` loses the
        reject, counted: the order was still refused)."""
        self.reject_counters[reason].inc()
        rejects = self.rejects
        slot = rejects.claim()
        if slot < 0:
            self.counters["rejects_lost"].inc()
        else:
            ORDER_REJECT.pack_into(rejects.buffer, slot, client_order_id, strategy_id, symbol_id, RISK_SOURCE, reason,
                                   time.time_ns())
            rejects.commit()

    def _poll_reports(self) -> int:
        """ExecutionReports, and the RiskSnapshot records that answer a snapshot request, in ring order."""
        reports = self.reports
        buffer = reports.buffer
        unpack, at = EXECUTION_REPORT.unpack_from, EXECUTION_REPORT.at
        on_report = self.engine.on_report
        report_type, snapshot_type = EXECUTION_REPORT.type_id, RISK_SNAPSHOT.type_id
        counters = self.counters
        done = 0
        for _ in range(self._max_reports):
            offset = reports.peek()
            if offset < 0:
                break
            r = unpack(buffer, offset)
            type_id = r[at.type_id]
            snapshot = RISK_SNAPSHOT.read(buffer, offset) if type_id == snapshot_type else None
            reports.release()
            done += 1
            if type_id == report_type:
                result = on_report(r[at.event], r[at.client_order_id], r[at.orig_client_order_id], r[at.symbol_id],
                                   r[at.side], r[at.shares], r[at.price], r[at.leaves_shares], r[at.position],
                                   r[at.cost_basis], r[at.realized_pnl], r[at.strategy_id], time.time_ns())
            elif snapshot is not None:
                result = self.engine.on_snapshot(
                    snapshot.kind, snapshot.client_order_id, snapshot.orig_client_order_id, snapshot.symbol_id,
                    snapshot.side, snapshot.leaves_shares, snapshot.price, snapshot.position, snapshot.cost_basis,
                    snapshot.realized_pnl, snapshot.strategy_id, time.time_ns())
            else:
                result = BAD_REPORT
            if result == APPLIED:
                continue
            if result == UNKNOWN_ORDER:
                counters["reports_unknown_order"].inc()
            elif result == BAD_REPORT:
                counters["bad_reports"].inc()
            elif result == SNAPSHOT_COMPLETE:
                engine = self.engine
                log.info("state rebuilt from the OMS: %d open orders, positions %s, P&L %d; approving from now",
                         engine.portfolio.open_count,
                         {s: p for s, p in zip(self.context.layout.symbols, engine.portfolio.position) if p},
                         engine.portfolio.pnl())
                self._publish_counters()
            elif result == SNAPSHOT_IGNORED:
                pass
        counters["exec_reports"].add(done)
        return done

    def _poll_commands(self) -> int:
        commands = self.commands
        buffer = commands.buffer
        done = 0
        while True:
            offset = commands.peek()
            if offset < 0:
                break
            c = RISK_COMMAND.read(buffer, offset)
            commands.release()
            done += 1
            self.counters["commands"].inc()
            if c.type_id != RISK_COMMAND.type_id:
                self.counters["bad_commands"].inc()
                continue
            self._command(c.command, _decode(c.operator), c.argument)
        return done

    def _command(self, command: int, operator: str, argument: int = 0) -> None:
        engine = self.engine
        control = engine.control
        now = time.time_ns()
        if command == KILL:
            if not control.trip(MANUAL, now, 0, operator):
                log.info("KILL from %s: the kill switch is latched already", operator or "?")
        elif command == FIRM_KILL:
            if not control.trip(FIRM, now, 0, operator):
                log.info("FIRM KILL from %s: the kill switch is latched already (%s)", operator or "?",
                         control.kill_reason)
        elif command == RESET:
            if control.reset(operator, now):
                self._release_strategies(operator)
        elif command == FIRM_RESET:
            if control.latched and control.kill_reason == FIRM:
                control.reset(operator, now)
            elif control.latched:
                log.warning("FIRM reset by %s refused: the kill switch is latched for %s, not by the firm "
                            "(a local `appliance resume` resets it)", operator or "?", control.kill_reason)
        elif command == RELOAD_LIMITS:
            self._reload_limits(operator, now)
        elif command == SET_REDUCING:
            if control.set_reducing(now, operator):
                log.warning("trading state REDUCING (by %s): only orders that shrink a position pass", operator or "?")
            else:
                log.warning("SET_REDUCING by %s refused: HALTED (the kill switch needs a named reset)", operator or "?")
        elif command == SET_ACTIVE:
            if control.set_active(now, operator):
                log.warning("trading state ACTIVE (by %s)", operator or "?")
                self._release_strategies(operator)
            else:
                log.warning("SET_ACTIVE by %s refused: HALTED (the kill switch needs a named reset)", operator or "?")
        elif command == KILL_SYMBOL or command == RESET_SYMBOL:
            symbols = self.context.layout.symbols
            if not 0 <= argument < len(symbols):
                self.counters["bad_commands"].inc()
                log.warning("%s by %s ignored: symbol id %d is not in the layout (0..%d)",
                            "KILL_SYMBOL" if command == KILL_SYMBOL else "RESET_SYMBOL", operator or "?", argument,
                            len(symbols) - 1)
            elif command == KILL_SYMBOL:
                if not engine.kill_symbol(argument, operator, now):
                    log.info("KILL_SYMBOL %s from %s: its kill switch is latched already", symbols[argument],
                             operator or "?")
            else:
                engine.reset_symbol(argument, operator, now)
        else:
            self.counters["bad_commands"].inc()
            log.warning("unknown risk command %d from %s ignored", command, operator or "?")

    def _reload_limits(self, operator: str, now: int) -> None:
        old = self.limits
        try:
            new = load_limits(self.config["limits"], self.context.layout.symbols,
                              instruments=self.context.layout.instruments)
        except LimitsError as exc:
            self.counters["limits_reload_failed"].inc()
            log.error("limits reload (by %s) refused, the old limits stay: %s", operator or "?", exc)
            return
        changes = describe_changes(old, new)
        self.engine.apply_limits(new)
        self.limits = new
        self.counters["limits_reloaded"].inc()
        self.counters["limits_crc32"].set(new.digest)
        log.warning("limits reloaded from %s by %s (crc32 %08x -> %08x): %s", new.file, operator or "?", old.digest,
                    new.digest, "; ".join(changes) if changes else "no change")
        self.outbox.append((int(ControlEventKind.LIMITS_CHANGED), self.engine.control.state, new.digest, operator,
                            f"{len(changes)} changes", now))

    def _housekeeping(self, now_mono: int) -> int:
        engine = self.engine
        now = time.time_ns()
        engine.housekeeping(now)
        work = 0
        if not engine.ready and now_mono >= self._next_snapshot_request:
            self._request_snapshot(now, now_mono)
            work += 1
        if now_mono >= self._next_prune:
            self._next_prune = now_mono + PEAK_WRITE_INTERVAL_NS
            engine.duplicates.prune(now)
            self._state_file_tick(now)
            without_id = engine.portfolio.orders_without_id
            if without_id != self._logged_without_id:         # at most one line a second
                log.error("%d order(s) reported with client order id 0 (bad reports): each counted as an open "
                          "order until the next rebuild; the OMS must number orphans from ORPHAN_CLIENT_ID_BASE",
                          without_id - self._logged_without_id)
                self._logged_without_id = without_id
        self._publish_counters()
        return work

    def _request_snapshot(self, now: int, now_mono: int) -> None:
        self._next_snapshot_request = now_mono + self._snapshot_retry_ns
        self.outbox.append((int(ControlEventKind.SNAPSHOT_REQUEST), self.engine.control.state, 0, "", "SNAPSHOT", now))
        self.counters["snapshot_requests"].inc()

    # ------------------------------------------------------------------ the state file

    def _restore_state(self, now: int) -> None:
        """What the state file (and, as a fallback, the control words) say about the previous run;
        then the file written for this run if that changed anything. See ``persist``."""
        engine, control = self.engine, self.engine.control
        path, symbols = self.state_file, self.context.layout.symbols
        today = trading_day_of(now)
        unreadable = None
        try:
            found = read_state(path)
        except StateFileError as exc:
            found, unreadable = None, exc
        saved = None
        if found is not None:
            day, state = found
            if day == today:
                saved = state
            else:
                log.warning("risk state file %s is from trading day %d, today is %d: a fresh day, nothing carried "
                            "over (it held: %s)", path, day, today, describe(state))
        elif unreadable is None:
            log.warning("no risk state file at %s: a first start, nothing to restore", path)
        latched_word = reducing_word = False
        if self.control_words is not None:
            latched_word = bool(self.control_words.get("risk_kill_latched"))
            reducing_word = self.control_words.get("risk_state") == RiskState.REDUCING
        control.start(now, latched_before=latched_word and (saved is None or saved.kill is None),
                      reducing_before=reducing_word and (saved is None or saved.kill is None))
        if saved is not None:
            log.info("risk state restored from %s (trading day %d): %s", path, today, describe(saved))
            if saved.kill is not None:
                k = saved.kill
                control.restore_kill(k.reason, k.operator, k.value, k.t_ns, now)
            elif saved.reducing is not None:
                control.restore_reducing(saved.reducing.operator, saved.reducing.t_ns)
            for name, latch in saved.symbols_killed.items():
                if name in symbols:
                    engine.restore_symbol_kill(symbols.index(name), latch.reason, latch.operator, latch.t_ns, now)
                else:
                    self._foreign_symbol_kills[name] = latch
                    log.warning("state file: symbol %s is latched but not in the layout; the latch is kept in the "
                                "file", name)
            if saved.peak_pnl is not None:
                engine.restore_peak(saved.peak_pnl)
            self._saved_state = saved
        if unreadable is not None:
            aside = keep_aside(path, time.strftime("%Y%m%dT%H%M%S", time.localtime(now // 1_000_000_000)))
            self.counters["state_file_unreadable"].inc()
            log.error("risk state file unreadable: %s. Starting HALTED (fail closed: nothing says the kill switch was "
                      "not latched); the file is kept as %s; a named reset trades again", unreadable,
                      aside or "(it could not be copied)")
            control.trip(STATE_FILE, now)
        self._save_state(now, wait=True)

    def _persist_changes(self) -> None:
        """A latch, reset or state change not on disk yet is written now (waiting for it). Called first
        by everything that announces (events, control words, counters): nothing is told before the
        state file knows."""
        if self.engine.control.durable_epoch != self._saved_epoch:
            self._save_state(time.time_ns(), wait=True)

    def _durable_state(self) -> DurableState:
        engine = self.engine
        control = engine.control
        kill = Latch(control.kill_reason, control.kill_operator, control.killed_ns, control.kill_value) \
            if control.latched else None
        names = self.context.layout.symbols
        killed = dict(self._foreign_symbol_kills)
        for s, (reason, operator, t_ns) in control.symbol_kills.items():
            killed[names[s]] = Latch(reason, operator, t_ns)
        reducing = None if control.reducing_by is None else Latch("REDUCING", *control.reducing_by)
        return DurableState(kill, killed, reducing, engine.peak_pnl if engine.ready else engine.restored_peak)

    def _save_state(self, now: int, *, wait: bool) -> None:
        """Write the state file if what it holds changed (or the last write failed). ``wait``: block
        until it is on disk (a latch, a reset, a state change, before it is announced); else hand
        it to the writer's thread (the peak P&L)."""
        self._saved_epoch = self.engine.control.durable_epoch
        state = self._durable_state()
        if state == self._saved_state and not self._save_failed:
            return
        data = encode(state, trading_day_of(now), now)
        self._saved_state = state
        if not wait:
            self._async_seq = self.writer.submit(data)
            return
        self._async_seq = 0
        result = self.writer.write(data, self._write_timeout_s)
        if result:
            if self._save_failed:
                log.warning("risk state file %s written again", self.state_file)
            self._save_failed = False
        else:
            self._state_write_failed(now, "timed out after %g s" % self._write_timeout_s if result is None
                                     else self.writer.last_error)

    def _state_write_failed(self, now: int, error: str) -> None:
        """Fail closed: a latch (or reset) that is not on disk would not survive a restart, so the kill
        switch latches (STATE_WRITE; a named reset needed, itself written first). Retried every second."""
        self._save_failed = True
        now_mono = time.monotonic_ns()
        if not self._last_failure_log_mono or now_mono - self._last_failure_log_mono >= 60_000_000_000:
            self._last_failure_log_mono = now_mono
            log.error("risk state file %s could not be written (%s); the kill switch latches (fail closed), "
                      "retrying every second", self.state_file, error)
        control = self.engine.control
        control.trip(STATE_WRITE, now)
        self._saved_epoch = control.durable_epoch       # announced now; on disk with the next retry

    def _state_file_tick(self, now: int) -> None:
        """Once a second: the outcome of the last background write; the day's peak P&L (if it changed)
        or a failed write, handed to the writer's thread (~12 ms of fsyncs there, none here)."""
        writer = self.writer
        if self._async_seq and writer.idle:
            if writer.written_seq >= self._async_seq:
                if self._save_failed:
                    log.warning("risk state file %s written again", self.state_file)
                self._save_failed = False
            else:
                self._state_write_failed(now, writer.last_error)
            self._async_seq = 0
        if not self._async_seq and (self.engine.ready or self._save_failed):
            self._save_state(now, wait=False)

    # ------------------------------------------------------------------ events and control words

    def _take_control_events(self) -> None:
        events = self.engine.control.take_events()
        if events:
            self.outbox.extend(events)

    def _flush_events(self) -> int:
        self._persist_changes()
        ring = self.events_ring
        buffer, pack = ring.buffer, CONTROL_EVENT.pack_into
        sent = 0
        outbox = self.outbox
        while sent < len(outbox):
            slot = ring.claim()
            if slot < 0:
                if not self._events_ring_blocked:
                    self._events_ring_blocked = True
                    self.counters["events_ring_full"].inc()
                break
            kind, state, value, operator, detail, t_ns = outbox[sent]
            pack(buffer, slot, kind, state, value, _text16(operator), _text16(detail), t_ns)
            ring.commit()
            sent += 1
        else:
            self._events_ring_blocked = False
        del outbox[:sent]
        return sent

    def _publish_words(self) -> None:
        self._persist_changes()
        engine = self.engine
        control = engine.control
        self._published_epoch = control.epoch
        self._published_ready = engine.ready
        words = self.control_words
        if words is None:
            return
        words.set("risk_kill_latched", int(control.latched))
        words.set("risk_state", control.state)
        words.set("risk_state_changed_ns", control.changed_ns or time.time_ns())
        words.set("risk_ready", int(engine.ready))
