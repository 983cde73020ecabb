"""What a user's strategy sees: the ``Strategy`` base class and read-only views of books, orders, positions.

Subclass ``Strategy``, override the callbacks you need, and act with ``buy``, ``sell``,
``cancel``, ``replace`` and ``cancel_all``. The host (``host.py``) calls the callbacks one
at a time on the strategy process's single thread; the views never change while a callback runs,
only between callbacks. Every action becomes an ``OrderIntent`` on the strategy-to-risk ring:
nothing reaches the exchange without passing risk.

Prices are integers with 4 implied decimals (1900100 is $190.01), as on the whole order path;
``format_price`` and ``price_from_decimal`` convert for display and configuration only.

An exception that escapes a callback stops the strategy: the host logs it with its traceback,
cancels every order (CANCEL_ALL through risk), and never calls the strategy again, while the
process keeps running (``strategy.stopped`` = 1, control word ``strategy_ready`` = 0).
"""
from __future__ import annotations

import enum
import logging
import operator
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, NamedTuple

from appliance.config.instruments import Instrument
from appliance.messages.catalog import (
    BOOK_DEPTH, BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED, BOOK_FLAG_STALE,
    BOOK_UPDATE,
)
from appliance.messages.codes import (
    MARKET_PRICE, PRICE_SCALE, REJECT_REASON_NO_SUCH_ORDER, Capacity, Display, OmsReason, RejectSource, RiskReason,
    Side,
)

from .fills import Fill, mark_price

MARKET = MARKET_PRICE       # ``buy(symbol, shares, MARKET)``: a market order (immediate-or-cancel)

if TYPE_CHECKING:
    from appliance.strategy.host import StrategyHost
    from appliance.strategy.timers import Clock, Timer


# OUCH 4.2 Rejected reasons (the byte an exchange REJECTED carries), for messages only; and the one the OMS
# reports itself when the venue's Cancel Reject kills an order or its replacement (``codes``).
OUCH_REJECT_REASONS = {
    chr(REJECT_REASON_NO_SUCH_ORDER): "NO_SUCH_ORDER",
    "T": "TEST_MODE", "H": "HALTED", "Z": "SHARES_EXCEED_MAX", "S": "INVALID_STOCK", "D": "INVALID_DISPLAY",
    "C": "EXCHANGE_CLOSED", "L": "FIRM_NOT_AUTHORIZED", "M": "OUTSIDE_PERMITTED_TIMES", "R": "NOT_ALLOWED",
    "X": "INVALID_PRICE", "N": "INVALID_MINIMUM_QUANTITY", "O": "OTHER", "W": "INVALID_MID_POINT_POST_ONLY",
    "a": "REJECT_ALL_ENABLED", "b": "EASY_TO_BORROW_REJECT", "c": "RESTRICTED_SYMBOL_REJECT",
    "d": "ISO_NOT_ALLOWED", "e": "INVALID_SIDE", "f": "EXCEEDS_MAX_PRICE", "g": "DUPLICATE_TOKEN",
}


class BackPressure(RuntimeError):
    """The strategy-to-risk ring and the host's bounded queue behind it are both full.

    Nothing was sent and nothing was recorded: the action may be retried later (e.g. on the next
    timer). Raised only for new orders and replaces; cancels are always queued."""


class StrategyStopping(RuntimeError):
    """A new order or replace was asked for while the strategy is stopping: only cancels may leave."""


def format_price(price: int) -> str:
    """``1900100`` -> ``'190.0100'`` (display only)."""
    sign = "-" if price < 0 else ""
    whole, frac = divmod(abs(int(price)), PRICE_SCALE)
    return f"{sign}{whole}.{frac:04d}"


def price_from_decimal(value: str | int | float) -> int:
    """``'190.01'`` -> ``1900100``; refuses values with more than 4 decimals (configuration only)."""
    try:
        scaled = Decimal(str(value)) * PRICE_SCALE
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal price") from None
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more than 4 decimals")
    return int(scaled)


def reject_reason_name(source: int, reason: int) -> str:
    """A reject's reason as a name: a RiskReason, an OmsReason, or the exchange's OUCH reason byte."""
    if source == RejectSource.RISK:
        return _enum_name(RiskReason, reason)
    if source == RejectSource.OMS:
        return _enum_name(OmsReason, reason)
    if source == RejectSource.EXCHANGE:
        char = chr(reason) if 32 < reason < 127 else None
        if char is None:
            return f"OUCH({reason})"
        return f"{OUCH_REJECT_REASONS.get(char, 'UNKNOWN')}({char})"
    return f"source {source} reason {reason}"


def _enum_name(enum_type, value: int) -> str:
    try:
        return enum_type(value).name
    except ValueError:
        return f"{enum_type.__name__}({value})"


# ---------------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------------

