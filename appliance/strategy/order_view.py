"""The strategy's orders and positions as the reports say they are: the view rebuilt from records.

``OrderView`` holds every open order of the strategy (by client order id and by symbol), the
cancels and CANCEL_ALLs on their way (to recognise a refusal of one), and the OMS's position per
symbol. The host adds what the strategy sends (``add``, ``remember_cancel``,
``remember_cancel_all``); ExecutionReports (``apply_report``) and OrderRejects (``apply_reject``)
move the orders through their states. An EXECUTED becomes a ``Fill`` (``fills.py``) with its fee
from the schedule (``fees.py``), remembered by match number and order so that a BROKEN hands the
strategy the very fill it undoes (``on_fill_broken``). Each change is made before the strategy's callback for it
runs (``notify``, the host's safety net), so a callback always sees the view with the event applied.
"""
from __future__ import annotations

import logging

from appliance.messages.catalog import EXECUTION_REPORT
from appliance.messages.codes import ALL_SYMBOLS, VENUE_EVENTS, ExecEvent, OmsReason, RejectSource, Side

from .api import ORDER_SETTERS, OpenOrders, Order, OrderState, Positions, reject_reason_name
from .fees import NO_FEES
from .fills import Fill, make_fill

log = logging.getLogger("appliance.strategy")

_EXEC_AT = EXECUTION_REPORT.at                  # hot reads: tuples, fields by these indices
_PENDING_NEW, _LIVE, _PENDING_CANCEL, _PENDING_REPLACE = (OrderState.PENDING_NEW, OrderState.LIVE,
                                                          OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE)
_ACCEPTED, _REPLACED, _CANCELED, _EXECUTED = (int(ExecEvent.ACCEPTED), int(ExecEvent.REPLACED),
                                              int(ExecEvent.CANCELED), int(ExecEvent.EXECUTED))
_REJECTED, _BROKEN, _CANCEL_REJECTED, _PENDING_TIMEOUT = (int(ExecEvent.REJECTED), int(ExecEvent.BROKEN),
                                                          int(ExecEvent.CANCEL_REJECTED),
                                                          int(ExecEvent.PENDING_TIMEOUT))
_REJECTED_LOCALLY = int(ExecEvent.REJECTED_LOCALLY)
_BUY = Side.BUY
_new = tuple.__new__
# Orders are read-only for the strategy: the view changes them through their slots' setters
_set_state, _set_leaves, _set_filled, _set_price, _set_replaced_by, _set_cancel_id = (
    ORDER_SETTERS[name] for name in ("_state", "_leaves", "_filled", "_price", "_replaced_by", "_cancel_id"))
MAX_CANCEL_ALL_IDS = 256                    # remembered CANCEL_ALL intents, to recognise a refusal of one
MAX_REMEMBERED_FILLS = 65536                # fills kept for a Broken Trade (the oldest forgotten)
_FLAGS = tuple(chr(b) if b else "" for b in range(256))     # ExecutionReport.liquidity_flag -> Fill.liquidity


