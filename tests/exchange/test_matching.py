"""The matching engine, event by event: every test states the exact events an operation emits."""
from __future__ import annotations

import pytest

from appliance.exchange.events import (
    MARKET_DATA, ORDER_ENTRY, Accepted, AddOrder, CancelReject, Canceled, Executed, OrderCancel, OrderDelete,
    OrderExecuted, OrderReplace, Rejected, Replaced, Trade, TradingAction,
)
from appliance.exchange.matching import DAY, IOC, MARKET, MAX_PRICE, MatchingEngine

SYM = "AAPL"
P100 = 1_000_000          # 100.0000
P101 = 1_010_000
P102 = 1_020_000
P99 = 990_000
P98 = 980_000


@pytest.fixture
def eng() -> MatchingEngine:
    return MatchingEngine(["AAPL", "MSFT"])


def acc(firm, token, side, shares, price, ref, state="L", tif=DAY, display="Y", symbol=SYM):
    return Accepted(firm, token, side, shares, symbol, price, tif, display, ref, state)


def add(ref, side, shares, price, symbol=SYM, attribution=None):
    return AddOrder(ref, side, shares, symbol, price, attribution)


def fill(resting_ref, resting_firm, resting_token, aggr_firm, aggr_token, shares, price, match):
    """The three events of one execution of a displayed resting order."""
    return [OrderExecuted(resting_ref, shares, match),
            Executed(resting_firm, resting_token, shares, price, "A", match),
            Executed(aggr_firm, aggr_token, shares, price, "R", match)]


# ---------------------------------------------------------------- entry and resting

def test_a_resting_order_is_accepted_live_and_added(eng):
    assert eng.enter("F1", "b1", SYM, "B", 100, P100) == [acc("F1", "b1", "B", 100, P100, 1), add(1, "B", 100, P100)]
    assert eng.book(SYM).bids() == [(P100, 100)]
    assert eng.book(SYM).asks() == []
    assert eng.book(SYM).resting()[1][3:6] == ("B", P100, 100)


def test_attributable_display_adds_with_the_firm_as_mpid(eng):
    assert eng.enter("FIRM", "s1", SYM, "S", 100, P101, display="A") == [
        acc("FIRM", "s1", "S", 100, P101, 1, display="A"), add(1, "S", 100, P101, attribution="FIRM")]
    assert AddOrder(1, "S", 100, SYM, P101, "FIRM").itch_type == "F"
    assert AddOrder(1, "S", 100, SYM, P101, None).itch_type == "A"


def test_sell_short_sides_are_sells_and_echoed_as_sent(eng):
    assert eng.enter("F1", "t1", SYM, "T", 100, P101) == [acc("F1", "t1", "T", 100, P101, 1), add(1, "S", 100, P101)]
    assert eng.enter("F1", "t2", SYM, "E", 50, P102) == [acc("F1", "t2", "E", 50, P102, 2), add(2, "S", 50, P102)]
    assert eng.book(SYM).asks() == [(P101, 100), (P102, 50)]


def test_levels_are_aggregated_best_first(eng):
    for i, (side, shares, price) in enumerate([("B", 100, P99), ("B", 200, P100), ("B", 50, P99), ("B", 10, P98),
                                               ("S", 300, P102), ("S", 100, P101), ("S", 5, P102)]):
        eng.enter("F1", f"t{i}", SYM, side, shares, price)
    book = eng.book(SYM)
    assert book.bids() == [(P100, 200), (P99, 150), (P98, 10)]
    assert book.asks() == [(P101, 100), (P102, 305)]
    assert book.best_bid() == P100 and book.best_ask() == P101
    assert book.queue("B", P99) == [1, 3]


# ---------------------------------------------------------------- priority and partial fills

def test_price_priority_across_levels_then_time_priority_within_a_level(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P101)      # ref 1
    eng.enter("F2", "s2", SYM, "S", 100, P100)      # ref 2: better price, later
    eng.enter("F3", "s3", SYM, "S", 100, P100)      # ref 3: same price, later than ref 2
    events = eng.enter("F9", "b1", SYM, "B", 250, P101)
    assert events == [acc("F9", "b1", "B", 250, P101, 4, state="D"),
                      *fill(2, "F2", "s2", "F9", "b1", 100, P100, 1),
                      *fill(3, "F3", "s3", "F9", "b1", 100, P100, 2),
                      *fill(1, "F1", "s1", "F9", "b1", 50, P101, 3)]
    assert eng.book(SYM).asks() == [(P101, 50)]
    assert eng.book(SYM).bids() == []


