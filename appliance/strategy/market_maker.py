"""The reference market maker: one bid and one ask per symbol around fair value, inventory-aware.

Decisions are pure functions of the book's top, the position and the open orders (so they are
tested without processes); ``MarketMaker`` only applies them:

- fair value: the mid, or the microprice (the mid leaned toward the thinner side);
- width: ``spread_ticks`` (or ``spread_bp`` of fair value, whichever is wider), plus
  ``widen_ticks`` per ``inventory_unit`` of position, split over both sides;
- skew: both quotes move against the position by ``skew_ticks`` per ``inventory_unit`` (long:
  lower, to sell more readily and buy less readily);
- hard cap: a side is quoted only with the size that keeps ``|position + open same-side shares|``
  within ``max_position`` if every same-side order filled; sizes are whole ``lot``s;
- post only: a bid never reaches the best ask, an ask never the best bid;
- requote only when the desired price differs from the resting one by more than
  ``requote_threshold_ticks`` (or the cap shrank the size): no message storms;
- pull both quotes (cancel) when the book is stale, crossed, halted, one-sided (no fair value),
  or the feed is not live; after a reject, no new quote in that symbol for ``reject_cooldown_ms``;
- cancel everything on stop.

The quote step runs compiled where it is built (``_quote_fast.c`` through ``compiled_quote_step``: the
top read from the Book's ring slot, the same float arithmetic); ``desired_quotes`` and ``needs_requote``
are its reference, asked wherever the compiled step cannot be exact, and alone with ``compiled_step: false``.
Its ``quiet`` answers, before anything is computed in Python, whether ``_requote`` would leave both quotes as
they are (most book updates): True only when it is sure; the rest of ``_requote`` is its reference.

Prices are integers with 4 implied decimals. Tick and lot come from each symbol's instrument
(``self.instrument(symbol)``, the layout's instruments file): the parameters do not repeat them.
A ``tick`` parameter may still be given (globally or per symbol) only when it equals the
instrument's, and a ``lot`` only as a whole number of round lots (quote in 200s where the round
lot is 100); anything else is refused at load (``validate_instruments``). Without an instruments
file (a test layout), ``tick`` and ``lot`` are required parameters.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import Iterable, Literal, NamedTuple

from appliance.messages.catalog import (BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_STALE,
                                       BOOK_UPDATE)
from appliance.messages.codes import MARKET_PRICE, Side

from .api import BackPressure, Book, Order, OrderState, Strategy, format_price, reject_reason_name
from .fills import Fill

try:
    from . import _quote_fast            # the compiled quote step (setup.py builds it); desired_quotes is the reference
except ImportError:                      # not built: the reference does it all
    _quote_fast = None

log = logging.getLogger("appliance.strategy.market_maker")


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------

# Upper bounds: beyond them a value is a typo, and the quoting arithmetic (floats) would overflow.
_MAX_PRICE = MARKET_PRICE - 1           # u32 prices (MARKET_PRICE asks for a market order)
_MAX_SHARES = 0xFFFFFFFF                # u32 shares
_MAX_TICKS = 1_000_000
_UPPER = {"tick": _MAX_PRICE, "size": _MAX_SHARES, "lot": _MAX_SHARES, "max_position": _MAX_SHARES,
          "inventory_unit": _MAX_SHARES, "spread_ticks": _MAX_TICKS, "requote_threshold_ticks": _MAX_TICKS,
          "skew_ticks": _MAX_TICKS, "widen_ticks": _MAX_TICKS, "spread_bp": 10_000}

@dataclass(frozen=True)
class QuoteParams:
    """Everything one symbol's quoting decision needs (globals with that symbol's overrides applied)."""
    tick: int = 100                      # price increment (4 implied decimals: 100 = $0.01)
    spread_ticks: int = 2                # quoted width at zero inventory, in ticks (at least 1)
    spread_bp: float = 0.0               # or this many basis points of fair value, whichever is wider
    size: int = 100                      # shares per quote
    lot: int = 100                       # sizes are whole lots
    max_position: int = 1000             # hard cap on |position| if every same-side order filled
    inventory_unit: int = 100            # shares of position per unit of skew/widening
    skew_ticks: float = 1.0              # quotes shift this many ticks against the position per unit
    widen_ticks: float = 0.5             # each side moves out this many ticks per unit of |position|
    requote_threshold_ticks: int = 1     # requote when the desired price moved more than this
    fair_value: Literal["mid", "microprice"] = "mid"
    reject_cooldown_ms: int = 1000       # after a reject: no new quote in the symbol for this long

    def __post_init__(self):
        for name in ("tick", "spread_ticks", "size", "lot", "max_position", "inventory_unit"):
            if getattr(self, name) is None and name in _FROM_INSTRUMENT:
                continue                       # MarketMakerParameters: the instrument's, resolved in for_symbol
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("spread_bp", "skew_ticks", "widen_ticks", "requote_threshold_ticks", "reject_cooldown_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("spread_bp", "skew_ticks", "widen_ticks"):       # YAML's .nan and .inf are floats too
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name, high in _UPPER.items():
            if getattr(self, name) is not None and getattr(self, name) > high:
                raise ValueError(f"{name} must be at most {high}, got {getattr(self, name)}")
        if self.lot is not None and self.size % self.lot:
            raise ValueError(f"size {self.size} is not a whole number of lots of {self.lot}")
        if self.max_position < self.size:
            raise ValueError(f"max_position {self.max_position} is below size {self.size}: it could never quote")


@dataclass(frozen=True)
class SymbolOverrides:
    """Per-symbol values; anything left out takes the global value."""
    tick: int | None = None
    spread_ticks: int | None = None
    spread_bp: float | None = None
    size: int | None = None
    lot: int | None = None
    max_position: int | None = None
    inventory_unit: int | None = None
    skew_ticks: float | None = None
    widen_ticks: float | None = None
    requote_threshold_ticks: int | None = None
    fair_value: Literal["mid", "microprice"] | None = None
    reject_cooldown_ms: int | None = None


_FROM_INSTRUMENT = ("tick", "lot")


@dataclass(frozen=True)
class MarketMakerParameters(QuoteParams):
    """The global values (QuoteParams' fields), per-symbol overrides, and whether to watch the feed.

    ``tick`` and ``lot`` default to the instrument's tick and round lot (None here); see the module
    docstring for when they may be given."""
    tick: int | None = None              # the instrument's; given, it must equal it
    lot: int | None = None               # the instrument's round lot; given, a whole number of round lots
    symbols: dict[str, SymbolOverrides] = field(default_factory=dict)
    pull_when_feed_down: bool = True     # cancel every quote while control word feed_ready is 0
    compiled_step: bool = True           # quote with _quote_fast where built; false: desired_quotes, the reference

    def __post_init__(self):
        super().__post_init__()
        for symbol in self.symbols:
            try:
                QuoteParams(**self._merged(symbol))      # tick and lot may still be the instrument's (None)
            except ValueError as exc:
                raise ValueError(f"symbols.{symbol}: {exc}") from None

    def _merged(self, symbol: str) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(QuoteParams)}
        overrides = self.symbols.get(symbol)
        if overrides is not None:
            values.update({f.name: getattr(overrides, f.name) for f in fields(SymbolOverrides)
                           if getattr(overrides, f.name) is not None})
        return values

    def for_symbol(self, symbol: str, instrument=None) -> QuoteParams:
        """One symbol's quoting parameters, tick and lot from its ``instrument`` (an
        ``appliance.config.instruments.Instrument``); ValueError when a tick parameter disagrees with
        it, a lot parameter is not a whole number of its round lots, or neither says a tick or lot."""
        values = self._merged(symbol)
        tick, lot = values["tick"], values["lot"]
        if instrument is not None:
            if tick is not None and tick != instrument.tick:
                raise ValueError(f"tick {tick} disagrees with {symbol}'s instrument (tick {instrument.tick}): leave "
                                 f"tick out, it comes from the instruments file")
            if lot is not None and lot % instrument.round_lot:
                raise ValueError(f"lot {lot} is not a whole number of {symbol}'s round lot ({instrument.round_lot})")
            values["tick"], values["lot"] = instrument.tick, lot or instrument.round_lot
        elif tick is None or lot is None:
            raise ValueError(f"{symbol} has no instrument (the layout names no instruments file): give "
                             f"{' and '.join(n for n in _FROM_INSTRUMENT if values[n] is None)} as parameters")
        return QuoteParams(**values)


# ---------------------------------------------------------------------------------------------
# Pure quoting decisions
# ---------------------------------------------------------------------------------------------

class BookTop(NamedTuple):
    """What quoting looks at: the best levels and whether the book may be trusted (a tuple: cheap per update)."""
    bid_price: int
    bid_shares: int
    ask_price: int
    ask_shares: int
    stale: bool = False
    crossed: bool = False
    halted: bool = False

    @classmethod
    def of(cls, book: Book) -> "BookTop":
        return cls(*_top_of(book))


_BAD_BOOK = BOOK_FLAG_STALE | BOOK_FLAG_INCONSISTENT        # api.Book.stale


def _top_of(book: Book) -> tuple:
    """BookTop's fields as a plain tuple, from one read of the book (what requote passes on every update)."""
    bid, bid_shares, ask, ask_shares, flags, trading_state = book.top()
    return (bid, bid_shares, ask, ask_shares, flags & _BAD_BOOK != 0, flags & BOOK_FLAG_CROSSED != 0,
            flags & BOOK_FLAG_HALTED != 0 or trading_state != _TRADING)


