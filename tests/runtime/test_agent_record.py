"""The order in which a (re)started agent publishes its process record.

The record of a process that was SIGKILLed keeps its RUNNING state and last heartbeat. A reader
that sees the new pid must never see the predecessor's state with it: a restarted agent looked
RUNNING (and its peers' readiness words still the dead one's) before its ``on_start`` ran."""
from __future__ import annotations

from types import SimpleNamespace

from appliance.runtime import _shm
from appliance.runtime.agent import AgentRunner
from appliance.runtime.counters import ProcessState


class RecordingRecord:
    """Stands in for the process table: every store, in order."""

    def __init__(self) -> None:
        self.stores: list[tuple[int, int]] = []

    def store(self, offset: int, value: int) -> None:
        self.stores.append((offset, value))


def test_the_new_pid_is_published_only_after_the_state_says_starting_and_the_beats_are_cleared():
    record = RecordingRecord()
    process = SimpleNamespace(name="risk", cpu=None, scheduling=SimpleNamespace(policy="other", mlockall=False))
    idle = SimpleNamespace(id=1, parks=False)
    runner = AgentRunner(agent=None, idle=idle, heartbeat=None, record=record, record_offset=0, process=process)
    runner.prepare()
    order = [offset for offset, _ in record.stores]
    pid_at = order.index(_shm.PROC_PID_OFFSET)
    state_at = order.index(_shm.PROC_STATE_OFFSET)
    assert record.stores[state_at][1] == int(ProcessState.STARTING)
    assert state_at < pid_at, "the new pid was visible with the predecessor's state"
    assert order.index(_shm.PROC_LAST_BEAT_MONO_NS_OFFSET) < pid_at and order.index(_shm.PROC_BEATS_OFFSET) < pid_at
