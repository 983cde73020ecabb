"""One symbol's order book: resting orders in price levels, best price first, time order within.

Layout, chosen for the matching loop:

- ``VenueOrder``: one order at the venue, resting (or once resting); ``leaves`` is what can still
  execute. (``RestingOrder`` is the read-only snapshot of a live one that ``Book.resting`` hands out.)
- ``Level``: a ``deque`` of orders at one price in arrival order, with the live shares and
  live order count kept up to date. A canceled order in the middle of a queue is not
  removed at once (that would be O(n)): its ``leaves`` drops to 0, the level counts it as
  dead, and the matching loop or a compaction pops it later. Cancels at either end of the
  queue (the usual case) remove the order at once.
- ``BookSide``: ``levels`` price -> Level and ``keys``, the level prices as a sorted list with
  the best at the *end* (bids: price; asks: -price), so the touch is ``keys[-1]``, a swept
  level is ``keys.pop()``, and a new level near the touch is a short ``insort``.
- ``Book``: both sides, the live orders by reference number, and the halt flag; the
  inspection methods the tests and the book-reconstruction checks use.

The engine (``matching.py``) changes books; nothing here emits events.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from typing import NamedTuple

# A level whose queue holds more dead entries than this (and more than live ones) is compacted.
COMPACT_AFTER = 32


class VenueOrder:
    """An order at the venue, resting in (or once in) a book: the engine's own, mutable.

    ``side`` is 'B' or 'S' (OUCH 'T' and 'E' become 'S'); ``entered_side`` is as sent."""

    __slots__ = ("ref", "firm", "token", "book", "side", "entered_side", "price", "shares", "leaves",
                 "tif", "display", "displayed", "attribution", "executed", "canceled", "replaced")

    def __init__(self, ref: int, firm, token: str, book: "Book", side: str, entered_side: str, price: int,
                 shares: int, tif: int, display: str) -> None:
        self.ref = ref
        self.firm = firm                  # the engine's per-firm record (``matching.Firm``)
        self.token = token
        self.book = book
        self.side = side
        self.entered_side = entered_side
        self.price = price
        self.shares = shares              # entered shares
        self.leaves = shares
        self.tif = tif
        self.display = display
        self.displayed = display != "N"
        self.attribution = firm.name if display in ("A", "L") else None
        self.executed = 0
        self.canceled = 0
        self.replaced = 0                 # leaves handed over to a replacement order

    def __repr__(self) -> str:
        return (f"VenueOrder(ref={self.ref}, firm={self.firm.name!r}, token={self.token!r}, side={self.side!r}, "
                f"price={self.price}, leaves={self.leaves}/{self.shares})")


class Level:
    """The orders at one price, in time priority."""

    __slots__ = ("price", "orders", "shares", "count", "dead")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[VenueOrder] = deque()
        self.shares = 0                   # live shares at this price
        self.count = 0                    # live orders in ``orders``
        self.dead = 0                     # entries of ``orders`` with leaves 0, not yet popped

    def discard(self, order: VenueOrder) -> None:
        """Take a live order (``leaves`` already 0) out of the live count; pop it if it is at an end."""
        self.count -= 1
        orders = self.orders
        if orders[-1] is order:
            orders.pop()
        elif orders[0] is order:
            orders.popleft()
        else:
            self.dead += 1
            if self.dead > COMPACT_AFTER and self.dead > self.count:
                self.orders = deque(o for o in orders if o.leaves)
                self.dead = 0


class BookSide:
    """One side of a book. ``sign`` is +1 for bids and -1 for asks: ``keys`` holds ``sign * price``."""

    __slots__ = ("side", "sign", "levels", "keys")

    def __init__(self, side: str) -> None:
        self.side = side
        self.sign = 1 if side == "B" else -1
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []

    def append(self, order: VenueOrder) -> None:
        """Put a live order at the back of its price level."""
        price = order.price
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = Level(price)
            insort(self.keys, self.sign * price)
        level.orders.append(order)
        level.shares += order.leaves
        level.count += 1

    def remove(self, order: VenueOrder) -> None:
        """Take a live order off the side in full; its ``leaves`` becomes 0 (the caller has kept it)."""
        level = self.levels[order.price]
        level.shares -= order.leaves
        order.leaves = 0
        level.discard(order)
        if not level.count:
            self.drop_level(level.price)

    def drop_level(self, price: int) -> None:
        del self.levels[price]
        keys = self.keys
        key = self.sign * price
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]

    def best(self) -> int | None:
        return self.keys[-1] * self.sign if self.keys else None

    def depth(self, displayed_only: bool = False) -> list[tuple[int, int]]:
        """(price, shares) per level, best first; with ``displayed_only`` the levels as the ITCH feed
        shows them (non-displayed orders left out, empty levels skipped)."""
        sign, levels = self.sign, self.levels
        out = []
        for key in reversed(self.keys):
            level = levels[key * sign]
            if displayed_only:
                shares = sum(o.leaves for o in level.orders if o.displayed)
                if shares:
                    out.append((level.price, shares))
            else:
                out.append((level.price, level.shares))
        return out

    def queue(self, price: int) -> list[int]:
        """Reference numbers of the live orders at ``price``, in time priority."""
        level = self.levels.get(price)
        return [] if level is None else [o.ref for o in level.orders if o.leaves]


class RestingOrder(NamedTuple):
    """A live order as the tests and reports see it."""
    ref: int
    firm: str
    token: str
    side: str
    price: int
    leaves: int
    displayed: bool


class Book:
    """One symbol's book."""

    __slots__ = ("symbol", "bid_side", "ask_side", "orders", "halted")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bid_side = BookSide("B")
        self.ask_side = BookSide("S")
        self.orders: dict[int, VenueOrder] = {}      # live orders by reference number
        self.halted = False

    # ---- inspection (not used by the matching loop)

    def bids(self, displayed_only: bool = False) -> list[tuple[int, int]]:
        """Aggregated bid levels (price, shares), best (highest) first."""
        return self.bid_side.depth(displayed_only)

    def asks(self, displayed_only: bool = False) -> list[tuple[int, int]]:
        """Aggregated ask levels (price, shares), best (lowest) first."""
        return self.ask_side.depth(displayed_only)

    def best_bid(self) -> int | None:
        return self.bid_side.best()

    def best_ask(self) -> int | None:
        return self.ask_side.best()

    def resting(self) -> dict[int, RestingOrder]:
        """Every live order by reference number."""
        return {ref: RestingOrder(ref, o.firm.name, o.token, o.side, o.price, o.leaves, o.displayed)
                for ref, o in self.orders.items()}

    def queue(self, side: str, price: int) -> list[int]:
        """Reference numbers at one price on one side ('B' or 'S'), in time priority."""
        return (self.bid_side if side == "B" else self.ask_side).queue(price)

    def __repr__(self) -> str:
        return f"Book({self.symbol!r}, bids={self.bids()[:5]}, asks={self.asks()[:5]}, halted={self.halted})"
