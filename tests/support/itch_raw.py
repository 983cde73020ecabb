"""Hand-made ITCH raw tuples for the feed's tests: exactly what the scanner hands the books."""
from __future__ import annotations

from appliance.wire import itch

_DIRECTORY_DEFAULTS = dict(market_category="Q", financial_status_indicator="N", round_lot_size=100,
                           round_lots_only="N", issue_classification="C", issue_sub_type="", authenticity="P",
                           short_sale_threshold_indicator="N", ipo_flag=" ", luld_reference_price_tier="1",
                           etp_flag="N", etp_leverage_factor=0, inverse_indicator="N")


def raw(kind, locate=0, timestamp=0, **fields):
    """A raw tuple exactly as the scanner makes it: encode the dict, unpack the bytes."""
    if kind == "R":
        fields = {**_DIRECTORY_DEFAULTS, **fields}
    message = itch.encode({"type": kind, "stock_locate": locate, "tracking_number": 0, "timestamp": timestamp,
                           **fields})
    return itch.LAYOUT_BY_BYTE[message[0]].unpack_from(message, 0)


def directory(stock, locate, ts=1):
    return raw("R", locate, ts, stock=stock)


def add(locate, ref, side, shares, stock, price, ts=2, mpid=None):
    if mpid is None:
        return raw("A", locate, ts, order_reference_number=ref, buy_sell_indicator=side, shares=shares,
                   stock=stock, price=price)
    return raw("F", locate, ts, order_reference_number=ref, buy_sell_indicator=side, shares=shares, stock=stock,
               price=price, attribution=mpid)


def action(stock, locate, state, ts=3):
    return raw("H", locate, ts, stock=stock, trading_state=state, reserved=" ", reason="")