class OrderState(enum.IntEnum):
    """Where an order stands in the strategy's own view, built from the execution reports."""
    PENDING_NEW = 1          # sent, not yet accepted by the venue
    LIVE = 2                 # accepted, resting
    PENDING_CANCEL = 3       # a cancel is on its way
    PENDING_REPLACE = 4      # a replace is on its way (the replacement is a PENDING_NEW order)
    FILLED = 5               # terminal: no shares left
    CANCELED = 6             # terminal
    REJECTED = 7             # terminal: by risk, the OMS or the exchange
    REPLACED = 8             # terminal: its replacement took over

    @property
    def is_open(self) -> bool:
        return self <= OrderState.PENDING_REPLACE


def _field(name: str):
    """A read-only property's getter in C (``operator.attrgetter``): no Python frame per read."""
    return operator.attrgetter(name)


def _refuse_write(self, name, value=None):
    raise AttributeError(f"{type(self).__name__} is read-only: {name!r} cannot be set or deleted (the host keeps it "
                         f"true from the feed and the execution reports; act with buy/sell/cancel/replace)")


class _Sealed:
    """A view whose attributes are set in ``__init__`` and never again: ``_seal`` ends construction; after
    it every attribute write or delete raises AttributeError (plain writes, private names included)."""

    __slots__ = ("_sealed",)

    def __setattr__(self, name, value):
        try:
            sealed = self._sealed
        except AttributeError:
            sealed = False
        if sealed:
            _refuse_write(self, name)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        _refuse_write(self, name)

    def _seal(self) -> None:
        object.__setattr__(self, "_sealed", True)


_BUY, _LAST_OPEN_STATE, _PENDING_NEW = Side.BUY, OrderState.PENDING_REPLACE, OrderState.PENDING_NEW  # per call


class _OrderFields:
    """An order's slots, shared by ``Order`` (read-only) and its private mutable twin (``_WritableOrder``)."""

    __slots__ = ("_client_order_id", "_symbol", "_symbol_id", "_side", "_price", "_shares", "_leaves",
                 "_filled", "_state", "_tif", "_replaces", "_replaced_by", "_cancel_id", "_created_ns", "_flags")


class Order(_OrderFields):
    """One of the strategy's orders, read-only (every attribute write raises AttributeError). The host
    updates it between callbacks through its slots' own setters (``ORDER_SETTERS``), never a plain write."""

    __slots__ = ()

    def __new__(cls, client_order_id: int, symbol: str, symbol_id: int, side: Side, price: int, shares: int,
                tif: int, replaces: int = 0, created_ns: int = 0,
                flags: tuple[int, int, int, int] = (Display.VISIBLE, Capacity.AGENCY, 0, 0)):
        """Built as its private mutable twin (plain writes, as fast as an ordinary class), then made an
        Order: from then on no attribute of it can be written."""
        return _WritableOrder(client_order_id, symbol, symbol_id, side, price, shares, tif, replaces, created_ns,
                              flags)

    __setattr__ = _refuse_write
    __delattr__ = _refuse_write

    client_order_id = property(_field("_client_order_id"))
    symbol = property(_field("_symbol"))
    symbol_id = property(_field("_symbol_id"))
    side = property(_field("_side"), doc="codes.Side")
    price = property(_field("_price"), doc="limit price, 4 implied decimals")
    shares = property(_field("_shares"), doc="the size asked for (of this order or replacement)")
    leaves = property(_field("_leaves"), doc="shares still open")
    filled = property(_field("_filled"), doc="shares executed on this order")
    state = property(_field("_state"))
    time_in_force = property(_field("_tif"))
    replaces = property(_field("_replaces"), doc="the client order id this one replaces (0: none)")
    replaced_by = property(_field("_replaced_by"), doc="its pending or done replacement (0: none)")
    created_ns = property(_field("_created_ns"))
    display = property(lambda self: Display(self._flags[0]), doc="codes.Display")
    capacity = property(lambda self: Capacity(self._flags[1]), doc="codes.Capacity")
    min_qty = property(lambda self: self._flags[2], doc="minimum quantity (0: none)")
    iso = property(lambda self: bool(self._flags[3]), doc="an intermarket sweep order")

    @property
    def is_market(self) -> bool:
        return self._price == MARKET_PRICE

    @property
    def is_short(self) -> bool:
        """A short sale (side SELL_SHORT); it counts as a sell everywhere."""
        return self._side == Side.SELL_SHORT

    @property
    def is_buy(self) -> bool:
        return self._side == _BUY

    @property
    def is_open(self) -> bool:
        return self._state <= _LAST_OPEN_STATE

    def __repr__(self) -> str:
        price = "MARKET" if self._price == MARKET_PRICE else format_price(self._price)
        return (f"Order({self._client_order_id}, {self._symbol} {self._side.name} {self._leaves}/{self._shares} @ "
                f"{price}, {self._state.name})")


# The host's (order_view's) way to change an Order: each slot's own C-level setter, which bypasses the
# refusing __setattr__ (one call, ~30 ns more than a plain write; only on the update path, not on reads).
ORDER_SETTERS = {name: _OrderFields.__dict__[name].__set__ for name in _OrderFields.__slots__}
_PLAIN_FLAGS = (Display.VISIBLE, Capacity.AGENCY, 0, 0)
_SET_CLASS = object.__dict__["__class__"].__set__


