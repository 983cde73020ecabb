"""The feed's stock directory and every subscribed book: applies ITCH raw tuples.

``BookSet.apply(raw)`` takes one raw tuple from ``BlockScanner`` /
``FeedPacketScanner`` (``(type, locate, tracking, timestamp, *fields)``, see
``appliance.wire.itch``) and returns the symbol id whose published state (top ``depth``
levels, trading state or last trade) changed, else -1: the feed publishes a book update for
that id. Dispatch is one list index on the type byte into closures that hold their state in
cells (cheaper than attribute look-ups); a message whose locate has no book costs one more
list index (``book_of_locate``).

The directory: a Stock Directory ('R') naming a configured symbol maps its locate to the
book and sets ``subscribed_locates[locate] = 1``, the scanner's filter map, so from then on
the scanner passes that locate's messages. Our simulated exchange sends 'R' for every
symbol at the start of the day and a Trading Action ('H') only on halts and resumes, so 'R'
sets an unknown (b' ') trading state to b'T'; a repeated 'R' leaves a known state alone.
A second 'R' giving a symbol another locate remaps it (``directory_changes``). ``clear()``
forgets the directory and every book (a new session, or a rebuild from sequence 1).

Counters: one ``array('q')`` (``counters``) shared with every book, indexed by the
constants below, names in ``COUNTER_NAMES``; the agent copies it into shared memory once per
duty cycle. The book slots come first (``book.BOOK_COUNTER_NAMES``):

=======================  ==================================================================
unknown_order            E/C/X/D/U naming a reference the book does not hold (latches
                         ``inconsistent`` on the book)
over_execution           E/C/X for more shares than the order holds (order removed; latches)
duplicate_add            A/F/U adding a live reference (refused; latches)
bad_shares               A/F/U with 0 shares (not stored)
crossed, locked          transitions of a book into crossed / locked
messages                 raw tuples given to ``apply``
unsubscribed             messages for a locate with no book
unsubscribed_directory   'R' for a symbol not configured
directory_changes        'R' moving a configured symbol to another locate
system_events            'S'
broken_trades            'B' (counted only: the last trade is not rolled back)
ignored                  types the books do not use (Y L V W K J h I N O, unknown bytes)
=======================  ==================================================================
"""
from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

from .book import (  # noqa: F401  (the book's counter slots, re-exported: one place to import them from)
    BAD_SHARES, BOOK_COUNTER_NAMES, CROSSED, DUPLICATE_ADD, LOCKED, OVER_EXECUTION, UNKNOWN_ORDER, OrderBook,
)

(MESSAGES, UNSUBSCRIBED, UNSUBSCRIBED_DIRECTORY, DIRECTORY_CHANGES, SYSTEM_EVENTS, BROKEN_TRADES,
 IGNORED) = range(len(BOOK_COUNTER_NAMES), len(BOOK_COUNTER_NAMES) + 7)
COUNTER_NAMES = BOOK_COUNTER_NAMES + ("messages", "unsubscribed", "unsubscribed_directory", "directory_changes",
                                      "system_events", "broken_trades", "ignored")
LOCATES = 65536


def checked_symbols(symbols: Sequence[str]) -> list[str]:
    """The configured symbols as a list, each an ITCH stock symbol, none twice (ValueError otherwise):
    what both book sets (this one and the compiled ``fast.FastFeed``) are built from."""
    symbols = list(symbols)
    if len(set(symbols)) != len(symbols):
        raise ValueError("symbols must be unique")
    for symbol in symbols:
        if not isinstance(symbol, str) or not symbol or len(symbol) > 8 or symbol != symbol.strip() \
                or not symbol.isascii():
            raise ValueError(f"not an ITCH stock symbol: {symbol!r}")
    return symbols


def locate_map(subscribed_locates: bytearray | None) -> bytearray:
    """The scanner's filter map, one byte per stock locate (a new one for None)."""
    if subscribed_locates is None:
        return bytearray(LOCATES)
    if len(subscribed_locates) != LOCATES:
        raise ValueError("subscribed_locates must be a 65536-byte map indexed by stock locate")
    return subscribed_locates


