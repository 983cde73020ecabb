"""OrderBook: every operation's levels and top-changed answer, errors counted not raised, crossed and
locked, the snapshot, and a property test against a naive model rebuilt from scratch."""
from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.feed.book import (
    BAD_SHARES, BOOK_COUNTER_NAMES, CROSSED, DUPLICATE_ADD, LOCKED, OVER_EXECUTION, UNKNOWN_ORDER, OrderBook,
)


def book_with(depth=3, orders=()):
    book = OrderBook(0, "AAPL", depth)
    for ref, side, price, shares in orders:
        book.add(ref, side == "B", price, shares)
    return book


def counts(book):
    return dict(zip(BOOK_COUNTER_NAMES, book.counters))


NO_ERRORS = dict.fromkeys(BOOK_COUNTER_NAMES, 0)


def snapshot(book):
    out = [None] * (4 * book.depth)
    book.snapshot_into(out)
    return out


# ---------------------------------------------------------------- construction

def test_a_new_book_is_empty_and_unknown():
    book = OrderBook(4, "MSFT", 2)
    assert (book.symbol_id, book.symbol, book.depth, book.locate) == (4, "MSFT", 2, None)
    assert book.trading_state == b" "
    assert (book.last_trade_price, book.last_trade_shares, book.last_timestamp, book.update_sequence) == (0, 0, 0, 0)
    assert book.best_bid() == book.best_ask() == (0, 0)
    assert book.levels(True) == book.levels(False) == [] and book.orders() == {} and book.order_count == 0
    assert not book.crossed and not book.locked and not book.inconsistent and book.last_error is None
    assert snapshot(book) == [0] * 8
    assert counts(book) == NO_ERRORS


def test_depth_and_counters_are_checked():
    with pytest.raises(ValueError):
        OrderBook(0, "X", 0)
    with pytest.raises(ValueError):
        OrderBook(0, "X", 1, array("q", [0, 0]))
    shared = array("q", [0] * 10)
    book = OrderBook(0, "X", 1, shared)
    book.delete(1)
    assert shared[UNKNOWN_ORDER] == 1


# ---------------------------------------------------------------- add

def test_add_new_level_at_top_inside_and_beyond_depth():
    book = OrderBook(0, "AAPL", 2)
    assert book.add(1, True, 1_000_000, 100) is True           # first bid
    assert book.add(2, True, 1_010_000, 200) is True           # new best bid
    assert book.add(3, True, 990_000, 300) is False            # third level, beyond depth 2
    assert book.add(4, True, 1_005_000, 50) is True            # new level at index 1
    assert book.levels(True) == [(1_010_000, 200), (1_005_000, 50), (1_000_000, 100), (990_000, 300)]
    assert book.add(5, True, 1_000_000, 10) is False           # existing level at index 2
    assert book.add(6, True, 1_005_000, 10) is True            # existing level at index 1
    assert book.add(7, False, 1_020_000, 100) is True          # asks: first level
    assert book.add(8, False, 1_030_000, 100) is True          # index 1
    assert book.add(9, False, 1_040_000, 100) is False         # index 2 (appended at the back)
    assert book.add(10, False, 1_025_000, 100) is True         # inserted at index 1
    assert book.add(11, False, 1_040_000, 5) is False
    assert book.levels(True) == [(1_010_000, 200), (1_005_000, 60), (1_000_000, 110), (990_000, 300)]
    assert book.levels(False) == [(1_020_000, 100), (1_025_000, 100), (1_030_000, 100), (1_040_000, 105)]
    assert book.best_bid() == (1_010_000, 200) and book.best_ask() == (1_020_000, 100)
    assert book.order_count == 11
    assert book.orders()[4] == (b"B", 1_005_000, 50) and book.orders()[9] == (b"S", 1_040_000, 100)
    assert book.update_sequence == 7                           # one per True above
    assert counts(book) == NO_ERRORS and not book.crossed


