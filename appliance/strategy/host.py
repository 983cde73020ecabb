"""The host that runs a user's ``Strategy``: ring records in, callbacks out, actions to intents; no
process, no agent (``agent.py`` is the process around it).

``StrategyHost`` keeps the strategy's view of the world true from what arrives: BookUpdates
refresh the per-symbol ``Book`` (each slot checked, then copied into the Book's own buffer; the
Book reads fields on demand), and the updates waiting at once are conflated per symbol: every
print reaches ``on_trade`` in order, as a ``Trade`` (a print is new when the update's
``trade_sequence`` moves, so identical prints are distinct), ``on_book`` runs once per symbol with
the latest state (``drain_book_updates``); ExecutionReports (exec_to_strategy) and OrderRejects
(risk_rejects) go to the ``OrderView`` (``order_view.py``), which moves the orders through their
states and carries the OMS's position. The view changes first and the callback runs after, so a
callback always sees the view with the event applied. Actions from the strategy become
OrderIntents through ``IntentWriter``; each carries the hop timestamps of the book update being
handled (0 outside ``on_book``/``on_trade``).

Records from the rings are untrusted: a wrong type or version, a symbol id outside the layout,
more levels than BOOK_DEPTH, an unknown event is counted and dropped (before anything is copied). Reports for another strategy id are counted and dropped.

Time (``timers.py``): timers (``schedule``) and ``on_timer`` run on the injected ``clock_ns`` in
deadline order, between other callbacks (``run_timers``, driven by the agent, or by a backtest's
event loop); ``clock`` shows the stamps of the event being handled. Lifecycle: ``start`` builds the
strategy as ``cls(parameters)``, then attaches; with ``snapshot_timeout_ns`` it asks the OMS for what
an earlier incarnation left and runs ``on_start`` on the answer or the timeout (see ``start``);
``stop`` runs ``on_stop``, where only cancels and position-reducing orders (``flatten``) may leave.

Safety: every callback runs inside ``try``; an exception (or ``SystemExit``) in user code is
logged with its traceback (rate limited), stops the strategy for good (no callback, not even
``on_stop``, is called again), withdraws its queued new orders, and sends CANCEL_ALL for every
symbol. The agent around it keeps heartbeating: a live process with a stopped strategy.
"""
from __future__ import annotations

import logging
import operator
import time

from appliance.messages.catalog import BOOK_DEPTH, BOOK_UPDATE, EXECUTION_REPORT, ORDER_REJECT, RISK_SNAPSHOT
from appliance.messages.codes import (ALL_SYMBOLS, TIF_DAY, TIF_IOC, Action, Capacity, Display, RejectSource, Side,
                                      SnapshotKind)

from .api import (
    AGGRESSOR_OF_BYTE, BOOK_VIEW_SETTERS, MARKET_PRICE, ORDER_SETTERS, BackPressure, Book, Order, OrderState, Strategy,
    StrategyStopping, Trade, make_order,
)
from .fees import NO_FEES, FeeSchedule
from .ids import ClientOrderIds
from .intents import IntentWriter
from .order_flags import order_flags, replace_flags, resolve_tif
from .order_view import OrderView
from .timers import Clock, TimerQueue, check_ns, to_ns

log = logging.getLogger("appliance.strategy")

USER_ERRORS = (Exception, SystemExit)       # what user code may raise without taking the process down

_BOOK_TYPE, _BOOK_VERSION = BOOK_UPDATE.type_id, BOOK_UPDATE.version
_EXEC_TYPE, _EXEC_VERSION = EXECUTION_REPORT.type_id, EXECUTION_REPORT.version
_REJECT_TYPE, _REJECT_VERSION = ORDER_REJECT.type_id, ORDER_REJECT.version
_EXEC_AT = EXECUTION_REPORT.at             # hot reads: tuples, fields by these indices
# A BookUpdate is read where it lies: the host's checks, its print and its hop stamps in one read of the
# slot, then one copy of the slot into the symbol's Book (api.Book reads its fields from there on demand).
_BOOK_HEAD = BOOK_UPDATE.fields_struct(("type_id", "schema_version", "size", "symbol_id", "bid_levels", "ask_levels",
                                        "last_trade_price", "last_trade_shares", "t_rx_ns",
                                        "t_feed_out_ns", "trade_sequence", "last_trade_t_exchange_ns",
                                        "last_trade_aggressor")).unpack_from
