"""The simulated venue of a recorded day: the recorded ITCH book of each symbol with our orders in it.

``ReplayVenue(symbols, queue_model, latency, seed)`` follows the recorded day message by message
(``on_itch(raw)``, the raw tuples of ``appliance.wire.itch``) and takes our orders (``submit``,
``cancel``, ``replace``, each stamped with the time the sender sends it). Our actions reach the venue
``latency.entry_ns`` later; what the venue says (``VenueEvent``) reaches us ``latency.ack_ns`` after it
happened: ``poll(now_ns)`` returns the events delivered by ``now_ns``, in order. Times are the
day's event time (ITCH: ns since midnight), never wall time.

Order of events: an action that arrives at t is handled after every recorded message stamped t or
before (messages of one stamp came together, before anything could answer them) and before those
stamped later (``on_itch`` handles the arrivals first; ``advance(t)`` handles them when no message
follows, e.g. at the end of the day).

The recorded book: orders by reference number as ITCH A/F add, E/C execute, X cancels, D deletes and
U replaces them; a 'R' Stock Directory maps each traded symbol's locate, 'H' halts and resumes it.
Messages of other locates, unknown references and duplicate adds are counted (``counters``) and
ignored. The recorded book is never changed by what we do: it is what the strategy saw.

Compiled: the bookkeeping run for every recorded message (the orders by reference, the levels, what we
took, the add sequence, the counters) is ``_venue_fast.c``'s ``Core`` when built (``compiled=True``, the
default); it keeps the same Python state the rest of this module reads and calls back the methods here
wherever one of our orders is concerned (``_crossed_by_add``, ``_traded``, ``_cancel_at``) and for 'R'
and 'H'. The Python handlers below are the reference (``compiled=False``, ``use_reference()``);
tests/replay/test_venue_fast_diff.py and tests/bench/test_venue_fast_days.py hold the two equal.

Our orders (the rules of ``docs``: every one has a test in tests/replay):

* Entry checks, as the simulated exchange's: unknown symbol 'S', halted 'H', shares 0 'Z', price 0
  'X', a token used before today 'O' (rejected).
* A marketable order (a buy at or above the recorded best ask, a sell at or below the best bid, or a
  market order, ``MARKET_PRICE``) takes liquidity from the recorded book, best price first, at the
  recorded levels' prices (liquidity 'R'). The shares it took stay taken: a level's available shares
  are its recorded shares minus what we took there, and what we took shrinks only when the recorded
  level shrinks below it (the recorded executions and cancels eat the same shares). So the same
  recorded shares never fill us twice. We never trade with our own orders.
* What is left: immediate-or-cancel (time in force 0) and market orders are canceled 'I'; a day order
  joins the back of the queue at its price: ``ahead`` = the recorded shares at that price then.
* A resting order fills (liquidity 'A', at its own price):
  - when recorded executions at its price (E, C, and P prints of hidden orders there) have consumed
    the shares ahead of it: an execution of n shares first shrinks ``ahead`` by n, the rest fills
    us (our own earlier orders at the price are ahead of a later one of ours);
  - when the recorded market trades through its price (an execution at a worse price for the
    aggressor: below our bid, above our ask): the n shares executed there would have met us first,
    best price first, and fill us up to n (those shares then do not reach our orders at the
    recorded price);
  - when a recorded order is added (A, F, the new half of U) crossing its price: up to that order's
    shares, as if it had arrived and met us.
  Recorded cancels at our price move us forward as the queue model says (``queue.py``).
* Cancel (``cancel(token, shares=0)``): ``shares`` is the new size, as in OUCH: 0 cancels, less than
  the leaves reduces in place keeping the queue position, more does nothing. An order that is not live
  (never entered, filled, canceled, replaced) answers ``cancel_reject``.
* Replace: the replacement (a new token, same side and time in force) takes ``shares`` as its leaves;
  it keeps the queue position only when the price is the same and the shares do not go up, otherwise
  it joins the back of its new price (and may be marketable there). A replacement token used before,
  zero shares or price: rejected, the old order untouched. Not live: ``cancel_reject``.
"""
from __future__ import annotations

