"""What the OMS tells strategy and risk: ExecutionReports on ``exec_to_strategy`` and
``exec_to_risk``, and the RiskSnapshot risk asks for (on ``exec_to_risk``) and a strategy asks for (on
``exec_to_strategy``: ``answer_strategy_snapshot``).

The one writer of ExecutionReports: every event of an order the registry holds (its ``report``
callback), and the OMS's own (a local reject, a cancel refused, an in-flight timeout), each with
the OMS's position, cost basis and realized P&L in the symbol after the event, and what only the
OMS knows of a fill: the venue's liquidity flag (OUCH Executed), on the EXECUTED and on the BROKEN
that undoes it. A full ring drops and counts: the OMS never waits on strategy or risk.
"""
from __future__ import annotations

import time

from appliance.messages.catalog import EXECUTION_REPORT, RISK_SNAPSHOT
from appliance.messages.codes import ALL_SYMBOLS, ExecEvent, SnapshotKind

_U32 = 0xFFFFFFFF


class ExecutionReports:
    def __init__(self, to_strategy, to_risk, positions, n_symbols: int, counters):
        self.to_strategy = to_strategy
        self.to_risk = to_risk
        self.positions = positions
        self.n_symbols = n_symbols
        self.t_rx_ns = 0                         # when the venue's message being applied arrived
        self._rings = ((to_strategy, counters.dropped_strategy), (to_risk, counters.dropped_risk))
        self._reports = counters.reports
        self._fills = counters.fills
        self._dropped_risk = counters.dropped_risk
        self._snapshots = counters.snapshots

    def report(self, event: int, order, shares: int, price: int, match: int = 0, reason: int = 0,
               source: int = 0, t_exchange_ns: int = 0, liquidity: int = 0) -> None:
        """An event of an order the registry holds (the registry's ``report`` callback)."""
        self.send(event, order.client_order_id, order.orig_client_order_id, order.strategy_id, order.symbol_id,
                  order.side, shares, price, exchange_order_ref=order.order_ref, match_number=match, reason=reason,
                  source=source, leaves_shares=max(0, order.leaves), t_exchange_ns=t_exchange_ns,
                  t_oms_rx_ns=self.t_rx_ns, liquidity_flag=liquidity)

    def send(self, event: int, client_order_id: int, orig_client_order_id: int, strategy_id: int, symbol_id: int,
             side: int, shares: int, price: int, *, exchange_order_ref: int = 0, match_number: int = 0,
             reason: int = 0, source: int = 0, leaves_shares: int = 0, t_exchange_ns: int = 0,
             t_oms_rx_ns: int = 0, liquidity_flag: int = 0) -> None:
        """One ExecutionReport to the strategy and to risk (zeros for the position of a symbol the
        layout does not list, whose id goes out as ALL_SYMBOLS when negative)."""
        if 0 <= symbol_id < self.n_symbols:
            positions = self.positions
            position, cost, realized = (positions.position[symbol_id], positions.cost_basis[symbol_id],
                                        positions.realized_pnl[symbol_id])
        else:
            position = cost = realized = 0
        values = (client_order_id, orig_client_order_id, exchange_order_ref, match_number, strategy_id,
                  symbol_id & _U32, event, side & 0xFF, reason & 0xFF, source, shares, price, leaves_shares, position,
                  cost, realized, t_exchange_ns, t_oms_rx_ns or time.time_ns(), liquidity_flag & 0xFF)
        pack = EXECUTION_REPORT.pack_into
        for ring, dropped in self._rings:
            offset = ring.claim()
            if offset < 0:
                dropped.inc()
                continue
            pack(ring.buffer, offset, *values)
            ring.commit()
        self._reports.inc()
        if event == ExecEvent.EXECUTED:
            self._fills.inc()

    def answer_snapshot(self, open_orders: list) -> bool:
        """A RiskSnapshot POSITION per symbol, ORDER per open order, then END, all on exec_to_risk
        (in order with the reports), or nothing while the ring has no room for all of them."""
        ring = self.to_risk
        n_symbols = self.n_symbols
        if ring.capacity - ring.depth() < n_symbols + len(open_orders) + 1:
            return False                                # wait for risk to drain the ring
        positions = self.positions
        now_ns = time.time_ns()
        pack, buffer, dropped = RISK_SNAPSHOT.pack_into, ring.buffer, self._dropped_risk
        records = [(0, 0, 0, sid, SnapshotKind.POSITION, 0, 0, 0, 0, positions.position[sid],
                    positions.cost_basis[sid], positions.realized_pnl[sid], now_ns) for sid in range(n_symbols)]
        records += [(order.client_order_id, order.orig_client_order_id, order.strategy_id, order.symbol_id & _U32,
                     SnapshotKind.ORDER, order.side, 0, max(0, order.leaves), order.price, 0, 0, 0, now_ns)
                    for order in open_orders]
        records.append((0, 0, 0, ALL_SYMBOLS, SnapshotKind.END, 0, 0, 0, 0, 0, 0, 0, now_ns))
        for values in records:
            offset = ring.claim()
            if offset < 0:
                dropped.inc()
                continue
            pack(buffer, offset, *values)
            ring.commit()
        self._snapshots.inc()
        return True

    def answer_strategy_snapshot(self, strategy_id: int, request_id: int, open_orders: list) -> bool:
        """The answer to a strategy's Action.SNAPSHOT on exec_to_strategy: a POSITION per symbol, an
        ORDER per open order of that strategy, then END carrying the request's client order id; every
        record names the strategy. Nothing while the ring has no room for all of them (False)."""
        ring = self.to_strategy
        mine = [order for order in open_orders if order.strategy_id == strategy_id]
        n_symbols = self.n_symbols
        if ring.capacity - ring.depth() < n_symbols + len(mine) + 1:
            return False
        positions = self.positions
        now_ns = time.time_ns()
        records = [(0, 0, strategy_id, sid, SnapshotKind.POSITION, 0, 0, 0, 0, positions.position[sid],
                    positions.cost_basis[sid], positions.realized_pnl[sid], now_ns) for sid in range(n_symbols)]
        records += [(order.client_order_id, order.orig_client_order_id, strategy_id, order.symbol_id & _U32,
                     SnapshotKind.ORDER, order.side, 0, max(0, order.leaves), order.price, 0, 0, 0, now_ns)
                    for order in mine]
        records.append((request_id, 0, strategy_id, ALL_SYMBOLS, SnapshotKind.END, 0, 0, 0, 0, 0, 0, 0, now_ns))
        pack, buffer = RISK_SNAPSHOT.pack_into, ring.buffer
        for values in records:
            offset = ring.claim()
            pack(buffer, offset, *values)
            ring.commit()
        self._snapshots.inc()
        return True
