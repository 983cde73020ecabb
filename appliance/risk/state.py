"""What risk knows about the book: positions, open orders, exposure and P&L, by symbol id.

Per symbol (preallocated lists indexed by symbol id): the OMS's position, cost basis and
realized P&L (authoritative: copied from every ExecutionReport), the worst-case open shares on
each side, the mark (the market-state reference price) and what follows from them: worst-case
long and short notional, gross notional, unrealized P&L. Totals across symbols (and per
sector) are kept up to date incrementally, so no check ever loops over the symbols.

Open-order accounting (worst case):
* an approved NEW is open from the moment risk approves it, with all its shares, until the OMS
  reports it CANCELED with nothing left, fully EXECUTED, REJECTED or REJECTED_LOCALLY;
* an approved REPLACE keeps the order open at max(its leaves, the new size) until REPLACED
  (then the new order's leaves) or the replacement's REJECTED (back to the leaves); both prices
  count for the self-match check meanwhile;
* worst-case long = position + open buy shares; worst-case short = position - open sell shares.

The rebuild (``snapshot_order`` ... ``finish_snapshot``): the OMS sends every open order it holds.
A replacement the venue has not acknowledged yet is one of them, with ``orig_client_order_id``
naming the order it replaces (sent before or after it): it becomes that order's pending replace,
exactly as if risk had approved it, so its REPLACED or REJECTED leaves one open order. A
replacement whose original is not in the snapshot (already REPLACED: the OMS keeps the link)
is an ordinary open order.

Orders risk did not approve: orphans the OMS adopted from the venue carry client ids from
``codes.ORPHAN_CLIENT_ID_BASE`` up, one each; the first report of one with shares left opens
it, the report that leaves none closes it. A report with client id 0 names no order: a bad
report. One with shares open (a snapshot order, an ACCEPTED) is still counted, each under an
id of its own (negative, never a real one: ``orders_without_id``), because the shares are real;
nothing can close it but the next rebuild (fail closed).

Open orders live in a preallocated pool of ``OpenOrder`` records found by client order id.
"""
from __future__ import annotations

from appliance.messages.codes import ALL_SYMBOLS, ORPHAN_CLIENT_ID_BASE, ExecEvent, Side, SnapshotKind

BUY = int(Side.BUY)
SIDES = frozenset(int(side) for side in Side)
ACCEPTED = int(ExecEvent.ACCEPTED)
REPLACED = int(ExecEvent.REPLACED)
CANCELED = int(ExecEvent.CANCELED)
EXECUTED = int(ExecEvent.EXECUTED)
REJECTED = int(ExecEvent.REJECTED)
BROKEN = int(ExecEvent.BROKEN)
CANCEL_REJECTED = int(ExecEvent.CANCEL_REJECTED)
PENDING_TIMEOUT = int(ExecEvent.PENDING_TIMEOUT)
SNAPSHOT_POSITION = int(SnapshotKind.POSITION)     # RiskSnapshot.kind
SNAPSHOT_ORDER = int(SnapshotKind.ORDER)
SNAPSHOT_END = int(SnapshotKind.END)
REJECTED_LOCALLY = int(ExecEvent.REJECTED_LOCALLY)
ORDER_EVENTS = frozenset((ACCEPTED, REPLACED, CANCELED, EXECUTED, REJECTED, REJECTED_LOCALLY))
POSITION_ONLY_EVENTS = frozenset((BROKEN, CANCEL_REJECTED, PENDING_TIMEOUT))

# what on_report says about a report (the agent counts them)
APPLIED = 0
UNKNOWN_ORDER = 1        # an order event for a client order id risk does not hold open
BAD_REPORT = 2           # unknown event code, symbol id out of range, bad side, or client order id 0
SNAPSHOT_APPLIED = 3     # a snapshot POSITION / ORDER while rebuilding
SNAPSHOT_COMPLETE = 4    # snapshot END: the state is rebuilt
SNAPSHOT_IGNORED = 5     # a snapshot report while not rebuilding (an answer to a repeated request)


NO_ASK = 1 << 62                 # own_ask when we have no open ask


