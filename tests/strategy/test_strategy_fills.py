"""Fills with their facts: the Fill a strategy gets from an ExecutionReport, its fee from the fee
schedule (and the schedule file's errors), broken trades, and the positions view's average cost,
unrealized and net P&L, each against numbers computed by hand."""
from __future__ import annotations

import pytest

from appliance.messages.catalog import BOOK_FLAG_STALE
from appliance.messages.codes import ExecEvent, Side
from appliance.oms.positions import PositionLedger
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import Fill, OrderState, Strategy
from appliance.strategy.config import StrategyConfig, StrategyConfigError, parse_strategy_params
from appliance.strategy.fees import NO_FEES, FeeSchedule
from appliance.strategy.loader import load_fee_schedule, load_strategy
from strategy_harness import SYMBOLS, Harness, strategy_layout

E = ExecEvent
SCHEDULE = FeeSchedule({"A": -2000, "R": 3000, "J": 0}, 3500, {"SPY": {"A": -2500}}, source="test")


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


class Recording(Strategy):
    def __init__(self, parameters=None):
        super().__init__(parameters)
        self.fills: list = []
        self.broken: list = []

    def on_fill(self, order, fill):
        self.fills.append((order, fill, order.state, order.leaves, order.filled))

    def on_fill_broken(self, order, fill):
        self.broken.append((order, fill, None if order is None else order.filled))


# ---------------------------------------------------------------------------------------- the fee schedule

def test_maker_rebate_taker_fee_other_flags_and_symbol_overrides():
    fee = SCHEDULE.fee
    assert fee("AAPL", "A", 100, 1_900_000) == -2000         # -$0.0020 x 100 = -$0.20 = -2000 price units
    assert fee("AAPL", "R", 100, 1_900_000) == 3000          # $0.0030 x 100 = $0.30
    assert fee("AAPL", "J", 100, 1_900_000) == 0
    assert fee("AAPL", "O", 100, 1_900_000) == fee("AAPL", "", 100, 1) == fee("AAPL", "?", 100, 1) == 3500
    assert fee("SPY", "A", 100, 5_000_000) == -2500 and fee("SPY", "R", 100, 5_000_000) == 3000   # the rest: default
    assert NO_FEES.fee("AAPL", "R", 1_000_000, 1_900_000) == 0


def test_a_fee_is_rounded_to_the_nearest_price_unit_halves_up():
    schedule = FeeSchedule({"A": -50, "R": 50}, 75)            # 0.5 and 0.75 of a price unit per share
    assert schedule.fee("X", "R", 1, 1) == 1                   # +0.5 -> 1: a half-unit charge is charged
    assert schedule.fee("X", "A", 1, 1) == 0                   # -0.5 -> 0: a half-unit rebate is not paid
    assert schedule.fee("X", "O", 1, 1) == 1 and schedule.fee("X", "A", 3, 1) == -1     # 0.75 -> 1, -1.5 -> -1
    assert schedule.rate("X", "R") == 50 and schedule.rate("X", "k") == 75


def test_the_shipped_schedule_loads_against_the_layout_symbols():
    symbols = tuple(load_layout("shm_layout.yaml").symbols)
    schedule = load_fee_schedule("config/fees.yaml", symbols)
    assert schedule.rate("AAPL", "A") == -2000 and schedule.rate("SPY", "A") == -2500
    assert schedule.fee("AAPL", "R", 100, 1_900_000) == 3000


