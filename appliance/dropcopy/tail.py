"""Following the OMS journal as it grows: the drop copy's reader.

Read-only, through the journal's own reader (``journal_format``: ``check_file_header``, ``scan``
to find a starting point, ``read_from`` for what is appended after). The OMS is the only writer
and writes a record's CRC last, so a record failing its check at the end of the journal is one
being written: the tail waits for it. A bad record with a valid one after it is corrupt: it is
counted (``unreadable``) and skipped, never a crash and never a stall.

A new trading day replaces the file (the OMS archives yesterday's beside it): the tail finishes
the file it has open (its mapping outlives the rename), then starts the new one from sequence 1.
"""
from __future__ import annotations

import logging
import mmap
import os
from dataclasses import dataclass

from appliance.oms.journal_format import (
    FILE_HEADER_SIZE, RECORD_HEADER, JournalError, JournalRecord, check_file_header, read_from, record_at, scan,
    valid_after, whole_from,
)

log = logging.getLogger("appliance.dropcopy")


@dataclass
class _Open:
    """One mapped journal file."""
    fd: int
    mm: mmap.mmap
    size: int
    inode: tuple
    day: int

    def close(self) -> None:
        try:
            self.mm.close()
        finally:
            os.close(self.fd)


class JournalTail:
    """The records of the journal at ``path`` after a given one, in order, as they are appended."""

    def __init__(self, path: str):
        self.path = path
        self.file: _Open | None = None
        self.offset = FILE_HEADER_SIZE
        self.expected = 1                 # the sequence the next record must carry
        self.unreadable = 0               # records counted and skipped (corrupt, or a payload unread)
        self._counted: set = set()        # (day, sequence) of those, counted once
        self._probe: tuple | None = None  # (file, offset, expected) read ahead by pending()
        self.problem = ""                 # why the last read stopped short of a zero header
        self._resume: tuple = (None, 0, None)   # where seek was asked to go (kept until a journal exists)

    # ------------------------------------------------------------------ opening

    def _open(self) -> _Open | None:
        """The journal file mapped read-only, or None when there is none yet (the OMS creates it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if st.st_size < FILE_HEADER_SIZE:
                os.close(fd)
                return None               # being created: its header is not there yet
            mm = mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            raise
        if not any(mm[:8]):
            mm.close()
            os.close(fd)
            return None                   # preallocated, its header not written yet
        try:
            header = check_file_header(self.path, mm)
        except BaseException:
            mm.close()
            os.close(fd)
            raise
        return _Open(fd, mm, st.st_size, (st.st_dev, st.st_ino), header["trading_day"])

    def seek(self, day: int | None, after_sequence: int, history=None) -> bool:
        """Position after record ``after_sequence`` of trading day ``day`` (None: from the first
        record); a journal of another day starts from its first record. ``history(record)`` is
        called with each record before that point. False: no journal yet (the position is kept
        for when the OMS creates it)."""
        self.close()
        self._resume = (day, after_sequence, history)
        opened = self._open()
        if opened is None:
            return False
        self.file = opened
        after = after_sequence if day == opened.day else 0
        found = scan(opened.mm, opened.size, skip_corrupt=True)
        self.offset, self.expected = FILE_HEADER_SIZE, 1
        for offset in found.offsets:      # the first record after ``after`` (scan keeps them in order)
            sequence = RECORD_HEADER.parse(opened.mm, offset).sequence
            if sequence > after:
                self.offset, self.expected = offset, sequence
                break
            if history is not None:
                history(record_at(opened.mm, offset))
        else:
            if found.offsets:
                last = found.offsets[-1]
                self.offset = found.end
                self.expected = RECORD_HEADER.parse(opened.mm, last).sequence + 1
        skipped = [(offset, sequence, why) for offset, sequence, why in found.corrupt
                   if sequence > after and offset < self.offset]
        for offset, sequence, why in skipped:
            self._count_unreadable(sequence, offset, why)
        return True

    def ensure_open(self) -> bool:
        """A journal mapped (at the position last asked for), or False while there is none."""
        return self.file is not None or self.seek(*self._resume)

    @property
    def day(self) -> int | None:
        return self.file.day if self.file is not None else None

    # ------------------------------------------------------------------ reading

    def poll(self, limit: int = 1024) -> list[JournalRecord]:
        """The next records (at most ``limit``), or [] when nothing new is whole yet."""
        if not self.ensure_open():
            return []
        f = self.file
        records, offset, problem = read_from(f.mm, f.size, self.offset, self.expected, limit)
        if records:
            self.offset, self.expected = offset, records[-1].sequence + 1
            self.problem = ""
            return records
        if problem:
            self._bad_record(problem)
            return []
        self.problem = ""
        self._follow_file()
        return []

    def _bad_record(self, problem: str) -> None:
        """A record failing its check: corrupt if a valid one follows it (skipped and counted),
        else one being written (waited for)."""
        f = self.file
        later = valid_after(f.mm, self.offset, f.size, self.expected - 1)
        if later is None:
            self.problem = problem
            return
        again, _, _ = read_from(f.mm, f.size, self.offset, self.expected, 1)
        if again:                         # it was being written, and now it is whole
            return
        next_offset, next_sequence = later
        for sequence in range(self.expected, next_sequence):
            self._count_unreadable(sequence, self.offset, problem)
        self.offset, self.expected = next_offset, next_sequence

    def _count_unreadable(self, sequence: int, offset: int, why: str) -> None:
        self.count_unreadable(sequence, f"record {sequence} at offset {offset} cannot be read ({why})")

    def count_unreadable(self, sequence: int, what: str) -> None:
        """Count and log a record that is skipped, once however often it is read again."""
        key = (self.day, sequence)
        if key in self._counted:
            return
        self._counted.add(key)
        self.unreadable += 1
        log.error("%s: %s: skipped, not published", self.path, what)

    def _follow_file(self) -> None:
        """At the end of what is mapped: map more of a grown file, or move to a new day's file
        once every record of the old one is read."""
        f = self.file
        size = os.fstat(f.fd).st_size
        if size > f.size:                 # the OMS grew it (a larger journal_size_mb at its start)
            f.mm.close()
            f.mm, f.size = mmap.mmap(f.fd, size, prot=mmap.PROT_READ), size
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return                         # between the archive and the new file
        if (st.st_dev, st.st_ino) != f.inode and st.st_size >= FILE_HEADER_SIZE:
            log.info("%s: a new journal (trading day change): reading it from its first record", self.path)
            self.seek(None, 0)

    def pending(self) -> tuple[int, int]:
        """(records appended after the tail's position, the first one's timestamp ns or 0): how far
        behind the reader is. A probe reads ahead of the tail, each record once (a backlog is not
        read again at every look)."""
        f = self.file
        if f is None:
            return 0, 0
        if self._probe is None or self._probe[0] is not f or self._probe[2] < self.expected:
            self._probe = (f, self.offset, self.expected)
        _, offset, expected = self._probe
        offset, expected = whole_from(f.mm, f.size, offset, expected, 1 << 62)
        self._probe = (f, offset, expected)
        count = expected - self.expected
        if count <= 0:
            return 0, 0
        return count, RECORD_HEADER.parse(f.mm, self.offset).timestamp_ns

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
