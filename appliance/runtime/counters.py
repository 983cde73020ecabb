"""Counters and process records in shared memory (the model is Agrona's CountersManager/Reader).

Counters table: fixed slots of 128 bytes; the value (u64) on its own 64-byte
line, the metadata (state, kind, owner, id, label) on the next. The table is
cut into blocks: block 0 for the segment's creator (the supervisor), then one
block per process in layout order. A process allocates only in its own block
and is the only writer of its counters, so no slot ever has two writers and
nothing needs a lock. A restarted process finds its counters again by label
and carries on counting.

Process table: one 256-byte record per process: the first line written only by
that process (pid, state, heartbeat, longest duty cycle, idle strategy, CPU),
the second line holds its doorbell word, which its producers ring.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from appliance.runtime import _shm
from appliance.runtime.layout import COUNTER_SLOT_SIZE, PROCESS_DOORBELL_OFFSET, Layout, ProcessSpec, TableSpec

COUNTER_VALUE_OFFSET = 0
COUNTER_STATE_OFFSET = 64          # u64, 0 free / 1 allocated; release-stored after the metadata
_COUNTER_META = struct.Struct("<III44s")    # kind, owner block, id, label (at offset 72)
COUNTER_META_OFFSET = 72
LABEL_MAX = 44
assert COUNTER_META_OFFSET + _COUNTER_META.size <= COUNTER_SLOT_SIZE

STATE_FREE = 0
STATE_ALLOCATED = 1


class CounterKind(enum.IntEnum):
    COUNTER = 1      # only goes up (messages, errors)
    GAUGE = 2        # goes up and down (depth, position)
    INFO = 3         # a code or flag (backing in use, state)


class ProcessState(enum.IntEnum):
    ABSENT = 0
    STARTING = 1
    RUNNING = 2
    STOPPING = 3
    STOPPED = 4
    FAILED = 5


class IdleStrategyId(enum.IntEnum):
    BUSY_SPIN = 1
    YIELD = 2
    BACKOFF = 3
    SLEEP = 4
    DOORBELL = 5


@dataclass(frozen=True)
class CounterInfo:
    id: int
    label: str
    kind: CounterKind
    owner: int
    value: int


class CountersWriter:
    """Allocates and writes the counters of one owner block."""

    def __init__(self, buffer, table: TableSpec, block: int):
        if table.kind != "counters":
            raise ValueError(f"table {table.name} is not a counters table")
        blocks = table.slots // table.slots_per_process
        if not 0 <= block < blocks:
            raise ValueError(f"counter block {block} outside 0..{blocks - 1}")
        self._buffer = buffer
        self._atomics = _shm.AtomicView(buffer)
        self._table = table
        self.block = block
        self._first = block * table.slots_per_process
        self._handles: dict[str, _shm.Counter] = {}

    def _slot_offset(self, slot: int) -> int:
        return self._table.offset + slot * COUNTER_SLOT_SIZE

    def allocate(self, label: str, kind: CounterKind = CounterKind.COUNTER) -> _shm.Counter:
        """The counter with this label in our block (reused after a restart), or a new one."""
        if label in self._handles:
            return self._handles[label]
        encoded = label.encode("utf-8")
        if not encoded or len(encoded) > LABEL_MAX:
            raise ValueError(f"counter label must be 1..{LABEL_MAX} bytes: {label!r}")
        free_slot = None
        for slot in range(self._first, self._first + self._table.slots_per_process):
            offset = self._slot_offset(slot)
            if self._atomics.load(offset + COUNTER_STATE_OFFSET) == STATE_ALLOCATED:
                _, _, _, raw = _COUNTER_META.unpack_from(self._buffer, offset + COUNTER_META_OFFSET)
                if raw.rstrip(b"\0") == encoded:
                    return self._remember(label, offset)
            elif free_slot is None:
                free_slot = slot
        if free_slot is None:
            raise RuntimeError(f"counter block {self.block} is full ({self._table.slots_per_process} slots): "
                               f"raise slots_per_process in the layout")
        offset = self._slot_offset(free_slot)
        self._atomics.store(offset + COUNTER_VALUE_OFFSET, 0)
        _COUNTER_META.pack_into(self._buffer, offset + COUNTER_META_OFFSET, int(kind), self.block, free_slot, encoded)
        self._atomics.store(offset + COUNTER_STATE_OFFSET, STATE_ALLOCATED)
        return self._remember(label, offset)

    def _remember(self, label: str, offset: int) -> _shm.Counter:
        handle = _shm.Counter(self._buffer, offset + COUNTER_VALUE_OFFSET)
        self._handles[label] = handle
        return handle

    def close(self) -> None:
        self._handles.clear()
        self._atomics = None


class CountersReader:
    """Reads every allocated counter; used by shmtop, the exporter and tests. Never writes."""

    def __init__(self, buffer, table: TableSpec):
        self._buffer = buffer
        self._atomics = _shm.AtomicView(buffer, False)
        self._table = table

    def __iter__(self):
        for slot in range(self._table.slots):
            offset = self._table.offset + slot * COUNTER_SLOT_SIZE
            if self._atomics.load(offset + COUNTER_STATE_OFFSET) != STATE_ALLOCATED:
                continue
            kind, owner, counter_id, raw = _COUNTER_META.unpack_from(self._buffer, offset + COUNTER_META_OFFSET)
            value = self._atomics.load_signed(offset + COUNTER_VALUE_OFFSET)
            yield CounterInfo(counter_id, raw.rstrip(b"\0").decode("utf-8", "replace"), CounterKind(kind), owner,
                              value)

    def by_label(self) -> dict[str, int]:
        return {c.label: c.value for c in self}

    def close(self) -> None:
        self._atomics = None


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    state: ProcessState
    beats: int
    last_beat_mono_ns: int
    max_duty_ns: int
    last_duty_ns: int
    idle_strategy: int
    cpu: int
    started_ns: int
    work: int

    def heartbeat_age_ns(self, now_mono_ns: int | None = None) -> int | None:
        if not self.beats:
            return None
        now = _shm.monotonic_ns() if now_mono_ns is None else now_mono_ns
        return max(0, now - self.last_beat_mono_ns)


def process_record_offset(layout: Layout, process: ProcessSpec) -> int:
    table = layout.table_of_kind("processes")
    return table.offset + process.index * table.slot_size


def doorbell_offset(layout: Layout, process: ProcessSpec) -> int:
    return process_record_offset(layout, process) + PROCESS_DOORBELL_OFFSET


class ProcessTableReader:
    """Reads every process record (heartbeat age, state, duty cycle)."""

    def __init__(self, buffer, layout: Layout):
        self._atomics = _shm.AtomicView(buffer, False)
        self._layout = layout

    def read(self, name: str) -> ProcessRecord:
        process = self._layout.processes[name]
        base = process_record_offset(self._layout, process)
        load = self._atomics.load
        state = load(base + _shm.PROC_STATE_OFFSET)
        return ProcessRecord(
            name=name, pid=load(base + _shm.PROC_PID_OFFSET),
            state=ProcessState(state) if state in ProcessState._value2member_map_ else ProcessState.ABSENT,
            beats=load(base + _shm.PROC_BEATS_OFFSET), last_beat_mono_ns=load(base + _shm.PROC_LAST_BEAT_MONO_NS_OFFSET),
            max_duty_ns=load(base + _shm.PROC_MAX_DUTY_NS_OFFSET), last_duty_ns=load(base + _shm.PROC_LAST_DUTY_NS_OFFSET),
            idle_strategy=load(base + _shm.PROC_IDLE_STRATEGY_OFFSET),
            cpu=self._atomics.load_signed(base + _shm.PROC_CPU_OFFSET), started_ns=load(base + _shm.PROC_STARTED_NS_OFFSET),
            work=load(base + _shm.PROC_WORK_OFFSET))

    def __iter__(self):
        for name in self._layout.processes:
            yield self.read(name)

    def close(self) -> None:
        self._atomics = None
