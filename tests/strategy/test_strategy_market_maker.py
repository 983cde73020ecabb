"""The reference market maker: quoting decisions as pure functions, then the strategy in the host."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.messages.catalog import BOOK_FLAG_STALE
from appliance.messages.codes import ALL_SYMBOLS, Action, ExecEvent, OmsReason, RejectSource, RiskReason, Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import price_from_decimal as P
from appliance.strategy.loader import build_parameters
from appliance.strategy.market_maker import (
    BookTop, MarketMaker, MarketMakerParameters, Quote, QuoteParams, SymbolOverrides, desired_quotes, fair_value,
    needs_requote,
)
from strategy_harness import Harness, instruments, strategy_layout     # the in-process harness (tests/support/)

TICK = 100
TOP = BookTop(P("190.00"), 500, P("190.04"), 500)          # mid 190.02


def params(**kw) -> QuoteParams:
    base = dict(tick=TICK, spread_ticks=2, size=100, lot=100, max_position=1000, inventory_unit=100, skew_ticks=1.0,
                widen_ticks=0.5, requote_threshold_ticks=1)
    base.update(kw)
    return QuoteParams(**base)


def order(side: Side, leaves: int):
    return SimpleNamespace(side=side, leaves=leaves)


def test_fair_value_is_the_mid_or_the_microprice_and_needs_both_sides():
    assert fair_value(TOP) == P("190.02")
    thin_ask = BookTop(P("190.00"), 900, P("190.04"), 100)
    assert fair_value(thin_ask, "microprice") == P("190.036")          # leans toward the thin side
    assert fair_value(BookTop(P("190.00"), 100, 0, 0)) is None
    assert fair_value(BookTop(0, 0, P("190.04"), 100), "microprice") is None


def test_flat_quotes_are_symmetric_around_fair_value_on_the_tick():
    bid, ask = desired_quotes(TOP, 0, [], params())
    assert (bid, ask) == (Quote(P("190.01"), 100), Quote(P("190.03"), 100))
    odd = BookTop(P("190.00"), 500, P("190.03"), 500)                  # mid on a half tick: round outward
    bid, ask = desired_quotes(odd, 0, [], params())
    assert (bid.price, ask.price) == (P("190.00"), P("190.03"))
    wide = desired_quotes(TOP, 0, [], params(spread_bp=5.0))           # 5 bp of 190 = 9.5 cents -> 10 ticks
    assert wide[1].price - wide[0].price == 10 * TICK
    for b, a in (wide, desired_quotes(TOP, 0, [], params(fair_value="microprice"))):
        assert b.price % TICK == 0 and a.price % TICK == 0 and b.price < a.price


def test_inventory_skew_shifts_both_quotes_against_the_position_and_widens():
    flat_bid, flat_ask = desired_quotes(TOP, 0, [], params())
    long_bid, long_ask = desired_quotes(TOP, 300, [], params())
    short_bid, short_ask = desired_quotes(TOP, -300, [], params())
    assert long_bid.price < flat_bid.price and long_ask.price < flat_ask.price      # long: lower, sell sooner
    assert short_bid.price > flat_bid.price and short_ask.price > flat_ask.price
    assert long_ask.price - long_bid.price > flat_ask.price - flat_bid.price       # and wider
    # 190.02 - skew 3 ticks - (half width 1 tick + widen 3 x 0.5 tick) = 189.965, floored to the tick
    assert (long_bid.price, long_ask.price) == (P("189.96"), P("190.02"))
    # more inventory, more skew: monotonic
    bids = [desired_quotes(TOP, p, [], params())[0].price for p in (0, 100, 200, 400, 800)]
    assert bids == sorted(bids, reverse=True)
    no_skew = desired_quotes(TOP, 500, [], params(skew_ticks=0.0, widen_ticks=0.0))
    assert no_skew == (Quote(P("190.01"), 100), Quote(P("190.03"), 100))


def test_quotes_never_cross_the_market():
    bid, ask = desired_quotes(TOP, -900, [], params(skew_ticks=5.0))              # short: bid pushed up
    assert bid.price <= TOP.ask_price - TICK
    bid, ask = desired_quotes(TOP, 900, [], params(skew_ticks=5.0))
    assert ask.price >= TOP.bid_price + TICK


def test_the_position_cap_counts_open_same_side_shares_and_is_never_exceeded():
    p = params(size=200, max_position=1000)
    assert desired_quotes(TOP, 1000, [], p)[0] is None                 # at the cap: no bid
    assert desired_quotes(TOP, 1000, [], p)[1] == Quote(desired_quotes(TOP, 1000, [], p)[1].price, 200)
    assert desired_quotes(TOP, 950, [], p)[0] is None                  # room 50 < one lot
    assert desired_quotes(TOP, 850, [], p)[0].shares == 100            # room 150 -> one lot
    assert desired_quotes(TOP, 400, [order(Side.BUY, 500)], p)[0].shares == 100
    assert desired_quotes(TOP, 400, [order(Side.BUY, 600)], p)[0] is None
    assert desired_quotes(TOP, 400, [order(Side.SELL, 600)], p)[0].shares == 200   # other side: no effect
    assert desired_quotes(TOP, -1000, [], p)[1] is None                # short cap
    assert desired_quotes(TOP, -700, [order(Side.SELL, 200)], p)[1].shares == 100
    for position in range(-1200, 1201, 50):
        for open_buys in (0, 100, 300):
            bid, ask = desired_quotes(TOP, position, [order(Side.BUY, open_buys), order(Side.SELL, open_buys)], p)
            if bid:
                assert position + open_buys + bid.shares <= 1000
            if ask:
                assert -(position - open_buys - ask.shares) <= 1000


def test_quotes_are_pulled_when_the_book_is_stale_crossed_halted_or_one_sided():
    p = params()
    for bad in (BookTop(P("190.00"), 500, P("190.04"), 500, stale=True),
                BookTop(P("190.00"), 500, P("190.04"), 500, halted=True),
                BookTop(P("190.05"), 500, P("190.04"), 500, crossed=True),
                BookTop(P("190.00"), 500, 0, 0)):
        assert desired_quotes(bad, 0, [], p) == (None, None)


def test_requote_only_beyond_the_threshold_or_when_the_cap_shrinks_the_size():
    p = params(requote_threshold_ticks=1)
    assert not needs_requote(P("190.01"), 100, Quote(P("190.01"), 100), p)
    assert not needs_requote(P("190.01"), 100, Quote(P("190.02"), 100), p)        # one tick: keep
    assert needs_requote(P("190.01"), 100, Quote(P("190.03"), 100), p)            # two ticks: move
    assert needs_requote(P("190.01"), 200, Quote(P("190.01"), 100), p)            # cap shrank
    assert not needs_requote(P("190.01"), 100, Quote(P("190.01"), 200), p)        # a partial fill stays
    assert needs_requote(P("190.01"), 100, Quote(P("190.02"), 100), params(requote_threshold_ticks=0))


def test_parameters_per_symbol_override_the_globals_and_are_checked():
    mm = build_parameters(MarketMaker, {"size": 200, "symbols": {"TSLA": {"spread_ticks": 4, "max_position": 400}}})
    cent = instruments()["AAPL"]
    assert mm.for_symbol("TSLA", cent).spread_ticks == 4 and mm.for_symbol("TSLA", cent).size == 200
    assert mm.for_symbol("AAPL", cent) == QuoteParams(size=200, tick=100, lot=100)
    with pytest.raises(ValueError, match="max_position 100 is below size 200"):
        MarketMakerParameters(size=200, max_position=100)
    with pytest.raises(ValueError, match="symbols.TSLA: size 150 is not a whole number of lots"):
        MarketMakerParameters(lot=100, symbols={"TSLA": SymbolOverrides(size=150)})
    odd = MarketMakerParameters(symbols={"TSLA": SymbolOverrides(size=150)})     # the lot is the instrument's:
    with pytest.raises(ValueError, match="symbols.TSLA: size 150 is not a whole number of lots of 100"):
        MarketMaker.validate_instruments(odd, {"TSLA": cent})                   # refused at load
    with pytest.raises(ValueError, match="not a layout symbol"):
        MarketMaker.validate_parameters(mm, ("AAPL", "MSFT"))


def test_tick_and_lot_come_from_the_instrument_and_a_parameter_that_disagrees_is_refused():
    cent, nickel = instruments("0.01")["AAPL"], instruments("0.05", round_lot=50)["AAPL"]
    plain = MarketMakerParameters()
    assert (plain.for_symbol("AAPL", nickel).tick, plain.for_symbol("AAPL", nickel).lot) == (500, 50)
    assert MarketMakerParameters(tick=100).for_symbol("AAPL", cent).tick == 100      # repeating it: allowed
    assert MarketMakerParameters(lot=200, size=200).for_symbol("AAPL", cent).lot == 200   # two round lots
    with pytest.raises(ValueError, match=r"tick 100 disagrees with AAPL's instrument \(tick 500\)"):
        MarketMaker.validate_instruments(MarketMakerParameters(tick=100), {"AAPL": nickel})
    with pytest.raises(ValueError, match=r"symbols.AAPL: tick 100 disagrees"):
        MarketMaker.validate_instruments(MarketMakerParameters(symbols={"AAPL": SymbolOverrides(tick=100)}),
                                         {"AAPL": nickel})
    with pytest.raises(ValueError, match=r"lot 75 is not a whole number of AAPL's round lot \(50\)"):
        MarketMaker.validate_instruments(MarketMakerParameters(lot=75, size=150), {"AAPL": nickel})
    with pytest.raises(ValueError, match="AAPL has no instrument .*: give tick and lot as parameters"):
        plain.for_symbol("AAPL")
    assert MarketMakerParameters(tick=100, lot=100).for_symbol("AAPL") == QuoteParams()   # a layout without one


def test_a_tick_parameter_that_disagrees_with_the_instrument_stops_the_load_with_the_file(tmp_path):
    from appliance.strategy.config import StrategyConfig, StrategyConfigError
    from appliance.strategy.loader import load_strategy
    parameters = tmp_path / "mm.yaml"
    parameters.write_text("tick: 100\nsize: 100\n")
    config = StrategyConfig(strategy="appliance.strategy.market_maker:MarketMaker", strategy_id=1,
                            parameters_file=str(parameters), symbols=("AAPL",))
    nickel = instruments("0.05")
    with pytest.raises(StrategyConfigError) as info:
        load_strategy(config, layout_symbols=nickel.symbols, instruments=nickel)
    assert info.value.file == str(parameters) and "tick 100 disagrees with AAPL's instrument" in str(info.value)
    assert load_strategy(config, layout_symbols=nickel.symbols, instruments=instruments("0.01")).parameters.tick == 100


# ---------------------------------------------------------------------------------------------
# The strategy in the host (no processes)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


def mm_harness(memory, tick: str = "0.01", **kw):
    values = dict(spread_ticks=2, size=100, max_position=300, skew_ticks=1.0, widen_ticks=0.0,
                  requote_threshold_ticks=1, reject_cooldown_ms=60_000)
    values.update(kw)
    h = Harness(memory, MarketMaker, build_parameters(MarketMaker, values), traded=("AAPL",),
                instruments=instruments(tick))
    assert [i["action"] for i in h.intents()] == [Action.CANCEL_ALL]
    return h


def ack_all(h, intents):
    for i in intents:
        if i["action"] == Action.NEW:
            h.report(ExecEvent.ACCEPTED, i["client_order_id"], side=i["side"], shares=i["shares"], price=i["price"],
                     leaves=i["shares"], position=h.strategy.positions["AAPL"])
        elif i["action"] == Action.REPLACE:
            h.report(ExecEvent.REPLACED, i["client_order_id"], orig=i["orig_client_order_id"], side=i["side"],
                     shares=i["shares"], price=i["price"], leaves=i["shares"], position=h.strategy.positions["AAPL"])
        elif i["action"] == Action.CANCEL:
            h.report(ExecEvent.CANCELED, i["orig_client_order_id"], side=i["side"], leaves=0,
                     position=h.strategy.positions["AAPL"])


def summary(intents):
    return [(Action(i["action"]).name, Side(i["side"]).name if i["side"] else "", i["shares"], i["price"])
            for i in intents]


def test_market_maker_quotes_requotes_on_threshold_skews_on_fills_and_respects_the_cap(memory):
    h = mm_harness(memory)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)])
    first = h.intents()
    assert summary(first) == [("NEW", "BUY", 100, P("190.01")), ("NEW", "SELL", 100, P("190.03"))]
    assert all(i["t_rx_ns"] == 1111 for i in first)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)])
    assert h.intents() == []                                            # pending: wait for the answer
    ack_all(h, first)
    bid_id, ask_id = (i["client_order_id"] for i in first)
    h.book("AAPL", [(P("190.01"), 500)], [(P("190.05"), 500)])          # fair +1 tick: within the threshold
    assert h.intents() == []
    h.book("AAPL", [(P("190.02"), 500)], [(P("190.06"), 500)])          # +2 ticks: both move
    moved = h.intents()
    # the ask moves away first: the bid's new price (190.03) would trade with our own ask until it has moved
    assert summary(moved) == [("REPLACE", "SELL", 100, P("190.05"))]
    assert [i["orig_client_order_id"] for i in moved] == [ask_id]
    ack_all(h, moved)
    h.book("AAPL", [(P("190.02"), 500)], [(P("190.06"), 500)])
    moved = h.intents()
    assert summary(moved) == [("REPLACE", "BUY", 100, P("190.03"))]
    assert [i["orig_client_order_id"] for i in moved] == [bid_id]
    ack_all(h, moved)
    bid_id = moved[0]["client_order_id"]
    # filled on the bid: long 100 -> a new, skewed bid, and the ask shifts down by a tick (within threshold)
    h.report(ExecEvent.EXECUTED, bid_id, shares=100, price=P("190.03"), leaves=0, position=100)
    assert summary(h.intents()) == [("NEW", "BUY", 100, P("190.02"))]
    # fills up to the cap: never a bid that could take the position beyond 300
    position = 100
    for _ in range(4):
        bid = next((o for o in h.strategy.orders if o.side == Side.BUY), None)
        if bid is None:
            break
        ack_all(h, [{"action": Action.NEW, "client_order_id": bid.client_order_id, "side": Side.BUY,
                     "shares": bid.shares, "price": bid.price}])
        position += 100
        h.report(ExecEvent.EXECUTED, bid.client_order_id, shares=100, price=bid.price, leaves=0, position=position)
        for i in h.intents():
            ack_all(h, [i])
    assert position == 300 and h.strategy.positions["AAPL"] == 300
    assert not any(o.side == Side.BUY for o in h.strategy.orders)
    h.book("AAPL", [(P("190.02"), 500)], [(P("190.06"), 500)])
    assert not any(i["side"] == Side.BUY and i["action"] == Action.NEW for i in h.intents())
    assert h.host.stats.errors == 0


def test_market_maker_pulls_on_stale_and_feed_down_and_cancels_everything_on_stop(memory):
    h = mm_harness(memory)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)])
    quotes = h.intents()
    ack_all(h, quotes)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)], flags=BOOK_FLAG_STALE)
    pulled = h.intents()
    assert summary(pulled) == [("CANCEL", "BUY", 0, P("190.01")), ("CANCEL", "SELL", 0, P("190.03"))]
    assert [i["orig_client_order_id"] for i in pulled] == [i["client_order_id"] for i in quotes]
    ack_all(h, pulled)
    assert len(h.strategy.orders) == 0
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)], state=b"H")           # halted: nothing
    assert h.intents() == []
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)])                        # live again: quotes
    quotes = h.intents()
    assert len(quotes) == 2
    ack_all(h, quotes)
    h.host._feed_live = lambda: False                                                 # feed_ready 0
    h.host.timer(1)
    assert [i["action"] for i in h.intents()] == [Action.CANCEL, Action.CANCEL]
    h.host.stop()
    assert [(i["action"], i["symbol_id"]) for i in h.intents()] == [(Action.CANCEL_ALL, ALL_SYMBOLS)]


def test_market_maker_backs_off_after_a_reject(memory):
    h = mm_harness(memory)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)])
    bid, ask = h.intents()
    h.risk_reject(bid["client_order_id"], RiskReason.MAX_LONG)
    ack_all(h, [ask])
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)])
    assert h.intents() == []                                             # no new bid during the cooldown
    h.strategy.quotes["AAPL"].cooldown_until_ns = 0
    h.host.timer(2)
    assert summary(h.intents()) == [("NEW", "BUY", 100, P("190.01"))]


def test_market_maker_does_not_repeat_a_refused_cancel_on_every_update(memory):
    h = mm_harness(memory)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)])
    quotes = h.intents()
    ack_all(h, quotes)
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)], flags=BOOK_FLAG_STALE)
    cancels = h.intents()
    assert [i["action"] for i in cancels] == [Action.CANCEL, Action.CANCEL]
    for c in cancels:
        h.report(ExecEvent.REJECTED_LOCALLY, c["client_order_id"], orig=c["orig_client_order_id"], side=c["side"],
                 reason=OmsReason.SESSION_DOWN, source=RejectSource.OMS)
    assert all(o.state.name == "LIVE" for o in h.strategy.orders)
    for _ in range(5):
        h.book("AAPL", [(P("190.00"), 500)], [(P("190.04"), 500)], flags=BOOK_FLAG_STALE)
    assert h.intents() == []                                             # held back for reject_cooldown_ms
    h.strategy.quotes["AAPL"].cancel_retry_ns = 0
    h.host.timer(3)
    assert [i["action"] for i in h.intents()] == [Action.CANCEL, Action.CANCEL]
