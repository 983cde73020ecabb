"""The C record append and CRC-32C agree with the pure-Python definitions, byte for byte."""
from __future__ import annotations

import os
import random

import pytest

from appliance.oms import crc32c as crc
from appliance.oms import journal  # noqa: F401 - gives the extension the record header's layout
from appliance.oms.journal_format import RECORD_HEADER, RECORD_HEADER_SIZE

fast = pytest.importorskip("appliance.oms._journal_fast", reason="the C extension is built by setup.py")
FIELDS = ("crc", "length", "sequence", "timestamp_ns", "type")


def test_crc32c_matches_the_python_definition_and_continues():
    assert fast.crc32c(b"123456789") == crc.CHECK_VALUE
    rng = random.Random(5)
    for size in list(range(0, 40)) + [100, 1000, 4096]:
        data = bytes(rng.randrange(256) for _ in range(size))
        assert fast.crc32c(data) == crc.crc32c_python(data)
        cut = size // 3
        assert fast.crc32c(data[cut:], fast.crc32c(data[:cut])) == crc.crc32c_python(data)
        assert fast.crc32c(memoryview(bytearray(data))[1:]) == crc.crc32c_python(data[1:])   # unaligned


def test_append_writes_the_record_python_would_write():
    buffer = bytearray(256)
    payload = os.urandom(37)
    end = fast.append(buffer, 8, 3, 42, 1_700_000_000_123_456_789, payload)
    assert end == 8 + RECORD_HEADER_SIZE + len(payload)
    header = RECORD_HEADER.parse(buffer, 8)
    assert header[1:] == (37, 42, 1_700_000_000_123_456_789, 3, 0)
    stored = header.crc
    assert bytes(buffer[8 + RECORD_HEADER_SIZE:end]) == payload
    assert stored == crc.crc32c_python(bytes(buffer[12:end]))


def test_append_refuses_a_record_past_the_buffer_and_a_read_only_buffer():
    with pytest.raises(ValueError, match="does not fit"):
        fast.append(bytearray(40), 0, 1, 1, 1, b"x" * 20)
    with pytest.raises(TypeError):
        fast.append(bytes(100), 0, 1, 1, 1, b"x")


def _layout(size, pairs):
    return fast.set_layout(size, pairs)


def _journal_layout():
    return RECORD_HEADER.size, [(RECORD_HEADER.offset_of[f], RECORD_HEADER.size_of[f]) for f in FIELDS]


def test_append_writes_the_header_in_the_layout_it_is_given():
    """Another header shape (fields reordered, other widths, a gap) is written where it says."""
    try:
        _layout(32, [(0, 4), (28, 2), (4, 8), (12, 8), (26, 1)])     # crc, length, sequence, timestamp, type
        buffer = bytearray(128)
        garbage = b"\xee" * 32
        buffer[0:32] = garbage                                        # every byte not a field is written zero
        end = fast.append(buffer, 0, 200, 7, 99, b"abc")
        assert end == 35 and bytes(buffer[32:35]) == b"abc"
        assert int.from_bytes(buffer[28:30], "little") == 3
        assert int.from_bytes(buffer[4:12], "little") == 7 and int.from_bytes(buffer[12:20], "little") == 99
        assert buffer[26] == 200 and bytes(buffer[20:26]) == bytes(6) and buffer[27] == 0 and buffer[30:32] == b"\0\0"
        assert int.from_bytes(buffer[0:4], "little") == crc.crc32c_python(bytes(buffer[4:35]))
        with pytest.raises(ValueError, match="does not fit its field"):
            fast.append(buffer, 40, 256, 1, 1, b"")                   # type 256 in a 1-byte field
    finally:
        _layout(*_journal_layout())
    end = fast.append(bytearray(64), 0, 3, 1, 1, b"x")
    assert end == RECORD_HEADER_SIZE + 1


@pytest.mark.parametrize("size, pairs, message", [
    (28, [(4, 4), (0, 4), (8, 8), (16, 8), (24, 2)], "crc field must be the header's first"),
    (28, [(0, 4), (4, 4), (6, 8), (16, 8), (24, 2)], "overlaps"),
    (28, [(0, 4), (4, 3), (8, 8), (16, 8), (24, 2)], "widths 1, 2, 4, 8"),
    (28, [(0, 4), (4, 4), (8, 8), (16, 8), (27, 2)], "does not fit"),
    (28, [(0, 4), (4, 4), (8, 8), (16, 8)], "five|5"),
    (1000, [(0, 4), (4, 4), (8, 8), (16, 8), (24, 2)], "record header of 1000 bytes"),
])
def test_a_bad_layout_is_refused_and_the_old_one_kept(size, pairs, message):
    with pytest.raises(ValueError, match=message):
        _layout(size, pairs)
    buffer = bytearray(64)
    assert fast.append(buffer, 0, 3, 42, 5, b"") == RECORD_HEADER_SIZE
    assert RECORD_HEADER.parse(buffer).sequence == 42
