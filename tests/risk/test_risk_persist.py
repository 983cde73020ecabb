"""The risk state file: its format read strictly, written atomically, and the writer's thread."""
from __future__ import annotations

import json
import os
import threading

import pytest

from appliance.risk.persist import (DurableState, Latch, StateFileError, StateWriter, decode, describe, encode,
                                    read_state, write_atomic)
from risk_harness import DOLLAR, NOW, Harness, with_global

DAY = 20250314


def full_state() -> DurableState:
    return DurableState(kill=Latch("DAILY_LOSS", "", NOW, -50_001 * DOLLAR),
                        symbols_killed={"AAPL": Latch("MANUAL", "carol", NOW + 1)},
                        reducing=None, peak_pnl=1_234 * DOLLAR)


def test_what_is_written_is_read_back():
    for state in (DurableState(), full_state(),
                  DurableState(reducing=Latch("REDUCING", "erin", NOW), peak_pnl=-5)):
        day, back = decode(encode(state, DAY, NOW))
        assert (day, back) == (DAY, state)


def test_the_file_is_plain_json_a_person_can_read():
    document = json.loads(encode(full_state(), DAY, NOW))
    assert document == {"version": 1, "trading_day": DAY, "written_ns": NOW,
                        "kill": {"reason": "DAILY_LOSS", "operator": "", "t_ns": NOW, "value": -500_010_000},
                        "symbols_killed": {"AAPL": {"reason": "MANUAL", "operator": "carol", "t_ns": NOW + 1}},
                        "reducing": None, "peak_pnl": 12_340_000}
    assert describe(full_state()) == ("kill switch latched for DAILY_LOSS; symbols latched: AAPL (by carol); "
                                      "peak P&L 1234.00")


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d.pop("peak_pnl"), "peak_pnl: missing required key"),
    (lambda d: d.update(extra=1), "extra: unknown key"),
    (lambda d: d.update(trading_day="today"), "trading_day: expected an integer"),
    (lambda d: d.update(peak_pnl=1.5), "peak_pnl: expected an integer"),
    (lambda d: d["kill"].pop("value"), "kill.value: missing required key"),
    (lambda d: d["kill"].update(reason=""), "kill.reason: must not be empty"),
    (lambda d: d["kill"].update(operator=7), "kill.operator: expected a string"),
    (lambda d: d.update(symbols_killed=["AAPL"]), "symbols_killed: expected an object"),
    (lambda d: d["symbols_killed"].update(MSFT=None), "symbols_killed.MSFT: expected an object"),
])
def test_a_file_that_is_not_exactly_right_is_refused_with_a_reason(mutate, reason):
    document = json.loads(encode(full_state(), DAY, NOW))
    mutate(document)
    with pytest.raises(StateFileError, match=reason):
        decode(json.dumps(document).encode(), "risk-state.json")


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"\xff\xfe", b"null"])
def test_garbage_is_refused(data):
    with pytest.raises(StateFileError):
        decode(data)


def test_a_missing_file_is_none_and_an_unreadable_one_an_error(tmp_path):
    assert read_state(str(tmp_path / "absent.json")) is None
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(StateFileError, match="cannot be read"):
        read_state(str(tmp_path / "dir.json"))


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "risk-state.json"
    path.write_text("old")
    write_atomic(str(path), encode(full_state(), DAY, NOW))
    assert read_state(str(path)) == (DAY, full_state())
    assert os.listdir(tmp_path) == ["risk-state.json"]
    with pytest.raises(OSError):
        write_atomic(str(tmp_path / "no-such-dir" / "risk-state.json"), b"{}")
    assert read_state(str(path)) == (DAY, full_state())          # a failed write leaves the old file


def test_the_writer_reports_success_failure_and_a_write_that_takes_too_long(tmp_path):
    gate = threading.Event()
    written = []

    def write(path, data):
        if data == b"slow":
            assert gate.wait(10)
        if data == b"fail":
            raise OSError(28, "No space left on device", path)
        written.append(data)

    writer = StateWriter(str(tmp_path / "s.json"), write)
    try:
        assert writer.write(b"one", 10) is True
        assert writer.write(b"fail", 10) is False and writer.failures == 1
        assert "No space left on device" in writer.last_error
        assert writer.write(b"slow", 0.05) is None                 # not done in time: still under way
        assert not writer.idle
        gate.set()
        assert writer.wait(writer.submit(b"two"), 10) is True and writer.idle
        assert written == [b"one", b"slow", b"two"] and writer.writes == 3
    finally:
        gate.set()
        writer.close()


def test_the_writer_skips_to_the_newest_state(tmp_path):
    gate, started = threading.Event(), threading.Event()
    written = []

    def write(path, data):
        if data == b"first":
            started.set()
            assert gate.wait(10)
        written.append(data)

    writer = StateWriter(str(tmp_path / "s.json"), write)
    try:
        first = writer.submit(b"first")
        assert started.wait(10)                                 # the thread is inside the first write
        for data in (b"a", b"b", b"c"):
            last = writer.submit(data)
        gate.set()
        assert writer.wait(last, 10) is True and writer.wait(first, 0) is True
        assert written == [b"first", b"c"]
    finally:
        gate.set()
        writer.close()


def test_a_restored_peak_is_the_drawdown_reference_when_higher_than_the_rebuilt_pnl():
    h = Harness(with_global(max_drawdown=500), ready=False)
    h.engine.restore_peak(1_000 * DOLLAR)
    h.engine.mark_ready(NOW)                                   # rebuilt P&L 0: $1,000 under the day's peak
    assert h.engine.peak_pnl == 1_000 * DOLLAR
    assert h.engine.housekeeping(NOW) != 0 and h.engine.control.kill_reason == "DRAWDOWN"
    h = Harness(with_global(max_drawdown=500), ready=False)
    h.engine.restore_peak(-300 * DOLLAR)                       # below the rebuilt P&L: the P&L is the peak
    h.engine.mark_ready(NOW)
    assert h.engine.peak_pnl == 0 and h.engine.housekeeping(NOW) == 0
