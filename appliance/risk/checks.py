"""The check set: every new order and replace against every limit, cheapest check first.

``RiskEngine.check`` returns 0 (approve) or the ``RiskReason`` of the first check that fails;
``record`` then books an approved intent (open order, rate window, duplicate filters). Cancels
and cancel-alls always pass (``check`` returns 0 without looking); ``record`` counts them in the
rate window (a cancel-all as the cancels the OMS will send for it: one per open order of the
strategy in the symbol, or in all, a pending replace counting twice), and one over the rate is
counted as throttled but still goes out.

Order of the checks (a reject stops at the first; see ``CHECK_ORDER``):

1. well-formed: action, side, shares > 0, price > 0, client order id != 0, TIF, a display, capacity or
   intermarket-sweep value OUCH does not know -> BAD_ORDER; a symbol id outside the layout or without
   limits -> UNKNOWN_SYMBOL;
2. the gateway: state not rebuilt -> NOT_READY; HALTED -> TRADING_HALTED; the symbol's own kill
   switch latched (KILL_SYMBOL) -> SYMBOL_KILLED; outside market hours -> MARKET_CLOSED;
3. a client order id approved before -> DUPLICATE_CLIENT_ID; a replace of an order that is not
   open (or is being replaced already) -> UNKNOWN_ORDER, of another symbol or side -> BAD_ORDER;
4. size: shares < min -> MIN_SIZE, > max -> MAX_SHARES, not a round lot -> ROUND_LOT; a market order
   (price 0x7FFFFFFF) without allow_market_orders -> MARKET_ORDER; price not on the tick -> TICK;
   a limit price outside the instrument's band -> PRICE_BAND;
   the order's flags (only looked at when one is set): a short sale in a symbol without
   allow_short_sell -> SHORT_SALE, non-displayed without allow_hidden -> HIDDEN_ORDER, an intermarket
   sweep without allow_iso -> ISO_ORDER, a minimum quantity the venue would refuse (above the shares,
   or on an order that may rest: ``ouch.minimum_quantity_problem``) -> MIN_QUANTITY;
5. rate: the sliding window full -> MESSAGE_RATE (and the throttle's kill-switch count); open
   orders at the maximum -> MAX_OPEN_ORDERS; the same NEW too often -> REPEATED_ORDER; crossing one
   of our own open orders on the other side -> SELF_MATCH (no wash trades);
6. the market-state table: stale (or never written) -> BOOK_STALE, trading state not T ->
   SYMBOL_HALTED, crossed -> BOOK_CROSSED, no mid and no last trade -> NO_REFERENCE_PRICE;
   outside the collar around the reference -> PRICE_COLLAR; shares x price > max -> MAX_NOTIONAL;
7. loss: realized + unrealized below -max_daily_loss -> DAILY_LOSS, more than max_drawdown under
   the day's peak -> DRAWDOWN; both latch the kill switch. After a restart the realized P&L is
   the OMS's (its snapshot) and the peak max(the state file's, the rebuilt P&L);
8. REDUCING and the order would grow the worst-case position -> TRADING_REDUCING;
9. worst-case position beyond max_long / max_short -> MAX_LONG / MAX_SHORT;
10. exposure (only for orders that add to it): gross notional -> GROSS_EXPOSURE, net notional ->
    NET_EXPOSURE, the symbol's sector gross -> SECTOR_CONCENTRATION, gross over capital x
    max_leverage -> LEVERAGE.

Every bound is inclusive: a value exactly at its limit passes; one unit beyond is denied.

Marks: unrealized P&L and the exposure totals are marked to the market-state table's reference
prices by ``housekeeping`` (every ``housekeeping_ms``, 10 ms by default, for every symbol; the
loss limits are enforced there too, without waiting for an order), and only from good books
(``market_state.mark_of``: a stale, inconsistent or crossed book leaves the last good mark, so
forged or lost data can neither trip the loss limits nor raise the day's peak). The order's own symbol is
revalued at the reference price it was just checked against; re-marking the whole book inside
the check would double its cost. A market order's notional is priced at the far edge of the collar.
"""
from __future__ import annotations

from appliance.messages.catalog import (BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_STALE, BOOK_FLAGS_BAD,
                                        MARKET_STATE)
from appliance.messages.codes import (MARKET_PRICE, TIF_DAY, TIF_IOC, Action, Capacity, Display, RiskReason, RiskState,
                                      Side)
from appliance.runtime.market_state import good_mark, reference_price  # noqa: F401 (reference_price re-exported)
from appliance.runtime.seqlock import body_index_of
from appliance.wire.ouch import minimum_quantity_problem

