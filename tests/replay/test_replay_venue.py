"""The replay venue's rules, each on a small hand-made day (appliance/replay/venue.py)."""
from __future__ import annotations

import pytest

from appliance.replay.latency import Latency
from appliance.replay.venue import MARKET_PRICE, ReplayVenue
from itch_raw import action, add, directory, raw

LOC = 5
P = 1_000_000          # $100.00


def day(*messages, model="risk-averse", latency=None, seed=0, symbols=("AAPL",)):
    venue = ReplayVenue(symbols, model, latency or Latency.zero(), seed)
    venue.on_itch(directory("AAPL", LOC, ts=1))
    for message in messages:
        venue.on_itch(message)
    return venue


def execute(ref, shares, ts):
    return raw("E", LOC, ts, order_reference_number=ref, executed_shares=shares, match_number=ref * 100 + ts)


def cancel(ref, shares, ts):
    return raw("X", LOC, ts, order_reference_number=ref, canceled_shares=shares)


def delete(ref, ts):
    return raw("D", LOC, ts, order_reference_number=ref)


def replace(ref, new, shares, price, ts):
    return raw("U", LOC, ts, original_order_reference_number=ref, new_order_reference_number=new, shares=shares,
               price=price)


def hidden_trade(side, shares, price, ts):
    return raw("P", LOC, ts, order_reference_number=0, buy_sell_indicator=side, shares=shares, stock="AAPL",
               price=price, match_number=ts)


def events(venue, now=10**15):
    venue.advance(now)
    return [(e.kind, e.token, e.shares, e.price, e.leaves, e.liquidity or e.reason) for e in venue.poll(now)]


def fills(venue):
    return [(shares, price, liquidity) for kind, _, shares, price, _, liquidity in events(venue) if kind == "executed"]


def test_joins_the_back_and_fills_after_the_queue_ahead_is_executed():
    venue = day(add(LOC, 1, "B", 300, "AAPL", P, ts=2))
    venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)
    venue.advance(3)
    assert events(venue) == [("accepted", 7, 100, P, 100, "")]
    venue.on_itch(execute(1, 200, ts=4))            # 200 of the 300 ahead
    assert fills(venue) == []
    venue.on_itch(execute(1, 150, ts=5))            # the last 100 ahead, then 50 of ours... but 1 had only 100 left
    assert fills(venue) == []                        # E is clamped to the order's shares: 100 executed, none reach us
    venue.on_itch(add(LOC, 2, "B", 500, "AAPL", P, ts=6))
    venue.on_itch(execute(2, 80, ts=7))             # an execution at our price with nobody ahead fills us first
    assert fills(venue) == [(80, P, "A")]
    assert venue.live[7].leaves == 20


def test_risk_averse_cancels_never_advance_but_ahead_shrinks_to_the_level():
    venue = day(add(LOC, 1, "B", 300, "AAPL", P, ts=2), add(LOC, 2, "B", 100, "AAPL", P, ts=2))
    venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)
    venue.advance(3)
    assert venue.live[7].ahead == 400
    venue.on_itch(cancel(1, 100, ts=4))
    assert venue.live[7].ahead == 300                # level 300 left: ahead cannot be more
    venue.on_itch(add(LOC, 3, "B", 1000, "AAPL", P, ts=5))
    venue.on_itch(delete(2, ts=6))                   # level 1200: risk-averse keeps 300
    assert venue.live[7].ahead == 300
    venue.on_itch(execute(1, 200, ts=7))
    assert venue.live[7].ahead == 100 and fills(venue) == []


def test_fifo_advances_on_older_cancels_only():
    venue = day(add(LOC, 1, "B", 300, "AAPL", P, ts=2), model="fifo")
    venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)
    venue.on_itch(add(LOC, 2, "B", 500, "AAPL", P, ts=4))     # behind us
    assert venue.live[7].ahead == 300
    venue.on_itch(cancel(2, 200, ts=5))                      # behind: no change
    assert venue.live[7].ahead == 300
    venue.on_itch(cancel(1, 250, ts=6))                      # ahead: 50 left ahead
    assert venue.live[7].ahead == 50
    venue.on_itch(execute(2, 120, ts=7))                     # 50 reach the front, 70 fill us
    assert fills(venue) == [(70, P, "A")]


