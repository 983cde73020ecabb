"""The market-state table: one slot per symbol, written by the feed alone under a seqlock.

Readers (the risk gateway's price checks, shmtop, the exporter) never take a lock and never
make the writer wait: see ``seqlock.py`` for the protocol.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from appliance.messages.catalog import (
    BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED, BOOK_FLAG_STALE, MARKET_STATE,
)
from appliance.runtime.layout import Layout
from appliance.runtime.seqlock import SeqlockReader, SeqlockWriter, TornRead  # noqa: F401 (re-exported)

SEQLOCK_OFFSET = MARKET_STATE.offset_of["seqlock"]
FLAG_NAMES = ((BOOK_FLAG_STALE, "stale"), (BOOK_FLAG_CROSSED, "crossed"), (BOOK_FLAG_LOCKED, "locked"),
              (BOOK_FLAG_HALTED, "halted"), (BOOK_FLAG_INCONSISTENT, "inconsistent"))


@dataclass(frozen=True)
class MarketStateView:
    """One consistent copy of a symbol's slot."""
    symbol_id: int
    symbol: str
    bid_price: int
    bid_shares: int
    ask_price: int
    ask_shares: int
    last_trade_price: int
    last_trade_shares: int
    flags: int
    trading_state: str
    update_sequence: int
    t_exchange_ns: int
    t_update_ns: int

    @property
    def stale(self) -> bool:
        return bool(self.flags & BOOK_FLAG_STALE)

    @property
    def flag_names(self) -> list[str]:
        return [name for bit, name in FLAG_NAMES if self.flags & bit]


def _slot_offsets(layout: Layout) -> list[int]:
    table = layout.table_of_kind("market_state")
    return [table.offset + i * table.slot_size for i in range(table.slots)]


class MarketStateWriter(SeqlockWriter):
    """The feed's side. ``publish`` writes one symbol's slot; nothing else writes the table."""

    def __init__(self, buffer, layout: Layout):
        super().__init__(buffer, _slot_offsets(layout), MARKET_STATE)
        self.symbols = layout.symbols
        self._symbol_bytes = [s.encode().ljust(8) for s in self.symbols]

    def publish(self, symbol_id: int, bid_price: int, bid_shares: int, ask_price: int, ask_shares: int,
                last_trade_price: int, last_trade_shares: int, flags: int, trading_state: int,
                update_sequence: int, t_exchange_ns: int, t_update_ns: int) -> None:
        self.write(symbol_id, self._symbol_bytes[symbol_id], bid_price, bid_shares, ask_price, ask_shares,
                   last_trade_price, last_trade_shares, flags, trading_state, 0, 0, update_sequence,
                   t_exchange_ns, t_update_ns)


class MarketStateReader(SeqlockReader):
    """Any process's side: consistent copies, never blocking the writer."""

    def __init__(self, buffer, layout: Layout):
        super().__init__(buffer, _slot_offsets(layout), MARKET_STATE, layout.symbols)
        self.symbols = layout.symbols

    def read(self, symbol_id: int) -> MarketStateView:
        (symbol, bid_price, bid_shares, ask_price, ask_shares, last_price, last_shares, flags, state,
         _pad0, _pad1, update_sequence, t_exchange_ns, t_update_ns) = self.read_raw(symbol_id)
        return MarketStateView(symbol_id, self.symbols[symbol_id], bid_price, bid_shares, ask_price, ask_shares,
                               last_price, last_shares, flags, chr(state) if state else "", update_sequence,
                               t_exchange_ns, t_update_ns)

    def read_all(self) -> list[MarketStateView]:
        return [self.read(i) for i in range(len(self.offsets))]

    def age_ns(self, symbol_id: int, now_ns: int | None = None) -> int | None:
        """ns since the feed last wrote the slot; None if it never did."""
        t = self.read(symbol_id).t_update_ns
        return None if t == 0 else (now_ns if now_ns is not None else time.time_ns()) - t