from .duplicates import DuplicateFilter
from .kill_switch import DAILY_LOSS, DRAWDOWN, TradingControl
from .limits import Limits
from .rate import SlidingWindow
from .state import (NO_ASK, BAD_REPORT, SNAPSHOT_APPLIED, SNAPSHOT_COMPLETE, SNAPSHOT_END, SNAPSHOT_IGNORED,
                    SNAPSHOT_POSITION, Portfolio)

NEW = int(Action.NEW)
REPLACE = int(Action.REPLACE)
CANCEL = int(Action.CANCEL)
CANCEL_ALL = int(Action.CANCEL_ALL)
SNAPSHOT = int(Action.SNAPSHOT)      # a strategy's request for its open orders: passed on to the OMS
BUY = int(Side.BUY)
SELL = int(Side.SELL)
SELL_SHORT = int(Side.SELL_SHORT)
HIDDEN = int(Display.HIDDEN)
VISIBLE = int(Display.VISIBLE)
AGENCY = int(Capacity.AGENCY)
DISPLAYS = frozenset((0, *(int(d) for d in Display)))       # 0: the default (VISIBLE)
CAPACITIES = frozenset((0, *(int(c) for c in Capacity)))    # 0: the default (AGENCY)
TRADING = ord("T")
HALTED = int(RiskState.HALTED)
REDUCING = int(RiskState.REDUCING)
BAD_BOOK = BOOK_FLAGS_BAD | BOOK_FLAG_HALTED
NO_BOOK = BOOK_FLAG_STALE | BOOK_FLAG_INCONSISTENT

R = RiskReason
CHECK_ORDER = (R.BAD_ORDER, R.UNKNOWN_SYMBOL, R.NOT_READY, R.TRADING_HALTED, R.SYMBOL_KILLED, R.MARKET_CLOSED, R.DUPLICATE_CLIENT_ID,
               R.UNKNOWN_ORDER, R.MIN_SIZE, R.MAX_SHARES, R.ROUND_LOT, R.MARKET_ORDER, R.TICK, R.PRICE_BAND, R.SHORT_SALE,
               R.HIDDEN_ORDER, R.ISO_ORDER, R.MIN_QUANTITY, R.MESSAGE_RATE, R.MAX_OPEN_ORDERS,
               R.REPEATED_ORDER, R.SELF_MATCH, R.BOOK_STALE, R.SYMBOL_HALTED, R.BOOK_CROSSED, R.NO_REFERENCE_PRICE,
               R.PRICE_COLLAR, R.MAX_NOTIONAL, R.DAILY_LOSS, R.DRAWDOWN, R.TRADING_REDUCING, R.MAX_LONG,
               R.MAX_SHORT, R.GROSS_EXPOSURE, R.NET_EXPOSURE, R.SECTOR_CONCENTRATION, R.LEVERAGE)
assert set(CHECK_ORDER) == set(RiskReason), "every reason code has its place in the check order"

KILLED_ROW = ()      # symbol_rows entry of a symbol whose kill switch is latched: falsy like None (no limits)

_BAD_ORDER = int(R.BAD_ORDER)
_UNKNOWN_SYMBOL = int(R.UNKNOWN_SYMBOL)
_NOT_READY = int(R.NOT_READY)
_TRADING_HALTED = int(R.TRADING_HALTED)
_SYMBOL_KILLED = int(R.SYMBOL_KILLED)
_MARKET_CLOSED = int(R.MARKET_CLOSED)
_DUPLICATE_CLIENT_ID = int(R.DUPLICATE_CLIENT_ID)
_UNKNOWN_ORDER = int(R.UNKNOWN_ORDER)
_MIN_SIZE = int(R.MIN_SIZE)
_MAX_SHARES = int(R.MAX_SHARES)
_ROUND_LOT = int(R.ROUND_LOT)
_TICK = int(R.TICK)
_PRICE_BAND = int(R.PRICE_BAND)
_MESSAGE_RATE = int(R.MESSAGE_RATE)
_MAX_OPEN_ORDERS = int(R.MAX_OPEN_ORDERS)
_REPEATED_ORDER = int(R.REPEATED_ORDER)
_SELF_MATCH = int(R.SELF_MATCH)
_BOOK_STALE = int(R.BOOK_STALE)
_SYMBOL_HALTED = int(R.SYMBOL_HALTED)
_BOOK_CROSSED = int(R.BOOK_CROSSED)
_NO_REFERENCE_PRICE = int(R.NO_REFERENCE_PRICE)
_PRICE_COLLAR = int(R.PRICE_COLLAR)
_MAX_NOTIONAL = int(R.MAX_NOTIONAL)
_DAILY_LOSS = int(R.DAILY_LOSS)
_DRAWDOWN = int(R.DRAWDOWN)
_TRADING_REDUCING = int(R.TRADING_REDUCING)
_MAX_LONG = int(R.MAX_LONG)
_MAX_SHORT = int(R.MAX_SHORT)
_GROSS_EXPOSURE = int(R.GROSS_EXPOSURE)
_NET_EXPOSURE = int(R.NET_EXPOSURE)
_SECTOR_CONCENTRATION = int(R.SECTOR_CONCENTRATION)
_LEVERAGE = int(R.LEVERAGE)
_SHORT_SALE = int(R.SHORT_SALE)
_MARKET_ORDER = int(R.MARKET_ORDER)
_HIDDEN_ORDER = int(R.HIDDEN_ORDER)
_ISO_ORDER = int(R.ISO_ORDER)
_MIN_QUANTITY = int(R.MIN_QUANTITY)