_BOOK_TRADE_SEQUENCE = BOOK_UPDATE.fields_struct(("trade_sequence",)).unpack_from
_BOOK_STAMPS = BOOK_UPDATE.fields_struct(("t_exchange_ns", "t_rx_ns", "t_feed_out_ns")).unpack_from
_RECORD_TYPE = BOOK_UPDATE.fields_struct(("type_id",)).unpack_from     # the common header's first field

_LIVE, _PENDING_CANCEL, _PENDING_REPLACE = OrderState.LIVE, OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE
_NEW, _REPLACE, _CANCEL, _CANCEL_ALL = Action.NEW, Action.REPLACE, Action.CANCEL, Action.CANCEL_ALL   # enum
_TIFS = (TIF_IOC, TIF_DAY)                  # what the OrderIntent contract (and risk) allow
_MAX_U32 = 0xFFFFFFFF
_SNAPSHOT_TYPE = RISK_SNAPSHOT.type_id
_set_state, _set_replaced_by = ORDER_SETTERS["_state"], ORDER_SETTERS["_replaced_by"]   # Orders are read-only
_view_src, _view_at = BOOK_VIEW_SETTERS                                                    # and Books
_SNAPSHOT, _REDUCE = Action.SNAPSHOT, Action.REDUCE
_SNAP_POSITION, _SNAP_ORDER, _SNAP_END = int(SnapshotKind.POSITION), int(SnapshotKind.ORDER), int(SnapshotKind.END)
_SIDES = frozenset(int(side) for side in Side)
_PENDING_NEW = OrderState.PENDING_NEW
RESTART_POLICIES = ("cancel", "adopt")      # Strategy.restart_orders
_VISIBLE, _AGENCY = Display.VISIBLE, Capacity.AGENCY
_PLAIN_FLAGS = (int(_VISIBLE), int(_AGENCY), 0, 0)      # OrderIntent display, capacity, minimum quantity, ISO


