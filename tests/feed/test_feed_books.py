"""BookSet: dispatch of hand-made raw tuples, the directory and the scanner's locate map, trading
states, errors counted and latched; then a simulated exchange day of 100,000+ ITCH messages through
the BlockScanner into a BookSet, checked against the tests' ITCH reader and the engine's own books."""
from __future__ import annotations

import pytest

from appliance.exchange.participants import BackgroundFlow
from appliance.exchange.venue import Venue
from appliance.feed.books import (
    BROKEN_TRADES, COUNTER_NAMES, CROSSED, DIRECTORY_CHANGES, DUPLICATE_ADD, IGNORED, LOCKED, MESSAGES,
    OVER_EXECUTION, SYSTEM_EVENTS, UNKNOWN_ORDER, UNSUBSCRIBED, UNSUBSCRIBED_DIRECTORY, BookSet,
)
from appliance.wire import itch
from itch_books import ItchBooks
from itch_raw import action, add, directory, raw

def bookset(symbols=("AAPL", "MSFT"), depth=2, **kw):
    books = BookSet(list(symbols), depth, **kw)
    books.apply(directory("AAPL", 7))
    books.apply(directory("MSFT", 9))
    return books


# ---------------------------------------------------------------- construction and directory

def test_construction_and_names():
    books = BookSet(["AAPL", "MSFT", "SPY"], depth=3)
    assert [b.symbol for b in books.books] == ["AAPL", "MSFT", "SPY"]
    assert [b.symbol_id for b in books.books] == [0, 1, 2] and all(b.depth == 3 for b in books.books)
    assert books.book("MSFT") is books.books[1] and books.symbol_id("SPY") == 2 and books.symbol_id("X") == -1
    assert len(books.subscribed_locates) == 65536 and not any(books.subscribed_locates)
    assert len(books.book_of_locate) == 65536 and books.book_of_locate.count(None) == 65536
    assert len(COUNTER_NAMES) == len(books.counters) == len(set(COUNTER_NAMES))
    assert books.COUNTER_NAMES == BookSet.COUNTER_NAMES == COUNTER_NAMES
    assert all(b.locate is None for b in books.books)
    assert books.counter_values() == dict.fromkeys(COUNTER_NAMES, 0)
    assert all(b.counters is books.counters for b in books.books)
    mine = bytearray(65536)
    assert BookSet(["AAPL"], subscribed_locates=mine).subscribed_locates is mine
    for bad in (["AAPL", "AAPL"], ["TOOLONGSYM"], [" AAPL"], [""]):
        with pytest.raises(ValueError):
            BookSet(bad)
    with pytest.raises(ValueError):
        BookSet(["AAPL"], subscribed_locates=bytearray(10))


def test_directory_maps_locates_and_opens_the_scanner_filter():
    subscribed = bytearray(65536)
    books = BookSet(["AAPL", "MSFT"], 2, subscribed)
    assert books.apply(directory("AAPL", 7)) == 0          # trading state went from unknown to T
    assert books.apply(directory("TSLA", 8)) == -1
    assert books.apply(directory("MSFT", 9)) == 1
    assert subscribed[7] == subscribed[9] == 1 and sum(subscribed) == 2
    aapl, msft = books.books
    assert books.book_of_locate[7] is aapl and books.book_of_locate[9] is msft and books.book_of_locate[8] is None
    assert (aapl.locate, msft.locate) == (7, 9)
    assert aapl.trading_state == msft.trading_state == b"T"
    assert books.counters[UNSUBSCRIBED_DIRECTORY] == 1
    # the scanner now passes locates 7 and 9 only (and the always-pass types)
    scanner = itch.BlockScanner(subscribed_locates=books.subscribed_locates)
    buffer = bytearray()
    for locate in (7, 8, 9):
        message = itch.encode({"type": "D", "stock_locate": locate, "tracking_number": 0, "timestamp": 5,
                               "order_reference_number": 1})
        buffer += len(message).to_bytes(2, "big") + message
    assert [r[1] for r in scanner.scan(buffer)] == [7, 9] and scanner.filtered_out == 1
    # a repeated directory changes nothing; a new locate remaps
    assert books.apply(directory("AAPL", 7)) == -1 and books.counters[DIRECTORY_CHANGES] == 0
    aapl.trading_state = b"H"
    assert books.apply(directory("AAPL", 11, ts=50)) == -1
    assert aapl.trading_state == b"H"                      # a known state is not overwritten
    assert (aapl.locate, aapl.last_timestamp) == (11, 50)
    assert books.book_of_locate[7] is None and books.book_of_locate[11] is aapl
    assert subscribed[7] == 0 and subscribed[11] == 1 and books.counters[DIRECTORY_CHANGES] == 1
    # a locate given to a symbol we do not follow is closed for the old holder
    assert books.apply(directory("TSLA", 9)) == -1
    assert msft.locate is None and books.book_of_locate[9] is None and subscribed[9] == 0
    assert books.counters[UNSUBSCRIBED_DIRECTORY] == 2