# bid, ask, last trade, flags, trading state, last good mark of a MarketState slot, in one call from the seqlock word
MARKET_FIELDS = MARKET_STATE.fields_struct(("bid_price", "ask_price", "last_trade_price", "flags", "trading_state",
                                            "mark_price"), start="seqlock")
_SEQLOCK_OFFSET = MARKET_STATE.offset_of["seqlock"]
_FIELD_INDEX = body_index_of(MARKET_STATE)


def _collar_divisor(collar_ppm: int) -> int:
    """d with ref // d == ref * collar_ppm // 10**6 for every ref, when 10**6 / collar_ppm is whole; else 0."""
    return 1_000_000 // collar_ppm if collar_ppm and 1_000_000 % collar_ppm == 0 else 0




class RiskEngine:
    """All of risk's state and the ordered check set; no rings, no shared counters (the agent's job)."""

    # slots: CPython keeps attribute loads fast only for up to 30 dict-held attributes
    __slots__ = ("symbols", "symbol_count", "market", "_ms_buffer", "_ms_seq_offsets", "_ms_load", "_ms_unpack",
                 "portfolio", "control", "duplicates", "rate", "ready", "peak_pnl", "restored_peak", "loss_floor",
                 "hours_open",
                 "hours_valid_until_ns", "hours_valid_from_ns", "approved", "cancels", "cancels_over_rate",
                 "throttled", "torn_reads", "marks_old",
                 "limits", "symbol_rows", "limit_rows", "global_row", "max_gross", "max_net", "leverage_notional",
                 "max_daily_loss", "max_drawdown", "max_open_orders", "allow_market_orders", "market_hours",
                 "flag_rules",
                 "seen_client_ids", "identical", "in_snapshot", "snapshots_applied", "snapshot_reports_ignored")

    def __init__(self, limits: Limits, symbols, market, *, order_capacity: int = 4096):
        """``market``: a MarketStateReader (its buffer, slot offsets and atomics are read directly)."""
        self.symbols = tuple(symbols)
        self.symbol_count = len(self.symbols)
        self.market = market
        self._ms_buffer = market.buffer
        self._ms_seq_offsets = [o + _SEQLOCK_OFFSET for o in market.offsets]
        self._ms_load = market.atomics.load
        self._ms_unpack = MARKET_FIELDS.unpack_from
        self.portfolio = Portfolio(self.symbol_count, order_capacity)
        self.control = TradingControl()
        self.duplicates = DuplicateFilter(1, 1)
        self.rate = SlidingWindow(1, 1)
        self.ready = False                # False until the OMS's snapshot has been applied
        self.in_snapshot = False
        self.snapshots_applied = 0
        self.snapshot_reports_ignored = 0
        self.peak_pnl = 0
        self.restored_peak: int | None = None     # the day's peak from the state file (restarts)
        self.loss_floor = 0
        self.hours_open = True
        self.hours_valid_until_ns = self.hours_valid_from_ns = 0
        self.approved = 0
        self.cancels = 0
        self.cancels_over_rate = 0
        self.throttled = 0
        self.torn_reads = 0
        self.marks_old = 0
        self.limits: Limits | None = None
        self.apply_limits(limits)

    # ------------------------------------------------------------------ configuration

    def apply_limits(self, limits: Limits) -> None:
        """Use ``limits`` from now on (start and reload); windows keep their recent history."""
        if len(limits.symbols) != self.symbol_count:
            raise ValueError(f"limits for {len(limits.symbols)} symbols, the layout has {self.symbol_count}")
        old = self.limits
        self.limits = limits
        sector_of = [limits.sector_id_of(s) if limits.symbols[s] is not None else 0 for s in range(self.symbol_count)]
        sector_limit = [limits.sectors[name] for name in limits.sector_names]
        # one tuple per symbol, unpacked in one step by the check
        self.limit_rows = [None if sl is None else
                            (sl.max_shares, sl.max_notional, sl.min_shares, sl.round_lot, sl.tick,
                             _collar_divisor(sl.collar_ppm), sl.collar_ppm, sl.collar_abs, sl.max_long, sl.max_short,
                             sector_of[s], sector_limit[sector_of[s]], sl.min_price, sl.max_price)
                            for s, sl in enumerate(limits.symbols)]
        # what the order flags need, looked at only when an order sets one (``_check_flags``)
        self.flag_rules = ([sl is not None and sl.allow_short_sell for sl in limits.symbols], limits.allow_hidden,
                           limits.allow_iso)
        self._apply_symbol_kills()
        self.max_gross = limits.max_gross_notional
        self.max_net = limits.max_net_notional
        self.leverage_notional = limits.leverage_notional
        self.max_daily_loss = limits.max_daily_loss
        self.max_drawdown = limits.max_drawdown
        self.max_open_orders = limits.max_open_orders
        self.allow_market_orders = limits.allow_market_orders
        # the pool bounds open orders too: beyond it nothing is approved (snapshot orders still fit)
        self.global_row = (min(limits.max_open_orders, self.portfolio.order_capacity), limits.allow_market_orders,
                           min(limits.max_gross_notional, limits.leverage_notional), limits.max_net_notional,
                           limits.prevent_self_match)
        self.market_hours = limits.market_hours
        self.hours_valid_until_ns = self.hours_valid_from_ns = 0
        self.hours_open = True
        if old is None:
            self.rate = SlidingWindow(limits.max_messages, limits.rate_window_ns)
            self.duplicates = DuplicateFilter(limits.max_identical_orders, limits.duplicate_window_ns)
        else:
            self.rate = self.rate.resized(limits.max_messages, limits.rate_window_ns)
            self.duplicates.reconfigure(limits.max_identical_orders, limits.duplicate_window_ns)
        self.seen_client_ids = self.duplicates.seen_client_ids
        self.identical = self.duplicates.identical
        self.control.configure_throttle(limits.throttle_kill_trips, limits.throttle_kill_window_ns)
        self.portfolio.set_sectors(sector_of, len(sector_limit))
        self._new_peak(self.peak_pnl)

    # ------------------------------------------------------------------ one symbol's kill switch

    def kill_symbol(self, s: int, operator: str, now: int, reason: str = "MANUAL") -> bool:
        """Latch symbol ``s``'s kill switch (``TradingControl.kill_symbol``): its new orders and replaces
        are SYMBOL_KILLED from now on. False if latched already."""
        if not self.control.kill_symbol(s, self.symbols[s], now, operator, reason):
            return False
        self._apply_symbol_kills()
        return True

    def reset_symbol(self, s: int, operator: str, now: int) -> bool:
        """Unlatch symbol ``s`` (a named reset; ``TradingControl.reset_symbol``)."""
        if not self.control.reset_symbol(s, self.symbols[s], operator, now):
            return False
        self._apply_symbol_kills()
        return True

    def restore_symbol_kill(self, s: int, reason: str, operator: str, t_ns: int, now: int) -> None:
        """Symbol ``s`` was latched when the state file was written: latched again."""
        self.control.restore_symbol_kill(s, self.symbols[s], reason, operator, t_ns, now)
        self._apply_symbol_kills()

    def _apply_symbol_kills(self) -> None:
        """The check's rows: the limits' rows, with KILLED_ROW for each latched symbol that has limits.
        The check then finds a latched symbol with the test it makes anyway (``if not row``): a
        per-symbol kill costs the orders of other symbols nothing."""
        kills = self.control.symbol_kills
        self.symbol_rows = [KILLED_ROW if row is not None and s in kills else row
                            for s, row in enumerate(self.limit_rows)]

    # ------------------------------------------------------------------ market state

    def read_market(self, s: int) -> tuple[int, int, int, int, int, int]:
        """(bid, ask, last trade, flags, trading state, last good mark) of one consistent copy of the slot."""
        offset = self._ms_seq_offsets[s]
        load = self._ms_load
        before = load(offset)
        values = self._ms_unpack(self._ms_buffer, offset)
        if before & 1 or load(offset) != before:
            return self._read_market_slow(s)
        return values

    def _read_market_slow(self, s: int) -> tuple[int, int, int, int, int, int]:
        """A write was in progress: the reader's retrying read (a dead writer's slot reads as stale)."""
        self.torn_reads += 1
        try:
            raw = self.market.read_raw(s)
        except Exception:  # noqa: BLE001 - TornRead: the feed died mid-write; the book is not to be trusted
            return 0, 0, 0, BOOK_FLAG_STALE, 0, 0
        i = _FIELD_INDEX
        return (raw[i["bid_price"]], raw[i["ask_price"]], raw[i["last_trade_price"]], raw[i["flags"]],
                raw[i["trading_state"]], raw[i["mark_price"]])

    def refresh_marks(self) -> None:
        """Mark every symbol at its good mark, or at the last good one while its book is bad (the
        slow path). ``marks_old``: how many symbols are marked at an old price now."""
        portfolio = self.portfolio
        old_count = 0
        for s in range(self.symbol_count):
            bid, ask, last, flags, _state, last_good = self.read_market(s)
            mark = good_mark(bid, ask, last, flags)      # mark_of, unrolled: this runs every 10 ms
            if not mark:
                old_count += 1
                mark = last_good
            if mark:
                portfolio.set_mark(s, mark)
        self.marks_old = old_count

    def _refresh_hours(self, now: int) -> None:
        """Open or closed, and until when that holds (asked again only then, or if the clock went back)."""
        self.hours_open, self.hours_valid_until_ns = self.market_hours.state_at(now)
        self.hours_valid_from_ns = now

    # ------------------------------------------------------------------ loss limits

    def _new_peak(self, pnl: int) -> None:
        """The day's P&L peak (drawdown is measured from it) and the floor below which the kill switch trips."""
        self.peak_pnl = pnl
        self.loss_floor = max(-self.max_daily_loss, pnl - self.max_drawdown)

    def check_loss(self, now: int) -> int:
        """0, or DAILY_LOSS / DRAWDOWN after latching the kill switch. Updates the day's peak."""
        pnl = self.portfolio.realized_total + self.portfolio.unrealized_total
        if pnl > self.peak_pnl:
            self._new_peak(pnl)
        if pnl < -self.max_daily_loss:
            self.control.trip(DAILY_LOSS, now, pnl)
            return _DAILY_LOSS
        if self.peak_pnl - pnl > self.max_drawdown:
            self.control.trip(DRAWDOWN, now, pnl - self.peak_pnl)
            return _DRAWDOWN
        return 0

    # ------------------------------------------------------------------ the check set

    def check(self, action: int, client_order_id: int, orig_client_order_id: int, symbol_id: int, side: int,
              shares: int, price: int, time_in_force: int, now: int, display: int = 0, capacity: int = 0,
              minimum_quantity: int = 0, intermarket_sweep: int = 0) -> int:
        """0 to approve, else the RiskReason of the first failing check. Changes no state except the
        kill switch (loss limits, repeated throttling) and the day's peak P&L. The OUCH flags
        (OrderIntent's display, capacity, minimum_quantity, intermarket_sweep) default to a plain order.

        One flat function on purpose: every call and attribute lookup costs tens of ns in CPython,
        and this runs for every order (see ``appliance bench risk``).
        """
        if action != NEW and action != REPLACE:
            return 0 if action == CANCEL or action == CANCEL_ALL or action == SNAPSHOT else _BAD_ORDER  # cancels pass
        # 1. well-formed
        if (side != BUY and side != SELL and side != SELL_SHORT) or not shares or not price or not client_order_id \
                or (time_in_force != TIF_DAY and time_in_force != TIF_IOC):
            return _BAD_ORDER
        if symbol_id >= self.symbol_count:
            return _UNKNOWN_SYMBOL
        row = self.symbol_rows[symbol_id]
        if not row:                  # None: the symbol has no limits; KILLED_ROW: its kill switch is latched
            if row is None:
                return _UNKNOWN_SYMBOL
            if not self.ready:
                return _NOT_READY
            return _TRADING_HALTED if self.control.state == HALTED else _SYMBOL_KILLED
        # 2. the gateway's own state
        if not self.ready:
            return _NOT_READY
        control = self.control
        state = control.state
        if state == HALTED:
            return _TRADING_HALTED
        if self.market_hours is not None:
            if now >= self.hours_valid_until_ns or now < self.hours_valid_from_ns:
                self._refresh_hours(now)
            if not self.hours_open:
                return _MARKET_CLOSED
        # 3. duplicates and the order being replaced
        if client_order_id in self.seen_client_ids:
            return _DUPLICATE_CLIENT_ID
        portfolio = self.portfolio
        buy = side == BUY
        if action == REPLACE:
            order = portfolio.orders.get(orig_client_order_id)
            if order is None or order.replacement_id:
                return _UNKNOWN_ORDER
            if order.symbol_id != symbol_id or order.buy != buy or orig_client_order_id == client_order_id:
                return _BAD_ORDER
            added = shares - order.worst if shares > order.worst else 0
        else:
            added = shares
        # 4. size and price format
        (max_shares, max_notional, min_shares, round_lot, tick, collar_divisor, collar_ppm, collar_abs, max_long,
         max_short, sector, sector_limit, min_price, max_price) = row
        if shares < min_shares:
            return _MIN_SIZE
        if shares > max_shares:
            return _MAX_SHARES
        if round_lot and shares % round_lot:
            return _ROUND_LOT
        max_open_orders, allow_market_orders, gross_cap, max_net, prevent_self_match = self.global_row
        market_order = price == MARKET_PRICE
        if market_order:
            if not allow_market_orders:
                return _MARKET_ORDER
        elif price % tick:
            return _TICK
        elif price < min_price or price > max_price:
            return _PRICE_BAND
        if (minimum_quantity or intermarket_sweep or side == SELL_SHORT or (display and display != VISIBLE)
                or (capacity and capacity != AGENCY)):           # a plain order (0 or Y, 0 or A) skips these
            reason = self._check_flags(symbol_id, side, shares, price, time_in_force, display, capacity,
                                       minimum_quantity, intermarket_sweep)
            if reason:
                return reason
        # 5. rate and counts
        window = self.rate
        if now - window.times[window.next_index] < window.window_ns:        # SlidingWindow.full, inlined
            self.throttled += 1
            control.throttled(now)
            return _MESSAGE_RATE
        if action == NEW:
            if portfolio.open_count >= max_open_orders:
                return _MAX_OPEN_ORDERS
            window = self.identical.get((symbol_id, side, shares, price))
            if window is not None and now - window.times[window.next_index] < window.window_ns:
                return _REPEATED_ORDER
        if prevent_self_match:           # a buy at or above our own ask, a sell at or below our own bid
            if buy:
                own = portfolio.own_ask[symbol_id]
                if own != NO_ASK and (market_order or price >= own):
                    return _SELF_MATCH
            else:
                own = portfolio.own_bid[symbol_id]
                if own and (market_order or price <= own):
                    return _SELF_MATCH
        # 6. the book: usable, and the price near it
        offset = self._ms_seq_offsets[symbol_id]
        load = self._ms_load
        before = load(offset)
        bid, ask, last, flags, trading_state, _mark = self._ms_unpack(self._ms_buffer, offset)
        if before & 1 or load(offset) != before:
            bid, ask, last, flags, trading_state, _mark = self._read_market_slow(symbol_id)
        if flags & BAD_BOOK or trading_state != TRADING:
            if flags & NO_BOOK or not trading_state:
                return _BOOK_STALE
            if flags & BOOK_FLAG_HALTED or trading_state != TRADING:
                return _SYMBOL_HALTED
            return _BOOK_CROSSED
        if bid and ask:
            if bid > ask:
                return _BOOK_CROSSED
            ref = (bid + ask) >> 1
        elif last:
            ref = last
        else:
            return _NO_REFERENCE_PRICE
        if collar_divisor:                   # 5 % is ref // 20: the same floor as ref * ppm // 10**6, cheaper
            band = ref // collar_divisor
        else:
            band = ref * collar_ppm // 1_000_000 if collar_ppm else collar_abs
        if market_order:
            price = ref + band if buy else ref - band
        elif price > ref + band or price < ref - band:
            return _PRICE_COLLAR
        if shares * price > max_notional:
            return _MAX_NOTIONAL
        # 7. loss: realized + unrealized (at the marks of the last housekeeping pass) against the floor
        pnl = portfolio.realized_total + portfolio.unrealized_total
        if pnl > self.peak_pnl:
            self._new_peak(pnl)
        if pnl < self.loss_floor:
            return self.check_loss(now)
        # 8-9. trading state REDUCING, then the worst-case position (shares)
        position = portfolio.position[symbol_id]
        if buy:
            worst = position + portfolio.open_buy[symbol_id] + added
            if added and state == REDUCING and worst > 0:
                return _TRADING_REDUCING
            if worst > max_long:
                return _MAX_LONG
        else:
            worst = position - portfolio.open_sell[symbol_id] - added
            if added and state == REDUCING and worst < 0:
                return _TRADING_REDUCING
            if -worst > max_short:
                return _MAX_SHORT
        if not added:
            return 0                 # a replace that does not grow the order adds no exposure
        # 10. exposure: this symbol revalued at the reference price; only an increase can be denied.
        # The symbol's gross is its larger worst-case side: the order grows it only if its side
        # becomes (or is) the larger one.
        if buy:
            grows = worst > portfolio.open_sell[symbol_id] - position
            net_over = portfolio.long_total - portfolio.long_notional[symbol_id] + worst * ref > max_net
        else:
            grows = -worst > position + portfolio.open_buy[symbol_id]
            net_over = portfolio.short_total - portfolio.short_notional[symbol_id] + worst * ref < -max_net
        if not grows:
            return _NET_EXPOSURE if net_over else 0
        gross_delta = (worst if buy else -worst) * ref - portfolio.gross_notional[symbol_id]
        gross_total = portfolio.gross_total + gross_delta
        if gross_total > gross_cap and gross_total > self.max_gross:          # gross_cap: min(gross, leverage)
            return _GROSS_EXPOSURE
        if net_over:
            return _NET_EXPOSURE
        if portfolio.sector_gross[sector] + gross_delta > sector_limit:
            return _SECTOR_CONCENTRATION
        if gross_total > gross_cap:
            return _LEVERAGE
        return 0

    def _check_flags(self, symbol_id: int, side: int, shares: int, price: int, time_in_force: int, display: int,
                     capacity: int, minimum_quantity: int, intermarket_sweep: int) -> int:
        """The order's OUCH flags against the limits (off the plain order's path: called only when one is set)."""
        if display not in DISPLAYS or capacity not in CAPACITIES or intermarket_sweep not in (0, 1):
            return _BAD_ORDER
        allow_short_sell, allow_hidden, allow_iso = self.flag_rules
        if side == SELL_SHORT and not allow_short_sell[symbol_id]:
            return _SHORT_SALE
        if display == HIDDEN and not allow_hidden:
            return _HIDDEN_ORDER
        if intermarket_sweep and not allow_iso:
            return _ISO_ORDER
        if minimum_quantity and minimum_quantity_problem(shares, minimum_quantity, time_in_force, price):
            return _MIN_QUANTITY
        return 0

    # ------------------------------------------------------------------ booking

    def held_reducing(self, action: int, orig_client_order_id: int, symbol_id: int, side: int, shares: int) -> int:
        """Step 8 for a strategy held in REDUCING of its own (``Strategy.request_reducing``; the risk agent's
        ``strategies_reducing``, the backtest's): TRADING_REDUCING for an intent ``check`` approved that would
        grow the symbol's worst-case position, else 0. The one rule: the agent and the backtest both ask it."""
        if self.grows_position(action, orig_client_order_id, symbol_id, side, shares):
            return _TRADING_REDUCING
        return 0

    def grows_position(self, action: int, orig_client_order_id: int, symbol_id: int, side: int, shares: int) -> bool:
        """Would this NEW or REPLACE (one ``check`` approved) grow the symbol's worst-case position? The
        REDUCING test of step 8 (``held_reducing``)."""
        if action != NEW and action != REPLACE:
            return False
        portfolio = self.portfolio
        if action == REPLACE:
            order = portfolio.orders.get(orig_client_order_id)
            worst_before = order.worst if order is not None else 0
            added = shares - worst_before if shares > worst_before else 0
        else:
            added = shares
        if not added:
            return False
        position = portfolio.position[symbol_id]
        if side == BUY:
            return position + portfolio.open_buy[symbol_id] + added > 0
        return position - portfolio.open_sell[symbol_id] - added < 0

    def record(self, action: int, client_order_id: int, orig_client_order_id: int, symbol_id: int, side: int,
               shares: int, price: int, strategy_id: int, now: int) -> None:
        """Book an intent that passed ``check``. Every message it sends counts in the rate window: a
        NEW, a REPLACE or a CANCEL one, a CANCEL_ALL one per order the OMS will cancel for it (the
        strategy's open orders in the symbol, or in every symbol, pending replacements included);
        cancels over the rate still go out (counted in ``cancels_over_rate``)."""
        rate = self.rate
        if action == NEW:
            self.portfolio.add_order(client_order_id, symbol_id, side, shares, price, strategy_id)
            self.duplicates.seen_client_ids.add(client_order_id)
            self.duplicates.record_order((symbol_id, side, shares, price), now)
            self.approved += 1
            rate.record(now)
        elif action == REPLACE:
            portfolio = self.portfolio
            portfolio.add_replace(portfolio.orders[orig_client_order_id], client_order_id, shares, price)
            self.duplicates.seen_client_ids.add(client_order_id)
            self.approved += 1
            rate.record(now)
        elif action == CANCEL or action == CANCEL_ALL:
            # a cancel is one message to the venue; a cancel-all is one per order the OMS will cancel
            messages = 1 if action == CANCEL else self.portfolio.cancel_all_size(strategy_id, symbol_id)
            self.cancels += 1
            over = messages - rate.limit if messages > rate.limit else 0     # beyond a whole window: all over
            for _ in range(messages - over):
                if rate.full(now):
                    over += 1
                rate.record(now)
            if over:
                self.cancels_over_rate += over
                self.throttled += over

    def decide(self, action: int, client_order_id: int, orig_client_order_id: int, symbol_id: int, side: int,
               shares: int, price: int, time_in_force: int, strategy_id: int, now: int, display: int = 0,
               capacity: int = 0, minimum_quantity: int = 0, intermarket_sweep: int = 0) -> int:
        """``check`` and, when it passes, ``record``: what the agent does with every intent."""
        reason = self.check(action, client_order_id, orig_client_order_id, symbol_id, side, shares, price,
                            time_in_force, now, display, capacity, minimum_quantity, intermarket_sweep)
        if not reason:
            self.record(action, client_order_id, orig_client_order_id, symbol_id, side, shares, price, strategy_id,
                        now)
        return reason

    # ------------------------------------------------------------------ execution reports

    def on_report(self, event: int, client_order_id: int, orig_client_order_id: int, symbol_id: int, side: int,
                  shares: int, price: int, leaves: int, position: int, cost_basis: int, realized: int,
                  strategy_id: int, now: int) -> int:
        """Apply one ExecutionReport from the OMS, in ring order (during a rebuild too: the snapshot
        that follows includes it); returns a ``state`` result code."""
        return self.portfolio.on_report(event, client_order_id, orig_client_order_id, symbol_id, leaves, price,
                                        position, cost_basis, realized, side, strategy_id)

    def on_snapshot(self, kind: int, client_order_id: int, orig_client_order_id: int, symbol_id: int, side: int,
                    leaves: int, price: int, position: int, cost_basis: int, realized: int, strategy_id: int,
                    now: int) -> int:
        """Apply one RiskSnapshot record from the OMS (``codes.SnapshotKind``); returns a ``state`` result code.

        The rebuild rule: the first snapshot record after (re)start clears positions and open
        orders (whatever came before it is included in the snapshot); an ORDER naming the order it
        replaces is that order's pending replace (``Portfolio.finish_snapshot``); END makes risk
        ready. Snapshot records arriving once risk is ready (the OMS answering a repeated request)
        are ignored: approvals made since would otherwise be forgotten. An order with client id 0
        is a BAD_REPORT, yet its shares are counted (``state``'s module text); an unknown kind is
        a BAD_REPORT that changes nothing.
        """
        if not SNAPSHOT_POSITION <= kind <= SNAPSHOT_END:
            return BAD_REPORT
        if self.ready:
            self.snapshot_reports_ignored += 1
            return SNAPSHOT_IGNORED
        portfolio = self.portfolio
        if not self.in_snapshot:
            portfolio.clear()
            self.in_snapshot = True
        if kind == SNAPSHOT_END:
            portfolio.finish_snapshot()
            self.in_snapshot = False
            self.snapshots_applied += 1
            self.mark_ready(now)
            return SNAPSHOT_COMPLETE
        if not 0 <= symbol_id < self.symbol_count:
            return BAD_REPORT
        if kind == SNAPSHOT_POSITION:
            portfolio.snapshot_position(symbol_id, position, cost_basis, realized)
            return SNAPSHOT_APPLIED
        if side != BUY and side != SELL and side != SELL_SHORT:
            return BAD_REPORT
        portfolio.snapshot_order(client_order_id, symbol_id, side, leaves, price, strategy_id, orig_client_order_id)
        if not client_order_id:
            return BAD_REPORT                                  # counted all the same (fail closed)
        self.seen_client_ids.add(client_order_id)
        return SNAPSHOT_APPLIED

    def restart_rebuild(self) -> None:
        """Approve nothing until a (new) snapshot has been applied."""
        self.ready = False
        self.in_snapshot = False

    # ------------------------------------------------------------------ housekeeping

    def housekeeping(self, now: int) -> int:
        """The slow path: mark every symbol, enforce the loss limits without waiting for an order."""
        self.refresh_marks()
        if self.ready:
            return self.check_loss(now)
        return 0

    def restore_peak(self, peak: int) -> None:
        """The day's peak P&L as the state file kept it (a restart within the day)."""
        self.restored_peak = peak
        self._new_peak(peak)

    def mark_ready(self, now: int) -> None:
        """The state is rebuilt: marks refreshed; the day's peak is the rebuilt P&L, or the peak the
        state file kept if that is higher (a restart does not forgive a drawdown: the next
        ``check_loss`` measures the rebuilt P&L against it)."""
        self.refresh_marks()
        pnl = self.portfolio.pnl()
        restored = self.restored_peak
        self._new_peak(pnl if restored is None or pnl > restored else restored)
        self.ready = True
        self.control.ready(now)

