"""The simulated exchange's matching engine: price-time priority, many symbols, no I/O.

Each operation (``enter``, ``cancel``, ``replace``, ``halt``, ``resume``, ``close``,
``cancel_all``) returns the list of events it caused (see ``events.py``), in causal order:
first the answer to the requester (Accepted / Replaced / Canceled / Rejected /
CancelReject), then per execution the market-data record ('E' for a displayed resting order,
'P' for a non-displayed one) followed by the resting side's and the aggressor's Executed,
then what became of the remainder (AddOrder when it rests and is displayed, Canceled 'I'
when it may not rest). A later step splits the list into the ITCH feed and the OUCH session
of each firm; the order within each family is the order to send.

Rules, and the choices made where OUCH leaves room:

- Prices are ints with 4 implied decimals; ``MARKET`` (0x7FFFFFFF) is a market order, which
  sweeps the opposite side and never rests. Valid limit prices are 1 .. ``MAX_PRICE``.
- Time in force 0 is immediate-or-cancel; any other value rests for the day.
- Sides 'B', 'S', 'T', 'E'; 'T' and 'E' (short sales) are sells. Display 'N' is a non-displayed
  order (never in ITCH; its executions go out as 'P' Trade); 'A' is attributable (ITCH 'F' with
  the firm as MPID); 'Y' is displayed anonymously (ITCH 'A'). Other OUCH display values (post-only,
  mid-point peg, imbalance-only, retail) are features this venue does not have: rejected 'D'.
  Displayed and non-displayed orders share one price-time queue.
- Intermarket sweep ('Y'/'N') and capacity ('A', 'P', 'R', 'O') are accepted and echoed (one venue:
  there is no better price elsewhere for an ISO to sweep); other bytes are rejected 'O'.
- Minimum quantity (OUCH 4.2: the minimum acceptable quantity to execute; 0 none) is a condition
  on the executions at entry, for orders that do not rest (time in force 0, or a market order):
  if fewer shares than the minimum can execute at once, nothing executes and the whole order is
  canceled 'I'; otherwise it executes as usual. A minimum above the shares, or on an order that
  may rest, is rejected 'N' (``ouch.minimum_quantity_problem``).
- Checks on entry, first failure wins: market closed 'C'; token already used by this firm
  today 'O' (``REJECT_DUPLICATE_TOKEN``); unknown symbol 'S'; symbol halted 'H'; side not
  B/S/T/E 'O'; shares 0 or over ``max_shares`` 'Z'; price 0 or over ``MAX_PRICE`` (other than
  ``MARKET``) 'X'; display 'D'; capacity or intermarket sweep 'O'; minimum quantity 'N'. A token
  is used up by its first Enter Order (or Replace Order naming it as the replacement), whether
  that order was accepted or rejected, and stays used all day.
- Accepted (and Replaced) ``state`` is 'L' when the order rests after the operation and 'D'
  when it does not; the unfilled remainder of an order that may not rest is canceled with
  reason 'I', so every share entered ends executed, canceled or resting.
- Cancel (OUCH X): ``shares`` is the new size. 0 cancels the order (ITCH 'D'); a size below
  the leaves reduces it in place, keeping its priority (ITCH 'X'); a size at or above the
  leaves does nothing and returns ``[]``. Cancels are allowed while halted and after the close.
- Replace (OUCH U): the replacement gets a new reference number and the back of the queue,
  keeps the side, and takes ``shares`` as its leaves. It is checked like an entry (closed 'C',
  replacement token used 'O', halted 'H', shares 'Z', price 'X'); a failed check answers
  Rejected for the *replacement* token and leaves the existing order untouched. When the
  replacement would not execute and may rest, the feed gets one ITCH 'U'; otherwise (it is
  marketable, or immediate-or-cancel) the feed gets 'D' for the old order, the executions,
  and 'A' for any remainder that rests (the choice asked for: ITCH has no 'U' that executes).
  A display change between displayed and non-displayed also turns the 'U' into 'D' / 'A'.
- Cancel or replace naming a token that is not a live order of the firm (never used, or
  already executed, canceled or replaced) answers ``CancelReject`` for that token. (NASDAQ
  ignores such requests silently; the simulated exchange says so, which tests and the OMS
  can see.)
- No self-match prevention: a firm can trade with itself.
- Halt keeps resting orders (they do not match, since nothing new enters); resume reopens.
  Both emit ITCH 'H' only when the state changes.
- ``close()`` rejects every later entry or replace with 'C'; ``close(expire=True)`` also cancels
  every resting order with reason 'T' (day orders expire). ``cancel_all`` is the kill switch
  (reason 'S' by default), by firm and/or symbol.

Reference numbers and match numbers start at 1 and increase by one per accepted order (or
replacement) and per execution, across all symbols.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance.wire.ouch import CAPACITIES, MARKET_PRICE, minimum_quantity_problem

from .book import Book, VenueOrder
from .events import (
    CANCEL_IOC, CANCEL_SUPERVISORY, CANCEL_TIMEOUT, CANCEL_USER, REJECT_CLOSED, REJECT_DISPLAY, REJECT_DUPLICATE_TOKEN,
    REJECT_HALTED, REJECT_MINIMUM_QUANTITY, REJECT_OTHER, REJECT_PRICE, REJECT_SHARES, REJECT_SIDE, REJECT_STOCK,
    STATE_DEAD, STATE_LIVE,
    Accepted, AddOrder, CancelReject, Canceled, Executed, OrderCancel, OrderDelete, OrderExecuted,
    OrderReplace, Rejected, Replaced, Trade, TradingAction,
)

MARKET = MARKET_PRICE               # OUCH market-order price
MAX_PRICE = 2_000_000_000           # 200,000.0000
DEFAULT_MAX_SHARES = 1_000_000
IOC = 0                             # OUCH time in force: immediate or cancel
DAY = 99998                         # OUCH time in force: market hours

_SIDES = {"B": "B", "S": "S", "T": "S", "E": "S"}
_DISPLAYS = frozenset("YAN")        # anonymous, attributable, non-displayed
_CAPACITIES = frozenset(c.decode() for c in CAPACITIES)
_ISO = frozenset("YN")
_NO_LIMIT = -(1 << 62)              # crossing threshold of a market order: every key is above it
_new = tuple.__new__


class Firm:
    """The engine's record of one firm: tokens used today, live orders by token, and the tallies
    of the end-of-day report."""

    __slots__ = ("name", "used", "live", "accepted", "rejected", "replaced", "canceled",
                 "fills", "bought", "sold", "positions")

    def __init__(self, name: str) -> None:
        self.name = name
        self.used: set[str] = set()
        self.live: dict[str, VenueOrder] = {}
        self.accepted = 0           # Enter Orders accepted
        self.rejected = 0           # Enter and Replace Orders rejected
        self.replaced = 0           # Replace Orders done
        self.canceled = 0           # shares canceled (user, IOC, supervisory, expiry)
        self.fills = 0              # executions the firm took part in (either side)
        self.bought = 0             # shares
        self.sold = 0
        self.positions: dict[str, int] = {}     # symbol -> net shares (bought - sold)


@dataclass(frozen=True)
class FirmReport:
    """One firm's day, for the end-of-day report."""
    firm: str
    accepted: int
    rejected: int
    replaced: int
    canceled_shares: int
    fills: int
    bought: int
    sold: int
    open_orders: int
    positions: dict[str, int] = field(default_factory=dict)


