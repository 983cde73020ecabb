"""The example strategies in examples/strategies/, each in the host with hand-fed BookUpdates and
ExecutionReports (tests/support/strategy_harness.py; the reference market maker's own are in
test_strategy_market_maker.py), loaded the way the strategy process loads them."""
from __future__ import annotations

import sys

import pytest

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_STALE
from appliance.messages.codes import ALL_SYMBOLS, TIF_DAY, TIF_IOC, Action, ExecEvent, RiskReason, Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import price_from_decimal as P
from appliance.strategy.config import StrategyConfigError
from appliance.strategy.loader import build_parameters, load_strategy_class
from conftest import ROOT
from strategy_harness import Harness, instruments, strategy_layout

MS = 1_000_000


def example(spec: str):
    return load_strategy_class(f"{ROOT}/examples/strategies/{spec}")[0]


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


def harness(memory, spec: str, **values) -> Harness:
    cls = example(spec)
    h = Harness(memory, cls, build_parameters(cls, values), traded=("AAPL",), instruments=instruments())
    assert [(i["action"], i["symbol_id"]) for i in h.intents()] == [(Action.CANCEL_ALL, ALL_SYMBOLS)]
    return h


def summary(intents):
    return [(Action(i["action"]).name, Side(i["side"]).name if i["side"] else "", i["shares"], i["price"],
             i["time_in_force"]) for i in intents]


def ack(h, intent, position=0):
    h.report(ExecEvent.ACCEPTED, intent["client_order_id"], side=intent["side"], shares=intent["shares"],
             price=intent["price"], leaves=intent["shares"], position=position)


# ---------------------------------------------------------------------------------------------
# The imbalance taker
# ---------------------------------------------------------------------------------------------

TAKER = "imbalance_taker.py:ImbalanceTaker"
BID_HEAVY = ([(P("190.00"), 500), (P("189.99"), 400), (P("189.98"), 300)], [(P("190.01"), 100), (P("190.02"), 100)])
ASK_HEAVY = ([(P("189.99"), 100), (P("189.98"), 100)], [(P("190.00"), 500), (P("190.01"), 400), (P("190.02"), 300)])


def test_imbalance_is_over_every_level_shown_and_none_with_a_side_empty(memory):
    imbalance = sys.modules[example(TAKER).__module__].imbalance
    h = harness(memory, TAKER, threshold=1.0)
    h.book("AAPL", *BID_HEAVY)
    assert imbalance(h.strategy.book("AAPL")) == pytest.approx((1200 - 200) / 1400)
    h.book("AAPL", BID_HEAVY[0], [])
    assert imbalance(h.strategy.book("AAPL")) is None
    assert h.intents() == []                      # threshold 1.0: never reached with an ask on the book


def test_the_taker_buys_the_ask_and_sells_the_bid_with_ioc_when_the_imbalance_passes_the_threshold(memory):
    h = harness(memory, TAKER, threshold=0.6, size=200, cooldown_ms=0)
    h.book("AAPL", [(P("190.00"), 300)], [(P("190.01"), 200)], t_rx=1 * MS)       # +0.2: below the threshold
    assert h.intents() == []
    h.book("AAPL", *BID_HEAVY, t_rx=2 * MS)                                        # +0.71
    (buy,) = h.intents()
    assert summary([buy]) == [("NEW", "BUY", 200, P("190.01"), TIF_IOC)]
    assert buy["t_rx_ns"] == 2 * MS                                              # caused by that update
    ack(h, buy)
    h.report(ExecEvent.EXECUTED, buy["client_order_id"], shares=100, price=P("190.01"), leaves=100, position=100)
    h.report(ExecEvent.CANCELED, buy["client_order_id"], shares=100, leaves=0, position=100)   # IOC: the rest
    assert len(h.strategy.orders) == 0 and h.strategy.positions["AAPL"] == 100
    h.book("AAPL", *ASK_HEAVY, t_rx=3 * MS)
    (sell,) = h.intents()
    assert summary([sell]) == [("NEW", "SELL", 200, P("189.99"), TIF_IOC)]
    assert h.host.stats.errors == 0


def test_the_taker_ignores_a_stale_crossed_or_halted_book_and_waits_for_the_gate(memory):
    h = harness(memory, TAKER, cooldown_ms=0)
    h.host._gate_open = lambda: False                                          # control word: gate closed
    h.book("AAPL", *BID_HEAVY)
    assert h.intents() == []
    h.host._gate_open = None
    h.book("AAPL", *BID_HEAVY, flags=BOOK_FLAG_STALE)
    h.book("AAPL", *BID_HEAVY, state=b"H")
    h.book("AAPL", [(P("190.05"), 900)], [(P("190.01"), 100)], flags=BOOK_FLAG_CROSSED)
    assert h.intents() == []
    h.book("AAPL", *BID_HEAVY)
    assert [i["action"] for i in h.intents()] == [Action.NEW]


