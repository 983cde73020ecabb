"""Writing OrderIntents to the strategy-to-risk ring, with back-pressure and never a lost intent.

An intent goes straight into the ring when it has room and nothing is queued ahead of it.
Otherwise it waits, in order, in a bounded queue that the agent flushes first on every duty
cycle (and it reads no book updates while the queue is not empty, so a full ring slows the
strategy down instead of growing the queue). Beyond the bound, new orders and replaces are
refused with ``BackPressure`` before anything is recorded; cancels are always queued (each
open order has at most one cancel on its way, so they are bounded by the open orders).
``t_strategy_out_ns`` is stamped when the intent actually enters the ring.
"""
from __future__ import annotations

import time
from collections import deque

from appliance.messages.catalog import ORDER_INTENT
from appliance.messages.codes import Action

_NEW, _REPLACE, _CANCEL_ALL = int(Action.NEW), int(Action.REPLACE), int(Action.CANCEL_ALL)
# The catalog's packer, header included, straight into the claimed slot (Record.pack_into without its wrapper).
_PACK = ORDER_INTENT.struct.pack_into
_TYPE, _VERSION, _SIZE = ORDER_INTENT.type_id, ORDER_INTENT.version, ORDER_INTENT.size


class IntentWriter:
    """The producer side of ``order_intents`` for one strategy id."""

    def __init__(self, ring, buffer, strategy_id: int, max_pending: int = 1024, clock_ns=time.time_ns):
        self.ring = ring
        self.buffer = buffer
        self.strategy_id = strategy_id
        self.max_pending = max_pending
        self.clock_ns = clock_ns
        self.pending: deque[tuple] = deque()
        self.written = 0             # intents in the ring
        self.queued = 0              # intents that had to wait (back-pressure episodes x intents)
        self.refused = 0             # BackPressure raised
        self.dropped_orders = 0      # queued new orders / replaces withdrawn when the strategy stopped
        self.last_action = 0         # of the latest intent accepted (written or queued)
        self.last_symbol_id = -1
        self._claim, self._commit = ring.claim, ring.commit

    def has_room(self) -> bool:
        """Whether a new order or replace can be accepted now (written or queued)."""
        return len(self.pending) < self.max_pending

    def emit(self, client_order_id: int, orig_client_order_id: int, symbol_id: int, action: int, side: int,
             shares: int, price: int, tif: int, t_rx_ns: int, t_feed_out_ns: int, display: int = 0,
             capacity: int = 0, minimum_quantity: int = 0, intermarket_sweep: int = 0) -> bool:
        """Write (True) or queue (False) one intent. The caller checked ``has_room`` for new orders.
        The OUCH flags (``display``, ``capacity``: the venue's bytes, 0 the default) were checked by the host."""
        if not self.pending:
            offset = self._claim()
            if offset >= 0:
                _PACK(self.buffer, offset, _TYPE, _VERSION, _SIZE, client_order_id, orig_client_order_id,
                      self.strategy_id, symbol_id, action, side, display, capacity, shares, price, tif,
                      minimum_quantity, intermarket_sweep, 0, 0, t_rx_ns, t_feed_out_ns, self.clock_ns())
                self._commit()
                self.written += 1
                self.last_action = action
                self.last_symbol_id = symbol_id
                return True
        self.last_action = action
        self.last_symbol_id = symbol_id
        self.pending.append((client_order_id, orig_client_order_id, symbol_id, action, side, shares, price, tif,
                             t_rx_ns, t_feed_out_ns, display, capacity, minimum_quantity, intermarket_sweep))
        self.queued += 1
        return False

    def flush(self) -> int:
        """Move queued intents into the ring, oldest first; returns how many went."""
        pending = self.pending
        ring, buffer, strategy_id = self.ring, self.buffer, self.strategy_id
        n = 0
        while pending:
            offset = ring.claim()
            if offset < 0:
                break
            (client_order_id, orig, symbol_id, action, side, shares, price, tif, t_rx_ns,
             t_feed_out_ns, display, capacity, minimum_quantity, intermarket_sweep) = pending.popleft()
            _PACK(buffer, offset, _TYPE, _VERSION, _SIZE, client_order_id, orig, strategy_id, symbol_id, action, side,
                  display, capacity, shares, price, tif, minimum_quantity, intermarket_sweep, 0, 0, t_rx_ns,
                  t_feed_out_ns, self.clock_ns())
            ring.commit()
            n += 1
        self.written += n
        return n

    def withdraw_new_orders(self) -> list[int]:
        """Fail closed when the strategy stops: queued new orders and replaces never leave.

        Returns their client order ids; queued cancels stay, in order."""
        kept: deque[tuple] = deque()
        withdrawn = []
        for intent in self.pending:
            if intent[3] in (_NEW, _REPLACE):
                withdrawn.append(intent[0])
            else:
                kept.append(intent)
        self.pending = kept
        self.dropped_orders += len(withdrawn)
        return withdrawn

    def last_was_cancel_all(self) -> bool:
        return self.last_action == _CANCEL_ALL and self.last_symbol_id == 0xFFFFFFFF
