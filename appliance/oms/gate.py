"""The per-order gate, enforced in the OMS before any new order or replace is written to the wire.

A new order or replace passes only when all of these hold, checked in this order (the first
failure is the reason given back to the strategy and counted as ``oms.rejects.<REASON>``):

1. the journal is healthy (``JOURNAL_FAILED``), and the venue's login did not skip messages the
   OMS never saw (``SEQUENCE_GAP``, latched until a restart);
2. the OMS has recovered: journal replayed, the venue's replay applied, unacknowledged orders
   resolved (``NOT_RECOVERED``); in sync replication, a standby acknowledges the journal in time
   (``NO_STANDBY``, ``replication.SyncSends``);
3. the supervisor's gate word says open (``GATE_CLOSED``);
4. risk's heartbeat in the process table is younger than ``risk_heartbeat_limit_ms``
   (``RISK_STALE``; a risk that never beat is stale);
5. the session is logged in and its replay applied (``SESSION_DOWN``).

That the order came from risk is structural: the OMS reads new orders from the
``approved_orders`` ring only, and refuses to start when the layout names a producer other
than ``risk`` for it. Cancels do not pass through the gate.

Everything is an acquire load of a shared word: no allocation, no system call beyond the clock.
"""
from __future__ import annotations

import time

from appliance.messages.codes import OmsReason
from appliance.runtime import _shm
from appliance.runtime.control import GATE_OPEN_BIT, GateWord, unpack_gate
from appliance.runtime.counters import process_record_offset

GATE_OPEN = 0          # check() result when the order may go


class Gate:
    def __init__(self, memory, layout, risk_process: str, risk_heartbeat_limit_ms: int):
        control = memory.control(None)
        self._control_atomics = control.atomics
        self._gate_offset = control.word_offset("gate")
        self._clock_state_offset = control.word_offset("clock_state")
        self._clock_offset_offset = control.word_offset("clock_offset_ns")
        self._clock_maxerror_offset = control.word_offset("clock_maxerror_ns")
        table = layout.table_of_kind("processes")
        self._process_atomics = _shm.AtomicView(memory.buffer_of(table.segment), False)
        record = process_record_offset(layout, layout.processes[risk_process])
        self._risk_beats_offset = record + _shm.PROC_BEATS_OFFSET
        self._risk_last_beat_offset = record + _shm.PROC_LAST_BEAT_MONO_NS_OFFSET
        self.limit_ns = risk_heartbeat_limit_ms * 1_000_000
        self._journal_ok = True
        self._recovered = False
        self._session_ready = False
        self._sequence_gap = False
        self._standby_ok = True
        self._local_reason = OmsReason.NOT_RECOVERED    # the first failing local condition, 0 when none

    # The OMS's own conditions change rarely (from the slow path); folding them into one word keeps
    # the per-order check to two shared loads.
    def _update(self) -> None:
        self._local_reason = (OmsReason.JOURNAL_FAILED if not self._journal_ok else
                              OmsReason.SEQUENCE_GAP if self._sequence_gap else
                              OmsReason.NOT_RECOVERED if not self._recovered else
                              OmsReason.NO_STANDBY if not self._standby_ok else
                              OmsReason.SESSION_DOWN if not self._session_ready else 0)

    @property
    def journal_ok(self) -> bool:
        return self._journal_ok

    @journal_ok.setter
    def journal_ok(self, value: bool) -> None:
        self._journal_ok = value
        self._update()

    @property
    def local_reason(self) -> int:
        """The first of the OMS's own conditions that stops new orders (0: none)."""
        return self._local_reason

    @property
    def sequence_gap(self) -> bool:
        return self._sequence_gap

    @sequence_gap.setter
    def sequence_gap(self, value: bool) -> None:
        self._sequence_gap = value
        self._update()

    @property
    def recovered(self) -> bool:
        return self._recovered

    @recovered.setter
    def recovered(self, value: bool) -> None:
        self._recovered = value
        self._update()

    @property
    def standby_ok(self) -> bool:
        return self._standby_ok

    @standby_ok.setter
    def standby_ok(self, value: bool) -> None:
        self._standby_ok = value
        self._update()

    @property
    def session_ready(self) -> bool:
        return self._session_ready

    @session_ready.setter
    def session_ready(self, value: bool) -> None:
        self._session_ready = value
        self._update()

    def gate_open(self) -> bool:
        return bool(self._control_atomics.load(self._gate_offset) & GATE_OPEN_BIT)

    def gate_word(self) -> GateWord:
        """(open, reasons, epoch) of the supervisor's last decision, from one load."""
        return unpack_gate(self._control_atomics.load(self._gate_offset))

    def clock_state(self) -> int:
        return self._control_atomics.load(self._clock_state_offset)

    def clock_words(self) -> tuple[int, int, int]:
        """(clock_state, clock_offset_ns, clock_maxerror_ns) as the supervisor's clock guard last wrote them."""
        load = self._control_atomics
        return (load.load(self._clock_state_offset), load.load_signed(self._clock_offset_offset),
                load.load(self._clock_maxerror_offset))

    def risk_heartbeat_age_ns(self, now_mono_ns: int | None = None) -> int | None:
        load = self._process_atomics.load
        if not load(self._risk_beats_offset):
            return None
        now = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        return max(0, now - load(self._risk_last_beat_offset))

    def risk_fresh(self, now_mono_ns: int) -> bool:
        load = self._process_atomics.load
        return bool(load(self._risk_beats_offset)) and now_mono_ns - load(self._risk_last_beat_offset) < self.limit_ns

    def check(self, now_mono_ns: int) -> int:
        """GATE_OPEN (0), or the OmsReason that stops a new order or replace (in the order of the
        module docstring; a session that is down is reported after the gate and risk)."""
        local = self._local_reason
        if local and local != OmsReason.SESSION_DOWN:
            return local
        if not self._control_atomics.load(self._gate_offset) & GATE_OPEN_BIT:
            return OmsReason.GATE_CLOSED
        # a risk that never beat has last beat 0: older than any limit
        if now_mono_ns - self._process_atomics.load(self._risk_last_beat_offset) >= self.limit_ns:
            return OmsReason.RISK_STALE
        return local

    def close(self) -> None:
        self._control_atomics = None
        self._process_atomics = None
