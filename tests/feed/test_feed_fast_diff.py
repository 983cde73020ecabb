"""The compiled feed path (feed/fast.py, _book_fast.c) against the Python reference (BlockScanner + BookSet +
BookOutputs), message by message and packet by packet: the BookUpdate bytes, the market-state slots, every
counter, each book's levels, orders, flags, trading state and last trade (tests/support/fast_feed_pair.py).

(a) days of the simulated exchange (its engine and packer), several seeds, every symbol followed and a
subset, as sent and one message per packet (the bench feed's generated days: tests/bench/test_feed_fast_days.py); (b) hand-built messages of
every type the books use (A F E C X D U P Q R H S B) and of ignored ones, laid out by the ITCH 5.0 table;
(c) hostile input: unknown references, over-execution, duplicate adds, zero and huge share counts, locate
65535, truncated and zero-length blocks, random bytes (and random sessions of them, with fuzzkit's case counts
and seeds: tests/fuzz/test_fuzz_feed_fast.py).
"""
from __future__ import annotations

import random

import pytest

from appliance.feed import fast
from appliance.feed.outputs import RING, SLOT
from appliance.wire import itch

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="appliance.feed._book_fast is not built")

from fast_feed_pair import (  # noqa: E402
    IGNORED, SYMBOLS, U32, VENUE_PRICES, Pair, action, add, blocks, cancel, cross, delete, directory, execute,
    execute_at, message, random_payload, replace, trade, venue_day,
)

LOCATES = {"AAPL": 1, "MSFT": 2, "SPY": 3, "QQQ": 65535}


@pytest.fixture
def pair():
    p = Pair(SYMBOLS)
    yield p
    p.close()


def open_day(pair: Pair) -> None:
    pair.publish_all()
    pair.packet(blocks(message("S", 0, 1, event_code="O"), *(directory(s, loc) for s, loc in LOCATES.items())))


# ---------------------------------------------------------------- (a) generated days

@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("followed", [list(VENUE_PRICES) + ["NOPE"], ["MSFT", "QQQ", "NOPE", "AMD"]])
def test_venue_days_packet_by_packet(seed, followed):
    """The exchange's own days (its matching engine and packer), every symbol followed and a subset."""
    p = Pair(followed)
    try:
        p.publish_all()
        updates = sum(len(p.packet(payload, mold_sequence=i, rx_ns=i)) for i, payload in enumerate(venue_day(seed)))
        p.check("end of day", orders=True)
        assert updates > 100 and p.fast.counters[fast.COUNTER_NAMES.index("messages")] > 1000
        assert (p.fast.scan_counters[itch.FILTERED_OUT] > 0) == (len(followed) < 5)
    finally:
        p.close()


def test_venue_day_message_by_message():
    """One message per packet: each message's update compared on its own."""
    p = Pair(list(VENUE_PRICES))
    try:
        for payload in venue_day(4, 3000):
            for start, length in itch.iter_blocks(payload):
                p.packet(payload[start - 2:start + length])
        p.check("end of day", orders=True)
    finally:
        p.close()


def test_event_clock_stamps_the_outputs_with_the_packets_rx():
    """``event_clock`` (the backtest's): a BookUpdate's t_feed_out_ns and the slot's t_update_ns are the packet's
    rx (event time there), not the wall clock, on both paths alike."""
    from appliance.messages.catalog import BOOK_UPDATE, MARKET_STATE
    p = Pair(list(VENUE_PRICES))
    p.outputs.event_clock = p.fast.event_clock = True
    p.py_ring.keep_clock = p.c_ring.keep_clock = True
    t_update = MARKET_STATE.offset_of["t_update_ns"]
    try:
        rx = 1_767_605_400_000_000_000
        for i, payload in enumerate(venue_day(5, 2000)):
            rx += 1_000 + i % 7
            updates = p.packet(payload, mold_sequence=i, rx_ns=rx)
            assert [BOOK_UPDATE.as_dict(u)["t_feed_out_ns"] for u in updates] == [rx] * len(updates)
            for u in updates:
                slot = p.slots[BOOK_UPDATE.as_dict(u)["symbol_id"]] + t_update
                assert p.mm[0][slot:slot + 8] == p.mm[1][slot:slot + 8] == rx.to_bytes(8, "little")
        assert p.fast.published > 100
    finally:
        p.close()


