"""``on_trade`` for every print and the Book's depth, counts, flags and timestamps, through the host.

A print is new when the update's ``trade_sequence`` moves, not when its price or size differ from the previous
update's: two identical prints in a row are two calls. Conflation (several updates of a symbol queued at once)
runs ``on_book`` once but never skips a print; a print lost before the host (a jump in the sequence) is counted.
"""
from __future__ import annotations

import pytest

from appliance.messages.catalog import (
    BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED, BOOK_FLAG_STALE,
)
from appliance.messages.codes import Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import Book, Level, Strategy, Trade
from strategy_harness import Harness, strategy_layout


class Prints(Strategy):
    def on_start(self):
        self.events = []

    def on_trade(self, trade):
        self.events.append(("trade", trade))

    def on_book(self, book):
        self.events.append(("book", book.symbol, book.bid_price))


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


def trades(h) -> list[Trade]:
    return [e[1] for e in h.strategy.events if e[0] == "trade"]


def test_two_identical_prints_in_a_row_are_two_trades(memory):
    h = Harness(memory, Prints)
    h.book("AAPL", [(100, 5)], [(101, 5)], last=(100, 50), trade_seq=1)
    h.book("AAPL", [(100, 5)], [(101, 5)], last=(100, 50), trade_seq=2)
    assert [(t.price, t.shares, t.sequence) for t in trades(h)] == [(100, 50, 1), (100, 50, 2)]
    h.book("AAPL", [(99, 5)], [(101, 5)], last=(100, 50), trade_seq=2)     # a book change, no new print
    assert len(trades(h)) == 2 and h.host.stats.trades == 2


def test_a_trade_carries_its_facts_and_is_immutable(memory):
    h = Harness(memory, Prints)
    h.book("MSFT", [(100, 5)], [(101, 5)], last=(101, 7), trade_seq=41, aggressor=Side.BUY, t_trade=123, t_rx=456)
    h.book("MSFT", [(100, 5)], [(101, 5)], last=(100, 8), trade_seq=42, aggressor=Side.SELL, t_trade=124)
    h.book("MSFT", [(100, 5)], [(101, 5)], last=(100, 9), trade_seq=43, aggressor=0, t_trade=125)
    first, second, third = trades(h)
    assert first == Trade("MSFT", 101, 7, Side.BUY, 41, 123, 456)
    assert (second.aggressor, third.aggressor) == (Side.SELL, None) and second.t_exchange_ns == 124
    assert first.aggressor is Side.BUY and third.t_rx_ns == 1111
    with pytest.raises(AttributeError):
        first.price = 1
    book = h.strategy.book("MSFT")
    assert (book.trade_sequence, book.last_trade, book.last_trade_aggressor, book.last_trade_t_exchange_ns) == \
        (43, (100, 9), None, 125)
    h.book("MSFT", [(100, 5)], [(101, 5)], last=(100, 9), trade_seq=43, aggressor=Side.SELL, t_trade=125)
    assert book.last_trade_aggressor is Side.SELL and len(trades(h)) == 3
    aapl = h.strategy.book("AAPL")
    assert (aapl.trade_sequence, aapl.last_trade, aapl.last_trade_aggressor) == (0, (0, 0), None)


def test_conflated_updates_deliver_every_print_and_on_book_once(memory):
    h = Harness(memory, Prints)
    for i in range(10):              # ten identical prints queued at once, each with its own update
        h.book("AAPL", [(100 + i, 5)], [(200, 5)], last=(150, 10), trade_seq=i + 1, t_rx=i, step=False)
    h.book("SPY", [(300, 1)], [(301, 1)], step=False)
    h.step()
    assert [t.sequence for t in trades(h)] == list(range(1, 11))
    assert [t.t_rx_ns for t in trades(h)] == list(range(10))
    assert [e for e in h.strategy.events if e[0] == "book"] == [("book", "AAPL", 109), ("book", "SPY", 300)]
    assert h.host.stats.book_updates_conflated == 9 and h.host.stats.trades_missed == 0