@pytest.mark.parametrize("text, where, reason", [
    ("default: {A: -0.002, R: 0.003}\n", "default.other", "missing required key"),
    ("default: {A: -0.002, R: 0.003, other: 0.003, Q: 0.1}\n", "1: default.Q", "unknown key"),
    ("default:\n  A: -0.002\n  R: 0.0030001\n  other: 0\n", "3: default.R", "more than 6 decimals"),
    ("default:\n  A: -0.002\n  R: abc\n  other: 0\n", "3: default.R", "'abc' is not a decimal number"),
    ("default:\n  A: -0.002\n  R: 2\n  other: 0\n", "3: default.R", "must be -1..1 dollars per share"),
    ("default:\n  A: true\n  R: 0\n  other: 0\n", "2: default.A", "expected a number of dollars per share"),
    ("default:\n  A: -0.002\n  R: 0.003\n  other: 0\n  0: 0\n", "5: default.0", "quote it ('0')"),
    ("default: {A: 0, R: 0, other: 0}\nsymbols:\n  IBM: {A: 0}\n", "3: symbols.IBM", "not a layout symbol"),
    ("default: {A: 0, R: 0, other: 0}\nsymbols:\n  AAPL: {other: 0}\n", "symbols.AAPL.other",
     "the schedule's (default.other)"),
    ("default: {A: 0, R: 0, other: 0}\nsymbols: [AAPL]\n", "symbols", "expected a mapping of symbol to rates"),
    ("default: {A: 0, R: 0, other: 0}\ndefault: {A: 0, R: 0, other: 0}\n", "2: default", "duplicate key"),
    ("fees: {A: 0}\n", "fees", "unknown key"),
    ("", "<top>", "empty"),
    ("default: [1, 2\n", "", "not valid YAML"),
])
def test_a_bad_fee_file_names_file_key_line_and_reason(tmp_path, text, where, reason):
    path = tmp_path / "fees.yaml"
    path.write_text(text)
    with pytest.raises(StrategyConfigError) as caught:
        load_fee_schedule(str(path), tuple(SYMBOLS))
    message = str(caught.value)
    assert message.startswith(str(path)) and where in message and reason in message, message


def test_the_strategy_process_takes_its_schedule_from_its_params(tmp_path):
    (tmp_path / "fees.yaml").write_text("default: {A: -0.001, R: 0.002, other: 0.002}\n")
    config = parse_strategy_params({"strategy": "appliance.strategy.market_maker:MarketMaker",
                                    "strategy_id": 1, "parameters_file": "config/strategy.yaml",
                                    "fees_file": "fees.yaml"}, layout_symbols=("AAPL", "MSFT", "SPY", "QQQ", "TSLA"))
    loaded = load_strategy(config, layout_path=str(tmp_path / "layout.yaml"),
                           layout_symbols=("AAPL", "MSFT", "SPY", "QQQ", "TSLA"))
    assert loaded.fees.rate("AAPL", "R") == 2000 and loaded.fees.source == str(tmp_path / "fees.yaml")
    missing = StrategyConfig(strategy="appliance.strategy.market_maker:MarketMaker", strategy_id=1,
                             parameters_file="config/strategy.yaml", fees_file="nowhere.yaml")
    with pytest.raises(StrategyConfigError, match=r"fees_file: no such file: nowhere.yaml"):
        load_strategy(missing, layout_symbols=("AAPL", "MSFT", "SPY", "QQQ", "TSLA"))
    with pytest.raises(StrategyConfigError, match=r"fees_file: expected a string, got an integer"):
        parse_strategy_params({"strategy": "a:B", "strategy_id": 1, "fees_file": 3})


# ---------------------------------------------------------------------------------------- a fill's facts

def test_a_fill_carries_the_venue_s_facts_and_its_fee_and_the_view_is_updated_first(memory):
    h = Harness(memory, Recording, fees=SCHEDULE)
    cid = h.strategy.buy("SPY", 300, 5_000_000)
    h.report(E.ACCEPTED, cid, "SPY", shares=300, price=5_000_000, leaves=300)
    h.report(E.EXECUTED, cid, "SPY", shares=100, price=5_000_000, leaves=200, position=100, match=424_242,
             liquidity="A", t_exchange_ns=1_764_000_000_123_456_789, t_rx_ns=1_764_000_000_123_999_000)
    h.report(E.EXECUTED, cid, "SPY", shares=200, price=4_999_900, leaves=0, position=300, match=424_243,
             liquidity="R", t_exchange_ns=1_764_000_001_000_000_000, t_rx_ns=1_764_000_001_000_500_000)
    (order, first, state1, leaves1, filled1), (_, second, state2, leaves2, filled2) = h.strategy.fills
    assert type(first) is Fill and first == (cid, "SPY", Side.BUY, 100, 5_000_000, 200, "A", -2500, 424_242,
                                             1_764_000_000_123_456_789, 1_764_000_000_123_999_000)
    assert first.added_liquidity and not first.removed_liquidity and first.liquidity_name == "added"
    assert first.is_buy and first.notional == 500_000_000
    assert (state1, leaves1, filled1) == (OrderState.LIVE, 200, 100)
    assert (second.liquidity, second.fee, second.leaves, second.match_number) == ("R", 6000, 0, 424_243)
    assert second.removed_liquidity and (state2, leaves2, filled2) == (OrderState.FILLED, 0, 300)
    assert h.host.positions.fees("SPY") == -2500 + 6000 and h.host.positions.bought("SPY") == 300
    with pytest.raises(AttributeError):
        first.fee = 0                                          # immutable
    assert not hasattr(first, "__dict__")