def test_add_exactly_at_the_depth_boundary():
    book = book_with(3, [(1, "S", 100, 1), (2, "S", 101, 1), (3, "S", 103, 1)])
    assert book.add(4, False, 102, 1) is True      # index 2 of depth 3: in the top
    assert book.add(5, False, 104, 1) is False     # index 4
    assert book.add(6, False, 103, 1) is False     # existing level now at index 3
    assert book.add(7, False, 102, 1) is True      # existing level at index 2


def test_duplicate_add_is_refused_and_latched():
    book = book_with(2, [(1, "B", 100, 10)])
    assert book.add(1, False, 200, 5) is False
    assert book.orders() == {1: (b"B", 100, 10)} and book.levels(False) == []
    assert book.last_error == "duplicate_add" and book.inconsistent
    assert book.counters[DUPLICATE_ADD] == 1


def test_zero_share_add_is_not_stored_and_not_latched():
    book = OrderBook(0, "X", 2)
    assert book.add(1, True, 100, 0) is False
    assert book.orders() == {} and book.levels(True) == []
    assert book.counters[BAD_SHARES] == 1 and book.last_error == "bad_shares" and not book.inconsistent


# ---------------------------------------------------------------- executions

def test_execute_partial_and_full_at_the_resting_price():
    book = book_with(2, [(1, "S", 200, 300), (2, "S", 200, 100), (3, "S", 201, 50), (4, "S", 202, 70)])
    assert book.execute(1, 100) is True
    assert (book.last_trade_price, book.last_trade_shares, book.trades) == (200, 100, 1)
    assert book.levels(False) == [(200, 300), (201, 50), (202, 70)] and book.orders()[1] == (b"S", 200, 200)
    assert book.execute(1, 200) is True                 # full: order gone, level keeps order 2
    assert 1 not in book.orders() and book.levels(False)[0] == (200, 100)
    assert book.execute(2, 100) is True                 # the level goes
    assert book.levels(False) == [(201, 50), (202, 70)]
    assert book.execute(4, 10) is True                  # index 1 of depth 2
    assert book.add(5, False, 203, 10) is False
    assert book.execute(5, 10) is False                 # a level beyond the depth goes: no change on top
    assert (book.last_trade_price, book.last_trade_shares, book.trades) == (203, 10, 5)
    assert book.levels(False) == [(201, 50), (202, 60)] and book.order_count == 2
    assert counts(book) == NO_ERRORS


def test_execute_with_price_printable_or_not():
    book = book_with(2, [(1, "B", 500, 100), (2, "B", 400, 100), (3, "B", 300, 100)])
    assert book.execute_at(1, 40, 505, True) is True
    assert (book.last_trade_price, book.last_trade_shares, book.trades) == (505, 40, 1)
    assert book.execute_at(1, 10, 490, False) is True   # the book changes; the last trade does not
    assert (book.last_trade_price, book.last_trade_shares, book.trades) == (505, 40, 1)
    assert book.execute_at(3, 100, 299, True) is False  # level 3 of depth 2 disappears
    assert (book.last_trade_price, book.last_trade_shares) == (299, 100)
    assert book.levels(True) == [(500, 50), (400, 100)]
    assert book.execute_at(1, 50, 500, False) is True
    assert book.levels(True) == [(400, 100)] and book.order_count == 1


def test_unknown_reference_is_counted_and_latched_on_every_order_message():
    book = book_with(2, [(1, "B", 100, 10)])
    before = book.levels(True)
    assert book.execute(9, 5) is False
    assert book.trades == 0                              # unknown price: no trade
    assert book.execute_at(9, 5, 101, True) is False
    assert (book.last_trade_price, book.last_trade_shares) == (101, 5)   # the message names the trade
    assert book.cancel(9, 5) is False
    assert book.delete(9) is False
    assert book.replace(9, 10, 5, 100) is False
    assert 10 not in book.orders()
    assert book.counters[UNKNOWN_ORDER] == 5 and book.inconsistent and book.last_error == "unknown_order"
    assert book.levels(True) == before


