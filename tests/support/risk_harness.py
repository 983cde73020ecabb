"""The risk engine in process on a paper market-state table, and short ways to send it intents and
reports: the risk tests' harness (tests/risk/test_risk_*.py). AAPL is quoted 189.99 / 190.01, so its
reference price (the mid) is 190.0000 (1,900,000 in price units)."""
from __future__ import annotations

import yaml

from appliance.messages.codes import TIF_DAY, Action, ExecEvent, Side
from appliance.risk.checks import RiskEngine
from appliance.risk.limits import parse_limits
from appliance.risk.paper_market import PaperMarket, limits_document

SYMBOLS = ["AAPL", "MSFT", "SPY"]
AAPL, MSFT, SPY = 0, 1, 2
REF = 1_900_000                      # $190.0000
NOW = 1_700_000_000_000_000_000
B, S, T = int(Side.BUY), int(Side.SELL), int(Side.SELL_SHORT)
NEW, REPLACE, CANCEL, CANCEL_ALL = (int(a) for a in (Action.NEW, Action.REPLACE, Action.CANCEL, Action.CANCEL_ALL))
DOLLAR = 10_000


class Harness:
    """An engine, its paper market, and short ways to send intents and reports."""

    def __init__(self, document: dict | None = None, *, ready: bool = True, symbols=SYMBOLS, instruments=None):
        self.market = PaperMarket(symbols)
        self.market.quote(AAPL, REF - 100, REF + 100)
        self.market.quote(MSFT, 4_199_900, 4_200_100)
        self.market.quote(SPY, 5_599_900, 5_600_100)
        document = document or limits_document(symbols)
        self.limits = parse_limits(yaml.safe_dump(document), symbols, "limits.yaml", instruments=instruments)
        self.engine = RiskEngine(self.limits, symbols, self.market.reader)
        self.engine.control.start(NOW)
        if ready:
            self.engine.mark_ready(NOW)
        self.next_id = 1000

    def new(self, shares=100, price=REF, side=B, symbol=AAPL, *, cid=None, tif=TIF_DAY, now=NOW, action=NEW,
            **flags) -> int:
        """``flags``: the intent's display, capacity, minimum_quantity, intermarket_sweep."""
        if cid is None:
            self.next_id += 1
            cid = self.next_id
        self.last_id = cid
        return self.engine.decide(action, cid, 0, symbol, side, shares, price, tif, 7, now, **flags)

    def replace(self, orig, shares, price=REF, side=B, symbol=AAPL, *, cid=None, now=NOW, **flags) -> int:
        if cid is None:
            self.next_id += 1
            cid = self.next_id
        self.last_id = cid
        return self.engine.decide(REPLACE, cid, orig, symbol, side, shares, price, TIF_DAY, 7, now, **flags)

    def cancel(self, orig, symbol=AAPL, side=B, now=NOW) -> int:
        self.next_id += 1
        return self.engine.decide(CANCEL, self.next_id, orig, symbol, side, 0, 0, TIF_DAY, 7, now)

    def report(self, event, cid, *, symbol=AAPL, side=B, shares=0, price=REF, leaves=0, position=0, cost=0,
               realized=0, orig=0, now=NOW) -> int:
        return self.engine.on_report(int(event), cid, orig, symbol, side, shares, price, leaves, position, cost,
                                     realized, 7, now)

    def snapshot(self, kind, cid, *, symbol=AAPL, side=B, leaves=0, price=REF, position=0, cost=0, realized=0,
                 orig=0, now=NOW) -> int:
        """One RiskSnapshot record from the OMS (``SnapshotKind``)."""
        return self.engine.on_snapshot(int(kind), cid, orig, symbol, side, leaves, price, position, cost, realized,
                                       7, now)

    def fill_position(self, position: int, price: int = REF, symbol=AAPL, realized=0) -> None:
        """The OMS says the symbol's position is ``position`` bought at ``price`` (a fill of an unknown order)."""
        self.report(ExecEvent.BROKEN, 1, symbol=symbol, position=position, cost=position * price, realized=realized)


def with_symbol(**overrides) -> dict:
    document = limits_document(SYMBOLS)
    document["symbol_defaults"].update(overrides)
    return document


def with_global(**overrides) -> dict:
    return limits_document(SYMBOLS, **overrides)
