"""The OMS's write-ahead journal: an append-only, memory-mapped, preallocated file of records.

File: a 4 KiB header (magic ``APPLOMSJ``, version, file size, creation time, trading day,
CRC-32C of the header), then records at 8-byte aligned offsets until a zero header::

    crc32c      u32   CRC-32C of every byte of the record after this field (length .. payload)
    length      u32   payload bytes
    sequence    u64   1, 2, 3, ... (no gaps)
    timestamp   u64   epoch ns (time.time_ns()) when appended
    type        u16   record type (recovery.py: ORDER_SENT, EXCHANGE_MESSAGE, ...)
    reserved    u16   0
    payload     length bytes, then zeros up to the next multiple of 8

An append writes length .. payload first and the CRC last, so a record is valid only once it is
complete. The file is preallocated with ``posix_fallocate`` when created: a full disk shows at
start-up (the OMS refuses to start) instead of as SIGBUS on a later write to the mapping.

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

On open the records are scanned, their CRCs checked (``crc32c_batch``), and the end found:

- a torn or corrupt tail (a record cut short by a crash, garbage after the last good record, a
  bad CRC with nothing valid after it) is zeroed out ("truncated") with a warning, and appending
  continues from there;
- a bad record *followed by valid records* (a flipped bit in the middle) is not a tail: dropping
  what follows could forget sent orders and reuse their tokens, so ``open`` raises
  ``JournalCorruptError`` naming the offset and sequence, and the OMS does not start. ``scan``
  with ``skip_corrupt=True`` (the audit export) reads past it.
"""
from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

from appliance.oms import crc32c as _crc
from appliance.runtime.trading_day import trading_day_of

log = logging.getLogger("appliance.oms.journal")

MAGIC = b"APPLOMSJ"
VERSION = 1
FILE_HEADER_SIZE = 4096
_FILE_HEADER = struct.Struct("<8sIIQQI")         # magic, version, header size, file size, created ns, trading day
_FILE_HEADER_CRC_OFFSET = _FILE_HEADER.size
RECORD_HEADER = struct.Struct("<IIQQHH")          # crc, length, sequence, timestamp, type, reserved
RECORD_HEADER_SIZE = RECORD_HEADER.size           # 28
_BODY = struct.Struct("<IQQHH")                   # what follows the crc field
RECORD_BODY_FORMAT = "<IQQHH"                     # length, sequence, timestamp, type, reserved: a claim()
                                                  # writer packs these and its payload at offset + 4
_CRC = struct.Struct("<I")
_pack_crc = _CRC.pack_into
_RAW_CRC = _crc.RAW_UPDATE       # the native CRC straight on the mapping (None: copy and use crc32c)
try:                             # header, payload and CRC of a record in one C call (setup.py builds it)
    from appliance.oms._journal_fast import append as _fast_append
except ImportError:              # pragma: no cover - exercised when the extension is not built
    _fast_append = None
MAX_PAYLOAD = 4096
MAX_RECORD_SIZE = (RECORD_HEADER_SIZE + MAX_PAYLOAD + 7) & ~7
PAGE = mmap.PAGESIZE

DURABILITY_POLICIES = ("per_event", "group", "page_cache")


class JournalError(RuntimeError):
    """The journal cannot take this record (I/O error, full, closed): the caller fails closed."""


class JournalFull(JournalError):
    pass


class JournalCorruptError(JournalError):
    """A bad record with valid records after it: not a torn tail, so nothing is truncated."""

    def __init__(self, path: str, offset: int, sequence: int, reason: str):
        super().__init__(f"{path}: record {sequence} at offset {offset} is corrupt ({reason}) and valid records "
                         f"follow it: refusing to truncate; inspect it with 'appliance audit --journal {path}'")
        self.offset = offset
        self.sequence = sequence


class JournalRecord(NamedTuple):
    sequence: int
    timestamp_ns: int
    type: int
    payload: bytes
    offset: int


@dataclass
class ScanResult:
    """What a scan of a journal's bytes found."""
    offsets: list = field(default_factory=list)       # of the valid records, in order
    lengths: list = field(default_factory=list)       # their payload lengths
    end: int = FILE_HEADER_SIZE                       # where the next record goes
    garbage_end: int = 0                              # > end: non-zero bytes up to here after the end
    problem: str = ""                                 # why the scan stopped, when not at a clean end
    corrupt: list = field(default_factory=list)       # (offset, sequence, reason) skipped with skip_corrupt


def padded(size: int) -> int:
    return (size + 7) & ~7


# ------------------------------------------------------------------ scanning (open, audit, bench)

