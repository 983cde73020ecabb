"""The compiled feed path (``_book_fast.c``): books, snapshots and BookUpdate writes of a whole packet in one call.

``FastFeed`` holds every book in C and, per MoldUDP64 payload, decodes the ITCH blocks, applies
them, and writes one BookUpdate per changed symbol into the ring slot and its market-state slot:
what ``BlockScanner`` + ``BookSet.apply`` + ``BookOutputs.publish_packet`` do, with the same
counters (the scanner's and ``books.COUNTER_NAMES``), flags, latches and coalescing rules. Those
Python classes stay the reference; ``tests/feed/test_feed_fast_diff.py`` checks both agree message
by message.

For the agent's slow paths (staleness, isolation, snapshot rebuilds, the book dump) ``FastFeed``
looks like a ``BookSet`` (``books``, ``book_of_locate``, ``apply``, ``clear``, ``counters``) and
like a ``BookOutputs`` (``publish``, ``feed_stale``, ``published``...): ``books[i]`` is a
``BookView`` reading the C state.

The C side gets every layout from the one Python table: the ITCH fields it reads from
``wire.itch.MESSAGES``, the BookUpdate and MarketState fields from the catalog, the counter names
from ``books.COUNTER_NAMES``; it checks each size against what it stores.
"""
from __future__ import annotations

from array import array

from appliance.messages.catalog import (
    BOOK_DEPTH, BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED, BOOK_FLAG_STALE,
    BOOK_UPDATE, MARKET_STATE,
)
from appliance.wire import itch, moldudp64
from appliance.wire.venue_time import utc_midnight_ns

from .books import COUNTER_NAMES, LOCATES, checked_symbols, locate_map
from .outputs import RING, SLOT

try:  # built by setup.py
    from appliance.feed import _book_fast  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _book_fast = None

AVAILABLE = _book_fast is not None
IN_ORDER_TAKEN = -2     # receive_in_order: a datagram was received and taken by the compiled in-order path


def _record_fields(record) -> dict[str, tuple[int, int]]:
    return {f.name: (f.offset, f.size) for f in record.fields}


if _book_fast is not None:
    _book_fast.configure(
        {(lay.type_code, f.name): (lay.offset_of[f.name], f.size) for lay in itch.MESSAGES for f in lay.fields},
        list(itch.SIZE_BY_BYTE),
        _record_fields(BOOK_UPDATE), (BOOK_UPDATE.type_id, BOOK_UPDATE.version, BOOK_UPDATE.size, BOOK_DEPTH),
        _record_fields(MARKET_STATE), COUNTER_NAMES,
        (BOOK_FLAG_STALE, BOOK_FLAG_CROSSED, BOOK_FLAG_LOCKED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT),
        (itch.DECODED, itch.FILTERED_OUT, itch.MALFORMED),
    )


