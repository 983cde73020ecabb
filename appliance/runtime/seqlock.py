"""Single-writer seqlocked slots in shared memory: lock-free consistent reads of multi-word records.

Each slot holds one record whose first field after the header is the u64 ``seqlock`` word.
- writer: store seq+1 (odd: a write is in progress), write the fields, store seq+2 (even).
- reader: load seq (acquire); odd -> retry; copy the fields; load seq again; changed -> retry.

The sequence word goes through ``AtomicView`` (C11 acquire loads / release stores). The field
copies are plain ``struct`` calls; on x86-64 (TSO: stores are not reordered with stores nor
loads with loads) that is enough, and x86-64 is the platform the appliance supports.
Readers never make the writer wait; a slot left odd by a writer that died mid-write is
reported (``TornRead``) after ``READ_GIVE_UP_NS`` instead of spinning forever.
"""
from __future__ import annotations

import os
import struct
import time

from appliance.messages.schema import Record
from appliance.runtime import _shm

READ_SPINS = 100                     # quick retries, then yield the CPU (the writer may be preempted)
READ_GIVE_UP_NS = 50_000_000         # a slot odd this long belongs to a writer that died mid-write
_HEADER = struct.Struct("<HHI")


class TornRead(RuntimeError):
    """A slot stayed mid-write for READ_GIVE_UP_NS (its writer died between its two stores)."""


def body_struct(record: Record) -> struct.Struct:
    """The fields after the seqlock word, packed in one call."""
    fmt = record.struct.format
    fmt = fmt[1:] if fmt[0] in "<>=!@" else fmt
    seq = record.offset_of["seqlock"]
    assert seq == 8 and fmt.startswith("HHIQ"), f"{record.name}: the seqlock word must follow the header"
    body = struct.Struct("<" + fmt[4:])
    assert seq + 8 + body.size == record.size
    return body


def body_index_of(record: Record) -> dict[str, int]:
    """Each field's index in a body (``SeqlockReader.read_raw``'s tuple: the fields after the seqlock word)."""
    first = record.index_of["seqlock"] + 1
    return {name: i - first for name, i in record.index_of.items() if i >= first}


class SeqlockWriter:
    """The one writer of a table of slots."""

    def __init__(self, buffer, offsets: list[int], record: Record):
        self.buffer = buffer
        self.offsets = offsets
        self.record = record
        self.body = body_struct(record)
        self.atomics = _shm.AtomicView(buffer)
        self._seq_offsets = [o + 8 for o in offsets]
        self._sequences = []
        for offset in offsets:
            seq = self.atomics.load(offset + 8)
            self._sequences.append(seq + (seq & 1))      # a restarted writer carries on from an even number
            _HEADER.pack_into(buffer, offset, record.type_id, record.version, record.size)

    def write(self, slot: int, *values) -> None:
        """``values``: every field after the seqlock word, in record order."""
        seq_offset = self._seq_offsets[slot]
        seq = self._sequences[slot]
        store = self.atomics.store
        store(seq_offset, seq + 1)
        self.body.pack_into(self.buffer, seq_offset + 8, *values)
        store(seq_offset, seq + 2)
        self._sequences[slot] = seq + 2

    def close(self) -> None:
        self.atomics = None


class SeqlockReader:
    """Any process's consistent copies, never blocking the writer."""

    def __init__(self, buffer, offsets: list[int], record: Record, names: list[str] | tuple = ()):
        self.buffer = buffer
        self.offsets = offsets
        self.record = record
        self.names = names
        self.body = body_struct(record)
        self.atomics = _shm.AtomicView(buffer, False)      # readers work on a read-only mapping too
        self.retries = 0

    def read_raw(self, slot: int) -> tuple:
        """The fields after the seqlock word, as a tuple in record order."""
        seq_offset = self.offsets[slot] + 8
        load = self.atomics.load
        unpack = self.body.unpack_from
        buffer = self.buffer
        attempt = 0
        deadline = 0
        while True:
            before = load(seq_offset)
            if not before & 1:
                values = unpack(buffer, seq_offset + 8)
                if load(seq_offset) == before:
                    return values
            self.retries += 1
            attempt += 1
            if attempt >= READ_SPINS:
                now = time.monotonic_ns()
                if not deadline:
                    deadline = now + READ_GIVE_UP_NS
                elif now > deadline:
                    name = self.names[slot] if slot < len(self.names) else slot
                    raise TornRead(f"{self.record.name} slot {name} stayed mid-write for "
                                   f"{READ_GIVE_UP_NS // 1_000_000} ms")
                os.sched_yield()

    def close(self) -> None:
        self.atomics = None