def _header_ok(buffer, offset: int, size: int, expected_sequence: int | None):
    """(length, sequence) of a plausible record header at ``offset``, or None."""
    if offset + RECORD_HEADER_SIZE > size:
        return None
    crc, length, sequence, _ts, _type, reserved = RECORD_HEADER.unpack_from(buffer, offset)
    if length > MAX_PAYLOAD or reserved or offset + RECORD_HEADER_SIZE + length > size:
        return None
    if sequence == 0 or (expected_sequence is not None and sequence != expected_sequence):
        return None
    return length, sequence, crc


def _crc_ok(buffer, offset: int, length: int, stored: int) -> bool:
    end = offset + RECORD_HEADER_SIZE + length
    return _crc.crc32c(memoryview(buffer)[offset + 4:end]) == stored


def _last_nonzero(buffer, start: int, size: int) -> int:
    """One past the last non-zero byte in [start, size), or ``start`` when all zero (of a copy
    taken chunk by chunk, so a writer appending meanwhile cannot make it fail)."""
    import numpy as np
    if start >= size:
        return start
    data = np.frombuffer(buffer, dtype=np.uint8, count=size - start, offset=start)
    chunk = 1 << 22
    end = len(data)
    while end > 0:
        begin = max(0, end - chunk)
        # a copy: the OMS may be appending to this very file (appliance audit on a live journal),
        # and numpy refuses to count what changes under it
        nz = np.flatnonzero(np.array(data[begin:end]))
        if nz.size:
            return start + begin + int(nz[-1]) + 1
        end = begin
    return start


def _find_valid_after(buffer, start: int, stop: int, size: int, after_sequence: int):
    """The first 8-aligned offset in (start, stop) holding a CRC-valid record numbered after
    ``after_sequence`` (a resynchronisation point), or None."""
    offset = (start + 8) & ~7
    while offset < stop:
        found = _header_ok(buffer, offset, size, None)
        if found is not None:
            length, sequence, crc = found
            if sequence > after_sequence and _crc_ok(buffer, offset, length, crc):
                return offset, sequence
        offset += 8
    return None


