"""The OUCH 4.2 order flags from the strategy's call to the OrderIntent on the ring: what each argument
writes, the defaults, the old positional calls, and every argument refused before anything leaves
(no intent written, no order in the view)."""
from __future__ import annotations

import pytest

from appliance.messages.codes import MARKET_PRICE, TIF_DAY, TIF_IOC, Action, ExecEvent, Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import MARKET, Capacity, Display, Strategy
from strategy_harness import Harness, strategy_layout

P = 1_000_000          # $100.00


class Idle(Strategy):
    pass


@pytest.fixture
def h(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as memory:
        harness = Harness(memory, Idle)
        harness.intents()                     # the start's CANCEL_ALL
        yield harness


def flags(intent: dict) -> tuple:
    return (intent["side"], intent["time_in_force"], intent["display"], intent["capacity"],
            intent["minimum_quantity"], intent["intermarket_sweep"])


def test_a_plain_order_carries_the_default_flags_and_the_old_positional_calls_still_work(h):
    s = h.strategy
    s.buy("AAPL", 100, P)
    s.sell("AAPL", 100, P + 100, TIF_IOC)
    s.buy("AAPL", 100, P, TIF_DAY)
    buy, sell, day = h.intents()
    assert flags(buy) == (Side.BUY, TIF_DAY, Display.VISIBLE, Capacity.AGENCY, 0, 0)
    assert flags(sell) == (Side.SELL, TIF_IOC, Display.VISIBLE, Capacity.AGENCY, 0, 0)
    assert flags(day)[1] == TIF_DAY


def test_each_flag_reaches_the_intent(h):
    s = h.strategy
    hidden = s.buy("AAPL", 100, P, display=Display.HIDDEN, capacity=Capacity.PRINCIPAL)
    attributed = s.sell("AAPL", 200, P + 100, display=Display.ATTRIBUTABLE, capacity=Capacity.RISKLESS)
    short = s.sell("AAPL", 300, P + 100, short=True, iso=True, capacity=Capacity.OTHER)
    minimum = s.buy("AAPL", 500, P, TIF_IOC, min_qty=200)
    market = s.sell("AAPL", 100, MARKET, min_qty=100)
    out = {i["client_order_id"]: i for i in h.intents()}
    assert flags(out[hidden]) == (Side.BUY, TIF_DAY, ord("N"), ord("P"), 0, 0)
    assert flags(out[attributed]) == (Side.SELL, TIF_DAY, ord("A"), ord("R"), 0, 0)
    assert flags(out[short]) == (Side.SELL_SHORT, TIF_DAY, ord("Y"), ord("O"), 0, 1)
    assert flags(out[minimum]) == (Side.BUY, TIF_IOC, ord("Y"), ord("A"), 200, 0)
    assert flags(out[market]) == (Side.SELL, TIF_IOC, ord("Y"), ord("A"), 100, 0)      # a market order is IOC
    assert out[market]["price"] == MARKET_PRICE
    order = s.orders[short]
    assert order.is_short and not order.is_buy and order.iso and order.capacity is Capacity.OTHER
    assert s.orders[hidden].display is Display.HIDDEN and s.orders[minimum].min_qty == 200
    assert s.orders[market].is_market


def test_a_short_sale_counts_as_a_sell_in_the_strategy_s_views(h):
    s = h.strategy
    cid = s.sell("AAPL", 300, P, short=True)
    h.intents()
    s.sell("AAPL", 100, P + 100)
    h.intents()
    assert s.orders.open_shares("AAPL", Side.SELL) == 400                  # the sell side, short sales included
    assert s.orders.open_shares("AAPL", Side.SELL_SHORT) == 400
    assert s.orders.open_shares("AAPL", Side.BUY) == 0
    h.report(ExecEvent.ACCEPTED, cid, side=Side.SELL_SHORT, shares=300, price=P, leaves=300)
    h.report(ExecEvent.EXECUTED, cid, side=Side.SELL_SHORT, shares=100, price=P, leaves=200, position=-100)
    assert s.positions.sold("AAPL") == 100 and s.positions.bought("AAPL") == 0
    assert s.positions["AAPL"] == -100


@pytest.mark.parametrize("call, error, words", [
    (lambda s: s.buy("AAPL", 100, P, display="N"), TypeError, "display must be a Display"),
    (lambda s: s.buy("AAPL", 100, P, display=ord("P")), ValueError, "display must be one of"),
    (lambda s: s.buy("AAPL", 100, P, display=True), TypeError, "display must be a Display"),
    (lambda s: s.buy("AAPL", 100, P, capacity="agency"), TypeError, "capacity must be a Capacity"),
    (lambda s: s.buy("AAPL", 100, P, capacity=ord("X")), ValueError, "capacity must be one of"),
    (lambda s: s.buy("AAPL", 100, P, iso=1), TypeError, "iso must be True or False"),
    (lambda s: s.buy("AAPL", 100, MARKET, iso=True), ValueError, "intermarket sweep order .* is a limit order"),
    (lambda s: s.sell("AAPL", 100, P, short=1), TypeError, "short must be True or False"),
    (lambda s: s.buy("AAPL", 100, P, TIF_IOC, min_qty=101), ValueError, "min_qty: minimum quantity 101 is more"),
    (lambda s: s.buy("AAPL", 100, P, min_qty=50), ValueError, "min_qty: .* immediate-or-cancel"),
    (lambda s: s.buy("AAPL", 100, P, TIF_DAY, min_qty=50, display=Display.HIDDEN), ValueError, "immediate-or-cancel"),
    (lambda s: s.buy("AAPL", 100, P, TIF_IOC, min_qty=-1), ValueError, "min_qty must be 0"),
    (lambda s: s.buy("AAPL", 100, P, TIF_IOC, min_qty=10.0), TypeError, "min_qty must be an integer"),
    (lambda s: s.buy("AAPL", 100, P, TIF_IOC, min_qty=True), TypeError, "got a bool"),
    (lambda s: s.buy("AAPL", 100, MARKET, TIF_DAY), ValueError, "a market order .* never rests"),
    (lambda s: s.buy("AAPL", 100, P, 5), ValueError, "time in force must be"),
    (lambda s: s.buy("AAPL", 100, P, 0.0), ValueError, "time in force must be"),
    (lambda s: s.buy("AAPL", 100, P, False), ValueError, "time in force must be"),
])
def test_each_bad_flag_is_refused_before_anything_leaves(h, call, error, words):
    with pytest.raises(error, match=words):
        call(h.strategy)
    assert h.intents() == [] and len(h.strategy.orders) == 0


def live_order(h, **kw) -> int:
    cid = h.strategy.sell("AAPL", 300, P + 100, **kw)
    h.intents()
    h.report(ExecEvent.ACCEPTED, cid, side=h.strategy.orders[cid].side, shares=300, price=P + 100, leaves=300)
    return cid


def test_replace_changes_display_and_iso_and_keeps_side_capacity_and_tif(h):
    cid = live_order(h, short=True, display=Display.HIDDEN, capacity=Capacity.PRINCIPAL)
    same = h.strategy.replace(cid, price=P + 200)
    (kept,) = h.intents()
    assert kept["action"] == Action.REPLACE and kept["orig_client_order_id"] == cid
    assert flags(kept) == (Side.SELL_SHORT, TIF_DAY, ord("N"), ord("P"), 0, 0)
    h.report(ExecEvent.REPLACED, same, orig=cid, side=Side.SELL_SHORT, shares=300, price=P + 200, leaves=300)
    shown = h.strategy.replace(same, display=Display.VISIBLE, iso=True)
    (changed,) = h.intents()
    assert flags(changed) == (Side.SELL_SHORT, TIF_DAY, ord("Y"), ord("P"), 0, 1)
    assert h.strategy.orders[shown].display is Display.VISIBLE and h.strategy.orders[shown].iso


def test_replace_refuses_a_bad_flag_before_anything_leaves(h):
    cid = live_order(h)
    with pytest.raises(ValueError, match="display must be one of"):
        h.strategy.replace(cid, display=ord("M"))
    with pytest.raises(TypeError, match="iso must be True or False"):
        h.strategy.replace(cid, iso="yes")
    with pytest.raises(TypeError):
        h.strategy.replace(cid, min_qty=100)                   # no minimum quantity on a resting order
    assert h.intents() == []
    assert h.strategy.orders[cid].replaced_by == 0
