"""The market-state table: one slot per symbol, written by the feed alone under a seqlock.

Readers (the risk gateway's price checks, shmtop, the exporter) never take a lock and never
make the writer wait: they copy the slot and retry when the sequence word changed under them.

Protocol, per slot (``MarketState`` record; the word ``seqlock`` is at a fixed offset):
- writer: store seq+1 (odd: a write is in progress), write the fields, store seq+2 (even).
- reader: load seq (acquire); odd -> retry; copy the fields; load seq again; changed -> retry.

The sequence word goes through ``AtomicView`` (C11 acquire loads / release stores). The field
copies are plain ``struct`` calls; on x86-64 (TSO: stores are not reordered with stores nor
loads with loads) that is enough for the seqlock to be correct, which is the only platform
the appliance supports (see DESIGN.md).
"""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from appliance.messages.catalog import (
    BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED, BOOK_FLAG_STALE, MARKET_STATE,
)
from appliance.runtime import _shm
from appliance.runtime.layout import Layout

SEQLOCK_OFFSET = MARKET_STATE.offset_of["seqlock"]
_FIELDS_OFFSET = MARKET_STATE.offset_of["symbol"]
# Everything after the seqlock word, packed in one call (checked against the record below).
_BODY = struct.Struct("<8sIIIIIIBBHIQQQ")
assert _FIELDS_OFFSET + _BODY.size == MARKET_STATE.size, "MarketState changed: update _BODY"
READ_SPINS = 100                     # quick retries, then yield the CPU (the writer may be preempted)
READ_GIVE_UP_NS = 50_000_000         # a slot odd this long belongs to a writer that died mid-write

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


class MarketStateWriter:
    """The feed's side. ``publish`` writes one symbol's slot; nothing else writes the table."""

    def __init__(self, buffer, layout: Layout):
        self.buffer = buffer
        self.symbols = layout.symbols
        self.offsets = _slot_offsets(layout)
        self.atomics = _shm.AtomicView(buffer)
        self._sequences = [0] * len(self.offsets)
        self._symbol_bytes = [s.encode().ljust(8) for s in self.symbols]
        header = struct.Struct("<HHI")
        for i, offset in enumerate(self.offsets):
            # A restarted feed continues the sequence where its predecessor stopped (made even).
            seq = self.atomics.load(offset + SEQLOCK_OFFSET)
            self._sequences[i] = seq + (seq & 1)
            header.pack_into(buffer, offset, MARKET_STATE.type_id, MARKET_STATE.version, MARKET_STATE.size)

    def publish(self, symbol_id: int, bid_price: int, bid_shares: int, ask_price: int, ask_shares: int,
                last_trade_price: int, last_trade_shares: int, flags: int, trading_state: int,
                update_sequence: int, t_exchange_ns: int, t_update_ns: int) -> None:
        offset = self.offsets[symbol_id]
        seq = self._sequences[symbol_id]
        store = self.atomics.store
        store(offset + SEQLOCK_OFFSET, seq + 1)
        _BODY.pack_into(self.buffer, offset + _FIELDS_OFFSET, self._symbol_bytes[symbol_id], bid_price, bid_shares,
                        ask_price, ask_shares, last_trade_price, last_trade_shares, flags, trading_state, 0, 0,
                        update_sequence, t_exchange_ns, t_update_ns)
        store(offset + SEQLOCK_OFFSET, seq + 2)
        self._sequences[symbol_id] = seq + 2

    def close(self) -> None:
        self.atomics = None


class TornRead(RuntimeError):
    """The writer kept a slot busy for READ_GIVE_UP_NS (a writer that died mid-write)."""


class MarketStateReader:
    """Any process's side: consistent copies, never blocking the writer."""

    def __init__(self, buffer, layout: Layout):
        self.buffer = buffer
        self.symbols = layout.symbols
        self.offsets = _slot_offsets(layout)
        self.atomics = _shm.AtomicView(buffer)
        self.retries = 0

    def read_raw(self, symbol_id: int) -> tuple:
        """The fields after the seqlock word, as a tuple in record order (symbol bytes first)."""
        offset = self.offsets[symbol_id]
        load = self.atomics.load
        unpack = _BODY.unpack_from
        buffer = self.buffer
        attempt = 0
        deadline = 0
        while True:
            before = load(offset + SEQLOCK_OFFSET)
            if not before & 1:
                values = unpack(buffer, offset + _FIELDS_OFFSET)
                if load(offset + SEQLOCK_OFFSET) == before:
                    return values
            self.retries += 1
            attempt += 1
            if attempt >= READ_SPINS:
                now = time.monotonic_ns()
                if not deadline:
                    deadline = now + READ_GIVE_UP_NS
                elif now > deadline:
                    raise TornRead(f"market state of {self.symbols[symbol_id]} stayed mid-write for "
                                   f"{READ_GIVE_UP_NS // 1_000_000} ms")
                os.sched_yield()

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

    def close(self) -> None:
        self.atomics = None
