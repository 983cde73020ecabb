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