class BookSet:
    """The directory and the books of the configured ``symbols`` (symbol id = index). A book's
    ``locate`` is None until a directory message names its symbol (the feed shows it stale).

    ``apply(raw) -> int`` is a per-instance closure built in ``__init__`` (an attribute, not a
    method): one call per message, no attribute look-ups inside.
    """

    COUNTER_NAMES = COUNTER_NAMES           # the names of ``counters``, also on the instance

    def __init__(self, symbols: Sequence[str], depth: int = 5, subscribed_locates: bytearray | None = None) -> None:
        symbols = checked_symbols(symbols)
        subscribed_locates = locate_map(subscribed_locates)
        self.symbols = symbols
        self.depth = depth
        self.subscribed_locates = subscribed_locates
        self.counters = array("q", bytes(8 * len(COUNTER_NAMES)))
        self.books: list[OrderBook] = [OrderBook(i, s, depth, self.counters) for i, s in enumerate(symbols)]
        self.book_of_locate: list[OrderBook | None] = [None] * LOCATES
        self._id_of_stock: dict[bytes, int] = {s.encode("ascii"): i for i, s in enumerate(symbols)}
        self._id_of_symbol: dict[str, int] = {s: i for i, s in enumerate(symbols)}
        self.system_event = b" "          # the latest System Event code
        self.apply: Callable[[tuple], int] = self._build()

    # ------------------------------------------------------------------ inspection

    def book(self, symbol: str) -> OrderBook:
        return self.books[self._id_of_symbol[symbol]]

    def symbol_id(self, symbol: str) -> int:
        """The symbol's id, or -1 when it is not configured."""
        return self._id_of_symbol.get(symbol, -1)

    @property
    def messages_applied(self) -> int:
        return self.counters[MESSAGES]

    @property
    def system_events(self) -> int:
        return self.counters[SYSTEM_EVENTS]

    def counter_values(self) -> dict[str, int]:
        """The counters by name (tests, tools; the agent reads ``counters`` directly)."""
        return dict(zip(COUNTER_NAMES, self.counters))

    # ------------------------------------------------------------------ a new session (rare, not hot)

    def clear(self) -> None:
        """Forget the session: every order and level (``OrderBook.reset``), trading state, last
        trade and timestamp, the directory and the scanner's locate map (cleared in place: the
        scanner and the handlers hold them). A rebuild from sequence 1 or a new session starts
        here; the counters keep counting and ``update_sequence`` keeps rising."""
        book_of_locate = self.book_of_locate
        subscribed = self.subscribed_locates
        for book in self.books:
            if book.locate is not None:
                book_of_locate[book.locate] = None
                subscribed[book.locate] = 0
                book.locate = None
            book.reset()
            book.trading_state = b" "
            book.last_trade_price = book.last_trade_shares = 0
            book.last_trade_aggressor = book.last_trade_timestamp = 0
            book.last_timestamp = 0
        self.system_event = b" "

    # ------------------------------------------------------------------ the directory (rare, not hot)

    def _directory(self, raw) -> int:
        locate = raw[1]
        sid = self._id_of_stock.get(raw[4].rstrip(b" "), -1)
        book_of_locate = self.book_of_locate
        subscribed = self.subscribed_locates
        counters = self.counters
        holder = book_of_locate[locate]
        if holder is not None and holder.symbol_id != sid:     # today the locate names another symbol
            holder.locate = None
            book_of_locate[locate] = None
            subscribed[locate] = 0
        if sid < 0:
            counters[UNSUBSCRIBED_DIRECTORY] += 1
            return -1
        book = self.books[sid]
        book.last_timestamp = raw[3]
        old = book.locate
        if old != locate:
            if old is not None:
                counters[DIRECTORY_CHANGES] += 1
                book_of_locate[old] = None
                subscribed[old] = 0
            book.locate = locate
            book_of_locate[locate] = book
            subscribed[locate] = 1
        if book.trading_state == b" ":
            book.trading_state = b"T"
            return sid
        return -1

    # ------------------------------------------------------------------ the hot path

    def _build(self):
        """The ``apply`` function and its 256 handlers, as closures over this set's state."""
        book_of_locate = self.book_of_locate
        counters = self.counters
        bookset = self
        # P's buy/sell indicator is the resting non-displayed order's side: the taker is the other one
        taker_of_resting = bytearray(256)
        taker_of_resting[ord("B")], taker_of_resting[ord("S")] = ord("S"), ord("B")

        def ignored(raw):
            counters[IGNORED] += 1
            return -1

        def system(raw):
            counters[SYSTEM_EVENTS] += 1
            bookset.system_event = raw[4]
            return -1

        def trading_action(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            state = raw[5]
            if state != book.trading_state:
                book.trading_state = state
                return book.symbol_id
            return -1

        def add(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            if book.add(raw[4], raw[5] == b"B", raw[8], raw[6]):
                return book.symbol_id
            return -1

        def executed(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            trades = book.trades
            if book.execute(raw[4], raw[5]) or book.trades != trades:
                return book.symbol_id
            return -1

        def executed_with_price(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            printable = raw[7] == b"Y"
            if book.execute_at(raw[4], raw[5], raw[8], printable) or printable:
                return book.symbol_id
            return -1

        def cancel(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            if book.cancel(raw[4], raw[5]):
                return book.symbol_id
            return -1

        def delete(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            if book.delete(raw[4]):
                return book.symbol_id
            return -1

        def replace(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            if book.replace(raw[4], raw[5], raw[6], raw[7]):
                return book.symbol_id
            return -1

        def trade(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            book.trade(raw[8], raw[6], taker_of_resting[raw[5][0]])
            return book.symbol_id

        def cross_trade(raw):
            book = book_of_locate[raw[1]]
            if book is None:
                counters[UNSUBSCRIBED] += 1
                return -1
            book.last_timestamp = raw[3]
            if not raw[4]:                  # a cross that matched nothing: no trade
                return -1
            book.trade(raw[6], raw[4])
            return book.symbol_id

        def broken_trade(raw):
            counters[BROKEN_TRADES] += 1
            return -1

        handlers = [ignored] * 256
        for code, handler in (("S", system), ("R", self._directory), ("H", trading_action), ("A", add), ("F", add),
                              ("E", executed), ("C", executed_with_price), ("X", cancel), ("D", delete),
                              ("U", replace), ("P", trade), ("Q", cross_trade), ("B", broken_trade)):
            handlers[ord(code)] = handler
        self._handlers = handlers

        def apply(raw) -> int:
            """One raw tuple; returns the symbol id whose published state changed, else -1."""
            counters[MESSAGES] += 1
            return handlers[raw[0][0]](raw)

        return apply
