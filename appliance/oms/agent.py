"""The OMS agent: approved orders in, OUCH 4.2 over SoupBinTCP out, execution reports back.

One duty cycle (``do_work``):

1. read the venue socket: every sequenced OUCH message is journaled (EXCHANGE_MESSAGE, with
   its SoupBinTCP sequence number) and then applied to the order registry, which reports to the
   strategy and risk (``exec_to_strategy``, ``exec_to_risk``) and updates the positions table;
2. read up to ``MAX_ORDERS_PER_CYCLE`` approved orders: new orders and replaces pass the gate
   (``gate.py``) or are rejected back (REJECTED_LOCALLY, ``oms.rejects.<REASON>``); a new token;
   ORDER_SENT journaled; then the bytes go to the socket and the hop latencies are recorded.
   Cancels skip the gate and go out whenever the session is logged in;
3. read risk's control events (KILL cancels everything, KILL_SYMBOL one symbol's orders;
   SNAPSHOT_REQUEST is answered);
4. every millisecond the slow path: connect / heartbeat / reconnect, recovery progress, the
   supervisor's gate word (a close for RISK_UNHEALTHY, KILL_SWITCH or MARKET_DATA cancels everything
   once per gate epoch), cancels owed, in-flight timeouts, pending snapshot, counters.

Cancels owed: a kill or a cancel-all gate close is journaled first, then every open order it
covers owes a cancel (``recovery.apply_control``, the same function recovery replays). The owed
cancels go out as soon as the session is logged in, now or after a reconnect or a restart, and
an order leaves the set only when the venue says it is finished. Bytes the session could not
hand to the kernel (connection lost with them queued) are journaled NOT_SENT: such a new order is
rejected back (OmsReason.NOT_SENT), such a cancel is owed again.

The venue's session: the OMS logs in with the journaled session name and the next sequence
number it has not seen. A LoginAccepted from a lower number, or under another name (after the
venue refused the journaled one), means the venue lost the old session: journaled NEW_SESSION,
every open order CANCELED (the venue no longer has it). One from a higher number means messages
were skipped that the OMS never saw: SEQUENCE_GAP keeps new orders out until a person looks.

Start-up (``on_start``) opens the journal (a torn tail is truncated with a warning; a corrupt
middle stops the start), rebuilds orders, positions, the token counter and the session from
it (``recovery.py``), and publishes ``oms_ready = 0``. The session logs in asking for the next
sequence number the journal has not seen; once the venue's replay is known to be drained (see
``session.py``) and every order journaled as sent but unacknowledged is resolved (by the replay, or cancelled by token after
``unacked_timeout_ms``), ``oms_ready`` becomes 1 and new orders may pass.

Fail closed: a journal that cannot take a record (full, sync error) stops every new order
(JOURNAL_FAILED, ``oms_ready = 0``, ``oms.journal.failed = 1``); cancels are still sent.
"""
from __future__ import annotations

import logging
import os
import time

from appliance.messages.catalog import APPROVED_ORDER, CONTROL_EVENT, EXECUTION_REPORT, RISK_SNAPSHOT
from appliance.messages.codes import (
    ALL_SYMBOLS, Action, ClockState, ControlEventKind, ExecEvent, GateReason, OmsReason, RejectSource, Side,
    SnapshotKind, TIF_DAY, TIF_IOC, TIF_SYSTEM_HOURS, name_of,
)
from appliance.oms import journal_records as jr
from appliance.oms.config import OmsConfigError, parse_oms_params
from appliance.oms.credentials import CredentialsError, load_venue_credentials
from appliance.oms.journal_records import ControlKind, RecordType, SendReason, SessionEvent
from appliance.oms.gate import GATE_OPEN, Gate
from appliance.oms.journal import Journal, archive_name
from appliance.oms.journal_format import JournalError, journal_day
from appliance.oms.latency import LatencyRecorder
from appliance.oms.orders import OPEN_STATES, OrderRegistry, VenueOrder
from appliance.oms.recovery import apply_control, rebuild
from appliance.oms.session import VenueSession
from appliance.oms.tokens import TokenSource, choose_prefix
from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.channels import CONSUMER, PRODUCER, RingUse, check_ring_uses
from appliance.runtime.counters import CounterKind
from appliance.runtime.layout import LayoutError
from appliance.runtime.trading_day import trading_day_of
from appliance.wire import ouch
from appliance.wire.soupbintcp_session import DebugText, EndOfSession, LoginAccepted, LoginRejected, SequencedMessage

log = logging.getLogger("appliance.oms")

RISK_PROCESS = "risk"
ORDERS_RING = RingUse("approved_orders", CONSUMER, APPROVED_ORDER, peer=RISK_PROCESS)
EVENTS_RING = RingUse("risk_events", CONSUMER, CONTROL_EVENT, peer=RISK_PROCESS)
TO_STRATEGY = RingUse("exec_to_strategy", PRODUCER, EXECUTION_REPORT)
TO_RISK = RingUse("exec_to_risk", PRODUCER, EXECUTION_REPORT, peer=RISK_PROCESS)
RINGS = (ORDERS_RING, EVENTS_RING, TO_STRATEGY, TO_RISK)

MAX_ORDERS_PER_CYCLE = 64
MAX_EVENTS_PER_CYCLE = 16
SLOW_PATH_NS = 1_000_000
TIMEOUT_SCAN_NS = 10_000_000
CLOCK_RECORD_NS = 10_000_000_000       # the clock's offset in the journal at least every 10 s
COUNTERS_INTERVAL_NS = 10_000_000
SIDES = frozenset((Side.BUY, Side.SELL, Side.SELL_SHORT))
TIFS = frozenset((TIF_IOC, TIF_DAY, TIF_SYSTEM_HOURS))
NO_SYMBOL = 0xFFFFFFFF

