"""The OMS journal's bytes: the file header, the record header, and reading them back.

File: a 4 KiB header (``FILE_HEADER``: magic ``APPLOMSJ``, version, header size, file size,
creation time, trading day, the hash of the record shapes ``events.RECORDS_HASH``, and the
CRC-32C of the bytes before it), then records at 8-byte aligned offsets until a zero header::

    crc32c      u32   CRC-32C of every byte of the record after this field (length .. payload)
    length      u32   payload bytes
    sequence    u64   1, 2, 3, ... (no gaps)
    timestamp   u64   epoch ns (time.time_ns()) when appended
    type        u16   record type (events.RecordType: ORDER_SENT, EXCHANGE_MESSAGE, ...)
    reserved    u16   0
    payload     length bytes (its shape: events.RECORDS[type]), then zeros up to the next multiple of 8

``RECORD_HEADER`` declares that header once: the C append (``journal.py``) is given its offsets,
the scan reads its words from them. A record is valid only once it is complete: the writer
writes length .. payload first and the CRC last.

The scan (``scan``: open, audit, bench) checks every CRC (``crc32c_batch``) and finds the end:

- a torn or corrupt tail (a record cut short by a crash, garbage after the last good record, a
  bad CRC with nothing valid after it) is the end; the appender zeroes it out with a warning;
- a bad record *followed by valid records* (a flipped bit in the middle) is not a tail: dropping
  what follows could forget sent orders and reuse their tokens, so the appender's ``open``
  raises ``JournalCorruptError`` naming the offset and sequence, and the OMS does not start.
  ``scan`` with ``skip_corrupt=True`` (the audit export) reads past it.

A journal of other record shapes is refused (``JournalError``), never misread. A version-1 file
(before the header carried the hash: the same fields up to the trading day, its CRC right after)
holds the records whose hash is ``V1_RECORDS_HASH``; it is read as such while those are still the
shapes, so an upgrade in the middle of a day recovers that day's journal (the appender rewrites
its header as version 2 when it grows the file). A journal of the shapes before the ORDER_SENT
carried the OUCH flags (``journal_records.EARLIER_RECORDS_HASHES``) is read too: its ORDER_SENTs
are told apart by their length (``journal_records.parse_order_sent``), so the OMS appends today's
shape after them. ``journal_day`` reads only the trading day, whose place every version keeps.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from appliance.oms import crc32c as _crc
from appliance.oms.journal_records import EARLIER_RECORDS_HASHES, RECORDS_HASH
from appliance.oms.journal_schema import JournalSchema
from appliance.runtime.trading_day import trading_day_of

MAGIC = b"APPLOMSJ"
VERSION = 2                      # 2: the header carries the records' hash (1 had none)
V1_RECORDS_HASH = 0x8D8B3E97354842DF  # the shapes every version-1 journal was written with
FILE_HEADER_SIZE = 4096
FILE_HEADER = JournalSchema("FileHeader", fields=[
    ("magic", "char8"),
    ("version", "u32"),
    ("header_size", "u32"),
    ("file_size", "u64"),
    ("created_ns", "u64"),
    ("trading_day", "u32"),
    ("records_hash", "u64"),     # events.RECORDS_HASH of the OMS that created the file
    ("crc", "u32"),              # CRC-32C of the header's bytes before this field
])
_FILE_HEADER_CRC_OFFSET = FILE_HEADER.offset_of["crc"]
_V1_CRC_OFFSET = FILE_HEADER.offset_of["records_hash"]     # version 1 ended at the trading day
RECORD_HEADER = JournalSchema("RecordHeader", fields=[
    ("crc", "u32"),              # of every byte after this field, to the end of the payload
    ("length", "u32"),
    ("sequence", "u64"),
    ("timestamp_ns", "u64"),
    ("type", "u16"),
    ("reserved", "u16"),
])
RECORD_HEADER_SIZE = RECORD_HEADER.size           # 28
_RECORD_HEADER_UNPACK = RECORD_HEADER.struct.unpack_from   # (crc, length, sequence, timestamp_ns, type, reserved)
assert list(RECORD_HEADER.fields) == ["crc", "length", "sequence", "timestamp_ns", "type", "reserved"]
CRC_FROM = RECORD_HEADER.offset_of["crc"] + RECORD_HEADER.size_of["crc"]    # where a record's CRC starts
# the scan's 32-bit words of a record header
_CRC_WORD = RECORD_HEADER.offset_of["crc"] >> 2
_LENGTH_WORD = RECORD_HEADER.offset_of["length"] >> 2
_SEQUENCE_WORD = RECORD_HEADER.offset_of["sequence"] >> 2
assert RECORD_HEADER.offset_of["crc"] == 0 and all(RECORD_HEADER.offset_of[f] % 4 == 0 for f in ("length", "sequence"))
MAX_PAYLOAD = 4096
MAX_RECORD_SIZE = (RECORD_HEADER_SIZE + MAX_PAYLOAD + 7) & ~7


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
    """One record as read back (recovery, audit)."""
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
    header = RECORD_HEADER.parse(buffer, offset)
    length, sequence = header.length, header.sequence
    if length > MAX_PAYLOAD or header.reserved or offset + RECORD_HEADER_SIZE + length > size:
        return None
    if sequence == 0 or (expected_sequence is not None and sequence != expected_sequence):
        return None
    return length, sequence, header.crc


def _crc_ok(buffer, offset: int, length: int, stored: int) -> bool:
    end = offset + RECORD_HEADER_SIZE + length
    return _crc.crc32c(memoryview(buffer)[offset + CRC_FROM:end]) == stored


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


def _whole_record_at(buffer, offset: int, size: int, expected: int) -> bool:
    """A record numbered ``expected`` with a good header and CRC starts at ``offset``."""
    if offset + RECORD_HEADER_SIZE > size:
        return False
    found = _header_ok(buffer, offset, size, expected)
    return found is not None and _crc_ok(buffer, offset, found[0], found[2])


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
    sequence_word, length_word = _SEQUENCE_WORD, _LENGTH_WORD
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
            if not (u32[i + sequence_word] or u32[i + sequence_word + 1]):
                break
            append(offset)
            offset += (header_size + 7 + u32[i + length_word]) & ~7
        walked_to = offset
        # 2. check every header at once: sequence numbers 1, 2, 3..., plausible lengths, then CRCs.
        problem = ""
        good = len(offsets)
        if offsets:
            at = np.array(offsets, dtype=np.int64)
            lengths = words[(at >> 2) + _LENGTH_WORD].astype(np.int64)
            sequences = (words[(at >> 2) + _SEQUENCE_WORD].astype(np.uint64)
                         | (words[(at >> 2) + _SEQUENCE_WORD + 1].astype(np.uint64) << 32))
            wanted = np.arange(start_expected, start_expected + len(offsets), dtype=np.uint64)
            broken = (sequences != wanted) | (lengths > MAX_PAYLOAD) | (at + header_size + lengths > size)
            bad = np.flatnonzero(broken)
            if bad.size:
                good = int(bad[0])
                k = good
                problem = (f"sequence {int(sequences[k])} where {int(wanted[k])} was due" if sequences[k] != wanted[k]
                           else f"implausible header (length {int(lengths[k])})")
            if good:
                computed = _crc.crc32c_batch(buffer, at[:good] + CRC_FROM, lengths[:good] + (header_size - CRC_FROM))
                bad = np.flatnonzero(computed != words[(at[:good] >> 2) + _CRC_WORD])
                if bad.size:
                    good = int(bad[0])
                    problem = "CRC mismatch"
            result.offsets.extend(offsets[:good])
            result.lengths.extend(lengths[:good].tolist())
        if good == len(offsets) and walked_to <= limit and u32[(walked_to >> 2) + _CRC_WORD]:
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
        if _whole_record_at(buffer, end, size, expected):
            offset = end            # whole now: written since the walk looked (a live journal, scanned by the
            continue                # drop copy while the OMS writes): records, not garbage; walk on
        resync_offset, resync_sequence = resync
        result.corrupt.append((end, expected, problem or "unreadable record"))
        if not skip_corrupt:
            result.problem = problem or "unreadable record"
            result.garbage_end = garbage_end
            u32.release()
            return result
        offset, expected = resync_offset, resync_sequence


def read_file_header(buffer) -> dict:
    """The file header's fields (``FILE_HEADER``) and ``crc_ok``."""
    header = FILE_HEADER.parse(buffer)._asdict()
    crc_offset = _FILE_HEADER_CRC_OFFSET
    if header["version"] == 1:
        crc_offset = _V1_CRC_OFFSET
        header["crc"] = int.from_bytes(buffer[crc_offset:crc_offset + 4], "little")
        header["records_hash"] = V1_RECORDS_HASH
    header["crc_ok"] = header["crc"] == _crc.crc32c(bytes(buffer[:crc_offset]))
    return header