def test_probabilistic_model_is_deterministic_for_a_seed_and_between_the_bounds():
    def run(seed):
        venue = day(*(add(LOC, r, "B", 100, "AAPL", P, ts=2) for r in range(1, 11)), model="prob-power:2", seed=seed)
        venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)
        venue.on_itch(add(LOC, 50, "B", 1000, "AAPL", P, ts=4))
        path = []
        for i, ref in enumerate(range(1, 10)):
            venue.on_itch(delete(ref, ts=5 + i))
            path.append(venue.live[7].ahead)
        return path
    first = run(1)
    assert first == run(1)
    assert all(100 <= a <= 1000 for a in first) and first == sorted(first, reverse=True)
    assert {tuple(run(s)) for s in range(8)} != {tuple(first)}      # the draw matters
    # a cancel of an order that joined after us is behind us: no draw moves us
    venue = day(add(LOC, 1, "B", 300, "AAPL", P, ts=2), model="prob-log", seed=3)
    venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)
    venue.on_itch(add(LOC, 2, "B", 300, "AAPL", P, ts=4))
    venue.on_itch(delete(2, ts=5))
    assert venue.live[7].ahead == 300


def test_trade_through_fills_up_to_the_executed_shares_best_price_first():
    venue = day(add(LOC, 1, "B", 500, "AAPL", P - 100, ts=2), add(LOC, 2, "S", 500, "AAPL", P + 100, ts=2))
    venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)       # a better bid than the book's
    venue.submit(8, "AAPL", "B", 100, P - 50, 99998, now_ns=3)
    venue.advance(3)
    events(venue)
    venue.on_itch(execute(1, 150, ts=4))                         # a seller hit 99.99: would have met us first
    assert fills(venue) == [(100, P, "A"), (50, P - 50, "A")]
    venue.on_itch(hidden_trade("B", 30, P - 100, ts=5))          # a hidden buy executed below our bid too
    assert fills(venue) == [(30, P - 50, "A")]


def test_a_recorded_add_crossing_our_order_fills_it():
    venue = day(add(LOC, 1, "S", 500, "AAPL", P + 100, ts=2))
    venue.submit(7, "AAPL", "S", 300, P + 50, 99998, now_ns=3)
    venue.on_itch(add(LOC, 2, "B", 200, "AAPL", P + 60, ts=4))  # a buyer bidding above our offer
    assert fills(venue) == [(200, P + 50, "A")]
    venue.on_itch(replace(2, 3, 400, P + 50, ts=5))              # U's new half crosses too
    assert fills(venue) == [(100, P + 50, "A")]
    assert 7 not in venue.live


def test_marketable_order_takes_liquidity_once_and_rests_the_rest():
    venue = day(add(LOC, 1, "S", 100, "AAPL", P + 100, ts=2), add(LOC, 2, "S", 200, "AAPL", P + 200, ts=2),
                add(LOC, 3, "S", 900, "AAPL", P + 300, ts=2))
    venue.submit(7, "AAPL", "B", 250, P + 200, 99998, now_ns=3)
    assert events(venue) == [("accepted", 7, 250, P + 200, 250, ""), ("executed", 7, 100, P + 100, 150, "R"),
                             ("executed", 7, 150, P + 200, 0, "R")]
    venue.submit(8, "AAPL", "B", 100, P + 200, 99998, now_ns=4)  # only 50 left at 100.02 for us
    assert events(venue)[1:] == [("executed", 8, 50, P + 200, 50, "R")]
    assert venue.live[8].ahead == 0                              # rests at 100.02 as the bid
    venue.on_itch(execute(2, 200, ts=5))       # the recorded level trades away: what we took is gone with it
    venue.submit(9, "AAPL", "B", 100, MARKET_PRICE, 0, now_ns=6)
    assert events(venue)[1:] == [("executed", 9, 100, P + 300, 0, "R")]


def test_ioc_and_market_remainders_are_canceled():
    venue = day(add(LOC, 1, "S", 100, "AAPL", P, ts=2))
    venue.submit(7, "AAPL", "B", 300, P, 0, now_ns=3)
    assert events(venue)[1:] == [("executed", 7, 100, P, 200, "R"), ("canceled", 7, 200, P, 0, "I")]
    venue.submit(8, "AAPL", "S", 300, MARKET_PRICE, 0, now_ns=4)
    assert events(venue)[1:] == [("canceled", 8, 300, MARKET_PRICE, 0, "I")]      # no bids at all
    assert not venue.live