def test_clear_forgets_the_session_and_a_new_directory_maps_afresh():
    books = bookset()
    aapl, msft = books.books
    books.apply(add(7, 1, "B", 100, "AAPL", 1000))
    books.apply(raw("D", 9, order_reference_number=42))         # unknown: latches MSFT inconsistent
    books.apply(action("AAPL", 7, "H"))
    books.apply(raw("P", 7, order_reference_number=0, buy_sell_indicator="B", shares=5, stock="AAPL", price=990,
                    match_number=1))
    books.apply(raw("S", 0, event_code="Q"))
    counters = list(books.counters)
    sequences = [b.update_sequence for b in books.books]
    books.clear()
    for book in books.books:
        assert book.locate is None and book.order_count == 0 and book.levels(True) == [] == book.levels(False)
        assert book.trading_state == b" " and (book.last_trade_price, book.last_trade_shares) == (0, 0)
        assert not book.inconsistent and book.last_timestamp == 0
    assert [b.update_sequence for b in books.books] > sequences                  # still rising
    assert not any(books.subscribed_locates) and books.book_of_locate.count(None) == 65536
    assert books.system_event == b" " and list(books.counters) == counters
    # the next session may give other locates; the same order reference is new again
    books.apply(directory("MSFT", 7))
    assert books.book_of_locate[7] is msft and books.subscribed_locates[7] == 1 and msft.trading_state == b"T"
    assert books.apply(add(7, 1, "S", 10, "MSFT", 2000)) == 1 and msft.orders() == {1: (b"S", 2000, 10)}
    assert books.apply(add(9, 2, "B", 10, "AAPL", 1000)) == -1 and aapl.order_count == 0   # AAPL has no locate


def test_messages_for_locates_without_a_book_are_counted_not_applied():
    books = bookset()
    before = books.counters[MESSAGES]
    for message in (add(8, 1, "B", 100, "TSLA", 100), raw("E", 8, order_reference_number=1, executed_shares=1,
                                                            match_number=1),
                    raw("D", 0, order_reference_number=1), action("TSLA", 8, "H"),
                    raw("P", 8, order_reference_number=0, buy_sell_indicator="B", shares=1, stock="TSLA", price=1,
                        match_number=2)):
        assert books.apply(message) == -1
    assert books.counters[UNSUBSCRIBED] == 5 and books.counters[MESSAGES] == before + 5
    assert all(b.order_count == 0 for b in books.books)
    assert books.counters[UNKNOWN_ORDER] == 0


# ---------------------------------------------------------------- dispatch

