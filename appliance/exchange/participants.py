"""The simulated exchange's background participants: a seeded random order flow through one firm.

A market maker under test needs a live book to quote into and someone to trade with. The flow
keeps a random-walk fair value per symbol and, one operation per ``step``, adds passive orders
around it, cancels and replaces its own orders, and takes liquidity:

=========== ====== ==================================================================
operation   share  what
=========== ====== ==================================================================
enter       55 %   day limit order, fair value -/+ 1..10 ticks on the passive side,
                   1..10 round lots; 5 % non-displayed ('N'), 5 % attributable ('A')
cancel      25 %   of the farthest from fair value among the symbol's 4 oldest live
                   orders; 1 in 5 only reduces it (ITCH 'X'), when it holds 2+ lots
replace      5 %   the symbol's oldest live order: new token, same side, fair value
                   -/+ 1..5 ticks, 1..10 round lots
marketable  15 %   1..5 round lots: 2/3 immediate-or-cancel at or up to 2 ticks through
                   the touch, 1/3 market orders; they buy an ask below fair value and
                   sell a bid above it (picking off stale quotes), else a side at random
=========== ====== ==================================================================

Passive orders are priced from fair value alone, so when the walk has left resting orders
behind, a new "passive" order trades with them: the book follows fair value instead of
lagging it. Fallbacks keep the flow sensible: a symbol holding ``max_resting_per_symbol``
live orders of the flow gets a cancel instead of an entry; a cancel or replace with nothing
live becomes an entry; an entry goes to an empty side of the book first (a two-sided market
to quote against); in a halted symbol, or after the close, the flow only cancels, and does
nothing (counted ``idle``) when it has nothing there.

The flow's record of its live orders is built only from the events the engine answers (never
from what it asked for), so it stays exact through fills, self-matches and marketable
replaces. Events it did not cause (another firm hitting its orders, the kill switch) reach the
record through ``observe``. Everything random comes from the flow's own generators: the same
seed and reference prices give the same engine calls, however ``arrivals`` batches them.
"""
from __future__ import annotations

import math
from random import Random

from .events import Accepted, CancelReject, Canceled, Executed, Rejected, Replaced
from .matching import DAY, IOC, MARKET, MAX_PRICE

# The operation mix: cumulative thresholds on one uniform draw.
_ENTER = 0.55
_CANCEL = _ENTER + 0.25
_REPLACE = _CANCEL + 0.05          # the remaining 15 % are marketable orders
_HIDDEN = 0.05                     # of passive entries: display 'N'
_ATTRIBUTED = _HIDDEN + 0.05       # display 'A'
_REDUCE = 0.2                      # of cancels: reduce in place instead
_MARKET_ORDER = 1 / 3              # of marketable orders: price MARKET instead of IOC limit

PASSIVE_TICKS = 10                 # passive entries: 1..10 ticks from fair value
REPLACE_TICKS = 5
THROUGH_TICKS = 2                  # IOC limits: 0..2 ticks through the touch
PASSIVE_LOTS = 10
MARKETABLE_LOTS = 5
CANCEL_CANDIDATES = 4              # how many of the oldest live orders a cancel looks at
MIN_FAIR_TICKS = 10                # the fair value never falls below this many ticks

_ARRIVALS_SALT = 1 << 64           # a second stream, so timing never shifts the operations
_SMALL_MEAN = 10.0                 # below: inversion; above: transformed rejection (PTRS)


class _Live:
    """One live order of the flow as the events describe it."""

    __slots__ = ("symbol", "side", "price", "leaves", "display")

    def __init__(self, symbol: str, side: str, price: int, leaves: int, display: str) -> None:
        self.symbol = symbol
        self.side = side
        self.price = price
        self.leaves = leaves
        self.display = display


