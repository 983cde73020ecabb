"""The backtest report's numbers against a small day computed by hand.

Units of the record: prices in price units (1e-4 dollars), fees in price units x shares (1e-4
dollars; a rebate negative). The report: money in dollars half-even to cents, markouts in dollars
per share to millionths (appliance/backtest/metrics.py).
"""
from __future__ import annotations

import math
import statistics

import pytest

from appliance.backtest.metrics import TRADING_MINUTES_PER_YEAR
from appliance.backtest.record import BacktestFill, BacktestRecord, EquityPoint
from appliance.backtest.report import document, results

S = 1_000_000_000
START = 34_200 * S                       # 09:30:00
END = START + 180 * S                    # 09:33:00


def hand_day(**overrides) -> BacktestRecord:
    """Two symbols, three fills, three equity points (one a minute, the last at the end).

    AAPL: buy 100 @ $100.00 adding (rebate $0.20), sell 100 @ $100.03 adding (rebate $0.20).
    MSFT: sell 50 @ $200.00 removing (fee $0.15), still short 50 at the end.
    """
    fills = [
        BacktestFill(START + 10 * S, "AAPL", "B", 100, 1_000_000, "A", -2_000, 1,
                     {1: 1_000_100.0, 10: 999_900.0, 60: 1_000_200.0}),
        BacktestFill(START + 70 * S, "AAPL", "S", 100, 1_000_300, "A", -2_000, 2,
                     {1: 1_000_250.0, 10: 1_000_300.0, 60: None}),
        BacktestFill(START + 80 * S, "MSFT", "S", 50, 2_000_000, "R", 1_500, 3,
                     {1: 2_000_050.0, 10: 2_000_050.0, 60: 1_999_900.0}),
    ]
    equity = [
        EquityPoint(START + 60 * S, {"AAPL": 1_000_050.0, "MSFT": 2_000_000.0}),
        EquityPoint(START + 120 * S, {"AAPL": 1_000_400.0, "MSFT": 2_000_100.0}),
        EquityPoint(END, {"AAPL": 1_000_000.0, "MSFT": 2_000_109.0}),
    ]
    fields = dict(day_file="hand.itch", symbols=("AAPL", "MSFT"), strategy="examples.mm:MarketMaker", seed=3,
                  start_ns=START, end_ns=END, messages=2_000, seconds=0.5, intents=9, orders=5,
                  orders_by_symbol={"AAPL": 3, "MSFT": 2},
                  refusals={"TICK": 1, "MAX_LONG": 2},
                  refusals_by_symbol={"AAPL": {"MAX_LONG": 2}, "MSFT": {"TICK": 1}},
                  fills=fills, equity=equity)
    fields.update(overrides)
    return BacktestRecord(**fields)


def annualised(per_minute_dollars: list[float]) -> float:
    """The stated formula, with the standard library's mean and sample stdev."""
    return statistics.mean(per_minute_dollars) / statistics.stdev(per_minute_dollars) \
        * math.sqrt(252 * 390)


def test_the_results_object_has_exactly_the_issues_fields():
    assert list(results(hand_day())) == ["messages", "seconds", "msgs_per_s", "orders", "fills", "pnl_gross",
                                         "pnl_net", "fees", "sharpe", "max_drawdown", "markouts", "refusals",
                                         "symbols"]
    assert TRADING_MINUTES_PER_YEAR == 98_280


