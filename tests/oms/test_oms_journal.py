"""The OMS journal: append and read back, torn tails, corruption in the middle, a full file, each
durability policy, and failing writes and syncs (fail closed)."""
from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import time

import pytest

from appliance.oms import crc32c
from appliance.oms.journal import Journal
from appliance.oms.journal_format import (
    FILE_HEADER_SIZE, MAX_RECORD_SIZE, RECORD_HEADER_SIZE, JournalCorruptError, JournalError, JournalFull, padded,
    read_records,
)
from conftest import wait_until

SIZE = 1 << 20


def payload(i: int) -> bytes:
    return f"record {i} ".encode() * (1 + i % 7)


def write(path, count: int, durability: str = "page_cache", size: int = SIZE) -> list[int]:
    """``count`` records; returns their offsets."""
    journal = Journal.open(str(path), size, durability)
    offsets = []
    try:
        for i in range(count):
            offsets.append(journal._tail)
            journal.append(1 + i % 5, payload(i), 1_000_000 + i)
    finally:
        journal.close()
    return offsets


# ------------------------------------------------------------------ CRC-32C

def test_crc32c_is_castagnoli_in_every_implementation():
    assert crc32c.crc32c(b"123456789") == crc32c.CHECK_VALUE == 0xE3069283
    assert crc32c.crc32c_python(b"123456789") == 0xE3069283
    rng = random.Random(3)
    import numpy as np
    data = bytes(rng.randrange(256) for _ in range(4096))
    offsets, lengths = [], []
    for n in list(range(0, 40)) + [100, 1000, 4000]:
        chunk = data[:n]
        assert crc32c.crc32c(chunk) == crc32c.crc32c_python(chunk), n
        assert crc32c.crc32c(chunk[n // 2:], crc32c.crc32c(chunk[:n // 2])) == crc32c.crc32c(chunk)
        offsets.append(rng.randrange(0, 4096 - n + 1))
        lengths.append(n)
    batch = crc32c.crc32c_batch(data, np.array(offsets), np.array(lengths))
    assert [int(v) for v in batch] == [crc32c.crc32c_python(data[o:o + n]) for o, n in zip(offsets, lengths)]
    print(f"CRC-32C implementation: {crc32c.IMPLEMENTATION}")


# ------------------------------------------------------------------ append and read back

@pytest.mark.parametrize("durability", ["per_event", "group", "page_cache"])
def test_records_read_back_in_order_after_reopening_with_every_policy(tmp_path, durability):
    path = tmp_path / "j.bin"
    write(path, 50, durability)
    journal = Journal.open(str(path), SIZE, durability)
    try:
        records = list(journal.records())
        assert [r.sequence for r in records] == list(range(1, 51))
        assert [r.payload for r in records] == [payload(i) for i in range(50)]
        assert [r.type for r in records] == [1 + i % 5 for i in range(50)]
        assert [r.timestamp_ns for r in records] == [1_000_000 + i for i in range(50)]
        assert journal.next_sequence == 51 and journal.truncated_bytes == 0
        assert journal.append(9, b"more", 5) == 51
    finally:
        journal.close()
    records, found, header = read_records(str(path))
    assert len(records) == 51 and records[-1].payload == b"more" and not found.corrupt
    assert header["trading_day"] > 20000000 and header["crc_ok"]


def test_durability_policies_sync_as_they_say(tmp_path):
    per_event = Journal.open(str(tmp_path / "a.bin"), SIZE, "per_event")
    group = Journal.open(str(tmp_path / "b.bin"), SIZE, "group", group_commit_us=1000)
    page_cache = Journal.open(str(tmp_path / "c.bin"), SIZE, "page_cache")
    try:
        for journal in (per_event, group, page_cache):
            for i in range(20):
                journal.append(1, payload(i), i)
        assert per_event.syncs == 20                     # one msync per record, before append returns
        wait_until(lambda: group.syncs >= 1 and not group._dirty, 5, message="a group commit")
        assert group.syncs < 20
        time.sleep(0.01)
        assert page_cache.syncs == 0                     # the kernel writes back on its own
    finally:
        for journal in (per_event, group, page_cache):
            journal.close()
    assert page_cache.syncs == 1                         # close syncs whatever the policy


# ------------------------------------------------------------------ torn tails

def _torn_copies(tmp_path, garbage: bool):
    """For every byte k of the last record: a copy of the journal in which only its first k bytes
    reached the file (the rest zero, or garbage)."""
    source = tmp_path / "source.bin"
    offsets = write(source, 30)
    last = offsets[-1]
    size = padded(RECORD_HEADER_SIZE + len(payload(29)))
    rng = random.Random(k := 0)
    for k in range(size):
        copy = tmp_path / f"torn-{k}.bin"
        shutil.copy(source, copy)
        with open(copy, "r+b") as f:
            f.seek(last + k)
            tail = size - k
            f.write(bytes(rng.randrange(1, 256) for _ in range(tail)) if garbage else bytes(tail))
        yield k, copy, last


@pytest.mark.parametrize("garbage", [False, True], ids=["zeros", "garbage"])
def test_a_record_torn_at_any_byte_is_truncated_with_a_warning(tmp_path, caplog, garbage):
    for k, copy, last in _torn_copies(tmp_path, garbage):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="appliance.oms.journal"):
            journal = Journal.open(str(copy), SIZE, "page_cache")
        try:
            assert journal.recovered_records == 29, k
            assert journal.found.end == last
            warned = any("torn or corrupt tail" in r.message for r in caplog.records)
            assert warned == (garbage or k > 0), k               # nothing of it written: a clean end
            assert journal.append(1, b"after", 1) == 30          # appending carries on where it was cut
        finally:
            journal.close()
        records, found, _header = read_records(str(copy))
        assert [r.sequence for r in records] == list(range(1, 31)) and records[-1].payload == b"after", k
        assert found.garbage_end == 0
        os.unlink(copy)


def test_garbage_after_the_last_record_is_truncated(tmp_path, caplog):
    path = tmp_path / "j.bin"
    offsets = write(path, 10)
    end = offsets[-1] + padded(RECORD_HEADER_SIZE + len(payload(9)))
    with open(path, "r+b") as f:
        f.seek(end + 100)
        f.write(b"\xff" * 50)
    with caplog.at_level(logging.WARNING, logger="appliance.oms.journal"):
        journal = Journal.open(str(path), SIZE, "page_cache")
    try:
        assert journal.recovered_records == 10 and journal.truncated_bytes == 150
        assert any("torn or corrupt tail" in r.message for r in caplog.records)
    finally:
        journal.close()


# ------------------------------------------------------------------ corruption in the middle

def test_a_flipped_bit_in_the_middle_stops_the_open_and_the_audit_reads_past_it(tmp_path):
    path = tmp_path / "j.bin"
    offsets = write(path, 100)
    with open(path, "r+b") as f:                          # one bit of record 50's payload
        f.seek(offsets[49] + RECORD_HEADER_SIZE + 3)
        byte = f.read(1)[0]
        f.seek(offsets[49] + RECORD_HEADER_SIZE + 3)
        f.write(bytes([byte ^ 0x10]))
    before = path.read_bytes()
    with pytest.raises(JournalCorruptError) as raised:
        Journal.open(str(path), SIZE, "page_cache")
    assert raised.value.sequence == 50 and raised.value.offset == offsets[49]
    assert path.read_bytes() == before                    # nothing truncated, nothing lost
    records, found, _header = read_records(str(path), skip_corrupt=True)
    assert [r.sequence for r in records] == [s for s in range(1, 101) if s != 50]
    assert found.corrupt == [(offsets[49], 50, "CRC mismatch")]


@pytest.mark.parametrize("where", ["length", "sequence", "crc"])
def test_a_flipped_bit_in_a_middle_header_is_found_too(tmp_path, where):
    path = tmp_path / "j.bin"
    offsets = write(path, 40)
    field = {"crc": 0, "length": 4, "sequence": 8}[where]
    with open(path, "r+b") as f:
        f.seek(offsets[20] + field)
        byte = f.read(1)[0]
        f.seek(offsets[20] + field)
        f.write(bytes([byte ^ 0x01]))
    with pytest.raises(JournalCorruptError):
        Journal.open(str(path), SIZE, "page_cache")
    records, found, _header = read_records(str(path), skip_corrupt=True)
    assert len(records) == 39 and found.corrupt[0][1] == 21


def test_a_flipped_bit_in_the_last_record_is_a_torn_tail(tmp_path):
    path = tmp_path / "j.bin"
    offsets = write(path, 10)
    with open(path, "r+b") as f:
        f.seek(offsets[-1] + RECORD_HEADER_SIZE)
        f.write(b"\x00")
    journal = Journal.open(str(path), SIZE, "page_cache")
    try:
        assert journal.recovered_records == 9 and journal.truncated_bytes > 0
    finally:
        journal.close()


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    path = tmp_path / "j.bin"
    path.write_bytes(b"not a journal" * 1000)
    with pytest.raises(JournalError, match="not an OMS journal"):
        Journal.open(str(path), SIZE, "page_cache")


# ------------------------------------------------------------------ full, and failing I/O: fail closed

def test_a_full_journal_refuses_new_orders_but_keeps_its_reserve_for_fills_and_cancels(tmp_path):
    size = FILE_HEADER_SIZE + 64 * MAX_RECORD_SIZE
    journal = Journal.open(str(tmp_path / "j.bin"), size, "page_cache", reserve_bytes=16 * MAX_RECORD_SIZE)
    try:
        record = b"x" * 1000
        appended = 0
        with pytest.raises(JournalFull):
            while True:
                journal.append(1, record, 0)
                appended += 1
        assert journal.failed.startswith("journal full")  # new orders are refused from now on
        reserved = 0
        with pytest.raises(JournalFull):
            while True:
                journal.append(2, record, 0, reserve=True)
                reserved += 1
        assert appended > 0 and reserved > 0
    finally:
        journal.close()
    records, _found, _header = read_records(str(tmp_path / "j.bin"))
    assert len(records) == appended + reserved


def test_a_disk_too_full_to_preallocate_stops_the_open(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(JournalError, match="cannot preallocate"):
        Journal.open(str(tmp_path / "j.bin"), SIZE, "page_cache")
    assert not (tmp_path / "j.bin").exists()


def test_a_failed_msync_fails_the_journal_closed(tmp_path):
    journal = Journal.open(str(tmp_path / "j.bin"), SIZE, "per_event")
    try:
        journal.append(1, b"fine", 0)

        def broken(offset, length):
            raise OSError(errno.EIO, "Input/output error")
        journal._msync = broken
        with pytest.raises(JournalError, match="msync failed"):
            journal.append(1, b"lost?", 0)
        assert journal.failed and not journal.healthy and journal.sync_errors == 1
    finally:
        journal._msync = lambda offset, length: None
        journal.close()


def test_a_failed_group_commit_fails_the_journal_closed(tmp_path):
    journal = Journal.open(str(tmp_path / "j.bin"), SIZE, "group", group_commit_us=500)
    try:
        def broken():
            raise OSError(errno.EIO, "Input/output error")
        journal._fdatasync = broken
        journal.append(1, b"x", 0)
        wait_until(lambda: journal.failed, 5, message="the group commit to fail")
        assert "fdatasync failed" in journal.failed
    finally:
        journal._fdatasync = lambda: None
        journal.close()


def test_a_journal_being_appended_to_can_be_read_meanwhile(tmp_path):
    """``appliance audit`` on the running appliance's journal: every read is a consistent prefix."""
    import threading
    journal = Journal.open(str(tmp_path / "live.bin"), 32 << 20, "page_cache")
    from appliance.oms.journal_records import RecordType
    stop = threading.Event()
    appended = []

    def append():
        n = 0
        while not stop.is_set() and n < 200_000:
            journal.append(RecordType.CONTROL, b"x" * 40, n)
            n += 1
        appended.append(n)
    writer = threading.Thread(target=append)
    writer.start()
    try:
        seen = 0
        for _ in range(30):
            records, _found, _header = read_records(str(tmp_path / "live.bin"))
            assert [r.sequence for r in records] == list(range(1, len(records) + 1))
            assert len(records) >= seen
            seen = len(records)
    finally:
        stop.set()
        writer.join()
        journal.close()
    assert appended and seen > 0, "the writer did not run"


def _faults_of_one_append(journal, n: int) -> int:
    """Minor page faults this thread took for one append (a write to a write-protected page is one)."""
    import resource
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    journal.append(1, b"r" * 100, n)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def test_after_a_sync_prefault_makes_the_next_append_take_no_page_fault(tmp_path):
    """A sync write-protects the pages it cleans, so the next append into the tail's page faults
    (tens of us, the OMS hop's p99); ``prefault`` (the group committer calls it after each sync)
    maps them writable again without changing a byte. Skipped where syncs do not write-protect."""
    journal = Journal.open(str(tmp_path / "j.bin"), SIZE, "page_cache")
    try:
        journal.append(1, b"first", 0)
        journal.sync()
        if _faults_of_one_append(journal, 1) == 0:
            pytest.skip("this filesystem does not write-protect synced pages (no write-back faults to avoid)")
        journal.sync()
        assert journal.prefault()
        assert _faults_of_one_append(journal, 2) == 0
        for _ in range(40):                                   # and the pages after the tail's: ~6 KB more
            assert _faults_of_one_append(journal, 3) == 0
        assert journal.prefaults >= 2                         # at open, then here
    finally:
        journal.close()
    records, _found, _header = read_records(str(tmp_path / "j.bin"))
    assert [r.payload for r in records[:3]] == [b"first", b"r" * 100, b"r" * 100]   # no byte changed


def test_a_kernel_without_populate_write_stops_prefaulting_and_appends_go_on(tmp_path, monkeypatch, caplog):
    from appliance.oms import journal as journal_module
    monkeypatch.setattr(journal_module, "MADV_POPULATE_WRITE", 9999)        # an advice the kernel refuses
    with caplog.at_level(logging.INFO, logger="appliance.oms.journal"):
        journal = Journal.open(str(tmp_path / "j.bin"), SIZE, "group", group_commit_us=500)
    try:
        assert not journal.prefaulting and not journal.prefault()
        assert "pages are not prefaulted" in caplog.text
        journal.append(1, b"still", 0)
        wait_until(lambda: journal.syncs >= 1, 5, message="a group commit")
        assert journal.healthy
    finally:
        journal.close()


def test_a_scan_of_a_live_journal_walks_on_over_records_appended_while_it_ran(tmp_path, monkeypatch):
    """The drop copy scans the OMS's journal while the OMS appends. Records appended after the walk
    found the end were seen as non-zero bytes after it, and the first of them was skipped as
    corrupt (seen in CI: "record 1 at offset 4096 cannot be read (unreadable record): skipped, not
    published", the fill's SENT_NEW lost from the stream). They are records: the scan walks on."""
    import appliance.oms.journal_format as journal_format
    journal = Journal.open(str(tmp_path / "live.bin"), SIZE, "page_cache")
    try:
        journal.append(1, payload(1), 1)
        original = journal_format._last_nonzero
        appended = []

        def appended_while_scanning(buffer, start, size):
            if not appended:                       # the OMS appends between the walk and this look
                appended.extend(journal.append(1, payload(i), i) for i in (2, 3))
            return original(buffer, start, size)

        monkeypatch.setattr(journal_format, "_last_nonzero", appended_while_scanning)
        found = journal_format.scan(journal.mapping, journal.size, skip_corrupt=True)
        assert appended == [2, 3]
        assert found.corrupt == [] and found.problem == ""
        assert len(found.offsets) == 3
    finally:
        journal.close()


def test_append_copies_writes_the_bytes_append_writes_and_refuses_what_is_not_whole_records(tmp_path):
    """The standby's copy of checked records (``append_copies``) against ``append`` itself, record
    for record: the same bytes at the same offsets, the same sequences, read back the same."""
    from appliance.oms.journal_format import whole_from
    write(tmp_path / "a.bin", 40)
    source = Journal.open(str(tmp_path / "a.bin"), SIZE, "page_cache")
    copy = Journal.open(str(tmp_path / "b.bin"), SIZE, "page_cache")
    try:
        mm, end = source.mapping, source.used_bytes
        offset, sequence = FILE_HEADER_SIZE, 1
        for run in (1, 3, 7, 29):                    # runs of records as RECORDS frames carry them
            after, due = whole_from(mm, end, offset, sequence, run)
            assert due - sequence == run
            assert copy.append_copies(bytes(mm[offset:after]), run) == due - 1 == copy.next_sequence - 1
            offset, sequence = after, due
        assert copy.used_bytes == end and bytes(copy.mapping[FILE_HEADER_SIZE:end]) == bytes(mm[FILE_HEADER_SIZE:end])
        with pytest.raises(JournalError, match="not whole padded records"):
            copy.append_copies(b"x" * 12, 1)
        with pytest.raises(JournalFull):
            copy.append_copies(bytes(SIZE), 1)
        assert copy.used_bytes == end                # a refused copy writes nothing
    finally:
        source.close()
        copy.close()
    assert read_records(str(tmp_path / "b.bin"))[0] == read_records(str(tmp_path / "a.bin"))[0]
    with pytest.raises(JournalError, match="closed"):
        copy.append_copies(bytes(8), 1)
