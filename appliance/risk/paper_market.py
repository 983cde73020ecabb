"""A paper market: the market-state table in ordinary memory, for the benchmark and tests of the check set.

``RiskEngine`` reads the market-state table through a ``MarketStateReader``; here that reader
and its writer sit on a ``bytearray`` laid out exactly like the shared table (same seqlock,
same record), so the checks run the code they run in production without a segment in /dev/shm.
"""
from __future__ import annotations

from appliance.runtime.layout import Layout, parse_layout
from appliance.runtime.market_state import MarketStateReader, MarketStateWriter

TRADING = ord("T")


def symbols_layout(symbols) -> Layout:
    """The smallest valid layout that declares ``symbols`` (and so a market-state table)."""
    listed = ", ".join(symbols)
    text = f"""
version: 1
name: risk-paper-market
symbols: [{listed}]
segments: [{{name: main, backing: 4k, mode: "0600"}}]
tables:
  - {{name: counters, kind: counters, segment: main, slots_per_process: 8}}
  - {{name: processes, kind: processes, segment: main}}
  - {{name: market_state, kind: market_state, segment: main}}
rings: []
processes: [{{name: risk, agent: "appliance.risk.agent:RiskAgent", idle: {{strategy: sleep}}}}]
"""
    return parse_layout(text, "<risk paper market>")


class PaperMarket:
    """The market-state table of ``symbols`` in a bytearray: ``reader`` for the engine, ``quote`` to change it."""

    def __init__(self, symbols):
        self.layout = symbols_layout(symbols)
        self.symbols = self.layout.symbols
        table = self.layout.table_of_kind("market_state")
        self.buffer = bytearray(table.offset + table.slots * table.slot_size)
        self.writer = MarketStateWriter(self.buffer, self.layout)
        self.reader = MarketStateReader(self.buffer, self.layout)
        self.sequence = 0

    def quote(self, symbol_id: int, bid: int, ask: int, last: int = 0, *, flags: int = 0,
              trading_state: int = TRADING, bid_shares: int = 100, ask_shares: int = 100) -> None:
        """Publish one symbol's best bid/ask (0: none), last trade, flags and trading state byte."""
        self.sequence += 1
        self.writer.publish(symbol_id, bid, bid_shares if bid else 0, ask, ask_shares if ask else 0, last,
                            100 if last else 0, flags, trading_state, self.sequence, self.sequence, self.sequence)


def limits_document(symbols, **global_overrides) -> dict:
    """A limits document (the YAML's shape, as a dict) with one sector and roomy limits for ``symbols``."""
    document = {
        "version": 1,
        "global": {"capital": 10_000_000, "max_gross_notional": 5_000_000, "max_net_notional": 5_000_000,
                   "max_leverage": 1.0, "max_daily_loss": 50_000, "max_drawdown": 75_000,
                   "max_messages_per_second": 1000, "max_open_orders": 100, "max_identical_orders": 10},
        "sectors": {"ALL": {"max_gross_notional": 5_000_000}},
        "symbol_defaults": {"sector": "ALL", "max_shares": 1000, "max_notional": 1_000_000, "tick": 0.01,
                            "collar_pct": 5, "max_long": 2000, "max_short": 2000},
        "symbols": {s: {} for s in symbols},
    }
    document["global"].update(global_overrides)
    return document
