"""``appliance audit``: the journal as CSV or JSON lines, with nanosecond UTC timestamps and time filters."""
from __future__ import annotations

import argparse
import csv
import io
import json

import pytest

from appliance.messages.codes import Action, ControlEventKind, OmsReason
from appliance.oms import audit_cli
from appliance.oms import journal_records as jr
from appliance.oms.audit import COLUMNS, iso_ns, parse_iso_ns
from appliance.oms.journal_records import RecordType, SessionEvent
from appliance.oms.journal import Journal
from appliance.wire import ouch

T0 = 1_767_360_312_123_456_789            # 2026-01-02T13:25:12.123456789Z
TOKEN = "0AB1000000000Z"


def build_journal(path: str) -> None:
    journal = Journal.open(path, 1 << 20, "page_cache")
    try:
        journal.append(RecordType.SESSION, jr.SESSION.pack(SessionEvent.START, prefix=371, counter=35), T0)
        journal.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(Action.NEW, ord("B"), 0, 99998, 501, 0, 42, 0, 300,
                                                                 1_900_100, b"AAPL    ", TOKEN.encode()), T0 + 1)
        accepted = ouch.encode_outbound({
            "type": "A", "timestamp": T0 % (86_400 * 10**9) + 5, "order_token": TOKEN, "buy_sell_indicator": "B",
            "shares": 300, "stock": "AAPL", "price": 1_900_100, "time_in_force": 99998, "firm": "ALGO",
            "display": "Y", "order_reference_number": 777, "capacity": "A", "intermarket_sweep_eligibility": "N",
            "minimum_quantity": 0, "cross_type": "N", "order_state": "L", "bbo_weight_indicator": " "})
        journal.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(2, accepted), T0 + 1_000)
        executed = ouch.encode_outbound({"type": "E", "timestamp": T0 % (86_400 * 10**9) + 9, "order_token": TOKEN,
                                         "executed_shares": 100, "execution_price": 1_900_000, "liquidity_flag": "A",
                                         "match_number": 31337})
        journal.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(3, executed), T0 + 2_000)
        journal.append(RecordType.REJECTED_LOCALLY, jr.REJECTED_LOCALLY.pack(
            Action.NEW, ord("S"), OmsReason.GATE_CLOSED, 0, 502, 0, 42, 1, 10, 0x7FFFFFFF, b"MSFT    "), T0 + 3_000)
        journal.append(RecordType.CONTROL, jr.CONTROL.pack(ControlEventKind.KILL, 3, 0, 0, b"alice", b"operator"),
                       T0 + 4_000)
        journal.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(Action.CANCEL, ord("B"), 1, 99998, 0, 501, 42, 0, 0,
                                                                 1_900_100, b"AAPL    ", TOKEN.encode()), T0 + 5_000)
    finally:
        journal.close()


def export(path: str, *argv: str, capsys) -> str:
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    assert audit_cli.run(parser.parse_args(["--journal", path, *argv])) == 0
    return capsys.readouterr().out


@pytest.fixture
def journal(tmp_path):
    path = str(tmp_path / "journal.bin")
    build_journal(path)
    return path


def test_csv_has_every_event_with_nanosecond_utc_times_and_the_venue_numbers(journal, capsys):
    rows = list(csv.DictReader(io.StringIO(export(journal, "--csv", capsys=capsys))))
    assert tuple(rows[0]) == COLUMNS
    assert [r["event"] for r in rows] == ["START", "SENT_NEW", "ACCEPTED", "EXECUTED", "REJECTED_LOCALLY", "KILL",
                                          "SENT_CANCEL"]
    sent, accepted, executed, refused, kill, cancel = rows[1:]
    assert sent["time"] == "2026-01-02T13:25:12.123456790Z" and sent["time_ns"] == str(T0 + 1)
    assert (sent["strategy_id"], sent["client_order_id"], sent["token"], sent["symbol"], sent["side"],
            sent["price"], sent["shares"]) == ("42", "501", TOKEN, "AAPL", "B", "190.0100", "300")
    assert (accepted["order_ref"], accepted["strategy_id"], accepted["client_order_id"], accepted["venue_sequence"],
            accepted["venue_time"]) == ("777", "42", "501", "2", "2026-01-02T13:25:12.123456794Z")
    assert (executed["match_number"], executed["shares"], executed["price"], executed["symbol"],
            executed["strategy_id"]) == ("31337", "100", "190.0000", "AAPL", "42")
    assert (refused["reason"], refused["price"], refused["symbol"], refused["client_order_id"]) == \
        ("GATE_CLOSED", "MKT", "MSFT", "502")
    assert "operator alice" in kill["detail"]
    assert (cancel["client_order_id"], cancel["token"], cancel["detail"]) == ("501", TOKEN, "CANCEL_ALL")


def test_jsonl_and_time_filters(journal, capsys):
    lines = export(journal, "--jsonl", "--from", iso_ns(T0 + 1_000), "--to", iso_ns(T0 + 4_000), capsys=capsys)
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [r["event"] for r in rows] == ["ACCEPTED", "EXECUTED", "REJECTED_LOCALLY"]   # from inclusive, to not
    assert rows[1]["match_number"] == 31337 and rows[1]["time_ns"] == T0 + 2_000
    orders_only = export(journal, "--jsonl", "--orders-only", capsys=capsys)
    assert [json.loads(line)["event"] for line in orders_only.splitlines()] == \
        ["SENT_NEW", "ACCEPTED", "EXECUTED", "REJECTED_LOCALLY", "SENT_CANCEL"]