def test_over_execution_removes_the_order_and_latches():
    book = book_with(2, [(1, "B", 100, 10), (2, "B", 100, 5), (3, "B", 99, 7)])
    assert book.execute(1, 15) is True
    assert book.orders() == {2: (b"B", 100, 5), 3: (b"B", 99, 7)}
    assert book.levels(True) == [(100, 5), (99, 7)]      # only what the order held left the level
    assert book.last_trade_shares == 15                  # as the exchange printed it
    assert book.counters[OVER_EXECUTION] == 1 and book.inconsistent and book.last_error == "over_execution"
    assert book.cancel(3, 8) is True                     # cancel too much: the same
    assert book.levels(True) == [(100, 5)] and book.counters[OVER_EXECUTION] == 2
    assert book.execute_at(2, 6, 100, True) is True
    assert book.levels(True) == [] and book.counters[OVER_EXECUTION] == 3


def test_reset_clears_orders_and_the_latch():
    book = book_with(2, [(1, "B", 100, 10), (2, "S", 100, 10)])
    book.delete(7)
    book.trade(101, 3)
    book.trading_state = b"H"
    assert book.inconsistent and book.locked
    book.reset()
    assert book.orders() == {} and book.levels(True) == book.levels(False) == []
    assert not book.inconsistent and not book.locked and book.last_error is None
    assert (book.trading_state, book.last_trade_price) == (b"H", 101)
    assert book.add(1, True, 100, 10) is True


# ---------------------------------------------------------------- cancel, delete, replace, trade

def test_cancel_partial_and_whole():
    book = book_with(2, [(1, "S", 100, 10), (2, "S", 101, 10), (3, "S", 102, 10)])
    assert book.cancel(1, 4) is True and book.orders()[1] == (b"S", 100, 6)
    assert book.cancel(3, 4) is False and book.levels(False)[2] == (102, 6)
    assert book.cancel(2, 10) is True                    # all it holds: the order and the level go
    assert book.levels(False) == [(100, 6), (102, 6)] and 2 not in book.orders()
    assert book.cancel(1, 0) is False                    # nothing cancelled, nothing changed
    assert counts(book) == NO_ERRORS and book.trades == 0


def test_delete():
    book = book_with(2, [(1, "B", 100, 10), (2, "B", 99, 10), (3, "B", 98, 10), (4, "B", 98, 5)])
    assert book.delete(3) is False                       # beyond depth, level stays
    assert book.levels(True) == [(100, 10), (99, 10), (98, 5)]
    assert book.delete(4) is False                       # beyond depth, level goes
    assert book.delete(1) is True                        # the best
    assert book.levels(True) == [(99, 10)] and book.best_bid() == (99, 10)
    assert book.delete(1) is False and book.counters[UNKNOWN_ORDER] == 1


def test_replace_keeps_the_side_moves_the_order_and_loses_priority():
    book = book_with(2, [(1, "B", 100, 10), (2, "B", 99, 10), (3, "B", 98, 10), (4, "S", 105, 10)])
    assert book.replace(1, 11, 30, 97) is True            # from the best to beyond depth
    assert book.orders()[11] == (b"B", 97, 30) and 1 not in book.orders()
    assert book.levels(True) == [(99, 10), (98, 10), (97, 30)]
    assert book.replace(11, 12, 20, 96) is False          # beyond depth to beyond depth
    assert book.replace(12, 13, 20, 101) is True          # to a new best bid; the side stays B
    assert book.orders()[13] == (b"B", 101, 20)
    assert book.replace(4, 14, 10, 106) is True           # an ask stays an ask
    assert book.orders()[14] == (b"S", 106, 10)
    assert book.levels(True) == [(101, 20), (99, 10), (98, 10)] and book.levels(False) == [(106, 10)]
    assert counts(book) == NO_ERRORS


def test_replace_at_the_same_price():
    book = book_with(2, [(1, "B", 100, 10), (2, "B", 100, 5), (3, "B", 90, 1), (4, "B", 80, 1)])
    assert book.replace(1, 5, 10, 100) is False           # same price and size: the levels are the same
    assert book.replace(5, 6, 12, 100) is True            # grows
    assert book.replace(6, 7, 2, 100) is True             # shrinks
    assert book.levels(True) == [(100, 7), (90, 1), (80, 1)]
    assert book.replace(4, 8, 3, 80) is False             # beyond depth
    assert book.orders() == {2: (b"B", 100, 5), 3: (b"B", 90, 1), 7: (b"B", 100, 2), 8: (b"B", 80, 3)}


