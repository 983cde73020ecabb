"""What the feed writes: a BookUpdate on the feed-to-strategy ring and the symbol's market-state slot.

Both carry the same snapshot (top BOOK_DEPTH levels, trading state, last trade, flags, the
per-symbol update sequence). The ring is never waited on: when the strategy has fallen a whole
ring behind, the update is dropped and counted; every update is a full snapshot and the
market-state table always holds the latest, so a dropped update loses no state.
"""
from __future__ import annotations

import time

from appliance.messages.catalog import (
    BOOK_DEPTH, BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED, BOOK_FLAG_STALE,
    BOOK_UPDATE,
)
from appliance.runtime.market_state import MarketStateWriter
from appliance.wire.venue_time import utc_midnight_ns

U32_MAX = 0xFFFFFFFF             # share fields of both records are u32; ITCH's cross trade shares are u64


class BookOutputs:
    """Snapshots books into the ring and the market-state table."""

    def __init__(self, ring, ring_buffer, market_state: MarketStateWriter):
        self.ring = ring
        self.buffer = ring_buffer
        self.market_state = market_state
        self.levels = [0] * (4 * BOOK_DEPTH)
        self.feed_stale = True                   # until live traffic arrives (the agent decides)
        self.midnight_ns = utc_midnight_ns()
        self.published = 0
        self.dropped = 0

    def flags_of(self, book) -> int:
        flags = BOOK_FLAG_STALE if self.feed_stale or book.locate is None else 0
        if book.crossed:
            flags |= BOOK_FLAG_CROSSED
        if book.locked:
            flags |= BOOK_FLAG_LOCKED
        state = book.trading_state
        if state != b"T":
            flags |= BOOK_FLAG_HALTED
        if book.inconsistent:
            flags |= BOOK_FLAG_INCONSISTENT | BOOK_FLAG_STALE
        return flags

    def publish(self, book, mold_sequence: int, t_rx_ns: int) -> bool:
        """Write the book's snapshot to the market-state slot and the ring. False: ring full (dropped)."""
        sid = book.symbol_id
        levels = self.levels
        book.snapshot_into(levels, 0)
        if max(levels) > U32_MAX:                # a level holding more than 2**32 - 1 shares: saturate
            levels[:] = [v if v <= U32_MAX else U32_MAX for v in levels]
        last_shares = book.last_trade_shares
        if last_shares > U32_MAX:                # a cross trade (u64 shares)
            last_shares = U32_MAX
        flags = self.flags_of(book)
        state = book.trading_state
        state = state[0] if state and state != b" " else 0
        t_exchange = self.midnight_ns + book.last_timestamp
        bid_price, bid_shares = levels[0], levels[BOOK_DEPTH]
        ask_price, ask_shares = levels[2 * BOOK_DEPTH], levels[3 * BOOK_DEPTH]
        now = time.time_ns()
        self.market_state.publish(sid, bid_price, bid_shares, ask_price, ask_shares, book.last_trade_price,
                                  last_shares, flags, state, book.update_sequence, t_exchange, now)
        offset = self.ring.claim()
        if offset < 0:
            self.dropped += 1
            return False
        bid_count = BOOK_DEPTH - levels[BOOK_DEPTH:2 * BOOK_DEPTH].count(0)
        ask_count = BOOK_DEPTH - levels[3 * BOOK_DEPTH:].count(0)
        BOOK_UPDATE.pack_into(self.buffer, offset, sid, flags, state, bid_count, ask_count, *levels,
                              book.last_trade_price, last_shares, book.update_sequence, mold_sequence,
                              t_exchange, t_rx_ns, time.time_ns())
        self.ring.commit()
        self.published += 1
        return True
