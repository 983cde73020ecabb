"""End to end, the OUCH 4.2 flags: a strategy's calls through risk and the OMS to the simulated
exchange, every process spawned by `appliance up` (appliance/sim/sandbox.py). The exchange's own
OUCH log is the ground truth: what arrived, and what the exchange did with it."""
from __future__ import annotations

import textwrap

import pytest
import yaml

from appliance.exchange.records import read_ouch_log
from appliance.sim.sandbox import ROOT, Sandbox
from appliance.wire import ouch
from conftest import wait_until

FIRM = "ALGO1"
pytestmark = pytest.mark.e2e

STRATEGY = textwrap.dedent('''
    from appliance.strategy import MARKET, TIF_IOC, Capacity, Display, Strategy, reject_reason_name

    class FlagSender(Strategy):
        """On the first usable AAPL book once the gate is open: a hidden principal ISO short sale above
        the ask, an IOC buy under the bid whose minimum cannot be met, and a market order the limits do
        not allow."""
        sent = False

        def on_book(self, book):
            if self.sent or book.symbol != "AAPL" or book.stale or not (book.bid_price and book.ask_price) \
                    or not self.gate_open():
                return
            self.sent = True
            self.log.info("sending at %s", book)
            self.sell("AAPL", 100, book.ask_price + 1000, short=True, display=Display.HIDDEN,
                      capacity=Capacity.PRINCIPAL, iso=True)
            self.buy("AAPL", 1000, book.bid_price - 10_000, TIF_IOC, min_qty=1000)    # $1 under the bid
            self.buy("AAPL", 100, MARKET)

        def on_order_rejected(self, order, source, reason):
            self.log.info("rejected %r: %s", order, reject_reason_name(source, reason))
''')


def test_a_strategy_s_flags_reach_the_exchange_and_risk_refuses_what_the_limits_forbid(tmp_path):
    strategy = tmp_path / "flag_sender.py"
    strategy.write_text(STRATEGY)
    limits = yaml.safe_load((ROOT / "config" / "risk_limits.yaml").read_text())
    limits["symbol_defaults"]["allow_short_sell"] = True
    limits["global"]["allow_iso"] = True
    limits["global"]["allow_market_orders"] = False
    limits_path = tmp_path / "limits.yaml"
    limits_path.write_text(yaml.safe_dump(limits))
    sb = Sandbox(tmp_path / "sb", background_rate=2000, seed=5,
                 params={"strategy": {"strategy": f"{strategy}:FlagSender"}, "risk": {"limits": str(limits_path)}})
    try:
        sb.start()

        def inbound() -> list[dict]:
            return [ouch.decode_inbound(r.message) for r in read_ouch_log(sb.records / f"ouch-{FIRM}.log")
                    if r.direction == "I"]

        strategy_log = sb.dir / "logs" / "strategy.log"
        wait_until(lambda: len([m for m in inbound() if m["type"] == "O"]) >= 2, 90, interval=0.2,
                   message=f"the strategy's two orders at the exchange (strategy log: {strategy_log})")
        wait_until(lambda: sb.counters().get("risk.rejects.MARKET_ORDER") == 1, 30, interval=0.2,
                   message="the market order refused by risk, by name")
        short, minimum = [m for m in inbound() if m["type"] == "O"][:2]
        assert (short["buy_sell_indicator"], short["display"], short["capacity"],
                short["intermarket_sweep_eligibility"], short["minimum_quantity"]) == ("T", "N", "P", "Y", 0)
        assert (minimum["buy_sell_indicator"], minimum["time_in_force"], minimum["minimum_quantity"],
                minimum["shares"]) == ("B", 0, 1000, 1000)
        outbound = [ouch.decode_outbound(r.message) for r in read_ouch_log(sb.records / f"ouch-{FIRM}.log")
                    if r.direction == "O"]
        canceled = [m for m in outbound if m["type"] == "C" and m["order_token"] == minimum["order_token"]]
        assert [(m["decrement_shares"], m["reason"]) for m in canceled] == [(1000, "I")]     # canceled whole
        assert not [m for m in outbound if m["type"] == "E" and m["order_token"] == minimum["order_token"]]
        assert sb.down() == 0
    finally:
        sb.close()