_TRADING = 0x54                 # ITCH trading state 'T'


class Quote(NamedTuple):
    price: int
    shares: int


def fair_value(top: BookTop, method: str = "mid") -> int | None:
    """The mid or microprice in price units (floored), or None without both sides."""
    if not (top.bid_price and top.ask_price and top.bid_shares and top.ask_shares):
        return None
    if method == "microprice":
        # Weighted by the opposite side's size: a thin ask means buyers are about to lift it.
        total = top.bid_shares + top.ask_shares
        return (top.bid_price * top.ask_shares + top.ask_price * top.bid_shares) // total
    return (top.bid_price + top.ask_price) // 2


_BUY, _SELL = Side.BUY, Side.SELL
_quote = tuple.__new__                  # Quote(price, shares) without NamedTuple's Python-level __new__
_LIVE, _PENDING_CANCEL, _PENDING_REPLACE = OrderState.LIVE, OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE
if _quote_fast is not None:
    _quote_fast.configure_states(_LIVE, _PENDING_CANCEL, _PENDING_REPLACE)     # what QuoteStep.quiet compares
_NO_ASK = 1 << 62


def desired_quotes(top: BookTop, position: int, open_orders: Iterable, params: QuoteParams) \
        -> tuple[Quote | None, Quote | None]:
    """(bid, ask) to quote now, each None when that side must not be quoted.

    ``open_orders``: orders of this symbol (anything with ``side`` and ``leaves``) that stay open
    next to the new quotes, i.e. every open order except the quotes these would replace: their
    leaves count against the cap as if they all filled."""
    bid_top, bid_top_shares, ask_top, ask_top_shares, stale, crossed, halted = top
    if stale or crossed or halted or not (bid_top and ask_top and bid_top_shares and ask_top_shares):
        return None, None
    if params.fair_value == "microprice":
        fair = (bid_top * ask_top_shares + ask_top * bid_top_shares) // (bid_top_shares + ask_top_shares)
    else:
        fair = (bid_top + ask_top) // 2
    tick = params.tick
    width = params.spread_ticks * tick
    if params.spread_bp:
        bp_width = -(-int(fair * params.spread_bp) // 10_000)          # ceil, price units
        width = max(width, -(-bp_width // tick) * tick)
    half = width / 2
    shift = 0.0
    if position:
        units = position / params.inventory_unit
        half += params.widen_ticks * abs(units) * tick
        shift = -params.skew_ticks * units * tick
    bid_price = int((fair + shift - half) // tick) * tick
    ask_price = int(-((-(fair + shift + half)) // tick)) * tick
    if bid_price > ask_top - tick:
        bid_price = ask_top - tick                                      # post only: never take
    if ask_price < bid_top + tick:
        ask_price = bid_top + tick
    open_buys, open_sells = _open_shares(open_orders)
    lot, size = params.lot, params.size
    bid_room = params.max_position - position - open_buys
    ask_room = params.max_position + position - open_sells
    bid_size = (size if size < bid_room else bid_room) // lot * lot if bid_room > 0 else 0
    ask_size = (size if size < ask_room else ask_room) // lot * lot if ask_room > 0 else 0
    bid = _quote(Quote, (bid_price, bid_size)) if bid_size > 0 and bid_price > 0 else None
    ask = _quote(Quote, (ask_price, ask_size)) if ask_size > 0 and ask_price > 0 else None
    return bid, ask


def needs_requote(resting_price: int, resting_leaves: int, desired: Quote, params: QuoteParams) -> bool:
    """Whether a live quote should be replaced by ``desired``."""
    if abs(desired.price - resting_price) > params.requote_threshold_ticks * params.tick:
        return True
    return resting_leaves > desired.shares              # the cap shrank: never keep more than allowed


def _open_shares(open_orders: Iterable) -> tuple[int, int]:
    """(buy, sell) leaves of ``open_orders``: what counts against the cap beside the quotes."""
    open_buys = open_sells = 0
    for o in open_orders:
        if o.side == _BUY:
            open_buys += o.leaves
        else:
            open_sells += o.leaves
    return open_buys, open_sells


def _field_at(name: str) -> tuple[int, int]:
    spec = BOOK_UPDATE.fields[BOOK_UPDATE.index_of[name]]
    return spec.offset, spec.size


# What the compiled step reads of a BookUpdate slot, from the catalog (the order _quote_fast.c expects).
_STEP_FIELDS = tuple(_field_at(name) for name in ("flags", "trading_state", "bid_levels", "ask_levels", "bid_price_0",
                                                  "bid_shares_0", "ask_price_0", "ask_shares_0"))


def compiled_quote_step(params: QuoteParams):
    """``desired_quotes`` and ``needs_requote`` compiled for one symbol's parameters: a ``_quote_fast.QuoteStep``
    with ``desired_at(src, at, position, open_buys, open_sells)`` (the top read from a BookUpdate slot: a Book's
    ``_src``/``_at``), ``desired(top, position, open_buys, open_sells)`` and ``needs_requote(price, leaves,
    desired)``; each answers what the reference would, or None where it cannot be exact (then ask the
    reference). None when the extension is not built."""
    if _quote_fast is None:
        return None
    return _quote_fast.QuoteStep(
        _STEP_FIELDS, BOOK_UPDATE.size, _BAD_BOOK, BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, _TRADING, Quote, params.tick,
        params.spread_ticks, params.spread_bp, params.size, params.lot, params.max_position, params.inventory_unit,
        params.skew_ticks, params.widen_ticks, params.requote_threshold_ticks, params.fair_value == "microprice")


# ---------------------------------------------------------------------------------------------
# The strategy
# ---------------------------------------------------------------------------------------------

class _SymbolQuotes:
    __slots__ = ("symbol", "book", "params", "step", "bid_id", "ask_id", "cooldown_until_ns", "cancel_retry_ns")

    def __init__(self, symbol: str, book: Book, params: QuoteParams, step=None):
        self.symbol = symbol
        self.book = book                # the host's Book of the symbol: the same object for the whole run
        self.params = params
        self.step = step                # compiled_quote_step(params), or None: the reference decides
        self.bid_id = 0
        self.ask_id = 0
        self.cooldown_until_ns = 0      # after a reject: no new order or replace before this
        self.cancel_retry_ns = 0        # after a refused cancel: no cancel retry before this


class MarketMaker(Strategy):
    """Two-sided quotes in every traded symbol (see the module docstring)."""

    Parameters = MarketMakerParameters

    @classmethod
    def validate_parameters(cls, parameters: MarketMakerParameters, symbols: tuple[str, ...]) -> None:
        unknown = [s for s in parameters.symbols if symbols and s not in symbols]
        if unknown:
            raise ValueError(f"symbols.{unknown[0]}: not a layout symbol ({', '.join(symbols)})")

    @classmethod
    def validate_instruments(cls, parameters: MarketMakerParameters, instruments: dict) -> None:
        """At load: every traded symbol's tick and lot resolve against its instrument."""
        for symbol, instrument in instruments.items():
            try:
                parameters.for_symbol(symbol, instrument)
            except ValueError as exc:
                where = f"symbols.{symbol}: " if symbol in parameters.symbols else ""
                raise ValueError(f"{where}{exc}") from None

    def _instrument_or_none(self, symbol: str):
        """The symbol's instrument, or None without one (then the parameters must say tick and lot)."""
        try:
            return self.instrument(symbol)
        except KeyError:
            return None

    def on_start(self) -> None:
        self.quotes = {}
        for symbol in self.symbols:
            params = self.params.for_symbol(symbol, self._instrument_or_none(symbol))
            step = compiled_quote_step(params) if self.params.compiled_step else None
            self.quotes[symbol] = _SymbolQuotes(symbol, self.book(symbol), params, step)
        self._by_book = {id(state.book): state for state in self.quotes.values()}
        self._orders = self.orders          # the views live as long as the host: looked up once
        self._positions = self.positions
        self.feed_was_live = True
        self.gate_was_open = True
        log.info("market maker quoting %s: %s", ", ".join(self.symbols),
                 "; ".join(f"{s} {q.params.size} @ {q.params.spread_ticks} ticks, cap {q.params.max_position}"
                           for s, q in self.quotes.items()))

    # ---- events
    def on_book(self, book: Book) -> None:
        state = self._by_book.get(id(book))
        if state is not None:
            self._requote(state)

    def on_fill(self, order: Order, fill: Fill) -> None:
        self.requote(order.symbol)        # the position moved: skew and cap change

    def on_order_canceled(self, order: Order) -> None:
        self._forget(order)

    def on_order_rejected(self, order: Order, source, reason: int) -> None:
        self._forget(order)
        state = self.quotes.get(order.symbol)
        if state is not None:
            state.cooldown_until_ns = self.clock.now_ns() + state.params.reject_cooldown_ms * 1_000_000
        log.warning("%s %s %d @ %s rejected by %s: %s", order.symbol, order.side.name, order.shares,
                    format_price(order.price), getattr(source, "name", source), reject_reason_name(source, reason))

    def on_cancel_rejected(self, order: Order, source, reason: int) -> None:
        state = self.quotes.get(order.symbol)
        if state is not None:
            state.cancel_retry_ns = self.clock.now_ns() + state.params.reject_cooldown_ms * 1_000_000
        log.warning("cancel of %s %s refused by %s: %s", order.symbol, order.side.name,
                    getattr(source, "name", source), reject_reason_name(source, reason))

    def on_timer(self, now_ns: int) -> None:
        gate = self.gate_open()
        if not gate and self.gate_was_open:
            log.warning("trading gate closed: pulling every quote")
        self.gate_was_open = gate
        live = self.feed_live() or not self.params.pull_when_feed_down
        if not live and self.feed_was_live:
            log.warning("feed not live: pulling every quote")
        self.feed_was_live = live
        for symbol in self.quotes:
            self.requote(symbol)          # also: cooldowns that ended, pulls while the feed is down

    def on_stop(self) -> None:
        self.cancel_all()

    # ---- applying the decisions
    def _forget(self, order: Order) -> None:
        """A quote is gone; a failed replacement hands its side back to the order it was to replace."""
        state = self.quotes.get(order.symbol)
        if state is None:
            return
        original = self.orders.get(order.replaces) if order.replaces else None
        successor = original.client_order_id if original is not None else 0
        if state.bid_id == order.client_order_id:
            state.bid_id = successor
        if state.ask_id == order.client_order_id:
            state.ask_id = successor

    def requote(self, symbol: str) -> None:
        state = self.quotes.get(symbol)
        if state is not None:
            self._requote(state)

    def _requote(self, state: _SymbolQuotes) -> None:
        """Bring both quotes of one symbol to what the book, the position and the open orders ask for."""
        symbol = state.symbol
        orders = self._orders
        bid = orders.get(state.bid_id) if state.bid_id else None
        ask = orders.get(state.ask_id) if state.ask_id else None
        if bid is None:
            state.bid_id = 0
        if ask is None:
            state.ask_id = 0
        now = self.now_ns()                  # the host's clock, as self.clock.now_ns() (two calls fewer)
        may_cancel = now >= state.cancel_retry_ns
        if orders.count(symbol) == (bid is not None) + (ask is not None):
            others = ()                                     # only our two quotes are open (the usual case)
        else:
            others = [o for o in orders.of(symbol) if o is not bid and o is not ask]
            for stray in others:
                if stray.state == _LIVE and may_cancel:
                    self.cancel(stray.client_order_id)     # not one of our two quotes: never leave it resting
        if (self.params.pull_when_feed_down and not self.feed_live()) or not self.gate_open():
            desired_bid = desired_ask = None          # nothing new while the gate is shut: pull instead
        else:
            position = self._positions[symbol]
            step = state.step
            desired = None
            if step is not None:                            # the compiled step reads the Book's slot itself
                book = state.book
                if not others and step.quiet(book._src, book._at, position, bid, ask, now < state.cooldown_until_ns,
                                             may_cancel):
                    return              # what follows would send, replace and cancel nothing (most book updates)
                open_buys, open_sells = _open_shares(others) if others else (0, 0)
                desired = step.desired_at(book._src, book._at, position, open_buys, open_sells)
            if desired is None:
                desired = desired_quotes(_top_of(state.book), position, others, state.params)
            desired_bid, desired_ask = desired
        cooling = now < state.cooldown_until_ns
        # Never cross our own quote (risk refuses it as SELF_MATCH: a wash trade). A side whose new price
        # would reach the other side's live or pending price waits for that side to move first, so the
        # side moving away from the market goes out first.
        hold_bid = desired_bid is not None and desired_bid.price >= self._lowest(ask)
        hold_ask = desired_ask is not None and desired_ask.price <= self._highest(bid)
        if desired_bid is not None and bid is not None and desired_bid.price > bid.price:     # moving up
            if not hold_ask:
                state.ask_id = self._manage(symbol, _SELL, ask, desired_ask, state, cooling, may_cancel)
            if not hold_bid:
                state.bid_id = self._manage(symbol, _BUY, bid, desired_bid, state, cooling, may_cancel)
        else:
            if not hold_bid:
                state.bid_id = self._manage(symbol, _BUY, bid, desired_bid, state, cooling, may_cancel)
            if not hold_ask:
                state.ask_id = self._manage(symbol, _SELL, ask, desired_ask, state, cooling, may_cancel)

    def _lowest(self, ask: Order | None) -> int:
        """The lowest price ``ask`` may rest at: its own or, while a replace is pending, the replacement's."""
        if ask is None or ask.state > _PENDING_REPLACE:        # not ask.is_open (without its Python frame)
            return _NO_ASK
        price = ask.price
        successor = self._orders.get(ask.replaced_by) if ask.replaced_by else None
        return successor.price if successor is not None and successor.price < price else price

    def _highest(self, bid: Order | None) -> int:
        if bid is None or bid.state > _PENDING_REPLACE:
            return 0
        price = bid.price
        successor = self._orders.get(bid.replaced_by) if bid.replaced_by else None
        return successor.price if successor is not None and successor.price > price else price

    def _manage(self, symbol: str, side: Side, order: Order | None, desired: Quote | None, state: _SymbolQuotes,
                cooling: bool, may_cancel: bool) -> int:
        """Bring one side to ``desired``; returns the client order id now quoting it (0: none).

        ``cooling``: no new order or replace (after a reject); ``may_cancel``: False for a while after
        a refused cancel, so a venue or OMS that refuses is not asked again on every book update."""
        if order is None:
            if desired is None or cooling:
                return 0
            send = self.buy if side == _BUY else self.sell
            try:
                return send(symbol, desired.shares, desired.price)
            except BackPressure:
                return 0                                   # risk is behind: quote again on the next event
        if desired is None:
            if order.state != _PENDING_CANCEL and may_cancel:
                self.cancel(order.client_order_id)
            return order.client_order_id
        if order.state != _LIVE:
            return order.client_order_id               # an answer is on its way: decide after it
        step = state.step
        requote = None if step is None else step.needs_requote(order.price, order.leaves, desired)
        if requote is None:
            requote = needs_requote(order.price, order.leaves, desired, state.params)
        if requote:
            if cooling:
                if order.leaves > desired.shares and may_cancel:
                    self.cancel(order.client_order_id)     # the cap always wins
                return order.client_order_id
            try:
                new_id = self.replace(order.client_order_id, shares=desired.shares, price=desired.price)
            except BackPressure:
                new_id = None
                if order.leaves > desired.shares and may_cancel:
                    self.cancel(order.client_order_id)     # cancels always queue: the cap holds
            return new_id or order.client_order_id
        return order.client_order_id