def check_file_header(path: str, buffer) -> dict:
    """The header of a journal this OMS can read, or ``JournalError`` saying why not."""
    header = read_file_header(buffer)
    if header["magic"] != MAGIC:
        raise JournalError(f"{path}: not an OMS journal (magic {header['magic']!r})")
    if header["version"] not in (1, VERSION) or header["header_size"] != FILE_HEADER_SIZE:
        raise JournalError(f"{path}: journal version {header['version']} (header {header['header_size']} bytes); "
                           f"this OMS reads version {VERSION}")
    if not header["crc_ok"]:
        raise JournalError(f"{path}: the journal's file header fails its CRC")
    if header["records_hash"] != RECORDS_HASH and header["records_hash"] not in EARLIER_RECORDS_HASHES:
        raise JournalError(f"{path}: the journal's records have other shapes (hash {header['records_hash']:#018x}; "
                           f"this OMS reads {RECORDS_HASH:#018x}): read it with the version that wrote it")
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
                header = check_file_header(path, mm)
                found = scan(mm, size, skip_corrupt=skip_corrupt)
                records = [record_at(mm, offset) for offset in found.offsets]
        if not found.corrupt or attempt == LIVE_READ_ATTEMPTS - 1:
            return records, found, header
        first_bad = found.corrupt[0][0]
        if not any(offset > first_bad for offset in found.offsets):
            return records, found, header          # only the tail: what a live or torn journal ends with
    return records, found, header


