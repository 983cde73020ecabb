"""BinaryFILE reader/writer and the ``appliance itch`` command."""
from __future__ import annotations

import io
import json

import pytest

from appliance.cli import main
from appliance.wire import itch
from appliance.wire.dayfile import DayFileReader, DayFileWriter
from appliance.wire.errors import WireFormatError
from wire_testkit import ADD_ORDER, ADD_ORDER_BYTES, BACKENDS, DIRECTORY, EXECUTED, REPLACE, SYSTEM_EVENT, frame


def _day(n_adds: int = 50) -> list[dict]:
    messages = [SYSTEM_EVENT, DIRECTORY, {**DIRECTORY, "stock_locate": 5, "stock": "AAPL"}]
    for i in range(n_adds):
        messages.append({**ADD_ORDER, "order_reference_number": i, "stock_locate": 5 if i % 2 else 1,
                         "stock": "AAPL" if i % 2 else "MSFT", "timestamp": 1000 + i})
        messages.append({**EXECUTED, "order_reference_number": i, "stock_locate": 5 if i % 2 else 1})
    messages.append(REPLACE)
    return messages


@pytest.fixture
def day_file(tmp_path):
    path = tmp_path / "day.itch"
    messages = _day()
    with DayFileWriter(path, buffer_size=100) as writer:   # tiny buffer: many flushes
        for m in messages:
            writer.write(m)
    return path, messages


@pytest.mark.parametrize("use_c", BACKENDS)
@pytest.mark.parametrize("chunk_size", [1, 7, 37, 1 << 20])
def test_reader_round_trip_across_chunk_boundaries(day_file, chunk_size, use_c):
    path, messages = day_file
    reader = DayFileReader(path, chunk_size=chunk_size, use_c=use_c)
    assert list(reader) == messages
    assert reader.bytes_consumed == path.stat().st_size


def test_writer_bytes_are_length_prefixed_messages(tmp_path):
    path = tmp_path / "two.itch"
    with DayFileWriter(path) as writer:
        writer.write(ADD_ORDER)
        writer.write_raw(itch.ITCH.by_code["A"], *itch.ITCH.by_code["A"].unpack_from(ADD_ORDER_BYTES, 0))
    assert path.read_bytes() == b"\x00\x24" + ADD_ORDER_BYTES + b"\x00\x24" + ADD_ORDER_BYTES


@pytest.mark.parametrize("cut", [1, 2, 20, 37])
def test_file_ending_mid_message_reports_where(tmp_path, cut):
    data = frame(ADD_ORDER_BYTES, ADD_ORDER_BYTES)
    path = tmp_path / "cut.itch"
    path.write_bytes(data[:len(data) - cut])
    with pytest.raises(WireFormatError) as info:
        list(DayFileReader(path, chunk_size=16).iter_raw())
    assert info.value.offset == 38          # where the cut message starts
    assert "ends mid-message" in info.value.reason


def test_bad_block_reports_file_offset_not_chunk_offset():
    data = frame(*([ADD_ORDER_BYTES] * 10)) + frame(b"Z12345")
    with pytest.raises(WireFormatError) as info:
        list(DayFileReader(io.BytesIO(data), chunk_size=50).iter_raw())
    assert info.value.offset == 380 + 2
    assert "unknown" in info.value.reason


def test_lenient_reader_counts_and_skips():
    data = frame(ADD_ORDER_BYTES, b"Z12345", ADD_ORDER_BYTES)
    reader = DayFileReader(io.BytesIO(data), strict=False)
    assert len(list(reader.iter_raw())) == 2
    assert reader.scanner.malformed == 1


# --- the CLI ----------------------------------------------------------------------------

def _lines(capsys):
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_cli_decode_prints_json_lines_in_order(day_file, capsys):
    path, messages = day_file
    assert main(["itch", "decode", str(path)]) == 0
    lines = _lines(capsys)
    assert lines == messages
    assert list(lines[3])[:5] == ["type", "timestamp", "stock_locate", "tracking_number", "order_reference_number"]
    assert lines[3]["stock"] == "MSFT" and lines[3]["price"] == 1234500


def test_cli_decode_filters_type_and_stock(day_file, capsys):
    path, messages = day_file
    assert main(["itch", "decode", str(path), "--type", "A,E", "--stock", "AAPL"]) == 0
    lines = _lines(capsys)
    assert {m["type"] for m in lines} == {"A", "E"}
    assert all(m["stock_locate"] == 5 for m in lines)   # E has no stock field: matched by locate
    assert len(lines) == 50
    assert main(["itch", "decode", str(path), "--type", "U"]) == 0
    assert _lines(capsys) == [REPLACE]


def test_cli_stats(day_file, capsys):
    path, _ = day_file
    assert main(["itch", "stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["messages"] == 104
    assert stats["per_type"] == {"S": 1, "R": 2, "A": 50, "E": 50, "U": 1}
    assert stats["per_symbol"] == {"AAPL": 51, "MSFT": 51, "locate 9": 1}
    assert stats["msgs_per_s"] > 0
    assert main(["itch", "stats", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Add Order" in text and "msg/s" in text and "AAPL" in text


@pytest.mark.parametrize("argv", [["decode", "{f}", "--type", "A,ZZ"], ["decode", "{f}", "--stock", "WAYTOOLONG"],
                                  ["decode", "{f}", "--type", ","]])
def test_cli_usage_errors_exit_2(day_file, capsys, argv):
    path, _ = day_file
    assert main(["itch"] + [a.format(f=path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("appliance itch: ") and err.count("\n") == 1


def test_cli_missing_file_is_one_line(tmp_path, capsys):
    assert main(["itch", "decode", str(tmp_path / "nope.itch")]) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["itch", "stats", str(tmp_path)]) == 1   # a directory
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_truncated_file_reports_offset(tmp_path, capsys):
    path = tmp_path / "cut.itch"
    path.write_bytes(frame(ADD_ORDER_BYTES) + b"\x00\x24" + ADD_ORDER_BYTES[:10])
    assert main(["itch", "decode", str(path)]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1          # the complete message was printed
    assert "offset 38" in captured.err and "ends mid-message" in captured.err
