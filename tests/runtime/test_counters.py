"""Counters table and process table: allocation, single-writer blocks, readers, restarts."""
from __future__ import annotations

import pytest

from appliance.runtime.counters import CounterKind, ProcessState
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document


@pytest.fixture
def memory(write_layout, unique_name):
    doc = layout_document(
        unique_name,
        processes=[{"name": "a", "agent": "m:A", "idle": {"strategy": "yield"}},
                   {"name": "b", "agent": "m:B", "idle": {"strategy": "yield"}}],
        rings=[{"name": "r", "segment": "main", "producer": "a", "consumer": "b", "message": "Probe",
                "slot_size": 64, "capacity": 64}],
        slots_per_process=4)
    with SharedMemory.create(load_layout(write_layout(doc))) as mem:
        yield mem


def test_counters_are_labelled_and_readable_by_others(memory):
    writer_a = memory.counters_writer("a")
    writer_b = memory.counters_writer("b")
    sent = writer_a.allocate("a.sent")
    depth = writer_b.allocate("b.depth", CounterKind.GAUGE)
    sent.inc()
    sent.add(41)
    depth.set(-3)
    reader = memory.counters_reader()
    by_label = {c.label: c for c in reader}
    assert by_label["a.sent"].value == 42 and by_label["a.sent"].kind is CounterKind.COUNTER
    assert by_label["a.sent"].owner == 1                       # block 0 is the creator's
    assert by_label["b.depth"].owner == 2
    assert by_label["b.depth"].value == -3 and by_label["b.depth"].kind is CounterKind.GAUGE
    assert by_label["segment.main.hugepages"].owner == 0
    assert sent.get() == 42


def test_a_restarted_writer_finds_its_counter_again(memory):
    first = memory.counters_writer("a").allocate("a.sent")
    first.add(5)
    again = memory.counters_writer("a").allocate("a.sent")   # a new process incarnation
    again.inc()
    assert memory.counters_reader().by_label()["a.sent"] == 6


def test_a_full_block_is_a_clear_error(memory):
    writer = memory.counters_writer("b")
    for i in range(4):
        writer.allocate(f"c{i}")
    with pytest.raises(RuntimeError, match="counter block 2 is full .* raise slots_per_process"):
        writer.allocate("one.too.many")
    with pytest.raises(ValueError, match="label must be"):
        writer.allocate("x" * 45)


def test_process_table_reports_heartbeats(memory):
    table = memory.process_table()
    assert table.read("a").state is ProcessState.ABSENT and table.read("a").heartbeat_age_ns() is None
    beat = memory.heartbeat("a")
    beat.begin()
    beat.end(3)
    record = table.read("a")
    assert record.beats == 1 and record.work == 3 and record.heartbeat_age_ns() >= 0
    assert table.read("b").beats == 0
