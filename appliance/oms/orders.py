"""Orders as the venue sees them: the state machine and the registry by token and client id.

States: PENDING_NEW (sent, not acknowledged), LIVE, PARTIALLY_FILLED, FILLED, PENDING_CANCEL (a
cancel or reduce is outstanding), CANCELED, REJECTED, REPLACED. The venue's OUCH messages drive
them (``apply_ouch``): Accepted, Replaced, Canceled, Executed, Rejected, Broken Trade, Cancel
Pending, Cancel Reject. Each order keeps its outstanding requests in the order they were sent
(a cancel's target size, or the replacement order of a replace); the venue answers them in that
order, so a Cancel Reject answers the oldest one.

Rules where the venue leaves room:

- A transition the table does not allow is *illegal*: counted (``illegal_transitions``), logged,
  and the state left as it was. A fill is applied to the position even then: the venue says we
  traded, and the OMS must never lie about a position.
- A Cancel Reject answering a replace rejects the replacement (REJECTED, source EXCHANGE,
  reason 'I'); answering a cancel of an order the venue never acknowledged, it means the venue
  never had the order (REJECTED, reason 'I'); otherwise the order returns to what it was.
- A reduce (cancel to a size above 0) that a fill makes moot (leaves at or below the target) is
  considered answered: the venue sends nothing for it.
- Broken Trade reverses the fill (shares and position, as an opposite fill at the same price);
  the order's state does not change.
- An Accepted for a token this OMS does not know (a journal that lost its tail to a power loss)
  creates an orphan order (client id ``ORPHAN_CLIENT_ID_BASE + n``, one per orphan, so risk can
  count each) so later fills still reach the position; a fill for an unknown token that was never
  accepted is counted and cannot be placed.
- Cancels owed (``cancel_owed``): a kill, a gate closed for risk or the kill switch, or a cancel
  whose bytes never left makes every order it covers owe a cancel until the order is finished
  at the venue. The agent sends them whenever the session is up; a restarted OMS rebuilds the
  set from the journal, so a cancel-all is never forgotten.
- Bytes that never left (``not_sent``): a new order or replacement whose bytes the session could
  not hand to the kernel is REJECTED (the venue never saw it); a cancel that never left is owed.
- The venue lost the session (``venue_session_lost``: a new session, or a sequence that starts
  again below what we saw): every open order is gone at the venue and CANCELED here.

The positions the fills make are kept in ``positions.PositionLedger``.
"""
from __future__ import annotations

import enum
import logging

from appliance.messages.codes import (ORPHAN_CLIENT_ID_BASE, REJECT_REASON_NO_SUCH_ORDER, Action, ExecEvent, OmsReason,
                                      RejectSource)
from appliance.oms.positions import PositionLedger
from appliance.wire import ouch
from appliance.wire.venue_time import NS_PER_DAY, epoch_of_stamp

log = logging.getLogger("appliance.oms.orders")

CANCEL_REASON_USER = ord("U")
CANCEL_REASON_SESSION_LOST = ord("S")       # reported when the venue's session ended with the order in it

# Where the fields the registry reads sit in an outbound OUCH message's unpacked tuple, from the
# codec's schema. Accepted and Replaced carry the order's fields at the same places (checked here).
_STAMP = ouch.OUTBOUND_HEADER.index_of["timestamp"]
_TOKEN = len(ouch.OUTBOUND_HEADER.fields)                # every outbound message but System Event starts with a token
assert all(layout.fields[_TOKEN].size == ouch.TOKEN_SIZE for layout in ouch.OUTBOUND.layouts if layout is not ouch.SYSTEM_EVENT)
_EVENT_CODE = ouch.SYSTEM_EVENT.index_of["event_code"]
_SIDE, _SHARES, _STOCK, _PRICE, _TIF, _REF = (ouch.ACCEPTED.index_of[name] for name in (
    "buy_sell_indicator", "shares", "stock", "price", "time_in_force", "order_reference_number"))
assert all(ouch.REPLACED.index_of[name] == ouch.ACCEPTED.index_of[name] for name in (
    "buy_sell_indicator", "shares", "stock", "price", "time_in_force", "order_reference_number"))