def test_each_order_message_applies_and_answers_the_symbol_id():
    books = bookset()
    aapl, msft = books.books
    assert books.apply(add(9, 1, "B", 100, "MSFT", 4_200_000, ts=10)) == 1
    assert books.apply(add(9, 2, "S", 200, "MSFT", 4_210_000, mpid="ALGO")) == 1
    assert books.apply(add(9, 3, "S", 300, "MSFT", 4_230_000)) == 1
    assert books.apply(add(9, 4, "S", 300, "MSFT", 4_240_000)) == -1       # beyond depth 2
    assert msft.levels(False) == [(4_210_000, 200), (4_230_000, 300), (4_240_000, 300)]
    assert msft.levels(True) == [(4_200_000, 100)] and aapl.order_count == 0
    # E at the resting price: the last trade changes even beyond the depth
    assert books.apply(raw("E", 9, 11, order_reference_number=4, executed_shares=100, match_number=1)) == 1
    assert (msft.last_trade_price, msft.last_trade_shares, msft.last_timestamp) == (4_240_000, 100, 11)
    # C: printable changes the last trade; non-printable only the book
    assert books.apply(raw("C", 9, 12, order_reference_number=4, executed_shares=50, match_number=2,
                           printable="Y", execution_price=4_239_900)) == 1
    assert (msft.last_trade_price, msft.last_trade_shares) == (4_239_900, 50)
    assert books.apply(raw("C", 9, 13, order_reference_number=4, executed_shares=50, match_number=3,
                           printable="N", execution_price=4_239_800)) == -1
    assert books.apply(raw("C", 9, 13, order_reference_number=3, executed_shares=50, match_number=4,
                           printable="N", execution_price=4_239_800)) == 1
    assert (msft.last_trade_price, msft.last_trade_shares) == (4_239_900, 50)
    assert msft.levels(False) == [(4_210_000, 200), (4_230_000, 250), (4_240_000, 100)]
    # X, D, U
    assert books.apply(raw("X", 9, 14, order_reference_number=3, canceled_shares=50)) == 1
    assert books.apply(raw("X", 9, 14, order_reference_number=4, canceled_shares=50)) == -1
    assert books.apply(raw("D", 9, 15, order_reference_number=2)) == 1
    assert books.apply(raw("U", 9, 16, original_order_reference_number=1, new_order_reference_number=5,
                           shares=500, price=4_190_000)) == 1
    assert msft.orders() == {3: (b"S", 4_230_000, 200), 4: (b"S", 4_240_000, 50), 5: (b"B", 4_190_000, 500)}
    assert msft.levels(True) == [(4_190_000, 500)]
    # P and Q change only the last trade; B is counted
    sequence = msft.update_sequence
    assert books.apply(raw("P", 9, 17, order_reference_number=0, buy_sell_indicator="B", shares=300,
                           stock="MSFT", price=4_200_100, match_number=5)) == 1
    assert (msft.last_trade_price, msft.last_trade_shares) == (4_200_100, 300)
    assert books.apply(raw("Q", 9, 18, shares=1_000, stock="MSFT", cross_price=4_201_000, match_number=6,
                           cross_type="C")) == 1
    assert (msft.last_trade_price, msft.last_trade_shares, msft.last_timestamp) == (4_201_000, 1_000, 18)
    assert books.apply(raw("Q", 9, 19, shares=0, stock="MSFT", cross_price=0, match_number=0,
                           cross_type="C")) == -1
    assert books.apply(raw("B", 0, 20, match_number=5)) == -1
    assert msft.update_sequence == sequence and msft.last_trade_price == 4_201_000
    assert books.counters[BROKEN_TRADES] == 1
    c = books.counter_values()
    assert c["unknown_order"] == c["over_execution"] == c["duplicate_add"] == c["unsubscribed"] == 0
    assert not msft.inconsistent and aapl.order_count == 0


def test_system_events_and_types_the_books_ignore():
    books = BookSet(["AAPL"])
    assert books.system_event == b" "
    for code in "OSQ":
        assert books.apply(raw("S", 0, event_code=code)) == -1
    assert books.system_event == b"Q" and books.system_events == books.counters[SYSTEM_EVENTS] == 3
    assert books.apply(raw("Y", 1, stock="AAPL", reg_sho_action="0")) == -1
    assert books.apply(raw("N", 1, stock="AAPL", interest_flag="B")) == -1
    assert books.counters[IGNORED] == 2
    assert books.messages_applied == 5