def test_iso_times_parse_to_the_nanosecond():
    assert parse_iso_ns("2026-01-02T13:25:12.123456789Z") == T0
    assert parse_iso_ns(iso_ns(T0)) == T0
    assert parse_iso_ns("2026-01-02T14:25:12.123456789+01:00") == T0
    assert parse_iso_ns("2026-01-02 13:25:12.123456789") == T0
    assert parse_iso_ns("2026-01-02") == T0 - (13 * 3600 + 25 * 60 + 12) * 10**9 - 123_456_789
    with pytest.raises(ValueError):
        parse_iso_ns("yesterday")


def test_iso_ns_with_its_kept_second_equals_the_datetime_text():
    """The second's text is kept between calls: same second, the next, back again, far apart."""
    import datetime as dt
    import random
    rng = random.Random(19)
    times = [T0, T0 + 1, T0 + 999_999_999 - 123_456_789, T0 + 876_543_211, T0, 0, 999_999_999, 2**62]
    times += [rng.randrange(0, 2**62) for _ in range(300)] + [T0 + rng.randrange(0, 3 * 10**9) for _ in range(300)]
    for t in times:
        seconds, nanos = divmod(t, 10**9)
        text = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        assert iso_ns(t) == f"{text}.{nanos:09d}Z", t


def test_a_bad_time_is_a_usage_error_and_a_missing_journal_exit_1(tmp_path, capsys):
    from appliance.command_io.arguments import UsageError
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    with pytest.raises(UsageError):
        audit_cli.run(parser.parse_args(["--journal", "x", "--from", "noon"]))
    assert audit_cli.run(parser.parse_args(["--journal", str(tmp_path / "none.bin")])) == 1


def test_a_corrupt_record_is_reported_and_skipped(journal, capsys):
    from appliance.oms.journal_format import read_records
    records, _found, _header = read_records(journal)
    with open(journal, "r+b") as f:
        f.seek(records[2].offset + 40)
        f.write(b"\xee")
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    assert audit_cli.run(parser.parse_args(["--journal", journal, "--jsonl"])) == 0
    captured = capsys.readouterr()
    assert "record 3" in captured.err and "corrupt" in captured.err
    assert [json.loads(line)["sequence"] for line in captured.out.splitlines()] == [1, 2, 4, 5, 6, 7]


def test_the_journal_path_comes_from_the_layout(tmp_path, write_layout, unique_name, capsys):
    from oms_rig import oms_layout
    (tmp_path / "oms").mkdir()
    build_journal(str(tmp_path / "oms" / "journal.bin"))
    path = write_layout(oms_layout(unique_name, 15000, "oms/journal.bin"))
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    assert audit_cli.run(parser.parse_args(["--layout", str(path), "--csv"])) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8



def test_rows_are_the_rows_as_first_written(tmp_path):
    """AuditTrail.row (record kinds looked up in a dict, the schema's columns filled by index with
    a plan made once per schema) gives the rows of the reading by name it replaced, for every
    kind of record the rig writes, fills and breaks."""
    import struct
    from dropcopy_rig import JournalWriter
    from appliance.oms import audit as a
    from appliance.oms.audit import AuditTrail
    from appliance.oms import journal_records as jr
    from appliance.oms.journal_format import JournalRecord, read_records
    from appliance.wire.errors import WireFormatError

    def first_written(trail, record):
        row = dict.fromkeys(a.COLUMNS, "")
        row["time"], row["time_ns"], row["sequence"] = a.iso_ns(record.timestamp_ns), record.timestamp_ns, record.sequence
        try:
            kind = jr.RecordType(record.type)
        except ValueError:
            row["record"] = f"TYPE_{record.type}"
            return row
        row["record"] = kind.name
        schema = jr.RECORDS[kind]
        try:
            fields = jr.parse_order_sent(record.payload) if kind == jr.RecordType.ORDER_SENT else \
                schema.parse(record.payload)
            for field_name, column in schema.audit:
                row[column] = a._FORMATS.get(column, a._plain)(getattr(fields, field_name))
            getattr(trail, a._HANDLERS[kind])(row, fields, record)
        except (ValueError, WireFormatError, IndexError, struct.error) as exc:
            row["event"] = "UNREADABLE"
            row["detail"] = str(exc)
        return row

    writer = JournalWriter(str(tmp_path / "j.bin"))
    try:
        for n in range(1, 8):
            writer.order_life()
            writer.fill("MSFT", "BST"[n % 3], n, 1_900_000 + n, broken=n % 3 == 0)
    finally:
        writer.close()
    records, _, _ = read_records(str(tmp_path / "j.bin"))
    records += [JournalRecord(900, records[-1].timestamp_ns, 99, b"x", 0),                 # no such type
                JournalRecord(901, records[-1].timestamp_ns, jr.RecordType.SESSION, b"\x01", 0)]   # too short
    trail, reference = AuditTrail(["AAPL", "MSFT"]), AuditTrail(["AAPL", "MSFT"])
    for record in records:
        assert trail.row(record) == first_written(reference, record), record.sequence
    assert {r.type for r in records} >= {int(k) for k in (jr.RecordType.ORDER_SENT, jr.RecordType.EXCHANGE_MESSAGE,
                                                           jr.RecordType.CONTROL, jr.RecordType.REJECTED_LOCALLY)}