def scan(buffer, size: int, *, skip_corrupt: bool = False) -> ScanResult:
    """Find the valid records of a journal image. Headers are chained in Python (only the
    length and sequence are read per record); the stored CRCs and lengths are then gathered and
    every CRC checked in one numpy batch. With ``skip_corrupt`` a bad record followed by valid
    ones is noted in ``corrupt`` and the scan resumes at the next valid record."""
    import numpy as np
    result = ScanResult()
    offset = FILE_HEADER_SIZE
    expected = 1
    header_size = RECORD_HEADER_SIZE
    limit = size - header_size
    words = np.frombuffer(buffer, dtype="<u4", count=size // 4)
    u32 = memoryview(buffer)[:size - size % 4].cast("I")     # native = little-endian on x86-64
    while True:
        # 1. walk the chain of lengths until a zero sequence field (the end, or garbage): the one
        #    loop that must be Python, kept to an index, an add and an append per record.
        offsets: list[int] = []
        append = offsets.append
        start_expected = expected
        while offset <= limit:
            i = offset >> 2
            if not (u32[i + 2] or u32[i + 3]):
                break
            append(offset)
            offset += (header_size + 7 + u32[i + 1]) & ~7
        walked_to = offset
        # 2. check every header at once: sequence numbers 1, 2, 3..., plausible lengths, then CRCs.
        problem = ""
        good = len(offsets)
        if offsets:
            at = np.array(offsets, dtype=np.int64)
            lengths = words[(at >> 2) + 1].astype(np.int64)
            sequences = words[(at >> 2) + 2].astype(np.uint64) | (words[(at >> 2) + 3].astype(np.uint64) << 32)
            wanted = np.arange(start_expected, start_expected + len(offsets), dtype=np.uint64)
            broken = (sequences != wanted) | (lengths > MAX_PAYLOAD) | (at + header_size + lengths > size)
            bad = np.flatnonzero(broken)
            if bad.size:
                good = int(bad[0])
                k = good
                problem = (f"sequence {int(sequences[k])} where {int(wanted[k])} was due" if sequences[k] != wanted[k]
                           else f"implausible header (length {int(lengths[k])})")
            if good:
                computed = _crc.crc32c_batch(buffer, at[:good] + 4, lengths[:good] + (header_size - 4))
                bad = np.flatnonzero(computed != words[at[:good] >> 2])
                if bad.size:
                    good = int(bad[0])
                    problem = "CRC mismatch"
            result.offsets.extend(offsets[:good])
            result.lengths.extend(lengths[:good].tolist())
        if good == len(offsets) and walked_to <= limit and u32[(walked_to >> 2)]:
            problem = "a record with sequence 0"
        elif good == len(offsets) and limit < walked_to < size:
            problem = "record header cut off by the end of the file"
        offset = walked_to
        expected = start_expected + len(offsets)
        end = offsets[good] if good < len(offsets) else offset
        expected = expected - (len(offsets) - good)
        result.end = end
        garbage_end = _last_nonzero(buffer, end, size)
        if garbage_end <= end:
            result.problem = ""                             # zeros from here on: a clean end
            result.garbage_end = 0
            u32.release()
            return result
        resync = _find_valid_after(buffer, end, garbage_end, size, expected - 1)
        if resync is None:
            result.problem = problem or "non-zero bytes after the last record"
            result.garbage_end = garbage_end
            u32.release()
            return result
        resync_offset, resync_sequence = resync
        result.corrupt.append((end, expected, problem or "unreadable record"))
        if not skip_corrupt:
            result.problem = problem or "unreadable record"
            result.garbage_end = garbage_end
            u32.release()
            return result
        offset, expected = resync_offset, resync_sequence


def read_file_header(buffer) -> dict:
    magic, version, header_size, file_size, created_ns, day = _FILE_HEADER.unpack_from(buffer, 0)
    (crc,) = _CRC.unpack_from(buffer, _FILE_HEADER_CRC_OFFSET)
    return {"magic": magic, "version": version, "header_size": header_size, "file_size": file_size,
            "created_ns": created_ns, "trading_day": day,
            "crc_ok": crc == _crc.crc32c(bytes(buffer[:_FILE_HEADER.size]))}


def _check_file_header(path: str, buffer) -> dict:
    header = read_file_header(buffer)
    if header["magic"] != MAGIC:
        raise JournalError(f"{path}: not an OMS journal (magic {header['magic']!r})")
    if header["version"] != VERSION or header["header_size"] != FILE_HEADER_SIZE:
        raise JournalError(f"{path}: journal version {header['version']} (header {header['header_size']} bytes); "
                           f"this OMS reads version {VERSION}")
    if not header["crc_ok"]:
        raise JournalError(f"{path}: the journal's file header fails its CRC")
    return header


LIVE_READ_ATTEMPTS = 5


def read_records(path: str, *, skip_corrupt: bool = True) -> tuple[list[JournalRecord], ScanResult, dict]:
    """Every valid record of a journal file, read-only (nothing is truncated): the audit export.

    The OMS may be appending to the file meanwhile: a record caught half-written looks corrupt
    with whole records after it. Such a read is taken again (a corrupt record on disk stays
    corrupt; one in progress is whole the next time), so the records returned are the journal
    as it was at one moment, unless the file really is corrupt."""
    for attempt in range(LIVE_READ_ATTEMPTS):
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < FILE_HEADER_SIZE:
                raise JournalError(f"{path}: {size} bytes is too short for a journal")
            with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mm:
                header = _check_file_header(path, mm)
                found = scan(mm, size, skip_corrupt=skip_corrupt)
                records = [_record_at(mm, offset) for offset in found.offsets]
        if not found.corrupt or attempt == LIVE_READ_ATTEMPTS - 1:
            return records, found, header
        first_bad = found.corrupt[0][0]
        if not any(offset > first_bad for offset in found.offsets):
            return records, found, header          # only the tail: what a live or torn journal ends with
    return records, found, header


def _record_at(buffer, offset: int) -> JournalRecord:
    _crc_value, length, sequence, timestamp, rtype, _reserved = RECORD_HEADER.unpack_from(buffer, offset)
    start = offset + RECORD_HEADER_SIZE
    return JournalRecord(sequence, timestamp, rtype, bytes(buffer[start:start + length]), offset)


# ------------------------------------------------------------------ the writer

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
        self._sync_lock = threading.Lock()
        self._address = 0
        self._anchor = None
        if _RAW_CRC is not None:
            self._anchor = (ctypes_char_from_buffer(mm))
            self._address = _address_of(self._anchor)
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
                header = _write_file_header(mm, size, now_ns)
                mm.flush(0, FILE_HEADER_SIZE)
                _fsync_directory(directory)
            else:
                header = _check_file_header(path, mm)
                if header["file_size"] != size:
                    header = _write_file_header(mm, size, header["created_ns"], header["trading_day"])
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
            yield _record_at(mm, offset)

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
    def healthy(self) -> bool:
        return not self.failed

    # ---- appending (the hot path)

    def append(self, record_type: int, payload, timestamp_ns: int, reserve: bool = False) -> int:
        """Write one record; returns its sequence. Raises ``JournalError`` when it cannot (and,
        for a sync error or a new order that does not fit, marks the journal failed)."""
        length = len(payload)
        offset = self._tail
        if _fast_append is not None and not self._closed and length <= MAX_PAYLOAD and \
                offset + RECORD_HEADER_SIZE + length <= (self.size if reserve else self._orders_limit):
            # the common case in one C call and no other Python call: claim and _sealed inlined
            sequence = self.next_sequence
            end = _fast_append(self._mm, offset, record_type, sequence, timestamp_ns, payload)
            self._tail = (end + 7) & ~7
            self.next_sequence = sequence + 1
            self.appends += 1
            if self.durability == "per_event":
                self._sync_range(offset, end)
            else:
                self._dirty = True
            return sequence
        offset = self.claim(length, reserve)           # closed, too big or full: raises with the reason
        start = offset + RECORD_HEADER_SIZE
        mm = self._mm
        _BODY.pack_into(mm, offset + 4, length, self.next_sequence, timestamp_ns, record_type, 0)
        mm[start:start + length] = payload
        return self.seal(offset, length)

    def claim(self, length: int, reserve: bool = False) -> int:
        """Room for a record with ``length`` payload bytes: its offset in ``buffer``. The caller
        writes everything after the CRC field (``RECORD_BODY`` then the payload, with sequence
        ``next_sequence``) and then calls ``seal``. The zero-copy path of the hot loop."""
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        offset = self._tail
        if offset + RECORD_HEADER_SIZE + length > (self.size if reserve else self._orders_limit) \
                or length > MAX_PAYLOAD:
            if length > MAX_PAYLOAD:
                raise JournalError(f"record of {length} bytes exceeds the {MAX_PAYLOAD}-byte payload limit")
            if not reserve:
                self.fail(f"journal full: {self.size - offset} bytes left, the last "
                          f"{self.size - self._orders_limit} reserved for venue messages and cancels")
            raise JournalFull(f"{self.path}: journal full at offset {offset}")
        return offset

    def seal(self, offset: int, length: int) -> int:
        """Checksum the claimed record at ``offset`` and make it part of the journal; its sequence."""
        end = offset + RECORD_HEADER_SIZE + length
        address = self._address
        if address:
            crc = _RAW_CRC(0xFFFFFFFF, address + offset + 4, end - offset - 4) ^ 0xFFFFFFFF
        else:
            crc = _crc.crc32c(memoryview(self._mm)[offset + 4:end])
        _pack_crc(self._mm, offset, crc)
        return self._sealed(offset, end)

    def _sealed(self, offset: int, end: int) -> int:
        """The record ``[offset, end)`` is written and checksummed: it is part of the journal now."""
        self._tail = (end + 7) & ~7
        sequence = self.next_sequence
        self.next_sequence = sequence + 1
        self.appends += 1
        if self.durability == "per_event":
            self._sync_range(offset, end)
        else:
            self._dirty = True
        return sequence

    @property
    def buffer(self):
        """The mapped file, for ``claim``/``seal`` writers."""
        return self._mm

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
        self._anchor = None
        self._address = 0
        try:
            self._mm.close()
        finally:
            os.close(self._fd)


class _GroupCommitter(threading.Thread):
    """Group commit: ``fdatasync`` every interval when something was appended (it releases the
    GIL, so the OMS's duty cycle never waits for the disk)."""

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

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# ------------------------------------------------------------------ helpers

def _write_file_header(mm, size: int, created_ns: int, day: int | None = None) -> dict:
    day = trading_day_of(created_ns) if day is None else day
    _FILE_HEADER.pack_into(mm, 0, MAGIC, VERSION, FILE_HEADER_SIZE, size, created_ns, day)
    _CRC.pack_into(mm, _FILE_HEADER_CRC_OFFSET, _crc.crc32c(bytes(mm[:_FILE_HEADER.size])))
    return read_file_header(mm)


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


def ctypes_char_from_buffer(mm):
    import ctypes
    return ctypes.c_char.from_buffer(mm)


def _address_of(anchor) -> int:
    import ctypes
    return ctypes.addressof(anchor)


def archive_name(path: str, day: int) -> str:
    """Where a previous day's journal goes when a new day starts."""
    base = f"{path}.{day}"
    candidate, n = base, 1
    while os.path.exists(candidate):
        candidate = f"{base}.{n}"
        n += 1
    return candidate


def journal_day(path: str) -> int | None:
    """The trading day in an existing journal's header (None: no journal, or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(FILE_HEADER_SIZE)
    except OSError:
        return None
    if len(head) < _FILE_HEADER.size + 4 or head[:8] != MAGIC:
        return None
    return _FILE_HEADER.unpack_from(head, 0)[5]