def test_replace_onto_a_live_reference_or_with_zero_shares():
    book = book_with(2, [(1, "B", 100, 10), (2, "S", 110, 10)])
    assert book.replace(1, 2, 10, 101) is True            # the old order goes, the new one is refused
    assert book.orders() == {2: (b"S", 110, 10)} and book.levels(True) == []
    assert book.counters[DUPLICATE_ADD] == 1 and book.inconsistent
    assert book.replace(2, 3, 0, 111) is True
    assert book.orders() == {} and book.counters[BAD_SHARES] == 1


def test_non_displayed_trade_changes_only_the_last_trade():
    book = book_with(2, [(1, "B", 100, 10)])
    sequence = book.update_sequence
    assert book.trade(105, 300) is None
    assert (book.last_trade_price, book.last_trade_shares, book.trades) == (105, 300, 1)
    assert book.levels(True) == [(100, 10)] and book.update_sequence == sequence


# ---------------------------------------------------------------- crossed, locked

def test_crossed_and_locked_follow_the_touch_and_transitions_are_counted():
    book = book_with(2, [(1, "B", 100, 10), (2, "S", 102, 10)])
    assert not book.crossed and not book.locked
    assert book.add(3, True, 102, 5) is True
    assert book.locked and not book.crossed and book.counters[LOCKED] == 1
    assert book.add(4, False, 101, 5) is True
    assert book.crossed and not book.locked and book.counters[CROSSED] == 1
    assert book.add(5, True, 101, 1) is True              # second-best bid: the touch does not move
    assert book.crossed and book.counters[CROSSED] == 1
    assert book.delete(4) is True                         # ask back to 102: locked again
    assert book.locked and not book.crossed and book.counters[LOCKED] == 2
    assert book.execute(3, 5) is True                     # bid falls to 101
    assert not book.locked and not book.crossed
    assert book.replace(5, 6, 1, 103) is True             # a bid moved through the ask
    assert book.crossed and book.counters[CROSSED] == 2
    assert book.delete(2) is True                         # no asks: neither
    assert not book.crossed and not book.locked
    assert (book.counters[CROSSED], book.counters[LOCKED]) == (2, 2)


# ---------------------------------------------------------------- snapshot

def test_snapshot_into_pads_with_zeros_and_writes_from_start():
    book = book_with(3, [(1, "B", 100, 10), (2, "B", 99, 20), (3, "S", 101, 5), (4, "B", 100, 1)])
    out = [-1] * 16
    book.snapshot_into(out, 2)
    assert out == [-1, -1,
                   100, 99, 0, 11, 20, 0,
                   101, 0, 0, 5, 0, 0,
                   -1, -1]
    for ref, price in enumerate(range(90, 96), start=10):
        book.add(ref, False, price, ref)
    packed = array("q", [0] * 12)
    book.snapshot_into(packed)
    assert list(packed) == [100, 99, 0, 11, 20, 0, 90, 91, 92, 10, 11, 12]
    book.delete(1), book.delete(2), book.delete(4)
    book.snapshot_into(packed)
    assert list(packed) == [0, 0, 0, 0, 0, 0, 90, 91, 92, 10, 11, 12]


# ---------------------------------------------------------------- against a naive model