def test_the_taker_sends_one_order_at_a_time_per_symbol_then_waits_its_cooldown_in_book_time(memory):
    h = harness(memory, TAKER, cooldown_ms=100)
    h.book("AAPL", *BID_HEAVY, t_rx=1000 * MS)
    (first,) = h.intents()
    h.book("AAPL", *BID_HEAVY, t_rx=1200 * MS)                                   # cooldown over, order still open
    assert h.intents() == []
    ack(h, first)
    h.report(ExecEvent.CANCELED, first["client_order_id"], shares=100, leaves=0)   # not filled
    h.book("AAPL", *BID_HEAVY, t_rx=1050 * MS)    # within 100 ms of the order's update: still waiting
    assert h.intents() == []
    h.book("AAPL", *BID_HEAVY, t_rx=1100 * MS)
    assert [i["action"] for i in h.intents()] == [Action.NEW]


def test_the_taker_never_goes_beyond_max_position_and_may_still_reduce(memory):
    h = harness(memory, TAKER, size=100, max_position=200, cooldown_ms=0)
    for position in (100, 200):
        h.book("AAPL", *BID_HEAVY)
        (buy,) = h.intents()
        ack(h, buy, position - 100)
        h.report(ExecEvent.EXECUTED, buy["client_order_id"], shares=100, price=buy["price"], leaves=0,
                 position=position)
    assert h.strategy.positions["AAPL"] == 200
    h.book("AAPL", *BID_HEAVY)                                                   # long 200: no more buying
    assert h.intents() == []
    h.book("AAPL", *ASK_HEAVY)
    assert summary(h.intents()) == [("NEW", "SELL", 100, P("189.99"), TIF_IOC)]


def test_the_taker_logs_a_reject_and_goes_on(memory, caplog):
    h = harness(memory, TAKER, cooldown_ms=0)
    h.book("AAPL", *BID_HEAVY)
    (buy,) = h.intents()
    h.risk_reject(buy["client_order_id"], RiskReason.MAX_LONG)
    assert "AAPL BUY refused: MAX_LONG" in caplog.text
    h.book("AAPL", *BID_HEAVY)
    assert [i["action"] for i in h.intents()] == [Action.NEW] and h.host.stats.errors == 0


def test_the_taker_flattens_in_on_stop_cancelling_first_then_closing_at_the_touch(memory):
    h = harness(memory, TAKER, cooldown_ms=0)
    h.book("AAPL", *BID_HEAVY)
    buy = h.intents()[0]
    ack(h, buy)
    h.report(ExecEvent.EXECUTED, buy["client_order_id"], shares=100, price=P("190.01"), leaves=0, position=100)
    h.strategy.on_stop()                                    # the strategy's own, not the host's safety net
    cancel, close = h.intents()
    assert (cancel["action"], cancel["symbol_id"]) == (Action.CANCEL_ALL, ALL_SYMBOLS)
    assert summary([close]) == [("NEW", "SELL", 100, P("190.00"), TIF_IOC)]     # the long, sold at the bid


@pytest.mark.parametrize("values, message", [
    ({"threshold": 0}, r"threshold must be in \(0, 1\], got 0"),
    ({"threshold": 1.5}, r"threshold must be in \(0, 1\], got 1.5"),
    ({"size": 0}, "size must be at least 1"),
    ({"size": 300, "max_position": 200}, "max_position 200 is below size 300"),
    ({"cooldown_ms": -1}, "cooldown_ms must not be negative"),
    ({"treshold": 0.5}, "treshold"),
])
def test_the_takers_parameters_are_checked(values, message):
    with pytest.raises(StrategyConfigError, match=message):
        build_parameters(example(TAKER), values)


# ---------------------------------------------------------------------------------------------
# Join the touch
# ---------------------------------------------------------------------------------------------

JOIN = "join_the_touch.py:JoinTheTouch"
WIDE = ([(P("190.00"), 500)], [(P("190.03"), 500)])        # 3 ticks


def test_join_the_touch_rests_one_lot_on_each_side_at_the_touch_only_when_wide_enough(memory):
    h = harness(memory, JOIN, lot=100, min_spread_ticks=2)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.01"), 500)])                   # one tick: too tight
    assert h.intents() == []
    h.book("AAPL", *WIDE, flags=BOOK_FLAG_STALE)
    assert h.intents() == []
    h.book("AAPL", *WIDE)
    assert summary(h.intents()) == [("NEW", "BUY", 100, P("190.00"), TIF_DAY),
                                    ("NEW", "SELL", 100, P("190.03"), TIF_DAY)]
    h.book("AAPL", *WIDE)
    assert h.intents() == []                                                     # already resting