_PREVIOUS_TOKEN = ouch.REPLACED.index_of["previous_order_token"]
_DECREMENT, _CANCEL_REASON = ouch.CANCELED.index_of["decrement_shares"], ouch.CANCELED.index_of["reason"]
_EXEC_SHARES, _EXEC_PRICE, _EXEC_MATCH, _EXEC_LIQUIDITY = (ouch.EXECUTED.index_of[name] for name in (
    "executed_shares", "execution_price", "match_number", "liquidity_flag"))
_REJECT_REASON = ouch.REJECTED.index_of["reason"]
_BROKEN_MATCH, _BROKEN_REASON = ouch.BROKEN_TRADE.index_of["match_number"], ouch.BROKEN_TRADE.index_of["reason"]


# An order's OUCH flags as sent: (display, capacity, intermarket sweep) bytes and the minimum quantity.
DEFAULT_FLAGS = (b"Y", b"A", b"N", 0)


class OrderState(enum.IntEnum):
    PENDING_NEW = 1
    LIVE = 2
    PARTIALLY_FILLED = 3
    FILLED = 4
    PENDING_CANCEL = 5
    CANCELED = 6
    REJECTED = 7
    REPLACED = 8


class OrderEvent(enum.IntEnum):
    """What can happen to one order (the columns of the transition table)."""
    ACCEPT = 1            # Accepted
    REPLACE_ACK = 2       # Replaced, for the replacement order
    REPLACE_DONE = 3      # Replaced, for the order it replaced
    EXECUTE = 4
    VENUE_CANCEL = 5      # Canceled (any reason)
    REJECT = 6
    BREAK = 7
    CANCEL_REQUEST = 8    # the OMS sends a cancel or reduce
    CANCEL_REJECT = 9
    CANCEL_PENDING = 10


S, E = OrderState, OrderEvent
OPEN_STATES = frozenset((S.PENDING_NEW, S.LIVE, S.PARTIALLY_FILLED, S.PENDING_CANCEL))
TERMINAL_STATES = frozenset((S.FILLED, S.CANCELED, S.REJECTED, S.REPLACED))
_WORKING = (S.LIVE, S.PARTIALLY_FILLED)

# (state, event) pairs that are legal. The resulting state depends on quantities (a fill may or
# may not complete the order), so the handlers compute it; ``expected_state`` in the tests says
# which. Everything not listed is illegal.
LEGAL: frozenset[tuple[OrderState, OrderEvent]] = frozenset(
    [(S.PENDING_NEW, E.ACCEPT), (S.PENDING_NEW, E.REPLACE_ACK), (S.PENDING_NEW, E.REJECT),
     (S.PENDING_NEW, E.CANCEL_REQUEST)]
    + [(s, e) for s in _WORKING for e in (E.EXECUTE, E.VENUE_CANCEL, E.REPLACE_DONE, E.BREAK, E.CANCEL_REQUEST,
                                          E.CANCEL_REJECT, E.CANCEL_PENDING)]
    + [(S.PENDING_CANCEL, e) for e in (E.ACCEPT, E.REPLACE_ACK, E.REJECT, E.EXECUTE, E.VENUE_CANCEL,
                                       E.REPLACE_DONE, E.BREAK, E.CANCEL_REQUEST, E.CANCEL_REJECT,
                                       E.CANCEL_PENDING)]
    + [(s, E.CANCEL_REJECT) for s in TERMINAL_STATES]          # a late answer to a cancel or replace
    + [(s, E.BREAK) for s in (S.FILLED, S.CANCELED, S.REPLACED)])


