"""One execution as the strategy sees it: ``Fill``, with every fact the venue and the OMS gave.

A ``Fill`` is a tuple (immutable, no ``__dict__``, fields read in C), built once per execution on
the fill path from the ExecutionReport and the fee schedule (``fees.py``), and handed to
``Strategy.on_fill(order, fill)``; the same object comes back in ``on_fill_broken(order, fill)``
when the venue breaks the trade (OUCH Broken Trade, by match number).

Units, as everywhere on the order path: prices in price units (4 implied decimals, 1900100 is
$190.01), times in ns since the Unix epoch, ``fee`` in price units x shares (1e-4 dollars, the
units of the P&L), positive a charge, negative a rebate.
"""
from __future__ import annotations

from collections import namedtuple

from appliance.messages.codes import Side
from appliance.runtime.market_state import good_mark

# OUCH 4.2 Executed liquidity flags (the byte ExecutionReport.liquidity_flag carries) and what they say.
LIQUIDITY_FLAGS: dict[str, str] = {
    "A": "added",
    "R": "removed",
    "O": "opening cross (billable)",
    "M": "opening cross (non-billable)",
    "C": "closing cross (billable)",
    "L": "closing cross (non-billable)",
    "H": "halt/IPO cross (billable)",
    "K": "halt/IPO cross (non-billable)",
    "I": "intraday/post-market cross",
    "J": "non-displayed, added liquidity",
    "m": "removed liquidity at a midpoint",
    "k": "added liquidity via a midpoint order",
    "0": "supplemental order execution",
    "7": "displayed, added liquidity, improved the NBBO",
    "8": "displayed, added liquidity, set the QBBO while joining the NBBO",
    "d": "retail designated execution, removed liquidity",
    "e": "retail designated execution, added displayed liquidity",
    "f": "retail designated execution, added non-displayed liquidity",
    "j": "RPI order provided liquidity",
    "r": "retail order removed RPI liquidity",
    "t": "retail order removed price-improving non-displayed liquidity",
    "6": "removed liquidity in a designated security",
}
# The flags of a resting order that was hit (maker) and of an order that took liquidity (taker);
# the crosses (O M C L H K I) are neither.
ADDED_FLAGS = frozenset("AJk078efj")
REMOVED_FLAGS = frozenset("Rmdrt6")

_BUY = Side.BUY


def liquidity_flag(byte: int) -> str:
    """ExecutionReport.liquidity_flag as the one-character flag ('' for 0, no flag)."""
    return chr(byte) if byte else ""


class Fill(namedtuple("Fill", "client_order_id symbol side shares price leaves liquidity fee match_number "
                              "t_exchange_ns t_rx_ns")):
    """One execution of one of the strategy's orders.

    - ``client_order_id``, ``symbol``, ``side`` (codes.Side): the order it executed.
    - ``shares``, ``price``: this execution (price units).
    - ``leaves``: the order's shares still open after it.
    - ``liquidity``: OUCH's liquidity flag, one character ('A' added, 'R' removed, see
      ``LIQUIDITY_FLAGS``; '' when the venue sent none).
    - ``fee``: from the fee schedule for (symbol, liquidity, shares, price), price units x shares;
      negative is a rebate (0 without a schedule).
    - ``match_number``: the venue's id of the execution (a Broken Trade names it).
    - ``t_exchange_ns``: the venue's timestamp of the execution; ``t_rx_ns``: when the OMS received it
      (epoch ns, our clock)."""

    __slots__ = ()

    @property
    def is_buy(self) -> bool:
        return self[2] == _BUY

    @property
    def added_liquidity(self) -> bool:
        """A maker fill: the order rested and was hit."""
        return self[6] in ADDED_FLAGS

    @property
    def removed_liquidity(self) -> bool:
        """A taker fill."""
        return self[6] in REMOVED_FLAGS

    @property
    def notional(self) -> int:
        """shares x price, in price units x shares (unsigned)."""
        return self[3] * self[4]

    @property
    def liquidity_name(self) -> str:
        flag = self[6]
        return LIQUIDITY_FLAGS.get(flag, "none" if not flag else f"unknown ({flag!r})")


def make_fill(client_order_id: int, symbol: str, side: int, shares: int, price: int, leaves: int, liquidity: str,
              fee: int, match_number: int, t_exchange_ns: int, t_rx_ns: int) -> Fill:
    """A Fill from its values in field order, without the keyword handling of ``Fill(...)`` (the fill path)."""
    return _new(Fill, (client_order_id, symbol, side, shares, price, leaves, liquidity, fee, match_number,
                       t_exchange_ns, t_rx_ns))


_new = tuple.__new__


def mark_price(book) -> int:
    """The price the strategy marks a position at, from its ``Book``: the mid of a good book
    (``runtime.market_state.good_mark``: both sides there, not stale, inconsistent or crossed),
    else the book's last trade (a good book with a side empty, or a bad one), else 0 (no mark).
    The one place ``Positions`` (api.py) gets its mark from."""
    if book is None:
        return 0
    bid, _, ask, _, flags, _ = book.top()
    last = book.last_trade[0]
    if bid and ask:
        mark = good_mark(bid, ask, last, flags)
        if mark:
            return mark
    return last
