"""Market-state table: one seqlocked slot per symbol; readers never see a half-written slot."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_STALE
from appliance.runtime.layout import load_layout
from appliance.runtime.market_state import SEQLOCK_OFFSET, MarketStateReader, TornRead
from appliance.runtime.memory import SharedMemory
from conftest import ROOT, layout_document

SYMBOLS = ["AAPL", "MSFT", "SPY"]


@pytest.fixture
def layout_path(write_layout, unique_name):
    doc = layout_document(
        unique_name,
        processes=[{"name": "feed", "agent": "m:A", "idle": {"strategy": "yield"}},
                   {"name": "risk", "agent": "m:B", "idle": {"strategy": "yield"}}],
        rings=[{"name": "r", "segment": "main", "producer": "feed", "consumer": "risk", "message": "Probe",
                "slot_size": 64, "capacity": 64}],
        slots_per_process=4, symbols=SYMBOLS)
    return write_layout(doc)


def test_a_written_slot_reads_back_whole(layout_path):
    with SharedMemory.create(load_layout(layout_path)) as memory:
        reader = memory.market_state_reader()
        assert reader.read(1).t_update_ns == 0 and reader.age_ns(1) is None    # never written
        writer = memory.market_state_writer()
        writer.publish(1, 3_000_000, 200, 3_000_100, 300, 3_000_050, 100, BOOK_FLAG_STALE | BOOK_FLAG_CROSSED,
                       ord("T"), 7, 11, 13)
        view = reader.read(1)
        assert (view.symbol, view.bid_price, view.bid_shares, view.ask_price, view.ask_shares) == \
            ("MSFT", 3_000_000, 200, 3_000_100, 300)
        assert (view.last_trade_price, view.last_trade_shares, view.trading_state) == (3_000_050, 100, "T")
        assert view.stale and view.flag_names == ["stale", "crossed"]
        assert (view.update_sequence, view.t_exchange_ns, view.t_update_ns) == (7, 11, 13)
        assert reader.read(0).symbol == "AAPL" and reader.read(0).t_update_ns == 0


def test_a_slot_stuck_mid_write_is_reported_not_spun_on_forever(layout_path):
    with SharedMemory.create(load_layout(layout_path)) as memory:
        reader = memory.market_state_reader()
        offset = reader.offsets[2] + SEQLOCK_OFFSET
        reader.atomics.store(offset, 1)            # a writer that died between its two stores
        with pytest.raises(TornRead, match="MarketState slot SPY"):
            reader.read(2)
        reader.atomics.store(offset, 2)
        writer = memory.market_state_writer()      # a restarted feed carries on from an even number
        writer.publish(2, 1, 1, 2, 1, 0, 0, 0, ord("T"), 1, 1, 1)
        assert reader.atomics.load(offset) == 4 and reader.read(2).bid_price == 1


WRITER = textwrap.dedent("""
    import sys
    from appliance.runtime.layout import load_layout
    from appliance.runtime.memory import SharedMemory
    layout = load_layout(sys.argv[1])
    memory = SharedMemory.attach(layout)
    writer = memory.market_state_writer()
    print("ready", flush=True)
    for k in range(1, int(sys.argv[2]) + 1):
        s = k % 3
        # every field a function of k: a reader that mixes two writes sees the mismatch
        writer.publish(s, k, k * 3 % 100_000, k + 1, k * 7 % 100_000, k + 2, k % 1000, k & 31, 84, k, 2 * k, 3 * k)
    writer.close()
    memory.close()
