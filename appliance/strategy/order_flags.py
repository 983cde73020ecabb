"""The OUCH 4.2 order flags a strategy may set, checked before anything leaves the strategy.

``Strategy.buy`` / ``sell`` / ``replace`` take them as keyword arguments; the host calls
``order_flags`` (new orders) or ``replace_flags`` (replaces) only when one is not the default, so a
plain limit order pays nothing. Each bad value is a ``TypeError`` (wrong kind of value) or a
``ValueError`` (a value the venue would refuse, or a combination that means nothing) naming the
argument, raised before a client order id is used or an intent written. What comes back are the
OrderIntent's fields: the display and capacity bytes (``codes.Display``, ``codes.Capacity``), the
minimum quantity and the intermarket-sweep flag (0/1).

The rules (the same ones risk and the simulated venue apply):

- ``tif``: TIF_DAY or TIF_IOC; omitted, TIF_DAY for a limit order and TIF_IOC for ``price=MARKET``.
  A market order never rests: ``price=MARKET`` with ``tif=TIF_DAY`` is an error.
- ``display``: ``Display.VISIBLE`` (default), ``Display.ATTRIBUTABLE`` (the firm's MPID on the feed)
  or ``Display.HIDDEN`` (rests without appearing in the feed).
- ``min_qty``: 0 (none) up to the shares, and only on an order that does not rest (TIF_IOC or a
  market order): the venue executes it only if that many shares can trade at once, else cancels it
  whole (``ouch.minimum_quantity_problem``).
- ``iso``: True for an intermarket sweep order; a limit order only (Reg NMS defines an ISO as one).
- ``capacity``: ``Capacity.AGENCY`` (default), ``PRINCIPAL``, ``RISKLESS`` or ``OTHER``.
"""
from __future__ import annotations

import operator

from appliance.messages.codes import MARKET_PRICE, TIF_DAY, TIF_IOC, Capacity, Display
from appliance.wire.ouch import minimum_quantity_problem

_DISPLAYS = {int(d): int(d) for d in Display}
_CAPACITIES = {int(c): int(c) for c in Capacity}


def resolve_tif(tif, price: int) -> int:
    """The time in force of a new order: the default for its kind when omitted (None)."""
    if tif is None:
        return TIF_IOC if price == MARKET_PRICE else TIF_DAY
    if tif.__class__ is not int or tif not in (TIF_IOC, TIF_DAY):
        raise ValueError(f"time in force must be TIF_IOC ({TIF_IOC}) or TIF_DAY ({TIF_DAY}), got {tif!r}")
    if price == MARKET_PRICE and tif != TIF_IOC:
        raise ValueError("a market order (price=MARKET) never rests: leave tif out or give tif=TIF_IOC")
    return tif


def _display(display) -> int:
    if display.__class__ is bool or not isinstance(display, int):
        raise TypeError(f"display must be a Display (Display.VISIBLE, Display.ATTRIBUTABLE, Display.HIDDEN), "
                        f"got {display!r}")
    value = _DISPLAYS.get(display)
    if value is None:
        raise ValueError(f"display must be one of {', '.join(f'Display.{d.name}' for d in Display)}, got {display!r}")
    return value


def _capacity(capacity) -> int:
    if capacity.__class__ is bool or not isinstance(capacity, int):
        raise TypeError(f"capacity must be a Capacity (Capacity.AGENCY, PRINCIPAL, RISKLESS, OTHER), got {capacity!r}")
    value = _CAPACITIES.get(capacity)
    if value is None:
        raise ValueError(f"capacity must be one of {', '.join(f'Capacity.{c.name}' for c in Capacity)}, "
                         f"got {capacity!r}")
    return value


def _iso(iso, price: int) -> int:
    if iso.__class__ is not bool:
        raise TypeError(f"iso must be True or False, got {iso!r}")
    if iso and price == MARKET_PRICE:
        raise ValueError("an intermarket sweep order (iso=True) is a limit order: give it a price, not MARKET")
    return 1 if iso else 0


def _min_qty(min_qty, shares: int, tif: int, price: int) -> int:
    if min_qty.__class__ is bool:
        raise TypeError("min_qty must be an integer number of shares, got a bool")
    try:
        min_qty = operator.index(min_qty)
    except TypeError:
        raise TypeError(f"min_qty must be an integer number of shares, got {type(min_qty).__name__}") from None
    if min_qty < 0:
        raise ValueError(f"min_qty must be 0 (none) or more, got {min_qty}")
    problem = minimum_quantity_problem(shares, min_qty, tif, price)
    if problem is not None:
        raise ValueError(f"min_qty: {problem}")
    return min_qty


def order_flags(shares: int, price: int, tif: int, display, min_qty, iso, capacity) -> tuple[int, int, int, int]:
    """(display, capacity, minimum quantity, intermarket sweep) of a new order, checked.
    ``shares``, ``price`` and ``tif`` are already checked (``tif`` resolved)."""
    return (_display(display), _capacity(capacity), _min_qty(min_qty, shares, tif, price), _iso(iso, price))


def replace_flags(old_display: int, old_iso: int, price: int, display, iso) -> tuple[int, int]:
    """(display, intermarket sweep) of a replacement: what OUCH Replace Order may change, the
    original's where not given (None). A replacement carries no minimum quantity: only an order
    that does not rest may have one, and such an order is never there to be replaced."""
    return (old_display if display is None else _display(display),
            old_iso if iso is None else _iso(iso, price))
