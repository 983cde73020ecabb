"""The host that runs a user's ``Strategy``: ring records in, callbacks out, actions to intents; no
process, no agent (``agent.py`` is the process around it).

``StrategyHost`` owns the strategy's own view of the world and keeps it true from what
arrives: BookUpdates refresh the per-symbol ``Book``; ExecutionReports (exec_to_strategy) and
OrderRejects (risk_rejects) move orders through their states and carry the OMS's position. The
view changes first and the callback runs after, so a callback always sees the view with the
event applied. Actions from the strategy become OrderIntents through ``IntentWriter``; each
carries the hop timestamps of the book update being handled (0 outside ``on_book``/``on_trade``).

Records from the rings are untrusted: a wrong type or version, a symbol id outside the layout,
an unknown event is counted and dropped. Reports for another strategy id are counted and dropped.

Safety: every callback runs inside ``try``; an exception (or ``SystemExit``) in user code is
logged with its traceback (rate limited), stops the strategy for good (no callback, not even
``on_stop``, is called again), withdraws its queued new orders, and sends CANCEL_ALL for every
symbol. The agent around it keeps heartbeating: a live process with a stopped strategy.
"""
from __future__ import annotations

import logging
import operator
import time

from appliance.messages.catalog import BOOK_DEPTH, BOOK_UPDATE, EXECUTION_REPORT, ORDER_REJECT
from appliance.messages.codes import (
    ALL_SYMBOLS, TIF_DAY, TIF_IOC, VENUE_EVENTS, Action, ExecEvent, OmsReason, RejectSource, Side,
)

from .api import (
    MARKET_PRICE, BackPressure, Book, OpenOrders, Order, OrderState, Positions, Strategy, StrategyStopping,
    reject_reason_name,
)
from .ids import ClientOrderIds
from .intents import IntentWriter

log = logging.getLogger("appliance.strategy")

USER_ERRORS = (Exception, SystemExit)       # what user code may raise without taking the process down

_BOOK_TYPE, _BOOK_VERSION = BOOK_UPDATE.type_id, BOOK_UPDATE.version
_EXEC_TYPE, _EXEC_VERSION = EXECUTION_REPORT.type_id, EXECUTION_REPORT.version
_REJECT_TYPE, _REJECT_VERSION = ORDER_REJECT.type_id, ORDER_REJECT.version
_BOOK_AT, _EXEC_AT = BOOK_UPDATE.at, EXECUTION_REPORT.at       # hot reads: tuples, fields by these indices

_PENDING_NEW, _LIVE, _PENDING_CANCEL, _PENDING_REPLACE = (OrderState.PENDING_NEW, OrderState.LIVE,
                                                          OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE)
_ACCEPTED, _REPLACED, _CANCELED, _EXECUTED = (int(ExecEvent.ACCEPTED), int(ExecEvent.REPLACED),
                                              int(ExecEvent.CANCELED), int(ExecEvent.EXECUTED))
_REJECTED, _BROKEN, _CANCEL_REJECTED, _PENDING_TIMEOUT = (int(ExecEvent.REJECTED), int(ExecEvent.BROKEN),
                                                          int(ExecEvent.CANCEL_REJECTED),
                                                          int(ExecEvent.PENDING_TIMEOUT))
_REJECTED_LOCALLY = int(ExecEvent.REJECTED_LOCALLY)
_TIFS = (TIF_IOC, TIF_DAY)                  # what the OrderIntent contract (and risk) allow
MAX_CANCEL_ALL_IDS = 256                    # remembered CANCEL_ALL intents, to recognise a refusal of one
_MAX_U32 = 0xFFFFFFFF


class StrategyStats:
    """Plain ints the agent copies into shared-memory counters (``strategy.<name>``)."""

    __slots__ = ("book_updates", "book_updates_ignored", "exec_reports", "risk_rejects", "rejects", "rejects_risk",
                 "rejects_oms", "rejects_exchange", "fills", "filled_shares", "cancel_rejects", "broken",
                 "pending_timeouts", "unknown_orders", "foreign_records", "bad_records", "timers", "errors", "stopped")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class RateLimitedLog:
    """At most ``burst`` messages per ``interval_s``; the rest are counted and summarised."""

    def __init__(self, logger: logging.Logger, burst: int = 5, interval_s: float = 10.0):
        self.logger = logger
        self.burst = burst
        self.interval_ns = int(interval_s * 1e9)
        self.window_start = 0
        self.in_window = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic_ns()
        if now - self.window_start >= self.interval_ns:
            if self.suppressed:
                self.logger.warning("%d similar messages suppressed", self.suppressed)
            self.window_start, self.in_window, self.suppressed = now, 0, 0
        if self.in_window < self.burst:
            self.in_window += 1
            return True
        self.suppressed += 1
        return False