def test_a_fill_without_a_liquidity_flag_pays_the_other_rate(memory):
    h = Harness(memory, Recording, fees=SCHEDULE)
    cid = h.strategy.sell("AAPL", 100, 1_900_000)
    h.report(E.EXECUTED, cid, side=Side.SELL, shares=100, price=1_900_000, leaves=0, position=-100, match=9)
    fill = h.strategy.fills[0][1]
    assert (fill.liquidity, fill.fee, fill.liquidity_name, fill.side) == ("", 3500, "none", Side.SELL)
    assert h.host.positions.sold("AAPL") == 100


# ---------------------------------------------------------------------------------------- broken trades

def test_a_broken_trade_hands_back_the_fill_it_undoes(memory):
    h = Harness(memory, Recording, fees=SCHEDULE)
    cid = h.strategy.buy("AAPL", 100, 1_900_000)
    h.report(E.EXECUTED, cid, shares=60, price=1_900_000, leaves=40, position=60, match=77, liquidity="R")
    h.report(E.EXECUTED, cid, shares=40, price=1_900_000, leaves=0, position=100, match=78, liquidity="A")
    fill = h.strategy.fills[0][1]
    assert h.host.positions.fees("AAPL") == 1800 - 800
    # the OMS's BROKEN: the undone fill's shares, price, match and flag; the position after the break
    h.report(E.BROKEN, cid, shares=60, price=1_900_000, leaves=0, position=40, match=77, liquidity="R",
             reason=ord("E"))
    (order, undone, filled), = h.strategy.broken
    assert undone is fill and order.client_order_id == cid and filled == 40 and order.filled == 40
    assert h.host.positions.fees("AAPL") == -800 and h.host.positions.bought("AAPL") == 40
    assert h.host.positions["AAPL"] == 40 and h.host.stats.broken == 1


def test_a_broken_trade_of_a_fill_this_process_never_saw_is_rebuilt_from_the_report(memory):
    h = Harness(memory, Recording, fees=SCHEDULE)          # e.g. the fill came before a restart
    h.report(E.BROKEN, 12345, "MSFT", side=Side.SELL, shares=50, price=4_200_000, position=0, match=5,
             liquidity="A", t_exchange_ns=10, t_rx_ns=20)
    (order, fill, _), = h.strategy.broken
    assert order is None
    assert fill == (12345, "MSFT", Side.SELL, 50, 4_200_000, 0, "A", -1000, 5, 10, 20)
    assert h.host.positions.fees("MSFT") == 1000 and h.host.positions.sold("MSFT") == -50


def test_a_broken_self_match_hands_back_the_fill_of_the_order_it_names(memory):
    h = Harness(memory, Recording, fees=SCHEDULE)
    buy, sell = h.strategy.buy("AAPL", 100, 1_900_000), h.strategy.sell("AAPL", 100, 1_900_000)
    h.report(E.EXECUTED, buy, shares=100, price=1_900_000, leaves=0, position=100, match=31, liquidity="A")
    h.report(E.EXECUTED, sell, side=Side.SELL, shares=100, price=1_900_000, leaves=0, position=0, match=31,
             liquidity="R")
    bought, sold = h.strategy.fills[0][1], h.strategy.fills[1][1]
    h.report(E.BROKEN, buy, shares=100, price=1_900_000, position=-100, match=31, liquidity="A")
    assert h.strategy.broken[0][1] is bought and h.host.positions.sold("AAPL") == 100
    h.report(E.BROKEN, sell, side=Side.SELL, shares=100, price=1_900_000, position=0, match=31, liquidity="R")
    assert h.strategy.broken[1][1] is sold and h.host.positions.fees("AAPL") == 0


# ---------------------------------------------------------------------------------------- positions and P&L

def _trade(h, ledger, cid, side, shares, price, flag, leaves=0):
    """One fill as the OMS reports it: the ledger's position, cost and realized P&L after it."""
    ledger.fill(0, shares if side == Side.BUY else -shares, price)
    h.report(E.EXECUTED, cid, side=side, shares=shares, price=price, leaves=leaves, liquidity=flag,
             position=ledger.position[0], cost=ledger.cost_basis[0], realized=ledger.realized_pnl[0])


