"""``Strategy.request_reducing`` in a backtest: risk's one rule for a strategy held in REDUCING of its own
(``RiskEngine.held_reducing``, as the risk agent asks it) refuses what would grow a position, lets the rest pass."""
from __future__ import annotations

from appliance.backtest.engine import Backtest
from appliance.messages.codes import TIF_IOC, Action, RejectSource, RiskReason
from appliance.risk.checks import RiskEngine
from appliance.strategy.api import Strategy
from backtest_days import S, setup, two_sided_day


class Reduces(Strategy):
    """Buys 200 AAPL at the ask, asks for REDUCING once filled, then tries a buy, a sell of 100 and a MSFT sell."""

    rejected: list = []

    def on_start(self):
        Reduces.rejected = []
        self.step = 0

    def on_book(self, book):
        if self.step == 0 and book.symbol == "AAPL" and book.ask_price:
            self.buy("AAPL", 200, book.ask_price, TIF_IOC)
            self.step = 1
        elif self.step == 2:
            self.step = 3
            self.buy("AAPL", 100, 1_899_900)                 # grows the long: refused
            self.sell("AAPL", 100, 1_900_200)                # shrinks it: passes
            self.sell("MSFT", 100, 4_200_200)                # flat: any order grows it, refused

    def on_fill(self, order, fill):
        if self.positions["AAPL"] == 200 and self.step == 1:
            self.request_reducing()
            self.step = 2

    def on_order_rejected(self, order, source, reason):
        Reduces.rejected.append((order.symbol, int(source), int(reason)))


def test_a_strategy_in_reducing_of_its_own_is_refused_what_grows_a_position(tmp_path, monkeypatch):
    path = two_sided_day(tmp_path / "day.bin", minutes=1)
    asked = []
    rule = RiskEngine.held_reducing

    def held_reducing(engine, *intent):
        asked.append(intent[0])
        return rule(engine, *intent)
    monkeypatch.setattr(RiskEngine, "held_reducing", held_reducing)
    record = Backtest(setup(path, Reduces)).run()
    reducing = (int(RejectSource.RISK), int(RiskReason.TRADING_REDUCING))
    assert Reduces.rejected == [("AAPL", *reducing), ("MSFT", *reducing)]
    assert record.refusals == {"TRADING_REDUCING": 2}
    assert record.refusals_by_symbol == {"AAPL": {"TRADING_REDUCING": 1}, "MSFT": {"TRADING_REDUCING": 1}}
    assert record.orders == 2                                   # the first buy and the passing sell
    assert asked == [Action.NEW] * 3 + [Action.CANCEL_ALL]      # risk's rule decided, from REDUCING on (the stop's)
    assert record.fills[0].shares == 200 and record.end_ns - record.start_ns <= 60 * S
