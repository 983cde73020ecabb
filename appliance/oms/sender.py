"""Approved orders in, OUCH out: the OMS's order sending.

Up to ``MAX_ORDERS_PER_CYCLE`` approved orders per duty cycle: new orders and replaces pass the
gate (``gate.py``) or are rejected back (REJECTED_LOCALLY, ``oms.rejects.<REASON>``); a new token;
ORDER_SENT journaled; then the bytes go to the socket and the hop latencies are recorded.
Cancels skip the gate and go out whenever the session is logged in. A record is released from
the ring only after its order is journaled and sent: a crash before that re-reads it (counted as
redelivered when it was sent).

Bytes the session could not hand to the kernel (connection lost with them queued) are journaled
NOT_SENT: such a new order is rejected back (OmsReason.NOT_SENT), such a cancel is owed again.

A new order's or replace's ORDER_SENT and OUCH frame go in one compiled step (``order_step.py``) when
the extension has it; the Python path (``compiled=False``) is the reference, byte for byte the same.
"""
from __future__ import annotations

import logging
import time

from appliance.messages.catalog import APPROVED_ORDER
from appliance.messages.codes import (
    ALL_SYMBOLS, Action, ExecEvent, OmsReason, RejectSource, Side, TIF_DAY, TIF_IOC, TIF_SYSTEM_HOURS, name_of,
)
from appliance.oms import journal_records as jr
from appliance.oms import order_step
from appliance.oms.gate import GATE_OPEN
from appliance.oms.journal_format import JournalError
from appliance.oms.journal_records import RecordType, SendReason
from appliance.oms.orders import OPEN_STATES, TrackedOrder
from appliance.wire import ouch
from appliance.wire.ouch import minimum_quantity_problem

log = logging.getLogger("appliance.oms")

MAX_ORDERS_PER_CYCLE = 64
SIDES = frozenset((Side.BUY, Side.SELL, Side.SELL_SHORT))
TIFS = frozenset((TIF_IOC, TIF_DAY, TIF_SYSTEM_HOURS))

_APPROVED_TYPE = APPROVED_ORDER.type_id
_AT = APPROVED_ORDER.at               # an approved record is read as a tuple (the hot path) and its fields by these
_UNPACK_APPROVED = APPROVED_ORDER.struct.unpack_from
_ACTION = _AT.action
_NEW_ACTION = Action.NEW
_A_NEW, _A_REPLACE, _A_CANCEL, _A_CANCEL_ALL = (int(Action.NEW), int(Action.REPLACE), int(Action.CANCEL),
                                           int(Action.CANCEL_ALL))
_A_SNAPSHOT = int(Action.SNAPSHOT)
MAX_SNAPSHOT_REQUESTS = 64         # strategy snapshot requests waiting for an answer (older ones are dropped)
# ``_new_order`` reads an approved record in one unpack into these names: the schema's order, checked here
_APPROVED_FIELDS = ("type_id", "schema_version", "size", "client_order_id", "orig_client_order_id", "strategy_id",
                    "symbol_id", "action", "side", "display", "capacity", "shares", "price", "time_in_force",
                    "minimum_quantity", "intermarket_sweep", "pad0", "pad1", "t_rx_ns", "t_feed_out_ns",
                    "t_strategy_out_ns", "t_risk_out_ns")
if APPROVED_ORDER.field_names != _APPROVED_FIELDS:
    raise ImportError("oms.sender: the ApprovedOrder layout changed; update _APPROVED_FIELDS")
# The whole SoupBinTCP Unsequenced Data packet of an OUCH message, packed in one call (the wire codec's frames):
# by frame id of the order step (whose C packs the same frames from their compiled shapes), and the cancel's.
_FRAME_PACK = {frame_id: frame.pack for frame_id, frame in order_step.FRAMES.items()}
_ENTER, _REPLACE = order_step.ENTER, order_step.REPLACE
_CANCEL = ouch.CANCEL_ORDER_FRAME.pack
_ORDER_SENT_TYPE = int(RecordType.ORDER_SENT)
_BY_STRATEGY = int(SendReason.STRATEGY)
_pack_order_sent = jr.ORDER_SENT.pack          # the values of a new order's or replace's ``record``, in this order
if jr.ORDER_SENT.fields != ("action", "side", "send_reason", "pad0", "time_in_force", "client_order_id",
                            "orig_client_order_id", "strategy_id", "symbol_id", "shares", "price", "symbol", "token",
                            "orig_token", "t_rx_ns", "t_feed_out_ns", "t_strategy_out_ns", "t_risk_out_ns",
                            "display", "capacity", "intermarket_sweep", "pad1", "minimum_quantity") \
        or jr.ORDER_SENT.tail is not None:
    raise ImportError("oms.sender: the ORDER_SENT layout changed; update the new order's and replace's record")
