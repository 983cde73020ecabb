"""The OMS's view of the trading gate: read whole, whatever the supervisor is doing.

The supervisor writes the gate and the OMS reads it from another process with no lock. The test
replays the supervisor's stores one at a time and lets the OMS's reads fall at every possible
point between them: each read must see one decision, the one before or the one after, never an
old ``open`` next to a new epoch (which would let the OMS skip the cancel-all that epoch asks for).
"""
from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest

from appliance.messages.codes import ClockState, GateReason, OmsReason
from appliance.oms.gate import GATE_OPEN, Gate
from appliance.supervisor.agent import SupervisorAgent
from oms_rig import Rig, oms_layout


@pytest.fixture
def rig(write_layout, unique_name, tmp_path):
    rig = Rig(write_layout(oms_layout(unique_name, 1, str(tmp_path / "journal.bin"))))
    yield rig
    rig.close()


class RecordingAtomics:
    """The supervisor's atomics: every store is applied and remembered in order."""

    def __init__(self, real):
        self.real = real
        self.stores: list[tuple[int, int]] = []

    def store(self, offset: int, value: int) -> None:
        self.stores.append((offset, value))
        self.real.store(offset, value)

    def load(self, offset: int) -> int:
        return self.real.load(offset)

    def load_signed(self, offset: int) -> int:
        return self.real.load_signed(offset)


class ScheduledAtomics:
    """The OMS's atomics: load number i sees memory as it was after ``schedule[i]`` of the stores."""

    def __init__(self, states: list[dict], schedule: tuple[int, ...]):
        self.states, self.schedule, self.loads = states, schedule, 0

    def load(self, offset: int) -> int:
        state = self.states[self.schedule[min(self.loads, len(self.schedule) - 1)]]
        self.loads += 1
        return state.get(offset, 0)


def supervisor_writing(rig: Rig, reasons_before: GateReason):
    """A stand-in for the supervisor agent, as far as ``_write_gate`` needs one."""
    control = rig.memory.control("supervisor")
    atomics = RecordingAtomics(control.atomics)
    control.atomics = atomics
    me = SimpleNamespace(control=control, reasons=reasons_before, c_gate_changes=SimpleNamespace(inc=lambda: None),
                         _gate_doorbells=())
    return me, atomics


@pytest.mark.parametrize("before,after", [
    (GateReason(0), GateReason.KILL_SWITCH),                        # open -> closed for the kill switch
    (GateReason(0), GateReason.RISK_UNHEALTHY),
    (GateReason.KILL_SWITCH, GateReason(0)),                        # closed -> open
    (GateReason.OPERATOR, GateReason.OPERATOR | GateReason.KILL_SWITCH),
])
def test_every_interleaving_of_a_gate_write_with_the_oms_read_sees_one_whole_decision(rig, before, after):
    supervisor, atomics = supervisor_writing(rig, GateReason(-1 & 0x1FF))
    SupervisorAgent._write_gate(supervisor, before)
    gate = Gate(rig.memory, rig.layout, "risk", 250)
    old = tuple(gate.gate_word())
    words = range(rig.layout.table_of_kind("control").offset, rig.layout.table_of_kind("control").offset + 64 * 32, 64)
    state = {offset: atomics.real.load(offset) for offset in words}
    atomics.stores.clear()
    SupervisorAgent._write_gate(supervisor, after)
    new = tuple(gate.gate_word())
    assert old != new and (new[0] == 1) == (not after) and new[1] == after and new[2] == old[2] + 1
    states = [dict(state)]
    for offset, value in atomics.stores:
        state[offset] = value
        states.append(dict(state))
    probe = ScheduledAtomics(states, (0,))
    gate._control_atomics = probe
    gate.gate_word()
    loads = probe.loads
    for schedule in itertools.combinations_with_replacement(range(len(states)), loads):
        gate._control_atomics = ScheduledAtomics(states, schedule)
        seen = tuple(gate.gate_word())
        assert seen in (old, new), f"reads after stores {schedule} saw {seen}: neither {old} nor {new}"


def test_the_gate_refuses_in_its_documented_order(rig):
    supervisor = rig.memory.control("supervisor")
    gate = Gate(rig.memory, rig.layout, "risk", 10_000)
    rig.heartbeat.beating.set()
    from conftest import wait_until
    wait_until(lambda: gate.risk_fresh(time.monotonic_ns()), 5, message="risk's heartbeat")
    assert gate.check(time.monotonic_ns()) == OmsReason.NOT_RECOVERED
    gate.recovered = True
    gate.session_ready = True
    supervisor.write_gate(GateReason.OPERATOR)
    assert gate.check(time.monotonic_ns()) == OmsReason.GATE_CLOSED
    supervisor.write_gate(0)
    assert gate.check(time.monotonic_ns()) == GATE_OPEN
    gate.session_ready = False
    assert gate.check(time.monotonic_ns()) == OmsReason.SESSION_DOWN
    gate.journal_ok = False
    assert gate.check(time.monotonic_ns()) == OmsReason.JOURNAL_FAILED
    gate.journal_ok = True
    gate.session_ready = True
    rig.heartbeat.beating.clear()
    gate.limit_ns = 1
    assert gate.check(time.monotonic_ns()) == OmsReason.RISK_STALE


