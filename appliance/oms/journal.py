"""The OMS's write-ahead journal, the appender: one memory-mapped, preallocated file, appended to by the OMS alone.

The bytes (file header, record header, scanning) are ``journal_format``; the record payloads are
``events``. Every append is one call of the C extension (``_journal_fast.append``: header,
payload and CRC last), which is given the record header's layout (``RECORD_HEADER``) at import;
without the extension the journal does not open (fail closed). A new order's or replace's
ORDER_SENT may instead go with its OUCH frame in one C call (``append_then_send``, ``order_step.py``):
the same record, the same checks, the send only after the CRC. The file is preallocated with
``posix_fallocate`` when created: a full disk shows at start-up (the OMS refuses to start)
instead of as SIGBUS on a later write to the mapping.

Durability (``per_event`` | ``group`` | ``page_cache``):

- ``per_event``: ``msync`` of the record's pages before ``append`` returns, so before the order's
  bytes are sent. Survives a process crash and a power loss; costs one synchronous disk write per
  event (about 0.3 ms on this machine's disk).
- ``group``: a background thread calls ``fdatasync`` every ``group_commit_us`` when something was
  appended. Survives a process crash (the mapping's pages are in the page cache); on a power loss
  or kernel crash the events of the last group interval (plus the sync in progress) may be lost,
  including orders already sent: their fills then come back through the venue's replay, but their
  tokens are unknown to the restarted OMS (counted as unknown tokens; token uniqueness still
  holds because every start takes a new token prefix).
- ``page_cache``: no sync while running (the kernel writes back on its own, ~30 s by default).
  Survives a process crash; a power loss loses up to the kernel's write-back interval.

Every policy syncs on ``close``. A failed sync, or a journal too full for a new order, marks the
journal ``failed`` (the OMS then refuses new orders: fail closed). Appends flagged ``reserve``
(venue messages, cancels, control events) may use the last ``reserve_bytes`` of the file, so
fills and cancels are still recorded after new orders have been refused for lack of space.

On open the records are scanned (``journal_format.scan``): a torn or corrupt tail is zeroed out
("truncated") with a warning and appending continues from there; a bad record with valid records
after it raises ``JournalCorruptError`` and the OMS does not start.
"""
from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from typing import Iterator

from appliance.oms.journal_format import (
    FILE_HEADER_SIZE, MAX_PAYLOAD, MAX_RECORD_SIZE, RECORD_HEADER, RECORD_HEADER_SIZE, JournalCorruptError,
    JournalError, JournalFull, JournalRecord, ScanResult, check_file_header, record_at, scan, write_file_header,
)
from appliance.oms.journal_records import ORDER_SENT

log = logging.getLogger("appliance.oms.journal")

try:                             # the one append path (setup.py builds it)
    from appliance.oms import _journal_fast
    _journal_fast.set_layout(RECORD_HEADER.size, [
        (RECORD_HEADER.offset_of[name], RECORD_HEADER.size_of[name])
        for name in ("crc", "length", "sequence", "timestamp_ns", "type")])
    _append = _journal_fast.append
except (ImportError, AttributeError):   # not built, or built from an older _journal_fast.c (no set_layout):
    _append = None                      # Journal.open refuses with the reason; reading journals still works
_order_step = None                      # the order step's record (append_then_send; the frames: order_step.py)
if _append is not None:
    try:
        _journal_fast.set_step_record(ORDER_SENT.type_id, ORDER_SENT.size, ORDER_SENT.compiled_shape())
        _order_step = _journal_fast.order_step
    except AttributeError:              # built from a _journal_fast.c before the order step: the Python path
        pass
HAS_ORDER_STEP = _order_step is not None
_STEP_RECORD_SIZE = RECORD_HEADER_SIZE + ORDER_SENT.size
PAGE = mmap.PAGESIZE
# madvise(MADV_POPULATE_WRITE) (Linux 5.14): map pages writable without changing a byte. A sync
# (fdatasync, msync, the kernel's write-back) write-protects the pages it cleans, and the first
# write to a clean page of a shared file mapping is a page fault (measured here: tens of us); so
# after each group commit the tail's page and the next ones are made writable again off the hot path.
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
PREFAULT_BYTES = 64 << 10         # from the tail's page: a few hundred records ahead

