"""What shmtop and scripts see of a running appliance: one read-only pass over its shared memory.

``Observer`` attaches every segment read-only (PROT_READ: it cannot disturb the
hot path even by mistake), and ``snapshot()`` reads rings, process records and
counters with acquire loads, no locks. Rates come from the difference with the
previous snapshot, so the first one has none.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import psutil

from appliance.runtime import _shm
from appliance.runtime.counters import IdleStrategyId, ProcessState
from appliance.runtime.layout import Layout
from appliance.runtime.memory import SharedMemory
from appliance.runtime.segment import BACKING_NAMES


@dataclass
class RingView:
    name: str
    producer: str
    consumer: str
    message: str
    capacity: int
    depth: int
    published: int
    consumed: int
    full_events: int
    max_depth: int
    in_per_s: float | None = None
    out_per_s: float | None = None


@dataclass
class ProcessView:
    name: str
    pid: int
    state: str
    cpu: int | None
    idle: str
    beats: int
    heartbeat_age_ms: float | None
    max_duty_us: float
    last_duty_us: float
    alive: bool
    cpu_percent: float | None = None
    ctx_switches_voluntary: int | None = None
    ctx_switches_involuntary: int | None = None


@dataclass
class SegmentView:
    name: str
    path: str
    backing: str
    size: int
    creator_pid: int
    created_ns: int


@dataclass
class Snapshot:
    layout: str
    layout_version: int
    layout_hash: str
    taken_ns: int
    segments: list[SegmentView] = field(default_factory=list)
    rings: list[RingView] = field(default_factory=list)
    processes: list[ProcessView] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Observer:
    """Read-only handles on every ring, the process table and the counters of one layout."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.memory = SharedMemory.attach(layout, writable=False)
        self.rings = {name: self.memory.ring(name, "observer") for name in layout.rings}
        self.processes = self.memory.process_table()
        self.counters = self.memory.counters_reader()
        self._previous: tuple[int, dict[str, tuple[int, int]]] | None = None
        self._psutil: dict[int, psutil.Process] = {}

    def close(self) -> None:
        self.rings.clear()
        self.processes.close()
        self.counters.close()
        self.memory.close()

    def snapshot(self) -> Snapshot:
        now_mono = _shm.monotonic_ns()
        snap = Snapshot(layout=self.layout.path, layout_version=self.layout.version,
                        layout_hash=self.layout.hash_hex, taken_ns=time.time_ns())
        for segment in self.memory.segments.values():
            header = segment.header
            snap.segments.append(SegmentView(segment.name, segment.path, BACKING_NAMES.get(header.backing, "?"),
                                             header.size, header.creator_pid, header.created_ns))
        indices: dict[str, tuple[int, int]] = {}
        elapsed = (now_mono - self._previous[0]) / 1e9 if self._previous else None
        for name, ring in self.rings.items():
            spec = self.layout.rings[name]
            consumed, published = ring.head, ring.tail      # head first: depth is never negative
            view = RingView(name, spec.producer, spec.consumer, spec.message, spec.capacity,
                            max(0, published - consumed), published, consumed, ring.full_events, ring.max_depth)
            if elapsed and name in self._previous[1]:
                before_in, before_out = self._previous[1][name]
                view.in_per_s = (published - before_in) / elapsed
                view.out_per_s = (consumed - before_out) / elapsed
            indices[name] = (published, consumed)
            snap.rings.append(view)
        for record in self.processes:
            age = record.heartbeat_age_ns(now_mono)
            view = ProcessView(
                name=record.name, pid=record.pid, state=record.state.name.lower(),
                cpu=None if record.cpu < 0 else record.cpu,
                idle=IdleStrategyId(record.idle_strategy).name.lower() if record.idle_strategy in
                IdleStrategyId._value2member_map_ else "-",
                beats=record.beats, heartbeat_age_ms=None if age is None else age / 1e6,
                max_duty_us=record.max_duty_ns / 1e3, last_duty_us=record.last_duty_ns / 1e3,
                alive=record.pid > 0 and psutil.pid_exists(record.pid))
            if view.alive and record.state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING):
                self._add_os_view(view)
            snap.processes.append(view)
        snap.counters = self.counters.by_label()
        self._previous = (now_mono, indices)
        return snap

    def _add_os_view(self, view: ProcessView) -> None:
        try:
            proc = self._psutil.get(view.pid)
            if proc is None:
                proc = self._psutil[view.pid] = psutil.Process(view.pid)
                proc.cpu_percent(None)            # first call primes the measurement
            else:
                view.cpu_percent = proc.cpu_percent(None)
            switches = proc.num_ctx_switches()
            view.ctx_switches_voluntary, view.ctx_switches_involuntary = switches.voluntary, switches.involuntary
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._psutil.pop(view.pid, None)