class TrackedOrder:
    """One order as the OMS tracks it at the venue (the exchange's own is ``exchange.book.VenueOrder``):
    its token, what was asked, the state machine's state and what the venue has said since."""

    __slots__ = ("token", "client_order_id", "orig_client_order_id", "strategy_id", "symbol_id", "symbol", "side",
                 "price", "shares", "tif", "state", "leaves", "executed", "canceled", "order_ref", "acked",
                 "replaces", "requests", "deadline_ns", "timeouts", "t_sent_ns", "flags")

    def __init__(self, token: bytes, client_order_id: int, strategy_id: int, symbol_id: int, symbol: bytes,
                 side: int, shares: int, price: int, tif: int, orig_client_order_id: int = 0):
        self.token = token
        self.client_order_id = client_order_id
        self.orig_client_order_id = orig_client_order_id
        self.strategy_id = strategy_id
        self.symbol_id = symbol_id
        self.symbol = symbol
        self.side = side
        self.price = price
        self.shares = shares
        self.tif = tif
        self.state = S.PENDING_NEW
        self.leaves = shares
        self.executed = 0
        self.canceled = 0
        self.order_ref = 0
        self.acked = False
        self.replaces: TrackedOrder | None = None # the order this one replaces
        self.requests: list = []# outstanding: int (cancel target) or TrackedOrder (replacement)
        self.deadline_ns = 0                   # monotonic; 0 when nothing is outstanding
        self.timeouts = 0
        self.t_sent_ns = 0
        self.flags = DEFAULT_FLAGS            # the OUCH flags it was sent with (``DEFAULT_FLAGS``' shape)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def buys(self) -> bool:
        return self.side == 66                 # 'B'; 'S', 'T' (short) and 'E' sell

    def __repr__(self) -> str:
        return (f"TrackedOrder({self.token!r}, client {self.client_order_id}, {self.state.name}, "
                f"{chr(self.side)} {self.shares}@{self.price}, leaves {self.leaves})")


