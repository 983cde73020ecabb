"""One symbol's order book as the ITCH feed describes it: orders by reference, aggregated levels.

Layout, chosen for the feed's per-message path:

- ``_orders``: order reference -> ``[is_buy, price, shares]`` (a list, so a partial
  execution or cancel changes it in place).
- per side, ``price -> total shares`` and ``price -> orders resting there`` (a level exists only
  while its shares are > 0; its order count moves only when an order arrives or leaves, so it
  changes only with the level's shares and never alone decides whether the top changed) and
  the sorted level *keys*, best first at index 0: bids store ``-price``, asks ``price``, so
  both sides sort ascending and "is this level in the top ``depth``" is one comparison
  with ``keys[depth - 1]``.

Every operation returns True exactly when the top ``depth`` levels (price or size, either
side) changed: that is when the feed publishes a book update. Bad data never raises: it is
counted in ``counters`` (an ``array('q')`` indexed by the constants below, usually shared
with the ``BookSet`` so the agent copies one array per duty cycle), named in ``last_error``
and, when the book may now differ from the exchange's, latched in ``inconsistent`` (the feed
marks the book stale until the caller calls ``reset``):

- ``unknown_order``: E/C/X/D/U naming a reference this book does not hold (ignored; latched);
- ``over_execution``: E/C/X for more shares than the order holds (the order is removed; latched);
- ``duplicate_add``: A/F or U's new reference already live (the new order is refused; latched:
  either a delete was missed or the new order is missing);
- ``bad_shares``: A/F/U with 0 shares (nothing is stored: a 0-share order cannot trade).
  Not latched: the displayed book is the same either way.

``update_sequence`` counts the operations that changed the top ``depth`` (one per message,
however many levels moved).

``crossed`` and ``locked`` (best bid > / == best ask) are recomputed only when a best
price can have moved (a level inserted or removed at index 0); transitions into either
state are counted.

``trading_state`` is b' ' (unknown) until the directory or a trading action sets it: our
exchange sends a Stock Directory for every symbol at the start of the day and a Trading
Action only on halts and resumes, so ``BookSet`` sets b'T' on the directory.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, insort

# Counter slots a book increments (BookSet appends its own after these).
UNKNOWN_ORDER, OVER_EXECUTION, DUPLICATE_ADD, BAD_SHARES, CROSSED, LOCKED = range(6)
BOOK_COUNTER_NAMES = ("unknown_order", "over_execution", "duplicate_add", "bad_shares", "crossed", "locked")

# ``last_error`` values (interned constants: setting one allocates nothing).
ERR_UNKNOWN_ORDER = "unknown_order"
ERR_OVER_EXECUTION = "over_execution"
ERR_DUPLICATE_ADD = "duplicate_add"
ERR_BAD_SHARES = "bad_shares"

_BUY = b"B"
_SELL = b"S"
_BUY_SIDE, _SELL_SIDE = _BUY[0], _SELL[0]     # codes.Side.BUY / SELL: the aggressor bytes a print carries



class OrderBook:
    """One symbol's order-level book with aggregated price levels; see the module docstring."""

    __slots__ = ("symbol_id", "symbol", "depth", "locate", "counters", "_orders", "_bid_qty", "_ask_qty",
                 "_bid_keys", "_ask_keys", "crossed", "locked", "inconsistent", "last_error", "trading_state",
                 "last_trade_price", "last_trade_shares", "trades", "last_timestamp", "update_sequence",
                 "_bid_count", "_ask_count", "last_trade_aggressor", "last_trade_timestamp")

    def __init__(self, symbol_id: int, symbol: str, depth: int, counters: array | None = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth!r}")
        if counters is not None and len(counters) < len(BOOK_COUNTER_NAMES):
            raise ValueError(f"counters needs at least {len(BOOK_COUNTER_NAMES)} slots")
        self.symbol_id = symbol_id
        self.symbol = symbol
        self.depth = depth
        self.locate: int | None = None      # the stock locate today's directory gave it (None: no directory yet)
        self.counters = counters if counters is not None else array("q", bytes(8 * len(BOOK_COUNTER_NAMES)))
        self._orders: dict[int, list] = {}
        self._bid_qty: dict[int, int] = {}
        self._ask_qty: dict[int, int] = {}
        self._bid_count: dict[int, int] = {}   # price -> orders at that level (keys as the _qty dicts')
        self._ask_count: dict[int, int] = {}
        self._bid_keys: list[int] = []      # -price, ascending: best bid first
        self._ask_keys: list[int] = []      # price, ascending: best ask first
        self.crossed = False
        self.locked = False
        self.inconsistent = False
        self.last_error: str | None = None
        self.trading_state = b" "
        self.last_trade_price = 0
        self.last_trade_shares = 0
        self.trades = 0                     # prints so far, never reset: the BookUpdate's trade_sequence
        self.last_trade_aggressor = 0       # codes.Side byte of the last print's taker (0: unknown)
        self.last_trade_timestamp = 0       # ITCH ns since midnight of the last print
        self.last_timestamp = 0             # ITCH ns since midnight of the last message applied (set by BookSet)
        self.update_sequence = 0            # top-``depth`` changes so far

    # ------------------------------------------------------------------ internals

    def _error(self, kind: str, slot: int, latch: bool) -> None:
        self.counters[slot] += 1
        self.last_error = kind
        if latch:
            self.inconsistent = True

    def _best_moved(self) -> None:
        """Recompute crossed/locked after a level appeared or vanished at a best price."""
        bk = self._bid_keys
        ak = self._ask_keys
        if bk and ak:
            spread = ak[0] + bk[0]          # best ask - best bid
            crossed = spread < 0
            locked = spread == 0
        else:
            crossed = locked = False
        if crossed is not self.crossed:
            self.crossed = crossed
            if crossed:
                self.counters[CROSSED] += 1
        if locked is not self.locked:
            self.locked = locked
            if locked:
                self.counters[LOCKED] += 1

    def _insert(self, is_buy: bool, price: int, shares: int, orders: int = 1) -> bool:
        """Add ``shares`` (and ``orders``: 1 for a new order, 0 for a size change) at ``price`` on one side;
        True if the top ``depth`` changed."""
        if is_buy:
            qty = self._bid_qty
            count = self._bid_count
            keys = self._bid_keys
            key = -price
        else:
            qty = self._ask_qty
            count = self._ask_count
            keys = self._ask_keys
            key = price
        level = qty.get(price)
        depth = self.depth
        if level is not None:
            qty[price] = level + shares
            if orders:
                count[price] += orders
            return len(keys) <= depth or key <= keys[depth - 1]
        qty[price] = shares
        count[price] = orders
        n = len(keys)
        if not n or key < keys[0]:
            keys.insert(0, key)
            self._best_moved()
            return True
        if key > keys[-1]:
            keys.append(key)
        else:
            insort(keys, key)
        return n < depth or key < keys[depth]     # keys[depth] is the old keys[depth - 1]

    def _take(self, is_buy: bool, price: int, shares: int, orders: int = 1) -> bool:
        """Remove ``shares`` (all the order still held there) and ``orders`` (1: the order leaves, 0: it
        stays smaller) from ``price``; True if the top changed."""
        if is_buy:
            qty = self._bid_qty
            count = self._bid_count
            keys = self._bid_keys
            key = -price
        else:
            qty = self._ask_qty
            count = self._ask_count
            keys = self._ask_keys
            key = price
        level = qty[price] - shares
        if level > 0:
            qty[price] = level
            if orders:
                count[price] -= orders
            depth = self.depth
            return len(keys) <= depth or key <= keys[depth - 1]
        del qty[price]
        del count[price]
        if keys[0] == key:
            del keys[0]
            self._best_moved()
            return True
        if keys[-1] == key:
            i = len(keys) - 1
            keys.pop()
        else:
            i = bisect_left(keys, key)
            del keys[i]
        return i < self.depth

    def _reduce(self, ref: int, shares: int) -> bool:
        """E, C and X: take ``shares`` off order ``ref``; the order goes when nothing is left."""
        order = self._orders.get(ref)
        if order is None:
            self._error(ERR_UNKNOWN_ORDER, UNKNOWN_ORDER, True)
            return False
        left = order[2] - shares
        if left > 0:
            if not shares:
                return False
            order[2] = left
            changed = self._take(order[0], order[1], shares, 0)
        else:
            del self._orders[ref]
            if left:
                self._error(ERR_OVER_EXECUTION, OVER_EXECUTION, True)
            changed = self._take(order[0], order[1], order[2])
        if changed:
            self.update_sequence += 1
        return changed

    # ------------------------------------------------------------------ operations (ITCH messages)

    def add(self, ref: int, is_buy: bool, price: int, shares: int) -> bool:
        """A/F. A live ``ref`` is refused (``duplicate_add``), a 0-share order ignored (``bad_shares``)."""
        orders = self._orders
        if ref in orders:
            self._error(ERR_DUPLICATE_ADD, DUPLICATE_ADD, True)
            return False
        if shares <= 0:
            self._error(ERR_BAD_SHARES, BAD_SHARES, False)
            return False
        orders[ref] = [is_buy, price, shares]
        if self._insert(is_buy, price, shares):
            self.update_sequence += 1
            return True
        return False

    def execute(self, ref: int, shares: int) -> bool:
        """E: at the resting order's price, taken by the other side; sets the last trade (unless ``ref`` is
        unknown)."""
        order = self._orders.get(ref)
        if order is not None:
            self.last_trade_price = order[1]
            self.last_trade_shares = shares
            self.last_trade_aggressor = _SELL_SIDE if order[0] else _BUY_SIDE
            self.last_trade_timestamp = self.last_timestamp
            self.trades += 1
        return self._reduce(ref, shares)

    def execute_at(self, ref: int, shares: int, price: int, printable: bool) -> bool:
        """C: the trade price is the message's; a non-printable execution leaves the last trade alone
        (it is reported again elsewhere, e.g. by a cross). The last trade is set even for an unknown
        ``ref``: the message names the price and size, so the trade is known (not its aggressor then)."""
        if printable:
            order = self._orders.get(ref)
            self.last_trade_price = price
            self.last_trade_shares = shares
            self.last_trade_aggressor = 0 if order is None else _SELL_SIDE if order[0] else _BUY_SIDE
            self.last_trade_timestamp = self.last_timestamp
            self.trades += 1
        return self._reduce(ref, shares)

    def cancel(self, ref: int, shares: int) -> bool:
        """X: reduce the order (cancelling all it holds removes it; more counts ``over_execution``)."""
        return self._reduce(ref, shares)

    def delete(self, ref: int) -> bool:
        """D."""
        order = self._orders.pop(ref, None)
        if order is None:
            self._error(ERR_UNKNOWN_ORDER, UNKNOWN_ORDER, True)
            return False
        if self._take(order[0], order[1], order[2]):
            self.update_sequence += 1
            return True
        return False

    def replace(self, old_ref: int, new_ref: int, shares: int, price: int) -> bool:
        """U: the new order keeps the old side and goes to the back of its level (priority is not
        modelled here, only levels); the old one is gone. A live ``new_ref`` is refused
        (``duplicate_add``) after the old order is removed."""
        orders = self._orders
        order = orders.pop(old_ref, None)
        if order is None:
            self._error(ERR_UNKNOWN_ORDER, UNKNOWN_ORDER, True)
            return False
        is_buy, old_price, old_shares = order
        if new_ref in orders:
            self._error(ERR_DUPLICATE_ADD, DUPLICATE_ADD, True)
            changed = self._take(is_buy, old_price, old_shares)
        elif shares <= 0:
            self._error(ERR_BAD_SHARES, BAD_SHARES, False)
            changed = self._take(is_buy, old_price, old_shares)
        else:
            order[1] = price
            order[2] = shares
            orders[new_ref] = order
            if price == old_price:        # same level, same order count: only its size moves (maybe not at all)
                delta = shares - old_shares
                if not delta:
                    return False
                changed = self._insert(is_buy, price, delta, 0) if delta > 0 else self._take(is_buy, price, -delta, 0)
            else:
                # two levels: the answer for each step is exact, and a change at the old level
                # cannot be undone by an add at another price, so "either" is exact too. One
                # message is one transition at most: the touch may pass through a state between.
                was_crossed, was_locked = self.crossed, self.locked
                counters = self.counters
                crossings, locks = counters[CROSSED], counters[LOCKED]
                changed = self._take(is_buy, old_price, old_shares)
                changed = self._insert(is_buy, price, shares) or changed
                counters[CROSSED] = crossings + (self.crossed and not was_crossed)
                counters[LOCKED] = locks + (self.locked and not was_locked)
        if changed:
            self.update_sequence += 1
        return changed

    def trade(self, price: int, shares: int, aggressor: int = 0) -> None:
        """P (and cross trades): an execution against a non-displayed order; only the last trade.
        ``aggressor``: the codes.Side byte of the taker (0: unknown, as for a cross)."""
        self.last_trade_price = price
        self.last_trade_shares = shares
        self.last_trade_aggressor = aggressor
        self.last_trade_timestamp = self.last_timestamp
        self.trades += 1

    def reset(self) -> None:
        """Forget every order and level and clear ``inconsistent`` (the caller's recovery starts here);
        trading state and last trade are kept."""
        self._orders.clear()
        self._bid_qty.clear()
        self._ask_qty.clear()
        self._bid_count.clear()
        self._ask_count.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()
        self.crossed = self.locked = self.inconsistent = False
        self.last_error = None
        self.update_sequence += 1

    # ------------------------------------------------------------------ views

    @property
    def order_count(self) -> int:
        return len(self._orders)

    def best_bid(self) -> tuple[int, int]:
        keys = self._bid_keys
        if not keys:
            return (0, 0)
        price = -keys[0]
        return (price, self._bid_qty[price])

    def best_ask(self) -> tuple[int, int]:
        keys = self._ask_keys
        if not keys:
            return (0, 0)
        price = keys[0]
        return (price, self._ask_qty[price])

    def snapshot_into(self, out, start: int = 0, counts=None) -> None:
        """Write ``4 * depth`` ints from ``out[start]``: bid prices, bid shares, ask prices, ask shares,
        best first, zero padded. ``out`` is preallocated (a list or an ``array('q')``). ``counts``: also
        write there, from index 0, the orders at each of those bid levels then each ask level, zero
        padded (``2 * depth`` ints; the feed's publish, in the same walk over the levels)."""
        depth = self.depth
        if counts is None:
            counts = [0] * (2 * depth)
        i = start
        keys = self._bid_keys
        qty = self._bid_qty
        count = self._bid_count
        n = len(keys)
        if n > depth:
            n = depth
        for k in range(n):
            price = -keys[k]
            out[i + k] = price
            out[i + depth + k] = qty[price]
            counts[k] = count[price]
        for k in range(n, depth):
            out[i + k] = 0
            out[i + depth + k] = 0
            counts[k] = 0
        i += 2 * depth
        keys = self._ask_keys
        qty = self._ask_qty
        count = self._ask_count
        n = len(keys)
        if n > depth:
            n = depth
        for k in range(n):
            price = keys[k]
            out[i + k] = price
            out[i + depth + k] = qty[price]
            counts[depth + k] = count[price]
        for k in range(n, depth):
            out[i + k] = 0
            out[i + depth + k] = 0
            counts[depth + k] = 0

    def order_counts(self, is_buy: bool) -> list[int]:
        """Every level's order count of one side, best first, as ``levels`` (tests and tools; the top ones
        also come with ``snapshot_into``)."""
        if is_buy:
            return [self._bid_count[-k] for k in self._bid_keys]
        return [self._ask_count[k] for k in self._ask_keys]

    def levels(self, is_buy: bool) -> list[tuple[int, int]]:
        """Every level of one side, (price, shares) best first (tests and tools)."""
        if is_buy:
            return [(-k, self._bid_qty[-k]) for k in self._bid_keys]
        return [(k, self._ask_qty[k]) for k in self._ask_keys]

    def orders(self) -> dict[int, tuple[bytes, int, int]]:
        """ref -> (b'B' or b'S', price, shares) of every live order (tests and tools)."""
        return {ref: (_BUY if o[0] else _SELL, o[1], o[2]) for ref, o in self._orders.items()}

    def __repr__(self) -> str:
        return (f"OrderBook({self.symbol!r}, bids={self.levels(True)[:self.depth]}, "
                f"asks={self.levels(False)[:self.depth]}, orders={len(self._orders)})")
