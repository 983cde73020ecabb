"""Segments: create, attach, refuse a different layout, huge-page fallback, mode, stale segments."""
from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys

import pytest

from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.runtime.segment import (BACKING_4K, BACKING_HUGETLBFS, BACKING_MEMFD_HUGETLB, MAGIC, SegmentError,
                                       SegmentHeader, segment_path)
from conftest import layout_document


def document(name: str, *, capacity: int = 1024, version: int = 1, backing: str = "4k", mode: str = "0600") -> dict:
    doc = layout_document(
        name,
        processes=[{"name": "prod", "agent": "m:P", "idle": {"strategy": "backoff"}},
                   {"name": "cons", "agent": "m:C", "idle": {"strategy": "backoff"}}],
        rings=[{"name": "probe", "segment": "main", "producer": "prod", "consumer": "cons", "message": "Probe",
                "slot_size": 64, "capacity": capacity}],
        backing=backing, mode=mode)
    doc["version"] = version
    return doc


def huge_pages_free() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    return 0


def test_create_then_attach_shares_memory_and_header(write_layout, unique_name):
    layout = load_layout(write_layout(document(unique_name)))
    with SharedMemory.create(layout) as owner:
        segment = owner.segments["main"]
        header = segment.header
        assert header.magic == MAGIC and header.creator_pid == os.getpid()
        assert header.layout_hash == layout.hash and header.layout_version == 1
        assert header.size == layout.segments["main"].size
        other = SharedMemory.attach(layout)
        try:
            producer = owner.ring("probe", "producer")
            consumer = other.ring("probe", "consumer")
            assert producer.try_push(b"hello".ljust(64, b"\0"))
            assert consumer.try_pop()[:5] == b"hello"
            del producer, consumer
        finally:
            other.close()
    assert not os.path.exists(segment_path(layout.segments["main"]))


def test_attach_refuses_a_different_layout_and_names_the_field(write_layout, unique_name, tmp_path):
    created = load_layout(write_layout(document(unique_name, capacity=1024), "a.yaml"))
    different = load_layout(write_layout(document(unique_name, capacity=2048), "b.yaml"))
    newer = load_layout(write_layout(document(unique_name, version=2), "c.yaml"))
    with SharedMemory.create(created):
        with pytest.raises(SegmentError) as info:
            SharedMemory.attach(different)
        message = str(info.value)
        assert "refusing to attach segment main" in message and "b.yaml" in message
        assert "rings[0].capacity: segment has 1024, this layout has 2048" in message
        with pytest.raises(SegmentError, match=r"layout version: segment 1, .*c\.yaml 2"):
            SharedMemory.attach(newer)


def test_attach_without_a_segment_says_so(write_layout, unique_name):
    layout = load_layout(write_layout(document(unique_name)))
    with pytest.raises(SegmentError, match="does not exist"):
        SharedMemory.attach(layout)


def test_hugepage_backing_falls_back_to_4k_for_real(write_layout, unique_name, caplog):
    layout = load_layout(write_layout(document(unique_name, backing="hugepage")))
    free = huge_pages_free()
    with caplog.at_level(logging.WARNING):
        memory = SharedMemory.create(layout)
    with memory:
        segment = memory.segments["main"]
        counters = memory.counters_reader().by_label()
        if free * 2 * 1024 * 1024 < layout.segments["main"].size:
            # This machine reserves no huge pages: the ENOMEM comes at mmap and we must fall back.
            assert segment.backing == BACKING_4K and segment.header.backing == BACKING_4K
            assert counters["segment.main.hugepages"] == 0
            assert any("falling back to 4 KiB pages" in r.getMessage() for r in caplog.records)
            assert any("running on 4k" in r.getMessage() for r in caplog.records)
        else:
            assert segment.backing in (BACKING_HUGETLBFS, BACKING_MEMFD_HUGETLB)
            assert counters["segment.main.hugepages"] == 1
        # Either way the segment is attachable by path and fully usable.
        other = SharedMemory.attach(layout)
        ring = other.ring("probe", "observer")
        assert ring.depth() == 0
        del ring
        other.close()


def test_mode_comes_from_the_layout(write_layout, unique_name):
    layout = load_layout(write_layout(document(unique_name, mode="0640")))
    with SharedMemory.create(layout):
        st = os.stat(segment_path(layout.segments["main"]))
        assert stat.S_IMODE(st.st_mode) == 0o640


def test_default_mode_is_owner_only(write_layout, unique_name):
    doc = document(unique_name)
    del doc["segments"][0]["mode"]
    layout = load_layout(write_layout(doc))
    with SharedMemory.create(layout):
        assert stat.S_IMODE(os.stat(segment_path(layout.segments["main"])).st_mode) == 0o600


def _rewrite_creator(layout, pid: int) -> None:
    path = segment_path(layout.segments["main"])
    with open(path, "r+b") as fh:
        fh.seek(48)                         # creator_pid in the header
        fh.write(pid.to_bytes(8, "little"))


def test_stale_segment_of_a_dead_owner_is_replaced(write_layout, unique_name, caplog):
    layout = load_layout(write_layout(document(unique_name)))
    first = SharedMemory.create(layout)
    first.close()                           # simulate a crash: no unlink
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _rewrite_creator(layout, dead.pid)
    with caplog.at_level(logging.WARNING):
        second = SharedMemory.create(layout)
    with second:
        assert any("removing stale" in r.getMessage() for r in caplog.records)
        assert second.segments["main"].header.creator_pid == os.getpid()


def test_segment_of_a_live_owner_is_not_replaced(write_layout, unique_name):
    layout = load_layout(write_layout(document(unique_name)))
    first = SharedMemory.create(layout)
    try:
        _rewrite_creator(layout, 1)         # pid 1 is always alive
        with pytest.raises(SegmentError, match=r"in use by a live process \(pid 1\)"):
            SharedMemory.create(layout)
    finally:
        first.close()
        first.unlink()


def test_only_the_owner_unlinks(write_layout, unique_name):
    layout = load_layout(write_layout(document(unique_name)))
    with SharedMemory.create(layout):
        other = SharedMemory.attach(layout)
        with pytest.raises(SegmentError, match="only the creator"):
            other.unlink()
        other.close()
        assert os.path.exists(segment_path(layout.segments["main"]))


def test_header_is_readable_from_the_file(write_layout, unique_name):
    layout = load_layout(write_layout(document(unique_name)))
    with SharedMemory.create(layout):
        with open(segment_path(layout.segments["main"]), "rb") as fh:
            header = SegmentHeader.read(fh.read(4096))
        assert header.name == f"{unique_name}-main" and header.layout_hash == layout.hash
        assert header.canonical_len == len(layout.canonical)
