"""Issue 22, item 3: the gate names market data. A subscribed book bad (stale, inconsistent or
crossed) for longer than ``market_data_stale_ms`` closes the gate with MARKET_DATA until every
book is good again; ``appliance status`` says which symbols and why."""
from __future__ import annotations

import json

import pytest

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_STALE
from appliance.messages.codes import FeedStaleReason, GateReason
from appliance.oms import journal_records as jr
from appliance.oms.journal_records import ControlKind
from appliance.oms.recovery import CANCEL_ALL_GATE_REASONS
from appliance.runtime.memory import SharedMemory
from appliance.supervisor.config import SupervisorConfigError, parse_supervisor_params
from appliance.supervisor.gate import MarketDataWatch
from conftest import wait_until
from supervisor_rig import appliance, make_layout, up_factory  # noqa: F401 (the supervisor tests' rig and fixture)

MS = 1_000_000


def test_the_watch_trips_after_the_limit_and_holds_until_every_book_is_good():
    watch = MarketDataWatch(3000 * MS)
    assert not watch.update(0, {"AAPL": "gap lost"})
    assert not watch.update(2999 * MS, {"AAPL": "gap lost"})            # a short outage is forgiven
    assert watch.update(3000 * MS, {"AAPL": "gap lost", "MSFT": "crossed"})
    assert watch.update(3500 * MS, {"MSFT": "crossed"})                 # AAPL back, MSFT still bad: held
    assert not watch.update(3600 * MS, {})                               # all good: cleared at once
    assert not watch.update(3700 * MS, {"AAPL": "feed silent"})          # a new outage starts a new wait
    assert not watch.update(3800 * MS, {})
    assert not watch.update(7000 * MS, {"AAPL": "feed silent"})          # the timer restarted after a break


def test_the_oms_pulls_resting_orders_when_the_gate_closes_for_market_data():
    assert GateReason.MARKET_DATA & CANCEL_ALL_GATE_REASONS
    closed = jr.CONTROL.parse(jr.CONTROL.pack(ControlKind.GATE_CHANGED, 0, int(GateReason.MARKET_DATA), 7))
    from appliance.oms.recovery import apply_control

    class Book:
        def owe_cancels(self, symbol_id=None):
            return 3
    assert apply_control(Book(), closed) == 3


@pytest.mark.parametrize("value,reason", [
    ("3000", "expected an integer"), (True, "expected an integer"), (99, "must be 100..600000"),
    (600_001, "must be 100..600000"),
])
def test_market_data_stale_ms_is_validated(value, reason):
    with pytest.raises(SupervisorConfigError) as error:
        parse_supervisor_params({"market_data_stale_ms": value}, ["feed"])
    assert error.value.key_path == "processes.supervisor.params.market_data_stale_ms" and reason in str(error.value)
    assert parse_supervisor_params({}, ["feed"]).market_data_stale_ms == 3000
    assert parse_supervisor_params({"market_data_stale_ms": 250}, ["feed"]).market_data_stale_ms == 250


def test_a_book_bad_past_the_limit_closes_the_gate_for_market_data_and_status_names_it(tmp_path, unique_name,
                                                                                         up_factory):
    path = make_layout(tmp_path, unique_name, feed="supervised_agents:FakeFeed",
                       supervisor_params={"market_data_stale_ms": 300})
    up = up_factory(path).attach()
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open with every book live")
    with SharedMemory.attach(up.layout, writable=True) as memory:     # the test plays the feed from here on
        market, control = memory.market_state_writer(), memory.control("*")
        control.set("feed_stale_reason", FeedStaleReason.GAP_LOST)
        market.publish(0, 9_999_900, 100, 1_000_200, 100, 0, 0, BOOK_FLAG_STALE | BOOK_FLAG_CROSSED, ord("T"),
                       2, 2, 2)
        wait_until(lambda: GateReason.MARKET_DATA in up.gate()[1], 10, message="gate closed for market data")
        assert up.gate()[0] == 0
        status = json.loads(appliance("status", "--layout", str(path), "--json").stdout)
        assert status["gate"]["reasons"] == ["MARKET_DATA"]
        assert status["market_data"]["problems"] == {"AAPL": "gap lost"}
        assert status["feed"]["stale_reason"] == "gap lost"
        text = appliance("status", "--layout", str(path)).stdout
        assert "gate: CLOSED (market_data)" in text and "market data: gap lost: AAPL" in text, text
        control.set("feed_stale_reason", FeedStaleReason.LIVE)
        market.publish(0, 1_000_000, 100, 1_000_200, 100, 0, 0, 0, ord("T"), 3, 3, 3)
        wait_until(lambda: up.gate()[0] == 1, 10, message="gate reopened with every book live")
        market.close()
        control.close()
    assert appliance("down", "--layout", str(path), "--operator", "tester").returncode == 0
    assert up.proc.wait(30) == 0
    output = up.output()
    assert "market data bad for over 300 ms: gap lost: AAPL" in output, output
    assert "gate closed: market_data (was open)" in output and "market data good again" in output, output