class OrderView:
    """Open orders, cancels in flight and positions, kept true from ExecutionReports and OrderRejects."""

    def __init__(self, symbols: tuple[str, ...], traded_ids: dict[str, int], stats, notify, data_log, fees=NO_FEES):
        self.symbols = symbols
        self._n_symbols = len(symbols)
        self.stats = stats                                # the host's StrategyStats
        self._notify = notify                             # notify("on_fill", order, ...): the strategy's callback
        self._data_log = data_log                         # rate limit of the warnings about what arrives
        self._orders: dict[int, Order] = {}
        self.get = self._orders.get                       # get(client_order_id) -> Order | None, in C
        self._by_symbol: list[dict[int, Order]] = [{} for _ in symbols]
        self._cancel_targets: dict[int, Order] = {}       # client order id of a CANCEL intent -> its order
        self._cancel_all_ids: dict[int, int] = {}         # client order id of a CANCEL_ALL intent -> symbol id
        # (match number, client order id) -> (order, fill): the last MAX_REMEMBERED_FILLS, for a Broken Trade
        self._fills: dict[tuple[int, int], tuple[Order | None, Fill]] = {}
        self._fee = fees.fee                              # (symbol, liquidity, shares, price) -> price units
        self.open_orders = OpenOrders(self._orders, self._by_symbol, traded_ids)
        self.positions = Positions(symbols)

    # ------------------------------------------------------------------ what the strategy sends

    def add(self, order: Order) -> None:
        """A new order or a replacement the strategy just sent."""
        self._orders[order._client_order_id] = order
        self._by_symbol[order._symbol_id][order._client_order_id] = order

    def remember_cancel(self, order: Order, cancel_id: int) -> None:
        """A CANCEL intent ``cancel_id`` for ``order`` is on its way (it replaces an earlier one)."""
        if order._cancel_id:
            self._cancel_targets.pop(order._cancel_id, None)
        _set_cancel_id(order, cancel_id)
        _set_state(order, _PENDING_CANCEL)
        self._cancel_targets[cancel_id] = order

    def withdraw(self, client_order_id: int) -> None:
        """A new order or replacement that never left (withdrawn from the queue): closed as CANCELED, and
        the order it was to replace stands again."""
        order = self._orders.get(client_order_id)
        if order is not None:
            self.close(order, OrderState.CANCELED)
            old = self._orders.get(order._replaces) if order._replaces else None
            if old is not None and old._replaced_by == client_order_id:
                _set_state(old, _LIVE)
                _set_replaced_by(old, 0)

    def mark_pending_cancel(self, symbol_id: int) -> int:
        """Every open order of the symbol (or of all, ALL_SYMBOLS) as a CANCEL_ALL covers it; how many."""
        orders = self._orders.values() if symbol_id == ALL_SYMBOLS else self._by_symbol[symbol_id].values()
        n = 0
        for order in orders:
            _set_state(order, _PENDING_CANCEL)
            n += 1
        return n

    def remember_cancel_all(self, client_order_id: int, symbol_id: int) -> None:
        remembered = self._cancel_all_ids
        remembered[client_order_id] = symbol_id
        if len(remembered) > MAX_CANCEL_ALL_IDS:
            del remembered[next(iter(remembered))]

    def close(self, order: Order, state: OrderState) -> None:
        """Take an order out of the open orders for good."""
        client_order_id = order._client_order_id
        if self._orders.pop(client_order_id, None) is not None:
            self._by_symbol[order._symbol_id].pop(client_order_id, None)
        if order._cancel_id:
            self._cancel_targets.pop(order._cancel_id, None)
        _set_state(order, state)

    # ------------------------------------------------------------------ execution reports (exec_to_strategy)

    def apply_report(self, r: tuple) -> bool:
        """One ExecutionReport for this strategy (type, version and symbol checked by the host).

        False for an event this view does not know (the host counts the record as bad)."""
        at = _EXEC_AT
        sid, client_order_id, event = r[at.symbol_id], r[at.client_order_id], r[at.event]
        if event in VENUE_EVENTS and sid != ALL_SYMBOLS:          # the OMS's own position after the event
            positions = self.positions
            positions._position[sid] = r[at.position]
            positions._cost_basis[sid] = r[at.cost_basis]
            positions._realized_pnl[sid] = r[at.realized_pnl]
        if event == _EXECUTED:
            self._on_executed(r, client_order_id, sid)
        elif event == _ACCEPTED:
            self._on_accepted(client_order_id, r[at.leaves_shares])
        elif event == _CANCELED:
            self._on_canceled(client_order_id, r[at.orig_client_order_id], r[at.leaves_shares])
        elif event == _REPLACED:
            self._on_replaced(client_order_id, r[at.orig_client_order_id], r[at.leaves_shares], r[at.price])
        elif event == _REJECTED:
            self.apply_reject(client_order_id, r[at.source] or RejectSource.EXCHANGE, r[at.reason])
        elif event == _REJECTED_LOCALLY:
            self.apply_reject(client_order_id, r[at.source] or RejectSource.OMS, r[at.reason])
        elif event == _CANCEL_REJECTED:
            self._on_cancel_rejected(client_order_id, r[at.orig_client_order_id], r[at.reason])
        elif event == _PENDING_TIMEOUT:
            self.stats.pending_timeouts += 1
            order = self.find(client_order_id)
            if order is not None:
                _set_state(order, _PENDING_CANCEL)        # the OMS queries the venue with a cancel
        elif event == _BROKEN:
            self._on_broken(r, client_order_id, sid)
        else:
            return False
        return True

    def find(self, client_order_id: int) -> Order | None:
        """An open order by its id, or by the id of a cancel sent for it."""
        order = self._orders.get(client_order_id)
        return order if order is not None else self._cancel_targets.get(client_order_id)

    def _on_executed(self, r: tuple, client_order_id: int, sid: int) -> None:
        at = _EXEC_AT
        shares, price, leaves = r[at.shares], r[at.price], r[at.leaves_shares]
        stats = self.stats
        stats.fills += 1
        stats.filled_shares += shares
        order = self._orders.get(client_order_id)
        if order is not None:
            sid, side = order._symbol_id, order._side
        else:
            side = r[at.side]
        if sid >= self._n_symbols:
            stats.unknown_orders += 1               # ALL_SYMBOLS: no symbol to book it on
            return
        positions = self.positions
        symbol, liquidity = self.symbols[sid], _FLAGS[r[at.liquidity_flag]]
        fee = self._fee(symbol, liquidity, shares, price)
        if side == _BUY:
            positions._bought[sid] += shares
        else:
            positions._sold[sid] += shares
        positions._fees[sid] += fee
        match = r[at.match_number]
        fill = _new(Fill, (client_order_id, symbol, side, shares, price, leaves, liquidity, fee, match,
                           r[at.t_exchange_ns], r[at.t_oms_rx_ns]))          # make_fill without its frame
        fills = self._fills
        fills[(match, client_order_id)] = (order, fill)
        if len(fills) > MAX_REMEMBERED_FILLS:
            del fills[next(iter(fills))]
        if order is None:
            stats.unknown_orders += 1
            return
        _set_filled(order, order._filled + shares)
        _set_leaves(order, leaves)
        if order._state == _PENDING_NEW:
            _set_state(order, _LIVE)
        if leaves == 0:
            self.close(order, OrderState.FILLED)
        self._notify("on_fill", order, fill)

    def _on_broken(self, r: tuple, client_order_id: int, sid: int) -> None:
        """The venue broke a fill (by match number): its shares and fee are taken back out of this view's
        tallies (the OMS's position, cost and P&L arrived with the report), and the strategy sees the
        fill it undoes. A fill this process never saw (from before a restart) is rebuilt from the report,
        with the report's times; ``order`` is None then when the order is not open here either."""
        at = _EXEC_AT
        stats = self.stats
        stats.broken += 1
        remembered = self._fills.pop((r[at.match_number], client_order_id), None)
        if remembered is not None:
            order, fill = remembered
        else:
            order = self._orders.get(client_order_id)
            if order is not None:
                sid = order._symbol_id
            if sid >= self._n_symbols:
                stats.unknown_orders += 1
                return
            symbol, liquidity, shares, price = (self.symbols[sid], _FLAGS[r[at.liquidity_flag]], r[at.shares],
                                                r[at.price])
            fill = make_fill(client_order_id, symbol, order._side if order is not None else r[at.side], shares, price,
                             r[at.leaves_shares], liquidity, self._fee(symbol, liquidity, shares, price),
                             r[at.match_number], r[at.t_exchange_ns], r[at.t_oms_rx_ns])
        positions = self.positions
        sid = positions._symbol_ids[fill.symbol]
        if fill.side == _BUY:
            positions._bought[sid] -= fill.shares
        else:
            positions._sold[sid] -= fill.shares
        positions._fees[sid] -= fill.fee
        if order is not None:
            _set_filled(order, order._filled - fill.shares)
        self._notify("on_fill_broken", order, fill)

    def _on_accepted(self, client_order_id: int, leaves: int) -> None:
        self._acknowledged(client_order_id, leaves, 0)

    def _on_replaced(self, client_order_id: int, orig_client_order_id: int, leaves: int, price: int) -> None:
        old = self._orders.get(orig_client_order_id)
        if old is not None:
            self.close(old, OrderState.REPLACED)
        self._acknowledged(client_order_id, leaves, price)

    def _acknowledged(self, client_order_id: int, leaves: int, price: int) -> None:
        """The venue took the order (Accepted, or the new order of a Replaced): live, with the venue's
        leaves and price where it says them."""
        order = self._orders.get(client_order_id)
        if order is None:
            self.stats.unknown_orders += 1
            return
        if order._state == _PENDING_NEW:
            _set_state(order, _LIVE)
        if leaves:
            _set_leaves(order, leaves)
        if price:
            _set_price(order, price)
        self._notify("on_order_accepted", order)

    def _on_canceled(self, client_order_id: int, orig_client_order_id: int, leaves: int) -> None:
        order = self.find(client_order_id) or self._orders.get(orig_client_order_id)
        if order is None:
            self.stats.unknown_orders += 1
            return
        _set_leaves(order, leaves)
        if leaves:
            return                                     # reduced, still open
        self.close(order, OrderState.CANCELED)
        self._notify("on_order_canceled", order)

    def apply_reject(self, client_order_id: int, source: int, reason: int) -> None:
        """A refusal (risk's OrderReject, the OMS's or the venue's REJECTED) of an order, cancel or CANCEL_ALL."""
        stats = self.stats
        stats.rejects += 1
        if source == RejectSource.RISK:
            stats.rejects_risk += 1
        elif source == RejectSource.OMS:
            stats.rejects_oms += 1
        else:
            stats.rejects_exchange += 1
        order = self._orders.get(client_order_id)
        if order is not None:
            self._reject(order, source, reason)
            return
        target = self._cancel_targets.get(client_order_id)
        if target is not None:
            self._cancel_target_refused(target, source, reason)
            return
        scope = self._cancel_all_ids.pop(client_order_id, None)
        if scope is not None:
            self._cancel_all_refused(scope, source, reason)
            return
        stats.unknown_orders += 1
        if self._data_log.allow():
            log.warning("reject for client order id %d, which this strategy does not know as open: %s",
                        client_order_id, reject_reason_name(source, reason))

    def _reject(self, order: Order, source: int, reason: int) -> None:
        self.close(order, OrderState.REJECTED)
        if order._replaces:
            old = self._orders.get(order._replaces)
            if old is not None and old._replaced_by == order._client_order_id:
                _set_replaced_by(old, 0)
                if old._state == _PENDING_REPLACE:
                    _set_state(old, _LIVE)                 # the replace failed: the old order stands
        self._notify("on_order_rejected", order,
                   _source(source), reason)

    def _cancel_target_refused(self, order: Order, source: int, reason: int) -> None:
        self._cancel_targets.pop(order._cancel_id, None)
        _set_cancel_id(order, 0)
        if source == RejectSource.OMS and reason == OmsReason.UNKNOWN_ORDER:
            self.close(order, OrderState.CANCELED)     # the OMS has no such order: nothing is left to cancel
            self._notify("on_order_canceled", order)
            return
        if order._state == _PENDING_CANCEL:
            _set_state(order, _LIVE)
        self._notify("on_cancel_rejected", order, _source(source), reason)

    def _cancel_all_refused(self, symbol_id: int, source: int, reason: int) -> None:
        """A CANCEL_ALL did not go out (e.g. the OMS's session is down): the orders it covered stand."""
        if self._data_log.allow():
            log.warning("CANCEL_ALL (%s) refused: %s", "all symbols" if symbol_id == ALL_SYMBOLS
                        else self.symbols[symbol_id], reject_reason_name(source, reason))
        reverted = [o for o in self._orders.values()
                    if o._state == _PENDING_CANCEL and not o._cancel_id
                    and (symbol_id == ALL_SYMBOLS or o._symbol_id == symbol_id)]
        for order in reverted:
            _set_state(order, _PENDING_REPLACE if order._replaced_by in self._orders else _LIVE)
        for order in reverted:
            self._notify("on_cancel_rejected", order, _source(source), reason)

    def _on_cancel_rejected(self, client_order_id: int, orig_client_order_id: int, reason: int) -> None:
        """The venue says the named order is not live there: it is gone (and a replace of it failed)."""
        self.stats.cancel_rejects += 1
        order = self.find(client_order_id) or self._orders.get(orig_client_order_id)
        if order is None:
            return                                     # usually: it filled, and the EXECUTED came first
        if order._replaces and order._state == _PENDING_NEW:
            self._reject(order, RejectSource.EXCHANGE, reason)      # a replacement whose original was gone
            return
        replacement = self._orders.get(order._replaced_by) if order._replaced_by else None
        self.close(order, OrderState.CANCELED)
        self._notify("on_order_canceled", order)
        if replacement is not None and replacement._state == _PENDING_NEW:
            self._reject(replacement, RejectSource.EXCHANGE, reason)


def _source(source: int):
    try:
        return RejectSource(source)
    except ValueError:
        return source
