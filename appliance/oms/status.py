"""What the OMS shows the other processes in shared memory: the positions table's rows and its
control words (``oms_ready``, ``oms_session_up``, ``oms_open_orders``).

A fill or a reject marks its symbol changed (the registry's ``changed`` callback); the agent
writes the changed rows once per duty cycle, not once per event. Every word is written only
when its value changes.
"""
from __future__ import annotations

from appliance.oms.gate import GATE_OPEN


class OmsStatus:
    def __init__(self, control, positions_table, n_symbols: int, open_orders_counter):
        self.control = control
        self.positions_table = positions_table
        self.orders = None                       # the registry, once built (``attach``)
        self.dirty = [False] * n_symbols
        self.dirty_ids: list[int] = []           # the symbols changed since the last flush
        self._open_orders_counter = open_orders_counter
        self._open_orders_published = -1
        self._ready_published = 0
        control.set("oms_ready", 0)
        control.set("oms_session_up", 0)

    def attach(self, orders) -> None:
        self.orders = orders

    def changed(self, symbol_id: int) -> None:
        """The registry's ``changed`` callback: the symbol's row is written with the next flush."""
        if not self.dirty[symbol_id]:
            self.dirty[symbol_id] = True
            self.dirty_ids.append(symbol_id)

    def flush(self, now_ns: int) -> None:
        for sid in self.dirty_ids:
            self.dirty[sid] = False
            self.publish_position(sid, now_ns)
        self.dirty_ids.clear()
        self.publish_open_orders()

    def publish_position(self, sid: int, now_ns: int) -> None:
        p = self.orders.positions
        self.positions_table.publish(sid, p.position[sid], p.cost_basis[sid], p.realized_pnl[sid], p.orders_sent[sid],
                                     p.fills[sid], p.filled_shares[sid], p.rejects[sid], p.open_orders[sid], now_ns)

    def publish_ready(self, gate) -> None:
        """``oms_ready``: new orders can leave now, as far as the OMS knows (the gate's own conditions:
        journal, no sequence gap, recovered, session logged in with its replay drained)."""
        ready = 1 if gate.local_reason == GATE_OPEN else 0
        if ready != self._ready_published:
            self._ready_published = ready
            self.control.set("oms_ready", ready)

    def publish_open_orders(self) -> None:
        count = self.orders.open_orders
        if count != self._open_orders_published:
            self._open_orders_published = count
            self.control.set("oms_open_orders", count)
            self._open_orders_counter.set(count)

    def set_session_up(self, up: bool) -> None:
        self.control.set("oms_session_up", 1 if up else 0)

    def close(self) -> None:
        """Whatever happened, the others must not think this OMS can take orders."""
        self.control.set("oms_ready", 0)
        self.control.set("oms_session_up", 0)