class StrategyStats:
    """Plain ints the agent copies into shared-memory counters (``strategy.<name>``). ``trades``: prints handed
    to ``on_trade``; ``trades_missed``: prints the host never received (jumps in a symbol's trade_sequence:
    the feed dropped updates on a full ring)."""

    __slots__ = ("book_updates", "book_updates_ignored", "book_updates_conflated", "trades", "trades_missed",
                 "exec_reports", "risk_rejects", "rejects", "rejects_risk",
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
    offset = ring.peek()
    if offset < 0 or limit < 1:
        return 0                                   # the usual answer on an idle duty cycle: nothing bound
    n = 0
    peek, release = ring.peek, ring.release
    while True:
        handle(buffer, offset)
        release()
        n += 1
        if n >= limit:
            return n
        offset = peek()
        if offset < 0:
            return n


def _instrument_map(instruments, symbol_ids: dict[str, int]) -> dict:
    """symbol -> Instrument from what a caller has; each must be a host symbol with the same id."""
    if instruments is None:
        return {}
    items = list(instruments.values()) if hasattr(instruments, "values") else list(instruments)
    result = {}
    for instrument in items:
        if symbol_ids.get(instrument.symbol) != instrument.symbol_id:
            raise ValueError(f"instrument {instrument.symbol} has symbol id {instrument.symbol_id}, but the symbols "
                             f"give it {symbol_ids.get(instrument.symbol, 'none')}")
        result[instrument.symbol] = instrument
    return result


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
                 feed_live=None, on_failed=None, clock_ns=time.time_ns, gate_open=None, instruments=None,
                 fees: FeeSchedule = NO_FEES, timer_interval_ns: int = 0, snapshot_timeout_ns: int | None = None):
        """``instruments``: the symbols' ``Instrument``s (an ``Instruments``, a mapping symbol -> Instrument
        or an iterable of them), for ``Strategy.instrument``; the agent passes the layout's, a backtest
        its own. Each one's symbol id must be its symbol's index in ``symbols``."""
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
        self.clock = Clock(self)
        self._event_exchange_ns = 0   # the event being handled (Clock.event_exchange_ns / event_rx_ns)
        self._event_rx_ns = 0
        self.timers = TimerQueue()
        self.timer_interval_ns = timer_interval_ns     # on_timer's period (0: on_timer is not scheduled)
        self.snapshot_timeout_ns = snapshot_timeout_ns  # None: no snapshot asked for (start as before)
        self.awaiting_snapshot = False
        self.snapshot_request_id = 0
        self.snapshot_deadline_ns = 0
        self._snapshot_orders: list[tuple] = []        # ORDER records of the snapshot being received
        self.adopted = 0                               # orders of an earlier incarnation taken over at start
        self.reducing_requested = False
        self.user_log = logging.getLogger(f"appliance.strategy.{strategy_class.__name__}")
        self._symbol_ids = {s: i for i, s in enumerate(self.symbols)}
        self.instruments = _instrument_map(instruments, self._symbol_ids)
        self._traded_ids = {s: self._symbol_ids[s] for s in self.traded_symbols}
        self._traded_sids = frozenset(self._traded_ids.values())
        self.restart_policy = "cancel"
        self._n_symbols = len(self.symbols)
        self._books: list[Book | None] = [None] * self._n_symbols
        for symbol, sid in self._traded_ids.items():
            self._books[sid] = Book(symbol, sid)
        self.stats = StrategyStats()
        self.strategy: Strategy | None = None
        self.started = False
        self.running = False          # user code may be called
        self.stopping = False         # inside on_stop: cancels only
        self.failed = False
        self.failure: str = ""
        self._t_rx_ns = 0             # hop timestamps of the book update being handled
        self._t_feed_out_ns = 0
        self._trades_wanted = True    # False: the strategy keeps the base's on_trade (no call per print)
        self._dirty: dict[Book, None] = {}   # books updated in this drain, in order, waiting for on_book
        self._error_log = RateLimitedLog(log, burst=3)
        self._data_log = RateLimitedLog(log, burst=5)
        self.fees = fees              # the fee schedule every Fill's fee comes from (fees.py)
        self._view = view = OrderView(self.symbols, self._traded_ids, self.stats, self._call, self._data_log, fees)
        self.open_orders = view.open_orders
        self.positions = view.positions
        view.positions._books[:] = self._books        # the marks of unrealized P&L (fills.mark_price)

    def instrument(self, symbol: str):
        """``Strategy.instrument``: the symbol's Instrument, or KeyError saying why there is none."""
        found = self.instruments.get(symbol)
        if found is None:
            if not self.instruments:
                raise KeyError(f"no instrument for {symbol!r}: this strategy was given no instruments "
                               f"(name an instruments file in the layout: instruments: config/instruments.yaml)")
            raise KeyError(f"no instrument for {symbol!r} (instruments: {', '.join(self.instruments)})")
        return found

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build the strategy (``cls(parameters)``, then the host attaches), learn what an earlier
        incarnation left, then ``on_start``.

        Without a snapshot (``snapshot_timeout_ns`` None): CANCEL_ALL for whatever is open, then
        ``on_start`` at once. With one: a snapshot request travels strategy -> risk -> OMS (an
        OrderIntent, Action.SNAPSHOT) and ``on_start`` waits for the OMS's answer (RiskSnapshot
        records on exec_to_strategy, ``handle_snapshot``) or the timeout (``check_snapshot_timeout``:
        fail closed, CANCEL_ALL). The strategy's ``restart_orders`` says what becomes of the open
        orders: "cancel" (the default) sends CANCEL_ALL first and shows them as PENDING_CANCEL;
        "adopt" puts them in ``self.orders`` as the strategy's own."""
        if self.started:
            return
        self.started = True
        try:
            strategy = self.strategy_class(self.parameters)
        except USER_ERRORS as exc:
            self._fail("__init__", exc)
            return
        policy = getattr(strategy, "restart_orders", "cancel")
        if policy not in RESTART_POLICIES:
            self._fail("__init__", ValueError(f"restart_orders must be one of {RESTART_POLICIES}, got {policy!r}"))
            return
        strategy._attach(self)
        self.strategy = strategy
        self.restart_policy = policy
        self._trades_wanted = type(strategy).on_trade is not Strategy.on_trade   # the base's is a no-op
        if policy == "cancel" or self.snapshot_timeout_ns is None:
            self._emit_cancel_all(ALL_SYMBOLS)
        if self.snapshot_timeout_ns is None:
            self._begin()
            return
        self.awaiting_snapshot = True
        self.snapshot_request_id = request_id = self.ids.next()
        self.snapshot_deadline_ns = self.clock_ns() + self.snapshot_timeout_ns
        self.intents.emit(request_id, 0, ALL_SYMBOLS, _SNAPSHOT, 0, 0, 0, 0, 0, 0)

    def _begin(self) -> None:
        """The strategy runs from here: on_timer's timer, then on_start."""
        self.running = True
        strategy = self.strategy
        if self.timer_interval_ns and type(strategy).on_timer is not Strategy.on_timer:
            self.timers.add(self._legacy_timer, self.clock_ns(), self.timer_interval_ns, self.timer_interval_ns)
        try:
            strategy.on_start()
        except USER_ERRORS as exc:
            self._fail("on_start", exc)

    def handle_snapshot(self, buffer, offset: int) -> None:
        """One RiskSnapshot record on exec_to_strategy: the OMS's answer to this strategy's request
        (records of another strategy, or answers while not waiting, are counted and dropped)."""
        r = RISK_SNAPSHOT.read(buffer, offset)
        if r.schema_version != RISK_SNAPSHOT.version:
            self._bad("RiskSnapshot", (r.type_id, r.schema_version))
            return
        if r.strategy_id != self.strategy_id or not self.awaiting_snapshot:
            self.stats.foreign_records += 1
            return
        kind, sid = r.kind, r.symbol_id
        if kind == _SNAP_POSITION:
            if sid < self._n_symbols:
                positions = self.positions
                positions._position[sid], positions._cost_basis[sid], positions._realized_pnl[sid] = (
                    r.position, r.cost_basis, r.realized_pnl)
        elif kind == _SNAP_ORDER:
            if sid < self._n_symbols and r.side in _SIDES and r.leaves_shares:
                self._snapshot_orders.append((r.client_order_id, r.orig_client_order_id, sid, Side(r.side),
                                              r.leaves_shares, r.price))
            else:
                self._bad("RiskSnapshot order", (r.client_order_id, sid, r.side))
        elif kind == _SNAP_END:
            if r.client_order_id != self.snapshot_request_id:
                self._snapshot_orders = []          # the answer to an earlier incarnation's request
                return
            self._finish_snapshot()
        else:
            self._bad("RiskSnapshot kind", (kind,))

    def _finish_snapshot(self) -> None:
        """The OMS's open orders of this strategy enter the view (adopted, or PENDING_CANCEL under the
        CANCEL_ALL sent at start), then on_start."""
        self.awaiting_snapshot = False
        view = self._view
        records, self._snapshot_orders = self._snapshot_orders, []
        adopt = self.restart_policy == "adopt"
        now = self.clock_ns()
        orders = {}
        for client_order_id, orig, sid, side, leaves, price in records:
            if view.get(client_order_id) is not None:
                continue
            order = make_order(client_order_id, self.symbols[sid], sid, side, price, leaves, TIF_DAY, orig, now)
            _set_state(order, _LIVE if adopt else _PENDING_CANCEL)
            orders[client_order_id] = order
        for order in orders.values():           # a pending replace: its original shows it
            old = orders.get(order._replaces) if order._replaces else None
            if old is not None:
                _set_state(order, _PENDING_NEW if adopt else _PENDING_CANCEL)
                if adopt:
                    _set_state(old, _PENDING_REPLACE)
                    _set_replaced_by(old, order._client_order_id)
            if order._symbol_id not in self._traded_sids:
                _set_state(order, _PENDING_CANCEL)  # not a symbol it trades any more: never adopted
            view.add(order)
        self.adopted = len(orders) if adopt else 0
        untraded = [o for o in orders.values() if adopt and o._symbol_id not in self._traded_sids]
        for order in untraded:
            self._send_cancel(order)
        log.info("strategy %d: the OMS reports %d open orders of an earlier incarnation: %s", self.strategy_id,
                 len(orders), "adopted (in self.orders)" if adopt else "cancelled (CANCEL_ALL at start)")
        self._begin()

    def check_snapshot_timeout(self) -> bool:
        """While waiting for the snapshot: past the deadline, fail closed (CANCEL_ALL for whatever is
        open, on_start with what is known: the positions table). True when it timed out now."""
        if not self.awaiting_snapshot or self.clock_ns() < self.snapshot_deadline_ns:
            return False
        self.awaiting_snapshot = False
        self._snapshot_orders = []
        log.warning("strategy %d: the OMS did not answer the snapshot request within %d ms: cancelling every "
                    "open order of this strategy (CANCEL_ALL) and starting with the positions known, no open orders",
                    self.strategy_id, self.snapshot_timeout_ns // 1_000_000)
        if self.restart_policy != "cancel":
            self._emit_cancel_all(ALL_SYMBOLS)
        self._begin()
        return True

    def _legacy_timer(self, now_ns: int) -> None:
        self.strategy.on_timer(now_ns)

    def stop(self) -> None:
        """on_stop (unless the strategy failed), then cancel everything. Idempotent.

        Inside on_stop new risk is refused (StrategyStopping) but orders that shrink a position may
        leave (``flatten``); they are not withdrawn by the cancels that follow."""
        if not self.started:
            return
        self.timers.clear()
        if self.running and not self.stopping:
            self.stopping = True
            try:
                self.strategy.on_stop()
            except USER_ERRORS as exc:
                self._fail("on_stop", exc)
        self.awaiting_snapshot = False
        self.running = False
        self.stats.stopped = 1
        if self.stopping:                   # the flattening orders on_stop queued still leave
            self._view.mark_pending_cancel(ALL_SYMBOLS)
            if not self.intents.last_was_cancel_all():
                self._emit_cancel_all(ALL_SYMBOLS)
        else:
            self._cancel_everything()

    def _fail(self, where: str, exc: BaseException) -> None:
        self.running = False
        self.failed = True
        self.awaiting_snapshot = False
        self.timers.clear()
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
        view = self._view
        for client_order_id in self.intents.withdraw_new_orders():
            view.withdraw(client_order_id)
        view.mark_pending_cancel(ALL_SYMBOLS)
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
            raise StrategyStopping("the strategy is stopping: only cancels and orders that reduce a position "
                                   "(flatten) may leave")
        if not self.running:
            raise StrategyStopping("the strategy is not running: only cancels may leave")

    def new_order(self, symbol: str, side: Side, shares: int, price: int, tif: int | None = TIF_DAY, *,
                  display: int = _VISIBLE, min_qty: int = 0, iso: bool = False, capacity: int = _AGENCY) -> int:
        """A new order's intent, every argument checked first (``order_flags.py`` for the OUCH flags)."""
        sid = self._traded_id(symbol)
        if self.stopping or not self.running:
            if not (self.stopping and self.running and self._reduces(sid, side, shares)):
                self._may_send_new()
        if shares.__class__ is not int or not 1 <= shares <= _MAX_U32:      # the checks' fast path first
            shares = _check_shares(shares)
        if price.__class__ is not int or not 1 <= price <= MARKET_PRICE:
            price = _check_price(price)
        if tif.__class__ is not int or tif not in _TIFS or price == MARKET_PRICE:
            tif = resolve_tif(tif, price)
        if display is _VISIBLE and capacity is _AGENCY and iso is False and min_qty == 0 and min_qty.__class__ is int:
            flags = _PLAIN_FLAGS                                            # a plain order: nothing to check
        else:
            flags = order_flags(shares, price, tif, display, min_qty, iso, capacity)
        intents = self.intents
        if not intents.has_room():
            intents.refused += 1
            raise BackPressure(f"{len(intents.pending)} intents already wait for the order_intents ring "
                               f"(risk is not keeping up); nothing was sent")
        client_order_id = self.ids.next()
        # the intent first, the view's bookkeeping after (still before the strategy sees anything): the
        # order leaves while the view is updated; nothing can answer it before this returns
        intents.emit(client_order_id, 0, sid, _NEW, side, shares, price, tif, self._t_rx_ns,
                     self._t_feed_out_ns, *flags)
        self._view.add(make_order(client_order_id, symbol, sid, side, price, shares, tif, 0, self.clock_ns(), flags))
        return client_order_id

    def _reduces(self, sid: int, side, shares) -> bool:
        """Would this order shrink the position, even if every open order on its side that is not
        being cancelled filled too? (What may leave while stopping.)"""
        if shares.__class__ is not int:
            return False
        position = self.positions._position[sid]
        selling = side != Side.BUY
        if (position > 0) != selling or position == 0:
            return False
        same_side = sum(o._leaves for o in self._view._by_symbol[sid].values()
                        if (o._side != Side.BUY) == selling and o._state != _PENDING_CANCEL)
        return shares + same_side <= abs(position)

    def flatten(self, symbol: str | None = None) -> list[int]:
        """Cancel the open orders (of one symbol, or all), then close each position with a marketable IOC
        limit order at the touch (sell at the best bid, buy at the best ask; a side without a quote is
        skipped and logged). Returns the client order ids sent. Allowed in on_stop (it only reduces)."""
        if not self.running:
            raise StrategyStopping("the strategy is not running: flatten needs a running strategy (or on_stop)")
        symbols = self.traded_symbols if symbol is None else (symbol,)
        for name in symbols:
            self._traded_id(name)
        self.cancel_all(symbol)
        sent = []
        for name in symbols:
            sid = self._traded_ids[name]
            position = self.positions._position[sid]
            if not position:
                continue
            book = self._books[sid]
            bid, _, ask, _, _, _ = book.top()
            price = bid if position > 0 else ask
            if not price:
                if self._error_log.allow():
                    log.warning("flatten %s: position %d but no %s to trade against; not flattened", name, position,
                                "bid" if position > 0 else "ask")
                continue
            side = Side.SELL if position > 0 else Side.BUY
            sent.append(self.new_order(name, side, abs(position), price, TIF_IOC))
        return sent

    def request_reducing(self) -> None:
        """Ask risk to put this strategy in REDUCING: from the moment risk reads it, only orders that
        shrink a position pass (the rest are refused TRADING_REDUCING) until an operator sets ACTIVE."""
        if self.reducing_requested:
            return
        self.reducing_requested = True
        self.intents.emit(self.ids.next(), 0, ALL_SYMBOLS, _REDUCE, 0, 0, 0, 0, self._t_rx_ns, self._t_feed_out_ns)

    # ------------------------------------------------------------------ timers

    def schedule(self, callback, after=None, every=None, *, after_ns=None, every_ns=None):
        """A one-shot (``after``) or repeating (``every``; first after ``after``, default one period)
        timer on the host's clock; seconds (int or float) or exact ``*_ns`` ints. Returns a Timer."""
        if not self.running:
            raise StrategyStopping("timers may be scheduled only while the strategy runs (from on_start on)")
        if after is not None and after_ns is not None or every is not None and every_ns is not None:
            raise TypeError("give after or after_ns (and every or every_ns), not both")
        after_ns = check_ns(after_ns, "after_ns") if after_ns is not None else \
            (to_ns(after, "after") if after is not None else None)
        every_ns = check_ns(every_ns, "every_ns") if every_ns is not None else \
            (to_ns(every, "every") if every is not None else 0)
        if every_ns < 0 or (every_ns == 0 and (every is not None)):
            raise ValueError(f"every must be a positive period, got {every if every is not None else every_ns}")
        if after_ns is None:
            if not every_ns:
                raise TypeError("schedule needs after= (one-shot) and/or every= (repeating)")
            after_ns = every_ns
        return self.timers.add(callback, self.clock_ns(), after_ns, every_ns)

    def next_timer_ns(self) -> int | None:
        """The next timer's deadline on the host's clock (None: no timer, or not running)."""
        return self.timers.next_deadline_ns() if self.running else None

    def run_timers(self, now_ns: int | None = None) -> int:
        """Fire every timer due at ``now_ns`` (the host's clock when None), in deadline order; how many."""
        if not self.running:
            return 0
        if now_ns is None:
            now_ns = self.clock_ns()
        timers = self.timers
        n = 0
        while self.running:
            timer = timers.pop_due(now_ns)
            if timer is None:
                break
            n += 1
            self.stats.timers += 1
            try:
                timer._callback(now_ns)
            except USER_ERRORS as exc:
                self._fail(f"timer {getattr(timer._callback, '__name__', timer._callback)!r}", exc)
        return n

    def cancel(self, client_order_id: int) -> bool:
        view = self._view
        order = view.get(client_order_id)
        if order is None or order._state == _PENDING_CANCEL:
            return False
        replacement = view.get(order._replaced_by) if order._state == _PENDING_REPLACE else None
        self._send_cancel(order)
        if replacement is not None and replacement._state != _PENDING_CANCEL:
            self._send_cancel(replacement)     # "get rid of this order" covers the replace on its way
        return True

    def _send_cancel(self, order: Order) -> None:
        cancel_id = self.ids.next()
        self._view.remember_cancel(order, cancel_id)
        self.intents.emit(cancel_id, order._client_order_id, order._symbol_id, _CANCEL, order._side, 0,
                          order._price, order._tif, self._t_rx_ns, self._t_feed_out_ns)

    def replace(self, client_order_id: int, shares: int | None, price: int | None, *, display: int | None = None,
                iso: bool | None = None) -> int | None:
        if self.stopping or not self.running:
            self._may_send_new()
        order = self._view.get(client_order_id)
        if order is None or order._state != _LIVE:
            return None
        if shares is None:
            shares = order._leaves
        elif shares.__class__ is not int or not 1 <= shares <= _MAX_U32:
            shares = _check_shares(shares)
        if price is None:
            price = order._price
        elif price.__class__ is not int or not 1 <= price <= MARKET_PRICE:
            price = _check_price(price)
        flags = order._flags
        if display is not None or iso is not None or flags[2]:      # else the original's flags, as they are
            old_display, old_capacity, _old_min_qty, old_iso = flags
            if display is None and iso is None:
                new_display, new_iso = old_display, old_iso
            else:
                new_display, new_iso = replace_flags(old_display, old_iso, price, display, iso)
            flags = (new_display, old_capacity, 0, new_iso)         # a replacement has no minimum quantity
        intents = self.intents
        if not intents.has_room():
            intents.refused += 1
            raise BackPressure(f"{len(intents.pending)} intents already wait for the order_intents ring; "
                               f"nothing was sent")
        new_id = self.ids.next()
        sid = order._symbol_id
        intents.emit(new_id, client_order_id, sid, _REPLACE, order._side, shares, price, order._tif,
                     self._t_rx_ns, self._t_feed_out_ns, *flags)     # the intent first (see new_order)
        _set_state(order, _PENDING_REPLACE)
        _set_replaced_by(order, new_id)
        self._view.add(make_order(new_id, order._symbol, sid, order._side, price, shares, order._tif, client_order_id,
                                  self.clock_ns(), flags))
        return new_id

    def cancel_all(self, symbol: str | None = None) -> int:
        sid = ALL_SYMBOLS if symbol is None else self._traded_id(symbol)
        n = self._view.mark_pending_cancel(sid)
        self._emit_cancel_all(sid)
        return n

    def _emit_cancel_all(self, symbol_id: int) -> None:
        client_order_id = self.ids.next()
        self._view.remember_cancel_all(client_order_id, symbol_id)
        self.intents.emit(client_order_id, 0, symbol_id, _CANCEL_ALL, 0, 0, 0, 0, self._t_rx_ns,
                          self._t_feed_out_ns)

    # ------------------------------------------------------------------ callbacks

    def _call(self, callback: str, *args) -> None:
        """Run one of the strategy's callbacks inside the safety net."""
        if not self.running:
            return
        try:
            getattr(self.strategy, callback)(*args)
        except USER_ERRORS as exc:
            self._fail(callback, exc)

    # ------------------------------------------------------------------ book updates

    def drain_book_updates(self, ring, buffer, limit: int) -> int:
        """Read up to ``limit`` queued BookUpdates; returns how many.

        Conflation: every update is applied to its symbol's Book in order and every new print reaches
        ``on_trade`` in order (none lost), but ``on_book`` runs once per symbol per drain, after the
        updates, with the symbol's latest state (in the order of the symbols' latest updates); the
        updates it did not run for are counted (``book_updates_conflated``).

        The last queued update's ``on_book`` reads the ring slot itself (held until the callback
        returns, then copied into the Book and released): the copy is off the path to the intent."""
        if ring.peek() < 0 or limit < 1:
            return 0
        n = 0
        peek, release, depth, apply = ring.peek, ring.release, ring.depth, self._apply_book_update
        dirty = self._dirty
        while n < limit:
            offset = peek()
            if offset < 0:
                break
            book = apply(buffer, offset)
            n += 1
            if book is None:
                release()
                continue
            if book in dirty:
                del dirty[book]                 # a later update of the same symbol: its on_book moves here
                self.stats.book_updates_conflated += 1
            if depth() == 1 or n == limit:      # the last one queued: on_book now, from the slot
                if dirty:
                    self._flush_dirty()
                try:
                    self._on_book(book)
                finally:
                    book._keep()
                    release()
                break
            book._keep()
            release()
            dirty[book] = None
        if self._dirty:
            self._flush_dirty()
        return n

    def _flush_dirty(self) -> None:
        dirty = self._dirty
        self._dirty = {}
        for book in dirty:
            self._on_book(book)

    def _apply_book_update(self, buffer, offset: int) -> Book | None:
        """Check one record, point its symbol's Book at it and deliver its print (if new) to ``on_trade``;
        returns the Book, reading the slot, for ``on_book`` (None: dropped, not traded, or the strategy is
        not running; the Book has its copy then). The caller ``_keep``s the Book before releasing."""
        (type_id, version, size, sid, bid_levels, ask_levels, last_price, last_shares, t_rx_ns,
         t_feed_out_ns, trade_sequence, t_trade_ns, aggressor) = _BOOK_HEAD(buffer, offset)
        if type_id != _BOOK_TYPE or version != _BOOK_VERSION or sid >= self._n_symbols \
                or bid_levels > BOOK_DEPTH or ask_levels > BOOK_DEPTH:
            self._bad("BookUpdate", (type_id, version, size, sid))
            return None
        book = self._books[sid]
        if book is None:
            self.stats.book_updates_ignored += 1
            return None
        stats = self.stats
        stats.book_updates += 1
        new_print = False
        previous = _BOOK_TRADE_SEQUENCE(book._buf)[0]                 # the previous update's, kept
        if trade_sequence != previous:                                 # a print (the feed numbers each one)
            if previous and trade_sequence > previous + 1:             # prints the host never received
                stats.trades_missed += trade_sequence - previous - 1
            new_print = last_shares and self._trades_wanted and self.running
        _view_src(book, buffer)                          # book._view(buffer, offset), inline
        _view_at(book, offset)
        if new_print:
            stats.trades += 1
            self._t_rx_ns = self._event_rx_ns = t_rx_ns
            self._t_feed_out_ns = t_feed_out_ns
            self._event_exchange_ns = t_trade_ns         # the print's own venue time
            try:
                self.strategy.on_trade(Trade(book._symbol, last_price, last_shares, AGGRESSOR_OF_BYTE.get(aggressor),
                                             trade_sequence, t_trade_ns, t_rx_ns))
            except USER_ERRORS as exc:
                self._fail("on_trade", exc)
            finally:
                self._t_rx_ns = self._t_feed_out_ns = self._event_rx_ns = self._event_exchange_ns = 0
        if not self.running:
            book._keep()
            return None
        return book

    def _on_book(self, book: Book) -> None:
        if not self.running:
            return
        self._event_exchange_ns, self._t_rx_ns, self._t_feed_out_ns = _BOOK_STAMPS(book._src, book._at)
        self._event_rx_ns = self._t_rx_ns
        try:
            self.strategy.on_book(book)
        except USER_ERRORS as exc:
            self._fail("on_book", exc)
        finally:
            self._t_rx_ns = self._t_feed_out_ns = self._event_rx_ns = self._event_exchange_ns = 0

    # ------------------------------------------------------------------ execution reports (exec_to_strategy)

    def handle_execution_report(self, buffer, offset: int) -> None:
        r = EXECUTION_REPORT.unpack_from(buffer, offset)
        at = _EXEC_AT
        sid, strategy_id, client_order_id = r[at.symbol_id], r[at.strategy_id], r[at.client_order_id]
        if r[at.type_id] != _EXEC_TYPE or r[at.schema_version] != _EXEC_VERSION or (sid >= self._n_symbols
                                                                                     and sid != ALL_SYMBOLS):
            self._bad("ExecutionReport", (r[at.type_id], r[at.schema_version], client_order_id, sid))
            return
        stats = self.stats
        stats.exec_reports += 1
        if strategy_id != self.strategy_id:
            stats.foreign_records += 1
            return
        self._event_exchange_ns, self._event_rx_ns = r[at.t_exchange_ns], r[at.t_oms_rx_ns]
        try:
            if not self._view.apply_report(r):
                self._bad("ExecutionReport event", (r[at.event], client_order_id))
        finally:
            self._event_exchange_ns = self._event_rx_ns = 0

    def handle_exec_record(self, buffer, offset: int) -> None:
        """A record of exec_to_strategy: an ExecutionReport, or a RiskSnapshot answering this strategy's
        snapshot request (the ring carries both, catalog.ALSO_CARRIED)."""
        if _RECORD_TYPE(buffer, offset)[0] == _SNAPSHOT_TYPE:
            self.handle_snapshot(buffer, offset)
        else:
            self.handle_execution_report(buffer, offset)

    # ------------------------------------------------------------------ risk rejects (risk_rejects)

    def handle_order_reject(self, buffer, offset: int) -> None:
        r = ORDER_REJECT.read(buffer, offset)
        client_order_id, strategy_id, source, reason = r.client_order_id, r.strategy_id, r.source, r.reason
        if r.type_id != _REJECT_TYPE or r.schema_version != _REJECT_VERSION:
            self._bad("OrderReject", (r.type_id, r.schema_version, client_order_id))
            return
        self.stats.risk_rejects += 1
        if strategy_id != self.strategy_id:
            self.stats.foreign_records += 1
            return
        self._view.apply_reject(client_order_id, source or RejectSource.RISK, reason)

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
