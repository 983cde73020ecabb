"""What the matching engine says: plain event records, one per ITCH or OUCH message to be sent.

Two families, told apart by the class attribute ``family``:

- market data (``MARKET_DATA``), 1:1 with the ITCH 5.0 messages the exchange publishes:
  ``AddOrder`` ('A', or 'F' when ``attribution`` is set), ``OrderExecuted`` ('E'),
  ``OrderCancel`` ('X'), ``OrderDelete`` ('D'), ``OrderReplace`` ('U'), ``Trade`` ('P')
  and ``TradingAction`` ('H');
- order entry (``ORDER_ENTRY``), 1:1 with the OUCH 4.2 outbound messages to one firm:
  ``Accepted`` ('A'), ``Replaced`` ('U'), ``Canceled`` ('C'), ``Executed`` ('E'),
  ``Rejected`` ('J') and ``CancelReject`` ('I'). Each carries the ``firm`` it goes to.

No timestamps, locates or tracking numbers: the step that turns events into bytes adds them.
Prices are ints with 4 implied decimals, shares are ints.

The records are named tuples (cheap to make, to compare and to print) whose equality also
compares the class, so ``OrderCancel(7, 100)`` never equals some other two-field event.
The engine builds them with ``tuple.__new__(Cls, (...))``, which skips the per-call
argument handling of the generated ``__new__``.
"""
from __future__ import annotations

from collections import namedtuple

MARKET_DATA = "itch"
ORDER_ENTRY = "ouch"

# OUCH Canceled reasons the engine uses.
CANCEL_USER = "U"            # the firm's own cancel or reduce
CANCEL_IOC = "I"             # unfilled remainder of an immediate-or-cancel or market order
CANCEL_SUPERVISORY = "S"     # mass cancel by the exchange operator (kill switch)
CANCEL_TIMEOUT = "T"         # day order expired at the close
CANCEL_SYSTEM = "Z"          # "system cancel": the firm's session was lost and it has cancel on disconnect

# OUCH Rejected reasons the engine uses.
REJECT_HALTED = "H"
REJECT_SHARES = "Z"          # zero shares or over the per-order limit
REJECT_STOCK = "S"
REJECT_CLOSED = "C"
REJECT_PRICE = "X"
REJECT_OTHER = "O"
REJECT_DISPLAY = "D"         # a display value this venue does not support
REJECT_MINIMUM_QUANTITY = "N"   # above the shares, or on an order that may rest
REJECT_DUPLICATE_TOKEN = REJECT_OTHER   # token already used by this firm today
REJECT_SIDE = REJECT_OTHER              # side not one of B S T E

# OUCH order states in Accepted / Replaced.
STATE_LIVE = "L"
STATE_DEAD = "D"

# OUCH Executed liquidity flags.
LIQUIDITY_ADDED = "A"
LIQUIDITY_REMOVED = "R"


def _same_event(a, b):
    return type(a) is type(b) and tuple.__eq__(a, b)


def _different_event(a, b):
    return not (type(a) is type(b) and tuple.__eq__(a, b))


class _Event(tuple):
    __slots__ = ()
    __eq__ = _same_event
    __ne__ = _different_event
    __hash__ = tuple.__hash__


# ---------------------------------------------------------------- market data (ITCH)

class AddOrder(_Event, namedtuple("AddOrder", "ref side shares symbol price attribution")):
    """A displayed order joins the book: ITCH 'A', or 'F' with ``attribution`` (the firm's MPID)
    when the order's display flag asked for attribution. ``side`` is 'B' or 'S'."""
    __slots__ = ()
    family = MARKET_DATA

    @property
    def itch_type(self) -> str:
        return "A" if self.attribution is None else "F"


class OrderExecuted(_Event, namedtuple("OrderExecuted", "ref shares match")):
    """ITCH 'E': ``shares`` of displayed resting order ``ref`` executed at its own price.
    An order executed in full leaves the book with this message (no 'D' follows)."""
    __slots__ = ()
    family = MARKET_DATA
    itch_type = "E"


class OrderCancel(_Event, namedtuple("OrderCancel", "ref shares")):
    """ITCH 'X': ``shares`` canceled from displayed order ``ref``, which stays on the book."""
    __slots__ = ()
    family = MARKET_DATA
    itch_type = "X"


class OrderDelete(_Event, namedtuple("OrderDelete", "ref")):
    """ITCH 'D': displayed order ``ref`` left the book by a cancel (or by a replace that
    could not keep it resting as a 'U')."""
    __slots__ = ()
    family = MARKET_DATA
    itch_type = "D"


class OrderReplace(_Event, namedtuple("OrderReplace", "old_ref new_ref shares price")):
    """ITCH 'U': displayed order ``old_ref`` is now ``new_ref`` with ``shares`` at ``price``
    (same side, back of the queue)."""
    __slots__ = ()
    family = MARKET_DATA
    itch_type = "U"


class Trade(_Event, namedtuple("Trade", "side shares symbol price match")):
    """ITCH 'P' (order reference 0 on the wire): an execution against a non-displayed resting
    order. ``side`` is the side of that resting order."""
    __slots__ = ()
    family = MARKET_DATA
    itch_type = "P"


class TradingAction(_Event, namedtuple("TradingAction", "symbol state")):
    """ITCH 'H': ``state`` 'H' halted or 'T' trading."""
    __slots__ = ()
    family = MARKET_DATA
    itch_type = "H"


# ---------------------------------------------------------------- order entry (OUCH)

class Accepted(_Event, namedtuple("Accepted",
                                  "firm token side shares symbol price tif display ref state")):
    """OUCH 'A'. Echoes the entered fields (``side`` as sent, 'T'/'E' kept; ``price`` may be the
    market sentinel). ``state`` is 'L' when the order rests on the book after its entry and
    'D' when it does not (immediate-or-cancel, market, or filled in full on entry)."""
    __slots__ = ()
    family = ORDER_ENTRY
    ouch_type = "A"


class Replaced(_Event, namedtuple("Replaced",
                                  "firm token previous_token side shares symbol price tif display ref state")):
    """OUCH 'U': ``previous_token`` is now ``token`` with order reference ``ref``; ``state`` as in
    ``Accepted``."""
    __slots__ = ()
    family = ORDER_ENTRY
    ouch_type = "U"


class Canceled(_Event, namedtuple("Canceled", "firm token shares reason")):
    """OUCH 'C': ``shares`` is the decrement (not what is left)."""
    __slots__ = ()
    family = ORDER_ENTRY
    ouch_type = "C"


class Executed(_Event, namedtuple("Executed", "firm token shares price liquidity match")):
    """OUCH 'E': ``price`` is the resting order's price; ``liquidity`` 'A' added (resting side)
    or 'R' removed (aggressor)."""
    __slots__ = ()
    family = ORDER_ENTRY
    ouch_type = "E"


class Rejected(_Event, namedtuple("Rejected", "firm token reason")):
    """OUCH 'J' for an Enter Order (``token``) or a Replace Order (the replacement token)."""
    __slots__ = ()
    family = ORDER_ENTRY
    ouch_type = "J"


class CancelReject(_Event, namedtuple("CancelReject", "firm token")):
    """OUCH 'I': a cancel or replace named ``token``, which is not a live order of this firm."""
    __slots__ = ()
    family = ORDER_ENTRY
    ouch_type = "I"


MARKET_DATA_EVENTS = (AddOrder, OrderExecuted, OrderCancel, OrderDelete, OrderReplace, Trade, TradingAction)
ORDER_ENTRY_EVENTS = (Accepted, Replaced, Canceled, Executed, Rejected, CancelReject)