class OpenOrder:
    """One open order as risk counts it. ``worst`` is what it adds to its side's open shares."""

    __slots__ = ("client_order_id", "symbol_id", "buy", "side", "leaves", "pending_shares", "worst", "price",
                 "strategy_id", "replacement_id", "pending_price")

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.client_order_id = 0
        self.symbol_id = 0
        self.buy = False
        self.side = 0
        self.leaves = 0              # as the OMS last reported (or the approved size)
        self.pending_shares = 0      # the size of an approved replace not yet REPLACED (0: none)
        self.worst = 0               # max(leaves, pending_shares)
        self.price = 0
        self.strategy_id = 0
        self.replacement_id = 0      # client order id of the pending replacement
        self.pending_price = 0       # the price of that replacement (until REPLACED, either may rest)


class Portfolio:
    """Positions, open orders, exposure and P&L of every symbol; totals kept incrementally."""

    __slots__ = ("symbol_count", "position", "cost_basis", "realized", "open_buy", "open_sell", "mark",
                 "long_notional", "short_notional", "gross_notional", "unrealized", "sector_of", "sector_gross",
                 "long_total", "short_total", "gross_total", "unrealized_total", "realized_total", "orders",
                 "replacements", "open_count", "order_capacity", "free", "pool_overflow", "by_symbol",
                 "own_bid", "own_ask", "snapshot_replacements", "orders_without_id", "orphans_opened")

    def __init__(self, symbol_count: int, order_capacity: int = 4096, sector_of: list[int] | None = None,
                 sector_count: int = 1):
        self.symbol_count = n = symbol_count
        self.position = [0] * n
        self.cost_basis = [0] * n
        self.realized = [0] * n
        self.open_buy = [0] * n          # worst-case open shares per side
        self.open_sell = [0] * n
        self.mark = [0] * n              # reference price the exposure and unrealized P&L are marked at
        self.long_notional = [0] * n     # (position + open_buy) x mark
        self.short_notional = [0] * n    # (position - open_sell) x mark
        self.gross_notional = [0] * n    # max(long, -short)
        self.unrealized = [0] * n
        self.sector_of = list(sector_of) if sector_of is not None else [0] * n
        self.sector_gross = [0] * max(1, sector_count)
        self.long_total = 0              # sum of long_notional: the net exposure if every buy fills
        self.short_total = 0             # sum of short_notional: the net exposure if every sell fills
        self.gross_total = 0
        self.unrealized_total = 0
        self.realized_total = 0
        self.orders: dict[int, OpenOrder] = {}           # client order id -> open order
        self.replacements: dict[int, OpenOrder] = {}     # pending replacement id -> the order it replaces
        self.open_count = 0
        self.order_capacity = order_capacity
        self.free = [OpenOrder() for _ in range(order_capacity)]
        self.pool_overflow = 0           # snapshot orders beyond the pool (allocated, counted)
        self.by_symbol: list[set] = [set() for _ in range(n)]   # open orders per symbol
        self.own_bid = [0] * n               # our highest open bid per symbol (0: none), pending replaces included
        self.own_ask = [NO_ASK] * n          # our lowest open ask per symbol (NO_ASK: none)
        self.snapshot_replacements: list[tuple] = []   # pending replacements of the snapshot being received
        self.orders_without_id = 0           # open orders reported with client id 0 (each its own negative id)
        self.orphans_opened = 0              # orphans (ids >= ORPHAN_CLIENT_ID_BASE) opened by a live report

    # ------------------------------------------------------------------ derived values

    def refresh(self, s: int) -> None:
        """Recompute one symbol's notional and unrealized P&L and fold the change into the totals."""
        position = self.position[s]
        mark = self.mark[s]
        long_notional = (position + self.open_buy[s]) * mark
        short_notional = (position - self.open_sell[s]) * mark
        gross = long_notional if long_notional > -short_notional else -short_notional
        unrealized = position * mark - self.cost_basis[s] if mark and position else 0
        self.long_total += long_notional - self.long_notional[s]
        self.short_total += short_notional - self.short_notional[s]
        delta_gross = gross - self.gross_notional[s]
        self.gross_total += delta_gross
        self.sector_gross[self.sector_of[s]] += delta_gross
        self.unrealized_total += unrealized - self.unrealized[s]
        self.long_notional[s] = long_notional
        self.short_notional[s] = short_notional
        self.gross_notional[s] = gross
        self.unrealized[s] = unrealized

    def recompute(self) -> None:
        """Every derived value and total from scratch (after a rebuild or a limits reload)."""
        n = self.symbol_count
        self.long_notional = [0] * n
        self.short_notional = [0] * n
        self.gross_notional = [0] * n
        self.unrealized = [0] * n
        self.sector_gross = [0] * len(self.sector_gross)
        self.long_total = self.short_total = self.gross_total = self.unrealized_total = 0
        for s in range(n):
            self.refresh(s)
        self.realized_total = sum(self.realized)

    def set_sectors(self, sector_of: list[int], sector_count: int) -> None:
        self.sector_of = list(sector_of)
        self.sector_gross = [0] * max(1, sector_count)
        self.recompute()

    def set_mark(self, s: int, price: int) -> None:
        if price != self.mark[s]:
            self.mark[s] = price
            self.refresh(s)

    def pnl(self) -> int:
        """Realized plus unrealized P&L across symbols, price units x shares."""
        return self.realized_total + self.unrealized_total

    # ------------------------------------------------------------------ open orders

    def _set_worst(self, order: OpenOrder, worst: int) -> None:
        delta = worst - order.worst
        if delta:
            order.worst = worst
            s = order.symbol_id
            if order.buy:
                self.open_buy[s] += delta
            else:
                self.open_sell[s] += delta
            self.refresh(s)

    def pool_available(self) -> bool:
        return bool(self.free)

    def add_order(self, client_order_id: int, symbol_id: int, side: int, shares: int, price: int,
                  strategy_id: int) -> OpenOrder:
        """An approved NEW (or a snapshot order): open with ``shares`` from now on."""
        order = self.free.pop() if self.free else None
        if order is None:
            order = OpenOrder()
            self.pool_overflow += 1
        order.client_order_id = client_order_id
        order.symbol_id = symbol_id
        order.side = side
        order.buy = side == BUY
        order.leaves = shares
        order.pending_shares = 0
        order.worst = 0
        order.price = price
        order.strategy_id = strategy_id
        order.replacement_id = 0
        order.pending_price = 0
        self.orders[client_order_id] = order
        self.by_symbol[symbol_id].add(order)
        self._join_own_prices(order, price)           # one more order: its price joins, no loop over the symbol's
        self.open_count += 1
        self._set_worst(order, shares)
        return order

    def add_replace(self, order: OpenOrder, replacement_id: int, shares: int, price: int = 0) -> None:
        """An approved REPLACE of ``order``: worst case max(leaves, new size) until it is answered."""
        order.replacement_id = replacement_id
        order.pending_shares = shares
        had_pending, order.pending_price = order.pending_price, price
        if had_pending:
            self._own_prices(order.symbol_id)
        else:
            self._join_own_prices(order, price)       # both prices may rest now: the new one joins
        self.replacements[replacement_id] = order
        self._set_worst(order, order.leaves if order.leaves > shares else shares)

    def close(self, order: OpenOrder) -> None:
        """The order is gone (nothing left, rejected): its shares stop counting."""
        if order.replacement_id:
            self.replacements.pop(order.replacement_id, None)
        self._set_worst(order, 0)
        if self.orders.get(order.client_order_id) is order:
            del self.orders[order.client_order_id]
            self.open_count -= 1
        self.by_symbol[order.symbol_id].discard(order)
        self._own_prices(order.symbol_id)
        order.clear()
        if len(self.free) < self.order_capacity:
            self.free.append(order)

    def _set_leaves(self, order: OpenOrder, leaves: int) -> None:
        if leaves <= 0:
            self.close(order)
            return
        order.leaves = leaves
        pending = order.pending_shares
        self._set_worst(order, leaves if leaves > pending else pending)

    # ------------------------------------------------------------------ execution reports

    def set_position(self, s: int, position: int, cost_basis: int, realized: int) -> None:
        """The OMS's numbers for the symbol after an event (authoritative)."""
        if position != self.position[s] or cost_basis != self.cost_basis[s]:
            self.position[s] = position
            self.cost_basis[s] = cost_basis
            self.refresh(s)
        if realized != self.realized[s]:
            self.realized_total += realized - self.realized[s]
            self.realized[s] = realized

    def on_report(self, event: int, client_order_id: int, orig_client_order_id: int, symbol_id: int,
                  leaves: int, price: int, position: int, cost_basis: int, realized: int, side: int = 0,
                  strategy_id: int = 0) -> int:
        """Apply one ordinary ExecutionReport (not a snapshot one); returns APPLIED/UNKNOWN_ORDER/BAD_REPORT."""
        if not 0 <= symbol_id < self.symbol_count:
            return BAD_REPORT
        if event in POSITION_ONLY_EVENTS:
            self.set_position(symbol_id, position, cost_basis, realized)
            return APPLIED
        if event not in ORDER_EVENTS:
            return BAD_REPORT
        self.set_position(symbol_id, position, cost_basis, realized)
        if not client_order_id:
            if event == ACCEPTED and leaves > 0 and side in SIDES:
                self._add_without_id(symbol_id, side, leaves, price, strategy_id)
            return BAD_REPORT
        orders = self.orders
        if event == REPLACED:
            order = self.replacements.pop(client_order_id, None)
            if order is None:
                order = orders.get(orig_client_order_id)
                if order is None:
                    order = orders.get(client_order_id)      # open on its own (its original was gone at a rebuild)
                    if order is None:
                        return self._open_orphan(client_order_id, symbol_id, side, leaves, price, strategy_id)
                    order.price = price
                    self._own_prices(symbol_id)
                    self._set_leaves(order, leaves)
                    return APPLIED
            other = orders.get(client_order_id)
            if other is not None and other is not order:
                self.close(other)                            # never two entries for one client order id
            if orders.get(order.client_order_id) is order:
                del orders[order.client_order_id]
            if order.replacement_id and order.replacement_id != client_order_id:
                self.replacements.pop(order.replacement_id, None)      # replaced by an id risk did not approve
            order.client_order_id = client_order_id
            order.replacement_id = 0
            order.pending_shares = 0
            order.pending_price = 0
            order.price = price
            self._own_prices(symbol_id)
            orders[client_order_id] = order
            self._set_leaves(order, leaves)
            return APPLIED
        if event == REJECTED or event == REJECTED_LOCALLY:
            order = self.replacements.pop(client_order_id, None)
            if order is not None:            # the replace was refused: the order keeps its leaves
                order.replacement_id = 0
                order.pending_shares = 0
                order.pending_price = 0
                self._own_prices(order.symbol_id)
                self._set_worst(order, order.leaves)
                return APPLIED
            order = orders.get(client_order_id)
            if order is None:
                return UNKNOWN_ORDER
            self.close(order)
            return APPLIED
        order = orders.get(client_order_id)
        if order is None:
            return self._open_orphan(client_order_id, symbol_id, side, leaves, price, strategy_id)
        self._set_leaves(order, leaves)      # ACCEPTED, EXECUTED, CANCELED: what stays open
        return APPLIED

    def _open_orphan(self, client_order_id: int, symbol_id: int, side: int, leaves: int, price: int,
                     strategy_id: int) -> int:
        """A report for an order risk does not hold: an orphan of the OMS's opens with its leaves."""
        if client_order_id < ORPHAN_CLIENT_ID_BASE or leaves <= 0:
            return UNKNOWN_ORDER
        if side not in SIDES:
            return BAD_REPORT
        self.add_order(client_order_id, symbol_id, side, leaves, price, strategy_id)
        self.orphans_opened += 1
        return APPLIED

    def _add_without_id(self, symbol_id: int, side: int, leaves: int, price: int, strategy_id: int) -> None:
        """Shares open under client id 0: counted under an id no report can name (see the module's text)."""
        self.orders_without_id += 1
        self.add_order(-self.orders_without_id, symbol_id, side, leaves, price, strategy_id)

    # ------------------------------------------------------------------ rebuild from the OMS

    def clear(self) -> None:
        """Forget positions and open orders (the start of a snapshot)."""
        for order in list(self.orders.values()):
            self.close(order)
        self.replacements.clear()
        self.snapshot_replacements = []
        n = self.symbol_count
        self.by_symbol = [set() for _ in range(n)]
        self.own_bid = [0] * n
        self.own_ask = [NO_ASK] * n
        self.position = [0] * n
        self.cost_basis = [0] * n
        self.realized = [0] * n
        self.open_buy = [0] * n
        self.open_sell = [0] * n
        self.open_count = 0
        self.recompute()

    def snapshot_position(self, s: int, position: int, cost_basis: int, realized: int) -> None:
        self.set_position(s, position, cost_basis, realized)

    def snapshot_order(self, client_order_id: int, symbol_id: int, side: int, leaves: int, price: int,
                       strategy_id: int, orig_client_order_id: int = 0) -> None:
        """One open order of the OMS's snapshot. One that names the order it replaces waits for
        ``finish_snapshot`` (its original may come later). Client id 0: counted on its own."""
        if not client_order_id:
            if leaves > 0:
                self._add_without_id(symbol_id, side, leaves, price, strategy_id)
            return
        if orig_client_order_id and orig_client_order_id != client_order_id:
            self.snapshot_replacements.append((client_order_id, orig_client_order_id, symbol_id, side, leaves, price,
                                               strategy_id))
            return
        self._snapshot_open(client_order_id, symbol_id, side, leaves, price, strategy_id)

    def _snapshot_open(self, client_order_id: int, symbol_id: int, side: int, leaves: int, price: int,
                       strategy_id: int) -> None:
        existing = self.orders.get(client_order_id)
        if existing is not None:
            self.close(existing)
        if leaves > 0:
            self.add_order(client_order_id, symbol_id, side, leaves, price, strategy_id)

    def finish_snapshot(self) -> None:
        """SNAPSHOT_END: each replacement becomes the pending replace of its original when that is open
        (same symbol and side, not being replaced already); otherwise it is an open order of its own
        (counted twice rather than not at all)."""
        pending, self.snapshot_replacements = self.snapshot_replacements, []
        for client_order_id, orig, symbol_id, side, leaves, price, strategy_id in pending:
            original = self.orders.get(orig)
            if (original is not None and not original.replacement_id and original.symbol_id == symbol_id
                    and original.side == side and client_order_id not in self.orders and leaves > 0):
                self.add_replace(original, client_order_id, leaves, price)
            else:
                self._snapshot_open(client_order_id, symbol_id, side, leaves, price, strategy_id)

    def cancel_all_size(self, strategy_id: int, symbol_id: int) -> int:
        """How many cancels the OMS sends for a cancel-all of ``strategy_id`` in ``symbol_id`` (or in
        every symbol): one per open order of the strategy there, and one more for each pending
        replacement (the OMS holds it as an open order of its own)."""
        if 0 <= symbol_id < self.symbol_count:
            orders = self.by_symbol[symbol_id]
        elif symbol_id == ALL_SYMBOLS:
            orders = self.orders.values()
        else:
            return 0
        count = 0
        for order in orders:
            if order.strategy_id == strategy_id:
                count += 2 if order.replacement_id else 1
        return count

    def _join_own_prices(self, order: OpenOrder, price: int) -> None:
        """``_own_prices`` after one more resting price of ``order`` (a new order or a replace's),
        without the loop: the best bid can only rise, the best ask only fall."""
        s = order.symbol_id
        if order.buy:
            if price > self.own_bid[s]:
                self.own_bid[s] = price
        elif price and price < self.own_ask[s]:
            self.own_ask[s] = price

    def _own_prices(self, s: int) -> None:
        """Our best bid and ask in ``s``, for the self-match check: recomputed when an order of the
        symbol closes or is replaced (rarer than checks; an opening one joins: ``_join_own_prices``).
        While a replace is pending either price may rest, so both count."""
        bid, ask = 0, NO_ASK
        for order in self.by_symbol[s]:
            price, pending = order.price, order.pending_price
            if order.buy:
                if price > bid:
                    bid = price
                if pending > bid:
                    bid = pending
            else:
                if price < ask:
                    ask = price
                if pending and pending < ask:
                    ask = pending
        self.own_bid[s] = bid
        self.own_ask[s] = ask

    # ------------------------------------------------------------------ views (tests, gauges)

    def open_orders(self) -> dict[int, tuple]:
        """client order id -> (symbol id, side, leaves, worst) of every open order."""
        return {cid: (o.symbol_id, o.side, o.leaves, o.worst) for cid, o in self.orders.items()}