class NaiveBook:
    """Orders in a dict, levels summed from scratch every time: slow and obviously right."""

    def __init__(self, depth):
        self.depth = depth
        self.orders = {}                     # ref -> [is_buy, price, shares]
        self.errors = dict.fromkeys(BOOK_COUNTER_NAMES, 0)
        self.inconsistent = False
        self.last_trade = (0, 0)
        self.crossed = self.locked = False

    def levels(self, is_buy):
        agg = {}
        for b, price, shares in self.orders.values():
            if b == is_buy:
                agg[price] = agg.get(price, 0) + shares
        return sorted(agg.items(), reverse=is_buy)

    def top(self):
        return self.levels(True)[:self.depth], self.levels(False)[:self.depth]

    def error(self, name, latch=True):
        self.errors[name] += 1
        self.inconsistent |= latch

    def reduce(self, ref, shares):
        order = self.orders.get(ref)
        if order is None:
            return self.error("unknown_order")
        if shares > order[2]:
            self.error("over_execution")
        order[2] -= shares
        if order[2] <= 0:
            del self.orders[ref]

    def apply(self, op):
        kind, *a = op
        if kind == "add":
            ref, is_buy, price, shares = a
            if ref in self.orders:
                self.error("duplicate_add")
            elif shares == 0:
                self.error("bad_shares", False)
            else:
                self.orders[ref] = [is_buy, price, shares]
        elif kind == "execute":
            ref, shares = a
            if ref in self.orders:
                self.last_trade = (self.orders[ref][1], shares)
            self.reduce(ref, shares)
        elif kind == "execute_at":
            ref, shares, price, printable = a
            if printable:
                self.last_trade = (price, shares)
            self.reduce(ref, shares)
        elif kind == "cancel":
            self.reduce(*a)
        elif kind == "delete":
            if self.orders.pop(a[0], None) is None:
                self.error("unknown_order")
        elif kind == "replace":
            old, new, shares, price = a
            order = self.orders.pop(old, None)
            if order is None:
                self.error("unknown_order")
            elif new in self.orders:
                self.error("duplicate_add")
            elif shares == 0:
                self.error("bad_shares", False)
            else:
                self.orders[new] = [order[0], price, shares]
        elif kind == "trade":
            self.last_trade = (a[0], a[1])
        bids, asks = self.levels(True), self.levels(False)
        crossed = bool(bids and asks and bids[0][0] > asks[0][0])
        locked = bool(bids and asks and bids[0][0] == asks[0][0])
        if crossed and not self.crossed:
            self.errors["crossed"] += 1
        if locked and not self.locked:
            self.errors["locked"] += 1
        self.crossed, self.locked = crossed, locked


refs = st.integers(1, 12)
prices = st.integers(95, 105)
sizes = st.integers(0, 6)
operations = st.lists(st.one_of(
    st.tuples(st.just("add"), refs, st.booleans(), prices, st.integers(1, 6)),
    st.tuples(st.just("add"), refs, st.booleans(), prices, sizes),
    st.tuples(st.just("execute"), refs, sizes),
    st.tuples(st.just("execute_at"), refs, sizes, prices, st.booleans()),
    st.tuples(st.just("cancel"), refs, sizes),
    st.tuples(st.just("delete"), refs),
    st.tuples(st.just("replace"), refs, refs, sizes, prices),
    st.tuples(st.just("trade"), prices, st.integers(1, 500)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(depth=st.integers(1, 4), ops=operations)
def test_the_book_equals_a_naive_model(depth, ops):
    book = OrderBook(1, "PROP", depth)
    model = NaiveBook(depth)
    sequence = 0
    for op in ops:
        before = model.top()
        model.apply(op)
        changed = getattr(book, op[0])(*op[1:])
        top_moved = model.top() != before
        if op[0] != "trade":
            assert changed is top_moved, (op, before, model.top())
        sequence += top_moved
        assert book.update_sequence == sequence
        assert book.levels(True) == model.levels(True) and book.levels(False) == model.levels(False), op
        assert book.orders() == {r: (b"B" if o[0] else b"S", o[1], o[2]) for r, o in model.orders.items()}
        assert book.order_count == len(model.orders)
        assert (book.crossed, book.locked) == (model.crossed, model.locked)
        assert counts(book) == model.errors
        assert book.inconsistent == model.inconsistent
        assert (book.last_trade_price, book.last_trade_shares) == model.last_trade
        bids, asks = model.top()
        pad = [(0, 0)] * depth
        bids, asks = (bids + pad)[:depth], (asks + pad)[:depth]
        assert snapshot(book) == [p for p, _ in bids] + [s for _, s in bids] + [p for p, _ in asks] + \
            [s for _, s in asks]
        assert book.best_bid() == (model.levels(True) or [(0, 0)])[0]
        assert book.best_ask() == (model.levels(False) or [(0, 0)])[0]