def test_average_cost_unrealized_total_and_net_pnl_long_partial_flip_short_and_flat(memory):
    h = Harness(memory, Recording, fees=SCHEDULE)
    p, ledger = h.host.positions, PositionLedger(len(SYMBOLS))
    h.book("AAPL", [(100_000, 500)], [(100_200, 500)])                  # $10.00 / $10.02: mark = mid $10.01
    assert p.mark("AAPL") == 100_100 and p.unrealized_pnl("AAPL") == 0 and p.avg_price("AAPL") == 0.0

    buy = h.strategy.buy("AAPL", 150, 100_300)
    _trade(h, ledger, buy, Side.BUY, 100, 100_000, "A", leaves=50)       # long 100 @ $10.00 (partial)
    assert p.avg_price("AAPL") == 100_000.0
    assert p.unrealized_pnl("AAPL") == 100 * 100_100 - 100 * 100_000 == 10_000        # $1.00
    _trade(h, ledger, buy, Side.BUY, 50, 100_300, "R")                   # + 50 @ $10.03: 150 @ $10.01
    assert p.position("AAPL") == 150 and p.cost_basis("AAPL") == 15_015_000
    assert p.avg_price("AAPL") == 100_100.0 and p.unrealized_pnl("AAPL") == 0

    sell = h.strategy.sell("AAPL", 200, 100_500)
    _trade(h, ledger, sell, Side.SELL, 200, 100_500, "R")                # sell 200 @ $10.05: through zero
    assert p.realized_pnl("AAPL") == 150 * 100_500 - 15_015_000 == 60_000              # $6.00 on the 150
    assert p.position("AAPL") == -50 and p.avg_price("AAPL") == 100_500.0              # short 50 @ $10.05
    assert p.unrealized_pnl("AAPL") == -50 * 100_100 + 50 * 100_500 == 20_000          # $2.00
    assert p.total_pnl("AAPL") == 80_000
    # fees: -$0.0020 x 100, $0.0030 x 50, $0.0030 x 200 = -$0.20 + $0.15 + $0.60, in price units
    assert p.fees("AAPL") == -2000 + 1500 + 6000 == 5500 and p.net_pnl("AAPL") == 80_000 - 5500

    h.book("AAPL", [(100_400, 500)], [(100_600, 500)])                  # the market moves: mid $10.05
    assert p.unrealized_pnl("AAPL") == 0 and p.total_pnl("AAPL") == 60_000

    cover = h.strategy.buy("AAPL", 50, 100_100)
    _trade(h, ledger, cover, Side.BUY, 50, 100_100, "A")                 # cover 50 @ $10.01: flat
    assert p.position("AAPL") == 0 and p.avg_price("AAPL") == 0.0 and p.unrealized_pnl("AAPL") == 0
    assert p.realized_pnl("AAPL") == 60_000 + 50 * 100_500 - 50 * 100_100 == 80_000
    assert p.fees("AAPL") == 5500 - 1000 and p.net_pnl("AAPL") == 80_000 - 4500


def test_the_mark_is_the_mid_of_a_good_book_else_the_last_trade_else_none(memory):
    h = Harness(memory, Recording, traded=["AAPL", "MSFT"], fees=SCHEDULE)
    p = h.host.positions
    cid = h.strategy.buy("AAPL", 100, 100_000)
    h.report(E.EXECUTED, cid, shares=100, price=100_000, leaves=0, position=100, cost=10_000_000)
    assert p.mark("AAPL") == 0 and p.unrealized_pnl("AAPL") is None and p.net_pnl("AAPL") is None  # no data yet
    h.book("AAPL", [(100_000, 100)], [], last=(99_900, 100))               # one side: the last trade
    assert p.mark("AAPL") == 99_900 and p.unrealized_pnl("AAPL") == -10_000
    h.book("AAPL", [(100_000, 100)], [(100_400, 100)], last=(99_900, 100), flags=BOOK_FLAG_STALE)
    assert p.mark("AAPL") == 99_900                                          # stale: not its mid
    h.book("AAPL", [(100_000, 100)], [(100_400, 100)], last=(99_900, 100))
    assert p.mark("AAPL") == 100_200 and p.total_pnl("AAPL") == 20_000
    assert p.mark("SPY") == 0 and p.unrealized_pnl("SPY") == 0             # not traded: no book; flat
    with pytest.raises(KeyError, match="unknown symbol 'IBM'"):
        p.avg_price("IBM")