def test_cancel_reduce_and_cancel_reject():
    venue = day(add(LOC, 1, "B", 300, "AAPL", P, ts=2))
    venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)
    venue.cancel(7, now_ns=4, shares=40)
    venue.cancel(7, now_ns=4, shares=90)                         # more than the leaves: nothing
    assert events(venue)[1:] == [("canceled", 7, 60, P, 40, "U")]
    assert venue.live[7].ahead == 300                            # a reduction keeps the place
    venue.cancel(7, now_ns=5)
    venue.cancel(7, now_ns=6)
    assert events(venue) == [("canceled", 7, 40, P, 0, "U"), ("cancel_reject", 7, 0, 0, 0, "")]


def test_replace_keeps_the_place_only_when_price_stays_and_shares_do_not_grow():
    venue = day(add(LOC, 1, "B", 300, "AAPL", P, ts=2))
    venue.submit(7, "AAPL", "B", 100, P, 99998, now_ns=3)
    venue.on_itch(add(LOC, 2, "B", 200, "AAPL", P, ts=4))
    venue.on_itch(execute(1, 100, ts=5))
    venue.replace(7, 8, 50, P, now_ns=6)
    venue.advance(6)
    assert venue.live[8].ahead == 200                            # kept
    venue.replace(8, 9, 80, P, now_ns=7)
    venue.advance(7)
    assert venue.live[9].ahead == 400                            # grew: back of the queue (200 + 200)
    venue.replace(9, 10, 80, P - 100, now_ns=8)
    venue.replace(9, 11, 80, P, now_ns=8)                        # 9 is gone: cancel reject
    venue.replace(10, 7, 80, P, now_ns=8)                        # a used token: rejected, 10 untouched
    assert [e[0] for e in events(venue)] == ["accepted", "replaced", "replaced", "replaced", "cancel_reject",
                                             "rejected"]
    assert venue.live[10].ahead == 0 and venue.live[10].price == P - 100


def test_entry_checks():
    venue = day(action("AAPL", LOC, "H", ts=2), symbols=("AAPL", "MSFT"))
    venue.submit(1, "AAPL", "B", 100, P, 99998, now_ns=3)        # halted
    venue.submit(2, "MSFT", "B", 100, P, 99998, now_ns=3)        # no directory today
    venue.submit(3, "IBM", "B", 100, P, 99998, now_ns=3)
    venue.submit(3, "AAPL", "B", 100, P, 99998, now_ns=3)        # token used (by a rejected order)
    venue.on_itch(action("AAPL", LOC, "T", ts=4))
    venue.submit(4, "AAPL", "B", 0, P, 99998, now_ns=5)
    venue.submit(5, "AAPL", "B", 100, 0, 99998, now_ns=5)
    assert [(e[0], e[1], e[5]) for e in events(venue)] == [
        ("rejected", 1, "H"), ("rejected", 2, "S"), ("rejected", 3, "S"), ("rejected", 3, "O"),
        ("rejected", 4, "Z"), ("rejected", 5, "X")]


def test_latency_orders_arrivals_and_deliveries_by_event_time():
    venue = day(add(LOC, 1, "S", 100, "AAPL", P, ts=1000), latency=Latency(feed_ns=5, entry_ns=100, ack_ns=40))
    venue.submit(7, "AAPL", "B", 100, P, 0, now_ns=1000)         # arrives at 1100
    venue.on_itch(execute(1, 100, ts=1099))                       # the liquidity goes before we arrive
    venue.on_itch(add(LOC, 2, "S", 100, "AAPL", P, ts=1101))      # after our arrival: too late for us
    assert venue.poll(1139) == []
    out = venue.poll(1140)
    assert [(e.kind, e.time_ns, e.deliver_ns) for e in out] == [("accepted", 1100, 1140), ("canceled", 1100, 1140)]


def test_unknown_references_and_duplicates_are_counted_not_fatal():
    venue = day(add(LOC, 1, "B", 100, "AAPL", P, ts=2), add(LOC, 1, "B", 100, "AAPL", P, ts=2),
                execute(99, 10, ts=3), cancel(98, 10, ts=3), delete(97, ts=3), replace(96, 95, 10, P, ts=3),
                add(LOC + 1, 5, "B", 100, "MSFT", P, ts=3))
    assert venue.counters["duplicate_add"] == 1 and venue.counters["unknown_order"] == 4
    assert venue.counters["unsubscribed"] == 1
    assert venue.books[0].levels[True] == {P: 100}


@pytest.mark.parametrize("name", ["bogus", "prob-power:0", "prob-power:x"])
def test_bad_queue_model_names(name):
    from appliance.replay.queue import QueueModelError
    with pytest.raises(QueueModelError, match="queue model"):
        ReplayVenue(("AAPL",), name)