def test_a_partially_filled_aggressor_rests_its_remainder(eng):
    eng.enter("F1", "s1", SYM, "S", 60, P100)
    events = eng.enter("F2", "b1", SYM, "B", 100, P101)
    assert events == [acc("F2", "b1", "B", 100, P101, 2, state="L"),
                      *fill(1, "F1", "s1", "F2", "b1", 60, P100, 1),
                      add(2, "B", 40, P101)]
    assert eng.book(SYM).bids() == [(P101, 40)] and eng.book(SYM).asks() == []


def test_a_partially_filled_resting_order_keeps_its_place(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P100)
    eng.enter("F1", "s2", SYM, "S", 100, P100)
    assert eng.enter("F2", "b1", SYM, "B", 30, P100) == [acc("F2", "b1", "B", 30, P100, 3, state="D"),
                                                        *fill(1, "F1", "s1", "F2", "b1", 30, P100, 1)]
    assert eng.book(SYM).queue("S", P100) == [1, 2]
    assert eng.book(SYM).resting()[1].leaves == 70
    assert eng.enter("F2", "b2", SYM, "B", 80, P100) == [acc("F2", "b2", "B", 80, P100, 4, state="D"),
                                                        *fill(1, "F1", "s1", "F2", "b2", 70, P100, 2),
                                                        *fill(2, "F1", "s2", "F2", "b2", 10, P100, 3)]
    assert eng.book(SYM).asks() == [(P100, 90)]


def test_sell_aggressor_hits_the_highest_bid_at_the_bid_price(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P99)
    eng.enter("F1", "b2", SYM, "B", 100, P100)
    events = eng.enter("F2", "s1", SYM, "S", 150, P98)
    assert events == [acc("F2", "s1", "S", 150, P98, 3, state="D"),
                      *fill(2, "F1", "b2", "F2", "s1", 100, P100, 1),
                      *fill(1, "F1", "b1", "F2", "s1", 50, P99, 2)]


def test_a_limit_that_does_not_reach_the_touch_rests_without_executing(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P101)
    assert eng.enter("F2", "b1", SYM, "B", 100, P100) == [acc("F2", "b1", "B", 100, P100, 2), add(2, "B", 100, P100)]
    assert eng.book(SYM).bids() == [(P100, 100)] and eng.book(SYM).asks() == [(P101, 100)]


def test_symbols_are_separate_books(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P100)
    assert eng.enter("F2", "b1", "MSFT", "B", 100, P101) == [acc("F2", "b1", "B", 100, P101, 2, symbol="MSFT"),
                                                            add(2, "B", 100, P101, symbol="MSFT")]


# ---------------------------------------------------------------- immediate or cancel and market orders

def test_ioc_with_nothing_to_hit_is_accepted_dead_and_canceled(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P101)
    assert eng.enter("F2", "b1", SYM, "B", 100, P100, tif=IOC) == [
        acc("F2", "b1", "B", 100, P100, 2, state="D", tif=IOC), Canceled("F2", "b1", 100, "I")]
    assert eng.book(SYM).bids() == []


def test_ioc_remainder_is_canceled_after_the_fills(eng):
    eng.enter("F1", "s1", SYM, "S", 30, P100)
    assert eng.enter("F2", "b1", SYM, "B", 100, P101, tif=IOC) == [
        acc("F2", "b1", "B", 100, P101, 2, state="D", tif=IOC),
        *fill(1, "F1", "s1", "F2", "b1", 30, P100, 1),
        Canceled("F2", "b1", 70, "I")]
    assert eng.book(SYM).bids() == [] and eng.book(SYM).asks() == []
    assert eng.cancel("F2", "b1") == [CancelReject("F2", "b1")]


def test_fully_filled_ioc_has_no_cancel(eng):
    eng.enter("F1", "s1", SYM, "S", 300, P100)
    assert eng.enter("F2", "b1", SYM, "B", 100, P100, tif=IOC) == [
        acc("F2", "b1", "B", 100, P100, 2, state="D", tif=IOC), *fill(1, "F1", "s1", "F2", "b1", 100, P100, 1)]


