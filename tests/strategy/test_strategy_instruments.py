"""``Strategy.instrument``: the instruments a host is given (the layout's, or a backtest's), and the market maker
quoting on its instrument's tick rather than a parameter."""
from __future__ import annotations

import pytest

from appliance.messages.codes import Action, Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import Instrument, Strategy
from appliance.strategy import price_from_decimal as P
from appliance.strategy.host import StrategyHost
from appliance.strategy.loader import build_parameters
from appliance.strategy.market_maker import MarketMaker
from strategy_harness import SYMBOLS, Harness, instruments, strategy_layout


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


class Asks(Strategy):
    """Looks its instruments up in on_start, as a quant would."""

    def on_start(self):
        self.seen = self.instrument("MSFT")
        try:
            self.instrument("NOPE")
        except KeyError as exc:
            self.unknown = str(exc)


def test_a_strategy_asks_for_an_instrument_and_gets_the_immutable_one(memory):
    h = Harness(memory, Asks, instruments=instruments("0.05", round_lot=10))
    msft = h.strategy.seen
    assert isinstance(msft, Instrument)
    assert (msft.symbol, msft.symbol_id, msft.tick, msft.round_lot) == ("MSFT", 1, 500, 10)
    assert msft.round_price(P("420.07"), Side.BUY) == P("420.05") and msft.is_valid_price(P("420.10"))
    assert "no instrument for 'NOPE' (instruments: AAPL, MSFT, SPY)" in h.strategy.unknown
    with pytest.raises(AttributeError):
        msft.tick = 1
    assert h.host.stats.errors == 0


def test_without_instruments_the_key_error_says_where_they_come_from(memory):
    h = Harness(memory, Asks)
    assert h.host.failed and "no instrument for 'MSFT': this strategy was given no instruments" in h.host.failure


def test_a_backtest_may_pass_instruments_as_a_plain_iterable_and_ids_must_match(memory):
    given = instruments()
    host = StrategyHost(Strategy, None, symbols=tuple(SYMBOLS), strategy_id=1, intents=None, instruments=list(given))
    assert host.instrument("SPY") is given["SPY"]
    assert StrategyHost(Strategy, None, symbols=tuple(SYMBOLS), strategy_id=1, intents=None,
                        instruments={"AAPL": given["AAPL"]}).instrument("AAPL") is given["AAPL"]
    with pytest.raises(ValueError, match="instrument MSFT has symbol id 1, but the symbols give it 0"):
        StrategyHost(Strategy, None, symbols=("MSFT",), strategy_id=1, intents=None, instruments=[given["MSFT"]])


def test_the_market_maker_quotes_on_its_instruments_tick(memory):
    """A nickel instrument: the same book and parameters quote on 0.05 multiples (a parameter tick of 0.01
    would have sent prices risk refuses as TICK)."""
    parameters = build_parameters(MarketMaker, {"spread_ticks": 2, "size": 100, "max_position": 300,
                                                "skew_ticks": 0.0, "widen_ticks": 0.0})
    h = Harness(memory, MarketMaker, parameters, traded=("AAPL",), instruments=instruments("0.05"))
    assert [i["action"] for i in h.intents()] == [Action.CANCEL_ALL]
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.50"), 500)])           # mid 190.25, width 2 ticks = 0.10
    quotes = [(i["side"], i["shares"], i["price"]) for i in h.intents()]
    assert quotes == [(Side.BUY, 100, P("190.20")), (Side.SELL, 100, P("190.30"))]
    assert all(price % 500 == 0 for _, _, price in quotes)
    assert h.strategy.quotes["AAPL"].params.tick == 500


def test_join_the_touch_takes_its_tick_from_the_instrument_and_refuses_a_lot_that_is_not_whole_round_lots(memory):
    from pathlib import Path

    from appliance.strategy.config import StrategyConfig, StrategyConfigError
    from appliance.strategy.loader import load_strategy
    root = Path(__file__).resolve().parents[2]
    config = StrategyConfig(strategy=str(root / "examples/strategies/join_the_touch.py:JoinTheTouch"), strategy_id=1,
                            parameters={"lot": 150, "min_spread_ticks": 2})
    with pytest.raises(StrategyConfigError, match=r"lot 150 is not a whole number of AAPL's round lot \(100\)"):
        load_strategy(config, layout_symbols=tuple(SYMBOLS), instruments=instruments())
    loaded = load_strategy(config, layout_symbols=tuple(SYMBOLS), instruments=instruments(round_lot=50))
    h = Harness(memory, loaded.strategy_class, loaded.parameters, traded=("AAPL",),
                instruments=instruments("0.05", round_lot=50))
    h.intents()
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.05"), 500)])       # one nickel tick wide: too tight for 2
    assert h.intents() == []
    h.book("AAPL", [(P("190.00"), 500)], [(P("190.10"), 500)])       # two ticks: join both sides
    assert [(i["side"], i["shares"], i["price"]) for i in h.intents()] == \
        [(Side.BUY, 150, P("190.00")), (Side.SELL, 150, P("190.10"))]