# ---------------------------------------------------------------- (b) hand-built messages of every type

def test_every_type_the_books_use(pair):
    open_day(pair)
    steps = [
        [add(1, 10, "B", 100, 5000), add(1, 11, "S", 200, 5010, mpid="MPID")],        # A, F
        [add(1, 12, "B", 50, 4990), add(1, 13, "B", 70, 5000), add(2, 20, "S", 5, 300, stock="MSFT")],
        [execute(1, 10, 40)],                                                        # E partial: a print
        [execute(1, 10, 60), execute(1, 13, 10)],                                    # two prints, one packet
        [execute_at(1, 11, 50, 5009), execute_at(1, 11, 10, 5008, printable="N")],    # C printable / not
        [cancel(1, 12, 20), cancel(1, 12, 30)],                                      # X partial, then whole
        [replace(1, 13, 14, 60, 5000), replace(1, 14, 15, 80, 5000), replace(1, 15, 16, 80, 5001)],  # U
        [delete(1, 16), delete(2, 20)],                                              # D
        [trade(1, 300, 5005), trade(1, 1, 5006), cross(1, 0, 5000), cross(1, 10**12, 5001)],  # P, Q (u64)
        [action(1, "H"), action(1, "H"), action(1, "T"), action(2, "P", stock="MSFT")],  # H
        [message("B", 1, 9, match_number=3), message("S", 0, 10, event_code="C")],    # B, S
        IGNORED,
        [add(3, 30, "S", 10, 100, stock="SPY"), add(3, 31, "B", 10, 101, stock="SPY"),   # crossed
         add(3, 32, "B", 5, 100, stock="SPY"), delete(3, 31)],                          # then locked
        [add(65535, 40, "B", U32, 7, stock="QQQ"), add(65535, 41, "B", U32, 7, stock="QQQ"),   # level > u32
         add(65535, 42, "B", 1, 6, stock="QQQ")],
    ]
    for i in range(10):                                                          # a deep book
        steps.append([add(2, 100 + i, "B", 10 + i, 290 - i, stock="MSFT"), add(2, 200 + i, "S", 1, 310 + i, stock="MSFT")])
    steps.append([execute(2, 100, 10), execute(2, 101, 11), execute(2, 102, 5)])
    for step in steps:
        pair.packet(blocks(*step))
    for step in steps:                                                           # each message alone too
        for m in step:
            pair.packet(blocks(m))
    pair.check("end", orders=True)
    pair.publish_all()


def test_identical_prints_aggressors_and_order_counts(pair):
    """The facts BookUpdate version 4 added, on both paths: a trade number per print (identical prints in one
    packet and across packets), the aggressor of E, C (known and unknown order), P (each indicator) and Q, the
    print's own timestamp, and the orders at each level through adds, partial and whole executions, replaces
    at the same and another price, cancels and deletes."""
    open_day(pair)
    steps = [
        [add(1, 1, "B", 100, 5000, ts=20), add(1, 2, "B", 50, 5000, ts=21), add(1, 3, "B", 10, 4990),
         add(1, 4, "S", 100, 5010), add(1, 5, "S", 100, 5010), add(1, 6, "S", 1, 5020, mpid="MPID")],
        [trade(1, 100, 5005, ts=30), trade(1, 100, 5005, ts=30), trade(1, 100, 5005, ts=30)],   # identical prints
        [trade(1, 100, 5005, ts=31, side="S"), trade(1, 100, 5005, ts=32, side=" ")],
        [execute(1, 1, 10, ts=40), execute(1, 1, 10, ts=40)],                     # E on a buy, identical twice
        [execute(1, 4, 100, ts=41)],                                              # E takes a sell order whole
        [execute_at(1, 5, 5, 5011, ts=42), execute_at(1, 2, 5, 4999, ts=43), execute_at(1, 99, 5, 5000, ts=44)],
        [execute_at(1, 5, 5, 5011, printable="N", ts=45)],
        [cross(1, 500, 5003, ts=46), cross(1, 0, 5003, ts=47)],
        [replace(1, 3, 7, 20, 4990), replace(1, 7, 8, 20, 5000), cancel(1, 8, 5), delete(1, 6)],
    ]
    for step in steps:
        pair.packet(blocks(*step))
    for step in steps:
        for m in step:
            pair.packet(blocks(m))
    pair.check("end", orders=True)
    aapl = pair.books.books[0]
    assert aapl.trades > 12 and aapl.last_trade_aggressor == 0 and aapl.order_counts(True) == [3]