def test_trading_states():
    books = bookset()
    aapl = books.books[0]
    assert aapl.trading_state == b"T"
    assert books.apply(action("AAPL", 7, "H", ts=40)) == 0
    assert aapl.trading_state == b"H" and aapl.last_timestamp == 40
    assert books.apply(action("AAPL", 7, "H")) == -1          # no change, nothing to publish
    for state in "PQT":
        assert books.apply(action("AAPL", 7, state)) == 0 and aapl.trading_state == state.encode()
    assert books.books[1].trading_state == b"T"
    # an H before the directory (NASDAQ's order) has no book to land in: counted
    fresh = BookSet(["AAPL"])
    assert fresh.apply(action("AAPL", 7, "H")) == -1 and fresh.counters[UNSUBSCRIBED] == 1
    assert fresh.books[0].trading_state == b" "


def test_errors_are_counted_and_latch_the_book_inconsistent():
    books = bookset()
    aapl, msft = books.books
    books.apply(add(7, 1, "B", 100, "AAPL", 1_000_000))
    assert books.apply(raw("D", 7, order_reference_number=99)) == -1
    assert books.apply(raw("E", 7, order_reference_number=98, executed_shares=1, match_number=1)) == -1
    assert books.apply(raw("X", 7, order_reference_number=97, canceled_shares=1)) == -1
    assert books.apply(raw("U", 7, original_order_reference_number=96, new_order_reference_number=95, shares=1,
                           price=1)) == -1
    assert books.counters[UNKNOWN_ORDER] == 4 and aapl.inconsistent and not msft.inconsistent
    assert books.apply(raw("E", 7, order_reference_number=1, executed_shares=150, match_number=2)) == 0
    assert books.counters[OVER_EXECUTION] == 1 and aapl.order_count == 0
    books.apply(add(9, 5, "S", 100, "MSFT", 4_000_000))
    assert books.apply(add(9, 5, "S", 100, "MSFT", 4_000_000)) == -1
    assert books.counters[DUPLICATE_ADD] == 1 and msft.inconsistent
    assert msft.levels(False) == [(4_000_000, 100)]
    aapl.reset()
    assert not aapl.inconsistent and books.counters[UNKNOWN_ORDER] == 4     # counters are not reset
    # crossed and locked transitions of any book land in the shared counters
    books.apply(add(9, 6, "B", 100, "MSFT", 4_000_000))
    books.apply(add(9, 7, "B", 100, "MSFT", 4_000_100))
    assert msft.crossed and (books.counters[LOCKED], books.counters[CROSSED]) == (1, 1)


# ---------------------------------------------------------------- a simulated exchange day

PRICES = {"AAPL": 1_900_000, "MSFT": 4_200_000, "SPY": 5_600_000, "QQQ": 4_800_000, "TSLA": 2_500_000}
FOLLOWED = ["MSFT", "NOPE", "AAPL", "QQQ"]        # NOPE is not listed today: its book stays empty
STEPS = 112_000
CHUNKS = 8
HALT_CHUNKS = {2: ("halt", "AAPL"), 3: ("halt", "QQQ"), 4: ("resume", "AAPL"), 6: ("resume", "QQQ"),
               7: ("halt", "SPY")}


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_000_000_000_000_000

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def engine_orders(venue, symbol):
    """The engine's displayed orders: what the ITCH feed shows."""
    return {ref: (o.side, o.price, o.leaves) for ref, o in venue.engine.book(symbol).resting().items() if o.displayed}


def as_str(orders):
    return {ref: (side.decode(), price, shares) for ref, (side, price, shares) in orders.items()}