class MatchingEngine:
    """Price-time priority matching over a fixed set of symbols."""

    def __init__(self, symbols: Iterable[str], *, max_shares: int = DEFAULT_MAX_SHARES) -> None:
        if max_shares <= 0:
            raise ValueError(f"max_shares must be positive, got {max_shares!r}")
        self.books: dict[str, Book] = {}
        for symbol in symbols:
            self.add_symbol(symbol)
        self.max_shares = max_shares
        self.closed = False
        self.firms: dict[str, Firm] = {}
        self._next_ref = 1
        self._next_match = 1

    # ------------------------------------------------------------------ set-up and inspection

    def add_symbol(self, symbol: str) -> Book:
        if symbol in self.books:
            raise ValueError(f"symbol {symbol!r} is already listed")
        book = self.books[symbol] = Book(symbol)
        return book

    def book(self, symbol: str) -> Book:
        return self.books[symbol]

    @property
    def next_ref(self) -> int:
        return self._next_ref

    @property
    def next_match(self) -> int:
        return self._next_match

    def firm(self, name: str) -> Firm:
        firm = self.firms.get(name)
        if firm is None:
            firm = self.firms[name] = Firm(name)
        return firm

    def firm_report(self, name: str) -> FirmReport:
        f = self.firms.get(name) or Firm(name)
        return FirmReport(f.name, f.accepted, f.rejected, f.replaced, f.canceled, f.fills, f.bought, f.sold,
                          len(f.live), dict(f.positions))

    def firm_reports(self) -> dict[str, FirmReport]:
        return {name: self.firm_report(name) for name in sorted(self.firms)}

    # ------------------------------------------------------------------ order entry

    def _limit_reject(self, shares: int, price: int, tif: int = DAY, display: str = "Y", iso: str = "N",
                      minimum_quantity: int = 0, capacity: str = "A") -> str | None:
        """The reject reason for a size, price or flag the venue refuses (enter and replace alike), or None."""
        if shares <= 0 or shares > self.max_shares:
            return REJECT_SHARES
        if price <= 0 or (price > MAX_PRICE and price != MARKET):
            return REJECT_PRICE
        if display not in _DISPLAYS:
            return REJECT_DISPLAY
        if capacity not in _CAPACITIES or iso not in _ISO:
            return REJECT_OTHER
        if minimum_quantity and minimum_quantity_problem(shares, minimum_quantity, tif, price):
            return REJECT_MINIMUM_QUANTITY
        return None

    def enter(self, firm: str, token: str, symbol: str, side: str, shares: int, price: int,
              tif: int = DAY, display: str = "Y", *, capacity: str = "A", iso: str = "N",
              minimum_quantity: int = 0) -> list:
        """OUCH Enter Order (``iso``: the intermarket sweep eligibility byte)."""
        f = self.firms.get(firm)
        if f is None:
            f = self.firm(firm)
        used = f.used
        book = self.books.get(symbol)
        if self.closed:
            reason = REJECT_CLOSED
        elif token in used:
            f.rejected += 1
            return [_new(Rejected, (firm, token, REJECT_DUPLICATE_TOKEN))]
        elif book is None:
            reason = REJECT_STOCK
        elif book.halted:
            reason = REJECT_HALTED
        elif side not in _SIDES:
            reason = REJECT_SIDE
        else:
            reason = self._limit_reject(shares, price, tif, display, iso, minimum_quantity, capacity)
        used.add(token)
        if reason is not None:
            f.rejected += 1
            return [_new(Rejected, (firm, token, reason))]

        ref = self._next_ref
        self._next_ref = ref + 1
        f.accepted += 1
        order = VenueOrder(ref, f, token, book, _SIDES[side], side, price, shares, tif, display)
        events = [None]
        rests = self._match_and_rest(book, order, events, minimum_quantity)
        events[0] = _new(Accepted, (firm, token, side, shares, symbol, price, tif, display, ref,
                                    STATE_LIVE if rests else STATE_DEAD))
        return events

    def cancel(self, firm: str, token: str, shares: int = 0) -> list:
        """OUCH Cancel Order: reduce the order to ``shares`` (0 cancels it)."""
        f = self.firms.get(firm)
        order = f.live.get(token) if f is not None else None
        if order is None:
            return [_new(CancelReject, (firm, token))]
        leaves = order.leaves
        if shares >= leaves:
            return []
        if shares <= 0:
            decrement = leaves
            self._unlink(order)
            market_data = _new(OrderDelete, (order.ref,)) if order.displayed else None
        else:
            decrement = leaves - shares
            order.leaves = shares
            book = order.book
            (book.bid_side if order.side == "B" else book.ask_side).levels[order.price].shares -= decrement
            market_data = _new(OrderCancel, (order.ref, decrement)) if order.displayed else None
        order.canceled += decrement
        f.canceled += decrement
        answer = _new(Canceled, (firm, token, decrement, CANCEL_USER))
        return [answer] if market_data is None else [answer, market_data]

    def replace(self, firm: str, existing_token: str, replacement_token: str, shares: int, price: int,
                tif: int | None = None, display: str | None = None, *, iso: str = "N",
                minimum_quantity: int = 0) -> list:
        """OUCH Replace Order. ``tif`` and ``display`` default to the existing order's."""
        f = self.firms.get(firm)
        old = f.live.get(existing_token) if f is not None else None
        if old is None:
            return [_new(CancelReject, (firm, existing_token))]
        book = old.book
        if self.closed:
            reason = REJECT_CLOSED
        elif replacement_token in f.used:
            f.rejected += 1
            return [_new(Rejected, (firm, replacement_token, REJECT_DUPLICATE_TOKEN))]
        elif book.halted:
            reason = REJECT_HALTED
        else:
            if tif is None:
                tif = old.tif
            if display is None:
                display = old.display
            reason = self._limit_reject(shares, price, tif, display, iso, minimum_quantity)
        f.used.add(replacement_token)
        if reason is not None:
            f.rejected += 1
            return [_new(Rejected, (firm, replacement_token, reason))]
        ref = self._next_ref
        self._next_ref = ref + 1
        f.replaced += 1
        new = VenueOrder(ref, f, replacement_token, book, old.side, old.entered_side, price, shares, tif, display)
        old.replaced = old.leaves
        self._unlink(old)
        events = [None]
        if tif != IOC and price != MARKET and not self._marketable(book, new):
            self._rest(book, new)
            if old.displayed and new.displayed:
                events.append(_new(OrderReplace, (old.ref, ref, shares, price)))
            elif old.displayed:
                events.append(_new(OrderDelete, (old.ref,)))
            elif new.displayed:
                events.append(_new(AddOrder, (ref, new.side, shares, book.symbol, price, new.attribution)))
            rests = True
        else:
            if old.displayed:
                events.append(_new(OrderDelete, (old.ref,)))
            rests = self._match_and_rest(book, new, events, minimum_quantity)
        events[0] = _new(Replaced, (firm, replacement_token, existing_token, old.entered_side, shares, book.symbol,
                                    price, tif, display, ref, STATE_LIVE if rests else STATE_DEAD))
        return events

    # ------------------------------------------------------------------ market state

    def halt(self, symbol: str) -> list:
        """Halt one symbol: entries and replaces are rejected 'H'; resting orders stay; cancels work."""
        book = self.books[symbol]
        if book.halted:
            return []
        book.halted = True
        return [_new(TradingAction, (symbol, "H"))]

    def resume(self, symbol: str) -> list:
        book = self.books[symbol]
        if not book.halted:
            return []
        book.halted = False
        return [_new(TradingAction, (symbol, "T"))]

    def close(self, expire: bool = False) -> list:
        """Close the market: later entries and replaces are rejected 'C'. With ``expire`` every
        resting order is canceled with reason 'T'."""
        self.closed = True
        return self.cancel_all(reason=CANCEL_TIMEOUT) if expire else []

    def cancel_all(self, firm: str | None = None, symbol: str | None = None,
                   reason: str = CANCEL_SUPERVISORY) -> list:
        """Cancel every live order (of ``firm``, in ``symbol``, or both), oldest first per symbol."""
        events: list = []
        books = [self.books[symbol]] if symbol is not None else [self.books[s] for s in sorted(self.books)]
        for book in books:
            for ref in sorted(book.orders):
                order = book.orders[ref]
                f = order.firm
                if firm is not None and f.name != firm:
                    continue
                decrement = order.leaves
                self._unlink(order)
                order.canceled += decrement
                f.canceled += decrement
                events.append(_new(Canceled, (f.name, order.token, decrement, reason)))
                if order.displayed:
                    events.append(_new(OrderDelete, (ref,)))
        return events

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _marketable(book: Book, order: VenueOrder) -> bool:
        if order.side == "B":
            best = book.ask_side.best()
            return best is not None and (order.price == MARKET or best <= order.price)
        best = book.bid_side.best()
        return best is not None and (order.price == MARKET or best >= order.price)

    @staticmethod
    def _rest(book: Book, order: VenueOrder) -> None:
        (book.bid_side if order.side == "B" else book.ask_side).append(order)
        book.orders[order.ref] = order
        order.firm.live[order.token] = order

    @staticmethod
    def _unlink(order: VenueOrder) -> None:
        """Take a live order off its book in full (leaves becomes 0); no events."""
        book = order.book
        (book.bid_side if order.side == "B" else book.ask_side).remove(order)
        del book.orders[order.ref]
        del order.firm.live[order.token]

    @staticmethod
    def _executable(opposite, threshold: int, wanted: int) -> int:
        """Shares of ``opposite`` at prices the order reaches (``threshold`` as in ``_match_and_rest``),
        counted until ``wanted``."""
        keys, levels, sign = opposite.keys, opposite.levels, opposite.sign
        found = 0
        for i in range(len(keys) - 1, -1, -1):
            if keys[i] < threshold or found >= wanted:
                break
            found += levels[keys[i] * sign].shares
        return found

    def _match_and_rest(self, book: Book, order: VenueOrder, events: list, minimum_quantity: int = 0) -> bool:
        """Execute ``order`` against the opposite side, then rest what is left if it may, or cancel
        it (reason 'I'). With a ``minimum_quantity`` that cannot execute at once, nothing executes.
        Appends the events; returns True when the order rests."""
        price = order.price
        symbol = book.symbol
        f = order.firm
        firm = f.name
        token = order.token
        if order.side == "B":
            opposite = book.ask_side
            threshold = _NO_LIMIT if price == MARKET else -price
        else:
            opposite = book.bid_side
            threshold = _NO_LIMIT if price == MARKET else price
        keys = opposite.keys
        remaining = order.leaves
        if minimum_quantity and self._executable(opposite, threshold, minimum_quantity) < minimum_quantity:
            keys = ()                          # the minimum cannot be met: no execution at all
        if keys and keys[-1] >= threshold:
            levels = opposite.levels
            sign = opposite.sign
            append = events.append
            executed = 0
            fills = 0
            match = self._next_match
            resting_buys = opposite is book.bid_side
            while remaining and keys and keys[-1] >= threshold:
                px = keys[-1] * sign
                level = levels[px]
                queue = level.orders
                while remaining and level.count:
                    resting = queue[0]
                    left = resting.leaves
                    if not left:
                        queue.popleft()
                        level.dead -= 1
                        continue
                    fill = left if left < remaining else remaining
                    remaining -= fill
                    left -= fill
                    resting.leaves = left
                    resting.executed += fill
                    level.shares -= fill
                    rf = resting.firm
                    if resting.displayed:
                        append(_new(OrderExecuted, (resting.ref, fill, match)))
                    else:
                        append(_new(Trade, (resting.side, fill, symbol, px, match)))
                    append(_new(Executed, (rf.name, resting.token, fill, px, "A", match)))
                    append(_new(Executed, (firm, token, fill, px, "R", match)))
                    match += 1
                    fills += 1
                    executed += fill
                    rf.fills += 1
                    positions = rf.positions
                    if resting_buys:
                        rf.bought += fill
                        positions[symbol] = positions.get(symbol, 0) + fill
                    else:
                        rf.sold += fill
                        positions[symbol] = positions.get(symbol, 0) - fill
                    if not left:
                        queue.popleft()
                        level.count -= 1
                        del book.orders[resting.ref]
                        del rf.live[resting.token]
                if not level.count:
                    keys.pop()
                    del levels[px]
            self._next_match = match
            order.executed = executed
            f.fills += fills
            positions = f.positions
            if resting_buys:
                f.sold += executed
                positions[symbol] = positions.get(symbol, 0) - executed
            else:
                f.bought += executed
                positions[symbol] = positions.get(symbol, 0) + executed
            order.leaves = remaining
        if not remaining:
            return False
        if order.tif != IOC and price != MARKET:
            self._rest(book, order)
            if order.displayed:
                events.append(_new(AddOrder, (order.ref, order.side, remaining, symbol, price, order.attribution)))
            return True
        order.leaves = 0
        order.canceled += remaining
        f.canceled += remaining
        events.append(_new(Canceled, (firm, token, remaining, CANCEL_IOC)))
        return False
