"""The facts of each print and the order counts of each level, as the Python reference books and outputs give
them (the compiled path must write the same bytes: tests/feed/test_feed_fast_diff.py): every print numbered
(``trade_sequence``: two identical prints are two numbers), its aggressor where ITCH gives it (E and C against a
resting order: the other side; P: the other side of its buy/sell indicator; Q: none), its own exchange
timestamp; and per level the orders resting there, against a book built by hand."""
from __future__ import annotations

import pytest

from appliance.feed.book import OrderBook
from appliance.feed.books import BookSet
from appliance.feed.outputs import BookOutputs
from appliance.messages.catalog import BOOK_DEPTH, BOOK_UPDATE
from appliance.messages.codes import Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import Strategy
from itch_raw import add, directory, raw
from strategy_harness import SYMBOLS, Harness, strategy_layout

AAPL = 7
MIDNIGHT = 1_700_000_000_000_000_000
BUY, SELL = Side.BUY.value, Side.SELL.value


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


class Feed:
    """BookSet + BookOutputs on the layout's ring: packets in, the BookUpdates they made out."""

    def __init__(self, memory: SharedMemory) -> None:
        self.ring = memory.ring("book_updates", "consumer")
        self.buffer = memory.ring_buffer("book_updates")
        self.market_state = memory.market_state_writer()
        self.outputs = BookOutputs(memory.ring("book_updates", "producer"), self.buffer, self.market_state)
        self.outputs.feed_stale = False
        self.outputs.midnight_ns = MIDNIGHT
        self.books = BookSet(SYMBOLS, BOOK_DEPTH)
        self.books.apply(directory("AAPL", AAPL))

    def packet(self, *messages) -> list[dict]:
        self.outputs.publish_packet(iter(messages), self.books, 1, 5)
        updates = []
        while (offset := self.ring.peek()) >= 0:
            updates.append(BOOK_UPDATE.as_dict(self.buffer, offset))
            self.ring.release()
        return updates


def execute(ref, shares, ts=4):
    return raw("E", AAPL, ts, order_reference_number=ref, executed_shares=shares, match_number=ref)


def execute_at(ref, shares, price, printable="Y", ts=4):
    return raw("C", AAPL, ts, order_reference_number=ref, executed_shares=shares, match_number=ref,
               printable=printable, execution_price=price)


def hidden(side, shares, price, ts=6):
    return raw("P", AAPL, ts, order_reference_number=0, buy_sell_indicator=side, shares=shares, stock="AAPL",
               price=price, match_number=77)


def cross(shares, price, ts=8):
    return raw("Q", AAPL, ts, shares=shares, stock="AAPL", cross_price=price, match_number=78, cross_type="O")


def trade_facts(update) -> tuple:
    return (update["trade_sequence"], update["last_trade_price"], update["last_trade_shares"],
            update["last_trade_aggressor"], update["last_trade_t_exchange_ns"] - MIDNIGHT)


def test_two_identical_prints_in_one_packet_are_two_numbered_updates(memory):
    feed = Feed(memory)
    try:
        updates = feed.packet(hidden("B", 100, 1_000_000), hidden("B", 100, 1_000_000))
        assert [trade_facts(u) for u in updates] == [(1, 1_000_000, 100, SELL, 6), (2, 1_000_000, 100, SELL, 6)]
        updates = feed.packet(hidden("B", 100, 1_000_000))        # and again in the next packet
        assert [u["trade_sequence"] for u in updates] == [3]
    finally:
        feed.market_state.close()


def test_aggressor_and_timestamp_of_each_kind_of_print(memory):
    feed = Feed(memory)
    try:
        feed.packet(add(AAPL, 1, "B", 100, "AAPL", 999_000), add(AAPL, 2, "S", 100, "AAPL", 1_001_000))
        steps = [
            (execute(1, 10, ts=11), (1, 999_000, 10, SELL, 11)),                  # E on a resting buy: a seller took
            (execute(2, 10, ts=12), (2, 1_001_000, 10, BUY, 12)),                 # E on a resting sell
            (execute_at(1, 5, 998_000, ts=13), (3, 998_000, 5, SELL, 13)),        # C on a resting buy
            (execute_at(2, 5, 1_002_000, ts=14), (4, 1_002_000, 5, BUY, 14)),     # C on a resting sell
            (execute_at(99, 5, 1_000_000, ts=15), (5, 1_000_000, 5, 0, 15)),      # C naming no order we hold
            (hidden("B", 7, 1_000_100, ts=16), (6, 1_000_100, 7, SELL, 16)),      # P: the indicator is the resting side
            (hidden("S", 8, 1_000_200, ts=17), (7, 1_000_200, 8, BUY, 17)),
            (cross(1000, 1_000_300, ts=18), (8, 1_000_300, 1000, 0, 18)),         # Q: no aggressor
        ]
        for message, facts in steps:
            (update,) = feed.packet(message)
            assert trade_facts(update) == facts, message
        # a later update without a print keeps the last print's facts, its own timestamp moves on
        (update,) = feed.packet(add(AAPL, 3, "B", 10, "AAPL", 999_500, ts=40))
        assert trade_facts(update) == (8, 1_000_300, 1000, 0, 18) and update["t_exchange_ns"] == MIDNIGHT + 40
        # a non-printable C is no print
        (update,) = feed.packet(execute_at(3, 1, 999_500, printable="N", ts=41))
        assert update["trade_sequence"] == 8
    finally:
        feed.market_state.close()


