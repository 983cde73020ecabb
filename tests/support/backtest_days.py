"""Small days and settings for the backtest's tests: hand-made ITCH days, a recorded simulated-exchange
day (cached per session), a probe strategy that writes down what it saw, and the setup built from them."""
from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from appliance.backtest import report
from appliance.backtest.engine import Backtest, BacktestSetup
from appliance.config.instruments import parse_instruments
from appliance.replay.latency import Latency
from appliance.risk.limits import parse_limits
from appliance.risk.paper_market import limits_document
from appliance.strategy.api import Strategy
from appliance.strategy.fees import NO_FEES, FeeSchedule
from appliance.wire.dayfile import DayFileWriter

import yaml

SYMBOLS = ("AAPL", "MSFT")
LOC = {"AAPL": 1, "MSFT": 2}
PRICES = {"AAPL": 1_900_000, "MSFT": 4_200_000}
T0 = 34_200_000_000_000            # 09:30:00 (ns since midnight)
MS = 1_000_000
S = 1_000_000_000


def instruments(symbols=SYMBOLS):
    return parse_instruments("version: 1\ninstruments:\n" + "".join(
        f"  - {{symbol: {s}, tick: 0.01, round_lot: 100}}\n" for s in symbols), "test-instruments.yaml")


def limits(symbols=SYMBOLS, **global_overrides):
    document = limits_document(symbols, **global_overrides)
    return parse_limits(yaml.safe_dump(document), symbols, "test-limits.yaml", instruments=instruments(symbols))


def setup(day_file, strategy_class, parameters=None, *, symbols=SYMBOLS, latency=None, fees=NO_FEES, **options):
    return BacktestSetup(day_file=str(day_file), strategy_spec=f"tests:{strategy_class.__name__}",
                         strategy_class=strategy_class, parameters=parameters if parameters is not None else {},
                         limits=limits(symbols), instruments=instruments(symbols), symbols=tuple(symbols),
                         traded=tuple(symbols), fees=fees, latency=latency or Latency.zero(), **options)


FEES = FeeSchedule({"A": -20, "R": 30}, 30, source="test")     # -0.0020 / 0.0030 dollars per share


# ------------------------------------------------------------------ hand-made days

class Day:
    """An ITCH day written message by message (``add``, ``execute``...), stamps in ns since midnight."""

    def __init__(self, path: Path, symbols=SYMBOLS, ts: int = T0):
        self.path = Path(path)
        self.writer = DayFileWriter(self.path)
        self.next_ref = 1
        self.message("S", 0, ts, event_code="O")
        for symbol in symbols:
            self.message("R", LOC[symbol], ts, stock=symbol, market_category="Q", financial_status_indicator="N",
                         round_lot_size=100, round_lots_only="N", issue_classification="C", issue_sub_type="",
                         authenticity="P", short_sale_threshold_indicator="N", ipo_flag=" ",
                         luld_reference_price_tier="1", etp_flag="N", etp_leverage_factor=0, inverse_indicator="N")

    def message(self, kind, locate, ts, **fields):
        self.writer.write({"type": kind, "stock_locate": locate, "tracking_number": 0, "timestamp": ts, **fields})

    def add(self, symbol, side, shares, price, ts) -> int:
        ref = self.next_ref
        self.next_ref += 1
        self.message("A", LOC[symbol], ts, order_reference_number=ref, buy_sell_indicator=side, shares=shares,
                     stock=symbol, price=price)
        return ref

    def execute(self, symbol, ref, shares, ts):
        self.message("E", LOC[symbol], ts, order_reference_number=ref, executed_shares=shares, match_number=ts)

    def delete(self, symbol, ref, ts):
        self.message("D", LOC[symbol], ts, order_reference_number=ref)

    def close(self, ts) -> Path:
        self.message("S", 0, ts, event_code="C")
        self.writer.close()
        return self.path


def two_sided_day(path, *, minutes: int = 3) -> Path:
    """AAPL quoted 189.99 x 190.01 from 09:30, the bid stepping up a cent at 09:30:00.5 and back every
    second (a known mid at every second), MSFT quoted 419.99 x 420.01; ``minutes`` long."""
    day = Day(path)
    bid = day.add("AAPL", "B", 500, 1_899_900, T0 + 1 * MS)
    day.add("AAPL", "S", 500, 1_900_100, T0 + 1 * MS)
    day.add("MSFT", "B", 500, 4_199_900, T0 + 1 * MS)
    day.add("MSFT", "S", 500, 4_200_100, T0 + 1 * MS)
    for second in range(minutes * 60):
        t = T0 + second * S + 500 * MS
        up = day.add("AAPL", "B", 100, 1_900_000, t)
        day.delete("AAPL", up, t + 400 * MS)
    del bid
    return day.close(T0 + minutes * 60 * S)


# ------------------------------------------------------------------ a recorded simulated-exchange day

_RECORDED: dict[tuple, Path] = {}


def recorded_day(directory: Path, operations: int = 4000, seed: int = 3) -> Path:
    """A day of the simulated exchange's background flow on AAPL and MSFT, one operation every 25 ms
    (100 s for 4000 operations), written offline (``appliance.sim.recorded_day``); kept for the session."""
    from appliance.sim.recorded_day import record_day
    key = (operations, seed)
    if key not in _RECORDED or not _RECORDED[key].exists():
        _RECORDED[key] = record_day(directory, PRICES, operations, seed=seed, step_ns=25 * MS)
    return _RECORDED[key]


# ------------------------------------------------------------------ a probe strategy

class Probe(Strategy):
    """Writes down every callback with the clock and what it saw; ``parameters["orders"]``: a list of
    (second of the day's first book, symbol, side, shares, price, tif) to send on the first book at or
    after that many ns since 09:30."""

    seen: list = []

    def __init__(self, parameters):
        super().__init__(parameters)
        self.plan = list(parameters.get("orders", ()))
        Probe.seen = self.events = []

    def _note(self, *what):
        self.events.append((self.clock.now_ns(),) + what)

    def on_book(self, book):
        self._note("book", book.symbol, self.clock.event_exchange_ns, book.bid_price, book.ask_price)
        while self.plan and self.clock.now_ns() - self.day_start() >= self.plan[0][0]:
            _, symbol, side, shares, price, tif = self.plan.pop(0)
            if side == "B":
                self.buy(symbol, shares, price, tif)
            else:
                self.sell(symbol, shares, price, tif)

    def day_start(self):
        midnight = int(datetime.datetime(2026, 1, 5, tzinfo=datetime.timezone.utc).timestamp()) * S
        return midnight + T0

    def on_order_accepted(self, order):
        self._note("accepted", order.client_order_id)

    def on_fill(self, order, fill):
        self._note("fill", order.client_order_id, fill.shares, fill.price, self.clock.event_exchange_ns)

    def on_order_rejected(self, order, source, reason):
        self._note("rejected", order.client_order_id, int(source), int(reason))

    def on_order_canceled(self, order):
        self._note("canceled", order.client_order_id)


def reports_both_ways(run_setup: BacktestSetup) -> list:
    """(report document as sorted JSON, record) of the run with the compiled venue, then with the Python
    reference; wall time zeroed so the documents compare byte for byte."""
    documents = []
    for compiled in (True, False):
        bt = Backtest(dataclasses.replace(run_setup, venue_compiled=compiled))
        assert bt.venue.compiled is compiled
        record = bt.run()
        record.seconds = 1.0
        documents.append((json.dumps(report.document(record), sort_keys=True), record))
    return documents
