"""Duplicate detection (SEC 15c3-5): a client order id used twice, and one order sent over and over.

* ``seen_client_ids``: every client order id risk approved today (and every open order of a
  state rebuild). A second NEW or REPLACE with one of them is DUPLICATE_CLIENT_ID. The set
  lives for the process: after a restart only the open orders' ids are known again, and the
  OMS's own duplicate check is the backstop for older ones.
* identical orders: NEW orders with the same symbol, side, shares and price share one sliding
  window; more than ``max_identical`` of them inside ``window_ns`` is REPEATED_ORDER (a
  strategy stuck in a loop). Keys whose last order left the window are pruned by the slow path.
"""
from __future__ import annotations

from .rate import SlidingWindow


def order_key(symbol_id: int, side: int, shares: int, price: int) -> tuple:
    """The identity of an 'identical' order (a tuple hashes faster than a packed big int)."""
    return symbol_id, side, shares, price


class DuplicateFilter:
    __slots__ = ("seen_client_ids", "identical", "max_identical", "window_ns")

    def __init__(self, max_identical: int, window_ns: int):
        self.seen_client_ids: set[int] = set()
        self.identical: dict[tuple, SlidingWindow] = {}
        self.max_identical = max_identical
        self.window_ns = window_ns

    def is_repeated(self, key: tuple, now: int) -> bool:
        window = self.identical.get(key)
        return window is not None and window.full(now)

    def record_order(self, key: tuple, now: int) -> None:
        window = self.identical.get(key)
        if window is None:
            window = self.identical[key] = SlidingWindow(self.max_identical, self.window_ns)
        window.record(now)

    def prune(self, now: int) -> int:
        """Forget identical-order windows with nothing inside them any more; returns how many."""
        stale = [key for key, w in self.identical.items()
                 if now - w.times[w.next_index - 1] >= w.window_ns]
        for key in stale:
            del self.identical[key]
        return len(stale)

    def reconfigure(self, max_identical: int, window_ns: int) -> None:
        """New limits (reload): existing windows are resized, keeping their recent orders."""
        self.max_identical = max_identical
        self.window_ns = window_ns
        for key, window in list(self.identical.items()):
            self.identical[key] = window.resized(max_identical, window_ns)