class Day:
    """Runs the venue in chunks; after each, feeds the new ITCH through a BlockScanner into the
    BookSet (and unfiltered, tuple by tuple, into a second BookSet) and into ItchBooks, and records
    every comparison so the tests can assert on it."""

    def __init__(self) -> None:
        flow = BackgroundFlow(PRICES, rate=0, seed=21)
        self.venue = venue = Venue([(s, 100) for s in PRICES], {}, session="FEEDTEST01", send_packet=lambda p: None,
                                   clock=Clock(), background=flow)
        self.books = BookSet(FOLLOWED, depth=5)
        self.unfiltered = BookSet(FOLLOWED, depth=5)
        self.scanner = itch.BlockScanner(subscribed_locates=self.books.subscribed_locates)
        self.reference = ItchBooks()
        self.raws: list[tuple] = []                   # the tuples the scanner passed, for the rate measurement
        self.published: dict[int, int] = {}           # symbol id -> apply answers naming it
        self.checks: list[str] = []
        self.failures: list[str] = []
        self.states: list[tuple] = []
        self.sizes: list[tuple] = []                  # per checkpoint: order count of MSFT, AAPL, QQQ
        self.fed = 0
        venue.open()
        self.feed()
        self.compare("open")
        for chunk in range(CHUNKS):
            if chunk in HALT_CHUNKS:
                verb, symbol = HALT_CHUNKS[chunk]
                assert (venue.halt if verb == "halt" else venue.resume)(symbol)
            venue.run_background(STEPS // CHUNKS)
            venue.publisher.flush()
            self.feed()
            self.compare(f"chunk {chunk}")
            self.states.append(tuple(b.trading_state for b in self.books.books))
        venue.close()
        self.feed()
        self.compare("close")

    def feed(self) -> None:
        messages = self.venue.store.get(self.fed + 1, 10**9)
        self.fed += len(messages)
        buffer = bytearray()
        for message in messages:
            self.reference.apply(message)
            buffer += len(message).to_bytes(2, "big")
            buffer += message
            self.unfiltered.apply(itch.LAYOUT_BY_BYTE[message[0]].unpack_from(message, 0))
        apply = self.books.apply
        published = self.published
        for r in self.scanner.scan(buffer, final=True):
            self.raws.append(r)
            sid = apply(r)
            if sid >= 0:
                published[sid] = published.get(sid, 0) + 1

    def compare(self, when: str) -> None:
        self.checks.append(when)
        self.sizes.append(tuple(self.books.book(s).order_count for s in ("MSFT", "AAPL", "QQQ")))
        ref = self.reference
        for book, other in zip(self.books.books, self.unfiltered.books):
            symbol = book.symbol
            if symbol not in PRICES:
                if book.order_count or book.locate is not None:
                    self.failures.append(f"{when}: {symbol} has orders or a locate")
                continue
            expected = ref.resting(symbol)
            if as_str(book.orders()) != expected:
                self.failures.append(f"{when}: {symbol} orders differ from the ITCH reference")
            if expected != engine_orders(self.venue, symbol):
                self.failures.append(f"{when}: {symbol} ITCH reference differs from the engine")
            for is_buy, side in ((True, "B"), (False, "S")):
                levels = book.levels(is_buy)
                if levels != ref.levels(symbol, side):
                    self.failures.append(f"{when}: {symbol} {side} levels differ from the ITCH reference")
                engine_book = self.venue.engine.book(symbol)
                engine_levels = (engine_book.bids if is_buy else engine_book.asks)(displayed_only=True)
                if levels != engine_levels:
                    self.failures.append(f"{when}: {symbol} {side} levels differ from the engine")
                if levels != other.levels(is_buy):
                    self.failures.append(f"{when}: {symbol} {side} levels differ between filtered and not")
            if book.orders() != other.orders() or book.trading_state != other.trading_state:
                self.failures.append(f"{when}: {symbol} filtered and unfiltered books differ")
            if (book.trading_state == b"H") != ref.halted[symbol]:
                self.failures.append(f"{when}: {symbol} trading state {book.trading_state!r}")
            if book.inconsistent:
                self.failures.append(f"{when}: {symbol} is inconsistent")


@pytest.fixture(scope="module")
def day() -> Day:
    return Day()


def test_the_day_is_big_enough_and_the_reference_saw_no_errors(day):
    assert len(day.venue.store) >= 100_000
    assert day.reference.errors == []
    assert day.scanner.malformed == 0 and day.scanner.filtered_out > 0
    assert day.scanner.decoded == len(day.raws) == day.books.messages_applied


def test_every_followed_book_equals_the_reference_and_the_engine_at_every_checkpoint(day):
    assert len(day.checks) == CHUNKS + 2
    assert day.failures == []
    books = day.books
    # the books were busy mid-day, a halted symbol's book drained (the flow only cancels there),
    # and at the close every order expired
    assert all(sum(counts) > 0 for counts in day.sizes[1:-1])
    assert all(max(counts[i] for counts in day.sizes) > 5 for i in range(3))
    assert day.sizes[4][1] == 0 and day.sizes[6][2] == 0        # AAPL after chunk 3, QQQ after chunk 5
    assert all(b.order_count == 0 and b.levels(True) == [] == b.levels(False) for b in books.books)


def test_books_were_not_empty_in_the_middle_of_the_day():
    """The close empties the books, so look at one mid-day state directly."""
    flow = BackgroundFlow(PRICES, rate=0, seed=5)
    venue = Venue([(s, 100) for s in PRICES], {}, session="FEEDTEST02", send_packet=lambda p: None,
                  clock=Clock(), background=flow)
    books = BookSet(FOLLOWED, depth=3)
    scanner = itch.BlockScanner(subscribed_locates=books.subscribed_locates)
    venue.open()
    venue.run_background(5_000)
    venue.publisher.flush()
    buffer = bytearray()
    for message in venue.store:
        buffer += len(message).to_bytes(2, "big") + message
    for r in scanner.scan(buffer, final=True):
        books.apply(r)
    for symbol in ("MSFT", "AAPL", "QQQ"):
        book = books.book(symbol)
        assert book.order_count > 3 and book.levels(True) and book.levels(False)
        assert as_str(book.orders()) == engine_orders(venue, symbol)
        engine_book = venue.engine.book(symbol)
        out = [0] * 12
        book.snapshot_into(out)
        pad = [(0, 0)] * 3
        bids = (engine_book.bids(displayed_only=True) + pad)[:3]
        asks = (engine_book.asks(displayed_only=True) + pad)[:3]
        assert out[0:3] == [p for p, _ in bids] and out[3:6] == [s for _, s in bids]
        assert out[6:9] == [p for p, _ in asks] and out[9:12] == [s for _, s in asks]
        assert book.best_bid() == bids[0] and book.best_ask() == asks[0]
        assert not book.crossed and not book.locked


def test_unsubscribed_symbols_never_reach_the_books(day):
    books, unfiltered = day.books, day.unfiltered
    c, u = books.counter_values(), unfiltered.counter_values()
    assert c["unsubscribed"] == 0                                      # the scanner dropped them first
    spy_tsla = sum(1 for m in day.venue.store if m[0] not in b"SRVW" and int.from_bytes(m[1:3], "big") in (3, 5))
    assert spy_tsla > 0 and u["unsubscribed"] == spy_tsla == day.scanner.filtered_out
    assert c["unsubscribed_directory"] == u["unsubscribed_directory"] == 2     # SPY and TSLA
    for name in ("unknown_order", "over_execution", "duplicate_add", "bad_shares", "crossed", "locked",
                 "directory_changes", "ignored"):
        assert c[name] == u[name] == 0, name
    assert c["system_events"] == 6 and books.system_event == b"C"
    assert books.book("NOPE").locate is None and books.book("MSFT").locate == 2
    assert sorted(i for i, v in enumerate(books.subscribed_locates) if v) == [1, 2, 4]


def test_halts_and_resumes_reach_the_trading_state(day):
    msft, nope, aapl, qqq = range(4)
    states = day.states
    assert states[0] == states[1] == (b"T", b" ", b"T", b"T")
    assert states[2][aapl] == b"H" and states[3][aapl] == b"H" and states[4][aapl] == b"T"
    assert states[3][qqq] == states[5][qqq] == b"H" and states[6][qqq] == b"T"
    assert all(s[msft] == b"T" and s[nope] == b" " for s in states)
    # a halted symbol only cancels, and every answer of apply names a followed, listed symbol
    assert set(day.published) == {msft, aapl, qqq}
    assert all(count > 1000 for count in day.published.values())


def test_last_trades_and_timestamps_follow_the_feed(day):
    ref = day.reference
    for symbol in ("MSFT", "AAPL", "QQQ"):
        book = day.books.book(symbol)
        trades = [t for t in ref.trades if t[0] == symbol]
        assert trades and (book.last_trade_shares, book.last_trade_price) == trades[-1][1:3]
        assert book.trades == len(trades)
        assert 0 < book.last_timestamp <= ref.last_timestamp