class BookView:
    """One book of a ``FastFeed`` with ``OrderBook``'s read API (and ``reset``, ``inconsistent``/``last_error``
    set by the agent's isolation): the agent's slow paths, tools and tests. Each read asks the C state."""

    __slots__ = ("_c", "symbol_id", "symbol", "depth")

    def __init__(self, c, symbol_id: int, symbol: str) -> None:
        self._c = c
        self.symbol_id = symbol_id
        self.symbol = symbol
        self.depth = BOOK_DEPTH

    def _state(self, i: int):
        return self._c.state(self.symbol_id)[i]

    locate = property(lambda self: self._state(0))
    crossed = property(lambda self: self._state(1))
    locked = property(lambda self: self._state(2))
    trading_state = property(lambda self: self._state(5))
    last_trade_price = property(lambda self: self._state(6))
    last_trade_shares = property(lambda self: self._state(7))
    trades = property(lambda self: self._state(8))
    last_timestamp = property(lambda self: self._state(9))
    update_sequence = property(lambda self: self._state(10))
    order_count = property(lambda self: self._state(11))
    last_trade_aggressor = property(lambda self: self._state(12))
    last_trade_timestamp = property(lambda self: self._state(13))

    @property
    def inconsistent(self) -> bool:
        return self._state(3)

    @inconsistent.setter
    def inconsistent(self, value: bool) -> None:
        self._c.set_inconsistent(self.symbol_id, bool(value), self.last_error)

    @property
    def last_error(self) -> str | None:
        return self._state(4)

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        self._c.set_inconsistent(self.symbol_id, self.inconsistent, value)

    def reset(self) -> None:
        self._c.reset(self.symbol_id)

    def levels(self, is_buy: bool) -> list[tuple[int, int]]:
        return self._c.levels(self.symbol_id, is_buy)

    def orders(self) -> dict[int, tuple[bytes, int, int]]:
        return self._c.orders(self.symbol_id)

    def order_counts(self, is_buy: bool) -> list[int]:
        return self._c.order_counts(self.symbol_id, is_buy)

    def best_bid(self) -> tuple[int, int]:
        levels = self.levels(True)
        return levels[0] if levels else (0, 0)

    def best_ask(self) -> tuple[int, int]:
        levels = self.levels(False)
        return levels[0] if levels else (0, 0)

    def snapshot_into(self, out, start: int = 0, counts=None) -> None:
        """``OrderBook.snapshot_into``: bid prices, bid shares, ask prices, ask shares, best first, zero padded;
        the order counts of those levels into ``counts`` (when given)."""
        depth = self.depth
        for side, base in ((True, start), (False, start + 2 * depth)):
            levels = self.levels(side)[:depth]
            levels += [(0, 0)] * (depth - len(levels))
            for k, (price, shares) in enumerate(levels):
                out[base + k] = price
                out[base + depth + k] = shares
        if counts is not None:
            for base, side in ((0, True), (depth, False)):
                top = self.order_counts(side)[:depth]
                for k in range(depth):
                    counts[base + k] = top[k] if k < len(top) else 0


class _LocateMap:
    """``BookSet.book_of_locate`` over the C map: ``[locate]`` -> BookView or None."""

    __slots__ = ("_c", "_books")

    def __init__(self, c, books: list[BookView]) -> None:
        self._c = c
        self._books = books

    def __getitem__(self, locate: int):
        sid = self._c.sid_of_locate(locate)
        return None if sid < 0 else self._books[sid]

    def __len__(self) -> int:
        return LOCATES