def test_join_the_touch_follows_the_touch_and_pulls_when_it_narrows(memory):
    h = harness(memory, JOIN, lot=100)
    h.book("AAPL", *WIDE)
    bid, ask = h.intents()
    ack(h, bid)
    ack(h, ask)
    h.book("AAPL", [(P("190.01"), 500)], [(P("190.03"), 500)])                   # the bid moved up a tick
    (moved,) = h.intents()
    assert (Action(moved["action"]), moved["orig_client_order_id"], moved["price"]) == \
        (Action.REPLACE, bid["client_order_id"], P("190.01"))
    h.report(ExecEvent.REPLACED, moved["client_order_id"], orig=bid["client_order_id"], shares=100,
             price=P("190.01"), leaves=100)
    h.book("AAPL", [(P("190.02"), 500)], [(P("190.03"), 500)])                   # one tick wide: both pulled
    cancels = h.intents()
    assert sorted((Action(i["action"]), i["orig_client_order_id"]) for i in cancels) == \
        sorted([(Action.CANCEL, moved["client_order_id"]), (Action.CANCEL, ask["client_order_id"])])


def test_join_the_touch_stops_buying_at_max_position(memory):
    h = harness(memory, JOIN, lot=100, max_position=100)
    h.book("AAPL", *WIDE)
    bid, ask = h.intents()
    ack(h, bid)
    ack(h, ask)
    h.report(ExecEvent.EXECUTED, bid["client_order_id"], shares=100, price=P("190.00"), leaves=0, position=100)
    h.book("AAPL", *WIDE)
    assert h.intents() == []                      # long 100 = max: no new bid; the ask rests as it was
    assert [o.side for o in h.strategy.orders] == [Side.SELL]


def test_join_the_touch_keeps_the_original_when_its_replace_is_refused(memory):
    h = harness(memory, JOIN, lot=100)
    h.book("AAPL", *WIDE)
    bid, ask = h.intents()
    ack(h, bid)
    ack(h, ask)
    h.book("AAPL", [(P("190.01"), 500)], [(P("190.03"), 500)])
    (moved,) = h.intents()
    h.risk_reject(moved["client_order_id"], RiskReason.PRICE_COLLAR)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.03"), 500)])    # back where the original rests: nothing to do
    assert h.intents() == []
    h.book("AAPL", [(P("190.01"), 500)], [(P("190.03"), 500)])    # and it is the one followed again
    (again,) = h.intents()
    assert (Action(again["action"]), again["orig_client_order_id"]) == (Action.REPLACE, bid["client_order_id"])


def test_join_the_touch_cancels_everything_in_on_stop(memory):
    h = harness(memory, JOIN, lot=100)
    h.book("AAPL", *WIDE)
    for intent in h.intents():
        ack(h, intent)
    h.strategy.on_stop()
    assert [(i["action"], i["symbol_id"]) for i in h.intents()] == [(Action.CANCEL_ALL, ALL_SYMBOLS)]


def test_join_the_touch_needs_a_lot():
    with pytest.raises(StrategyConfigError, match="lot: missing required key"):
        build_parameters(example(JOIN), {})


def test_the_readmes_strategy_example_loads_and_trades(memory, tmp_path):
    """The code in README's "Writing a strategy" runs as printed."""
    section = (ROOT / "README.md").read_text().split("## Writing a strategy", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_strategy.py").write_text(code)
    cls = load_strategy_class(f"{tmp_path}/readme_strategy.py:LeanTaker")[0]
    h = Harness(memory, cls, build_parameters(cls, {"threshold": 0.5}), traded=("AAPL",), instruments=instruments())
    h.intents()
    h.book("AAPL", *BID_HEAVY)
    buy, = h.intents()
    assert summary([buy]) == [("NEW", "BUY", 100, P("190.01"), TIF_IOC)]         # one round lot
    ack(h, buy)
    h.report(ExecEvent.EXECUTED, buy["client_order_id"], shares=100, price=P("190.01"), leaves=0, position=100,
             liquidity=ord("R"))
    h.book("AAPL", *BID_HEAVY)                                                  # one order at a time: none open,
    assert summary(h.intents()) == [("NEW", "BUY", 100, P("190.01"), TIF_IOC)]  # so it leans again
    h.strategy.on_stop()
    cancel, close = h.intents()
    assert cancel["action"] == Action.CANCEL_ALL
    assert summary([close]) == [("NEW", "SELL", 100, P("190.00"), TIF_IOC)]     # flattened at the bid
    assert h.host.stats.errors == 0
