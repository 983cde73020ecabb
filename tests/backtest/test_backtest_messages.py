"""``record.messages`` counts the ITCH messages of the day replayed: with ``--to``, none stamped after it (the
one that ends the day, nor those of unsubscribed symbols the locate filter passed over before it)."""
from __future__ import annotations

from appliance.backtest.engine import Backtest
from backtest_days import MS, T0, Day, Probe, setup


def messages(path, **options) -> int:
    return Backtest(setup(path, Probe, **options)).run().messages


def test_to_counts_the_messages_up_to_its_stamp(tmp_path):
    day = Day(tmp_path / "day.bin")                               # S, R AAPL, R MSFT at T0
    day.add("AAPL", "B", 100, 1_899_900, T0 + 1 * MS)
    day.add("MSFT", "B", 100, 4_199_900, T0 + 2 * MS)             # the boundary: stamped exactly --to
    day.add("AAPL", "S", 100, 1_900_100, T0 + 3 * MS)
    path = day.close(T0 + 4 * MS)
    assert messages(path) == 7
    assert messages(path, end_ns=T0 + 2 * MS) == 5
    assert messages(path, end_ns=T0 + 2 * MS - 1) == 4
    assert messages(path, end_ns=T0 + 3 * MS) == 6
    assert messages(path, end_ns=T0 + 4 * MS) == 7


def test_to_leaves_out_filtered_messages_past_it(tmp_path):
    day = Day(tmp_path / "day.bin")
    day.add("AAPL", "B", 100, 1_899_900, T0 + 1 * MS)
    day.add("MSFT", "B", 100, 4_199_900, T0 + 2 * MS)             # MSFT: not an instrument, filtered out
    day.add("MSFT", "B", 100, 4_199_800, T0 + 3 * MS)
    day.add("AAPL", "S", 100, 1_900_100, T0 + 4 * MS)
    path = day.close(T0 + 5 * MS)
    only_aapl = {"symbols": ("AAPL",)}
    assert messages(path, **only_aapl) == 8
    assert messages(path, end_ns=T0 + 2 * MS, **only_aapl) == 5
    assert messages(path, end_ns=T0 + 1 * MS, **only_aapl) == 4
    assert messages(path, end_ns=T0 + 4 * MS + 500, **only_aapl) == 7       # the close, past it, ends the day


def test_a_day_ending_in_filtered_messages_past_to_leaves_them_out(tmp_path):
    day = Day(tmp_path / "day.bin")
    day.add("AAPL", "B", 100, 1_899_900, T0 + 1 * MS)
    day.add("MSFT", "B", 100, 4_199_900, T0 + 2 * MS)
    day.add("MSFT", "B", 100, 4_199_800, T0 + 3 * MS)
    day.writer.close()                                            # no close message: the file ends there
    path = day.path
    assert messages(path, symbols=("AAPL",)) == 6
    assert messages(path, end_ns=T0 + 2 * MS, symbols=("AAPL",)) == 5
    assert messages(path, end_ns=T0 + 1 * MS, symbols=("AAPL",)) == 4