class FastFeed:
    """The compiled books and outputs of the configured ``symbols`` (see the module docstring).

    ``ring`` (a producer ``Channel`` or anything with ``claim``/``commit``) and ``ring_buffer``: where
    BookUpdates go (None: nowhere; the bench's books-only column). ``market_state``: a
    ``MarketStateWriter`` whose table the C side writes from now on (its last good marks carried
    over; nothing else may write the table while this object does), or None.
    ``scan_counters``: the ``array('q')`` of a ``BlockScanner`` to count decoded / filtered /
    malformed blocks into (the agent passes its scanner's, so its counters keep their meaning).
    """

    COUNTER_NAMES = COUNTER_NAMES

    def __init__(self, symbols, ring=None, ring_buffer=None, market_state=None, scan_counters=None,
                 subscribed_locates: bytearray | None = None) -> None:
        if _book_fast is None:
            raise RuntimeError("the compiled feed path appliance.feed._book_fast is not built")
        symbols = checked_symbols(symbols)
        subscribed_locates = locate_map(subscribed_locates)
        self.symbols = symbols
        self.depth = BOOK_DEPTH
        self.subscribed_locates = subscribed_locates
        self.counters = array("q", bytes(8 * len(COUNTER_NAMES)))
        self.scan_counters = scan_counters if scan_counters is not None else array("q", [0, 0, 0])
        self.market_state = market_state
        if market_state is not None:
            ms_buffer, offsets, marks = market_state.buffer, list(market_state.offsets), list(market_state.marks)
        else:
            ms_buffer, offsets, marks = None, [], []
        claim = ring.claim if ring is not None else None
        commit = ring.commit if ring is not None else None
        self._c = _book_fast.Books([s.encode("ascii").ljust(8) for s in symbols], self.counters, self.scan_counters,
                                   subscribed_locates, ring_buffer, claim, commit, ms_buffer, offsets, marks,
                                   utc_midnight_ns())
        self.books = [BookView(self._c, i, s) for i, s in enumerate(symbols)]
        self.book_of_locate = _LocateMap(self._c, self.books)
        self._id_of_symbol = {s: i for i, s in enumerate(symbols)}
        self.apply_packet = self._c.apply_packet
        """``apply_packet(buffer, start, end, mold_sequence, t_rx_ns) -> updates``: one packet's blocks from
        ``start`` (``BlockScanner.scan(..., final=True)`` + ``BookOutputs.publish_packet``)."""

    def bind_sequencer(self, sequencer, receiver=None):
        """``accept_packet(buffer, nbytes, rx_ns, live[, now_ns]) -> updates or -1``: ``sequencer.accept`` and
        ``apply_packet`` of a packet that is the next expected one with no gap open, in one C call that reads
        and writes the sequencer's own slots; -1 (nothing changed) for any other packet: run ``sequencer.accept``.
        With ``receiver`` (the live feed's ``receiver.py`` C ``Receiver``), also ``receive_in_order() -> n``:
        its receive and that accept in one call: ``IN_ORDER_TAKEN``, or n >= 0 bytes in the receiver's buffer
        that the sequencer declined (the Python path's), or -1 when nothing is waiting.
        The Python ``MoldSequencer`` stays the reference (tests/feed/test_feed_in_order_diff.py)."""
        header = moldudp64.HEADER
        self._c.bind_sequencer(sequencer, {f.name: (header.offset_of[f.name], f.size) for f in header.fields},
                               moldudp64.HEADER_SIZE, (moldudp64.HEARTBEAT_COUNT, moldudp64.END_OF_SESSION_COUNT),
                               receiver)
        self.receive_in_order = self._c.receive_in_order if receiver is not None else None
        return self._c.accept_packet

    # ------------------------------------------------------------------ BookSet's API

    def book(self, symbol: str) -> BookView:
        return self.books[self._id_of_symbol[symbol]]

    def symbol_id(self, symbol: str) -> int:
        return self._id_of_symbol.get(symbol, -1)

    def apply(self, raw) -> int:
        """One raw tuple (a snapshot's or a replayed message: not the hot path), as ``BookSet.apply``."""
        layout = itch.LAYOUT_BY_BYTE[raw[0][0]]
        message = bytearray(layout.size)
        layout.pack_into(message, 0, *raw)
        return self._c.apply_message(message)

    def apply_message(self, message) -> int | None:
        """One whole ITCH message's bytes; None when it is not one (wrong size for its type)."""
        return self._c.apply_message(message)

    def clear(self) -> None:
        self._c.clear()

    def books_to_check(self, also=()) -> list[BookView]:
        """The books inconsistent or crossed, and those whose symbol ids are in ``also``, in id order: the
        only ones the agent's per-millisecond checks can act on (one C scan, not two reads per book)."""
        return [self.books[sid] for sid in sorted(set(self._c.flagged()).union(also))]

    def counter_values(self) -> dict[str, int]:
        return dict(zip(COUNTER_NAMES, self.counters))

    @property
    def system_event(self) -> bytes:
        return bytes([self._c.stats["system_event"]])

    # ------------------------------------------------------------------ BookOutputs' API

    def publish(self, book, mold_sequence: int, t_rx_ns: int, messages: int = 0, to: int = SLOT | RING) -> bool:
        """``BookOutputs.publish`` of one book (start, isolation, rebuilds, staleness changes)."""
        return self._c.publish(book.symbol_id, mold_sequence, t_rx_ns, messages, to)

    @property
    def feed_stale(self) -> bool:
        return self._c.feed_stale

    @feed_stale.setter
    def feed_stale(self, value: bool) -> None:
        self._c.feed_stale = value

    @property
    def event_clock(self) -> bool:
        """``BookOutputs.event_clock``: the output stamps (t_feed_out_ns, the slot's t_update_ns) are the
        packet's t_rx_ns, not the wall clock (a backtest, where t_rx_ns is event time)."""
        return self._c.event_clock

    @event_clock.setter
    def event_clock(self, value: bool) -> None:
        self._c.event_clock = value

    @property
    def midnight_ns(self) -> int:
        return self._c.midnight_ns

    @midnight_ns.setter
    def midnight_ns(self, value: int) -> None:
        self._c.midnight_ns = value

    def stats(self) -> dict:
        """published, dropped, messages, order_count, memory_bytes, alloc_failures (the C side's own)."""
        return self._c.stats

    published = property(lambda self: self._c.stats["published"])
    dropped = property(lambda self: self._c.stats["dropped"])
    messages = property(lambda self: self._c.stats["messages"])
