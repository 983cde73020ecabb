"""The positions table: one slot per symbol, written by the OMS alone under a seqlock.

What the OMS knows from the venue's execution reports: the signed position, its cost basis,
realized P&L, and per-symbol order, fill and reject counts. Unrealized P&L is not stored: a
reader marks ``position`` and ``cost_basis`` to the market-state table's prices itself.
Prices and P&L are in price units (4 implied decimals) times shares.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from appliance.messages.catalog import POSITION
from appliance.messages.codes import PRICE_SCALE
from appliance.runtime.layout import Layout
from appliance.runtime.seqlock import SeqlockReader, SeqlockWriter


@dataclass(frozen=True)
class PositionView:
    symbol_id: int
    symbol: str
    position: int
    cost_basis: int
    realized_pnl: int
    orders_sent: int
    fills: int
    filled_shares: int
    rejects: int
    open_orders: int
    t_update_ns: int

    def unrealized_pnl(self, mark_price: int) -> int:
        """Price units x shares, marked at ``mark_price`` (0: no mark, no unrealized P&L)."""
        if not mark_price or not self.position:
            return 0
        return self.position * mark_price - self.cost_basis

    def average_price(self) -> float:
        return self.cost_basis / self.position / PRICE_SCALE if self.position else 0.0


def _slot_offsets(layout: Layout) -> list[int]:
    table = layout.table_of_kind("positions")
    return [table.offset + i * table.slot_size for i in range(table.slots)]


class PositionsWriter(SeqlockWriter):
    def __init__(self, buffer, layout: Layout):
        super().__init__(buffer, _slot_offsets(layout), POSITION)
        self._symbol_bytes = [s.encode().ljust(8) for s in layout.symbols]

    def publish(self, symbol_id: int, position: int, cost_basis: int, realized_pnl: int, orders_sent: int,
                fills: int, filled_shares: int, rejects: int, open_orders: int, t_update_ns: int | None = None) -> None:
        self.write(symbol_id, self._symbol_bytes[symbol_id], position, cost_basis, realized_pnl, orders_sent, fills,
                   filled_shares, rejects, open_orders, time.time_ns() if t_update_ns is None else t_update_ns)


class PositionsReader(SeqlockReader):
    def __init__(self, buffer, layout: Layout):
        super().__init__(buffer, _slot_offsets(layout), POSITION, layout.symbols)
        self.symbols = layout.symbols

    def read(self, symbol_id: int) -> PositionView:
        _symbol, *values = self.read_raw(symbol_id)
        return PositionView(symbol_id, self.symbols[symbol_id], *values)

    def read_all(self) -> list[PositionView]:
        return [self.read(i) for i in range(len(self.offsets))]