DURABILITY_POLICIES = ("per_event", "group", "page_cache")


class Journal:
    """One open journal file: scanned at open, appended to by the OMS alone."""

    def __init__(self, path: str, fd: int, mm: mmap.mmap, size: int, durability: str, group_commit_us: int,
                 reserve_bytes: int, found: ScanResult, header: dict):
        self.path = path
        self._fd = fd
        self._mm = mm
        self.size = size
        self.durability = durability
        self.group_commit_us = group_commit_us
        self.header = header
        self.trading_day = header["trading_day"]
        self.found = found
        self._tail = found.end
        self.next_sequence = len(found.offsets) + 1
        self._orders_limit = size - reserve_bytes
        self.failed = ""                 # why the journal refuses new orders ("" while healthy)
        self.appends = 0
        self.syncs = 0
        self.sync_errors = 0
        self.truncated_bytes = 0
        self._dirty = False
        self.prefaulting = True          # until the kernel refuses MADV_POPULATE_WRITE
        self.prefaults = 0
        self._sync_lock = threading.Lock()
        self._committer: _GroupCommitter | None = None
        self._closed = False

    # ---- opening

    @classmethod
    def open(cls, path: str, size_bytes: int, durability: str = "group", group_commit_us: int = 1000, *,
             reserve_bytes: int | None = None, now_ns: int | None = None) -> "Journal":
        """Open (or create and preallocate) ``path``; scan it; truncate a torn tail with a warning."""
        if durability not in DURABILITY_POLICIES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_POLICIES)}, not {durability!r}")
        if size_bytes < FILE_HEADER_SIZE + 16 * MAX_RECORD_SIZE:
            raise ValueError(f"a journal needs at least {FILE_HEADER_SIZE + 16 * MAX_RECORD_SIZE} bytes")
        if _append is None:
            raise JournalError(f"{path}: the journal's C extension appliance.oms._journal_fast is not built or "
                               "out of date (python setup.py build_ext --inplace)")
        now_ns = time.time_ns() if now_ns is None else now_ns
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(f"{path}: cannot open the journal: {exc.strerror or exc}") from None
        try:
            existing = os.fstat(fd).st_size
            created = existing == 0
            size = max(existing, size_bytes)
            if existing < size:
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    raise JournalError(f"{path}: cannot preallocate {size} bytes: {exc.strerror or exc}") from None
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        except BaseException:
            os.close(fd)
            if created:
                _unlink_quietly(path)
            raise
        try:
            if created:
                header = write_file_header(mm, size, now_ns)
                mm.flush(0, FILE_HEADER_SIZE)
                _fsync_directory(directory)
            else:
                header = check_file_header(path, mm)
                if header["file_size"] != size:
                    header = write_file_header(mm, size, header["created_ns"], header["trading_day"])
            found = scan(mm, size)
            if found.corrupt:
                offset, sequence, reason = found.corrupt[0]
                raise JournalCorruptError(path, offset, sequence, reason)
        except BaseException:
            mm.close()
            os.close(fd)
            raise
        reserve = reserve_bytes if reserve_bytes is not None else min(size // 8, 1 << 20)
        journal = cls(path, fd, mm, size, durability, group_commit_us, reserve, found, header)
        if found.garbage_end > found.end:
            journal._truncate_tail(found)
        journal.prefault()
        if durability == "group":
            journal._committer = _GroupCommitter(journal, group_commit_us)
            journal._committer.start()
        return journal

    def _truncate_tail(self, found: ScanResult) -> None:
        start, stop = found.end, found.garbage_end
        log.warning("%s: torn or corrupt tail at offset %d (%s): %d bytes truncated after record %d",
                    self.path, start, found.problem or "garbage", stop - start, len(found.offsets))
        if stop > start:
            self._mm[start:stop] = bytes(stop - start)
            self._sync_range(start, stop)
        self.truncated_bytes = stop - start

    # ---- reading what was found at open

    def records(self) -> Iterator[JournalRecord]:
        """The records found at open, in order (recovery replays them)."""
        mm = self._mm
        for offset in self.found.offsets:
            yield record_at(mm, offset)

    @property
    def recovered_records(self) -> int:
        return len(self.found.offsets)

    @property
    def bytes_appended(self) -> int:
        return self._tail - self.found.end

    @property
    def used_bytes(self) -> int:
        return self._tail

    @property
    def mapping(self) -> mmap.mmap:
        """The mapped file, read by this process only (replication streams records from it); never written through."""
        return self._mm

    @property
    def healthy(self) -> bool:
        return not self.failed

    # ---- appending (the hot path)

    def append(self, record_type: int, payload, timestamp_ns: int, reserve: bool = False) -> int:
        """Write one record (header, payload, CRC last: one C call); returns its sequence. Raises
        ``JournalError`` when it cannot (and, for a sync error or a new order that does not fit,
        marks the journal failed)."""
        length = len(payload)
        offset = self._tail
        if self._closed or length > MAX_PAYLOAD or \
                offset + RECORD_HEADER_SIZE + length > (self.size if reserve else self._orders_limit):
            self._refuse(length, reserve)
        sequence = self.next_sequence
        end = _append(self._mm, offset, record_type, sequence, timestamp_ns, payload)
        self._tail = (end + 7) & ~7
        self.next_sequence = sequence + 1
        self.appends += 1
        if self.durability == "per_event":
            self._sync_range(offset, end)
        else:
            self._dirty = True
        return sequence

    def append_copies(self, data, count: int) -> int:
        """``count`` whole records another journal wrote (``data``: their bytes from a record's start to
        the padded end of the last, checked by the caller with ``journal_format.whole_from``: numbered
        from this journal's next sequence, CRCs good) copied to the tail as they are: the standby's
        journal, byte-identical to the primary's, without encoding each record again. Returns the last
        sequence; raises as ``append`` does for reserved space (the standby's copy never fails an order)."""
        length = len(data)
        offset = self._tail
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        if count < 1 or length % 8 or offset + length > self.size:
            if count < 1 or length % 8:
                raise JournalError(f"{count} records in {length} bytes: not whole padded records")
            raise JournalFull(f"{self.path}: journal full at offset {offset}")
        self._mm[offset:offset + length] = data
        self._tail = offset + length
        self.next_sequence += count
        self.appends += count
        if self.durability == "per_event":
            self._sync_range(offset, offset + length)
        else:
            self._dirty = True
        return self.next_sequence - 1

    def append_then_send(self, record: tuple, frame_id: int, frame: tuple, out, fd: int, timestamp_ns: int):
        """An ORDER_SENT (``record``: the values ``ORDER_SENT.pack`` takes) appended as ``append`` writes
        it, then, in the same C call, OUCH frame ``frame_id`` packed from ``frame`` into ``out`` and
        handed to the non-blocking socket ``fd`` (``order_step.py``). Returns the bytes the kernel took,
        -errno when the send failed, or None when nothing was sent (``fd`` < 0, or ``per_event``: the
        record's pages are synced first and the caller sends ``out``). Raises as ``append`` does."""
        offset = self._tail
        if self._closed or offset + _STEP_RECORD_SIZE > self._orders_limit:
            self._refuse(ORDER_SENT.size, False)
        sequence = self.next_sequence
        per_event = self.durability == "per_event"
        sent = _order_step(self._mm, offset, sequence, timestamp_ns, -1 if per_event else fd, out, frame_id,
                           record, frame)
        end = offset + _STEP_RECORD_SIZE
        self._tail = (end + 7) & ~7
        self.next_sequence = sequence + 1
        self.appends += 1
        if per_event:
            self._sync_range(offset, end)
        else:
            self._dirty = True
        return sent

    def _refuse(self, length: int, reserve: bool) -> None:
        """Why a record cannot be appended, raised (closed, too big, or full: new orders fail the journal)."""
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        if length > MAX_PAYLOAD:
            raise JournalError(f"record of {length} bytes exceeds the {MAX_PAYLOAD}-byte payload limit")
        offset = self._tail
        if not reserve:
            self.fail(f"journal full: {self.size - offset} bytes left, the last "
                      f"{self.size - self._orders_limit} reserved for venue messages and cancels")
        raise JournalFull(f"{self.path}: journal full at offset {offset}")

    def fail(self, reason: str) -> None:
        if not self.failed:
            log.error("%s: journal failed: %s; no new orders", self.path, reason)
            self.failed = reason

    # ---- durability

    def _sync_range(self, start: int, end: int) -> None:
        page_start = start - start % PAGE
        try:
            self._msync(page_start, end - page_start)
        except (OSError, ValueError) as exc:
            self.sync_errors += 1
            self.fail(f"msync failed: {exc}")
            raise JournalError(f"{self.path}: msync failed: {exc}") from None
        self.syncs += 1

    def _msync(self, offset: int, length: int) -> None:
        self._mm.flush(offset, length)

    def _fdatasync(self) -> None:
        os.fdatasync(self._fd)

    def prefault(self) -> bool:
        """Make the tail's page and ``PREFAULT_BYTES`` after it writable in the page tables (no byte
        changes), so the appends that follow take no write fault. Safe from any thread: it writes
        nothing. False (and not tried again) where the kernel lacks MADV_POPULATE_WRITE."""
        if not self.prefaulting or self._closed:
            return False
        start = self._tail - self._tail % PAGE
        length = min(PREFAULT_BYTES, self.size - start)
        if length <= 0:
            return False
        try:
            self._mm.madvise(MADV_POPULATE_WRITE, start, length)
        except (OSError, ValueError) as exc:
            self.prefaulting = False
            log.info("%s: pages are not prefaulted (madvise MADV_POPULATE_WRITE: %s): an append after a sync "
                     "may take a page fault", self.path, exc)
            return False
        self.prefaults += 1
        return True

    def sync(self) -> None:
        """Everything appended so far to the disk, whatever the policy."""
        with self._sync_lock:
            self._dirty = False
            try:
                self._fdatasync()
            except OSError as exc:
                self.sync_errors += 1
                self.fail(f"fdatasync failed: {exc}")
                raise JournalError(f"{self.path}: fdatasync failed: {exc}") from None
            self.syncs += 1

    def close(self) -> None:
        if self._closed:
            return
        if self._committer is not None:
            self._committer.stop()
            self._committer = None
        try:
            self.sync()
        except JournalError as exc:
            log.error("%s", exc)
        self._closed = True
        try:
            self._mm.close()
        finally:
            os.close(self._fd)


class _GroupCommitter(threading.Thread):
    """Group commit: ``fdatasync`` every interval when something was appended (it releases the
    GIL, so the OMS's duty cycle never waits for the disk), then the tail's pages made writable
    again (``Journal.prefault``: the sync write-protected them). It stays on the appender's CPU: it
    holds the GIL between its calls, and on another CPU shared with a spinner it was preempted
    holding it (the appender then waited milliseconds; measured with ``bench hops``)."""

    def __init__(self, journal: Journal, interval_us: int):
        super().__init__(name="journal-group-commit", daemon=True)
        self.journal = journal
        self.interval_s = interval_us / 1e6
        self._stop_event = threading.Event()

    def run(self) -> None:
        journal = self.journal
        wait = self._stop_event.wait
        while not wait(self.interval_s):
            if journal._dirty:
                try:
                    journal.sync()
                except JournalError as exc:
                    log.error("%s", exc)
                journal.prefault()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# ------------------------------------------------------------------ helpers

def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def archive_name(path: str, day: int) -> str:
    """Where a previous day's journal goes when a new day starts."""
    base = f"{path}.{day}"
    candidate, n = base, 1
    while os.path.exists(candidate):
        candidate = f"{base}.{n}"
        n += 1
    return candidate
