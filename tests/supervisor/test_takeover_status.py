"""The takeover counters as operators read them (``supervisor/takeover_status.py``), written by the
supervisor's ``TakeoverRecord`` into a real counters table: nothing without a standby, "takeovers 0"
before the first, "under way" (never the previous duration) while one runs, then the figures; the same
summary as the exporter's families. The whole path after a real takeover: test_supervisor_takeover.py."""
from __future__ import annotations

import time

import pytest

from appliance.ops import metrics
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.supervisor import takeover_status
from appliance.supervisor.standby import TakeoverRecord
from conftest import layout_document


@pytest.fixture
def memory(write_layout, unique_name):
    doc = layout_document(
        unique_name,
        processes=[{"name": "supervisor", "agent": "m:S", "idle": {"strategy": "yield"}},
                   {"name": "b", "agent": "m:B", "idle": {"strategy": "yield"}}],
        rings=[{"name": "r", "segment": "main", "producer": "supervisor", "consumer": "b", "message": "Probe",
                "slot_size": 64, "capacity": 64}],
        slots_per_process=8)
    with SharedMemory.create(load_layout(write_layout(doc))) as mem:
        yield mem


def families(counters: dict[str, int]) -> dict[str, float]:
    return {sample.name: sample.value for family in metrics._takeover(counters) for sample in family.samples}


def test_the_takeover_counters_read_as_operators_see_them(memory):
    read = lambda: memory.counters_reader().by_label()          # noqa: E731
    memory.counters_writer("b").allocate("b.sent").inc()
    assert takeover_status.summary(read()) is None and families(read()) == {}   # no standby: nothing shown

    record = TakeoverRecord(memory.counters_writer("supervisor"))
    none_yet = takeover_status.summary(read())
    assert none_yet == {"count": 0, "under_way": False, "last_unix_ns": None, "last_gate_closed_ms": None,
                        "last_old_pid": None, "last_new_pid": None, "last_planned": None, "last_remote": None}
    assert takeover_status.one_line(none_yet) == "takeovers 0"
    assert families(read()) == {"appliance_takeover_total": 0, "appliance_takeover_under_way": 0}

    began = time.time_ns()
    record.begun(began, 4100, 4200, planned=False)
    under_way = takeover_status.summary(read())
    assert (under_way["count"], under_way["under_way"], under_way["last_gate_closed_ms"], under_way["last_old_pid"],
            under_way["last_new_pid"], under_way["last_planned"], under_way["last_unix_ns"]) == \
        (1, True, None, 4100, 4200, False, began)
    assert takeover_status.one_line(under_way).endswith("crash pid 4100 -> 4200, under way")
    assert "appliance_takeover_last_gate_closed_seconds" not in families(read())

    record.done(181_250_000)
    done = takeover_status.summary(read())
    assert (done["under_way"], done["last_gate_closed_ms"]) == (False, 181.25)
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began / 1e9))
    assert takeover_status.one_line(done) == f"takeovers 1, last {at} crash pid 4100 -> 4200, gate closed 181.2 ms"
    assert families(read()) == {
        "appliance_takeover_total": 1, "appliance_takeover_under_way": 0,
        "appliance_takeover_last_timestamp_seconds": began / 1e9, "appliance_takeover_last_planned": 0,
        "appliance_takeover_last_remote": 0,
        "appliance_takeover_last_old_pid": 4100, "appliance_takeover_last_new_pid": 4200,
        "appliance_takeover_last_gate_closed_seconds": 0.18125}

    # a failover next: under way again (the last duration is the previous takeover's, so it is not shown)
    record.begun(began + 5_000_000_000, 4200, 4300, planned=True)
    second = takeover_status.summary(read())
    assert (second["count"], second["under_way"], second["last_gate_closed_ms"], second["last_planned"]) == \
        (2, True, None, True)
    assert "failover pid 4200 -> 4300, under way" in takeover_status.one_line(second)
    record.done(0)                                              # a duration that rounds to nothing: still done
    assert takeover_status.summary(read())["under_way"] is False

    # from another box (remote_standby.py): the other box's pid is unknown here, the line says remote
    record.begun(began, 0, 4400, planned=False, remote=True)
    record.done(2_500_000_000)
    remote = takeover_status.summary(read())
    assert (remote["count"], remote["last_remote"], remote["last_planned"], remote["last_old_pid"]) == \
        (3, True, False, 0)
    assert takeover_status.one_line(remote) == f"takeovers 3, last {at} remote -> pid 4400, gate closed 2,500.0 ms"
    assert families(read())["appliance_takeover_last_remote"] == 1
    record.begun(began, 4400, 4500, planned=False)               # the next one on this box: not remote
    assert takeover_status.summary(read())["last_remote"] is False

    # a supervisor restarted on the same segment finds its counters again and carries on counting
    TakeoverRecord(memory.counters_writer("supervisor")).begun(began, 1, 2, planned=False)
    assert takeover_status.summary(read())["count"] == 5