def test_directory_handling(pair):
    pair.packet(blocks(directory("AAPL", 1), directory("TSLA", 4), directory("AAPL", 5), directory("MSFT", 5),
                       add(5, 1, "B", 10, 10, stock="MSFT"), add(1, 2, "B", 10, 10), directory("MSFT", 5)))
    pair.packet(blocks(action(5, "H", stock="MSFT"), directory("MSFT", 6), add(6, 3, "S", 1, 11, stock="MSFT")))
    pair.check("directory", orders=True)


def test_publish_to_slot_or_ring_and_a_full_ring(pair):
    open_day(pair)
    pair.packet(blocks(add(1, 1, "B", 10, 100), add(1, 2, "S", 10, 101)))
    pair.py_ring.full = pair.c_ring.full = True
    pair.packet(blocks(execute(1, 1, 1), execute(1, 1, 1), add(2, 3, "B", 1, 1, stock="MSFT")))
    pair.py_ring.full = pair.c_ring.full = False
    assert pair.fast.dropped == pair.outputs.dropped > 0
    for to in (SLOT, RING, SLOT | RING):
        pair.outputs.publish(pair.books.books[0], 9, 9, 2, to)
        pair.fast.publish(pair.fast.books[0], 9, 9, 2, to)
        assert pair.c_ring.take() == pair.py_ring.take()
        pair.check(f"to {to}")
    pair.outputs.feed_stale = pair.fast.feed_stale = True
    pair.publish_all()


def test_reset_clear_and_isolation(pair):
    open_day(pair)
    pair.packet(blocks(*(add(1 + i % 3, i, "B" if i % 2 else "S", 10, 100 + i % 7, stock=SYMBOLS[i % 3])
                         for i in range(1, 200))))
    pair.books.books[1].reset()
    pair.fast.books[1].reset()
    pair.check("reset", orders=True)
    for view in (pair.books.books[2], pair.fast.books[2]):       # what FeedAgent._isolate does
        view.reset()
        view.inconsistent = True
        view.last_error = "rebuilding"
    pair.publish_all()
    pair.packet(blocks(add(1, 500, "B", 1, 1), delete(2, 3)))
    pair.books.clear()
    pair.fast.clear()
    pair.check("clear", orders=True)
    pair.publish_all()
    open_day(pair)
    for raw in (itch.LAYOUT_BY_BYTE[m[0]].unpack_from(m, 0) for m in (add(1, 7, "B", 5, 50), execute(1, 7, 1))):
        assert pair.fast.apply(raw) == pair.books.apply(raw)     # the agent's snapshot replay path
    pair.check("apply", orders=True)
    assert pair.fast.book_of_locate[1].symbol == "AAPL" and pair.fast.book_of_locate[9] is None


# ---------------------------------------------------------------- (c) hostile input

