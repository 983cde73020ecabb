"""The exchange's records: the OUCH log's bytes as its docstring states them, read back, a torn tail left out."""
from __future__ import annotations

import pytest

from appliance.exchange.records import INBOUND, OUTBOUND, OUCH_LOG_HEADER, OuchLogRecord, Records, read_ouch_log
from appliance.wire.errors import WireFormatError


def test_ouch_log_record_is_length_direction_timestamp_message(tmp_path):
    records = Records(tmp_path, ["ALGO1"])
    records.ouch("ALGO1", INBOUND, 7, b"X" + b"T1".ljust(14) + b"\x00\x00\x00\x00")
    records.ouch("ALGO1", OUTBOUND, 2**64 - 1, b"S" + b"\x00" * 8 + b"S")
    records.ouch("NOBODY", INBOUND, 1, b"ignored")              # a firm without a log: nothing written
    records.close()
    data = (tmp_path / "ouch-ALGO1.log").read_bytes()
    first = b"\x00\x1c" + b"I" + (7).to_bytes(8, "big") + b"X" + b"T1".ljust(14) + b"\x00\x00\x00\x00"
    second = b"\x00\x13" + b"O" + b"\xff" * 8 + b"S" + b"\x00" * 8 + b"S"
    assert data == first + second
    assert OUCH_LOG_HEADER.size == 11
    assert list(read_ouch_log(tmp_path / "ouch-ALGO1.log")) == [
        OuchLogRecord("I", 7, first[11:]), OuchLogRecord("O", 2**64 - 1, second[11:])]


@pytest.mark.parametrize("cut", [1, 2, 10, 11, 14])
def test_a_torn_last_record_is_left_out(tmp_path, cut):
    good = b"\x00\x0a" + b"I" + (5).to_bytes(8, "big") + b"M"
    path = tmp_path / "ouch-F.log"
    path.write_bytes(good + (b"\x00\x0d" + b"O" + (6).to_bytes(8, "big") + b"ABCD")[:cut])
    assert list(read_ouch_log(path)) == [OuchLogRecord("I", 5, b"M")]


def test_a_length_shorter_than_the_header_ends_the_log_and_a_bad_direction_is_an_error(tmp_path):
    path = tmp_path / "ouch-F.log"
    path.write_bytes(b"\x00\x08" + b"I" + b"\x00" * 8 + b"M")
    assert list(read_ouch_log(path)) == []
    path.write_bytes(b"\x00\x0a" + b"I" + b"\x00" * 8 + b"M" + b"\x00\x0a" + b"Q" + b"\x00" * 8 + b"M")
    with pytest.raises(WireFormatError) as info:
        list(read_ouch_log(path))
    assert info.value.offset == 12 + 2          # the direction byte of the second record
