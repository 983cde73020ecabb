"""All the shared memory of one layout: create it (the supervisor), attach to it (everyone else).

``SharedMemory`` maps every segment of a layout and hands out the typed
handles that live in them: ring sides, counter writers and readers, heartbeats
and doorbells, each at the offset the layout computed.
"""
from __future__ import annotations

import logging

from appliance.runtime import _shm
from appliance.runtime.channels import Channel, RingUse, check_ring_uses
from appliance.runtime.counters import (CounterKind, CountersReader, CountersWriter, ProcessTableReader,
                                        doorbell_offset, process_record_offset)
from appliance.runtime.idle import wake_address
from appliance.runtime.layout import Layout
from appliance.runtime.control import ControlWords
from appliance.runtime.market_state import MarketStateReader, MarketStateWriter
from appliance.runtime.positions import PositionsReader, PositionsWriter
from appliance.runtime.segment import Segment, SegmentError

log = logging.getLogger(__name__)

CREATOR_BLOCK = 0
ROLES = {"producer": "p", "consumer": "c", "observer": "o"}


class SharedMemory:
    def __init__(self, layout: Layout, segments: dict[str, Segment], owner: bool):
        self.layout = layout
        self.segments = segments
        self.owner = owner

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, layout: Layout) -> "SharedMemory":
        """Create and format every segment; the caller owns them and must unlink() them."""
        segments: dict[str, Segment] = {}
        try:
            for spec in layout.segments.values():
                segments[spec.name] = Segment.create(layout, spec)
            for ring in layout.rings.values():
                _shm.ring_format(segments[ring.segment].buffer, ring.offset, ring.slot_size, ring.capacity)
        except BaseException:
            for segment in segments.values():
                segment.close()
                segment.unlink()
            raise
        memory = cls(layout, segments, owner=True)
        writer = memory.counters_writer(None)
        for segment in segments.values():
            writer.allocate(f"segment.{segment.name}.hugepages", CounterKind.INFO).set(int(segment.hugepages))
            if segment.spec.backing == "hugepage" and not segment.hugepages:
                log.warning("segment %s: layout asks for huge pages, running on %s", segment.name,
                            segment.backing_name)
        writer.close()
        return memory

    @classmethod
    def attach(cls, layout: Layout, *, writable: bool = True) -> "SharedMemory":
        segments: dict[str, Segment] = {}
        try:
            for spec in layout.segments.values():
                segments[spec.name] = Segment.attach(layout, spec, writable=writable)
        except BaseException:
            for segment in segments.values():
                segment.close()
            raise
        return cls(layout, segments, owner=False)

    def close(self) -> None:
        """Unmap everything. Drop every handle obtained from this object first."""
        for segment in self.segments.values():
            segment.close()

    def unlink(self) -> None:
        if not self.owner:
            raise SegmentError("only the creator removes the segments")
        for segment in self.segments.values():
            segment.unlink()

    def __enter__(self) -> "SharedMemory":
        return self

    def remove(self) -> None:
        """The creator's end: the segments' names go from /dev/shm, then the mappings (a mapping a
        handle still holds goes with the handle)."""
        try:
            self.unlink()
        finally:
            self.close()

    def __exit__(self, *exc) -> None:
        if self.owner:
            self.remove()
        else:
            self.close()

    # ------------------------------------------------------------------ handles
    def buffer_of(self, segment: str):
        return self.segments[segment].buffer

    def ring_buffer(self, name: str):
        """The buffer of the segment ring ``name`` lives in: a ring's offsets are offsets into it."""
        return self.buffer_of(self.layout.rings[name].segment)

    def ring(self, name: str, role: str) -> _shm.Ring:
        """One side of a ring. A producer rings its consumer's doorbell if the consumer sleeps on one."""
        spec = self.layout.rings[name]
        code = ROLES[role]
        doorbell = -1
        consumer = self.layout.processes.get(spec.consumer)      # None: a peer (layout.peers), no doorbell
        if code == "p" and consumer is not None and consumer.idle.strategy == "doorbell":
            doorbell_table = self.layout.table_of_kind("processes")
            if doorbell_table.segment != spec.segment:
                raise SegmentError(f"ring {name}: its consumer's doorbell lives in segment {doorbell_table.segment}; "
                                   f"put the ring in the same segment")
            doorbell = doorbell_offset(self.layout, consumer)
            return _shm.Ring(self.buffer_of(spec.segment), spec.offset, spec.slot_size, spec.capacity, code, doorbell,
                             wake_address(self.layout.name, consumer.name))
        return _shm.Ring(self.buffer_of(spec.segment), spec.offset, spec.slot_size, spec.capacity, code, doorbell)

    def channel(self, use: RingUse, process: str) -> Channel:
        """The typed channel of one ring ``process`` uses, checked against the layout (LayoutError)."""
        check_ring_uses(self.layout, process, (use,), f"process {process!r}")
        spec = self.layout.rings[use.name]
        return Channel(use, spec, self.ring(use.name, use.role), self.buffer_of(spec.segment))

    def channels(self, uses, process: str) -> dict[str, Channel]:
        """The channels of every declared ring the layout has (an optional one it lacks is left out)."""
        return {use.name: self.channel(use, process) for use in uses if use.name in self.layout.rings}

    def counters_writer(self, process: str | None) -> CountersWriter:
        """The writer of one process's counter block (None: the creator's block)."""
        table = self.layout.table_of_kind("counters")
        block = CREATOR_BLOCK if process is None else 1 + self.layout.processes[process].index
        return CountersWriter(self.buffer_of(table.segment), table, block)

    def counters_reader(self) -> CountersReader:
        table = self.layout.table_of_kind("counters")
        return CountersReader(self.buffer_of(table.segment), table)

    def process_table(self) -> ProcessTableReader:
        return ProcessTableReader(self.buffer_of(self.layout.table_of_kind("processes").segment), self.layout)

    def heartbeat(self, process: str) -> _shm.Heartbeat:
        spec = self.layout.processes[process]
        table = self.layout.table_of_kind("processes")
        return _shm.Heartbeat(self.buffer_of(table.segment), process_record_offset(self.layout, spec))

    def process_table_atomics(self) -> _shm.AtomicView:
        """Atomic stores into the process table, for a runner to publish its own pid, state, idle, CPU."""
        return _shm.AtomicView(self.buffer_of(self.layout.table_of_kind("processes").segment))

    def market_state_writer(self) -> MarketStateWriter:
        return MarketStateWriter(self.buffer_of(self.layout.table_of_kind("market_state").segment), self.layout)

    def market_state_reader(self) -> MarketStateReader:
        return MarketStateReader(self.buffer_of(self.layout.table_of_kind("market_state").segment), self.layout)

    def positions_writer(self) -> PositionsWriter:
        return PositionsWriter(self.buffer_of(self.layout.table_of_kind("positions").segment), self.layout)

    def positions_reader(self) -> PositionsReader:
        return PositionsReader(self.buffer_of(self.layout.table_of_kind("positions").segment), self.layout)

    def control(self, writer: str | None = None) -> ControlWords:
        """The control words; ``writer``: the process name whose words this handle may store."""
        return ControlWords(self.buffer_of(self.layout.table_of_kind("control").segment), self.layout, writer)

    def doorbell(self, process: str) -> _shm.Doorbell:
        spec = self.layout.processes[process]
        table = self.layout.table_of_kind("processes")
        return _shm.Doorbell(self.buffer_of(table.segment), doorbell_offset(self.layout, spec),
                             wake_address(self.layout.name, spec.name))