# ---------------------------------------------------------------- the per-order check, step by step

@pytest.fixture
def quiet(write_layout, unique_name, tmp_path):
    """The OMS's shared memory with nobody beating risk's heartbeat (the test beats it by hand)."""
    from appliance.runtime.layout import load_layout
    from appliance.runtime.memory import SharedMemory
    with SharedMemory.create(load_layout(write_layout(oms_layout(unique_name, 1, str(tmp_path / "j.bin"))))) as memory:
        yield memory


def open_gate(memory, limit_ms: int = 250) -> tuple[Gate, int]:
    """A Gate with every condition met, and the monotonic time of risk's one heartbeat."""
    gate = Gate(memory, memory.layout, "risk", limit_ms)
    memory.control("supervisor").write_gate(0)
    heartbeat = memory.heartbeat("risk")
    heartbeat.begin()
    heartbeat.end(0)
    gate.recovered = gate.session_ready = True
    now = time.monotonic_ns()
    return gate, now - gate.risk_heartbeat_age_ns(now)


def test_a_risk_that_never_beat_is_stale(quiet):
    gate = Gate(quiet, quiet.layout, "risk", 250)
    quiet.control("supervisor").write_gate(0)
    gate.recovered = gate.session_ready = True
    assert gate.risk_heartbeat_age_ns() is None and not gate.risk_fresh(time.monotonic_ns())
    assert gate.check(time.monotonic_ns()) == OmsReason.RISK_STALE


def test_risks_heartbeat_is_fresh_up_to_the_limit_and_stale_from_it(quiet):
    gate, beat = open_gate(quiet, limit_ms=250)
    limit = 250_000_000
    assert gate.check(beat + limit - 1) == GATE_OPEN and gate.risk_fresh(beat + limit - 1)
    assert gate.check(beat + limit) == OmsReason.RISK_STALE and not gate.risk_fresh(beat + limit)
    assert gate.risk_heartbeat_age_ns(beat + 5) == 5


def test_every_reason_in_its_documented_order_each_named_once_those_before_it_clear(quiet):
    gate, beat = open_gate(quiet)
    supervisor = quiet.control("supervisor")
    supervisor.write_gate(GateReason.KILL_SWITCH)
    gate.journal_ok, gate.sequence_gap, gate.recovered, gate.session_ready = False, True, False, False
    now = beat + 10**12                                                       # risk stale too
    clears = [(OmsReason.JOURNAL_FAILED, lambda: setattr(gate, "journal_ok", True)),
              (OmsReason.SEQUENCE_GAP, lambda: setattr(gate, "sequence_gap", False)),
              (OmsReason.NOT_RECOVERED, lambda: setattr(gate, "recovered", True)),
              (OmsReason.GATE_CLOSED, lambda: supervisor.write_gate(0)),
              (OmsReason.RISK_STALE, None),
              (OmsReason.SESSION_DOWN, lambda: setattr(gate, "session_ready", True))]
    for reason, clear in clears:
        assert gate.check(now) == reason
        if clear is None:
            now = beat
        else:
            clear()
    assert gate.check(now) == GATE_OPEN


def test_a_session_down_is_named_only_once_the_gate_and_risk_are_fine(quiet):
    gate, beat = open_gate(quiet)
    gate.session_ready = False
    assert gate.local_reason == OmsReason.SESSION_DOWN
    assert gate.check(beat + 10**12) == OmsReason.RISK_STALE
    quiet.control("supervisor").write_gate(GateReason.OPERATOR)
    assert gate.check(beat) == OmsReason.GATE_CLOSED
    quiet.control("supervisor").write_gate(0)
    assert gate.check(beat) == OmsReason.SESSION_DOWN
    gate.session_ready = True
    assert gate.local_reason == 0 and gate.check(beat) == GATE_OPEN


def test_the_sequence_gap_holds_until_cleared_whatever_else_recovers(quiet):
    gate, beat = open_gate(quiet)
    gate.sequence_gap = True
    gate.recovered = gate.session_ready = gate.journal_ok = True
    assert gate.check(beat) == OmsReason.SEQUENCE_GAP and gate.sequence_gap
    gate.sequence_gap = False
    assert gate.check(beat) == GATE_OPEN


def test_the_gate_and_clock_words_read_what_the_supervisor_wrote(quiet):
    gate, _beat = open_gate(quiet)
    supervisor = quiet.control("supervisor")
    first = tuple(gate.gate_word())
    supervisor.write_gate(GateReason.CLOCK_UNHEALTHY | GateReason.OPERATOR)
    assert not gate.gate_open()
    assert tuple(gate.gate_word()) == (0, GateReason.CLOCK_UNHEALTHY | GateReason.OPERATOR, first[2] + 1)
    supervisor.set("clock_state", ClockState.UNHEALTHY)
    supervisor.set("clock_offset_ns", -1234)
    supervisor.set("clock_maxerror_ns", 5678)
    assert gate.clock_state() == ClockState.UNHEALTHY
    assert gate.clock_words() == (ClockState.UNHEALTHY, -1234, 5678)