def test_errors_counted_and_latched(pair):
    open_day(pair)
    pair.packet(blocks(add(1, 1, "B", 100, 10), add(1, 1, "B", 5, 11), add(1, 2, "S", 0, 12)))   # dup, zero
    pair.packet(blocks(execute(1, 99, 1), cancel(1, 98, 1), delete(1, 97), replace(1, 96, 95, 1, 1)))  # unknown
    pair.packet(blocks(execute(1, 1, 150)))                                                          # over
    pair.packet(blocks(add(2, 1, "B", 10, 10, stock="MSFT"), add(2, 2, "B", 10, 11, stock="MSFT"),
                       replace(2, 1, 2, 5, 12), replace(2, 2, 3, 0, 12), cancel(2, 9, 0)))
    pair.packet(blocks(add(3, 1, "B", 10, 10, stock="SPY"), execute(3, 1, 0), cancel(3, 1, 0),
                       execute(3, 1, U32), add(3, 2, "S", U32, U32, stock="SPY")))
    pair.check("errors", orders=True)
    names = fast.COUNTER_NAMES
    for name in ("unknown_order", "over_execution", "duplicate_add", "bad_shares"):
        assert pair.fast.counters[names.index(name)] > 0, name
    pair.packet(blocks(add(65535, 1, "B", 10, 20, stock="QQQ"), add(65535, 2, "S", 10, 19, stock="QQQ")))  # crossed
    flagged = [b.symbol_id for b in pair.books.books if b.inconsistent or b.crossed]
    assert [b.symbol_id for b in pair.fast.books_to_check()] == flagged == [0, 1, 2, 3]
    assert [b.symbol_id for b in pair.fast.books_to_check({3})] == flagged
    pair.fast.books[0].reset()
    pair.books.books[0].reset()
    assert [b.symbol_id for b in pair.fast.books_to_check()] == [1, 2, 3]
    assert [b.symbol_id for b in pair.fast.books_to_check([0])] == [0, 1, 2, 3]


def test_bad_blocks(pair):
    open_day(pair)
    good = add(1, 1, "B", 10, 10)
    for payload in (good[:-1], b"\x00\x00" + blocks(good), blocks(good)[:-3], blocks(good) + b"\x00",
                    (len(good) + 1).to_bytes(2, "big") + good + b"x", b"\x00\x05Zabcd", b"", b"\x00",
                    (40).to_bytes(2, "big") + good, blocks(good, good[:20])):
        pair.packet(payload)
    pair.check("bad blocks", orders=True)
    assert pair.fast.scan_counters[itch.MALFORMED] > 5


def test_many_orders_grow_and_are_counted():
    """A feed adding orders without end: the C table grows like the reference's dicts and says how much."""
    p = Pair(SYMBOLS)
    try:
        open_day(p)
        before = p.fast.stats()["memory_bytes"]
        for chunk in range(20):
            p.packet(blocks(*(add(1, chunk * 1000 + i, "B", 1, 1 + i % 500) for i in range(1000))), compare=False)
        p.check("many", orders=True)
        stats = p.fast.stats()
        assert stats["order_count"] == 20_000 and stats["memory_bytes"] > before and stats["alloc_failures"] == 0
    finally:
        p.close()


def test_deep_books_level_blocks_split_and_empty(pair):
    """Thousands of levels per side (the C side keeps them in blocks of 64): splits, emptied blocks, the top
    moving through block edges, compared packet by packet."""
    rng = random.Random(11)
    open_day(pair)
    live: list[tuple[int, int]] = []            # (locate, ref)
    ref = 0
    for step in range(120):
        batch = []
        for _ in range(60):
            roll = rng.random()
            if roll < 0.55 or not live:
                ref += 1
                locate = rng.choice((1, 2))
                price = rng.choice((rng.randrange(1, 4000), 2000 + rng.randrange(-5, 5)))
                batch.append(add(locate, ref, rng.choice("BS"), rng.randrange(1, 5) * 100, price,
                                 stock="AAPL" if locate == 1 else "MSFT"))
                live.append((locate, ref))
                continue
            locate, old = live.pop(rng.randrange(len(live)))
            if roll < 0.8:
                batch.append(delete(locate, old))
            elif roll < 0.9:
                ref += 1
                batch.append(replace(locate, old, ref, 100, rng.randrange(1, 4000)))
                live.append((locate, ref))
            else:
                batch.append(execute(locate, old, 1000))
        pair.packet(blocks(*batch))
    pair.check("deep", orders=True)
    assert max(len(b.levels(True)) for b in pair.fast.books) > 3 * 64      # several blocks
    while live:                                 # empty them again, best levels first half the time
        locate, old = live.pop(rng.randrange(len(live)) if rng.random() < 0.5 else -1)
        pair.packet(blocks(delete(locate, old)))
    pair.check("emptied", orders=True)
    assert all(not b.levels(True) and not b.levels(False) for b in pair.fast.books)
