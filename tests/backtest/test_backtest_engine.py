"""The backtest engine (appliance/backtest/engine.py) on hand-made days and a recorded simulated-exchange day."""
from __future__ import annotations

import gzip

import pytest

from appliance.backtest import report
from appliance.backtest.engine import Backtest, BacktestError
from appliance.messages.codes import TIF_DAY, TIF_IOC, RejectSource, RiskReason
from appliance.replay.latency import Latency
from appliance.strategy.market_maker import MarketMaker, MarketMakerParameters
from backtest_days import FEES, MS, S, T0, Day, Probe, recorded_day, setup, two_sided_day


def run(day_file, strategy=Probe, parameters=None, **options):
    bt = Backtest(setup(day_file, strategy, parameters, **options))
    return bt, bt.run()


def test_the_strategy_sees_an_event_only_its_feed_latency_after_it_happened(tmp_path):
    day = Day(tmp_path / "day.bin")
    day.add("AAPL", "B", 100, 1_899_900, T0 + 10 * MS)
    day.add("AAPL", "S", 100, 1_900_100, T0 + 10 * MS)          # one stamp: one update, both sides
    day.add("AAPL", "B", 100, 1_900_000, T0 + 10 * MS + 3_000)  # inside the feed latency of the first
    path = day.close(T0 + 20 * MS)
    _, record = run(path, latency=Latency(feed_ns=5_000, entry_ns=0, ack_ns=0))
    books = [e for e in Probe.seen if e[1] == "book" and e[2] == "AAPL" and (e[4] or e[5])]
    midnight = Probe.day_start(None) - T0
    assert [(now - midnight, exchange - midnight, bid, ask) for now, _, _, exchange, bid, ask in books] == [
        (T0 + 10 * MS + 5_000, T0 + 10 * MS, 1_899_900, 1_900_100),        # not the 190.00 bid of 3 us later
        (T0 + 10 * MS + 8_000, T0 + 10 * MS + 3_000, 1_900_000, 1_900_100)]
    assert record.start_ns == T0 and record.end_ns == T0 + 20 * MS


def test_orders_cross_risk_then_the_venue_with_entry_and_ack_latency_and_fees(tmp_path):
    day = Day(tmp_path / "day.bin")
    day.add("AAPL", "B", 300, 1_899_900, T0 + 1 * MS)
    ask = day.add("AAPL", "S", 300, 1_900_100, T0 + 1 * MS)
    day.execute("AAPL", ask, 100, T0 + 1 * MS + 6_000)           # before our order arrives: that much less
    path = day.close(T0 + 2 * S)
    plan = [(MS, "AAPL", "B", 300, 1_900_100, TIF_IOC), (MS, "AAPL", "S", 100, 1_900_200, TIF_DAY)]
    _, record = run(path, parameters={"orders": plan}, latency=Latency(feed_ns=1_000, entry_ns=10_000, ack_ns=7_000),
                    fees=FEES)
    sent = T0 + 1 * MS + 1_000
    assert [(f.time_ns, f.side, f.shares, f.price, f.liquidity, f.fee) for f in record.fills] == [
        (sent + 10_000, "B", 200, 1_900_100, "R", 200 * 30 // 100)]       # 0.0030 $/share: 60 price units
    fills = [e for e in Probe.seen if e[1] == "fill"]
    assert len(fills) == 1 and fills[0][0] - fills[0][5] == 7_000        # the report reaches us ack_ns later
    assert record.orders == 2 and record.intents == 2 and record.refusals == {}


def test_risk_refusals_reach_the_strategy_with_their_reason_and_are_counted(tmp_path):
    path = two_sided_day(tmp_path / "day.bin", minutes=1)
    plan = [(MS, "AAPL", "B", 2000, 1_899_900, TIF_DAY), (MS, "MSFT", "B", 100, 4_199_950, TIF_DAY),
            (MS, "AAPL", "B", 100, 1_899_900, TIF_DAY)]
    _, record = run(path, parameters={"orders": plan})
    rejected = [e[2:] for e in Probe.seen if e[1] == "rejected"]
    assert [(source, reason) for _, source, reason in rejected] == [
        (int(RejectSource.RISK), int(RiskReason.MAX_SHARES)), (int(RejectSource.RISK), int(RiskReason.TICK))]
    assert record.refusals == {"MAX_SHARES": 1, "TICK": 1}
    assert record.refusals_by_symbol == {"AAPL": {"MAX_SHARES": 1}, "MSFT": {"TICK": 1}}
    assert record.orders == 1 and record.orders_by_symbol == {"AAPL": 1}


def test_markouts_and_the_equity_curve_read_the_recorded_mid(tmp_path):
    path = two_sided_day(tmp_path / "day.bin", minutes=2)
    # the AAPL bid steps up to 190.00 at x.5 s and back at x.9 s of every second: the mid is 190.005 from x.5
    # to x.9 and 190.00 otherwise. A buy sent on the book of 0.5 s fills there at 190.01; a sell on the book
    # of 0.9 s at 189.99: their markouts land at x.5 (190.005) and x.9 (190.00, the delete stamped then)
    plan = [(200 * MS, "AAPL", "B", 100, 1_900_100, TIF_IOC), (700 * MS, "AAPL", "S", 100, 1_899_900, TIF_IOC)]
    _, record = run(path, parameters={"orders": plan})
    assert [(f.time_ns, f.side, f.price, f.mid_after) for f in record.fills] == [
        (T0 + 500 * MS, "B", 1_900_100, {1: 1_900_050.0, 10: 1_900_050.0, 60: 1_900_050.0}),
        (T0 + 900 * MS, "S", 1_899_900, {1: 1_900_000.0, 10: 1_900_000.0, 60: 1_900_000.0})]
    assert [p.time_ns for p in record.equity] == [T0, T0 + 60 * S, T0 + 120 * S]
    assert record.equity[0].mids == {}                            # 09:30:00: no quote yet
    assert record.equity[1].mids == {"AAPL": 1_900_000.0, "MSFT": 4_200_000.0}


def test_a_markout_past_the_end_of_the_day_is_none(tmp_path):
    path = two_sided_day(tmp_path / "day.bin", minutes=1)
    _, record = run(path, parameters={"orders": [(30 * S, "AAPL", "B", 100, 1_900_100, TIF_IOC)]})
    (fill,) = record.fills
    assert fill.time_ns == T0 + 30 * S + 500 * MS
    assert fill.mid_after == {1: 1_900_050.0, 10: 1_900_050.0, 60: None}      # 60 s later the day is over


def test_from_and_to_bound_the_strategy_not_the_books(tmp_path):
    path = two_sided_day(tmp_path / "day.bin", minutes=2)
    _, record = run(path, start_ns=T0 + 30 * S, end_ns=T0 + 90 * S)
    first = next(e for e in Probe.seen if e[1] == "book" and e[2] == "AAPL")
    assert first[4:] == (1_899_900, 1_900_100)                  # the book built before the start
    assert record.start_ns == T0 + 30 * S and record.end_ns == T0 + 90 * S
    assert [p.time_ns for p in record.equity] == [T0 + 30 * S, T0 + 90 * S]


def test_a_file_cut_mid_message_ends_the_day_with_a_warning(tmp_path):
    path = two_sided_day(tmp_path / "day.bin", minutes=1)
    data = path.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:-5])
    _, record = run(cut)
    assert len(record.warnings) == 1 and record.warnings[0].startswith(f"file ends mid-message at offset "
                                                                       f"{len(data) - 14}")


