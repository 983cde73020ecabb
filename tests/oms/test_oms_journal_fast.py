"""The C record append and CRC-32C agree with the pure-Python definitions, byte for byte."""
from __future__ import annotations

import os
import random

import pytest

from appliance.oms import crc32c as crc
from appliance.oms.journal import RECORD_HEADER, RECORD_HEADER_SIZE

fast = pytest.importorskip("appliance.oms._journal_fast", reason="the C extension is built by setup.py")


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
    stored, length, sequence, timestamp, rtype, reserved = RECORD_HEADER.unpack_from(buffer, 8)
    assert (length, sequence, timestamp, rtype, reserved) == (37, 42, 1_700_000_000_123_456_789, 3, 0)
    assert bytes(buffer[8 + RECORD_HEADER_SIZE:end]) == payload
    assert stored == crc.crc32c_python(bytes(buffer[12:end]))


def test_append_refuses_a_record_past_the_buffer_and_a_read_only_buffer():
    with pytest.raises(ValueError, match="does not fit"):
        fast.append(bytearray(40), 0, 1, 1, 1, b"x" * 20)
    with pytest.raises(TypeError):
        fast.append(bytes(100), 0, 1, 1, 1, b"x")