def test_totals_of_the_hand_day():
    r = results(hand_day())
    assert r["messages"] == 2_000 and r["seconds"] == 0.5 and r["msgs_per_s"] == 4_000
    assert r["orders"] == 5 and r["fills"] == 3
    # Gross at the last marks: AAPL flat, cash -100*1_000_000 + 100*1_000_300 = 30_000 units ($3.00);
    # MSFT short 50: cash 50*2_000_000 = 100_000_000, marked -50*2_000_109 -> -5_450 units (-$0.545).
    # Total 24_550 units = $2.455 -> half-even $2.46 (5 after an odd 5: up).
    assert r["pnl_gross"] == 2.46
    # Fees: -2_000 - 2_000 + 1_500 = -2_500 units = -$0.25 (a net rebate).
    assert r["fees"] == -0.25
    # Net = 24_550 + 2_500 = 27_050 units = $2.705 -> half-even $2.70 (after an even 0: down).
    assert r["pnl_net"] == 2.70
    # Net equity (units): 0 at 09:30 (no point there), then at the points
    #   09:31  AAPL long 100: -100_000_000 + 100*1_000_050 = 5_000, net of the -2_000 rebate 7_000
    #   09:32  AAPL 30_000 + 4_000 rebates = 34_000; MSFT 100_000_000 - 50*2_000_100 = -5_000 - 1_500 fee
    #          = -6_500; total 27_500
    #   09:33  AAPL 34_000; MSFT -5_450 - 1_500 = -6_950; total 27_050
    # Drawdown: from the peak 27_500 to 27_050 = 450 units = $0.045 -> half-even $0.04.
    assert r["max_drawdown"] == 0.04
    # Per-minute returns in dollars: 0.70, 2.05, -0.045.
    assert r["sharpe"] == pytest.approx(annualised([0.70, 2.05, -0.045]), abs=1e-4)
    # Markouts, side x (mid later - price) x shares, over the shares with a later mid:
    #   1 s:  +100*100 (buy, mid up 100) + 50*100 (sell, mid 50 under) - 50*50 (sell, mid 50 over)
    #         = 12_500 units / 250 shares = 50 units = $0.005 a share
    #   10 s: -100*100 + 0 - 50*50 = -12_500 / 250 = -$0.005
    #   60 s: +200*100 + (no mid for the AAPL sell) + 100*50 = 25_000 / 150 = 166.67 units = $0.016667
    assert r["markouts"] == {"1s": 0.005, "10s": -0.005, "60s": 0.016667}
    assert r["refusals"] == {"MAX_LONG": 2, "TICK": 1}


def test_everything_else_of_the_total():
    total = document(hand_day())["total"]
    # 3 of 5 orders filled (ids 1, 2, 3); 200 of 250 shares added liquidity.
    assert (total["filled_orders"], total["fill_ratio"]) == (3, 0.6)
    assert (total["maker_share"], total["taker_share"]) == (0.8, 0.2)
    assert (total["shares_bought"], total["shares_sold"]) == (100, 150)
    # Turnover: 100 x $100.00 + 100 x $100.03 + 50 x $200.00.
    assert total["turnover"] == 30_003.00
    assert (total["fees_paid"], total["rebates"]) == (0.15, 0.40)
    # Sum of |position|: 0 for 10 s, 100 for 60 s, 0 for 10 s, 50 for 100 s: 11_000 share-s / 180 s.
    assert total["avg_inventory"] == 61.11
    assert total["max_inventory"] == 100


