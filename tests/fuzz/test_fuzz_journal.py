"""The OMS journal read back after damage: ``JournalError`` or a counted truncation, never another exception.

A valid journal (every record type the OMS writes) is damaged the ways a disk and a crash
can: flipped bits and bytes in the records and the file header, a file cut anywhere, zeroed
or duplicated ranges, records moved, and "CRC-valid garbage" (a record's fields or payload
changed and its CRC recomputed, as a buggy writer or another version would leave it). Then:

- ``scan`` (both modes) never raises and reports a consistent end;
- ``read_records`` (the audit export) gives the valid records or ``JournalError``; the audit
  trail and recovery (``rebuild``) turn whatever records it gives into rows and state;
- ``Journal.open`` (the OMS at start) gives ``JournalError`` (a bad header, a corrupt record
  with valid ones after it) or opens, counting what it truncated; appending to what it
  opened and opening again then finds exactly one more record and nothing to truncate.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile

import pytest

from appliance.oms import journal_records as jr
from appliance.oms import crc32c
from appliance.oms.audit import AuditTrail
from appliance.oms.journal_records import ControlKind, RecordType, SessionEvent
from appliance.oms.journal import Journal
from appliance.oms.journal_format import (
    CRC_FROM, FILE_HEADER_SIZE, MAX_RECORD_SIZE, RECORD_HEADER, RECORD_HEADER_SIZE, JournalError, padded,
    read_file_header, read_records, record_at, scan,
)
from appliance.oms.recovery import rebuild
from appliance.wire import ouch

import fuzzkit

THIS = "tests/fuzz/test_fuzz_journal.py"
SYMBOLS = ["AAPL", "MSFT"]
MIN_SIZE = FILE_HEADER_SIZE + 16 * MAX_RECORD_SIZE
T0 = 1_764_000_000_000_000_000


def _payloads() -> list[tuple[int, bytes]]:
    token, token2 = b"AB0000000001  ", b"AB0000000002  "
    accepted = ouch.encode_outbound({"type": "A", "timestamp": 5, "order_token": token.decode(),
                                     "buy_sell_indicator": "B", "shares": 300, "stock": "AAPL", "price": 1_900_000,
                                     "time_in_force": 99998, "firm": "ALGO", "display": "Y",
                                     "order_reference_number": 9, "capacity": "P",
                                     "intermarket_sweep_eligibility": "N", "minimum_quantity": 0, "cross_type": "N",
                                     "order_state": "L", "bbo_weight_indicator": " "})
    executed = ouch.encode_outbound({"type": "E", "timestamp": 6, "order_token": token.decode(),
                                     "executed_shares": 100, "execution_price": 1_900_000, "liquidity_flag": "A",
                                     "match_number": 77})
    return [
        (RecordType.SESSION, jr.SESSION.pack(SessionEvent.START, prefix=3, counter=1)),
        (RecordType.SESSION, jr.SESSION.pack(SessionEvent.LOGIN_ACCEPTED, session=b"SESS1", sequence=1)),
        (RecordType.ORDER_SENT, jr.ORDER_SENT.pack(1, ord("B"), 0, 99998, 11, 0, 7, 0, 300, 1_900_000, b"AAPL    ",
                                                   token)),
        (RecordType.ORDER_SENT, jr.ORDER_SENT.pack(1, ord("S"), 0, 0, 12, 0, 7, 1, 200, 4_200_000, b"MSFT    ",
                                                   token2)),
        (RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(1, accepted)),
        (RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(2, executed)),
        (RecordType.ORDER_SENT, jr.ORDER_SENT.pack(2, ord("B"), 0, 99998, 13, 11, 7, 0, 300, 1_900_100, b"AAPL    ",
                                                   b"AB0000000003  ", token)),
        (RecordType.ORDER_SENT, jr.ORDER_SENT.pack(3, ord("S"), 1, 0, 14, 12, 7, 1, 0, 0, b"MSFT    ", token2)),
        (RecordType.REJECTED_LOCALLY, jr.REJECTED_LOCALLY.pack(1, ord("B"), 3, 0, 15, 0, 7, 0, 100, 1, b"AAPL    ")),
        (RecordType.CONTROL, jr.CONTROL.pack(ControlKind.GATE_CHANGED, 1, 0, 4)),
        (RecordType.CONTROL, jr.CONTROL.pack(ControlKind.CANCEL_ALL, 2, 2, 1, b"op", b"gate closed")),
        (RecordType.SESSION, jr.SESSION.pack(SessionEvent.DISCONNECTED)),
        (99, b"a future record type"),
    ]


def _valid_image(directory: str, records: int) -> bytes:
    path = os.path.join(directory, "seed.bin")
    journal = Journal.open(path, MIN_SIZE, "page_cache", now_ns=T0)
    payloads = _payloads()
    for i in range(records):
        kind, payload = payloads[i % len(payloads)]
        journal.append(kind, payload, T0 + i)
    journal.close()
    with open(path, "rb") as f:
        image = f.read()
    os.unlink(path)
    return image


def _get(image, offset: int, field: str) -> int:
    """A field of the record header at ``offset`` (RECORD_HEADER says where and how wide)."""
    at = offset + RECORD_HEADER.offset_of[field]
    return int.from_bytes(image[at:at + RECORD_HEADER.size_of[field]], "little")


def _put(image: bytearray, offset: int, field: str, value: int) -> None:
    at, width = offset + RECORD_HEADER.offset_of[field], RECORD_HEADER.size_of[field]
    image[at:at + width] = value.to_bytes(width, "little")


def _reseal(image: bytearray, offset: int) -> None:
    """Recompute the CRC of the record at ``offset`` (if its header still describes one that fits)."""
    if offset + RECORD_HEADER_SIZE > len(image):
        return
    end = offset + RECORD_HEADER_SIZE + _get(image, offset, "length")
    if end <= len(image):
        _put(image, offset, "crc", crc32c.crc32c(bytes(image[offset + CRC_FROM:end])))


def damage(rng: random.Random, image: bytes) -> bytes:
    out = bytearray(image)
    found = scan(out, len(out))
    end, offsets = found.end, found.offsets
    for _ in range(rng.choice((1, 1, 2, 3))):
        roll = rng.randrange(10)
        if roll <= 2:                                  # bytes of the records (or just past them)
            at = rng.randrange(FILE_HEADER_SIZE, max(end + 64, FILE_HEADER_SIZE + 1))
            width = rng.choice((1, 1, 2, 4, 8))
            for k in range(width):
                if at + k < len(out):
                    out[at + k] = rng.randrange(256) if rng.random() < 0.5 else out[at + k] ^ (1 << rng.randrange(8))
        elif roll == 3:                                # the file cut anywhere (a crash, a full disk)
            del out[rng.choice((rng.randrange(len(out) + 1), rng.randrange(FILE_HEADER_SIZE, end + 1))):]
        elif roll == 4 and offsets:                    # CRC-valid garbage in one record
            offset = rng.choice(offsets)
            if offset + RECORD_HEADER_SIZE > len(out):
                continue
            field = rng.choice(("type", "length", "sequence", "payload", "payload", "reserved"))
            if field == "type":
                _put(out, offset, "type", rng.choice((0, 1, 2, 3, 4, 5, 6, 0xFFFF)))
            elif field == "length":
                _put(out, offset, "length", rng.choice((0, 1, 7, 8, 100, 4096, 4097, 1 << 31)))
            elif field == "sequence":
                _put(out, offset, "sequence", rng.choice((0, 1, 2, 1 << 63, (1 << 64) - 1)))
            elif field == "reserved":
                _put(out, offset, "reserved", 1)
            else:
                length = _get(out, offset, "length")
                start = offset + RECORD_HEADER_SIZE
                payload = fuzzkit.mutate_bytes(rng, bytes(out[start:start + length]), ops=rng.randint(1, 3))
                out[start:start + length] = payload[:length].ljust(length, b"\0")
                if rng.random() < 0.3:                 # and a shorter length claimed for it
                    _put(out, offset, "length", rng.randrange(length + 1))
            _reseal(out, offset)
        elif roll == 5 and offsets:                    # a record zeroed, or copied over another
            a, b = rng.choice(offsets), rng.choice(offsets)
            if a + RECORD_HEADER_SIZE > len(out) or b >= len(out):
                continue
            size = min(padded(RECORD_HEADER_SIZE + _get(out, a, "length")), len(out) - a)
            if rng.random() < 0.5:
                out[a:a + size] = bytes(size)
            else:
                out[b:b + size] = out[a:a + size]
        elif roll == 6:                                # garbage after the last record
            at = end + rng.choice((0, 8, 64, 4000))
            out[at:at + 16] = rng.randbytes(16)
        elif roll == 7:                                # the file header
            at = rng.randrange(40)
            out[at] ^= 1 << rng.randrange(8)
        elif roll == 8:                                # a range of the records zeroed
            at = rng.randrange(FILE_HEADER_SIZE, max(end, FILE_HEADER_SIZE + 1))
            out[at:at + rng.randint(1, 64)] = bytes(len(out[at:at + rng.randint(1, 64)]))
        else:                                          # the record region shifted by a few bytes
            at = rng.randrange(FILE_HEADER_SIZE, max(end, FILE_HEADER_SIZE + 1))
            shift = rng.choice((1, 4, 8, 16))
            out[at:at] = bytes(shift)
            del out[len(image):]
    return bytes(out)


def _check_scan(image: bytes):
    """Both modes; returns the skip_corrupt result (what the audit export reads)."""
    buffer = bytearray(image)
    for skip in (False, True):
        found = scan(buffer, len(buffer), skip_corrupt=skip)
        assert FILE_HEADER_SIZE <= found.end <= max(padded(len(buffer)), FILE_HEADER_SIZE), found
        assert found.offsets == sorted(found.offsets) and len(found.offsets) == len(found.lengths)
        assert not found.offsets or found.offsets[-1] < len(buffer)
        assert found.garbage_end == 0 or found.end < found.garbage_end <= len(buffer), found
        if not skip:
            assert not found.offsets or found.offsets[-1] < found.end
    return found


@pytest.fixture(scope="module")
def workdir():
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None     # msync and fallocate cost nothing there
    directory = tempfile.mkdtemp(prefix="fuzz-journal-", dir=base)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def seeds(workdir):
    return [_valid_image(workdir, 13), _valid_image(workdir, 40), _valid_image(workdir, 1)]


def test_fuzz_journal_scan_audit_recover(seeds):
    """In memory (cheap, so the soak reaches many more shapes): scan in both modes, then what the
    audit export and recovery make of the records scan accepts."""
    def check(image: bytes) -> str:
        found = _check_scan(image)
        buffer = bytearray(image)
        if len(buffer) < FILE_HEADER_SIZE or not read_file_header(buffer)["crc_ok"]:
            return "bad header"
        records = [record_at(buffer, offset) for offset in found.offsets]
        list(AuditTrail(SYMBOLS).rows(records))
        state = rebuild(records, SYMBOLS)
        assert state.records == len(records)
        return "corrupt" if found.corrupt else "torn" if found.garbage_end else "clean"

    fuzzkit.run_cases("journal-scan", 1000, lambda rng: damage(rng, rng.choice(seeds)), check, test_file=THIS,
                      soak_share=0.95)


def test_fuzz_journal_read_and_open(workdir, seeds):
    """The files: read_records (the audit export) and Journal.open (the OMS at start), then an
    append and a second open that must find exactly one more record and nothing to truncate."""
    path = os.path.join(workdir, "journal.bin")

    def check(image: bytes) -> str:
        with open(path, "wb") as f:
            f.write(image)
        try:
            records, found, _header = read_records(path, skip_corrupt=True)
        except JournalError:
            records = None
        if records is not None:
            list(AuditTrail(SYMBOLS).rows(records))
            rebuild(records, SYMBOLS)
        journal = Journal.open(path, MIN_SIZE, "page_cache", now_ns=T0)    # JournalError: expected
        try:
            found = journal.found
            assert journal.truncated_bytes == max(0, found.garbage_end - found.end)
            recovered = journal.recovered_records
            state = rebuild(journal.records(), SYMBOLS)
            assert state.records == recovered
            journal.append(RecordType.SESSION, jr.SESSION.pack(SessionEvent.START, prefix=4), T0 + 10**9, reserve=True)
        finally:
            journal.close()
        again = Journal.open(path, MIN_SIZE, "page_cache", now_ns=T0)      # a clean journal now
        try:
            assert again.recovered_records == recovered + 1 and again.truncated_bytes == 0, (
                again.recovered_records, recovered, again.found)
        finally:
            again.close()
        return "truncated" if journal.truncated_bytes else "clean"

    fuzzkit.run_cases("journal-open", 100, lambda rng: damage(rng, rng.choice(seeds)), check, expected=(JournalError,),
                      test_file=THIS, timeout=20.0, soak_share=0.05)