def test_a_gap_in_the_sequence_is_counted_and_the_print_still_delivered(memory):
    h = Harness(memory, Prints)
    h.book("AAPL", [(100, 5)], [], last=(100, 1), trade_seq=5)       # a fresh host's first update: no gap
    h.book("AAPL", [(100, 5)], [], last=(100, 1), trade_seq=9)       # 6, 7, 8 went missing (ring was full)
    assert [t.sequence for t in trades(h)] == [5, 9] and h.host.stats.trades_missed == 3
    h.book("AAPL", [(100, 5)], [], last=(100, 1), trade_seq=1)       # the feed restarted: a new count, no gap
    assert [t.sequence for t in trades(h)] == [5, 9, 1] and h.host.stats.trades_missed == 3


def test_a_strategy_without_on_trade_costs_no_trade_objects(memory):
    class Quiet(Strategy):
        pass

    h = Harness(memory, Quiet)
    h.book("AAPL", [(100, 5)], [], last=(100, 1), trade_seq=1)
    assert h.host.stats.trades == 0 and h.host.stats.book_updates == 1


def test_book_levels_with_order_counts(memory):
    h = Harness(memory, Prints)
    book = h.strategy.book("AAPL")
    assert book.bid_levels == () and book.levels(Side.SELL) == ()
    h.book("AAPL", [(100, 50, 3), (99, 20, 1), (98, 5, 2), (97, 1, 1), (96, 7, 4)], [(101, 10, 1), (103, 30, 2)])
    assert book.bid_levels == (Level(100, 50, 3), Level(99, 20, 1), Level(98, 5, 2), Level(97, 1, 1), Level(96, 7, 4))
    assert book.ask_levels == (Level(101, 10, 1), Level(103, 30, 2)) == book.levels(Side.SELL)
    assert book.levels(Side.BUY) == book.bid_levels and book.bid_levels[0].orders == 3
    assert book.bids == tuple((lv.price, lv.shares) for lv in book.bid_levels)       # bids/asks unchanged
    with pytest.raises(ValueError, match="Side.BUY or Side.SELL"):
        book.levels(Side.SELL_SHORT)


@pytest.mark.parametrize("flags, expected", [
    (0, dict(stale=False, inconsistent=False, crossed=False, locked=False, halted=False)),
    (BOOK_FLAG_STALE, dict(stale=True, inconsistent=False, crossed=False, locked=False, halted=False)),
    (BOOK_FLAG_INCONSISTENT, dict(stale=True, inconsistent=True, crossed=False, locked=False, halted=False)),
    (BOOK_FLAG_CROSSED, dict(stale=False, inconsistent=False, crossed=True, locked=False, halted=False)),
    (BOOK_FLAG_LOCKED, dict(stale=False, inconsistent=False, crossed=False, locked=True, halted=False)),
    (BOOK_FLAG_HALTED, dict(stale=False, inconsistent=False, crossed=False, locked=False, halted=True)),
])
def test_each_flag_is_a_documented_property(memory, flags, expected):
    h = Harness(memory, Prints)
    h.book("AAPL", [(100, 5)], [(101, 5)], flags=flags, t_rx=77)
    book = h.strategy.book("AAPL")
    assert {name: getattr(book, name) for name in expected} == expected
    assert (book.t_exchange_ns, book.t_rx_ns) == (5, 77)
    for name in (*expected, "t_exchange_ns", "t_rx_ns", "trade_sequence", "bid_levels", "ask_levels",
                 "last_trade_aggressor", "last_trade_t_exchange_ns"):
        prop = getattr(Book, name)
        assert isinstance(prop, property) and prop.__doc__, name
        with pytest.raises(AttributeError):
            setattr(book, name, 1)


def test_trade_is_a_value():
    trade = Trade("AAPL", 1, 2, None, 3, 4, 5)
    assert trade == Trade("AAPL", 1, 2, None, 3, 4, 5) and hash(trade) == hash(Trade("AAPL", 1, 2, None, 3, 4, 5))
    assert trade._fields == (
        "symbol", "price", "shares", "aggressor", "sequence", "t_exchange_ns", "t_rx_ns")