class OrderRegistry:
    """Every order of the day by token and by client order id, and the positions they made.

    ``report(event, order, shares, price, match, reason, source, t_exchange_ns, liquidity)`` is called
    for every execution report to send (``liquidity``: the Executed's liquidity flag byte, for an
    EXECUTED and for the BROKEN that undoes it; 0 otherwise) (None during journal replay); ``changed(symbol_id)`` after
    every change of a symbol's position or tallies.
    """

    def __init__(self, symbols: list[str], report=None, changed=None):
        self.symbols = list(symbols)
        self._symbol_id = {s.encode("ascii").ljust(8): i for i, s in enumerate(self.symbols)}
        self.by_token: dict[bytes, TrackedOrder] = {}
        self.by_client: dict[int, TrackedOrder] = {}
        self.positions = PositionLedger(len(self.symbols))
        self.report = report
        self.changed = changed
        self.open_orders = 0
        self.in_flight: set[TrackedOrder] = set()
        # every fill of the day in order, by (match number, token) (both sides of a self-match share the number):
        # (order, shares, price, liquidity flag)
        self.fills_by_match: dict[tuple[int, bytes], tuple[TrackedOrder, int, int, int]] = {}
        self.illegal_transitions = 0
        self.unknown_tokens = 0
        self.orphans = 0
        self.bad_messages = 0
        self.duplicate_fills = 0
        self.system_events: list[str] = []
        self.cancel_owed: set[TrackedOrder] = set()
        self._handlers = {
            b"A"[0]: self._accepted, b"U"[0]: self._replaced, b"C"[0]: self._canceled, b"E"[0]: self._executed,
            b"J"[0]: self._rejected, b"B"[0]: self._broken, b"P"[0]: self._cancel_pending,
            b"I"[0]: self._cancel_reject, b"S"[0]: self._system_event,
        }

    def symbol_id(self, stock: bytes) -> int:
        """The layout's id of an 8-byte stock field, or -1."""
        return self._symbol_id.get(stock.ljust(8), -1)

    # ------------------------------------------------------------------ bookkeeping

    def _set_state(self, order: TrackedOrder, state: OrderState) -> None:
        was_open = order.state in OPEN_STATES
        order.state = state
        now_open = state in OPEN_STATES
        if was_open != now_open:
            delta = 1 if now_open else -1
            self.open_orders += delta
            if order.symbol_id >= 0:
                self.positions.open_orders[order.symbol_id] += delta
                self._changed(order.symbol_id)
        if not now_open:
            self.in_flight.discard(order)
            self.cancel_owed.discard(order)
            order.deadline_ns = 0

    def _changed(self, symbol_id: int) -> None:
        if self.changed is not None and symbol_id >= 0:
            self.changed(symbol_id)

    def _illegal(self, order: TrackedOrder, event: OrderEvent) -> None:
        self.illegal_transitions += 1
        if self.illegal_transitions <= 100 or self.illegal_transitions % 1000 == 0:
            log.warning("illegal transition: %s in %s (%d so far)", event.name, order.state.name,
                        self.illegal_transitions)

    def _settled_state(self, order: TrackedOrder) -> OrderState:
        """The state of an order with nothing outstanding, from its quantities."""
        if not order.acked:
            return S.PENDING_NEW
        if order.leaves <= 0:
            return S.CANCELED if order.canceled else S.FILLED
        return S.PARTIALLY_FILLED if order.executed else S.LIVE

    def _cancel_outstanding(self, order: TrackedOrder) -> bool:
        return any(type(r) is int for r in order.requests)

    def _await(self, order: TrackedOrder, now_ns: int, timeout_ns: int) -> None:
        if not order.deadline_ns:
            order.deadline_ns = now_ns + timeout_ns
        self.in_flight.add(order)

    def _answered(self, order: TrackedOrder) -> None:
        """Something came back for ``order``: stop its in-flight clock when nothing is outstanding."""
        if order.acked and not order.requests:
            order.deadline_ns = 0
            self.in_flight.discard(order)

    # ------------------------------------------------------------------ what the OMS sends

    def add_new(self, token: bytes, client_order_id: int, strategy_id: int, symbol_id: int, symbol: bytes, side: int,
                shares: int, price: int, tif: int, now_ns: int = 0, timeout_ns: int = 0) -> TrackedOrder:
        order = TrackedOrder(token, client_order_id, strategy_id, symbol_id, symbol, side, shares, price, tif)
        order.t_sent_ns = now_ns
        self.by_token[token] = order
        if client_order_id:
            self.by_client[client_order_id] = order
        self.open_orders += 1
        if symbol_id >= 0:
            p = self.positions
            p.open_orders[symbol_id] += 1
            p.orders_sent[symbol_id] += 1
            self._changed(symbol_id)
        self._await(order, now_ns, timeout_ns)
        return order

    def add_replacement(self, old: TrackedOrder, token: bytes, client_order_id: int, shares: int, price: int, tif: int,
                        now_ns: int = 0, timeout_ns: int = 0) -> TrackedOrder:
        order = self.add_new(token, client_order_id, old.strategy_id, old.symbol_id, old.symbol, old.side, shares,
                             price, tif, now_ns, timeout_ns)
        order.orig_client_order_id = old.client_order_id
        order.replaces = old
        old.requests.append(order)
        self._await(old, now_ns, timeout_ns)
        return order

    def request_cancel(self, order: TrackedOrder, target_shares: int = 0, now_ns: int = 0, timeout_ns: int = 0) -> bool:
        """A cancel (target 0) or reduce is about to be sent; False (nothing to send) if it is illegal."""
        if (order.state, E.CANCEL_REQUEST) not in LEGAL:
            self._illegal(order, E.CANCEL_REQUEST)
            return False
        order.requests.append(target_shares)
        self._set_state(order, S.PENDING_CANCEL)
        self._await(order, now_ns, timeout_ns)
        return True

    def owe_cancels(self, symbol_id: int | None = None) -> int:
        """Every open order (of ``symbol_id``, or all) owes a cancel from now on; how many were added."""
        owed = self.cancel_owed
        before = len(owed)
        for order in self.by_token.values():
            if order.state in OPEN_STATES and (symbol_id is None or order.symbol_id == symbol_id):
                owed.add(order)
        return len(owed) - before

    def not_sent(self, action: int, token: bytes, target: int = 0) -> TrackedOrder | None:
        """The bytes of an Enter, Replace or Cancel Order for ``token`` never left: undo what
        sending it did. A new order or replacement is REJECTED (reason ``OmsReason.NOT_SENT``,
        reported as REJECTED_LOCALLY); a cancel stops being outstanding and is owed instead."""
        order = self.by_token.get(token)
        if order is None:
            return None
        if action == Action.CANCEL:
            if target in order.requests:
                order.requests.remove(target)
            if order.state is S.PENDING_CANCEL and not self._cancel_outstanding(order):
                self._set_state(order, self._settled_state(order))
            self._answered(order)
            if order.state in OPEN_STATES:
                self.cancel_owed.add(order)
            return order
        if order.acked or order.state not in OPEN_STATES:
            return order                                  # the venue answered it: it did leave after all
        self._reject(order, OmsReason.NOT_SENT, 0, ExecEvent.REJECTED_LOCALLY, RejectSource.OMS)
        return order

    def venue_session_lost(self) -> list[TrackedOrder]:
        """The venue no longer has any order of the old session: each open one is CANCELED."""
        gone = [o for o in self.by_token.values() if o.state in OPEN_STATES]
        for order in gone:
            canceled = max(0, order.leaves)
            order.canceled += canceled
            order.leaves = 0
            order.requests = []
            self._set_state(order, S.CANCELED)
            self._emit(ExecEvent.CANCELED, order, canceled, order.price, reason=CANCEL_REASON_SESSION_LOST)
        return gone

    # ------------------------------------------------------------------ what the venue says

    def apply_ouch(self, message: bytes, t_rx_ns: int) -> int:
        """Apply one outbound OUCH message (the payload of a Sequenced Data packet). Returns 1 if
        it was understood, 0 if counted as bad."""
        if not message:
            self.bad_messages += 1
            return 0
        layout = ouch.OUTBOUND.by_byte[message[0]]
        if layout is None or len(message) != layout.size:
            self.bad_messages += 1
            return 0
        values = layout.unpack_from(message, 0)
        if values[_STAMP] < NS_PER_DAY:
            t_exchange_ns = epoch_of_stamp(values[_STAMP], t_rx_ns)
        else:                                                 # not ns since midnight: the message still
            t_exchange_ns = t_rx_ns                           # counts (a fill must reach the position)
        self._handlers[message[0]](values, t_exchange_ns)
        return 1

    def _known(self, token: bytes) -> TrackedOrder | None:
        order = self.by_token.get(token)
        if order is None:
            self.unknown_tokens += 1
            if self.unknown_tokens <= 100:
                log.warning("venue message for unknown token %r", token)
        return order

    def _emit(self, event, order: TrackedOrder, shares: int, price: int, match: int = 0, reason: int = 0, source: int = 0,
              t_exchange_ns: int = 0, liquidity: int = 0) -> None:
        if self.report is not None:
            self.report(event, order, shares, price, match, reason, source, t_exchange_ns, liquidity)

    def _system_event(self, values, t_exchange_ns: int) -> None:
        self.system_events.append(values[_EVENT_CODE].decode("latin-1"))

    def _accepted(self, values, t_exchange_ns: int) -> None:
        token = values[_TOKEN]
        order = self.by_token.get(token)
        if order is None:
            order = self._orphan(token, values)
            if order is None:
                return
        self._acknowledge(order, E.ACCEPT, ExecEvent.ACCEPTED, values, t_exchange_ns)

    def _acknowledge(self, order, transition, event, values, t_exchange_ns: int) -> None:
        """Accepted or Replaced (the same fields at the same places): the venue took the order; it is live."""
        if (order.state, transition) not in LEGAL or order.acked:
            self._illegal(order, transition)
            return
        order.acked = True
        order.order_ref = values[_REF]
        order.shares = values[_SHARES]
        order.leaves = max(0, values[_SHARES] - order.executed - order.canceled)   # fills may have come first
        if order.state is S.PENDING_NEW:
            self._set_state(order, S.LIVE)
        self._answered(order)
        self._emit(event, order, order.shares, order.price, t_exchange_ns=t_exchange_ns)

    def _orphan(self, token: bytes, values) -> TrackedOrder | None:
        """An Accepted for a token we never journaled: adopt it so its fills reach the position."""
        self.unknown_tokens += 1
        self.orphans += 1
        log.error("Accepted for unknown token %r: adopted as an orphan order", token)
        symbol = values[_STOCK]
        return self.add_new(token, ORPHAN_CLIENT_ID_BASE + self.orphans, 0, self.symbol_id(symbol), symbol,
                            values[_SIDE][0], values[_SHARES], values[_PRICE], values[_TIF])

    def _replaced(self, values, t_exchange_ns: int) -> None:
        token, previous = values[_TOKEN], values[_PREVIOUS_TOKEN]
        order = self.by_token.get(token)
        old = self.by_token.get(previous)
        if order is None:
            if old is None:
                self.unknown_tokens += 1
                return
            self.orphans += 1
            order = self.add_replacement(old, token, ORPHAN_CLIENT_ID_BASE + self.orphans, values[_SHARES],
                                         values[_PRICE], values[_TIF])
        if old is not None:
            if (old.state, E.REPLACE_DONE) in LEGAL:
                if order in old.requests:
                    old.requests.remove(order)
                old.leaves = 0
                self._set_state(old, S.REPLACED)
                self._answered(old)
            else:
                self._illegal(old, E.REPLACE_DONE)
        self._acknowledge(order, E.REPLACE_ACK, ExecEvent.REPLACED, values, t_exchange_ns)

    def _canceled(self, values, t_exchange_ns: int) -> None:
        token, decrement, reason = values[_TOKEN], values[_DECREMENT], values[_CANCEL_REASON][0]
        order = self._known(token)
        if order is None:
            return
        if (order.state, E.VENUE_CANCEL) not in LEGAL or not order.acked:
            self._illegal(order, E.VENUE_CANCEL)
            return
        decrement = min(decrement, order.leaves)
        order.leaves -= decrement
        order.canceled += decrement
        requests = order.requests
        if reason == CANCEL_REASON_USER:
            for i, request in enumerate(requests):
                if type(request) is int:
                    del requests[i]
                    break
        if order.leaves <= 0:
            # nothing left: outstanding cancels and reduces are moot (replaces still get their answer)
            order.requests = [r for r in requests if type(r) is not int]
            self._set_state(order, S.CANCELED)
        elif not self._cancel_outstanding(order):
            self._set_state(order, self._settled_state(order))
        self._answered(order)
        self._emit(ExecEvent.CANCELED, order, decrement, order.price, reason=reason, t_exchange_ns=t_exchange_ns)

    def _executed(self, values, t_exchange_ns: int) -> None:
        token, shares, price, match = values[_TOKEN], values[_EXEC_SHARES], values[_EXEC_PRICE], values[_EXEC_MATCH]
        liquidity = values[_EXEC_LIQUIDITY][0]
        order = self._known(token)
        if order is None:
            return
        if (match, token) in self.fills_by_match:
            self.duplicate_fills += 1          # never apply the same fill twice
            return
        legal = (order.state, E.EXECUTE) in LEGAL and order.acked
        if not legal:
            self._illegal(order, E.EXECUTE)
        self._apply_fill(order, shares, price, match, liquidity)
        if legal:
            requests = order.requests
            if requests:
                leaves = order.leaves
                order.requests = [r for r in requests if not (type(r) is int and r > 0 and r >= leaves)]
            if order.leaves <= 0:
                order.requests = [r for r in order.requests if type(r) is not int]
                self._set_state(order, S.FILLED)
            elif not self._cancel_outstanding(order):
                self._set_state(order, self._settled_state(order))
            self._answered(order)
        self._emit(ExecEvent.EXECUTED, order, shares, price, match=match, t_exchange_ns=t_exchange_ns,
                   liquidity=liquidity)

    def _apply_fill(self, order: TrackedOrder, shares: int, price: int, match: int, liquidity: int = 0) -> None:
        order.executed += shares
        order.leaves = max(0, order.leaves - shares)
        self.fills_by_match[(match, order.token)] = (order, shares, price, liquidity)
        sid = order.symbol_id
        if sid >= 0:
            p = self.positions
            p.fill(sid, shares if order.buys else -shares, price)
            p.fills[sid] += 1
            p.filled_shares[sid] += shares
            self._changed(sid)

    def _rejected(self, values, t_exchange_ns: int) -> None:
        token, reason = values[_TOKEN], values[_REJECT_REASON][0]
        order = self._known(token)
        if order is None:
            return
        if (order.state, E.REJECT) not in LEGAL or order.acked:
            self._illegal(order, E.REJECT)
            return
        self._reject(order, reason, t_exchange_ns)

    def _reject(self, order: TrackedOrder, reason: int, t_exchange_ns: int, event: int = ExecEvent.REJECTED,
                source: int = RejectSource.EXCHANGE) -> None:
        order.leaves = 0
        order.requests = []
        old = order.replaces
        if old is not None and order in old.requests:
            old.requests.remove(order)
            self._answered(old)
        self._set_state(order, S.REJECTED)
        if order.symbol_id >= 0:
            self.positions.rejects[order.symbol_id] += 1
            self._changed(order.symbol_id)
        self._emit(event, order, order.shares, order.price, reason=reason, source=source,
                   t_exchange_ns=t_exchange_ns)

    def _broken(self, values, t_exchange_ns: int) -> None:
        token, match = values[_TOKEN], values[_BROKEN_MATCH]
        order = self._known(token)
        if order is None:
            return
        if (order.state, E.BREAK) not in LEGAL:
            self._illegal(order, E.BREAK)
            return
        fill = self.fills_by_match.pop((match, token), None)
        if fill is None:
            self.bad_messages += 1
            log.warning("Broken Trade for match %d of %r: no such fill", match, token)
            return
        _order, shares, price, liquidity = fill
        order.executed -= shares
        sid = order.symbol_id
        if sid >= 0:
            # the day's other fills of the symbol again, in order: undoing the fill as an opposite trade would
            # realize a P&L that never was and leave the cost at the average, not the fills that remain
            p = self.positions
            p.rebuild(sid, [(s if o.buys else -s, px) for o, s, px, _flag in self.fills_by_match.values()
                            if o.symbol_id == sid])
            p.fills[sid] -= 1
            p.filled_shares[sid] -= shares
            self._changed(sid)
        self._emit(ExecEvent.BROKEN, order, shares, price, match=match, reason=values[_BROKEN_REASON][0],
                   t_exchange_ns=t_exchange_ns, liquidity=liquidity)

    def _cancel_pending(self, values, t_exchange_ns: int) -> None:
        order = self._known(values[_TOKEN])
        if order is not None and (order.state, E.CANCEL_PENDING) not in LEGAL:
            self._illegal(order, E.CANCEL_PENDING)

    def _cancel_reject(self, values, t_exchange_ns: int) -> None:
        order = self._known(values[_TOKEN])
        if order is None:
            return
        if (order.state, E.CANCEL_REJECT) not in LEGAL:
            self._illegal(order, E.CANCEL_REJECT)
            return
        requests = order.requests
        if not requests:
            if order.state in OPEN_STATES:
                self._illegal(order, E.CANCEL_REJECT)       # nothing was asked of a working order
            return                                           # a late answer about a finished order
        request = requests.pop(0)
        if type(request) is TrackedOrder:                           # the replace was refused: the replacement is dead
            replacement = request
            if replacement.state in OPEN_STATES and not replacement.acked:
                self._reject(replacement, REJECT_REASON_NO_SUCH_ORDER, t_exchange_ns)
            self._answered(order)
            return
        if not order.acked:                                  # the venue never had this order
            self._reject(order, REJECT_REASON_NO_SUCH_ORDER, t_exchange_ns)
            return
        if order.state is S.PENDING_CANCEL and not self._cancel_outstanding(order):
            self._set_state(order, self._settled_state(order))
        self._answered(order)
        self._emit(ExecEvent.CANCEL_REJECTED, order, 0, order.price, t_exchange_ns=t_exchange_ns)

    # ------------------------------------------------------------------ queries

    def open_orders_list(self) -> list[TrackedOrder]:
        return [o for o in self.by_token.values() if o.state in OPEN_STATES]

    def expired(self, now_ns: int) -> list[TrackedOrder]:
        """Orders whose venue answer is overdue (in-flight timeout)."""
        return [o for o in self.in_flight if o.deadline_ns and now_ns >= o.deadline_ns]