class BackgroundFlow:
    """Seeded background participants trading through one firm name in the engine."""

    def __init__(self, reference_prices: dict[str, int], *, rate: float, seed: int, firm: str = "BGND",
                 tick: int = 100, volatility_bp: float = 1.0, max_resting_per_symbol: int = 200,
                 round_lot: int = 100) -> None:
        if not reference_prices:
            raise ValueError("the background flow needs at least one symbol")
        if tick <= 0 or round_lot <= 0:
            raise ValueError(f"tick and round_lot must be positive, got {tick!r} and {round_lot!r}")
        if rate < 0 or volatility_bp < 0 or max_resting_per_symbol < 0:
            raise ValueError("rate, volatility_bp and max_resting_per_symbol must not be negative")
        self.rate = float(rate)         # operations per second; the control socket may change it
        self.seed = seed
        self.firm = firm
        self.tick = tick
        self.volatility_bp = volatility_bp
        self.max_resting_per_symbol = max_resting_per_symbol
        self.round_lot = round_lot
        self.symbols = list(reference_prices)
        self._floor = MIN_FAIR_TICKS * tick
        self._ceiling = max(self._floor, (MAX_PRICE // tick - PASSIVE_TICKS - THROUGH_TICKS - 1) * tick)
        self._fair = {s: min(self._ceiling, max(self._floor, round(p / tick) * tick))
                      for s, p in reference_prices.items()}
        self._vol = volatility_bp / 10_000 / tick      # fair value * this = sd of one move, in ticks
        rng = Random(seed)
        self._random = rng.random
        self._gauss = rng.gauss
        self._arrivals = Random(seed + _ARRIVALS_SALT)
        self._live: dict[str, dict[str, _Live]] = {s: {} for s in self.symbols}   # oldest first
        self._orders: dict[str, _Live] = {}
        self._next_token = 1
        self.last_symbol = self.symbols[0]             # the symbol of the last step (the venue's locate)
        self._enter = self._cancel = self._replace = self._marketable = self._rejected = self._idle = 0

    # ------------------------------------------------------------------ inspection

    def fair_value(self, symbol: str) -> int:
        return self._fair[symbol]

    @property
    def counters(self) -> dict[str, int]:
        """Operations by kind; ``rejected`` counts the engine's refusals (Rejected, Cancel Reject),
        0 while the record is exact; ``idle`` the steps with nothing to do (halted, nothing live)."""
        return {"enter": self._enter, "cancel": self._cancel, "replace": self._replace,
                "marketable": self._marketable, "rejected": self._rejected, "idle": self._idle}

    def live(self, symbol: str) -> dict[str, tuple[str, int, int]]:
        """The flow's live orders in ``symbol``: token -> (side 'B'/'S', price, leaves), oldest first."""
        return {t: (o.side, o.price, o.leaves) for t, o in self._live[symbol].items()}

    # ------------------------------------------------------------------ timing

    def arrivals(self, elapsed_ns: int) -> int:
        """The Poisson number of operations due in ``elapsed_ns`` at ``rate``: inversion for small
        means, Hörmann's PTRS (exact, bounded expected work) above, so a 1 ms tick stays cheap."""
        mean = self.rate * elapsed_ns * 1e-9
        if mean <= 0.0:
            return 0
        rand = self._arrivals.random
        if mean < _SMALL_MEAN:
            u = rand()
            k = 0
            p = math.exp(-mean)
            cdf = p
            while u > cdf and k < 1000:
                k += 1
                p *= mean / k
                cdf += p
            return k
        slam = math.sqrt(mean)
        loglam = math.log(mean)
        b = 0.931 + 2.53 * slam
        a = -0.059 + 0.02483 * b
        log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
        vr = 0.9277 - 3.6224 / (b - 2)
        while True:
            u = rand() - 0.5
            v = rand()
            us = 0.5 - abs(u)
            k = math.floor((2 * a / us + b) * u + mean + 0.43) if us > 0.0 else -1
            if us >= 0.07 and v <= vr:
                return k
            if k < 0 or (us < 0.013 and v > us) or v <= 0.0:
                continue
            if math.log(v) + log_invalpha - math.log(a / (us * us) + b) <= -mean + k * loglam - math.lgamma(k + 1):
                return k

    # ------------------------------------------------------------------ operations

    def run(self, engine, count: int) -> list:
        events: list = []
        step = self.step
        for _ in range(count):
            events += step(engine)
        return events

    def step(self, engine) -> list:
        """One operation on ``engine``; returns the engine's events (also applied to the record)."""
        rnd = self._random
        symbols = self.symbols
        symbol = symbols[int(rnd() * len(symbols))]
        self.last_symbol = symbol

        # the random walk of the symbol's fair value
        fair = self._fair[symbol]
        if self._vol:
            move = round(self._gauss(0.0, fair * self._vol))
            if move:
                fair += move * self.tick
                if fair < self._floor:
                    fair = self._floor
                elif fair > self._ceiling:
                    fair = self._ceiling
                self._fair[symbol] = fair

        live = self._live[symbol]
        book = engine.books[symbol]
        u = rnd()
        if book.halted or engine.closed:
            if not live:
                self._idle += 1
                return []
            events = self._do_cancel(engine, live, fair)
        elif u >= _REPLACE:
            events = self._do_marketable(engine, symbol, book, fair)
        elif live and u >= _CANCEL:
            events = self._do_replace(engine, live, fair)
        elif live and (u >= _ENTER or len(live) >= self.max_resting_per_symbol):
            events = self._do_cancel(engine, live, fair)
        elif len(live) < self.max_resting_per_symbol:
            events = self._do_enter(engine, symbol, book, fair)
        else:                               # max_resting_per_symbol 0: nothing may rest
            events = self._do_marketable(engine, symbol, book, fair)
        self.observe(events)
        return events

    def _token(self) -> str:
        n = self._next_token
        self._next_token = n + 1
        return f"B{n:X}"                    # at most 14 characters up to 16**13 tokens

    def _do_enter(self, engine, symbol: str, book, fair: int) -> list:
        """A passive day order near fair value, so it usually rests and shapes the book; a side of
        the book left empty is filled first, so there is a two-sided market to quote against."""
        rnd = self._random
        tick = self.tick
        ticks = 1 + int(rnd() * PASSIVE_TICKS)
        buy = rnd() < 0.5
        if not book.bid_side.keys:
            buy = True
        elif not book.ask_side.keys:
            buy = False
        if buy:
            side = "B"
            price = fair - ticks * tick
            if price < tick:
                price = tick
        else:
            side = "S"
            price = fair + ticks * tick
        shares = (1 + int(rnd() * PASSIVE_LOTS)) * self.round_lot
        if shares > engine.max_shares:
            shares = engine.max_shares
        d = rnd()
        display = "N" if d < _HIDDEN else "A" if d < _ATTRIBUTED else "Y"
        self._enter += 1
        return engine.enter(self.firm, self._token(), symbol, side, shares, price, DAY, display)

    def _do_cancel(self, engine, live: dict[str, _Live], fair: int) -> list:
        """Cancel (or reduce) the farthest from fair value of the oldest few: the oldest bound how
        long a quote lives, the farthest are those the walk left behind; both cost O(1)."""
        token = None
        order = None
        far = -1
        n = CANCEL_CANDIDATES
        for t, o in live.items():
            d = abs(o.price - fair)
            if d > far:
                far, token, order = d, t, o
            n -= 1
            if not n:
                break
        rnd = self._random
        lot = self.round_lot
        shares = 0
        if rnd() < _REDUCE and order.leaves >= 2 * lot:
            shares = lot * (1 + int(rnd() * (order.leaves // lot - 1)))
        self._cancel += 1
        return engine.cancel(self.firm, token, shares)

    def _do_replace(self, engine, live: dict[str, _Live], fair: int) -> list:
        """Refresh the oldest order: same side, back near fair value, new size."""
        token = next(iter(live))
        order = live[token]
        rnd = self._random
        tick = self.tick
        ticks = 1 + int(rnd() * REPLACE_TICKS)
        if order.side == "B":
            price = fair - ticks * tick
            if price < tick:
                price = tick
        else:
            price = fair + ticks * tick
        shares = (1 + int(rnd() * PASSIVE_LOTS)) * self.round_lot
        if shares > engine.max_shares:
            shares = engine.max_shares
        self._replace += 1
        return engine.replace(self.firm, token, self._token(), shares, price)

    def _do_marketable(self, engine, symbol: str, book, fair: int) -> list:
        """Take liquidity: what fills the market maker's quotes and prints trades."""
        rnd = self._random
        tick = self.tick
        buy = rnd() < 0.5
        asks, bids = book.ask_side.keys, book.bid_side.keys
        if asks and -asks[-1] < fair:
            buy = True
        elif bids and bids[-1] > fair:
            buy = False
        shares = (1 + int(rnd() * MARKETABLE_LOTS)) * self.round_lot
        if shares > engine.max_shares:
            shares = engine.max_shares
        if rnd() < _MARKET_ORDER:
            price = MARKET
        else:
            through = int(rnd() * (THROUGH_TICKS + 1)) * tick
            if buy:
                touch = book.ask_side.best()
                price = (-(-touch // tick) * tick if touch is not None else fair) + through
                if price > MAX_PRICE:
                    price = MAX_PRICE // tick * tick
            else:
                touch = book.bid_side.best()
                price = (touch // tick * tick if touch is not None else fair) - through
                if price < tick:
                    price = tick
        self._marketable += 1
        return engine.enter(self.firm, self._token(), symbol, "B" if buy else "S", shares, price, IOC, "Y")

    # ------------------------------------------------------------------ the record

    def observe(self, events: list) -> None:
        """Apply the engine's answers for the flow's firm to its live record; events for other firms
        and market data are skipped. ``step`` calls it; call it too with events the flow did not
        cause (another firm executing against it, ``cancel_all``) to keep the record exact."""
        firm = self.firm
        orders = self._orders
        for e in events:
            t = type(e)
            if t is Executed or t is Canceled:
                if e[0] == firm:
                    token = e[1]
                    order = orders.get(token)
                    if order is not None:
                        left = order.leaves - e[2]
                        if left > 0:
                            order.leaves = left
                        else:
                            del orders[token]
                            del self._live[order.symbol][token]
            elif t is Accepted:
                if e[0] == firm and e[9] == "L":
                    order = _Live(e[4], "B" if e[2] == "B" else "S", e[5], e[3], e[7])
                    orders[e[1]] = order
                    self._live[e[4]][e[1]] = order
            elif t is Replaced:
                if e[0] == firm:
                    old = orders.pop(e[2], None)
                    if old is not None:
                        del self._live[old.symbol][e[2]]
                    if e[10] == "L":
                        order = _Live(e[5], "B" if e[3] == "B" else "S", e[6], e[4], e[8])
                        orders[e[1]] = order
                        self._live[e[5]][e[1]] = order
            elif t is Rejected or t is CancelReject:
                if e[0] == firm:
                    self._rejected += 1
                    if t is CancelReject:       # the engine says it is not live: believe it
                        old = orders.pop(e[1], None)
                        if old is not None:
                            del self._live[old.symbol][e[1]]
