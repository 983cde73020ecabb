"""The market-state table: one slot per symbol, written by the feed alone under a seqlock.

Readers (the risk gateway's price checks, shmtop, the exporter) never take a lock and never
make the writer wait: see ``seqlock.py`` for the protocol.

Marks: a position is marked only at a price from a good book (``good_mark``: not stale, not
inconsistent, not crossed; a forged or lost feed must not move the P&L or trip the loss limits).
The writer keeps the last good mark in the slot (``mark_price``), so every reader, in any
process and across a restart of the feed or the reader, falls back to the same last good price,
flagged as old (``mark_of``). Risk, ``appliance status``, shmtop and the exporter all use these.

Why a book is bad (``book_problem``, ``describe_problems``): the feed-wide reason in the control
word ``feed_stale_reason`` (codes.FeedStaleReason) when the whole feed is stale, else the book's
own flags; the supervisor's MARKET_DATA gate reason and every status display use the same words.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from appliance.messages.catalog import (
    BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED, BOOK_FLAG_STALE, BOOK_FLAGS_BAD,
    MARKET_STATE,
)
from appliance.messages.codes import FeedStaleReason
from appliance.runtime.layout import Layout
from appliance.runtime.seqlock import TornRead  # noqa: F401 (re-exported)
from appliance.runtime.seqlock import SeqlockReader, SeqlockWriter, body_index_of

SEQLOCK_OFFSET = MARKET_STATE.offset_of["seqlock"]
FLAG_NAMES = ((BOOK_FLAG_STALE, "stale"), (BOOK_FLAG_CROSSED, "crossed"), (BOOK_FLAG_LOCKED, "locked"),
              (BOOK_FLAG_HALTED, "halted"), (BOOK_FLAG_INCONSISTENT, "inconsistent"))
_MARK_INDEX = body_index_of(MARKET_STATE)["mark_price"]


def reference_price(bid: int, ask: int, last: int) -> int:
    """Mid of the best bid and ask when both are there, else the last trade, else 0."""
    if bid and ask:
        return (bid + ask) >> 1
    return last


def good_mark(bid: int, ask: int, last: int, flags: int) -> int:
    """The price to mark a position at from one copy of a book, or 0 when the book is not to be
    believed: flagged stale, inconsistent or crossed, or a bid above the ask whatever the flags."""
    if flags & BOOK_FLAGS_BAD or (bid and ask and bid > ask):
        return 0
    return reference_price(bid, ask, last)


def mark_of(bid: int, ask: int, last: int, flags: int, last_good: int) -> tuple[int, bool]:
    """(price, old): the book's good mark, else ``last_good`` (the slot's ``mark_price``) flagged
    old. A price of 0 means no mark at all (no unrealized P&L)."""
    price = good_mark(bid, ask, last, flags)
    return (price, False) if price else (last_good, True)


def book_problem(flags: int, feed_stale_reason: int) -> str:
    """Why a book is bad, in words ("" when it is good): the feed-wide reason first (it explains
    a stale flag on every book), then the book's own inconsistent, crossed, stale flags."""
    if not flags & BOOK_FLAGS_BAD:
        return ""
    if flags & BOOK_FLAG_STALE and feed_stale_reason:
        return FeedStaleReason.describe(feed_stale_reason)
    if flags & BOOK_FLAG_INCONSISTENT:
        return "inconsistent"
    if flags & BOOK_FLAG_CROSSED:
        return "crossed"
    return FeedStaleReason.describe(FeedStaleReason.NO_DIRECTORY)   # the feed is live: the book's own staleness


def view_problem(view: "MarketStateView", feed_stale_reason: int) -> str:
    """``book_problem`` of one read slot; a slot the feed never wrote is "no data yet"."""
    return "no data yet" if not view.t_update_ns else book_problem(view.flags, feed_stale_reason)


def symbol_problems(reader: "MarketStateReader", feed_stale_reason: int) -> dict[str, str]:
    """``{symbol: problem}`` of every bad book in the table (good books left out): a slot the feed
    never wrote is "no data yet", one left mid-write by a feed that died "unreadable"."""
    problems = {}
    for sid, symbol in enumerate(reader.symbols):
        try:
            view = reader.read(sid)
        except TornRead:
            problems[symbol] = "unreadable"
            continue
        problem = view_problem(view, feed_stale_reason)
        if problem:
            problems[symbol] = problem
    return problems