""")


def test_a_reader_in_another_process_never_sees_a_torn_slot(layout_path):
    writes = 300_000
    with SharedMemory.create(load_layout(layout_path)) as memory:
        reader: MarketStateReader = memory.market_state_reader()
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(layout_path), str(writes)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            reads = 0
            seen = set()
            while proc.poll() is None or reads == 0:
                for s in range(3):
                    v = reader.read(s)
                    k = v.update_sequence
                    if k == 0:
                        continue
                    assert k % 3 == s
                    assert (v.bid_price, v.bid_shares, v.ask_price, v.ask_shares, v.last_trade_price,
                            v.last_trade_shares, v.flags, v.trading_state, v.t_exchange_ns, v.t_update_ns) == \
                        (k, k * 3 % 100_000, k + 1, k * 7 % 100_000, k + 2, k % 1000, k & 31, "T", 2 * k, 3 * k)
                    seen.add(k)
                    reads += 1
            assert proc.wait(timeout=60) == 0, proc.stdout.read().decode()
            assert reads > 0 and len(seen) > 1
            final = [reader.read(s).update_sequence for s in range(3)]
            assert sorted(final) == [writes - 2, writes - 1, writes]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------ marks only from good books

from appliance.messages.catalog import BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED  # noqa: E402
from appliance.messages.codes import FeedStaleReason  # noqa: E402
from appliance.runtime.market_state import (  # noqa: E402
    MarketStateWriter, book_problem, describe_problems, good_mark, mark_of, symbol_problems,
)


@pytest.mark.parametrize("bid,ask,last,flags,mark", [
    (1_000_000, 1_000_200, 0, 0, 1_000_100),                               # the mid
    (1_000_000, 0, 999_900, 0, 999_900),                                   # one side: the last trade
    (0, 0, 0, 0, 0),                                                       # nothing to mark at
    (1_000_000, 1_000_000, 0, BOOK_FLAG_LOCKED, 1_000_000),                # locked is real data
    (1_000_000, 1_000_200, 0, BOOK_FLAG_HALTED, 1_000_100),                # so is a halt
    (1_000_000, 1_000_200, 0, BOOK_FLAG_STALE, 0),
    (1_000_000, 1_000_200, 0, BOOK_FLAG_INCONSISTENT, 0),
    (9_999_900, 1_000_200, 0, BOOK_FLAG_CROSSED, 0),                       # the forged $999.99 bid
    (9_999_900, 1_000_200, 0, 0, 0),                                       # crossed even if not flagged
])
def test_a_good_mark_comes_only_from_a_live_uncrossed_book(bid, ask, last, flags, mark):
    assert good_mark(bid, ask, last, flags) == mark
    assert mark_of(bid, ask, last, flags, 123) == ((mark, False) if mark else (123, True))


def test_the_writer_keeps_the_last_good_mark_while_the_book_is_bad_and_across_its_restart(layout_path):
    with SharedMemory.create(load_layout(layout_path)) as memory:
        reader = memory.market_state_reader()
        writer = memory.market_state_writer()
        assert reader.read(0).mark == (0, True)                          # never marked
        writer.publish(0, 1_000_000, 100, 1_000_200, 100, 0, 0, 0, ord("T"), 1, 1, 1)
        assert reader.read(0).mark == (1_000_100, False)
        forged = BOOK_FLAG_STALE | BOOK_FLAG_CROSSED | BOOK_FLAG_INCONSISTENT
        writer.publish(0, 9_999_900, 100, 1_000_200, 100, 0, 0, forged, ord("T"), 2, 2, 2)
        assert reader.read(0).mark == (1_000_100, True) and reader.read(0).mark_price == 1_000_100
        restarted = MarketStateWriter(memory.buffer_of("main"), memory.layout)   # a restarted feed: empty, stale
        restarted.publish(0, 0, 0, 0, 0, 0, 0, BOOK_FLAG_STALE, 0, 3, 3, 3)
        assert reader.read(0).mark == (1_000_100, True)
        restarted.publish(0, 1_100_000, 100, 1_100_200, 100, 0, 0, 0, ord("T"), 4, 4, 4)
        assert reader.read(0).mark == (1_100_100, False)


def test_why_a_book_is_bad_names_the_feed_reason_first_then_the_books_own_flags(layout_path):
    assert book_problem(0, FeedStaleReason.GAP_LOST) == ""
    assert book_problem(BOOK_FLAG_STALE, FeedStaleReason.GAP_LOST) == "gap lost"
    assert book_problem(BOOK_FLAG_STALE | BOOK_FLAG_INCONSISTENT, 0) == "inconsistent"
    assert book_problem(BOOK_FLAG_CROSSED, 0) == "crossed"
    assert book_problem(BOOK_FLAG_STALE, 0) == "no directory yet"
    assert book_problem(BOOK_FLAG_STALE, 99) == "feed(99)"             # a code added later: shown, not raised
    with SharedMemory.create(load_layout(layout_path)) as memory:
        reader, writer = memory.market_state_reader(), memory.market_state_writer()
        writer.publish(0, 1_000_000, 100, 1_000_200, 100, 0, 0, 0, ord("T"), 1, 1, 1)
        writer.publish(1, 2_000_000, 100, 1_000_200, 100, 0, 0, BOOK_FLAG_CROSSED, ord("T"), 1, 1, 1)
        assert symbol_problems(reader, 0) == {"MSFT": "crossed", "SPY": "no data yet"}


def test_many_bad_symbols_are_grouped_by_reason_and_truncated():
    problems = {f"S{i}": "gap lost" for i in range(8)} | {"TSLA": "crossed", "OK": ""}
    assert describe_problems(problems) == "gap lost: S0 S1 S2 S3 S4 +3 more; crossed: TSLA"
    assert describe_problems({}) == ""