class _WritableOrder(_OrderFields):
    """Order's private mutable twin (the same slots, plain writes) while its ``__init__`` fills it in; it
    ends as an Order. The host builds orders with it (``make_order``: one Python frame, like a plain class)."""

    __slots__ = ()

    def __init__(self, client_order_id, symbol, symbol_id, side, price, shares, tif, replaces=0, created_ns=0,
                 flags=_PLAIN_FLAGS):
        self._client_order_id = client_order_id
        self._symbol = symbol
        self._symbol_id = symbol_id
        self._side = side
        self._price = price
        self._shares = shares
        self._leaves = shares
        self._filled = 0
        self._state = _PENDING_NEW
        self._tif = tif
        self._replaces = replaces
        self._replaced_by = 0
        self._cancel_id = 0
        self._created_ns = created_ns
        self._flags = flags                  # OrderIntent's display, capacity, minimum quantity, ISO (0/1)
        _SET_CLASS(self, Order)              # from here on read-only


make_order = _WritableOrder


class OpenOrders(_Sealed):
    """The strategy's open orders by client order id (read-only; iterating yields ``Order``s).

    ``get(client_order_id, default=None) -> Order | None``: the order, or ``default`` when it is not open
    (the dict's own get: no Python frame, strategies call it per update)."""

    __slots__ = ("_orders", "_by_symbol", "_symbol_ids", "get")

    def __init__(self, orders: dict[int, Order], by_symbol: list[dict[int, Order]], symbol_ids: dict[str, int]):
        self._orders = orders
        self._by_symbol = by_symbol
        self._symbol_ids = symbol_ids
        self.get = orders.get
        self._seal()

    def __len__(self) -> int:
        return len(self._orders)

    def __iter__(self) -> Iterator[Order]:
        return iter(tuple(self._orders.values()))

    def __contains__(self, client_order_id: int) -> bool:
        return client_order_id in self._orders

    def __getitem__(self, client_order_id: int) -> Order:
        return self._orders[client_order_id]

    def count(self, symbol: str) -> int:
        """How many orders of one symbol are open (without building them as ``of`` does)."""
        sid = self._symbol_ids.get(symbol)
        return 0 if sid is None else len(self._by_symbol[sid])

    def of(self, symbol: str) -> tuple[Order, ...]:
        """The open orders of one symbol, oldest first."""
        sid = self._symbol_ids.get(symbol)
        return () if sid is None else tuple(self._by_symbol[sid].values())

    def open_shares(self, symbol: str, side: Side) -> int:
        """Leaves of every open order on one side of a symbol (what could still execute): Side.SELL
        and Side.SELL_SHORT both mean the sell side, short sales included."""
        sid = self._symbol_ids.get(symbol)
        if sid is None:
            return 0
        buys = side == _BUY
        return sum(o._leaves for o in self._by_symbol[sid].values() if (o._side == _BUY) == buys)