_SIDE_BYTES = {int(side): bytes([int(side)]) for side in Side}
# An approved order's flag fields -> the OUCH byte sent (a 0 is the default); a value not here is BAD_ORDER.
_DISPLAY_BYTES = {0: ouch.DISPLAY_VISIBLE, **{d[0]: d for d in ouch.DISPLAYS}}
_CAPACITY_BYTES = {0: b"A", **{c[0]: c for c in ouch.CAPACITIES}}
_ISO_BYTES = (ouch.ISO_NO, ouch.ISO_YES)             # by OrderIntent.intermarket_sweep (0/1)
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


def _hop_times(approved: tuple) -> tuple[int, int, int, int]:
    """An approved order's timestamps of the hops it passed (feed rx, feed out, strategy out, risk out)."""
    at = _AT
    return approved[at.t_rx_ns], approved[at.t_feed_out_ns], approved[at.t_strategy_out_ns], approved[at.t_risk_out_ns]


class OrderSender:
    def __init__(self, ring, orders, gate, tokens, journal, guard, session, reports, status, counters, latency,
                 stocks: list[bytes], firm: bytes, in_flight_timeout_ns: int, compiled: bool | None = None):
        self.ring = ring
        self.orders = orders
        self.gate = gate
        self.tokens = tokens
        self.journal = journal
        self.guard = guard
        self.session = session
        self.reports = reports
        self.status = status
        self.latency = latency
        self.stocks = stocks
        self._n_symbols = len(stocks)
        self._firm = firm
        self.in_flight_timeout_ns = in_flight_timeout_ns
        self.ring_to_wire_ns = None          # a bench sets an array('q') here to sample ring read -> socket
        # the compiled order step (default: when the extension has it), or the Python reference path
        self.compiled = order_step.AVAILABLE if compiled is None else bool(compiled and order_step.AVAILABLE)
        self._send_buffers = order_step.send_buffers()
        self._t_ring_read = 0
        self._cancel_request_ids: set[int] = set()
        self.snapshot_requests: list[tuple[int, int]] = []   # (strategy id, request id) waiting for an answer
        self.c_orders_sent = counters.orders_sent
        self.c_replaces_sent = counters.replaces_sent
        self.c_cancels_sent = counters.cancels_sent
        self.c_rejects = counters.rejects
        self.c_bad_orders = counters.bad_orders
        self.c_redelivered = counters.redelivered
        self.c_bad_ring_records = counters.bad_ring_records
        self.c_not_sent = counters.not_sent
        self.c_timeouts = counters.timeouts

    # ------------------------------------------------------------------ risk -> OMS: approved orders

    def process(self, now_mono: int, limit: int = MAX_ORDERS_PER_CYCLE, refuse=None) -> int:
        """Up to ``limit`` approved records. ``refuse``: a kill just read (ALL_SYMBOLS or a symbol
        id): new orders and replaces it covers are refused (KILLED) instead of sent."""
        ring = self.ring
        buffer, peek, release = ring.buffer, ring.peek, ring.release
        samples = self.ring_to_wire_ns
        done = 0
        while done < limit:
            offset = peek()
            if offset < 0:
                break
            if samples is not None:
                self._t_ring_read = time.perf_counter_ns()
            approved = _UNPACK_APPROVED(buffer, offset)
            if approved[0] != _APPROVED_TYPE:
                self.c_bad_ring_records.inc()
            else:
                action = approved[_ACTION]
                if refuse is not None and (action == _A_NEW or action == _A_REPLACE) and \
                        (refuse == ALL_SYMBOLS or self._symbol_of(approved) == refuse):
                    self.reject_locally(approved, OmsReason.KILLED)
                elif action == _A_NEW:
                    self._new_order(approved, now_mono)
                elif action == _A_REPLACE:
                    self._replace_order(approved, now_mono)
                elif action == _A_CANCEL:
                    self._cancel_order(approved, now_mono)
                elif action == _A_CANCEL_ALL:
                    self._cancel_all_request(approved, now_mono)
                elif action == _A_SNAPSHOT:
                    self._snapshot_request(approved)
                else:
                    self.c_bad_orders.inc()
                    self.reject_locally(approved, OmsReason.UNKNOWN_ACTION)
            release()                 # after the order is journaled and sent: a crash before this re-reads it
            done += 1
        return done

    def refuse_approved_before(self, scope: int) -> None:
        """A kill was just read: whatever risk approved before it and the OMS has not read yet is in
        the ring now (risk committed it first). Those orders never leave; cancels still do."""
        while self.ring.peek() >= 0:
            self.process(time.monotonic_ns(), MAX_ORDERS_PER_CYCLE, scope)

    def _symbol_of(self, approved) -> int:
        """The symbol an approved record is about (a replace's is its order's)."""
        at = _AT
        if approved[at.action] == Action.REPLACE:
            old = self.orders.by_client.get(approved[at.orig_client_order_id])
            return old.symbol_id if old is not None else approved[at.symbol_id]
        return approved[at.symbol_id]

    def _new_order(self, approved, now_mono: int) -> None:
        """The hot path: checks, token, journal (one pack into the mapped file), bytes to the socket;
        the order registry and the latency counters after the bytes have left."""
        (_type, _version, _size, client, _orig, strategy, sid, action, side, display, capacity, shares, price, tif,
         min_qty, iso, _pad0, _pad1, t_rx, t_feed, t_strategy, t_risk) = approved
        display_byte = _DISPLAY_BYTES.get(display)
        capacity_byte = _CAPACITY_BYTES.get(capacity)
        if not (0 <= sid < self._n_symbols and side in SIDES and shares > 0 and price > 0 and tif in TIFS
                and client and display_byte is not None and capacity_byte is not None and (iso == 0 or iso == 1)
                and (not min_qty or minimum_quantity_problem(shares, min_qty, tif, price) is None)):
            self.c_bad_orders.inc()
            self.reject_locally(approved, OmsReason.BAD_ORDER)
            return
        iso_byte = _ISO_BYTES[iso]
        orders = self.orders
        existing = orders.by_client.get(client)
        if existing is not None:
            if (existing.symbol_id == sid and existing.side == side and existing.shares == shares
                    and existing.price == price and existing.replaces is None):
                self.c_redelivered.inc()            # the ring gave us again what a crashed OMS had sent
            else:
                self.reject_locally(approved, OmsReason.DUPLICATE_CLIENT_ID)
            return
        reason = self.gate.check(now_mono)
        if reason:
            self.reject_locally(approved, reason)
            return
        token = self.tokens.next()
        stock = self.stocks[sid]
        taken = self._journal_and_send(
            (action, side, _BY_STRATEGY, tif, client, 0, strategy, sid, shares, price, stock, token, b"", t_rx, t_feed,
             t_strategy, t_risk, display_byte[0], capacity_byte[0], iso_byte[0], min_qty),
            _ENTER, (token, _SIDE_BYTES[side], shares, stock, price, tif, self._firm, display_byte, capacity_byte,
                     iso_byte, min_qty, b"N", b"R"), now_mono, (_NEW_ACTION, token, 0))
        if taken is None:
            self.reject_locally(approved, OmsReason.JOURNAL_FAILED)
            return
        order = orders.add_new(token, client, strategy, sid, stock, side, shares, price, tif, now_mono,
                               self.in_flight_timeout_ns)
        order.flags = (display_byte, capacity_byte, iso_byte, min_qty)
        if not taken:
            self.not_sent((_NEW_ACTION, token, 0))
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
            self.reject_locally(approved, OmsReason.UNKNOWN_ORDER)
            return
        display_byte = _DISPLAY_BYTES.get(approved[at.display])
        iso, min_qty = approved[at.intermarket_sweep], approved[at.minimum_quantity]
        if not (0 < shares and 0 < price and tif in TIFS and client and display_byte is not None
                and (iso == 0 or iso == 1) and (not min_qty or minimum_quantity_problem(shares, min_qty, tif, price)
                                                is None)):
            self.c_bad_orders.inc()
            self.reject_locally(approved, OmsReason.BAD_ORDER)
            return
        iso_byte = _ISO_BYTES[iso]
        capacity_byte = old.flags[1]                 # OUCH Replace Order carries no capacity: the original's
        existing = orders.by_client.get(client)
        if existing is not None:
            if existing.replaces is old and existing.shares == shares and existing.price == price:
                self.c_redelivered.inc()
            else:
                self.reject_locally(approved, OmsReason.DUPLICATE_CLIENT_ID)
            return
        reason = self.gate.check(now_mono)
        if reason != GATE_OPEN:
            self.reject_locally(approved, reason)
            return
        token = self.tokens.next()
        taken = self._journal_and_send(
            (action, old.side, _BY_STRATEGY, tif, client, orig, strategy, old.symbol_id, shares, price, old.symbol,
             token, old.token, t_rx, t_feed, t_strategy, t_risk, display_byte[0], capacity_byte[0], iso_byte[0],
             min_qty),
            _REPLACE, (old.token, token, shares, price, tif, display_byte, iso_byte, min_qty), now_mono,
            (Action.REPLACE, token, 0))
        if taken is None:
            self.reject_locally(approved, OmsReason.JOURNAL_FAILED)
            return
        replacement = orders.add_replacement(old, token, client, shares, price, tif, now_mono, self.in_flight_timeout_ns)
        replacement.flags = (display_byte, capacity_byte, iso_byte, min_qty)
        if not taken:
            self.not_sent((Action.REPLACE, token, 0))
        self.c_replaces_sent.inc()
        self.latency.record_order(t_rx, t_feed, t_strategy, t_risk, time.time_ns())

    def _journal_and_send(self, record: tuple, frame_id: int, frame: tuple, now_mono: int, tag: tuple):
        """ORDER_SENT (``record``: ``ORDER_SENT.pack``'s values) journaled, then the frame's bytes to the
        socket: the compiled step, or the Python path. What ``send_packet`` says (False: the bytes never
        left), or None when the journal refused the record (failed closed: the caller rejects the order)."""
        session = self.session
        try:
            if self.compiled:
                out = self._send_buffers[frame_id]
                sent = self.journal.append_then_send(record, frame_id, frame, out, session.direct_fd(),
                                                     time.time_ns())
            else:
                self.journal.append(_ORDER_SENT_TYPE, _pack_order_sent(*record), time.time_ns())
        except JournalError as exc:
            self.guard.fail(str(exc))
            return None
        if not self.compiled:
            taken = session.send_packet(_FRAME_PACK[frame_id](*frame), now_mono, tag)
        elif sent is None:                  # not sent by the step (bytes queued before it, per_event, logged out)
            taken = session.send_packet(bytes(out), now_mono, tag)
        else:
            taken = session.handed(out, sent, now_mono, tag)
            if self.ring_to_wire_ns is not None:
                self.ring_to_wire_ns.append(order_step.handed_ns() - self._t_ring_read)
                return taken
        if self.ring_to_wire_ns is not None:
            self.ring_to_wire_ns.append(session.t_handed_ns - self._t_ring_read)
        return taken

    def _cancel_order(self, approved, now_mono: int) -> None:
        at = _AT
        client, orig, strategy = (approved[at.client_order_id], approved[at.orig_client_order_id],
                                  approved[at.strategy_id])
        target = approved[at.shares]                # the size to leave (0: cancel all of it)
        order = self.orders.by_client.get(orig)
        if order is None or order.strategy_id != strategy:
            self.reject_locally(approved, OmsReason.UNKNOWN_ORDER)
            return
        if client and client in self._cancel_request_ids:
            self.c_redelivered.inc()
            return
        if order.state not in OPEN_STATES or (target and target >= order.leaves):
            self.reports.send(ExecEvent.CANCEL_REJECTED, order.client_order_id, 0, order.strategy_id,
                              order.symbol_id, order.side, 0, order.price)
            return
        if not self.session.logged_in:
            self.reject_locally(approved, OmsReason.SESSION_DOWN)
            return
        if client:
            self._cancel_request_ids.add(client)
        self.send_cancel(order, target, SendReason.STRATEGY, now_mono, client, _hop_times(approved))

    def _cancel_all_request(self, approved, now_mono: int) -> None:
        strategy, sid = approved[_AT.strategy_id], approved[_AT.symbol_id]
        if not self.session.logged_in:
            self.reject_locally(approved, OmsReason.SESSION_DOWN)
            return
        for order in self.orders.open_orders_list():
            if order.strategy_id == strategy and (sid == ALL_SYMBOLS or order.symbol_id == sid) \
                    and 0 not in order.requests:
                self.send_cancel(order, 0, SendReason.STRATEGY, now_mono, 0, _hop_times(approved))

    def _snapshot_request(self, approved) -> None:
        """A strategy (re)started and asks for its open orders: answered from the slow path once the OMS
        has recovered (``ExecutionReports.answer_strategy_snapshot``), in ring order with its reports."""
        requests = self.snapshot_requests
        requests.append((approved[_AT.strategy_id], approved[_AT.client_order_id]))
        if len(requests) > MAX_SNAPSHOT_REQUESTS:
            del requests[0]

    def send_cancel(self, order: TrackedOrder, target: int, why: int, now_mono: int, request_id: int = 0,
                    times: tuple = (0, 0, 0, 0)) -> bool:
        """Journal (best effort: a failed journal never stops a cancel) and send a cancel by token.
        Any order the registry holds can be cancelled, even one whose symbol the layout no longer lists."""
        self.guard.record(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(
            Action.CANCEL, order.side, why, order.tif, request_id, order.client_order_id & _U64, order.strategy_id,
            order.symbol_id & _U32, target, order.price & _U32, order.symbol, order.token, b"", *times),
            time.time_ns(), reserve=True)
        if not self.orders.request_cancel(order, target, now_mono, self.in_flight_timeout_ns):
            return False
        tag = (Action.CANCEL, order.token, target)
        if not self.session.send_packet(_CANCEL(order.token, target), now_mono, tag):
            self.not_sent(tag)
            return False
        self.c_cancels_sent.inc()
        return True

    def reject_locally(self, approved, reason: int) -> None:
        """An approved order the OMS will not send: journal it, count it, tell strategy and risk."""
        at = _AT
        client, orig, strategy, sid = (approved[at.client_order_id], approved[at.orig_client_order_id],
                                       approved[at.strategy_id], approved[at.symbol_id])
        side, shares, price = approved[at.side], approved[at.shares], approved[at.price]
        self.c_rejects[reason].inc()
        symbol = self.stocks[sid] if 0 <= sid < self._n_symbols else b""
        self.guard.record(RecordType.REJECTED_LOCALLY, jr.REJECTED_LOCALLY.pack(
            approved[at.action], side, reason, approved[at.time_in_force], client, orig, strategy, sid, shares, price,
            symbol), time.time_ns(), reserve=False, count_failure=False)
        if 0 <= sid < self._n_symbols:
            self.orders.positions.rejects[sid] += 1
            self.status.changed(sid)
        self.reports.send(ExecEvent.REJECTED_LOCALLY, client, orig, strategy, sid, side, shares, price,
                          reason=reason, source=RejectSource.OMS)

    # ------------------------------------------------------------------ bytes that never left, answers overdue

    def not_sent(self, tag: tuple) -> None:
        """Bytes journaled as sent that never left: journal it and undo it (``OrderRegistry.not_sent``)."""
        action, token, target = tag
        self.c_not_sent.inc()
        self.guard.record(RecordType.NOT_SENT, jr.NOT_SENT.pack(action, target=target, token=token), time.time_ns(),
                          reserve=True)
        order = self.orders.not_sent(action, token, target)
        log.warning("%s for %r never left (the session could not take it)%s", name_of(Action, action), token,
                    ": rejected back" if action != Action.CANCEL else ": the cancel is owed")
        if order is not None and action != Action.CANCEL and order.symbol_id >= 0:
            self.status.changed(order.symbol_id)

    def take_unsent(self) -> None:
        unsent = self.session.unsent
        while unsent:
            self.not_sent(unsent.pop(0))

    def query_overdue(self, now_mono: int, ready: bool) -> int:
        """Orders the venue has not answered within the in-flight limit: reported PENDING_TIMEOUT
        once, and queried by cancel (a cancel by token is answered whatever the order's state)."""
        expired = self.orders.expired(now_mono)
        if not expired:
            return 0
        why = SendReason.TIMEOUT_QUERY if ready else SendReason.RECOVERY
        for order in expired:
            order.timeouts += 1
            order.deadline_ns = now_mono + self.in_flight_timeout_ns
            self.c_timeouts.inc()
            if order.timeouts == 1 or order.timeouts % 10 == 0:
                log.warning("no venue answer for %r: queried by cancel (%d)", order, order.timeouts)
            if order.timeouts == 1:
                self.reports.send(ExecEvent.PENDING_TIMEOUT, order.client_order_id, order.orig_client_order_id,
                                  order.strategy_id, order.symbol_id, order.side, order.leaves, order.price)
            if self.session.logged_in and order.state in OPEN_STATES:
                self.send_cancel(order, 0, why, now_mono)
        return len(expired)
