"""Rebuild the OMS's state from its journal: orders, positions, the token counter, the session.

``rebuild(records, symbols)`` replays every record in journal order into a fresh ``OrderRegistry``
with no execution reports (strategy and risk saw them the first time); ``Replay`` does the same a
batch at a time (the hot standby applies each record the primary streams to it, ``standby.py``):

- ORDER_SENT rebuilds the order (new, replacement, or a cancel request on an existing order)
  and moves the token counter past its token;
- EXCHANGE_MESSAGE applies the venue's message exactly as when it arrived, and moves the next
  expected SoupBinTCP sequence number past it;
- SESSION gives the session name the venue accepted and the last token prefix; NEW_SESSION
  (the venue lost the old session) cancels every open order and restarts the sequence numbers;
- CONTROL gives the last gate epoch already acted on (no second cancel-all for it), and a kill
  (risk's KILL or KILL_SYMBOL, or the gate closed for risk or the kill switch) makes every open
  order it covers owe a cancel (``cancel_owed``), exactly as it did when it was journaled;
- NOT_SENT undoes what the ORDER_SENT before it did (the bytes never left).

``apply_control`` is the one place that says what a CONTROL record does to the order registry: the
agent calls it when it journals the record, and recovery when it replays it. So a cancel-all the
OMS owed when it died (session down, or killed between the kill and the cancels) is still owed
after the restart, and is sent as soon as the session is up.

What recovery leaves to the agent, after logging in from ``next_sequence_number``: apply what
the venue replays (acks and fills of the time the OMS was down), then cancel by token every order
still unacknowledged after ``unacked_timeout_ms`` (``RecoveredState.unacknowledged``). Only then
does ``oms_ready`` become 1.

Symbols are matched by name against the current layout: an order in a symbol the layout no
longer lists keeps its place in the registry (its token stays used) but has no position slot
(counted in ``unknown_symbols``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

from appliance.messages.codes import Action, ControlEventKind, GateReason
from appliance.oms import journal_records as jr
from appliance.oms.journal_records import ControlKind, RecordType, SessionEvent
from appliance.oms.journal_format import JournalRecord
from appliance.oms.orders import OPEN_STATES, OrderRegistry, TrackedOrder
from appliance.oms.tokens import parse_token

log = logging.getLogger("appliance.oms.recovery")

# MARKET_DATA too: resting quotes priced off books we can no longer see (or believe) are a
# liability, and the gate waits market_data_stale_ms first (see supervisor/gate.py).
CANCEL_ALL_GATE_REASONS = GateReason.RISK_UNHEALTHY | GateReason.KILL_SWITCH | GateReason.MARKET_DATA


def apply_control(orders: OrderRegistry, control: jr.CONTROL.view) -> int:
    """What a journaled CONTROL record does to the orders: the open orders a kill covers owe a
    cancel from now on. Returns how many orders it added to ``orders.cancel_owed``."""
    kind = control.kind
    if kind == ControlEventKind.KILL:
        return orders.owe_cancels()
    if kind == ControlEventKind.KILL_SYMBOL:
        symbol_id = orders.symbol_id(jr.text(control.detail).encode("ascii", "replace"))
        return orders.owe_cancels(symbol_id) if symbol_id >= 0 else 0
    if kind == ControlKind.GATE_CHANGED and control.state != 1 and control.value & CANCEL_ALL_GATE_REASONS:
        return orders.owe_cancels()
    return 0


@dataclass
class RecoveredState:
    orders: OrderRegistry
    records: int = 0
    orders_sent: int = 0
    exchange_messages: int = 0
    last_prefix: int | None = None
    next_counter: int = 1
    session_name: str = ""
    next_sequence_number: int = 1
    last_gate_epoch: int = 0
    cancel_alls: int = 0
    new_sessions: int = 0
    not_sent: int = 0
    unknown_symbols: int = 0
    unknown_orders: int = 0
    bad_records: int = 0
    last_timestamp_ns: int = 0
    ended: bool = False                       # the journal saw End of Session
    started: list = field(default_factory=list)

    @property
    def unacknowledged(self) -> list[TrackedOrder]:
        """Orders (or requests on them) the venue has not answered yet."""
        return [o for o in self.orders.in_flight if o.state in OPEN_STATES or o.requests]


def rebuild(records: Iterable[JournalRecord], symbols: list[str], orders: OrderRegistry | None = None) -> RecoveredState:
    """Every record of a journal replayed into a fresh registry (or ``orders``): the state at its end."""
    replay = Replay(symbols, orders)
    replay.apply(records)
    return replay.state


class Replay:
    """Journal records applied in order to one registry: recovery at start (all at once) and the hot
    standby (record by record, as the primary streams them) share this one code path.
    ``state.next_counter`` and ``state.next_sequence_number`` hold after every ``apply``."""

    def __init__(self, symbols: list[str], orders: OrderRegistry | None = None):
        orders = OrderRegistry(symbols) if orders is None else orders
        self.state = RecoveredState(orders)
        self._last_token = None        # of the last order made: tokens only grow, so it holds the highest counter
        self._max_sequence = 0

    def apply(self, records: Iterable[JournalRecord]) -> RecoveredState:
        state = self.state
        orders = state.orders
        saved_report, saved_changed = orders.report, orders.changed
        orders.report = None
        orders.changed = None
        by_token = orders.by_token
        last_token = self._last_token
        max_sequence = self._max_sequence
        order_sent_type, exchange_type = RecordType.ORDER_SENT, RecordType.EXCHANGE_MESSAGE
        try:
            for record in records:
                state.records += 1
                state.last_timestamp_ns = record.timestamp_ns
                rtype = record.type
                try:
                    if rtype == exchange_type:
                        sequence, message = jr.EXCHANGE_MESSAGE.parse(record.payload)
                        if sequence > max_sequence:
                            max_sequence = sequence
                        orders.apply_ouch(message, record.timestamp_ns)
                        state.exchange_messages += 1
                    elif rtype == order_sent_type:
                        token = _apply_order_sent(state, orders, by_token, record)
                        if token is not None:
                            last_token = token
                    elif rtype == RecordType.SESSION:
                        session = jr.SESSION.parse(record.payload)
                        _apply_session(state, session)
                        if session.event == SessionEvent.NEW_SESSION:
                            orders.venue_session_lost()
                            max_sequence = session.sequence - 1
                            state.new_sessions += 1
                    elif rtype == RecordType.CONTROL:
                        control = jr.CONTROL.parse(record.payload)
                        if control.kind == ControlKind.GATE_CHANGED:
                            state.last_gate_epoch = control.value2
                        elif control.kind == ControlKind.CANCEL_ALL:
                            state.cancel_alls += 1
                        apply_control(orders, control)
                    elif rtype == RecordType.NOT_SENT:
                        record_ = jr.NOT_SENT.parse(record.payload)
                        orders.not_sent(record_.action, record_.token, record_.target)
                        state.not_sent += 1
                    elif rtype != RecordType.REJECTED_LOCALLY:
                        raise ValueError("a record type this version does not know")
                except Exception as exc:           # a record this version cannot read: count it, log it, go on
                    state.bad_records += 1
                    if state.bad_records <= 10:
                        log.error("journal record %d (type %d) unreadable: %s", record.sequence, rtype, exc)
        finally:
            orders.report, orders.changed = saved_report, saved_changed
            self._last_token, self._max_sequence = last_token, max_sequence
        parsed = parse_token(last_token) if last_token is not None else None
        if parsed is not None:
            state.next_counter = max(state.next_counter, parsed[1] + 1)
        if max_sequence:
            state.next_sequence_number = max_sequence + 1
        return state


def _apply_order_sent(state: RecoveredState, orders: OrderRegistry, by_token: dict, record: JournalRecord) -> bytes | None:
    """Rebuild what an ORDER_SENT did; the token it made (None for a cancel)."""
    sent = jr.parse_order_sent(record.payload)
    state.orders_sent += 1
    symbol_id = orders.symbol_id(sent.symbol)
    order = None
    if sent.action == Action.NEW:
        if symbol_id < 0:
            state.unknown_symbols += 1
        order = orders.add_new(sent.token, sent.client_order_id, sent.strategy_id, symbol_id, sent.symbol, sent.side,
                               sent.shares, sent.price, sent.time_in_force)
    elif sent.action == Action.REPLACE:
        old = by_token.get(sent.orig_token)
        if old is None:
            state.unknown_orders += 1
            order = orders.add_new(sent.token, sent.client_order_id, sent.strategy_id, symbol_id, sent.symbol,
                                   sent.side, sent.shares, sent.price, sent.time_in_force)
        else:
            order = orders.add_replacement(old, sent.token, sent.client_order_id, sent.shares, sent.price,
                                           sent.time_in_force)
    elif sent.action == Action.CANCEL:
        order = by_token.get(sent.token)
        if order is None:
            state.unknown_orders += 1
        else:
            orders.request_cancel(order, sent.shares)
        return None
    if order is not None:
        order.flags = sent_flags(sent)
    return sent.token


def sent_flags(sent: jr.ORDER_SENT.view) -> tuple:
    """The OUCH flags an ORDER_SENT of a new order or replacement carried (``orders.DEFAULT_FLAGS``' shape)."""
    return (bytes((sent.display,)), bytes((sent.capacity,)), bytes((sent.intermarket_sweep,)), sent.minimum_quantity)


def _apply_session(state: RecoveredState, session: jr.SESSION.view) -> None:
    if session.event == SessionEvent.START:
        state.last_prefix = session.prefix if state.last_prefix is None else max(state.last_prefix, session.prefix)
        state.started.append(session.prefix)
        state.next_counter = max(state.next_counter, session.counter)
    elif session.event in (SessionEvent.LOGIN_ACCEPTED, SessionEvent.NEW_SESSION):
        state.session_name = jr.text(session.session)
    elif session.event == SessionEvent.END_OF_SESSION:
        state.ended = True
