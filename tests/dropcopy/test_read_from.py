"""``journal_format.read_from`` (the drop copy's and the standby's live reader, one header unpack
per record) and ``whole_from`` (its count alone, the drop copy's lag) against the plain reading of
the rules (header, then CRC, then the record), over real journals written by the OMS's appender,
then torn, flipped or overwritten at random places."""
from __future__ import annotations

import random

import pytest

from appliance.oms.journal_format import (
    FILE_HEADER_SIZE, RECORD_HEADER, RECORD_HEADER_SIZE, _crc_ok, _header_ok, padded, read_from, record_at,
    whole_from,
)
from dropcopy_rig import JournalWriter


def reference(buffer, size, offset, expected, limit):
    """The rules, one helper each (the reader as first written)."""
    records = []
    while len(records) < limit and offset + RECORD_HEADER_SIZE <= size:
        header = RECORD_HEADER.parse(buffer, offset)
        if header.sequence == 0 and header.crc == 0 and header.length == 0:
            return records, offset, ""
        found = _header_ok(buffer, offset, size, expected)
        if found is None:
            return records, offset, f"implausible header (sequence {header.sequence}, length {header.length})"
        length, sequence, crc = found
        if not _crc_ok(buffer, offset, length, crc):
            return records, offset, "CRC mismatch"
        records.append(record_at(buffer, offset))
        offset += padded(RECORD_HEADER_SIZE + length)
        expected = sequence + 1
    return records, offset, ""


@pytest.mark.parametrize("seed", range(12))
def test_read_from_agrees_with_the_rules_on_damaged_journals(tmp_path, seed):
    rng = random.Random(seed)
    writer = JournalWriter(str(tmp_path / "j.bin"))
    try:
        for n in range(rng.randrange(3, 12)):
            if rng.random() < 0.5:
                writer.order_life()
            else:
                writer.fill("AAPL", "BS"[n % 2], 1 + n, 1_900_000 + n, broken=rng.random() < 0.3)
    finally:
        writer.close()
    clean = (tmp_path / "j.bin").read_bytes()
    records, end, why = read_from(clean, len(clean), FILE_HEADER_SIZE, 1, 1 << 20)
    assert why == "" and len(records) == writer.journal.next_sequence - 1 and end > FILE_HEADER_SIZE
    for trial in range(60):
        image = bytearray(clean)
        damage = rng.choice(("none", "flip", "zero", "tear", "random"))
        at = rng.randrange(FILE_HEADER_SIZE, end)
        if damage == "flip":
            image[at] ^= 1 << rng.randrange(8)
        elif damage == "zero":
            image[at:at + 8] = bytes(8)
        elif damage == "tear":
            image[at:] = bytes(len(image) - at)
        elif damage == "random":
            image[at:at + 8] = rng.randbytes(8)
        size = len(image) if rng.random() < 0.7 else rng.randrange(FILE_HEADER_SIZE, end + 64)
        buffer = bytes(image)
        for expected, limit in ((1, 1 << 20), (1, rng.randrange(1, 8)), (2, 1 << 20)):
            got = read_from(buffer, size, FILE_HEADER_SIZE, expected, limit)
            assert got == reference(buffer, size, FILE_HEADER_SIZE, expected, limit), (seed, trial, damage, at)
            # the lag's count: where read_from stopped, without the records
            assert whole_from(buffer, size, FILE_HEADER_SIZE, expected, limit) == \
                (got[1], got[0][-1].sequence + 1 if got[0] else expected), (seed, trial, damage, at)
            if got[0]:                                   # and on from where it stopped, as the next poll reads
                after = got[0][-1].sequence + 1
                assert read_from(buffer, size, got[1], after, 1 << 20) == reference(buffer, size, got[1], after, 1 << 20)
