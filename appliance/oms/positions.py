"""The OMS's positions per symbol id, from the fills the venue reported.

Per symbol id: signed shares, cost basis (signed sum of price x shares of the open position; the
average price is cost / position), realized P&L (price units x shares), and the tallies of the
shared positions table. The order registry (``orders.py``) applies fills here; the agent
publishes the rows and the ExecutionReports carry them.
"""
from __future__ import annotations

from appliance.messages.codes import PRICE_SCALE

I64_MAX = (1 << 63) - 1


def _saturated(value: int) -> int:
    """Clamped to the i64 range of the records and table that carry it."""
    return value if -I64_MAX <= value <= I64_MAX else (I64_MAX if value > 0 else -I64_MAX)


class PositionLedger:
    """Per symbol id: position, cost basis, realized P&L and the table's tallies (plain lists).

    Cost basis and realized P&L saturate at the i64 range of the ExecutionReport and the positions
    table: a venue message claiming billions of shares at the largest price must not stop the OMS."""

    def __init__(self, symbols: int):
        n = symbols
        self.position = [0] * n
        self.cost_basis = [0] * n
        self.realized_pnl = [0] * n
        self.orders_sent = [0] * n
        self.fills = [0] * n
        self.filled_shares = [0] * n
        self.rejects = [0] * n
        self.open_orders = [0] * n

    def fill(self, symbol_id: int, signed_shares: int, price: int) -> None:
        position = self.position[symbol_id]
        cost = self.cost_basis[symbol_id]
        if position and (position > 0) != (signed_shares > 0):
            closing = min(abs(signed_shares), abs(position))
            removed = cost * closing // abs(position)
            sign = 1 if position > 0 else -1
            self.realized_pnl[symbol_id] = _saturated(self.realized_pnl[symbol_id] + sign * closing * price - removed)
            cost -= removed
            position -= sign * closing
            rest = signed_shares + sign * closing            # what is left opens the other way
        else:
            rest = signed_shares
        if rest:
            position += rest
            cost += rest * price
        self.position[symbol_id] = position
        self.cost_basis[symbol_id] = _saturated(cost)

    def rebuild(self, symbol_id: int, fills) -> None:
        """Position, cost basis and realized P&L of a symbol from its fills ((signed shares, price), in
        order) alone: a broken trade's fill taken out of the day exactly (orders.py)."""
        self.position[symbol_id] = self.cost_basis[symbol_id] = self.realized_pnl[symbol_id] = 0
        for signed_shares, price in fills:
            self.fill(symbol_id, signed_shares, price)

    def average_price(self, symbol_id: int) -> float:
        position = self.position[symbol_id]
        return self.cost_basis[symbol_id] / position / PRICE_SCALE if position else 0.0