_APPROVED_TYPE = APPROVED_ORDER.type_id
_AT = APPROVED_ORDER.at               # an approved record is read as a tuple (the hot path) and its fields by these
_CONTROL_TYPE = CONTROL_EVENT.type_id
# The whole SoupBinTCP Unsequenced Data packet of an OUCH message, packed in one call (the wire codec's frames).
_ENTER = ouch.ENTER_ORDER_FRAME.pack
_REPLACE = ouch.REPLACE_ORDER_FRAME.pack
_CANCEL = ouch.CANCEL_ORDER_FRAME.pack
_ORDER_SENT_TYPE = RecordType.ORDER_SENT
_BY_STRATEGY = SendReason.STRATEGY
_pack_order_sent = jr.ORDER_SENT.pack


class OmsAgent(Agent):
    name = "oms"

    def __init__(self, context: AgentContext):
        super().__init__(context)
        layout = context.layout
        self.config, self.credentials = self.load_config(layout, context.process)
        if not layout.symbols:
            raise LayoutError(layout.path, "symbols", "the OMS needs the layout's symbols list")
        me = context.process.name
        for kind in ("control", "positions"):
            if not any(t.kind == kind for t in layout.tables.values()):
                raise LayoutError(layout.path, "tables", f"the OMS needs a {kind!r} table")
        if RISK_PROCESS not in layout.processes:
            raise LayoutError(layout.path, "processes", "the OMS checks the risk heartbeat: no process named 'risk'")
        check_ring_uses(layout, me, RINGS, "the OMS")
        self.ring_to_wire_ns = None          # a bench sets an array('q') here to sample ring read -> socket
        self._t_ring_read = 0

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
        self.ring_to_wire_ns = samples
        self.session.stamp_sends = samples is not None

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        cfg, ctx = self.config, self.context
        layout, memory = ctx.layout, ctx.memory
        self.symbols = list(layout.symbols)
        self.stocks = [s.encode("ascii").ljust(8) for s in self.symbols]
        self._setup_counters()
        self.control = memory.control(ctx.process.name)
        self.control.set("oms_ready", 0)
        self.control.set("oms_session_up", 0)
        self.positions_table = memory.positions_writer()
        me = ctx.process.name
        self.orders_ring, self.events_ring, self.to_strategy, self.to_risk = (memory.channel(use, me)
                                                                              for use in RINGS)
        self.gate = Gate(memory, layout, RISK_PROCESS, cfg.risk_heartbeat_limit_ms)
        self.latency = LatencyRecorder(ctx.counters.allocate)
        self.in_flight_timeout_ns = cfg.in_flight_timeout_ms * 1_000_000
        self.unacked_timeout_ns = cfg.unacked_timeout_ms * 1_000_000
        self._firm = cfg.firm.encode("ascii")
        self._n_symbols = len(self.symbols)
        self._dirty = [False] * len(self.symbols)
        self._dirty_ids: list[int] = []
        self._open_orders_published = -1
        self._ready_published = 0
        self._t_rx_ns = 0

        started_mono = time.monotonic_ns()
        now_ns = time.time_ns()
        self.journal = self._open_journal(now_ns)
        self.orders = OrderRegistry(self.symbols, report=self._report, changed=self._changed)
        state = rebuild(self.journal.records(), self.symbols, self.orders)
        self.recovered = state
        self.tokens = TokenSource(choose_prefix(state.last_prefix, now_ns), state.next_counter)
        self.tokens.refill()
        self._cancel_request_ids = set()
        self._last_gate_epoch = state.last_gate_epoch
        self._last_clock_state = -1               # journal the clock once at start, then on change
        self._next_clock_record_ns = 0
        self._cancel_all_why = "restart" if self.orders.cancel_owed else ""   # announced with the next pass
        self._journal(RecordType.SESSION, jr.SESSION.pack(SessionEvent.START, sequence=state.next_sequence_number,
                                                          prefix=self.tokens.prefix, counter=self.tokens.next_counter),
                      now_ns, reserve=True)
        self.c_recovery_records.set(state.records)
        self.c_unknown_symbols.set(state.unknown_symbols)
        for sid in range(len(self.symbols)):
            self._publish_position(sid, now_ns)
        self._publish_open_orders()
        log.info("journal %s: %d records (%d orders, %d venue messages), %d open orders, token prefix %s, "
                 "next venue sequence %d, durability %s; recovery took %.3f s so far", self.journal.path,
                 state.records, state.orders_sent, state.exchange_messages, self.orders.open_orders,
                 self.tokens.peek()[:4].decode(), state.next_sequence_number, cfg.durability,
                 (time.monotonic_ns() - started_mono) / 1e9)
        if self.orders.cancel_owed:
            log.warning("%d open orders owe a cancel from before the restart (a kill or cancel-all that was not "
                        "finished): they are cancelled as soon as the session is up", len(self.orders.cancel_owed))

        log.info("venue login %s from %s", self.credentials.username, self.credentials.source)
        self.session = VenueSession(cfg.venue_host, cfg.venue_port, self.credentials.username,
                                    self.credentials.password, state.session_name,
                                    state.next_sequence_number, heartbeat_ns=cfg.heartbeat_ms * 1_000_000,
                                    peer_timeout_ns=cfg.peer_timeout_ms * 1_000_000,
                                    reconnect_min_ns=cfg.reconnect_min_ms * 1_000_000,
                                    reconnect_max_ns=cfg.reconnect_max_ms * 1_000_000,
                                    replay_margin_ns=cfg.replay_margin_ms * 1_000_000)
        self._requested_sequence = state.next_sequence_number
        self._journal_session = state.session_name
        self._session_up = False
        self.ready = False
        self._started_mono = started_mono
        self._unacked_clock_started = False
        self._waiting_logged = False
        self._snapshot_pending = False
        self._next_slow_ns = 0
        self._next_timeout_scan_ns = 0
        self._next_counters_ns = 0
        if self.journal.failed:
            self._journal_failed(self.journal.failed)

    def _open_journal(self, now_ns: int) -> Journal:
        cfg = self.config
        path = cfg.journal_path
        day = journal_day(path)
        today = trading_day_of(now_ns)
        if day is not None and day != today:
            archived = archive_name(path, day)
            log.warning("journal %s is from trading day %d: archived as %s, a new journal starts for %d",
                        path, day, archived, today)
            os.replace(path, archived)
        journal = Journal.open(path, cfg.journal_size_mb << 20, cfg.durability, cfg.group_commit_us, now_ns=now_ns)
        if journal.truncated_bytes:
            self.c_journal_truncated.set(journal.truncated_bytes)
        return journal

    def on_close(self) -> None:
        now_mono, now_ns = time.monotonic_ns(), time.time_ns()
        try:
            if getattr(self, "session", None) is not None:
                if self.session.logged_in:
                    self._journal(RecordType.SESSION, jr.SESSION.pack(SessionEvent.LOGOUT,
                                                                      session=self.session.client.session.encode(),
                                                                      sequence=self.session.client.next_sequence_number),
                                  now_ns, reserve=True)
                self.session.logout(now_mono)
            self._flush_positions(now_ns)
            self._publish_counters()
        finally:
            if getattr(self, "control", None) is not None:
                self.control.set("oms_ready", 0)
                self.control.set("oms_session_up", 0)
            if getattr(self, "journal", None) is not None:
                self.journal.close()
            if getattr(self, "gate", None) is not None:
                self.gate.close()

    # ------------------------------------------------------------------ duty cycle

    def do_work(self) -> int:
        now = time.monotonic_ns()
        work = 0
        session = self.session
        if session.state == "connected":
            events = session.receive(now)
            if events:
                work += self._on_session_events(events, now)
            elif self._session_up and session.state != "connected":
                self._session_lost(time.time_ns())
        if self.orders_ring.peek() >= 0:
            work += self._process_orders(now)
        if self.events_ring.peek() >= 0:
            work += self._process_control_events()
        if now >= self._next_slow_ns:
            self._next_slow_ns = now + SLOW_PATH_NS
            work += self._slow_path(now)
        if self._dirty_ids:
            self._flush_positions(time.time_ns())
        return work

    # ------------------------------------------------------------------ venue -> OMS

    def _on_session_events(self, events: list, now_mono: int) -> int:
        now_ns = time.time_ns()
        self._t_rx_ns = now_ns
        orders = self.orders
        journal_append = self.journal.append
        for event in events:
            kind = type(event)
            if kind is SequencedMessage:
                message = event.message
                try:
                    journal_append(RecordType.EXCHANGE_MESSAGE,
                                   jr.EXCHANGE_MESSAGE.pack(event.sequence_number, message), now_ns, True)
                except JournalError as exc:
                    self.c_unjournaled.inc()
                    self._journal_failed(str(exc))
                self.c_venue_messages.inc()
                orders.apply_ouch(message, now_ns)
            elif kind is LoginAccepted:
                self._journal(RecordType.SESSION, jr.SESSION.pack(SessionEvent.LOGIN_ACCEPTED,
                                                                  session=event.session.encode(),
                                                                  sequence=event.sequence_number), now_ns, reserve=True)
                self._login_accepted(event, now_ns)
                self._set_session_up(True)
            elif kind is LoginRejected:
                self._journal(RecordType.SESSION,
                              jr.SESSION.pack(SessionEvent.LOGIN_REJECTED, session=event.reason.encode()),
                              now_ns, reserve=True)
            elif kind is EndOfSession:
                self._journal(RecordType.SESSION, jr.SESSION.pack(SessionEvent.END_OF_SESSION,
                                                                  session=self.session.client.session.encode(),
                                                                  sequence=self.session.client.next_sequence_number),
                              now_ns, reserve=True)
            elif kind is DebugText:
                self.c_debug.inc()
                if self.c_debug.get() <= 20:
                    log.warning("venue debug message: %s", event.text)
        if not self.session.logged_in and self._session_up:
            self._session_lost(now_ns)
        return len(events)

    def _login_accepted(self, event: LoginAccepted, now_ns: int) -> None:
        """Is this the session the journal knows, from the number it asked for?"""
        requested, known = self._requested_sequence, self._journal_session
        if event.sequence_number > requested:
            self.c_sequence_gaps.inc()
            self.gate.sequence_gap = True
            log.error("the venue accepted the login from sequence %d, but the journal asked for %d: messages %d..%d "
                      "were skipped and never seen; no new order leaves until a person looks (cancels still do)",
                      event.sequence_number, requested, requested, event.sequence_number - 1)
        elif event.sequence_number < requested or (known and event.session.strip() != known.strip()):
            self.c_sequence_resets.inc()
            gone = self.orders.venue_session_lost()
            self._journal(RecordType.SESSION, jr.SESSION.pack(SessionEvent.NEW_SESSION, session=event.session.encode(),
                                                              sequence=event.sequence_number), now_ns, reserve=True)
            log.error("the venue lost session %r (it now sends %r from sequence %d; the journal had seen up to %d): "
                      "%d open orders are gone at the venue and reported CANCELED", known, event.session,
                      event.sequence_number, requested - 1, len(gone))
        self._journal_session = event.session
        self._requested_sequence = event.sequence_number

    def _set_session_up(self, up: bool) -> None:
        self._session_up = up
        self.control.set("oms_session_up", 1 if up else 0)

    def _session_lost(self, now_ns: int) -> None:
        self._set_session_up(False)
        self.gate.session_ready = False
        event = SessionEvent.END_OF_SESSION if self.session.ended else SessionEvent.DISCONNECTED
        if event == SessionEvent.DISCONNECTED:
            self._journal(RecordType.SESSION, jr.SESSION.pack(event, session=self.session.client.session.encode(),
                                                              sequence=self.session.client.next_sequence_number),
                          now_ns, reserve=True)
        self._requested_sequence = self.session.client.next_sequence_number

    # ------------------------------------------------------------------ execution reports

    def _report(self, event: int, order: VenueOrder, shares: int, price: int, match: int = 0, reason: int = 0,
                source: int = 0, t_exchange_ns: int = 0) -> None:
        """An event of an order the registry holds (the registry's ``report`` callback)."""
        self._execution_report(event, order.client_order_id, order.orig_client_order_id, order.strategy_id,
                               order.symbol_id, order.side, shares, price, exchange_order_ref=order.order_ref,
                               match_number=match, reason=reason, source=source, leaves_shares=max(0, order.leaves),
                               t_exchange_ns=t_exchange_ns, t_oms_rx_ns=self._t_rx_ns)

    def _execution_report(self, event: int, client_order_id: int, orig_client_order_id: int, strategy_id: int,
                          symbol_id: int, side: int, shares: int, price: int, *, exchange_order_ref: int = 0,
                          match_number: int = 0, reason: int = 0, source: int = 0, leaves_shares: int = 0,
                          t_exchange_ns: int = 0, t_oms_rx_ns: int = 0) -> None:
        """The one writer of ExecutionReports: to the strategy and to risk, each with the OMS's position,
        cost basis and realized P&L in the symbol after the event (zeros for a symbol the layout does
        not list, whose id goes out as NO_SYMBOL when negative). A full ring drops and counts."""
        if 0 <= symbol_id < self._n_symbols:
            positions = self.orders.positions
            position, cost, realized = (positions.position[symbol_id], positions.cost_basis[symbol_id],
                                        positions.realized_pnl[symbol_id])
        else:
            position = cost = realized = 0
        values = (client_order_id, orig_client_order_id, exchange_order_ref, match_number, strategy_id,
                  symbol_id & _U32, event, side & 0xFF, reason & 0xFF, source, shares, price, leaves_shares, position,
                  cost, realized, t_exchange_ns, t_oms_rx_ns or time.time_ns())
        pack = EXECUTION_REPORT.pack_into
        for ring, dropped in ((self.to_strategy, self.c_dropped_strategy), (self.to_risk, self.c_dropped_risk)):
            offset = ring.claim()
            if offset < 0:
                dropped.inc()
                continue
            pack(ring.buffer, offset, *values)
            ring.commit()
        self.c_reports.inc()
        if event == ExecEvent.EXECUTED:
            self.c_fills.inc()

    def _reject_locally(self, approved, reason: int) -> None:
        """An approved order the OMS will not send: journal it, count it, tell strategy and risk."""
        at = _AT
        client, orig, strategy, sid = (approved[at.client_order_id], approved[at.orig_client_order_id],
                                       approved[at.strategy_id], approved[at.symbol_id])
        side, shares, price = approved[at.side], approved[at.shares], approved[at.price]
        self.c_rejects[reason].inc()
        symbol = self.stocks[sid] if 0 <= sid < len(self.stocks) else b""
        self._journal(RecordType.REJECTED_LOCALLY, jr.REJECTED_LOCALLY.pack(
            approved[at.action], side, reason, approved[at.time_in_force], client, orig, strategy, sid, shares, price,
            symbol), time.time_ns(), reserve=False, count_failure=False)
        if 0 <= sid < len(self.symbols):
            self.orders.positions.rejects[sid] += 1
            self._changed(sid)
        self._execution_report(ExecEvent.REJECTED_LOCALLY, client, orig, strategy, sid, side, shares, price,
                               reason=reason, source=RejectSource.OMS)

    # ------------------------------------------------------------------ risk -> OMS: approved orders

    def _process_orders(self, now_mono: int, limit: int = MAX_ORDERS_PER_CYCLE, refuse=None) -> int:
        """Up to ``limit`` approved records. ``refuse``: a kill just read (ALL_SYMBOLS or a symbol
        id): new orders and replaces it covers are refused (KILLED) instead of sent."""
        ring = self.orders_ring
        buffer = ring.buffer
        unpack = APPROVED_ORDER.unpack_from
        at = _AT
        samples = self.ring_to_wire_ns
        done = 0
        while done < limit:
            offset = ring.peek()
            if offset < 0:
                break
            if samples is not None:
                self._t_ring_read = time.perf_counter_ns()
            approved = unpack(buffer, offset)
            if approved[at.type_id] != _APPROVED_TYPE:
                self.c_bad_ring_records.inc()
            else:
                action = approved[at.action]
                if refuse is not None and (action == Action.NEW or action == Action.REPLACE) and \
                        (refuse == ALL_SYMBOLS or self._symbol_of(approved) == refuse):
                    self._reject_locally(approved, OmsReason.KILLED)
                elif action == Action.NEW:
                    self._new_order(approved, now_mono)
                elif action == Action.REPLACE:
                    self._replace_order(approved, now_mono)
                elif action == Action.CANCEL:
                    self._cancel_order(approved, now_mono)
                elif action == Action.CANCEL_ALL:
                    self._cancel_all_request(approved, now_mono)
                else:
                    self.c_bad_orders.inc()
                    self._reject_locally(approved, OmsReason.UNKNOWN_ACTION)
            ring.release()            # after the order is journaled and sent: a crash before this re-reads it
            done += 1
        return done

    def _symbol_of(self, approved) -> int:
        """The symbol an approved record is about (a replace's is its order's)."""
        at = _AT
        if approved[at.action] == Action.REPLACE:
            old = self.orders.by_client.get(approved[at.orig_client_order_id])
            return old.symbol_id if old is not None else approved[at.symbol_id]
        return approved[at.symbol_id]

    def _refuse_approved_before(self, scope: int) -> None:
        """A kill was just read: whatever risk approved before it and the OMS has not read yet is in
        the ring now (risk committed it first). Those orders never leave; cancels still do."""
        while self.orders_ring.peek() >= 0:
            self._process_orders(time.monotonic_ns(), MAX_ORDERS_PER_CYCLE, scope)

    def _new_order(self, approved, now_mono: int) -> None:
        """The hot path: checks, token, journal (one pack into the mapped file), bytes to the socket;
        the order registry and the latency counters after the bytes have left."""
        at = _AT
        client, strategy, sid, action, side = (approved[at.client_order_id], approved[at.strategy_id],
                                               approved[at.symbol_id], approved[at.action], approved[at.side])
        shares, price, tif = approved[at.shares], approved[at.price], approved[at.time_in_force]
        t_rx, t_feed, t_strategy, t_risk = _hop_times(approved)
        if not (0 <= sid < self._n_symbols and side in SIDES and shares > 0 and price > 0 and tif in TIFS
                and client):
            self.c_bad_orders.inc()
            self._reject_locally(approved, OmsReason.BAD_ORDER)
            return
        orders = self.orders
        existing = orders.by_client.get(client)
        if existing is not None:
            if (existing.symbol_id == sid and existing.side == side and existing.shares == shares
                    and existing.price == price and existing.replaces is None):
                self.c_redelivered.inc()            # the ring gave us again what a crashed OMS had sent
            else:
                self._reject_locally(approved, OmsReason.DUPLICATE_CLIENT_ID)
            return
        reason = self.gate.check(now_mono)
        if reason:
            self._reject_locally(approved, reason)
            return
        token = self.tokens.next()
        stock = self.stocks[sid]
        try:
            self.journal.append(_ORDER_SENT_TYPE, _pack_order_sent(action, side, _BY_STRATEGY, tif, client, 0, strategy,
                                                                   sid, shares, price, stock, token, b"", t_rx, t_feed,
                                                                   t_strategy, t_risk), time.time_ns())
        except JournalError as exc:
            self._journal_failed(str(exc))
            self._reject_locally(approved, OmsReason.JOURNAL_FAILED)
            return
        taken = self.session.send_packet(_ENTER(token, _SIDE_BYTES[side], shares, stock, price, tif, self._firm,
                                                b"Y", b"A", b"N", 0, b"N", b"R"),
                                         now_mono, (Action.NEW, token, 0))
        if self.ring_to_wire_ns is not None:
            self.ring_to_wire_ns.append(self.session.t_handed_ns - self._t_ring_read)
        orders.add_new(token, client, strategy, sid, stock, side, shares, price, tif, now_mono, self.in_flight_timeout_ns)
        if not taken:
            self._not_sent((Action.NEW, token, 0))
        self.c_orders_sent.inc()
        self.latency.record_order(t_rx, t_feed, t_strategy, t_risk, time.time_ns())

    def _replace_order(self, approved, now_mono: int) -> None:
        at = _AT
        client, orig, strategy, action = (approved[at.client_order_id], approved[at.orig_client_order_id],
                                          approved[at.strategy_id], approved[at.action])
        shares, price, tif = approved[at.shares], approved[at.price], approved[at.time_in_force]
        t_rx, t_feed, t_strategy, t_risk = _hop_times(approved)
        orders = self.orders
        old = orders.by_client.get(orig)
        if old is None or old.state not in OPEN_STATES or old.strategy_id != strategy:
            self._reject_locally(approved, OmsReason.UNKNOWN_ORDER)
            return
        if not (0 < shares and 0 < price and tif in TIFS and client):
            self.c_bad_orders.inc()
            self._reject_locally(approved, OmsReason.BAD_ORDER)
            return
        existing = orders.by_client.get(client)
        if existing is not None:
            if existing.replaces is old and existing.shares == shares and existing.price == price:
                self.c_redelivered.inc()
            else:
                self._reject_locally(approved, OmsReason.DUPLICATE_CLIENT_ID)
            return
        reason = self.gate.check(now_mono)
        if reason != GATE_OPEN:
            self._reject_locally(approved, reason)
            return
        token = self.tokens.next()
        now_ns = time.time_ns()
        try:
            self.journal.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(
                action, old.side, SendReason.STRATEGY, tif, client, orig, strategy, old.symbol_id, shares, price,
                old.symbol, token, old.token, t_rx, t_feed, t_strategy, t_risk), now_ns)
        except JournalError as exc:
            self._journal_failed(str(exc))
            self._reject_locally(approved, OmsReason.JOURNAL_FAILED)
            return
        taken = self.session.send_packet(_REPLACE(old.token, token, shares, price, tif, b"Y", b"N", 0), now_mono,
                                         (Action.REPLACE, token, 0))
        if self.ring_to_wire_ns is not None:
            self.ring_to_wire_ns.append(self.session.t_handed_ns - self._t_ring_read)
        orders.add_replacement(old, token, client, shares, price, tif, now_mono, self.in_flight_timeout_ns)
        if not taken:
            self._not_sent((Action.REPLACE, token, 0))
        self.c_replaces_sent.inc()
        self.latency.record_order(t_rx, t_feed, t_strategy, t_risk, time.time_ns())

    def _cancel_order(self, approved, now_mono: int) -> None:
        at = _AT
        client, orig, strategy = (approved[at.client_order_id], approved[at.orig_client_order_id],
                                  approved[at.strategy_id])
        target = approved[at.shares]                # the size to leave (0: cancel all of it)
        order = self.orders.by_client.get(orig)
        if order is None or order.strategy_id != strategy:
            self._reject_locally(approved, OmsReason.UNKNOWN_ORDER)
            return
        if client and client in self._cancel_request_ids:
            self.c_redelivered.inc()
            return
        if order.state not in OPEN_STATES or (target and target >= order.leaves):
            self._execution_report(ExecEvent.CANCEL_REJECTED, order.client_order_id, 0, order.strategy_id,
                                   order.symbol_id, order.side, 0, order.price)
            return
        if not self.session.logged_in:
            self._reject_locally(approved, OmsReason.SESSION_DOWN)
            return
        if client:
            self._cancel_request_ids.add(client)
        self._send_cancel(order, target, SendReason.STRATEGY, now_mono, client, _hop_times(approved))

    def _send_cancel(self, order: VenueOrder, target: int, why: int, now_mono: int, request_id: int = 0,
                     times: tuple = (0, 0, 0, 0)) -> bool:
        """Journal (best effort: a failed journal never stops a cancel) and send a cancel by token.
        Any order the registry holds can be cancelled, even one whose symbol the layout no longer lists."""
        self._journal(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(
            Action.CANCEL, order.side, why, order.tif, request_id, order.client_order_id & _U64, order.strategy_id,
            order.symbol_id & _U32, target, order.price & _U32, order.symbol, order.token, b"", *times),
            time.time_ns(), reserve=True)
        if not self.orders.request_cancel(order, target, now_mono, self.in_flight_timeout_ns):
            return False
        tag = (Action.CANCEL, order.token, target)
        if not self.session.send_packet(_CANCEL(order.token, target), now_mono, tag):
            self._not_sent(tag)
            return False
        self.c_cancels_sent.inc()
        return True

    def _not_sent(self, tag: tuple) -> None:
        """Bytes journaled as sent that never left: journal it and undo it (``OrderRegistry.not_sent``)."""
        action, token, target = tag
        self.c_not_sent.inc()
        self._journal(RecordType.NOT_SENT, jr.NOT_SENT.pack(action, target=target, token=token), time.time_ns(),
                      reserve=True)
        order = self.orders.not_sent(action, token, target)
        log.warning("%s for %r never left (the session could not take it)%s", name_of(Action, action), token,
                    ": rejected back" if action != Action.CANCEL else ": the cancel is owed")
        if order is not None and action != Action.CANCEL and order.symbol_id >= 0:
            self._changed(order.symbol_id)

    def _take_unsent(self) -> None:
        unsent = self.session.unsent
        while unsent:
            self._not_sent(unsent.pop(0))

    def _cancel_all_request(self, approved, now_mono: int) -> None:
        strategy, sid = approved[_AT.strategy_id], approved[_AT.symbol_id]
        if not self.session.logged_in:
            self._reject_locally(approved, OmsReason.SESSION_DOWN)
            return
        for order in self.orders.open_orders_list():
            if order.strategy_id == strategy and (sid == ALL_SYMBOLS or order.symbol_id == sid) \
                    and 0 not in order.requests:
                self._send_cancel(order, 0, SendReason.STRATEGY, now_mono, 0, _hop_times(approved))

    # ------------------------------------------------------------------ cancel everything (kill, gate)

    def _owe(self, control: jr.CONTROL.view, why: str, now_mono: int) -> None:
        """A kill or cancel-all gate close, already journaled: the orders it covers owe a cancel."""
        owed = apply_control(self.orders, control)
        if owed or self.orders.cancel_owed:
            self._cancel_all_why = why
            self._discharge_cancels(now_mono)

    def _discharge_cancels(self, now_mono: int) -> int:
        """Send a cancel to every order that owes one and has none outstanding (when logged in).
        The first pass after a kill is the cancel-all: journaled, counted, logged."""
        owed = self.orders.cancel_owed
        if not owed:
            return 0
        if not self.session.logged_in:
            if not self._waiting_logged:
                self._waiting_logged = True
                log.warning("cancel-all (%s): %d orders owe a cancel; waiting for the session", self._cancel_all_why
                            or "owed", len(owed))
            return 0
        self._waiting_logged = False
        sent = failed = 0
        for order in list(owed):
            if 0 in order.requests:
                continue                        # a cancel is outstanding: the in-flight timeout re-asks
            try:
                if self._send_cancel(order, 0, SendReason.CANCEL_ALL, now_mono):
                    sent += 1
                elif order.state not in OPEN_STATES:
                    owed.discard(order)
            except Exception:                   # never let one order stop the others' cancels
                failed += 1
                owed.discard(order)
                self.c_cancel_errors.inc()
                log.exception("cancel of %r failed; the other cancels go on", order)
        why = self._cancel_all_why
        if why:
            self._cancel_all_why = ""
            epoch = self.control.get("oms_cancel_all_epoch") + 1
            self.control.set("oms_cancel_all_epoch", epoch)
            self.c_cancel_all.inc()
            self.c_cancel_all_orders.add(sent)
            self._journal(RecordType.CONTROL, jr.CONTROL.pack(ControlKind.CANCEL_ALL, self._last_gate_epoch, sent,
                                                              epoch, detail=why.encode()[:16], t_ns=time.time_ns()),
                          time.time_ns(), reserve=True)
            log.warning("cancel-all (%s): %d open orders asked to cancel (epoch %d)%s", why, sent, epoch,
                        f"; {failed} could not be" if failed else "")
        return sent + failed

    # ------------------------------------------------------------------ risk -> OMS: control events

    def _process_control_events(self) -> int:
        ring = self.events_ring
        buffer = ring.buffer
        done = 0
        while done < MAX_EVENTS_PER_CYCLE:
            offset = ring.peek()
            if offset < 0:
                break
            event = CONTROL_EVENT.read(buffer, offset)
            ring.release()
            done += 1
            if event.type_id != _CONTROL_TYPE:
                self.c_bad_ring_records.inc()
                continue
            kind, value, detail = event.kind, event.value, event.detail
            self.c_control_events.inc()
            if kind == ControlEventKind.KILL_SYMBOL:        # journaled by name: the layout's ids may change
                detail = self.stocks[value].rstrip() if 0 <= value < self._n_symbols else b"?"
            payload = jr.CONTROL.pack(kind, event.state, value, 0, event.operator, detail, event.t_ns)
            self._journal(RecordType.CONTROL, payload, time.time_ns(), reserve=True)
            if kind == ControlEventKind.KILL:
                self._refuse_approved_before(ALL_SYMBOLS)
                self._owe(jr.CONTROL.parse(payload), "kill", time.monotonic_ns())
            elif kind == ControlEventKind.KILL_SYMBOL:
                self._refuse_approved_before(value)
                self._owe(jr.CONTROL.parse(payload), f"kill {jr.text(detail)}", time.monotonic_ns())
            elif kind == ControlEventKind.SNAPSHOT_REQUEST:
                self._snapshot_pending = True
        return done

    def _answer_snapshot(self) -> bool:
        """A RiskSnapshot POSITION per symbol, ORDER per open order, then END, all on exec_to_risk
        (in order with the reports), or nothing while the ring has no room for all of them."""
        open_orders = self.orders.open_orders_list()
        ring = self.to_risk
        if ring.capacity - ring.depth() < len(self.symbols) + len(open_orders) + 1:
            return False                                # wait for risk to drain the ring
        positions = self.orders.positions
        now_ns = time.time_ns()
        pack, buffer, dropped = RISK_SNAPSHOT.pack_into, ring.buffer, self.c_dropped_risk
        records = [(0, 0, 0, sid, SnapshotKind.POSITION, 0, 0, 0, 0, positions.position[sid],
                    positions.cost_basis[sid], positions.realized_pnl[sid], now_ns) for sid in range(len(self.symbols))]
        records += [(order.client_order_id, order.orig_client_order_id, order.strategy_id, order.symbol_id & _U32,
                     SnapshotKind.ORDER, order.side, 0, max(0, order.leaves), order.price, 0, 0, 0, now_ns)
                    for order in open_orders]
        records.append((0, 0, 0, NO_SYMBOL, SnapshotKind.END, 0, 0, 0, 0, 0, 0, 0, now_ns))
        for values in records:
            offset = ring.claim()
            if offset < 0:
                dropped.inc()
                continue
            pack(buffer, offset, *values)
            ring.commit()
        self.c_snapshots.inc()
        return True

    # ------------------------------------------------------------------ slow path

    def _slow_path(self, now_mono: int) -> int:
        work = 0
        session = self.session
        session.maintain(now_mono)
        session.flush(now_mono)
        if self._session_up and not session.logged_in:
            self._session_lost(time.time_ns())
        if session.unsent:
            self._take_unsent()
        ready = session.ready(now_mono)
        if ready != self.gate.session_ready:
            self.gate.session_ready = ready
            work += 1
        if self.orders.cancel_owed:
            work += self._discharge_cancels(now_mono)
        if not self.ready:
            work += self._recovery_progress(now_mono, ready)
        work += self._watch_gate(now_mono)
        if now_mono >= self._next_clock_record_ns or self.gate.clock_state() != self._last_clock_state:
            work += self._record_clock(now_mono)
        if now_mono >= self._next_timeout_scan_ns:
            self._next_timeout_scan_ns = now_mono + TIMEOUT_SCAN_NS
            work += self._in_flight_timeouts(now_mono)
        self.tokens.refill()
        if self._snapshot_pending and self.ready:
            if self._answer_snapshot():
                self._snapshot_pending = False
                work += 1
        if self.journal.failed and self.gate.journal_ok:
            self._journal_failed(self.journal.failed)
        self._publish_open_orders()            # also counts orders in symbols the layout no longer lists
        self._publish_ready()
        if now_mono >= self._next_counters_ns:
            self._next_counters_ns = now_mono + COUNTERS_INTERVAL_NS
            self._publish_counters()
        return work

    def _recovery_progress(self, now_mono: int, session_ready: bool) -> int:
        if not session_ready or self.journal.failed or self.gate.sequence_gap:
            return 0
        orders = self.orders
        if not self._unacked_clock_started:
            self._unacked_clock_started = True
            deadline = now_mono + self.unacked_timeout_ns
            for order in orders.in_flight:
                order.deadline_ns = deadline
            if orders.in_flight:
                log.warning("%d orders journaled as sent are unacknowledged after the replay: cancelled by token "
                            "unless answered within %d ms", len(orders.in_flight), self.config.unacked_timeout_ms)
        if any(o.state in OPEN_STATES and (not o.acked or o.requests) for o in orders.in_flight):
            return 0
        self.ready = True
        self.gate.recovered = True
        elapsed = now_mono - self._started_mono
        self.c_recovery_ns.set(elapsed)
        self._journal(RecordType.SESSION, jr.SESSION.pack(SessionEvent.RECOVERED,
                                                          session=self.session.client.session.encode(),
                                                          sequence=self.session.client.next_sequence_number),
                      time.time_ns(), reserve=True)
        log.info("recovered in %.3f s: %d open orders, ready for new orders", elapsed / 1e9, orders.open_orders)
        return 1

    def _watch_gate(self, now_mono: int) -> int:
        gate_open, reasons, epoch = self.gate.gate_word()
        if epoch == self._last_gate_epoch:
            return 0
        self._last_gate_epoch = epoch
        payload = jr.CONTROL.pack(ControlKind.GATE_CHANGED, gate_open, reasons, epoch, t_ns=time.time_ns())
        self._journal(RecordType.CONTROL, payload, time.time_ns(), reserve=True)
        self._owe(jr.CONTROL.parse(payload), "gate", now_mono)
        return 1

    def _record_clock(self, now_mono: int) -> int:
        """The clock guard's verdict in the journal next to the orders: on every change of state,
        and every CLOCK_RECORD_NS otherwise (the offset drifts without a state change)."""
        state, offset, maxerror = self.gate.clock_words()
        self._last_clock_state = state
        self._next_clock_record_ns = now_mono + CLOCK_RECORD_NS
        self._journal(RecordType.CONTROL, jr.CONTROL.pack(ControlEventKind.CLOCK, state, offset, maxerror,
                                                          detail=name_of(ClockState, state).encode()[:16],
                                                          t_ns=time.time_ns()), time.time_ns(), reserve=True)
        return 1

    def _in_flight_timeouts(self, now_mono: int) -> int:
        expired = self.orders.expired(now_mono)
        if not expired:
            return 0
        why = SendReason.TIMEOUT_QUERY if self.ready else SendReason.RECOVERY
        for order in expired:
            order.timeouts += 1
            order.deadline_ns = now_mono + self.in_flight_timeout_ns
            self.c_timeouts.inc()
            if order.timeouts == 1 or order.timeouts % 10 == 0:
                log.warning("no venue answer for %r: queried by cancel (%d)", order, order.timeouts)
            if order.timeouts == 1:
                self._execution_report(ExecEvent.PENDING_TIMEOUT, order.client_order_id, order.orig_client_order_id,
                                       order.strategy_id, order.symbol_id, order.side, order.leaves, order.price)
            if self.session.logged_in and order.state in OPEN_STATES:
                self._send_cancel(order, 0, why, now_mono)
        return len(expired)

    # ------------------------------------------------------------------ journal, positions, counters

    def _journal(self, record_type: int, payload: bytes, now_ns: int, reserve: bool = False,
                 count_failure: bool = True) -> bool:
        try:
            self.journal.append(record_type, payload, now_ns, reserve)
            return True
        except JournalError as exc:
            self.c_unjournaled.inc()
            if count_failure:
                self._journal_failed(str(exc))
            return False

    def _journal_failed(self, reason: str) -> None:
        """Fail closed: no new order leaves from now on (cancels still do)."""
        if self.gate.journal_ok:
            log.error("journal failed (%s): refusing new orders; cancels are still sent", reason)
        self.journal.fail(reason)
        self.gate.journal_ok = False
        self.c_journal_failed.set(1)
        self._publish_ready()

    def _changed(self, symbol_id: int) -> None:
        if not self._dirty[symbol_id]:
            self._dirty[symbol_id] = True
            self._dirty_ids.append(symbol_id)

    def _flush_positions(self, now_ns: int) -> None:
        for sid in self._dirty_ids:
            self._dirty[sid] = False
            self._publish_position(sid, now_ns)
        self._dirty_ids.clear()
        self._publish_open_orders()

    def _publish_position(self, sid: int, now_ns: int) -> None:
        p = self.orders.positions
        self.positions_table.publish(sid, p.position[sid], p.cost_basis[sid], p.realized_pnl[sid], p.orders_sent[sid],
                                     p.fills[sid], p.filled_shares[sid], p.rejects[sid], p.open_orders[sid], now_ns)

    def _publish_ready(self) -> None:
        """``oms_ready``: new orders can leave now, as far as the OMS knows (the gate's own conditions:
        journal, no sequence gap, recovered, session logged in with its replay drained)."""
        ready = 1 if self.gate.local_reason == GATE_OPEN else 0
        if ready != self._ready_published:
            self._ready_published = ready
            self.control.set("oms_ready", ready)

    def _publish_open_orders(self) -> None:
        count = self.orders.open_orders
        if count != self._open_orders_published:
            self._open_orders_published = count
            self.control.set("oms_open_orders", count)
            self.c_open_orders.set(count)

    def _setup_counters(self) -> None:
        allocate = self.context.counters.allocate
        self.c_orders_sent = allocate("oms.orders_sent")
        self.c_replaces_sent = allocate("oms.replaces_sent")
        self.c_cancels_sent = allocate("oms.cancels_sent")
        self.c_cancel_all = allocate("oms.cancel_all")
        self.c_cancel_all_orders = allocate("oms.cancel_all_orders")
        self.c_rejects = {reason: allocate(f"oms.rejects.{reason.name}") for reason in OmsReason}
        self.c_bad_orders = allocate("oms.bad_orders")
        self.c_redelivered = allocate("oms.redelivered")
        self.c_fills = allocate("oms.fills")
        self.c_reports = allocate("oms.exec_reports")
        self.c_dropped_strategy = allocate("oms.reports_dropped.strategy")
        self.c_dropped_risk = allocate("oms.reports_dropped.risk")
        self.c_timeouts = allocate("oms.in_flight_timeouts")
        self.c_venue_messages = allocate("oms.venue_messages")
        self.c_venue_bad = allocate("oms.venue_bad_messages")
        self.c_unknown_tokens = allocate("oms.unknown_tokens")
        self.c_illegal = allocate("oms.illegal_transitions")
        self.c_duplicate_fills = allocate("oms.duplicate_fills")
        self.c_connects = allocate("oms.session.connects")
        self.c_logins = allocate("oms.session.logins")
        self.c_login_rejects = allocate("oms.session.login_rejects")
        self.c_disconnects = allocate("oms.session.disconnects")
        self.c_protocol_errors = allocate("oms.session.protocol_errors")
        self.c_debug = allocate("oms.session.debug_messages")
        self.c_sequence_resets = allocate("oms.session.sequence_resets")
        self.c_sequence_gaps = allocate("oms.session.sequence_gaps")
        self.c_not_sent = allocate("oms.not_sent")
        self.c_cancel_errors = allocate("oms.cancel_errors")
        self.c_session_up = allocate("oms.session.up", CounterKind.GAUGE)
        self.c_journal_records = allocate("oms.journal.records")
        self.c_journal_bytes = allocate("oms.journal.bytes", CounterKind.GAUGE)
        self.c_journal_syncs = allocate("oms.journal.syncs")
        self.c_journal_sync_errors = allocate("oms.journal.sync_errors")
        self.c_journal_failed = allocate("oms.journal.failed", CounterKind.GAUGE)
        self.c_journal_truncated = allocate("oms.journal.truncated_bytes", CounterKind.INFO)
        self.c_unjournaled = allocate("oms.journal.unjournaled")
        self.c_recovery_records = allocate("oms.recovery.records", CounterKind.INFO)
        self.c_recovery_ns = allocate("oms.recovery.ns", CounterKind.INFO)
        self.c_unknown_symbols = allocate("oms.recovery.unknown_symbols", CounterKind.INFO)
        self.c_open_orders = allocate("oms.open_orders", CounterKind.GAUGE)
        self.c_control_events = allocate("oms.control_events")
        self.c_snapshots = allocate("oms.snapshots")
        self.c_bad_ring_records = allocate("oms.bad_ring_records")
        self.c_journal_failed.set(0)

    def _publish_counters(self) -> None:
        orders, session, journal = self.orders, self.session, self.journal
        self.c_venue_bad.set(orders.bad_messages)
        self.c_unknown_tokens.set(orders.unknown_tokens)
        self.c_illegal.set(orders.illegal_transitions)
        self.c_duplicate_fills.set(orders.duplicate_fills)
        self.c_connects.set(session.connects)
        self.c_logins.set(session.logins)
        self.c_login_rejects.set(session.login_rejects)
        self.c_disconnects.set(session.disconnects)
        self.c_protocol_errors.set(session.protocol_errors)
        self.c_session_up.set(1 if session.logged_in else 0)
        self.c_journal_records.set(journal.next_sequence - 1)
        self.c_journal_bytes.set(journal.used_bytes)
        self.c_journal_syncs.set(journal.syncs)
        self.c_journal_sync_errors.set(journal.sync_errors)


_SIDE_BYTES = {int(side): bytes([int(side)]) for side in Side}


def _hop_times(approved: tuple) -> tuple[int, int, int, int]:
    """An approved order's timestamps of the hops it passed (feed rx, feed out, strategy out, risk out)."""
    at = _AT
    return approved[at.t_rx_ns], approved[at.t_feed_out_ns], approved[at.t_strategy_out_ns], approved[at.t_risk_out_ns]
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