def describe_problems(problems: dict[str, str], limit: int = 5) -> str:
    """``{symbol: problem}`` as one short text, symbols grouped by problem and at most ``limit``
    named per problem: "gap lost: AAPL MSFT SPY +2 more; crossed: TSLA"."""
    groups: dict[str, list[str]] = {}
    for symbol, problem in problems.items():
        if problem:
            groups.setdefault(problem, []).append(symbol)
    parts = []
    for problem, symbols in groups.items():
        named = " ".join(symbols[:limit]) + (f" +{len(symbols) - limit} more" if len(symbols) > limit else "")
        parts.append(f"{problem}: {named}")
    return "; ".join(parts)


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

    mark_price: int = 0        # the writer's last good mark (kept while the book is bad)

    @property
    def flag_names(self) -> list[str]:
        return [name for bit, name in FLAG_NAMES if self.flags & bit]

    @property
    def mark(self) -> tuple[int, bool]:
        """(price, old): see ``mark_of``."""
        return mark_of(self.bid_price, self.ask_price, self.last_trade_price, self.flags, self.mark_price)


def _slot_offsets(layout: Layout) -> list[int]:
    table = layout.table_of_kind("market_state")
    return [table.offset + i * table.slot_size for i in range(table.slots)]


class MarketStateWriter(SeqlockWriter):
    """The feed's side. ``publish`` writes one symbol's slot; nothing else writes the table.

    It keeps each slot's last good mark: carried over from the table when a restarted feed
    attaches (its books start empty and stale, and the last good price is still the best one)."""

    def __init__(self, buffer, layout: Layout):
        super().__init__(buffer, _slot_offsets(layout), MARKET_STATE)
        self.symbols = layout.symbols
        self._symbol_bytes = [s.encode().ljust(8) for s in self.symbols]
        self.marks = [self._written_mark(slot) for slot in range(len(self.offsets))]

    def _written_mark(self, slot: int) -> int:
        """The mark a previous writer left in the slot (0 if none, or if it died mid-write)."""
        seq_offset = self._seq_offsets[slot]
        if self.atomics.load(seq_offset) & 1:
            return 0
        return self.body.unpack_from(self.buffer, seq_offset + 8)[_MARK_INDEX]

    def publish(self, symbol_id: int, bid_price: int, bid_shares: int, ask_price: int, ask_shares: int,
                last_trade_price: int, last_trade_shares: int, flags: int, trading_state: int,
                update_sequence: int, t_exchange_ns: int, t_update_ns: int) -> None:
        mark = good_mark(bid_price, ask_price, last_trade_price, flags)
        if mark:
            self.marks[symbol_id] = mark
        else:
            mark = self.marks[symbol_id]
        self.write(symbol_id, self._symbol_bytes[symbol_id], bid_price, bid_shares, ask_price, ask_shares,
                   last_trade_price, last_trade_shares, flags, trading_state, 0, mark, update_sequence,
                   t_exchange_ns, t_update_ns)


class MarketStateReader(SeqlockReader):
    """Any process's side: consistent copies, never blocking the writer."""

    def __init__(self, buffer, layout: Layout):
        super().__init__(buffer, _slot_offsets(layout), MARKET_STATE, layout.symbols)
        self.symbols = layout.symbols

    def read(self, symbol_id: int) -> MarketStateView:
        (symbol, bid_price, bid_shares, ask_price, ask_shares, last_price, last_shares, flags, state,
         _pad0, mark_price, update_sequence, t_exchange_ns, t_update_ns) = self.read_raw(symbol_id)
        return MarketStateView(symbol_id, self.symbols[symbol_id], bid_price, bid_shares, ask_price, ask_shares,
                               last_price, last_shares, flags, chr(state) if state else "", update_sequence,
                               t_exchange_ns, t_update_ns, mark_price)

    def read_all(self) -> list[MarketStateView]:
        return [self.read(i) for i in range(len(self.offsets))]

    def age_ns(self, symbol_id: int, now_ns: int | None = None) -> int | None:
        """ns since the feed last wrote the slot; None if it never did."""
        t = self.read(symbol_id).t_update_ns
        return None if t == 0 else (now_ns if now_ns is not None else time.time_ns()) - t
