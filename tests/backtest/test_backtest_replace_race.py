"""A replace that reaches the venue after its order filled: the venue refuses it (a cancel reject of the order)
and the backtest answers as the OMS does (oms/orders.py ``_cancel_reject``): the replacement is rejected
(EXCHANGE, 'I' no such order), to the strategy and to risk. It stayed PENDING_NEW for the rest of the day, so
a market maker never quoted that side again (latency turns every fill that races a requote into this)."""
from __future__ import annotations

from appliance.backtest.engine import Backtest
from appliance.messages.codes import RejectSource
from appliance.oms.orders import REJECT_REASON_NO_SUCH_ORDER
from appliance.replay.latency import Latency
from appliance.strategy.api import Strategy
from backtest_days import MS, T0, Day, setup


class RacesAFill(Strategy):
    """Bids 190.00 on the first book; on the book of T0 + 10 ms moves it to 189.99 (a replace that arrives
    after the fill of T0 + 10.5 ms); writes down rejects and what is open at T0 + 20 ms."""

    seen: list = []
    risk_open_buy = None            # the test's look at risk's book of open buys

    def on_start(self):
        RacesAFill.seen = self.events = []
        self.bid = None

    def on_book(self, book):
        if book.symbol != "AAPL" or not book.bid_price:
            return
        t = book.t_exchange_ns % 86_400_000_000_000
        if self.bid is None:
            self.bid = self.buy("AAPL", 100, 1_900_000)
        elif t == T0 + 10 * MS:
            self.events.append(("replacement", self.replace(self.bid, price=1_899_900)))
        elif t == T0 + 20 * MS:
            self.events.append(("open", [(o.client_order_id, o.state.name) for o in self.orders],
                                RacesAFill.risk_open_buy()))

    def on_fill(self, order, fill):
        self.events.append(("fill", order.client_order_id, fill.shares))

    def on_order_rejected(self, order, source, reason):
        self.events.append(("rejected", order.client_order_id, int(source), reason))


def test_a_replace_of_an_order_filled_meanwhile_rejects_the_replacement(tmp_path):
    day = Day(tmp_path / "day.bin")
    day.add("AAPL", "B", 100, 1_899_900, T0 + 1 * MS)
    day.add("AAPL", "S", 100, 1_900_200, T0 + 1 * MS)
    day.add("AAPL", "B", 100, 1_899_800, T0 + 10 * MS)
    day.add("AAPL", "S", 100, 1_900_000, T0 + 10 * MS + 500_000)     # crosses our 190.00 bid: fills it
    day.add("AAPL", "B", 100, 1_899_700, T0 + 20 * MS)
    path = day.close(T0 + 30 * MS)
    bt = Backtest(setup(path, RacesAFill, latency=Latency(feed_ns=0, entry_ns=1 * MS, ack_ns=0)))
    RacesAFill.risk_open_buy = lambda: bt.risk.portfolio.open_buy[0]
    bt.run()
    events = RacesAFill.seen
    (replacement,) = [e[1] for e in events if e[0] == "replacement"]
    bid = bt.host.strategy.bid
    assert replacement is not None
    assert [e for e in events if e[0] != "replacement"] == [
        ("fill", bid, 100),
        ("rejected", replacement, int(RejectSource.EXCHANGE), REJECT_REASON_NO_SUCH_ORDER),
        ("open", [], 0)]                                            # risk forgot the replacement too