def test_a_new_session_keeps_numbering_prints(memory):
    """BookSet.clear (a new session, a rebuild) forgets the last trade but never reuses a trade number."""
    feed = Feed(memory)
    try:
        feed.packet(hidden("S", 1, 100))
        feed.books.clear()
        feed.books.apply(directory("AAPL", AAPL))
        book = feed.books.book("AAPL")
        assert (book.trades, book.last_trade_price, book.last_trade_aggressor, book.last_trade_timestamp) == \
            (1, 0, 0, 0)
        assert [u["trade_sequence"] for u in feed.packet(hidden("S", 1, 100))] == [2]
    finally:
        feed.market_state.close()


def counts(book: OrderBook) -> tuple[list[int], list[int]]:
    return book.order_counts(True), book.order_counts(False)


def test_order_counts_per_level_against_a_hand_built_book():
    book = OrderBook(0, "AAPL", depth=3)
    for ref, is_buy, price, shares in [(1, True, 100, 10), (2, True, 100, 20), (3, True, 99, 5), (4, True, 98, 1),
                                       (5, True, 97, 1), (6, True, 97, 2), (7, False, 101, 3), (8, False, 101, 4),
                                       (9, False, 101, 5)]:
        book.add(ref, is_buy, price, shares)
    assert counts(book) == ([2, 1, 1, 2], [3])
    book.execute(1, 4)                  # partial: the order stays, so does the count
    book.cancel(2, 5)
    assert counts(book) == ([2, 1, 1, 2], [3]) and book.levels(True)[0] == (100, 21)
    book.execute(1, 6)                  # the rest of order 1: it leaves its level
    assert counts(book) == ([1, 1, 1, 2], [3])
    book.replace(7, 10, 9, 101)         # same price, new size: still three orders there
    assert counts(book) == ([1, 1, 1, 2], [3]) and book.levels(False) == [(101, 18)]
    book.replace(8, 11, 4, 102)         # to another price: one order moves
    assert counts(book) == ([1, 1, 1, 2], [2, 1])
    book.delete(3)                      # a level empties and goes
    assert counts(book) == ([1, 1, 2], [2, 1])
    book.replace(4, 12, 1, 100)         # joins the best bid
    assert counts(book) == ([2, 2], [2, 1])
    book.add(13, True, 100, 0)          # refused (0 shares): counts nothing
    book.add(12, True, 100, 5)          # refused (duplicate): counts nothing
    assert counts(book) == ([2, 2], [2, 1])
    levels, out = [-1] * 12, [-1] * 6
    book.snapshot_into(levels, 0, out)  # top depth (3) of each side, zero padded
    assert out == [2, 2, 0, 2, 1, 0] and levels[:6] == [100, 97, 0, 16, 3, 0]
    book.reset()
    assert counts(book) == ([], [])


def test_order_counts_reach_the_book_update_and_saturate(memory):
    feed = Feed(memory)
    try:
        (update,) = feed.packet(*(add(AAPL, ref, "B", 10, "AAPL", 1_000_000 - (ref % 3) * 100) for ref in range(1, 8)),
                                add(AAPL, 50, "S", 10, "AAPL", 1_000_500))
        assert [update[f"bid_orders_{i}"] for i in range(BOOK_DEPTH)] == [2, 3, 2, 0, 0]
        assert [update[f"bid_shares_{i}"] for i in range(3)] == [20, 30, 20]
        assert [update[f"ask_orders_{i}"] for i in range(BOOK_DEPTH)] == [1, 0, 0, 0, 0]
        feed.packet(*(add(AAPL, 1000 + ref, "S", 1, "AAPL", 1_000_500) for ref in range(0x10000)))
        book = feed.books.book("AAPL")
        assert book.order_counts(False)[0] == 0x10001
        (update,) = feed.packet(execute(50, 1))
        assert update["ask_orders_0"] == 0xFFFF and update["ask_shares_0"] == 0x10000 + 9
    finally:
        feed.market_state.close()


class Prints(Strategy):
    def on_start(self):
        self.trades = []

    def on_trade(self, trade):
        self.trades.append(trade)


def test_identical_prints_from_the_feed_reach_on_trade_twice(memory):
    """The feed's updates, as the host reads them: two identical P prints in one packet are two calls."""
    feed = Feed(memory)
    harness = Harness(memory, Prints)
    try:
        feed.outputs.publish_packet(iter([hidden("S", 100, 1_000_000), hidden("S", 100, 1_000_000)]), feed.books,
                                    1, 5)
        harness.step()
        trades = harness.strategy.trades
        assert [tuple(t) for t in trades] == [("AAPL", 1_000_000, 100, Side.BUY, 1, MIDNIGHT + 6, 5),
                                              ("AAPL", 1_000_000, 100, Side.BUY, 2, MIDNIGHT + 6, 5)]
    finally:
        feed.market_state.close()