from collections import deque
from typing import NamedTuple

from appliance.wire import ouch

from . import queue as queue_models
from .latency import Latency

try:  # built by setup.py
    from appliance.replay import _venue_fast  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _venue_fast = None

AVAILABLE = _venue_fast is not None

MARKET_PRICE = ouch.MARKET_PRICE
TIF_IOC = ouch.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL
SELL_SIDES = frozenset("STE")          # OUCH sell, sell short, sell short exempt

# VenueEvent.kind
ACCEPTED, REPLACED, CANCELED, EXECUTED, REJECTED, CANCEL_REJECT = (
    "accepted", "replaced", "canceled", "executed", "rejected", "cancel_reject")
# reasons (OUCH bytes, as the simulated exchange's ``events.py``)
CANCEL_USER, CANCEL_IOC = "U", "I"
REJECT_HALTED, REJECT_SHARES, REJECT_STOCK, REJECT_PRICE, REJECT_TOKEN = "H", "Z", "S", "X", "O"
ADDED, REMOVED = "A", "R"

COUNTER_NAMES = ("messages", "unsubscribed", "unknown_order", "duplicate_add", "passive_fills", "taker_fills")


class VenueEvent(NamedTuple):
    """What the venue said about one of our orders. ``shares``: accepted (the order's), executed (this
    fill) or canceled (the decrement); ``leaves``: what stays open after the event."""
    deliver_ns: int          # when it reaches us: time_ns + latency.ack_ns
    time_ns: int             # when it happened at the venue
    kind: str
    token: int
    symbol: str
    side: str
    shares: int
    price: int
    leaves: int
    liquidity: str = ""      # executed: 'A' added (maker), 'R' removed (taker)
    reason: str = ""         # rejected / canceled: the OUCH reason byte
    orig_token: int = 0      # replaced: the order it replaced


class Order:
    """One of our orders resting at the venue."""
    __slots__ = ("token", "sid", "side", "is_buy", "price", "leaves", "tif", "ahead", "joined")

    def __init__(self, token, sid, side, price, leaves, tif):
        self.token, self.sid, self.side, self.price, self.leaves, self.tif = token, sid, side, price, leaves, tif
        self.is_buy = side not in SELL_SIDES
        self.ahead = 0
        self.joined = 0          # the recorded add sequence when it joined (orders added later are behind it)


class _Symbol:
    """One symbol's recorded levels, our resting orders and the shares we took, per side (True: bids)."""
    __slots__ = ("sid", "symbol", "locate", "halted", "levels", "ours", "taken")

    def __init__(self, sid, symbol):
        self.sid, self.symbol, self.locate, self.halted = sid, symbol, None, False
        self.levels = {True: {}, False: {}}     # price -> recorded shares
        self.ours = {True: {}, False: {}}       # price -> [Order] in arrival order
        self.taken = {True: {}, False: {}}      # price -> shares we took there