def test_bad_data_is_an_error_naming_the_offset(tmp_path):
    path = two_sided_day(tmp_path / "day.bin", minutes=1)
    data = bytearray(path.read_bytes())
    data[14 + 2] = ord("?")               # the second message (after the 12-byte 'S' and its length): unknown
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(BacktestError, match=r"bad ITCH data at byte offset 16: unknown ITCH message type"):
        run(bad)
    with pytest.raises(BacktestError, match="no such file|No such file"):
        run(tmp_path / "missing.bin")


def test_gzip_and_plain_give_the_same_record(tmp_path):
    path = two_sided_day(tmp_path / "day.bin", minutes=1)
    packed = tmp_path / "day.bin.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    plan = [(200 * MS, "AAPL", "B", 100, 1_900_100, TIF_IOC)]
    _, plain = run(path, parameters={"orders": plan})
    _, zipped = run(packed, parameters={"orders": plan})
    plain.seconds = zipped.seconds = 0.0
    zipped.day_file = plain.day_file
    assert plain == zipped and plain.fills


def test_the_market_maker_trades_a_recorded_day_and_the_same_seed_gives_a_byte_identical_report(tmp_path):
    day = recorded_day(tmp_path / "recorded")
    parameters = MarketMakerParameters()

    def once(directory):
        _, record = run(day, MarketMaker, parameters, queue_model="prob-power:2", seed=11,
                        latency=Latency(feed_ns=20_000, entry_ns=30_000, ack_ns=30_000), fees=FEES)
        report.write_report(record, directory)
        return record
    first, second = once(tmp_path / "a"), once(tmp_path / "b")
    assert first.orders > 10 and len(first.fills) > 5 and first.equity
    for name in ("report.json", "report.html"):
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        if name == "report.json":           # the run's wall time is the one field allowed to differ
            import json
            a, b = (json.loads(x) for x in (a, b))
            for doc in (a, b):
                for key in report.WALL_TIME_FIELDS:
                    doc["results"].pop(key)
        assert a == b, name
    first.seconds = second.seconds = 0.0
    assert first == second