def read_from(buffer, size: int, offset: int, expected: int, limit: int) -> tuple[list[JournalRecord], int, str]:
    """Up to ``limit`` whole records from ``offset`` on, the first numbered ``expected``: a live
    journal's tail, read while the OMS appends (the drop copy). Returns the records, the offset
    after them and why it stopped ("" at the end: a zero header or the end of the file). A record
    that fails its header or CRC check stops the read with the reason: it may be one the OMS is
    writing now (CRC last), so the caller decides, with ``valid_after``, whether it is corrupt."""
    records: list[JournalRecord] = []
    append, unpack, crc32c, header_size = records.append, _RECORD_HEADER_UNPACK, _crc.crc32c, RECORD_HEADER_SIZE
    with memoryview(buffer) as view:       # each header unpacked once (the drop copy reads every record live)
        while len(records) < limit and offset + header_size <= size:
            crc, length, sequence, timestamp_ns, kind, reserved = unpack(buffer, offset)
            if sequence == 0 and crc == 0 and length == 0:
                return records, offset, ""
            end = offset + header_size + length
            if length > MAX_PAYLOAD or reserved or end > size or sequence != expected:
                return records, offset, f"implausible header (sequence {sequence}, length {length})"
            if crc32c(view[offset + CRC_FROM:end]) != crc:
                return records, offset, "CRC mismatch"
            append(JournalRecord(sequence, timestamp_ns, kind, bytes(view[offset + header_size:end]), offset))
            offset = (end + 7) & ~7
            expected = sequence + 1
    return records, offset, ""


def whole_from(buffer, size: int, offset: int, expected: int, limit: int) -> tuple[int, int]:
    """(offset after, sequence due after) the whole records ``read_from`` would return from there,
    without making them (the drop copy's lag: how many records are behind, not what they say)."""
    unpack, crc32c, header_size = _RECORD_HEADER_UNPACK, _crc.crc32c, RECORD_HEADER_SIZE
    with memoryview(buffer) as view:
        while limit > 0 and offset + header_size <= size:
            crc, length, sequence, _, _, reserved = unpack(buffer, offset)
            end = offset + header_size + length
            if length > MAX_PAYLOAD or reserved or end > size or sequence != expected \
                    or crc32c(view[offset + CRC_FROM:end]) != crc:
                break                     # the end (a zero header), or a record not whole
            offset, expected, limit = (end + 7) & ~7, sequence + 1, limit - 1
    return offset, expected


def valid_after(buffer, offset: int, size: int, after_sequence: int):
    """(offset, sequence) of the first CRC-valid record numbered after ``after_sequence`` within
    one record's reach after ``offset`` (where the record after a bad one must start), or None:
    a bad record followed by a valid one is corrupt, a bad last record may be in progress."""
    return _find_valid_after(buffer, offset, min(size, offset + MAX_RECORD_SIZE + 8), size, after_sequence)


def record_at(buffer, offset: int) -> JournalRecord:
    """The record whose header is at ``offset`` (found valid by ``scan``)."""
    header = RECORD_HEADER.parse(buffer, offset)
    start = offset + RECORD_HEADER_SIZE
    return JournalRecord(header.sequence, header.timestamp_ns, header.type,
                         bytes(buffer[start:start + header.length]), offset)


def write_file_header(mm, size: int, created_ns: int, day: int | None = None) -> dict:
    """Write this version's file header (the appender, at creation and when the file grew)."""
    day = trading_day_of(created_ns) if day is None else day
    fields = FILE_HEADER.pack(MAGIC, VERSION, FILE_HEADER_SIZE, size, created_ns, day, RECORDS_HASH)
    crc = _crc.crc32c(fields[:_FILE_HEADER_CRC_OFFSET])
    mm[:FILE_HEADER.size] = fields[:_FILE_HEADER_CRC_OFFSET] + crc.to_bytes(4, "little")
    return read_file_header(mm)


def journal_day(path: str) -> int | None:
    """The trading day in an existing journal's header (None: no journal, or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(FILE_HEADER_SIZE)
    except OSError:
        return None
    if len(head) < FILE_HEADER.size or head[:len(MAGIC)] != MAGIC:
        return None
    return FILE_HEADER.parse(head).trading_day
