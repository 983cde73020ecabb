"""The seqlock itself (``runtime/seqlock.py``), in-process on an anonymous mapping: the sequence
numbers a writer leaves, a restarted writer, and readers that meet a write mid-way. The reader's
loads are scripted so that the writer's stores fall exactly between them (no threads, no timing)."""
from __future__ import annotations

import mmap

from appliance.messages.catalog import POSITION
from appliance.runtime.seqlock import SeqlockReader, SeqlockWriter, body_index_of, body_struct

SLOTS = 2
OFFSETS = [i * POSITION.size for i in range(SLOTS)]
SEQ = 8                                           # the seqlock word's offset in a slot


def values(n: int) -> tuple:
    """A full body (every field after the seqlock word) whose numbers all say ``n``."""
    return (b"AAPL    ",) + (n,) * (len(body_index_of(POSITION)) - 1)


def table():
    buffer = mmap.mmap(-1, POSITION.size * SLOTS)
    return buffer, SeqlockWriter(buffer, OFFSETS, POSITION), SeqlockReader(buffer, OFFSETS, POSITION, ["AAPL", "MSFT"])


class Interleaved:
    """The reader's loads: right after load number ``i`` has read its value, ``steps[i]()`` runs
    (the writer's next move falls between that load and whatever the reader does next)."""

    def __init__(self, real, steps: dict):
        self.real, self.steps, self.loads = real, steps, 0

    def load(self, offset: int) -> int:
        value = self.real.load(offset)
        step = self.steps.get(self.loads)
        self.loads += 1
        if step is not None:
            step()
        return value


def test_each_write_moves_the_sequence_by_two_and_stamps_the_header():
    buffer, writer, reader = table()
    assert reader.read_raw(1) == (b"\0" * 8,) + (0,) * (len(values(0)) - 1)     # never written: zeros, even
    writer.write(1, *values(7))
    assert writer.atomics.load(OFFSETS[1] + SEQ) == 2
    writer.write(1, *values(8))
    assert writer.atomics.load(OFFSETS[1] + SEQ) == 4 and writer.atomics.load(OFFSETS[0] + SEQ) == 0
    assert reader.read_raw(1) == values(8) and reader.read_raw(0)[1] == 0
    assert reader.retries == 0                                                   # quiet slots read first time
    for offset in OFFSETS:
        assert POSITION.read(buffer, offset)[:3] == (POSITION.type_id, POSITION.version, POSITION.size)
    assert body_index_of(POSITION)["position"] == 1 and reader.read_raw(1)[body_index_of(POSITION)["t_update_ns"]] == 8


def test_a_restarted_writer_carries_on_from_the_next_even_number_and_keeps_the_slot():
    buffer, writer, _reader = table()
    writer.write(0, *values(1))
    writer.write(0, *values(2))                  # sequence 4
    writer.atomics.store(OFFSETS[1] + SEQ, 5)    # slot 1 left odd: its writer died mid-write
    again = SeqlockWriter(buffer, OFFSETS, POSITION)
    reader = SeqlockReader(buffer, OFFSETS, POSITION)
    assert reader.read_raw(0) == values(2)       # a restart does not clear what was written
    again.write(0, *values(3))
    again.write(1, *values(4))
    assert again.atomics.load(OFFSETS[0] + SEQ) == 6 and again.atomics.load(OFFSETS[1] + SEQ) == 8
    assert reader.read_raw(1) == values(4)


def test_a_read_torn_by_a_write_is_taken_again_and_returns_the_new_record_whole():
    buffer, writer, reader = table()
    writer.write(0, *values(1))
    new = body_struct(POSITION).pack(*values(2))
    start = OFFSETS[0] + SEQ + 8

    def begin():                                 # after the reader saw an even sequence: its copy is half old, half new
        writer.atomics.store(OFFSETS[0] + SEQ, 3)
        buffer[start:start + len(new) // 2] = new[:len(new) // 2]

    def finish():
        buffer[start:start + len(new)] = new
        writer.atomics.store(OFFSETS[0] + SEQ, 4)
    reader.atomics = Interleaved(reader.atomics, {0: begin, 1: finish})
    assert reader.read_raw(0) == values(2)
    assert reader.retries == 1 and reader.atomics.loads == 4


def test_a_write_in_progress_is_waited_out_not_copied():
    buffer, writer, reader = table()
    writer.write(1, *values(1))
    start = OFFSETS[1] + SEQ + 8
    half = body_struct(POSITION).pack(*values(9))
    writer.atomics.store(OFFSETS[1] + SEQ, 3)                     # a write in progress, half done
    buffer[start:start + 16] = half[:16]

    def finish():
        writer.write(1, *values(9))              # the writer's own path completes it (3 -> 4)
    reader.atomics = Interleaved(reader.atomics, {4: finish})
    assert reader.read_raw(1) == values(9)
    assert reader.retries == 5 and reader.atomics.loads == 7     # five looks at an odd sequence, then one clean read