class Positions(_Sealed):
    """Per-symbol position as the OMS reports it (ExecutionReport.position), and the strategy's own fills
    (read-only: the host writes the lists' items, nothing writes an attribute after ``__init__``).

    Units: shares signed (short negative); ``cost_basis`` and every P&L and fee in price units x shares
    (4 implied decimals: 10000 is one dollar); ``avg_price`` and ``mark`` in price units. Position,
    cost basis and realized P&L are the OMS's for the day (the symbol's, every strategy's); the fees
    are of this process's fills since it started (the OMS does not know the schedule).
    The mark is ``fills.mark_price`` of the symbol's book: its mid when the book is good, else its last
    trade; a symbol this strategy does not trade has no book, hence no mark."""

    __slots__ = ("_symbol_ids", "_position", "_cost_basis", "_realized_pnl", "_bought", "_sold", "_fees", "_books")

    def __init__(self, symbols: tuple[str, ...]):
        self._symbol_ids = {s: i for i, s in enumerate(symbols)}
        n = len(symbols)
        self._position = [0] * n
        self._cost_basis = [0] * n
        self._realized_pnl = [0] * n
        self._bought = [0] * n
        self._sold = [0] * n
        self._fees = [0] * n
        self._books: list = [None] * n          # the host's Books by symbol id (None: not traded)
        self._seal()

    def _sid(self, symbol: str) -> int:
        try:
            return self._symbol_ids[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    def __getitem__(self, symbol: str) -> int:
        sid = self._symbol_ids.get(symbol)          # _sid's lookup inline: strategies read this per update
        return self._position[self._sid(symbol) if sid is None else sid]

    def position(self, symbol: str) -> int:
        """Signed shares."""
        return self._position[self._sid(symbol)]

    def cost_basis(self, symbol: str) -> int:
        return self._cost_basis[self._sid(symbol)]

    def realized_pnl(self, symbol: str) -> int:
        """Price units (4 implied decimals) x shares, for the day."""
        return self._realized_pnl[self._sid(symbol)]

    def bought(self, symbol: str) -> int:
        """Shares this strategy process bought since it started (its own fills)."""
        return self._bought[self._sid(symbol)]

    def sold(self, symbol: str) -> int:
        return self._sold[self._sid(symbol)]

    def avg_price(self, symbol: str) -> float:
        """Average cost of the open position (cost basis / position), price units; 0.0 when flat."""
        sid = self._sid(symbol)
        position = self._position[sid]
        return self._cost_basis[sid] / position if position else 0.0

    def mark(self, symbol: str) -> int:
        """The price the position is marked at (``fills.mark_price``), price units; 0: no mark."""
        return mark_price(self._books[self._sid(symbol)])

    def unrealized_pnl(self, symbol: str) -> int | None:
        """position x mark - cost basis, price units x shares; 0 when flat, None when there is no mark."""
        sid = self._sid(symbol)
        position = self._position[sid]
        if not position:
            return 0
        mark = mark_price(self._books[sid])
        return position * mark - self._cost_basis[sid] if mark else None

    def total_pnl(self, symbol: str) -> int | None:
        """Realized + unrealized (before fees), price units x shares; None when there is no mark."""
        unrealized = self.unrealized_pnl(symbol)
        return None if unrealized is None else self._realized_pnl[self._sid(symbol)] + unrealized

    def fees(self, symbol: str) -> int:
        """Fees paid minus rebates earned on this process's fills, price units x shares."""
        return self._fees[self._sid(symbol)]

    def net_pnl(self, symbol: str) -> int | None:
        """``total_pnl - fees``; None when there is no mark."""
        total = self.total_pnl(symbol)
        return None if total is None else total - self._fees[self._sid(symbol)]

    def items(self) -> list[tuple[str, int]]:
        return [(s, self._position[i]) for s, i in self._symbol_ids.items()]


# ---------------------------------------------------------------------------------------------
# Books
# ---------------------------------------------------------------------------------------------

_FIELDS = BOOK_UPDATE.fields_struct      # each read below: the fields it names, at the catalog's offsets
_OFF = BOOK_UPDATE.offset_of
_SIDE_FIELDS = {side: (f"{side}_levels", *[f"{side}_price_{i}" for i in range(BOOK_DEPTH)],
                       *[f"{side}_shares_{i}" for i in range(BOOK_DEPTH)]) for side in ("bid", "ask")}
_READ_DEPTH = {side: _FIELDS((*names, *[f"{side}_orders_{i}" for i in range(BOOK_DEPTH)])).unpack_from
               for side, names in _SIDE_FIELDS.items()}
_READ_AGGRESSOR = _FIELDS(("last_trade_aggressor",)).unpack_from
AGGRESSOR_OF_BYTE: dict[int, Side] = {Side.BUY.value: Side.BUY, Side.SELL.value: Side.SELL}  # .get: None if unknown
_READ_TOP = _FIELDS(("flags", "trading_state", "bid_levels", "ask_levels", "bid_price_0", "bid_shares_0",
                     "ask_price_0", "ask_shares_0")).unpack_from
_READ_LEVELS = {side: _FIELDS(names).unpack_from for side, names in _SIDE_FIELDS.items()}
_READ_BID = _FIELDS(("bid_levels", "bid_price_0", "bid_shares_0")).unpack_from
_READ_ASK = _FIELDS(("ask_levels", "ask_price_0", "ask_shares_0")).unpack_from
_READ_STATE = _FIELDS(("flags", "trading_state")).unpack_from
_READ_TRADE = _FIELDS(("last_trade_price", "last_trade_shares")).unpack_from
_READ_U64 = {name: _FIELDS((name,)).unpack_from for name in ("update_sequence", "t_exchange_ns", "t_rx_ns",
                                                              "t_feed_out_ns", "trade_sequence",
                                                              "last_trade_t_exchange_ns")}
_READ_TYPE = _FIELDS(("type_id",)).unpack_from
_BAD_FLAGS = BOOK_FLAG_STALE | BOOK_FLAG_INCONSISTENT
_TRADING = 0x54                          # trading state 'T'
_SIZE = BOOK_UPDATE.size


class Level(NamedTuple):
    """One price level of a book: ``orders`` is how many orders rest there (the feed counts them from
    ITCH's order-by-order book; it saturates at 65535)."""
    price: int
    shares: int
    orders: int


class Trade(NamedTuple):
    """One print (immutable), as ``on_trade`` receives it.

    ``aggressor``: the side that took liquidity, where ITCH tells it (E and C executions against a resting
    order: the other side; P: the other side of its buy/sell indicator), None where it does not (crosses,
    a C naming an order the feed does not hold). ``sequence``: the symbol's print count in the feed
    (BookUpdate.trade_sequence), one more per print: two identical prints are two trades. ``t_exchange_ns``:
    the venue's timestamp of the print; ``t_rx_ns``: when our feed received the packet that carried it
    (both epoch ns)."""
    symbol: str
    price: int
    shares: int
    aggressor: Side | None
    sequence: int
    t_exchange_ns: int
    t_rx_ns: int


class Book:
    """The latest BookUpdate of one symbol: top BOOK_DEPTH levels with their order counts, state, flags,
    last trade, timestamps.

    One object per symbol. Every property reads its fields on demand, at the catalog's offsets,
    from the update's ring slot while the host holds it, and from the book's own copy of it once
    the slot is released (the ring reuses it): nothing is decoded that the strategy does not ask for.
    The Book changes in place with the next update, so keep values, not the Book, if you need an
    older snapshot. Before the first update it is empty, stale and halted."""

    __slots__ = ("_symbol", "_symbol_id", "_buf", "_src", "_at")

    def __init__(self, symbol: str, symbol_id: int):
        buf = bytearray(BOOK_UPDATE.size)                  # type_id 0 until the first update
        buf[_OFF["flags"]] = BOOK_FLAG_STALE               # a book never updated counts as stale
        for name, value in (("_symbol", symbol), ("_symbol_id", symbol_id), ("_buf", buf),
                            ("_src", buf), ("_at", 0)):    # where the fields are read: the own copy, or the
            object.__setattr__(self, name, value)          # ring slot while the host holds it (_view)

    __setattr__ = _refuse_write                           # read-only: the host moves _src/_at by their setters
    __delattr__ = _refuse_write

    def _view(self, buffer, offset: int) -> None:
        """Host only: read from a ring slot the host holds unreleased (until ``_keep``)."""
        _SET_SRC(self, buffer)
        _SET_AT(self, offset)

    def _keep(self) -> None:
        """Host only, before the slot is released: copy it into the own buffer and read from there."""
        src, at = self._src, self._at
        if src is not self._buf:
            self._buf[:] = src[at:at + _SIZE]
            _SET_SRC(self, self._buf)
            _SET_AT(self, 0)

    symbol = property(_field("_symbol"))
    symbol_id = property(_field("_symbol_id"))

    @property
    def has_data(self) -> bool:
        return _READ_TYPE(self._src, self._at)[0] != 0

    def top(self) -> tuple[int, int, int, int, int, int]:
        """(bid price, bid shares, ask price, ask shares, flags, trading state byte) in one read, 0s for
        an empty side: the cheap way to look at the top on every update."""
        flags, state, bid_levels, ask_levels, bid, bid_shares, ask, ask_shares = _READ_TOP(self._src, self._at)
        if not bid_levels:
            bid = bid_shares = 0
        if not ask_levels:
            ask = ask_shares = 0
        return bid, bid_shares, ask, ask_shares, flags, state

    def _levels(self, side: str) -> tuple[tuple[int, int], ...]:
        n, *values = _READ_LEVELS[side](self._src, self._at)
        return tuple(zip(values[:n], values[BOOK_DEPTH:BOOK_DEPTH + n]))

    @property
    def bids(self) -> tuple[tuple[int, int], ...]:
        """(price, shares) best first, up to BOOK_DEPTH (``bid_levels`` adds the order counts)."""
        return self._levels("bid")

    @property
    def asks(self) -> tuple[tuple[int, int], ...]:
        """(price, shares) best first, up to BOOK_DEPTH (``ask_levels`` adds the order counts)."""
        return self._levels("ask")

    def _depth(self, side: str) -> tuple[Level, ...]:
        n, *values = _READ_DEPTH[side](self._src, self._at)
        d = BOOK_DEPTH
        return tuple(map(Level, values[:n], values[d:d + n], values[2 * d:2 * d + n]))

    @property
    def bid_levels(self) -> tuple[Level, ...]:
        """Every bid level the update carries (up to BOOK_DEPTH), best first: Level(price, shares, orders)."""
        return self._depth("bid")

    @property
    def ask_levels(self) -> tuple[Level, ...]:
        """Every ask level the update carries (up to BOOK_DEPTH), best first: Level(price, shares, orders)."""
        return self._depth("ask")

    def levels(self, side: Side) -> tuple[Level, ...]:
        """``bid_levels`` for Side.BUY, ``ask_levels`` for Side.SELL (the side you would trade against is
        the other one); ValueError for anything else."""
        if side == Side.BUY:
            return self._depth("bid")
        if side == Side.SELL:
            return self._depth("ask")
        raise ValueError(f"side must be Side.BUY or Side.SELL, got {side!r}")

    @property
    def bid_price(self) -> int:
        """Best bid (0: no bid)."""
        n, price, _ = _READ_BID(self._src, self._at)
        return price if n else 0

    @property
    def bid_shares(self) -> int:
        n, _, shares = _READ_BID(self._src, self._at)
        return shares if n else 0

    @property
    def ask_price(self) -> int:
        """Best ask (0: no ask)."""
        n, price, _ = _READ_ASK(self._src, self._at)
        return price if n else 0

    @property
    def ask_shares(self) -> int:
        n, _, shares = _READ_ASK(self._src, self._at)
        return shares if n else 0

    @property
    def flags(self) -> int:
        """BOOK_FLAG_* bits (a book never updated counts as stale)."""
        return _READ_STATE(self._src, self._at)[0]

    stale = property(lambda self: bool(self.flags & _BAD_FLAGS),
                     doc="Not to be acted on: no feed traffic within the limit, an unrecovered gap, no update yet, "
                         "or an inconsistent book (flag STALE or INCONSISTENT).")
    inconsistent = property(lambda self: bool(self.flags & BOOK_FLAG_INCONSISTENT),
                            doc="An execution or cancel named an order the feed does not hold: the book is being "
                                "rebuilt and also counts as stale.")
    crossed = property(lambda self: bool(self.flags & BOOK_FLAG_CROSSED), doc="Best bid above best ask.")
    locked = property(lambda self: bool(self.flags & BOOK_FLAG_LOCKED), doc="Best bid equal to best ask.")

    @property
    def halted(self) -> bool:
        """Flag HALTED, or a trading state other than 'T'."""
        flags, state = _READ_STATE(self._src, self._at)
        return bool(flags & BOOK_FLAG_HALTED) or state != _TRADING

    @property
    def trading_state(self) -> str:
        """The ITCH trading state: 'T' trading, 'H' halted, 'P' paused, 'Q' quotation only ('' unknown)."""
        state = _READ_STATE(self._src, self._at)[1]
        return chr(state) if state else ""

    @property
    def last_trade(self) -> tuple[int, int]:
        """(price, shares) of the last trade (0, 0 before any)."""
        return _READ_TRADE(self._src, self._at)

    @property
    def last_trade_aggressor(self) -> Side | None:
        """The side that took liquidity in the last trade (None: unknown, or no trade yet); see Trade."""
        return AGGRESSOR_OF_BYTE.get(_READ_AGGRESSOR(self._src, self._at)[0])

    last_trade_t_exchange_ns = property(lambda self: _READ_U64["last_trade_t_exchange_ns"](self._src, self._at)[0],
                                        doc="The venue's timestamp of the last trade (epoch ns; its receive time "
                                            "was the t_rx_ns of the update that first carried it).")

    update_sequence = property(lambda self: _READ_U64["update_sequence"](self._src, self._at)[0],
                               doc="The feed's count of this symbol's book changes (the market-state table's).")
    trade_sequence = property(lambda self: _READ_U64["trade_sequence"](self._src, self._at)[0],
                              doc="The feed's count of this symbol's prints (0: none yet); see Trade.sequence.")
    t_exchange_ns = property(lambda self: _READ_U64["t_exchange_ns"](self._src, self._at)[0],
                             doc="The venue's timestamp of the last ITCH message in this update (epoch ns).")
    t_rx_ns = property(lambda self: _READ_U64["t_rx_ns"](self._src, self._at)[0],
                       doc="When our feed received the packet that made this update (kernel time, epoch ns).")
    t_feed_out_ns = property(lambda self: _READ_U64["t_feed_out_ns"](self._src, self._at)[0],
                             doc="When the feed published this update (epoch ns).")

    @property
    def mid(self) -> int | None:
        """(best bid + best ask) // 2 in price units, or None when a side is empty."""
        bid, _, ask, _, _, _ = self.top()
        return (bid + ask) // 2 if bid and ask else None

    def __repr__(self) -> str:
        return (f"Book({self._symbol} {format_price(self.bid_price)} x {self.bid_shares} / "
                f"{format_price(self.ask_price)} x {self.ask_shares}, state {self.trading_state!r}, "
                f"flags {self.flags})")


assert BOOK_DEPTH == 5
_SET_SRC, _SET_AT = Book.__dict__["_src"].__set__, Book.__dict__["_at"].__set__
# The host's way to point a Book at the ring slot it holds (``Book._view`` without its Python frame: once per
# BookUpdate, on the way to the intent); ``_keep`` copies the slot before the host releases it.
BOOK_VIEW_SETTERS = (_SET_SRC, _SET_AT)


# ---------------------------------------------------------------------------------------------
# The base class
# ---------------------------------------------------------------------------------------------

class _Unattached:
    """``Strategy._host`` until the host attaches (after ``__init__``): any use says where to move it."""

    __slots__ = ()

    def __getattr__(self, name):
        raise RuntimeError("the strategy is not attached to its host yet: books, orders, positions, the clock, "
                           "timers and order actions are available from on_start on, not in __init__ "
                           "(move this to on_start)")


_UNATTACHED = _Unattached()


class Strategy:
    """Subclass this. Declare ``Parameters`` (a dataclass) to have the loader validate your parameters.

    An ordinary class: the host builds it as ``cls(parameters)`` (so ``__init__`` may take the
    parameters and set up plain attributes), then attaches itself, then calls ``on_start``. Every
    callback runs on the strategy process's one thread; keep them short (they sit between a book
    update and the order it causes).

    ``restart_orders`` says what becomes of the open orders an earlier incarnation of this strategy
    (same strategy id) left at the OMS: "cancel" (default: cancelled at start; they show in
    ``self.orders`` as PENDING_CANCEL until gone) or "adopt" (they are in ``self.orders`` as the
    strategy's own when ``on_start`` runs: a quoting strategy must take them over, not quote anew)."""

    Parameters: ClassVar[type | None] = None
    restart_orders: ClassVar[str] = "cancel"
    _host: StrategyHost = _UNATTACHED              # the host attaches after __init__ (``_attach``)

    def __init__(self, parameters: Any = None):
        self.params = parameters

    def _attach(self, host: StrategyHost) -> None:
        """Host only, after construction."""
        self._host = host

    # ---- what the strategy may look at
    @property
    def strategy_id(self) -> int:
        return self._host.strategy_id

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols this strategy trades (its books and callbacks)."""
        return self._host.traded_symbols

    @property
    def orders(self) -> OpenOrders:
        return self._host.open_orders

    @property
    def positions(self) -> Positions:
        return self._host.positions

    @property
    def log(self) -> logging.Logger:
        return self._host.user_log

    def instrument(self, symbol: str) -> Instrument:
        """The instrument of a layout symbol (immutable): ``.symbol``, ``.symbol_id``, ``.tick``,
        ``.round_lot``, the price band ``.min_price``/``.max_price``, ``round_price(price, side)``,
        ``is_valid_price(price)`` (``appliance.config.instruments``). From the instruments file the
        layout names, read before the strategy starts; KeyError naming the symbol when it has none."""
        return self._host.instrument(symbol)

    def book(self, symbol: str) -> Book | None:
        """The latest book of a traded symbol (None for a symbol it does not trade)."""
        return self._host.book_of(symbol)

    def feed_live(self) -> bool:
        """True while the feed reports live books (control word ``feed_ready``; True without a control table)."""
        return self._host.feed_live()

    def gate_open(self) -> bool:
        """True while the supervisor's trading gate is open (new orders sent now would be refused
        otherwise; cancels always go). True without a control table."""
        return self._host.gate_open()

    def now_ns(self) -> int:
        """The host's clock, epoch ns (``self.clock.now_ns()``): wall time live, event time in a backtest,
        so the same inputs give the same answers there."""
        return self._host.clock_ns()

    @property
    def clock(self) -> Clock:
        """The host's clock (``now_ns()``: wall time live, event time in a backtest) and the event being
        handled (``event_exchange_ns``, ``event_rx_ns``). Timers run on it."""
        return self._host.clock

    # ---- time
    def schedule(self, callback, after: float | None = None, every: float | None = None, *,
                 after_ns: int | None = None, every_ns: int | None = None) -> Timer:
        """Call ``callback(now_ns)`` once ``after`` seconds from now, or every ``every`` seconds (first
        after ``after``, default one period); ``after_ns`` / ``every_ns`` give exact nanoseconds. On
        the host's clock, in deadline order, between other callbacks. Returns the Timer
        (``timer.cancel()``). An exception in the callback stops the strategy like any callback's."""
        return self._host.schedule(callback, after, every, after_ns=after_ns, every_ns=every_ns)

    def cancel_timer(self, timer: Timer) -> bool:
        """Stop a timer; False when it was not active (fired for the last time, or cancelled)."""
        return timer.cancel()

    # ---- lifecycle
    def flatten(self, symbol: str | None = None) -> list[int]:
        """Cancel the open orders (of one symbol, or all), then close each position with an IOC limit
        order at the touch (sell at the best bid, buy at the best ask); the client order ids sent.
        Allowed in ``on_stop``, where only orders that shrink a position may leave."""
        return self._host.flatten(symbol)

    def request_reducing(self) -> None:
        """Ask risk to put this strategy in REDUCING: afterwards only orders that shrink a position pass
        (others are refused TRADING_REDUCING). Only an operator undoes it (``appliance`` SET_ACTIVE)."""
        self._host.request_reducing()

    # ---- actions (each writes one OrderIntent to risk)
    def buy(self, symbol: str, shares: int, price: int, tif: int | None = None, *,
            display: Display = Display.VISIBLE, min_qty: int = 0, iso: bool = False,
            capacity: Capacity = Capacity.AGENCY) -> int:
        """A new buy order; returns its client order id.

        ``price``: 4 implied decimals, or ``MARKET`` for a market order. ``tif``: TIF_DAY or TIF_IOC
        (omitted: TIF_DAY, and TIF_IOC for a market order, which never rests). ``display``:
        Display.VISIBLE, ATTRIBUTABLE or HIDDEN (rests without showing in the feed). ``min_qty``: trade
        only if that many shares execute at once (TIF_IOC or market orders only). ``iso``: an
        intermarket sweep order (limit orders only). ``capacity``: Capacity.AGENCY, PRINCIPAL,
        RISKLESS or OTHER. Risk may still refuse a flag its limits do not allow (RiskReason
        SHORT_SALE, MARKET_ORDER, HIDDEN_ORDER, ISO_ORDER, MIN_QUANTITY).

        Raises BackPressure when nothing more fits, ValueError/TypeError for a bad argument (nothing
        is sent then; ``order_flags.py`` has the rules)."""
        return self._host.new_order(symbol, Side.BUY, shares, price, tif, display=display, min_qty=min_qty, iso=iso,
                                    capacity=capacity)

    def sell(self, symbol: str, shares: int, price: int, tif: int | None = None, *, short: bool = False,
             display: Display = Display.VISIBLE, min_qty: int = 0, iso: bool = False,
             capacity: Capacity = Capacity.AGENCY) -> int:
        """A new sell order, as ``buy``; ``short=True`` marks it a short sale (OUCH side 'T'), which
        counts as a sell for every position and limit and needs the symbol's ``allow_short_sell``."""
        if short.__class__ is not bool:
            raise TypeError(f"short must be True or False, got {short!r}")
        return self._host.new_order(symbol, Side.SELL_SHORT if short else Side.SELL, shares, price, tif,
                                    display=display, min_qty=min_qty, iso=iso, capacity=capacity)

    def cancel(self, client_order_id: int) -> bool:
        """Cancel an open order; False when it is not open or a cancel is already on its way."""
        return self._host.cancel(client_order_id)

    def replace(self, client_order_id: int, shares: int | None = None, price: int | None = None, *,
                display: Display | None = None, iso: bool | None = None) -> int | None:
        """Replace a LIVE order (new size and/or price, new priority); returns the replacement's client order
        id, or None when the order is not live (unknown, done, or a request for it is pending).

        What OUCH Replace Order may change besides: ``display`` and ``iso`` (None keeps the original's);
        side, capacity and time in force are the original's (no minimum quantity: only orders that
        never rest may have one)."""
        if display is None and iso is None:                 # the usual call: no keyword arguments to build
            return self._host.replace(client_order_id, shares, price)
        return self._host.replace(client_order_id, shares, price, display=display, iso=iso)

    def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every open order (of one symbol); returns how many were open."""
        return self._host.cancel_all(symbol)

    # ---- callbacks (override what you need)
    def on_start(self) -> None:
        """Before the first callback of anything else, once the OMS said what is open (after a restart
        ``self.positions`` and ``self.orders`` show it; see ``restart_orders``); orders may be sent
        from here."""

    def on_book(self, book: Book) -> None:
        """A traded symbol's book changed (levels, state, flags or last trade). When several updates of
        a symbol wait at once, it runs once, with the latest (the host conflates; ``on_trade`` still
        sees every print)."""

    def on_trade(self, trade: Trade) -> None:
        """Every print of a traded symbol, in order, once (two identical prints are two calls: the feed
        numbers them, ``trade.sequence``), with ``self.book(trade.symbol)`` as that print's update left
        it, before the ``on_book`` that covers it. Conflation never skips a print; a print lost before
        the host (the feed's ring was full) shows as a jump in ``trade.sequence`` and is counted
        (``strategy.trades_missed``). The first update a fresh host sees delivers its last print, if any."""

    def on_order_accepted(self, order: Order) -> None:
        """The venue accepted the order (or, with ``order.replaces`` set, the replacement)."""

    def on_fill(self, order: Order, fill: Fill) -> None:
        """An execution with its facts (``fills.Fill``: shares, price, leaves, liquidity flag, fee, match
        number, venue and receive times); ``order.leaves`` is already reduced, the position updated."""

    def on_fill_broken(self, order: Order | None, fill: Fill) -> None:
        """The venue broke an earlier fill (OUCH Broken Trade): ``fill`` is the one it undoes (the object
        ``on_fill`` had, when this process saw it). The position, cost and P&L are already the OMS's
        after the break; ``order.filled`` and the fees no longer count it (its leaves do not come back).
        ``order`` is None for an order this process does not know (e.g. filled before a restart)."""

    def on_order_canceled(self, order: Order) -> None:
        """The order is gone (canceled by us, the venue, or the OMS)."""

    def on_order_rejected(self, order: Order, source: RejectSource, reason: int) -> None:
        """Refused by risk, the OMS or the exchange; ``reject_reason_name(source, reason)`` names it."""

    def on_cancel_rejected(self, order: Order, source: RejectSource, reason: int) -> None:
        """A cancel (or a CANCEL_ALL covering ``order``) was refused; the order stands again in the view.
        (When the OMS says it has no such order, the order is gone instead: ``on_order_canceled``.)"""

    def on_timer(self, now_ns: int) -> None:
        """Every ``timer_interval_ms`` (a repeating timer on the host's clock; ``schedule`` for others)."""

    def on_stop(self) -> None:
        """The process is stopping; the host cancels everything afterwards anyway. New orders are
        refused here, except those that shrink a position (``flatten``)."""

    @classmethod
    def validate_parameters(cls, parameters: Any, symbols: tuple[str, ...]) -> None:
        """Checks that need the layout's symbols; raise ValueError with a clear message."""

    @classmethod
    def validate_instruments(cls, parameters: Any, instruments: dict[str, Instrument]) -> None:
        """Checks that need the layout's instruments (symbol -> Instrument), e.g. a tick parameter
        that disagrees with the instrument's; raise ValueError with a clear message. Run at load, after
        ``validate_parameters``, when the layout names an instruments file."""