def test_market_order_sweeps_several_levels_and_the_rest_is_canceled(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P100)
    eng.enter("F1", "s2", SYM, "S", 100, P101)
    eng.enter("F1", "s3", SYM, "S", 100, P102)
    events = eng.enter("F2", "m1", SYM, "B", 400, MARKET, tif=DAY)
    assert events == [acc("F2", "m1", "B", 400, MARKET, 4, state="D"),
                      *fill(1, "F1", "s1", "F2", "m1", 100, P100, 1),
                      *fill(2, "F1", "s2", "F2", "m1", 100, P101, 2),
                      *fill(3, "F1", "s3", "F2", "m1", 100, P102, 3),
                      Canceled("F2", "m1", 100, "I")]
    assert eng.book(SYM).asks() == [] and eng.book(SYM).bids() == []


def test_market_order_without_leftover_leaves_the_rest_of_the_level(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F1", "b2", SYM, "B", 100, P99)
    events = eng.enter("F2", "m1", SYM, "S", 150, MARKET, tif=IOC)
    assert events == [acc("F2", "m1", "S", 150, MARKET, 3, state="D", tif=IOC),
                      *fill(1, "F1", "b1", "F2", "m1", 100, P100, 1),
                      *fill(2, "F1", "b2", "F2", "m1", 50, P99, 2)]
    assert eng.book(SYM).bids() == [(P99, 50)]


def test_market_order_into_an_empty_book(eng):
    assert eng.enter("F2", "m1", SYM, "S", 10, MARKET) == [acc("F2", "m1", "S", 10, MARKET, 1, state="D"),
                                                          Canceled("F2", "m1", 10, "I")]


def test_a_day_order_filled_in_full_on_entry_is_accepted_dead(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P100)
    assert eng.enter("F2", "b1", SYM, "B", 100, P100)[0].state == "D"
    assert eng.cancel("F1", "s1") == [CancelReject("F1", "s1")]      # executed in full: gone


# ---------------------------------------------------------------- cancel and reduce

def test_cancel_in_full_is_a_delete(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    assert eng.cancel("F1", "b1") == [Canceled("F1", "b1", 100, "U"), OrderDelete(1)]
    assert eng.book(SYM).bids() == [] and eng.book(SYM).resting() == {}


def test_reduce_is_a_partial_cancel_and_keeps_priority(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F2", "b2", SYM, "B", 100, P100)
    assert eng.cancel("F1", "b1", 40) == [Canceled("F1", "b1", 60, "U"), OrderCancel(1, 60)]
    assert eng.book(SYM).bids() == [(P100, 140)]
    assert eng.book(SYM).queue("B", P100) == [1, 2]
    assert eng.enter("F3", "s1", SYM, "S", 50, P100) == [acc("F3", "s1", "S", 50, P100, 3, state="D"),
                                                        *fill(1, "F1", "b1", "F3", "s1", 40, P100, 1),
                                                        *fill(2, "F2", "b2", "F3", "s1", 10, P100, 2)]


def test_reduce_to_the_leaves_or_more_is_a_quiet_no_op(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    assert eng.cancel("F1", "b1", 100) == []
    assert eng.cancel("F1", "b1", 500) == []
    assert eng.book(SYM).bids() == [(P100, 100)]


def test_cancel_after_a_partial_fill_cancels_the_leaves(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F2", "s1", SYM, "S", 30, P100)
    # 70 left: the new size counts from the leaves, not from the 100 entered
    assert eng.cancel("F1", "b1", 70) == []
    assert eng.cancel("F1", "b1", 50) == [Canceled("F1", "b1", 20, "U"), OrderCancel(1, 20)]
    assert eng.cancel("F1", "b1", 60) == []
    assert eng.cancel("F1", "b1") == [Canceled("F1", "b1", 50, "U"), OrderDelete(1)]


def test_cancel_in_the_middle_of_a_queue_keeps_the_others_in_order(eng):
    for i in range(5):
        eng.enter("F1", f"b{i}", SYM, "B", 10, P100)
    eng.cancel("F1", "b2")
    eng.cancel("F1", "b0")
    assert eng.book(SYM).queue("B", P100) == [2, 4, 5]
    assert eng.book(SYM).bids() == [(P100, 30)]
    events = eng.enter("F2", "s1", SYM, "S", 30, P100)
    assert [e.ref for e in events if isinstance(e, OrderExecuted)] == [2, 4, 5]


def test_cancel_of_unknown_or_dead_tokens_is_a_cancel_reject(eng):
    assert eng.cancel("F1", "nope") == [CancelReject("F1", "nope")]
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    assert eng.cancel("F2", "b1") == [CancelReject("F2", "b1")]       # another firm's token
    eng.cancel("F1", "b1")
    assert eng.cancel("F1", "b1") == [CancelReject("F1", "b1")]


def test_non_displayed_cancel_has_no_market_data(eng):
    eng.enter("F1", "h1", SYM, "B", 100, P100, display="N")
    assert eng.cancel("F1", "h1", 10) == [Canceled("F1", "h1", 90, "U")]
    assert eng.cancel("F1", "h1") == [Canceled("F1", "h1", 10, "U")]


# ---------------------------------------------------------------- replace

def test_replace_that_rests_is_one_itch_replace_and_loses_priority(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)       # ref 1
    eng.enter("F2", "b2", SYM, "B", 100, P100)       # ref 2
    events = eng.replace("F1", "b1", "b1r", 100, P100)
    assert events == [Replaced("F1", "b1r", "b1", "B", 100, SYM, P100, DAY, "Y", 3, "L"),
                      OrderReplace(1, 3, 100, P100)]
    assert eng.book(SYM).queue("B", P100) == [2, 3]
    assert eng.enter("F3", "s1", SYM, "S", 100, P100) == [acc("F3", "s1", "S", 100, P100, 4, state="D"),
                                                         *fill(2, "F2", "b2", "F3", "s1", 100, P100, 1)]
    assert eng.cancel("F1", "b1") == [CancelReject("F1", "b1")]
    assert eng.cancel("F1", "b1r") == [Canceled("F1", "b1r", 100, "U"), OrderDelete(3)]


def test_replace_to_a_new_price_and_size(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P102)
    eng.enter("F2", "b1", SYM, "B", 10, P99)
    assert eng.replace("F1", "s1", "s2", 250, P101) == [
        Replaced("F1", "s2", "s1", "S", 250, SYM, P101, DAY, "Y", 3, "L"), OrderReplace(1, 3, 250, P101)]
    assert eng.book(SYM).asks() == [(P101, 250)]


def test_replace_that_becomes_marketable_deletes_executes_and_adds(eng):
    eng.enter("F1", "s1", SYM, "S", 50, P101)        # ref 1
    eng.enter("F2", "b1", SYM, "B", 100, P99)        # ref 2
    events = eng.replace("F2", "b1", "b2", 80, P101)
    assert events == [Replaced("F2", "b2", "b1", "B", 80, SYM, P101, DAY, "Y", 3, "L"),
                      OrderDelete(2),
                      *fill(1, "F1", "s1", "F2", "b2", 50, P101, 1),
                      add(3, "B", 30, P101)]
    assert eng.book(SYM).bids() == [(P101, 30)] and eng.book(SYM).asks() == []


def test_replace_that_executes_in_full_is_dead(eng):
    eng.enter("F1", "s1", SYM, "S", 500, P101)
    eng.enter("F2", "b1", SYM, "B", 100, P99)
    assert eng.replace("F2", "b1", "b2", 100, P102) == [
        Replaced("F2", "b2", "b1", "B", 100, SYM, P102, DAY, "Y", 3, "D"),
        OrderDelete(2),
        *fill(1, "F1", "s1", "F2", "b2", 100, P101, 1)]
    assert eng.cancel("F2", "b2") == [CancelReject("F2", "b2")]


def test_replace_keeps_the_leaves_of_a_partly_filled_order_out_of_the_new_size(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F2", "s1", SYM, "S", 40, P100)
    assert eng.replace("F1", "b1", "b2", 100, P99) == [
        Replaced("F1", "b2", "b1", "B", 100, SYM, P99, DAY, "Y", 3, "L"), OrderReplace(1, 3, 100, P99)]
    assert eng.book(SYM).bids() == [(P99, 100)]


def test_replace_of_an_unknown_or_dead_token_is_a_cancel_reject(eng):
    assert eng.replace("F1", "nope", "new", 100, P100) == [CancelReject("F1", "nope")]
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.cancel("F1", "b1")
    assert eng.replace("F1", "b1", "new", 100, P100) == [CancelReject("F1", "b1")]
    # the replacement token was not used up by the failed replace
    assert eng.enter("F1", "new", SYM, "B", 100, P100)[0].state == "L"


def test_failed_replace_checks_reject_the_replacement_token_and_keep_the_order(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F1", "b0", SYM, "B", 100, P98)
    assert eng.replace("F1", "b1", "b0", 100, P99) == [Rejected("F1", "b0", "O")]     # duplicate token
    assert eng.replace("F1", "b1", "r1", 0, P99) == [Rejected("F1", "r1", "Z")]
    assert eng.replace("F1", "b1", "r2", 100, 0) == [Rejected("F1", "r2", "X")]
    assert eng.replace("F1", "b1", "r3", 100, MAX_PRICE + 1) == [Rejected("F1", "r3", "X")]
    eng.halt(SYM)
    assert eng.replace("F1", "b1", "r4", 100, P99) == [Rejected("F1", "r4", "H")]
    assert eng.book(SYM).bids() == [(P100, 100), (P98, 100)]
    assert eng.replace("F1", "b1", "r1", 100, P99) == [Rejected("F1", "r1", "O")]     # rejected tokens are used


def test_replace_to_non_displayed_and_back(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    assert eng.replace("F1", "b1", "b2", 100, P100, display="N") == [
        Replaced("F1", "b2", "b1", "B", 100, SYM, P100, DAY, "N", 2, "L"), OrderDelete(1)]
    assert eng.book(SYM).bids(displayed_only=True) == [] and eng.book(SYM).bids() == [(P100, 100)]
    assert eng.replace("F1", "b2", "b3", 100, P100, display="Y") == [
        Replaced("F1", "b3", "b2", "B", 100, SYM, P100, DAY, "Y", 3, "L"), add(3, "B", 100, P100)]


# ---------------------------------------------------------------- non-displayed orders

def test_executions_of_non_displayed_orders_are_trades(eng):
    eng.enter("F1", "h1", SYM, "S", 100, P100, display="N")
    assert eng.enter("F1", "h1x", SYM, "S", 100, P101, display="N") == [
        acc("F1", "h1x", "S", 100, P101, 2, display="N")]                  # no AddOrder
    eng.enter("F1", "v1", SYM, "S", 100, P101)                               # ref 3, displayed
    events = eng.enter("F2", "b1", SYM, "B", 250, P101)
    assert events == [acc("F2", "b1", "B", 250, P101, 4, state="D"),
                      Trade("S", 100, SYM, P100, 1),
                      Executed("F1", "h1", 100, P100, "A", 1), Executed("F2", "b1", 100, P100, "R", 1),
                      Trade("S", 100, SYM, P101, 2),
                      Executed("F1", "h1x", 100, P101, "A", 2), Executed("F2", "b1", 100, P101, "R", 2),
                      *fill(3, "F1", "v1", "F2", "b1", 50, P101, 3)]


def test_a_non_displayed_aggressor_hitting_a_displayed_order_is_an_order_executed(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    assert eng.enter("F2", "s1", SYM, "S", 100, P99, display="N") == [
        acc("F2", "s1", "S", 100, P99, 2, state="D", display="N"), *fill(1, "F1", "b1", "F2", "s1", 100, P100, 1)]


# ---------------------------------------------------------------- halt, resume, close

def test_halt_rejects_entries_keeps_the_book_and_allows_cancels(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F1", "b2", SYM, "B", 100, P99)
    assert eng.halt(SYM) == [TradingAction(SYM, "H")]
    assert eng.halt(SYM) == []
    assert eng.enter("F2", "s1", SYM, "S", 100, P100) == [Rejected("F2", "s1", "H")]
    assert eng.book(SYM).bids() == [(P100, 100), (P99, 100)]
    assert eng.cancel("F1", "b2") == [Canceled("F1", "b2", 100, "U"), OrderDelete(2)]
    # other symbols trade on
    assert eng.enter("F2", "m1", "MSFT", "S", 100, P100)[0] == acc("F2", "m1", "S", 100, P100, 3, symbol="MSFT")
    assert eng.resume(SYM) == [TradingAction(SYM, "T")]
    assert eng.resume(SYM) == []
    assert eng.enter("F2", "s2", SYM, "S", 100, P100) == [acc("F2", "s2", "S", 100, P100, 4, state="D"),
                                                         *fill(1, "F1", "b1", "F2", "s2", 100, P100, 1)]


def test_close_rejects_entries_and_still_allows_cancels(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    assert eng.close() == []
    assert eng.enter("F1", "b2", SYM, "B", 100, P100) == [Rejected("F1", "b2", "C")]
    assert eng.replace("F1", "b1", "b3", 100, P99) == [Rejected("F1", "b3", "C")]
    assert eng.cancel("F1", "b1") == [Canceled("F1", "b1", 100, "U"), OrderDelete(1)]


def test_close_with_expiry_cancels_every_resting_order(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F2", "s1", "MSFT", "S", 100, P100, display="N")
    eng.enter("F2", "s2", SYM, "S", 100, P101)
    assert eng.close(expire=True) == [Canceled("F1", "b1", 100, "T"), OrderDelete(1),
                                      Canceled("F2", "s2", 100, "T"), OrderDelete(3),
                                      Canceled("F2", "s1", 100, "T")]
    assert eng.book(SYM).bids() == [] and eng.book("MSFT").asks() == []


def test_cancel_all_for_one_firm_is_supervisory(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    eng.enter("F2", "b2", SYM, "B", 100, P100)
    eng.enter("F1", "b3", "MSFT", "B", 100, P100)
    assert eng.cancel_all(firm="F1") == [Canceled("F1", "b1", 100, "S"), OrderDelete(1),
                                         Canceled("F1", "b3", 100, "S"), OrderDelete(3)]
    assert eng.book(SYM).bids() == [(P100, 100)]


# ---------------------------------------------------------------- rejects and tokens

@pytest.mark.parametrize("symbol, side, shares, price, reason", [
    ("ZZZZ", "B", 100, P100, "S"),
    (SYM, "B", 0, P100, "Z"),
    (SYM, "B", 1_000_001, P100, "Z"),
    (SYM, "B", 100, 0, "X"),
    (SYM, "B", 100, MAX_PRICE + 1, "X"),
    (SYM, "B", 100, MARKET - 1, "X"),
    (SYM, "Q", 100, P100, "O"),
])
def test_every_reject_reason(eng, symbol, side, shares, price, reason):
    assert eng.enter("F1", "t1", symbol, side, shares, price) == [Rejected("F1", "t1", reason)]
    assert eng.next_ref == 1                  # no reference number spent
    assert eng.book(SYM).bids() == []


def test_limits_at_the_edges_are_accepted(eng):
    assert eng.enter("F1", "t1", SYM, "B", 1_000_000, MAX_PRICE)[0].state == "L"
    assert eng.enter("F1", "t2", SYM, "B", 1, 1)[0].state == "L"


def test_the_share_limit_is_configurable():
    eng = MatchingEngine([SYM], max_shares=500)
    assert eng.enter("F1", "t1", SYM, "B", 501, P100) == [Rejected("F1", "t1", "Z")]
    assert eng.enter("F1", "t2", SYM, "B", 500, P100)[0].state == "L"


def test_closed_is_checked_before_the_rest():
    eng = MatchingEngine([SYM])
    eng.close()
    assert eng.enter("F1", "t1", "ZZZZ", "B", 0, 0) == [Rejected("F1", "t1", "C")]


def test_duplicate_tokens_are_rejected_for_the_whole_day(eng):
    eng.enter("F1", "t1", SYM, "B", 100, P100)
    assert eng.enter("F1", "t1", SYM, "B", 100, P99) == [Rejected("F1", "t1", "O")]
    eng.cancel("F1", "t1")
    assert eng.enter("F1", "t1", SYM, "B", 100, P99) == [Rejected("F1", "t1", "O")]   # dead token
    eng.enter("F1", "i1", SYM, "S", 100, P102, tif=IOC)
    assert eng.enter("F1", "i1", SYM, "S", 100, P102) == [Rejected("F1", "i1", "O")]  # dead on arrival
    eng.enter("F1", "r1", SYM, "B", 0, P100)                                           # rejected: used up
    assert eng.enter("F1", "r1", SYM, "B", 100, P100) == [Rejected("F1", "r1", "O")]
    # tokens are per firm
    assert eng.enter("F2", "t1", SYM, "B", 100, P99)[0] == acc("F2", "t1", "B", 100, P99, 3)
    assert eng.book(SYM).bids() == [(P99, 100)]


def test_a_duplicate_token_does_not_disturb_the_live_order(eng):
    eng.enter("F1", "t1", SYM, "B", 100, P100)
    eng.enter("F1", "t1", SYM, "S", 100, P100)
    assert eng.book(SYM).bids() == [(P100, 100)] and eng.book(SYM).asks() == []
    assert eng.cancel("F1", "t1") == [Canceled("F1", "t1", 100, "U"), OrderDelete(1)]


# ---------------------------------------------------------------- numbering, families, report

def test_refs_and_match_numbers_strictly_increase_across_symbols(eng):
    refs, matches = [], []
    for i in range(20):
        symbol = ("AAPL", "MSFT")[i % 2]
        for e in eng.enter("F1", f"s{i}", symbol, "S", 10, P100) + eng.enter("F2", f"b{i}", symbol, "B", 5, P101) \
                + eng.replace("F1", f"s{i}", f"s{i}r", 10, P101):
            if isinstance(e, (Accepted, Replaced)):
                refs.append(e.ref)
            if isinstance(e, OrderExecuted):
                matches.append(e.match)
    assert refs == list(range(1, 61))
    assert matches == list(range(1, 21))
    assert eng.next_ref == 61 and eng.next_match == 21


def test_event_families_and_wire_types():
    md = [AddOrder(1, "B", 1, SYM, 1, None), OrderExecuted(1, 1, 1), OrderCancel(1, 1), OrderDelete(1),
          OrderReplace(1, 2, 1, 1), Trade("B", 1, SYM, 1, 1), TradingAction(SYM, "H")]
    oe = [Accepted("F", "t", "B", 1, SYM, 1, 0, "Y", 1, "L"), Replaced("F", "t", "u", "B", 1, SYM, 1, 0, "Y", 1, "L"),
          Canceled("F", "t", 1, "U"), Executed("F", "t", 1, 1, "A", 1), Rejected("F", "t", "O"), CancelReject("F", "t")]
    assert {e.family for e in md} == {MARKET_DATA} and {e.family for e in oe} == {ORDER_ENTRY}
    assert [e.itch_type for e in md] == ["A", "E", "X", "D", "U", "P", "H"]
    assert [e.ouch_type for e in oe] == ["A", "U", "C", "E", "J", "I"]
    # equality compares the event class too, not only the field values
    assert OrderCancel(7, 100) != CancelReject(7, 100)
    assert OrderCancel(7, 100) == OrderCancel(7, 100)


def test_firm_report_counts_orders_fills_and_positions(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P100)
    eng.enter("F1", "s2", "MSFT", "S", 100, P100)
    eng.enter("F2", "b1", SYM, "B", 60, P100)
    eng.enter("F2", "b2", "MSFT", "B", 250, P100, tif=IOC)
    eng.enter("F2", "x", SYM, "B", 0, P100)
    r1, r2 = eng.firm_report("F1"), eng.firm_report("F2")
    assert (r1.accepted, r1.fills, r1.sold, r1.bought, r1.positions, r1.open_orders) == \
           (2, 2, 160, 0, {SYM: -60, "MSFT": -100}, 1)
    assert (r2.accepted, r2.rejected, r2.fills, r2.bought, r2.canceled_shares, r2.positions) == \
           (2, 1, 2, 160, 150, {SYM: 60, "MSFT": 100})
    assert list(eng.firm_reports()) == ["F1", "F2"]


def test_self_trade_is_allowed_and_nets_out(eng):
    eng.enter("F1", "s1", SYM, "S", 100, P100)
    assert eng.enter("F1", "b1", SYM, "B", 100, P100) == [acc("F1", "b1", "B", 100, P100, 2, state="D"),
                                                         *fill(1, "F1", "s1", "F1", "b1", 100, P100, 1)]
    assert eng.firm_report("F1").positions == {SYM: 0}