def drain(ring, buffer, handle, limit: int) -> int:
    """Hand up to ``limit`` records of a consumer ring to ``handle(buffer, offset)``; returns how many."""
    n = 0
    peek, release = ring.peek, ring.release
    while n < limit:
        offset = peek()
        if offset < 0:
            break
        handle(buffer, offset)
        release()
        n += 1
    return n


def _check_shares(shares, what: str = "shares") -> int:
    try:
        shares = operator.index(shares)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(shares).__name__}") from None
    if not 1 <= shares <= _MAX_U32:
        raise ValueError(f"{what} must be 1..{_MAX_U32}, got {shares}")
    return shares


def _check_price(price) -> int:
    try:
        price = operator.index(price)
    except TypeError:
        raise TypeError(f"price must be an integer with 4 implied decimals (1900100 is $190.01), got "
                        f"{type(price).__name__}") from None
    if not 1 <= price <= MARKET_PRICE:
        raise ValueError(f"price must be 1..{MARKET_PRICE} (4 implied decimals; {MARKET_PRICE} = market), "
                         f"got {price}")
    return price


class StrategyHost:
    """Drives one strategy: apply records, call callbacks, turn actions into intents."""

    def __init__(self, strategy_class: type[Strategy], parameters, *, symbols: tuple[str, ...], strategy_id: int,
                 intents: IntentWriter, traded: tuple[str, ...] | None = None, ids: ClientOrderIds | None = None,
                 feed_live=None, on_failed=None, clock_ns=time.time_ns, gate_open=None):
        self.strategy_class = strategy_class
        self.parameters = parameters
        self.symbols = tuple(symbols)
        self.traded_symbols = tuple(traded) if traded else self.symbols
        self.strategy_id = strategy_id
        self.intents = intents
        self.ids = ids or ClientOrderIds()
        self._feed_live = feed_live
        self._gate_open = gate_open
        self.on_failed = on_failed
        self.clock_ns = clock_ns
        self.user_log = logging.getLogger(f"appliance.strategy.{strategy_class.__name__}")
        self._symbol_ids = {s: i for i, s in enumerate(self.symbols)}
        self._traded_ids = {s: self._symbol_ids[s] for s in self.traded_symbols}
        self._n_symbols = len(self.symbols)
        self._books: list[Book | None] = [None] * self._n_symbols
        for symbol, sid in self._traded_ids.items():
            self._books[sid] = Book(symbol, sid)
        self._orders: dict[int, Order] = {}
        self._by_symbol: list[dict[int, Order]] = [{} for _ in self.symbols]
        self._cancel_targets: dict[int, Order] = {}       # client order id of a CANCEL intent -> its order
        self._cancel_all_ids: dict[int, int] = {}         # client order id of a CANCEL_ALL intent -> symbol id
        self.open_orders = OpenOrders(self._orders, self._by_symbol, self._traded_ids)
        self.positions = Positions(self.symbols)
        self.stats = StrategyStats()
        self.strategy: Strategy | None = None
        self.started = False
        self.running = False          # user code may be called
        self.stopping = False         # inside on_stop: cancels only
        self.failed = False
        self.failure: str = ""
        self._t_rx_ns = 0             # hop timestamps of the book update being handled
        self._t_feed_out_ns = 0
        self._error_log = RateLimitedLog(log, burst=3)
        self._data_log = RateLimitedLog(log, burst=5)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """CANCEL_ALL for whatever an earlier incarnation left open, then build the strategy and on_start."""
        if self.started:
            return
        self.started = True
        self._emit_cancel_all(ALL_SYMBOLS)
        self.running = True
        where = "__init__"
        try:
            strategy = self.strategy_class.__new__(self.strategy_class)
            strategy._host = self
            strategy.__init__(self.parameters)
            strategy._host = self
            self.strategy = strategy
            where = "on_start"
            strategy.on_start()
        except USER_ERRORS as exc:
            self._fail(where, exc)

    def stop(self) -> None:
        """on_stop (unless the strategy failed), then cancel everything. Idempotent."""
        if not self.started:
            return
        if self.running and not self.stopping:
            self.stopping = True
            try:
                self.strategy.on_stop()
            except USER_ERRORS as exc:
                self._fail("on_stop", exc)
        self.running = False
        self.stats.stopped = 1
        self._cancel_everything()

    def _fail(self, where: str, exc: BaseException) -> None:
        self.running = False
        self.failed = True
        self.stats.errors += 1
        self.stats.stopped = 1
        self.failure = f"{type(exc).__name__} in {where}: {exc}"
        if self._error_log.allow():
            log.error("strategy %s (id %d) raised in %s; it is stopped for good: its orders are cancelled "
                      "(CANCEL_ALL through risk), no callback runs again, the process keeps running "
                      "(strategy.stopped=1, strategy_ready=0)", self.strategy_class.__name__, self.strategy_id,
                      where, exc_info=exc)
        self._cancel_everything()
        if self.on_failed is not None:
            self.on_failed()

    def _cancel_everything(self) -> None:
        """Fail closed: queued new orders never leave; one CANCEL_ALL for every symbol."""
        for client_order_id in self.intents.withdraw_new_orders():
            order = self._orders.get(client_order_id)
            if order is not None:
                self._close(order, OrderState.CANCELED)
                old = self._orders.get(order._replaces) if order._replaces else None
                if old is not None and old._replaced_by == client_order_id:
                    old._state, old._replaced_by = _LIVE, 0
        for order in self._orders.values():
            order._state = _PENDING_CANCEL
        if not self.intents.last_was_cancel_all():
            self._emit_cancel_all(ALL_SYMBOLS)

    # ------------------------------------------------------------------ what the strategy sees

    def book_of(self, symbol: str) -> Book | None:
        sid = self._traded_ids.get(symbol)
        return None if sid is None else self._books[sid]

    def feed_live(self) -> bool:
        return True if self._feed_live is None else bool(self._feed_live())

    def gate_open(self) -> bool:
        return True if self._gate_open is None else bool(self._gate_open())

    # ------------------------------------------------------------------ actions

    def _traded_id(self, symbol: str) -> int:
        sid = self._traded_ids.get(symbol)
        if sid is None:
            raise ValueError(f"{symbol!r} is not a symbol this strategy trades ({', '.join(self.traded_symbols)})")
        return sid

    def _may_send_new(self) -> None:
        if self.stopping:
            raise StrategyStopping("the strategy is stopping: only cancels may leave")
        if not self.running:
            raise StrategyStopping("the strategy is not running: only cancels may leave")

    def new_order(self, symbol: str, side: Side, shares: int, price: int, tif: int) -> int:
        self._may_send_new()
        sid = self._traded_id(symbol)
        shares = _check_shares(shares)
        price = _check_price(price)
        if tif not in _TIFS:
            raise ValueError(f"time in force must be TIF_IOC ({TIF_IOC}) or TIF_DAY ({TIF_DAY}), got {tif!r}")
        intents = self.intents
        if not intents.has_room():
            intents.refused += 1
            raise BackPressure(f"{len(intents.pending)} intents already wait for the order_intents ring "
                               f"(risk is not keeping up); nothing was sent")
        client_order_id = self.ids.next()
        order = Order(client_order_id, symbol, sid, side, price, shares, tif, 0, self.clock_ns())
        self._orders[client_order_id] = order
        self._by_symbol[sid][client_order_id] = order
        intents.emit(client_order_id, 0, sid, Action.NEW, side, shares, price, tif, self._t_rx_ns,
                     self._t_feed_out_ns)
        return client_order_id

    def cancel(self, client_order_id: int) -> bool:
        order = self._orders.get(client_order_id)
        if order is None or order._state == _PENDING_CANCEL:
            return False
        replacement = self._orders.get(order._replaced_by) if order._state == _PENDING_REPLACE else None
        self._send_cancel(order)
        if replacement is not None and replacement._state != _PENDING_CANCEL:
            self._send_cancel(replacement)     # "get rid of this order" covers the replace on its way
        return True

    def _send_cancel(self, order: Order) -> None:
        cancel_id = self.ids.next()
        if order._cancel_id:
            self._cancel_targets.pop(order._cancel_id, None)
        order._cancel_id = cancel_id
        order._state = _PENDING_CANCEL
        self._cancel_targets[cancel_id] = order
        self.intents.emit(cancel_id, order._client_order_id, order._symbol_id, Action.CANCEL, order._side, 0,
                          order._price, order._tif, self._t_rx_ns, self._t_feed_out_ns)

    def replace(self, client_order_id: int, shares: int | None, price: int | None) -> int | None:
        self._may_send_new()
        order = self._orders.get(client_order_id)
        if order is None or order._state != _LIVE:
            return None
        shares = order._leaves if shares is None else _check_shares(shares)
        price = order._price if price is None else _check_price(price)
        intents = self.intents
        if not intents.has_room():
            intents.refused += 1
            raise BackPressure(f"{len(intents.pending)} intents already wait for the order_intents ring; "
                               f"nothing was sent")
        new_id = self.ids.next()
        sid = order._symbol_id
        replacement = Order(new_id, order._symbol, sid, order._side, price, shares, order._tif, client_order_id,
                            self.clock_ns())
        order._state = _PENDING_REPLACE
        order._replaced_by = new_id
        self._orders[new_id] = replacement
        self._by_symbol[sid][new_id] = replacement
        intents.emit(new_id, client_order_id, sid, Action.REPLACE, order._side, shares, price, order._tif,
                     self._t_rx_ns, self._t_feed_out_ns)
        return new_id

    def cancel_all(self, symbol: str | None = None) -> int:
        if symbol is None:
            sid, orders = ALL_SYMBOLS, self._orders.values()
        else:
            sid = self._traded_id(symbol)
            orders = self._by_symbol[sid].values()
        n = 0
        for order in orders:
            order._state = _PENDING_CANCEL
            n += 1
        self._emit_cancel_all(sid)
        return n

    def _emit_cancel_all(self, symbol_id: int) -> None:
        client_order_id = self.ids.next()
        remembered = self._cancel_all_ids
        remembered[client_order_id] = symbol_id
        if len(remembered) > MAX_CANCEL_ALL_IDS:
            del remembered[next(iter(remembered))]
        self.intents.emit(client_order_id, 0, symbol_id, Action.CANCEL_ALL, 0, 0, 0, 0, self._t_rx_ns,
                          self._t_feed_out_ns)

    # ------------------------------------------------------------------ the view

    def _close(self, order: Order, state: OrderState) -> None:
        """Take an order out of the open orders for good."""
        client_order_id = order._client_order_id
        if self._orders.pop(client_order_id, None) is not None:
            self._by_symbol[order._symbol_id].pop(client_order_id, None)
        if order._cancel_id:
            self._cancel_targets.pop(order._cancel_id, None)
        order._state = state

    def _call(self, callback: str, *args) -> None:
        """Run one of the strategy's callbacks inside the safety net."""
        if not self.running:
            return
        try:
            getattr(self.strategy, callback)(*args)
        except USER_ERRORS as exc:
            self._fail(callback, exc)

    # ------------------------------------------------------------------ book updates

    def handle_book_update(self, buffer, offset: int) -> None:
        r = BOOK_UPDATE.unpack_from(buffer, offset)
        at = _BOOK_AT
        sid = r[at.symbol_id]
        if r[at.type_id] != _BOOK_TYPE or r[at.schema_version] != _BOOK_VERSION or sid >= self._n_symbols \
                or r[at.bid_levels] > BOOK_DEPTH or r[at.ask_levels] > BOOK_DEPTH:
            self._bad("BookUpdate", (r[at.type_id], r[at.schema_version], r[at.size], sid))
            return
        book = self._books[sid]
        if book is None:
            self.stats.book_updates_ignored += 1
            return
        self.stats.book_updates += 1
        previous = book._r
        book._r = r
        if not self.running:
            return
        last_price, last_shares = r[at.last_trade_price], r[at.last_trade_shares]
        if previous is None:
            trade_changed = last_shares != 0
        else:
            trade_changed = last_price != previous[at.last_trade_price] or last_shares != previous[at.last_trade_shares]
        strategy = self.strategy
        self._t_rx_ns, self._t_feed_out_ns = r[at.t_rx_ns], r[at.t_feed_out_ns]
        where = "on_trade"
        try:
            if trade_changed and last_shares:
                strategy.on_trade(book._symbol, last_price, last_shares)
            where = "on_book"
            strategy.on_book(book)
        except USER_ERRORS as exc:
            self._fail(where, exc)
        finally:
            self._t_rx_ns = self._t_feed_out_ns = 0

    # ------------------------------------------------------------------ execution reports (exec_to_strategy)

    def handle_execution_report(self, buffer, offset: int) -> None:
        r = EXECUTION_REPORT.unpack_from(buffer, offset)
        at = _EXEC_AT
        sid, strategy_id, client_order_id = r[at.symbol_id], r[at.strategy_id], r[at.client_order_id]
        if r[at.type_id] != _EXEC_TYPE or r[at.schema_version] != _EXEC_VERSION or (sid >= self._n_symbols
                                                                                     and sid != ALL_SYMBOLS):
            self._bad("ExecutionReport", (r[at.type_id], r[at.schema_version], client_order_id, sid))
            return
        orig_client_order_id, event, side = r[at.orig_client_order_id], r[at.event], r[at.side]
        reason, source, shares, price, leaves = (r[at.reason], r[at.source], r[at.shares], r[at.price],
                                                 r[at.leaves_shares])
        stats = self.stats
        stats.exec_reports += 1
        if strategy_id != self.strategy_id:
            stats.foreign_records += 1
            return
        if event in VENUE_EVENTS and sid != ALL_SYMBOLS:          # the OMS's own position after the event
            self.positions._position[sid] = r[at.position]
            self.positions._cost_basis[sid] = r[at.cost_basis]
            self.positions._realized_pnl[sid] = r[at.realized_pnl]
        if event == _EXECUTED:
            self._on_executed(client_order_id, sid, side, shares, price, leaves)
        elif event == _ACCEPTED:
            self._on_accepted(client_order_id, leaves)
        elif event == _CANCELED:
            self._on_canceled(client_order_id, orig_client_order_id, leaves)
        elif event == _REPLACED:
            self._on_replaced(client_order_id, orig_client_order_id, leaves, price)
        elif event == _REJECTED:
            self._on_rejected(client_order_id, source or RejectSource.EXCHANGE, reason)
        elif event == _REJECTED_LOCALLY:
            self._on_rejected(client_order_id, source or RejectSource.OMS, reason)
        elif event == _CANCEL_REJECTED:
            self._on_cancel_rejected(client_order_id, orig_client_order_id, reason)
        elif event == _PENDING_TIMEOUT:
            stats.pending_timeouts += 1
            order = self._find(client_order_id)
            if order is not None:
                order._state = _PENDING_CANCEL        # the OMS queries the venue with a cancel
        elif event == _BROKEN:
            stats.broken += 1
        else:
            self._bad("ExecutionReport event", (event, client_order_id))

    def _find(self, client_order_id: int) -> Order | None:
        """An open order by its id, or by the id of a cancel sent for it."""
        order = self._orders.get(client_order_id)
        return order if order is not None else self._cancel_targets.get(client_order_id)

    def _on_executed(self, client_order_id: int, sid: int, side: int, shares: int, price: int, leaves: int) -> None:
        stats = self.stats
        stats.fills += 1
        stats.filled_shares += shares
        order = self._orders.get(client_order_id)
        if order is not None:
            sid = order._symbol_id
        if sid < self._n_symbols:
            if order.is_buy if order is not None else side == Side.BUY:
                self.positions._bought[sid] += shares
            else:
                self.positions._sold[sid] += shares
        if order is None:
            stats.unknown_orders += 1
            return
        order._filled += shares
        order._leaves = leaves
        if order._state == _PENDING_NEW:
            order._state = _LIVE
        if leaves == 0:
            self._close(order, OrderState.FILLED)
        self._call("on_fill", order, shares, price)

    def _on_accepted(self, client_order_id: int, leaves: int) -> None:
        order = self._orders.get(client_order_id)
        if order is None:
            self.stats.unknown_orders += 1
            return
        if order._state == _PENDING_NEW:
            order._state = _LIVE
        if leaves:
            order._leaves = leaves
        self._call("on_order_accepted", order)

    def _on_replaced(self, client_order_id: int, orig_client_order_id: int, leaves: int, price: int) -> None:
        old = self._orders.get(orig_client_order_id)
        if old is not None:
            self._close(old, OrderState.REPLACED)
        order = self._orders.get(client_order_id)
        if order is None:
            self.stats.unknown_orders += 1
            return
        if order._state == _PENDING_NEW:
            order._state = _LIVE
        if leaves:
            order._leaves = leaves
        if price:
            order._price = price
        self._call("on_order_accepted", order)

    def _on_canceled(self, client_order_id: int, orig_client_order_id: int, leaves: int) -> None:
        order = self._find(client_order_id) or self._orders.get(orig_client_order_id)
        if order is None:
            self.stats.unknown_orders += 1
            return
        order._leaves = leaves
        if leaves:
            return                                     # reduced, still open
        self._close(order, OrderState.CANCELED)
        self._call("on_order_canceled", order)

    def _on_rejected(self, client_order_id: int, source: int, reason: int) -> None:
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
        self._close(order, OrderState.REJECTED)
        if order._replaces:
            old = self._orders.get(order._replaces)
            if old is not None and old._replaced_by == order._client_order_id:
                old._replaced_by = 0
                if old._state == _PENDING_REPLACE:
                    old._state = _LIVE                 # the replace failed: the old order stands
        self._call("on_order_rejected", order,
                   _source(source), reason)

    def _cancel_target_refused(self, order: Order, source: int, reason: int) -> None:
        self._cancel_targets.pop(order._cancel_id, None)
        order._cancel_id = 0
        if source == RejectSource.OMS and reason == OmsReason.UNKNOWN_ORDER:
            self._close(order, OrderState.CANCELED)     # the OMS has no such order: nothing is left to cancel
            self._call("on_order_canceled", order)
            return
        if order._state == _PENDING_CANCEL:
            order._state = _LIVE
        self._call("on_cancel_rejected", order, _source(source), reason)

    def _cancel_all_refused(self, symbol_id: int, source: int, reason: int) -> None:
        """A CANCEL_ALL did not go out (e.g. the OMS's session is down): the orders it covered stand."""
        if self._data_log.allow():
            log.warning("CANCEL_ALL (%s) refused: %s", "all symbols" if symbol_id == ALL_SYMBOLS
                        else self.symbols[symbol_id], reject_reason_name(source, reason))
        reverted = [o for o in self._orders.values()
                    if o._state == _PENDING_CANCEL and not o._cancel_id
                    and (symbol_id == ALL_SYMBOLS or o._symbol_id == symbol_id)]
        for order in reverted:
            order._state = _PENDING_REPLACE if order._replaced_by in self._orders else _LIVE
        for order in reverted:
            self._call("on_cancel_rejected", order, _source(source), reason)

    def _on_cancel_rejected(self, client_order_id: int, orig_client_order_id: int, reason: int) -> None:
        """The venue says the named order is not live there: it is gone (and a replace of it failed)."""
        self.stats.cancel_rejects += 1
        order = self._find(client_order_id) or self._orders.get(orig_client_order_id)
        if order is None:
            return                                     # usually: it filled, and the EXECUTED came first
        if order._replaces and order._state == _PENDING_NEW:
            self._reject(order, RejectSource.EXCHANGE, reason)      # a replacement whose original was gone
            return
        replacement = self._orders.get(order._replaced_by) if order._replaced_by else None
        self._close(order, OrderState.CANCELED)
        self._call("on_order_canceled", order)
        if replacement is not None and replacement._state == _PENDING_NEW:
            self._reject(replacement, RejectSource.EXCHANGE, reason)

    # ------------------------------------------------------------------ risk rejects (risk_rejects)

    def handle_order_reject(self, buffer, offset: int) -> None:
        r = ORDER_REJECT.read(buffer, offset)
        client_order_id, strategy_id, sid, source, reason = (r.client_order_id, r.strategy_id, r.symbol_id, r.source,
                                                             r.reason)
        if r.type_id != _REJECT_TYPE or r.schema_version != _REJECT_VERSION:
            self._bad("OrderReject", (r.type_id, r.schema_version, client_order_id))
            return
        self.stats.risk_rejects += 1
        if strategy_id != self.strategy_id:
            self.stats.foreign_records += 1
            return
        self._on_rejected(client_order_id, source or RejectSource.RISK, reason)

    # ------------------------------------------------------------------ timer

    def timer(self, now_ns: int) -> None:
        if not self.running or self.stopping:
            return
        self.stats.timers += 1
        try:
            self.strategy.on_timer(now_ns)
        except USER_ERRORS as exc:
            self._fail("on_timer", exc)

    # ------------------------------------------------------------------ bad input

    def _bad(self, what: str, detail) -> None:
        self.stats.bad_records += 1
        if self._data_log.allow():
            log.warning("dropped a malformed %s record: %s", what, detail)


def _source(source: int):
    try:
        return RejectSource(source)
    except ValueError:
        return source
