"""The OMS agent: approved orders in, OUCH 4.2 over SoupBinTCP out, execution reports back.

A thin composition of parts with one idea each (Agrona's Agent: ``on_start``, ``do_work``,
``on_close``); the agent builds them, binds their entry points once, and runs the duty cycle:

1. read the venue socket (``venue_events.py``): every sequenced OUCH message is journaled, then
   applied to the order registry (``orders.py``), which reports to strategy and risk
   (``reports.py``) and marks the positions (``positions.py``) changed;
2. read up to ``MAX_ORDERS_PER_CYCLE`` approved orders (``sender.py``): gate, token, ORDER_SENT
   journaled, bytes to the socket;
3. read risk's control events (``controls.py``: kills cancel everything or one symbol's orders;
   a snapshot request is answered); a strategy's snapshot request (Action.SNAPSHOT, through risk
   on ``approved_orders``) is answered on ``exec_to_strategy`` from the slow path once recovered;
4. every millisecond the slow path: connect / heartbeat / reconnect (``session.py``), recovery
   progress (``restart.py``), the supervisor's gate word and the cancels owed (``controls.py``),
   in-flight timeouts, a pending snapshot, counters (``counters.py``);
5. the changed positions rows and control words (``status.py``);
6. with ``replication`` on: the journal's new records to the standby, its acknowledgements, and in
   sync mode the orders held for them (``replication.py``).

Start-up (``on_start``) opens the journal and rebuilds orders, positions, the token counter and
the session from it (``restart.py``, ``recovery.py``), and publishes ``oms_ready = 0``; it
becomes 1 once the venue's replay is drained and every unacknowledged order is resolved.

Fail closed (``journal_guard.py``): a journal that cannot take a record stops every new order
(JOURNAL_FAILED, ``oms_ready = 0``, ``oms.journal.failed = 1``); cancels are still sent.
"""
from __future__ import annotations

import logging
import time

from appliance.messages.catalog import APPROVED_ORDER, CONTROL_EVENT, EXECUTION_REPORT
from appliance.oms import journal_records as jr
from appliance.oms.config import OmsConfigError, parse_oms_params
from appliance.oms.controls import Controls
from appliance.oms.counters import OmsCounters
from appliance.oms.credentials import CredentialsError, load_venue_credentials
from appliance.oms.gate import Gate
from appliance.oms.journal_guard import JournalGuard
from appliance.oms.journal_records import RecordType, SessionEvent
from appliance.oms.latency import LatencyRecorder
from appliance.oms.orders import OrderRegistry
from appliance.oms.recovery import rebuild
from appliance.oms.replication import ReplicationPrimary, SyncSends
from appliance.oms.replication_shm import ShmListener
from appliance.oms.reports import ExecutionReports
from appliance.oms.restart import RecoveryProgress, open_journal
from appliance.oms.sender import OrderSender
from appliance.oms.session import VenueSession
from appliance.oms.status import OmsStatus
from appliance.oms.tokens import TokenSource, choose_prefix
from appliance.oms.venue_events import VenueEvents
from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.channels import CONSUMER, PRODUCER, RingUse, check_ring_uses
from appliance.runtime.layout import LayoutError

log = logging.getLogger("appliance.oms")

RISK_PROCESS = "risk"
ORDERS_RING = RingUse("approved_orders", CONSUMER, APPROVED_ORDER, peer=RISK_PROCESS)
EVENTS_RING = RingUse("risk_events", CONSUMER, CONTROL_EVENT, peer=RISK_PROCESS)
TO_STRATEGY = RingUse("exec_to_strategy", PRODUCER, EXECUTION_REPORT)
TO_RISK = RingUse("exec_to_risk", PRODUCER, EXECUTION_REPORT, peer=RISK_PROCESS)
RINGS = (ORDERS_RING, EVENTS_RING, TO_STRATEGY, TO_RISK)

SLOW_PATH_NS = 1_000_000
TIMEOUT_SCAN_NS = 10_000_000
COUNTERS_INTERVAL_NS = 10_000_000