def test_per_symbol_numbers():
    symbols = results(hand_day())["symbols"]
    assert list(symbols) == ["AAPL", "MSFT"]
    aapl, msft = symbols["AAPL"], symbols["MSFT"]
    assert (aapl["orders"], aapl["fills"], aapl["fill_ratio"]) == (3, 2, 0.666667)
    assert (msft["orders"], msft["fills"], msft["fill_ratio"]) == (2, 1, 0.5)
    assert (aapl["pnl_gross"], aapl["fees"], aapl["pnl_net"]) == (3.00, -0.40, 3.40)
    # MSFT: -5_450 units = -$0.545 -> -$0.54 (even 4 stays); net -6_950 = -$0.695 -> -$0.70 (odd 9 up).
    assert (msft["pnl_gross"], msft["fees"], msft["pnl_net"]) == (-0.54, 0.15, -0.70)
    assert (aapl["maker_share"], msft["maker_share"], msft["taker_share"]) == (1.0, 0.0, 1.0)
    assert (aapl["position"], msft["position"]) == (0, -50)
    # AAPL net curve: 0, 0.70, 3.40, 3.40 (never falls); MSFT: 0, 0, -0.65, -0.695 (from the peak 0).
    assert (aapl["max_drawdown"], msft["max_drawdown"]) == (0.0, 0.70)
    assert aapl["sharpe"] == pytest.approx(annualised([0.70, 2.70, 0.0]), abs=1e-4)
    assert msft["sharpe"] == pytest.approx(annualised([0.0, -0.65, -0.045]), abs=1e-4)
    # AAPL 100 shares for 60 s of 180; MSFT 50 for 100 s of 180.
    assert (aapl["avg_inventory"], aapl["max_inventory"]) == (33.33, 100)
    assert (msft["avg_inventory"], msft["max_inventory"]) == (27.78, 50)
    # AAPL 1 s: (10_000 + 5_000) / 200 = 75 units; 10 s: -10_000 / 200; 60 s: the buy's 200 units only.
    assert aapl["markouts"] == {"1s": 0.0075, "10s": -0.005, "60s": 0.02}
    assert msft["markouts"] == {"1s": -0.005, "10s": -0.005, "60s": 0.01}
    assert (aapl["refusals"], msft["refusals"]) == ({"MAX_LONG": 2}, {"TICK": 1})


def test_a_position_without_a_mid_is_marked_at_its_last_fill():
    """No equity point at all: MSFT's short 50 is marked at its own fill, $200.00, so only AAPL's
    round trip counts: $3.00 gross; fees -$0.25; no curve to take a Sharpe or drawdown of."""
    r = results(hand_day(equity=[]))
    assert (r["pnl_gross"], r["pnl_net"], r["sharpe"], r["max_drawdown"]) == (3.00, 3.25, None, 0.0)
    # A last point without MSFT: the same mark for MSFT, AAPL's mid there does not matter (flat).
    r = results(hand_day(equity=[EquityPoint(END, {"AAPL": 1_234_500.0})]))
    assert (r["pnl_gross"], r["pnl_net"]) == (3.00, 3.25)


def test_a_last_interval_shorter_than_a_minute_is_not_a_return():
    """A fourth point 7 ms after the third (the end of the day): its change is not a per-minute return,
    so the Sharpe stays that of the three full minutes; the P&L totals do count it."""
    record = hand_day(end_ns=END + 7_000_000)
    record.equity.append(EquityPoint(END + 7_000_000, {"AAPL": 1_000_000.0, "MSFT": 2_000_000.0}))
    r = results(record)
    assert r["sharpe"] == pytest.approx(annualised([0.70, 2.05, -0.045]), abs=1e-4)
    # MSFT marked at $200.00 now: gross 30_000 + 0 = $3.00, net 3.00 + 0.25 = $3.25
    assert (r["pnl_gross"], r["pnl_net"]) == (3.00, 3.25)


def test_an_empty_day():
    r = results(BacktestRecord(day_file="empty.itch", symbols=("AAPL",), strategy="m:C", seed=0))
    assert r["orders"] == 0 and r["fills"] == 0 and r["msgs_per_s"] is None
    assert (r["pnl_gross"], r["pnl_net"], r["fees"], r["sharpe"], r["max_drawdown"]) == (0.0, 0.0, 0.0, None, 0.0)
    assert r["markouts"] == {"1s": None, "10s": None, "60s": None}
    aapl = r["symbols"]["AAPL"]
    assert (aapl["fill_ratio"], aapl["maker_share"], aapl["avg_inventory"], aapl["max_inventory"]) == (None, None, 0.0, 0)


def test_a_symbol_only_a_fill_names_is_reported_too():
    fill = BacktestFill(START + 5 * S, "SPY", "B", 10, 4_000_000, "R", 30, 9, {})
    r = results(hand_day(fills=hand_day().fills + [fill]))
    assert list(r["symbols"]) == ["AAPL", "MSFT", "SPY"]
    assert r["symbols"]["SPY"]["fills"] == 1 and r["symbols"]["SPY"]["orders"] == 0