class ReplayVenue:
    """The venue of a recorded day (module docstring); ``symbols``: the traded ones, in id order."""

    def __init__(self, symbols, queue_model: str = "risk-averse", latency: Latency | None = None,
                 seed: int = 0, locate_map: bytearray | None = None, compiled: bool = True) -> None:
        """``locate_map``: a scanner's 65536-byte filter map (``itch.BlockScanner``) the venue keeps: 1 for the
        locates the directory gives its symbols, so a reader passes only their messages. ``compiled``: the
        recorded book kept by ``_venue_fast.c`` when it is built (the Python methods are the reference)."""
        self.symbols = tuple(symbols)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols must be unique")
        self.queue = queue_models.make(queue_model, seed)
        self.latency = latency or Latency()
        self._entry, self._ack = self.latency.entry_ns, self.latency.ack_ns
        self.books = [_Symbol(i, s) for i, s in enumerate(self.symbols)]
        self._sid_of_stock = {s.encode("ascii").ljust(8): i for i, s in enumerate(self.symbols)}
        self._sid_of_symbol = {s: i for i, s in enumerate(self.symbols)}
        self._book_of_locate: list[_Symbol | None] = [None] * 65536
        if locate_map is not None and len(locate_map) != 65536:
            raise ValueError("locate_map must be a 65536-byte map indexed by stock locate")
        self.locate_map = locate_map if locate_map is not None else bytearray(65536)
        self._orders: dict[int, list] = {}         # recorded ref -> [book, is_buy, price, shares, add sequence]
        self.live: dict[int, Order] = {}           # our token -> resting order
        self.used_tokens: set[int] = set()
        self.now_ns = 0
        self._adds = 0                             # recorded add sequence
        self._inbound: deque = deque()             # (arrive_ns, handler, args)
        self._out: deque = deque()                 # VenueEvents by deliver_ns
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)
        handlers = [None] * 256
        for code, handler in (("R", self._directory), ("H", self._trading_action), ("A", self._add),
                              ("F", self._add), ("E", self._executed), ("C", self._executed),
                              ("X", self._cancel), ("D", self._delete), ("U", self._replace), ("P", self._trade)):
            handlers[ord(code)] = handler
        self._handlers = handlers
        self._core = None
        if compiled and _venue_fast is not None:
            self._core = _venue_fast.Core(self)
            self.on_itch = self._core.on_itch            # the recorded messages, in C (same state, same calls)
            self.best_price = self._core.best            # the same answer as the method below, in one C pass

    def use_reference(self) -> None:
        """Keep the recorded book with the Python methods (the reference), before the first message."""
        if self._core is not None:
            if self._core.counts()["messages"]:
                raise RuntimeError("use_reference() after the first recorded message")
            self._core = None
            del self.on_itch
            del self.best_price

    @property
    def compiled(self) -> bool:
        """Whether the recorded book is kept by ``_venue_fast.c`` (else by the Python methods below)."""
        return self._core is not None

    @property
    def orders(self) -> dict:
        """The recorded orders: ref -> [book, is_buy, price, shares, add sequence] (compiled: a copy)."""
        return self._core.orders() if self._core is not None else self._orders

    @property
    def counters(self) -> dict:
        """``COUNTER_NAMES`` -> count."""
        if self._core is not None:
            self._counters.update(self._core.counts())
        return self._counters

    def best_price(self, sid: int, is_buy: bool) -> int | None:
        """The best recorded price of one side of symbol ``sid`` (bids: the highest, asks: the lowest), None
        when that side is empty. (Compiled: ``Core.best``, the same over the same dict.)"""
        levels = self.books[sid].levels[is_buy]
        if not levels:
            return None
        return max(levels) if is_buy else min(levels)

    # ------------------------------------------------------------------ the recorded day

    def on_itch(self, raw) -> None:
        """One recorded message (a raw tuple: type, locate, tracking, timestamp, fields...)."""
        ts = raw[3]
        inbound = self._inbound
        if inbound and inbound[0][0] < ts:
            self._arrive(ts, inclusive=False)
        self.now_ns = ts
        self._counters["messages"] += 1
        handler = self._handlers[raw[0][0]]
        if handler is not None:
            handler(raw)

    def advance(self, now_ns: int) -> None:
        """Handle every action that arrives by ``now_ns`` (no recorded message comes before it)."""
        if self._inbound and self._inbound[0][0] <= now_ns:
            self._arrive(now_ns, inclusive=True)

    def _arrive(self, ts: int, inclusive: bool) -> None:
        inbound = self._inbound
        while inbound and (inbound[0][0] < ts or (inclusive and inbound[0][0] == ts)):
            arrive, handler, args = inbound.popleft()
            if arrive > self.now_ns:
                self.now_ns = arrive
            handler(*args)

    def _directory(self, raw) -> None:
        sid = self._sid_of_stock.get(raw[4], -1)
        locate = raw[1]
        holder = self._book_of_locate[locate]
        if holder is not None and holder.sid != sid:
            holder.locate = None
            self._book_of_locate[locate] = None
            self.locate_map[locate] = 0
        if sid >= 0:
            book = self.books[sid]
            if book.locate is not None and book.locate != locate:
                self._book_of_locate[book.locate] = None
                self.locate_map[book.locate] = 0
            book.locate = locate
            self._book_of_locate[locate] = book
            self.locate_map[locate] = 1

    def _trading_action(self, raw) -> None:
        book = self._book_of_locate[raw[1]]
        if book is not None:
            book.halted = raw[5] != b"T"

    def _add(self, raw) -> None:
        book = self._book_of_locate[raw[1]]
        if book is None:
            self._counters["unsubscribed"] += 1
            return
        ref, shares, price = raw[4], raw[6], raw[8]
        if ref in self._orders:
            self._counters["duplicate_add"] += 1
            return
        if shares <= 0:
            return
        self._rest(book, ref, raw[5] == b"B", price, shares)

    def _rest(self, book: _Symbol, ref: int, is_buy: bool, price: int, shares: int) -> None:
        self._adds += 1
        self._orders[ref] = [book, is_buy, price, shares, self._adds]
        levels = book.levels[is_buy]
        levels[price] = levels.get(price, 0) + shares
        opposite = book.ours[not is_buy]
        if opposite:                           # does it cross one of ours? then it would have met us
            self._crossed_by_add(book, opposite, is_buy, price, shares)

    def _crossed_by_add(self, book, opposite, is_buy, price, shares) -> None:
        crossed = sorted((p for p in opposite if (p <= price if is_buy else p >= price)), reverse=not is_buy)
        for p in crossed:
            for order in list(opposite[p]):
                if shares <= 0:
                    return
                fill = min(order.leaves, shares)
                shares -= fill
                self._fill(order, fill, order.price, ADDED)

    def _executed(self, raw) -> None:
        entry = self._orders.get(raw[4])
        if entry is None:
            self._unknown(raw)
            return
        book, is_buy, price, shares, _ = entry
        n = min(raw[5], shares)
        self._reduce(entry, raw[4], n)
        if book.ours[is_buy]:
            self._traded(book, is_buy, price, n)

    def _trade(self, raw) -> None:
        book = self._book_of_locate[raw[1]]
        if book is None:
            self._counters["unsubscribed"] += 1
            return
        is_buy = raw[5] == b"B"                # the resting (hidden) order's side
        if book.ours[is_buy] and raw[6] > 0:
            self._traded(book, is_buy, raw[8], raw[6])

    def _cancel(self, raw) -> None:
        entry = self._orders.get(raw[4])
        if entry is None:
            self._unknown(raw)
            return
        self._canceled(entry, raw[4], min(raw[5], entry[3]))

    def _delete(self, raw) -> None:
        entry = self._orders.get(raw[4])
        if entry is None:
            self._unknown(raw)
            return
        self._canceled(entry, raw[4], entry[3])

    def _replace(self, raw) -> None:
        entry = self._orders.get(raw[4])
        if entry is None:
            self._unknown(raw)
            return
        book, is_buy = entry[0], entry[1]
        self._canceled(entry, raw[4], entry[3])
        if raw[5] in self._orders:
            self._counters["duplicate_add"] += 1
            return
        if raw[6] > 0:
            self._rest(book, raw[5], is_buy, raw[7], raw[6])

    def _unknown(self, raw) -> None:
        if self._book_of_locate[raw[1]] is None:
            self._counters["unsubscribed"] += 1
        else:
            self._counters["unknown_order"] += 1

    def _reduce(self, entry, ref: int, n: int) -> int:
        """Take n shares off a recorded order and its level; returns the level's shares after."""
        book, is_buy, price = entry[0], entry[1], entry[2]
        entry[3] -= n
        if entry[3] <= 0:
            del self._orders[ref]
        levels = book.levels[is_buy]
        after = levels.get(price, 0) - n
        if after > 0:
            levels[price] = after
        else:
            levels.pop(price, None)
            after = 0
        taken = book.taken[is_buy]
        if taken and price in taken and taken[price] > after:     # usually empty: we took nothing
            if after:
                taken[price] = after
            else:
                del taken[price]
        return after

    def _canceled(self, entry, ref: int, n: int) -> None:
        book, is_buy, price, added = entry[0], entry[1], entry[2], entry[4]
        after = self._reduce(entry, ref, n)
        mine = book.ours[is_buy].get(price)
        if mine:
            self._cancel_at(mine, n, after, added)

    def _cancel_at(self, mine: list, n: int, after: int, added: int) -> None:
        """A recorded cancel of n shares (of the order added ``added``-th) at a price where ``mine`` rest."""
        cancel = self.queue.cancel
        for order in mine:
            cancel(order, n, after, added <= order.joined)

    def _traded(self, book: _Symbol, is_buy: bool, price: int, n: int) -> None:
        """n shares of the resting side ``is_buy`` executed at ``price``: our orders at better prices first
        (traded through), then ours at the price behind their ``ahead``."""
        ours = book.ours[is_buy]
        better = [p for p in ours if (p > price if is_buy else p < price)]
        if better:
            better.sort(reverse=is_buy)
            for p in better:
                for order in list(ours.get(p, ())):
                    if n <= 0:
                        return
                    fill = min(order.leaves, n)
                    n -= fill
                    self._fill(order, fill, order.price, ADDED)
        mine = ours.get(price)
        if not mine or n <= 0:
            return
        before = 0                              # our earlier orders' shares at the price, ahead of the next
        fills = []
        for order in mine:
            reach = n - order.ahead - before
            before += order.leaves
            order.ahead = max(order.ahead - n, 0)
            if reach > 0:
                fills.append((order, min(order.leaves, reach)))
        for order, fill in fills:
            self._fill(order, fill, order.price, ADDED)

    # ------------------------------------------------------------------ our orders

    def submit(self, token: int, symbol: str, side: str, shares: int, price: int, tif: int, now_ns: int) -> None:
        """A new order sent at ``now_ns``: side 'B', 'S', 'T' or 'E'; ``price`` in price units or
        ``MARKET_PRICE``; ``tif`` 0 immediate-or-cancel, anything else day."""
        self._inbound.append((now_ns + self._entry, self._enter, (token, symbol, side, shares, price, tif)))

    def cancel(self, token: int, now_ns: int, shares: int = 0) -> None:
        """Cancel (``shares`` 0) or reduce to ``shares`` the order ``token``, sent at ``now_ns``."""
        self._inbound.append((now_ns + self._entry, self._cancel_ours, (token, shares)))

    def replace(self, token: int, new_token: int, shares: int, price: int, now_ns: int) -> None:
        """Replace the order ``token`` by ``new_token`` with ``shares`` leaves at ``price``, sent at ``now_ns``."""
        self._inbound.append((now_ns + self._entry, self._replace_ours, (token, new_token, shares, price)))

    def poll(self, now_ns: int) -> list[VenueEvent]:
        """The events delivered by ``now_ns`` (deliver_ns <= now_ns), oldest first."""
        out = self._out
        if not out or out[0].deliver_ns > now_ns:
            return []
        events = []
        while out and out[0].deliver_ns <= now_ns:
            events.append(out.popleft())
        return events

    def next_delivery_ns(self) -> int | None:
        """When the next queued event reaches us (None: nothing queued)."""
        return self._out[0].deliver_ns if self._out else None

    def next_arrival_ns(self) -> int | None:
        """When the next of our actions reaches the venue (None: none in flight)."""
        return self._inbound[0][0] if self._inbound else None

    def _emit(self, kind, order_or_token, symbol, side, shares, price, leaves, liquidity="", reason="", orig=0):
        now = self.now_ns
        self._out.append(VenueEvent(now + self._ack, now, kind, order_or_token, symbol, side, shares, price, leaves,
                                    liquidity, reason, orig))

    def _check(self, token, symbol, side, shares, price):
        """The entry checks; the reject reason or ''."""
        if token in self.used_tokens:
            return REJECT_TOKEN
        self.used_tokens.add(token)
        sid = self._sid_of_symbol.get(symbol, -1)
        if sid < 0 or self.books[sid].locate is None:
            return REJECT_STOCK
        if self.books[sid].halted:
            return REJECT_HALTED
        if side not in "BSTE" or len(side) != 1:
            return "O"
        if shares <= 0:
            return REJECT_SHARES
        if price <= 0 or price > MARKET_PRICE:
            return REJECT_PRICE
        return ""

    def _enter(self, token, symbol, side, shares, price, tif) -> None:
        reason = self._check(token, symbol, side, shares, price)
        if reason:
            self._emit(REJECTED, token, symbol, side, 0, price, 0, reason=reason)
            return
        order = Order(token, self._sid_of_symbol[symbol], side, price, shares, tif)
        self._emit(ACCEPTED, token, symbol, side, shares, price, shares)
        self._work(order)

    def _work(self, order: Order) -> None:
        """Take what the order's price reaches from the recorded book, then rest or cancel the rest."""
        book = self.books[order.sid]
        is_buy = order.is_buy
        opposite, taken = book.levels[not is_buy], book.taken[not is_buy]
        price = order.price
        best = self.best_price(order.sid, not is_buy) if opposite else None
        if best is not None and (best <= price if is_buy else best >= price or price == MARKET_PRICE):
            reach = sorted((p for p in opposite if (p <= price if is_buy else p >= price or price == MARKET_PRICE)),
                           reverse=not is_buy)
            for p in reach:
                available = opposite[p] - taken.get(p, 0)
                if available <= 0:
                    continue
                fill = min(available, order.leaves)
                taken[p] = taken.get(p, 0) + fill
                self._counters["taker_fills"] += 1
                order.leaves -= fill
                self._emit(EXECUTED, order.token, book.symbol, order.side, fill, p, order.leaves, REMOVED)
                if not order.leaves:
                    return
        if order.tif == TIF_IOC or price == MARKET_PRICE:
            leaves, order.leaves = order.leaves, 0
            self._emit(CANCELED, order.token, book.symbol, order.side, leaves, price, 0, reason=CANCEL_IOC)
            return
        order.ahead = book.levels[is_buy].get(price, 0)
        order.joined = self._adds
        book.ours[is_buy].setdefault(price, []).append(order)
        self.live[order.token] = order

    def _unrest(self, order: Order) -> None:
        ours = self.books[order.sid].ours[order.is_buy]
        mine = ours[order.price]
        mine.remove(order)
        if not mine:
            del ours[order.price]
        del self.live[order.token]

    def _fill(self, order: Order, shares: int, price: int, liquidity: str) -> None:
        order.leaves -= shares
        self._counters["passive_fills"] += 1
        if not order.leaves:
            self._unrest(order)
        self._emit(EXECUTED, order.token, self.symbols[order.sid], order.side, shares, price, order.leaves, liquidity)

    def _cancel_ours(self, token, shares) -> None:
        order = self.live.get(token)
        if order is None:
            self._emit(CANCEL_REJECT, token, "", "", 0, 0, 0)
            return
        if shares >= order.leaves:
            return
        decrement = order.leaves - shares
        order.leaves = shares
        if not shares:
            self._unrest(order)
        self._emit(CANCELED, token, self.symbols[order.sid], order.side, decrement, order.price, shares,
                   reason=CANCEL_USER)

    def _replace_ours(self, token, new_token, shares, price) -> None:
        order = self.live.get(token)
        if order is None:
            self._emit(CANCEL_REJECT, token, "", "", 0, 0, 0)
            return
        symbol = self.symbols[order.sid]
        reason = self._check(new_token, symbol, order.side, shares, price)
        if reason:
            self._emit(REJECTED, new_token, symbol, order.side, 0, price, 0, reason=reason)
            return
        keeps_place = price == order.price and shares <= order.leaves
        self._unrest(order)
        new = Order(new_token, order.sid, order.side, price, shares, order.tif)
        self._emit(REPLACED, new_token, symbol, order.side, shares, price, shares, orig=token)
        if keeps_place:
            new.ahead, new.joined = order.ahead, order.joined
            ours = self.books[order.sid].ours[order.is_buy]
            mine = ours.setdefault(price, [])
            mine.append(new)
            mine.sort(key=lambda o: (o.joined, o.ahead))
            self.live[new_token] = new
        else:
            self._work(new)
