"""What the feed writes: a BookUpdate on the feed-to-strategy ring and the symbol's market-state slot.

Both carry the same snapshot (top BOOK_DEPTH levels, trading state, last trade, flags, the
per-symbol update sequence). The ring is never waited on: when the strategy has fallen a whole
ring behind, the update is dropped and counted; every update is a full snapshot and the
market-state table always holds the latest, so a dropped update loses no state.

One update per symbol per packet (``publish_packet``): the packet's messages are applied to the
books first, then each symbol whose published state changed gets one BookUpdate with its final
state and ``message_count``, how many of the packet's messages changed it (each was its own update
before coalescing), and its market-state slot is written once. A BookUpdate carries one last
trade, so a print is never coalesced away: before a message that may print (E, C, P, Q) is
applied to a symbol whose pending update already holds a print, that update goes on the ring as it
stands (the slot is still written once, at the end of the packet). The strategy's ``on_trade``
sees every print it saw when each message had its own update.
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
U16_MAX = 0xFFFF                 # a level's order count in a BookUpdate saturates here
SLOT, RING = 1, 2                # where ``publish`` writes (both by default)
# Message types that may set a book's last trade (BookSet's executed, executed_with_price, trade, cross_trade).
PRINT_TYPES = bytearray(256)
for _code in b"ECPQ":
    PRINT_TYPES[_code] = 1


class BookOutputs:
    """Snapshots books into the ring and the market-state table."""

    def __init__(self, ring, ring_buffer, market_state: MarketStateWriter):
        self.ring = ring
        self.buffer = ring_buffer
        self.market_state = market_state
        self.levels = [0] * (4 * BOOK_DEPTH)
        self.order_counts = [0] * (2 * BOOK_DEPTH)
        self.feed_stale = True                   # until live traffic arrives (the agent decides)
        self.event_clock = False                 # True (a backtest): the output stamps are the packet's t_rx_ns
        self.midnight_ns = utc_midnight_ns()
        self.published = 0
        self.dropped = 0
        self.messages = 0                        # messages covered by the updates published (or dropped)
        symbols = len(market_state.symbols)
        # Per symbol, for publish_packet: 0 when the packet has not changed it, else 1 + the messages
        # its pending update covers; and the book's ``trades`` when its last update was made.
        self._pending = [0] * symbols
        self._trades_published = [0] * symbols
        self._touched: list[int] = []

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

    def publish(self, book, mold_sequence: int, t_rx_ns: int, messages: int = 0, to: int = SLOT | RING) -> bool:
        """Write the book's snapshot to the market-state slot and the ring (``to``); ``messages``: how many
        ITCH messages the update covers (0: not made by messages: start, isolation, a rebuild). False:
        ring full (dropped)."""
        sid = book.symbol_id
        self._trades_published[sid] = book.trades
        levels = self.levels
        counts = self.order_counts
        book.snapshot_into(levels, 0, counts)
        if max(levels) > U32_MAX:                # a level holding more than 2**32 - 1 shares: saturate
            levels[:] = [v if v <= U32_MAX else U32_MAX for v in levels]
        last_shares = book.last_trade_shares
        if last_shares > U32_MAX:                # a cross trade (u64 shares)
            last_shares = U32_MAX
        flags = self.flags_of(book)
        state = book.trading_state
        state = state[0] if state and state != b" " else 0
        t_exchange = self.midnight_ns + book.last_timestamp
        t_out = t_rx_ns if self.event_clock else time.time_ns()
        if to & SLOT:
            self.market_state.publish(sid, levels[0], levels[BOOK_DEPTH], levels[2 * BOOK_DEPTH],
                                      levels[3 * BOOK_DEPTH], book.last_trade_price, last_shares, flags, state,
                                      book.update_sequence, t_exchange, t_out)
        if not to & RING:
            return True
        self.messages += messages
        offset = self.ring.claim()
        if offset < 0:
            self.dropped += 1
            return False
        bid_count = BOOK_DEPTH - levels[BOOK_DEPTH:2 * BOOK_DEPTH].count(0)
        ask_count = BOOK_DEPTH - levels[3 * BOOK_DEPTH:].count(0)
        if max(counts) > U16_MAX:
            counts[:] = [v if v <= U16_MAX else U16_MAX for v in counts]
        BOOK_UPDATE.pack_into(self.buffer, offset, sid, flags, state, bid_count, ask_count, *levels,
                              book.last_trade_price, last_shares, book.update_sequence, mold_sequence,
                              t_exchange, t_rx_ns, t_out, messages, book.trades,
                              self.midnight_ns + book.last_trade_timestamp, *counts,
                              book.last_trade_aggressor)
        self.ring.commit()
        self.published += 1
        return True

    def publish_packet(self, messages, bookset, mold_sequence: int, t_rx_ns: int) -> int:
        """Apply one packet's raw ITCH tuples (``messages``) to ``bookset``, then publish one update per
        symbol they changed (see the module docstring). Returns the updates put on the ring (or dropped)."""
        apply = bookset.apply
        book_of_locate = bookset.book_of_locate
        pending = self._pending
        touched = self._touched
        prints = PRINT_TYPES
        trades_published = self._trades_published
        updates = 0
        for raw in messages:
            if prints[raw[0][0]]:
                book = book_of_locate[raw[1]]
                if book is not None:
                    sid = book.symbol_id
                    n = pending[sid]
                    if n > 1 and book.trades != trades_published[sid]:    # its pending update holds a print
                        self.publish(book, mold_sequence, t_rx_ns, n - 1, RING)
                        pending[sid] = 1
                        updates += 1
            sid = apply(raw)
            if sid >= 0:
                n = pending[sid]
                if not n:
                    touched.append(sid)
                    n = 1
                pending[sid] = n + 1
        if touched:
            books = bookset.books
            for sid in touched:
                n = pending[sid] - 1
                pending[sid] = 0
                if n:
                    self.publish(books[sid], mold_sequence, t_rx_ns, n)
                    updates += 1
                else:                           # its update went out at a print; nothing changed it since
                    self.publish(books[sid], mold_sequence, t_rx_ns, 0, SLOT)
            touched.clear()
        return updates