class OmsAgent(Agent):
    name = "oms"

    def __init__(self, context: AgentContext):
        super().__init__(context)
        layout = context.layout
        self.config, self.credentials = self.load_config(layout, context.process)
        if not layout.symbols:
            raise LayoutError(layout.path, "symbols", "the OMS needs the layout's symbols list")
        for kind in ("control", "positions"):
            if not any(t.kind == kind for t in layout.tables.values()):
                raise LayoutError(layout.path, "tables", f"the OMS needs a {kind!r} table")
        if RISK_PROCESS not in layout.processes:
            raise LayoutError(layout.path, "processes", "the OMS checks the risk heartbeat: no process named 'risk'")
        check_ring_uses(layout, context.process.name, RINGS, "the OMS")
        # A takeover (``takeover.py``) sets these before ``on_start``: the standby's journal and the order
        # state it has already replayed from it, so the new primary does not read its journal again.
        self.prepared = None

    @staticmethod
    def load_config(layout, process):
        """(OmsConfig, VenueCredentials), or LayoutError naming the key or the credentials file: a bad
        login is bad configuration (exit 2, no restart), found before anything connects."""
        key_path = f"processes.{process.name}.params"
        try:
            config = parse_oms_params(process.params, layout.path, key_path)
        except OmsConfigError as exc:
            raise LayoutError(layout.path, exc.key_path, exc.reason) from None
        try:
            return config, load_venue_credentials(config.credentials_path)
        except CredentialsError as exc:
            raise LayoutError(layout.path, f"{key_path}.credentials", str(exc)) from None

    @classmethod
    def check_params(cls, layout, process) -> None:
        """``appliance up`` and ``preflight`` check the params and the credentials file before starting."""
        cls.load_config(layout, process)

    def sample_ring_to_wire(self, samples) -> None:
        """Benchmarks: append (ns) from each order's ring read to its bytes handed to the socket."""
        self.sender.ring_to_wire_ns = samples
        self.session.stamp_sends = samples is not None

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        cfg, ctx = self.config, self.context
        layout, memory, me = ctx.layout, ctx.memory, ctx.process.name
        symbols = list(layout.symbols)
        stocks = [s.encode("ascii").ljust(8) for s in symbols]
        self.counters = counters = OmsCounters(ctx.counters.allocate)
        self.control = memory.control(me)
        self.status = status = OmsStatus(self.control, memory.positions_writer(), len(symbols), counters.open_orders)
        orders_ring, events_ring, to_strategy, to_risk = (memory.channel(use, me) for use in RINGS)
        self.gate = gate = Gate(memory, layout, RISK_PROCESS, cfg.risk_heartbeat_limit_ms)

        started_mono = time.monotonic_ns()
        now_ns = time.time_ns()
        self.journal = journal = open_journal(cfg, counters.journal_truncated, now_ns)
        self.guard = guard = JournalGuard(journal, gate, status, counters)
        prepared = self.prepared
        if prepared is not None and prepared.records != journal.next_sequence - 1:
            raise RuntimeError(f"takeover: the standby replayed {prepared.records} records, its journal "
                               f"{journal.path} holds {journal.next_sequence - 1}")
        self.orders = orders = prepared.orders if prepared is not None else OrderRegistry(symbols)
        orders.changed = status.changed
        status.attach(orders)
        self.reports = reports = ExecutionReports(to_strategy, to_risk, orders.positions, len(symbols), counters)
        orders.report = reports.report
        state = prepared if prepared is not None else rebuild(journal.records(), symbols, orders)
        self.tokens = TokenSource(choose_prefix(state.last_prefix, now_ns), state.next_counter)
        self.tokens.refill()
        guard.record(RecordType.SESSION, jr.SESSION.pack(SessionEvent.START, sequence=state.next_sequence_number,
                                                         prefix=self.tokens.prefix, counter=self.tokens.next_counter),
                     now_ns, reserve=True)
        counters.recovery_records.set(state.records)
        counters.unknown_symbols.set(state.unknown_symbols)
        for sid in range(len(symbols)):
            status.publish_position(sid, now_ns)
        status.publish_open_orders()
        log.info("journal %s: %d records (%d orders, %d venue messages), %d open orders, token prefix %s, "
                 "next venue sequence %d, durability %s; recovery took %.3f s so far", journal.path,
                 state.records, state.orders_sent, state.exchange_messages, orders.open_orders,
                 self.tokens.peek()[:4].decode(), state.next_sequence_number, cfg.durability,
                 (time.monotonic_ns() - started_mono) / 1e9)
        if orders.cancel_owed:
            log.warning("%d open orders owe a cancel from before the restart (a kill or cancel-all that was not "
                        "finished): they are cancelled as soon as the session is up", len(orders.cancel_owed))

        log.info("venue login %s from %s", self.credentials.username, self.credentials.source)
        self.session = session = VenueSession(
            cfg.venue_host, cfg.venue_port, self.credentials.username, self.credentials.password, state.session_name,
            state.next_sequence_number, heartbeat_ns=cfg.heartbeat_ms * 1_000_000,
            peer_timeout_ns=cfg.peer_timeout_ms * 1_000_000, reconnect_min_ns=cfg.reconnect_min_ms * 1_000_000,
            reconnect_max_ns=cfg.reconnect_max_ms * 1_000_000, replay_margin_ns=cfg.replay_margin_ms * 1_000_000)
        self.venue = VenueEvents(session, orders, gate, journal, guard, reports, status, counters, state.session_name,
                                 state.next_sequence_number)
        # Journal replication (replication.py): the records streamed to the standby from the duty cycle; in
        # sync mode the sender's view of the session holds new orders until the standby acknowledged them.
        self.replication = self.sync_sends = None
        sends_to = session
        if cfg.replication.enabled:
            listener = ShmListener(ctx.memory) if cfg.replication.transport == "shm" else None   # else TCP
            self.replication = ReplicationPrimary(cfg.replication, journal, ctx.counters.allocate, listener)
            if cfg.replication.mode == "sync":
                orders_available, events_available = orders_ring.ring.available, events_ring.ring.available
                self.sync_sends = sends_to = SyncSends(
                    session, journal, self.replication, gate, cfg.replication.ack_limit_ms,
                    cfg.replication.without_standby, ctx.counters.allocate, cfg.replication.ack_spin_us,
                    # another approved order (the one being sent is still in the ring) or a control event
                    lambda: orders_available() > 1 or events_available() > 0)
        self.sender = sender = OrderSender(orders_ring, orders, gate, self.tokens, journal, guard, sends_to, reports,
                                           status, counters, LatencyRecorder(ctx.counters.allocate), stocks,
                                           cfg.firm.encode("ascii"), cfg.in_flight_timeout_ms * 1_000_000)
        self.controls = Controls(events_ring, orders, gate, guard, sender, self.control, stocks, counters,
                                 state.last_gate_epoch)
        self.recovery = RecoveryProgress(orders, gate, guard, session, counters, cfg.unacked_timeout_ms, started_mono)
        # The duty cycle's entry points, bound once.
        self._orders_waiting = orders_ring.peek
        self._events_waiting = events_ring.peek
        self._apply_venue_events = self.venue.apply
        self._process_orders = sender.process
        self._process_control_events = self.controls.process_events
        self._dirty_ids = status.dirty_ids
        self._flush_positions = status.flush
        self._next_slow_ns = 0
        self._next_timeout_scan_ns = 0
        self._next_counters_ns = 0
        if journal.failed:
            guard.fail(journal.failed)

    def on_close(self) -> None:
        now_mono, now_ns = time.monotonic_ns(), time.time_ns()
        try:
            session = getattr(self, "session", None)
            if getattr(self, "sync_sends", None) is not None and self.sync_sends.held:
                self.sync_sends.give_back()             # held for the standby, never sent: NOT_SENT
                self.sender.take_unsent()
            if session is not None:
                if session.logged_in:
                    self.guard.record(RecordType.SESSION, jr.SESSION.pack(
                        SessionEvent.LOGOUT, session=session.client.session.encode(),
                        sequence=session.client.next_sequence_number), now_ns, reserve=True)
                session.logout(now_mono)
                self.status.flush(now_ns)
                self.counters.publish(self.orders, session, self.journal)
        finally:
            if getattr(self, "status", None) is not None:
                self.status.close()
            elif getattr(self, "control", None) is not None:
                self.control.set("oms_ready", 0)
                self.control.set("oms_session_up", 0)
            if getattr(self, "replication", None) is not None:
                self.replication.pump(now_mono, read=False)      # the last records (the logout) on their way
                self.replication.close()
            if getattr(self, "journal", None) is not None:
                self.journal.close()
            if getattr(self, "gate", None) is not None:
                self.gate.close()

    # ------------------------------------------------------------------ waiting (a parked OMS)

    def wait_fds(self) -> tuple:
        """The venue socket once connected: a parked OMS sleeps in poll() on it and its doorbell."""
        session = self.session
        fds = (session.sock.fileno(),) if session.state == "connected" and session.sock is not None else ()
        if self.replication is not None and self.replication.fileno() is not None:
            fds += (self.replication.fileno(),)           # the standby's acknowledgements wake it too (TCP)
        return fds

    def next_deadline_ns(self) -> int | None:
        """The slow path's next run while it has something to drive (connecting, unflushed bytes,
        recovery, owed cancels, a snapshot); None when the session is up and quiet: heartbeats, the
        gate and the timeout scan then run at the layout's park timeout."""
        session = self.session
        if self.sync_sends is not None and self.sync_sends.held:
            return time.monotonic_ns()               # orders wait for the standby's acknowledgement: keep polling
        if (session.logged_in and not session.write_pending and self.recovery.ready
                and not self.orders.cancel_owed and not self.controls.snapshot_pending
                and not self.sender.snapshot_requests):
            return None
        return self._next_slow_ns

    # ------------------------------------------------------------------ duty cycle

    def do_work(self) -> int:
        now = time.monotonic_ns()
        work = 0
        session = self.session
        if session.state == "connected":
            events = session.receive(now)
            if events:
                work += self._apply_venue_events(events, now)
            elif self.venue.session_up and session.state != "connected":
                self.venue.session_lost(time.time_ns())
        if self._orders_waiting() >= 0:
            work += self._process_orders(now)
        if self._events_waiting() >= 0:
            work += self._process_control_events()
        if self.replication is not None:
            sync = self.sync_sends
            if sync is not None and sync.held:
                work += sync.release(now)
            else:
                self.replication.pump(now, read=False)    # new records out; acknowledgements read in the slow path
        if now >= self._next_slow_ns:
            self._next_slow_ns = now + SLOW_PATH_NS
            work += self._slow_path(now)
        if self._dirty_ids:
            self._flush_positions(time.time_ns())
        return work

    def _slow_path(self, now_mono: int) -> int:
        work = 0
        session, gate, controls, recovery = self.session, self.gate, self.controls, self.recovery
        session.maintain(now_mono)
        session.flush(now_mono)
        if self.venue.session_up and not session.logged_in:
            self.venue.session_lost(time.time_ns())
        if session.unsent:
            self.sender.take_unsent()
        ready = session.ready(now_mono)
        if ready != gate.session_ready:
            gate.session_ready = ready
            work += 1
        if self.orders.cancel_owed:
            work += controls.discharge(now_mono)
        if not recovery.ready:
            work += recovery.progress(now_mono, ready)
        if self.replication is not None:
            work += self.replication.maintain(now_mono)
            if self.sync_sends is not None:
                work += self.sync_sends.watch(now_mono)
                self.sync_sends.publish()
        work += controls.watch_gate(now_mono)
        work += controls.record_clock(now_mono)
        if now_mono >= self._next_timeout_scan_ns:
            self._next_timeout_scan_ns = now_mono + TIMEOUT_SCAN_NS
            work += self.sender.query_overdue(now_mono, recovery.ready)
        self.tokens.refill()
        if controls.snapshot_pending and recovery.ready:
            if self.reports.answer_snapshot(self.orders.open_orders_list()):
                controls.snapshot_pending = False
                work += 1
        requests = self.sender.snapshot_requests
        while requests and recovery.ready:
            strategy_id, request_id = requests[0]
            if not self.reports.answer_strategy_snapshot(strategy_id, request_id, self.orders.open_orders_list()):
                break                            # the strategy has not drained its ring: the next pass
            del requests[0]
            work += 1
        if self.journal.failed and gate.journal_ok:
            self.guard.fail(self.journal.failed)
        self.status.publish_open_orders()        # also counts orders in symbols the layout no longer lists
        self.status.publish_ready(gate)
        if now_mono >= self._next_counters_ns:
            self._next_counters_ns = now_mono + COUNTERS_INTERVAL_NS
            self.counters.publish(self.orders, session, self.journal)
        return work
