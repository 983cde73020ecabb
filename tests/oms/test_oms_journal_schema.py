"""Journal records as schemas: one declaration gives the format, the reader, the writer, the audit
columns and the records' hash in the file header (a journal of other shapes is refused)."""
from __future__ import annotations

import struct

import pytest

from appliance.oms import journal_records as jr
from appliance.oms import journal as journal_module
from appliance.oms.audit import COLUMNS, AuditTrail
from appliance.oms.crc32c import crc32c
from appliance.oms.journal_records import RecordType
from appliance.oms.journal import Journal
from appliance.oms import journal_format
from appliance.oms.journal_format import (
    FILE_HEADER, FILE_HEADER_SIZE, MAX_RECORD_SIZE, V1_RECORDS_HASH, VERSION, JournalError, journal_day,
    read_file_header, read_records, record_at,
)
from appliance.oms.journal_schema import JournalSchema, records_hash

SIZE = FILE_HEADER_SIZE + 64 * MAX_RECORD_SIZE
T0 = 1_767_360_312_123_456_789


def _sample(schema: JournalSchema) -> dict:
    """A distinct value per field (pads excluded)."""
    values = {}
    for i, (name, type_code, _offset) in enumerate(schema.describe()["fields"]):
        if not name.startswith("pad"):
            values[name] = b"F%d" % i if type_code.startswith("char") or type_code == "bytes" else i + 1
    return values


@pytest.mark.parametrize("schema", list(jr.RECORDS.values()), ids=lambda s: s.name)
def test_every_record_reads_back_what_was_written_by_name_and_in_order(schema):
    values = _sample(schema)
    payload = schema.pack(**values)
    parsed = schema.parse(payload)
    for name, value in values.items():
        got = getattr(parsed, name)
        assert (got.rstrip(b"\0") if isinstance(got, bytes) else got) == value, name
    assert schema.pack(*values.values()) == payload                  # positional: the fields' order
    for name, offset in schema.offset_of.items():                     # pads are written zero
        if name.startswith("pad"):
            assert payload[offset:offset + schema.size_of[name]] == bytes(schema.size_of[name])
            assert name not in parsed._fields


def test_fields_left_out_are_zero_and_a_short_payload_does_not_parse():
    assert jr.CONTROL.parse(jr.CONTROL.pack(7)) == (7, 0, 0, 0, b"\0" * 16, b"\0" * 16, 0)
    with pytest.raises(struct.error):
        jr.ORDER_SENT.parse(jr.ORDER_SENT.pack()[:-1])


@pytest.mark.parametrize("fields, message", [
    ([("a", "u8"), ("a", "u16")], "declared twice"),
    ([("a", "u24")], "unknown type"),
    ([("rest", "bytes"), ("a", "u8")], "only the last field"),
    ([("pad0", "u8"), ("rest", "bytes")], "no pads"),
    ([("class", "u8")], "not a field name"),
    ([("a b", "u8")], "not a field name"),
])
def test_a_bad_declaration_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        JournalSchema("Bad", fields)


def test_the_records_hash_follows_every_shape_change():
    base = [JournalSchema("A", [("x", "u32"), ("y", "u64")], type_id=1)]
    assert records_hash(base) == records_hash([JournalSchema("A", [("x", "u32"), ("y", "u64")], type_id=1)])
    for changed in ([("x", "u32"), ("y", "u32")], [("x", "u32"), ("z", "u64")], [("y", "u64"), ("x", "u32")]):
        assert records_hash([JournalSchema("A", changed, type_id=1)]) != records_hash(base)
    assert records_hash([JournalSchema("A", [("x", "u32"), ("y", "u64")], type_id=1, version=2)]) != records_hash(base)
    assert jr.RECORDS_HASH == records_hash(jr.RECORDS.values())


def test_the_records_are_the_bytes_journals_on_disk_hold():
    """A change to any record's shape makes every existing journal unreadable (refused by its
    hash), unless the earlier shapes stay readable. ORDER_SENT grew the OUCH flags (108 -> 116
    bytes); the shapes before (version-1 journals' and every journal until then) are still read
    (``EARLIER_RECORDS_HASHES``). If another change is meant, say so in the change and update this."""
    assert jr.RECORDS_HASH != V1_RECORDS_HASH and jr.EARLIER_RECORDS_HASHES == {V1_RECORDS_HASH}
    assert jr.ORDER_SENT.size == 116 and jr.ORDER_SENT_V1.size == 108
    assert jr.SESSION.size == 40 and jr.NOT_SENT.size == 22


def test_the_audit_columns_come_from_the_schemas():
    named = {column for schema in jr.RECORDS.values() for _field, column in schema.audit}
    assert named and named <= set(COLUMNS)
    record = record_at(_image_with(RecordType.NOT_SENT, jr.NOT_SENT.pack(1, target=5, token=b"0AB1000000007Z")),
                       FILE_HEADER_SIZE)
    row = AuditTrail().row(record)
    assert row["event"] == "NOT_SENT" and row["token"] == "0AB1000000007Z"


def _image_with(record_type: int, payload: bytes) -> bytearray:
    from appliance.oms import _journal_fast
    image = bytearray(FILE_HEADER_SIZE + MAX_RECORD_SIZE)
    _journal_fast.append(image, FILE_HEADER_SIZE, record_type, 1, T0, payload)
    return image


def _journal_of_one_start(tmp_path) -> str:
    path = str(tmp_path / "j.bin")
    journal = Journal.open(path, SIZE, "page_cache", now_ns=T0)
    journal.append(RecordType.SESSION, jr.SESSION.pack(jr.SessionEvent.START, prefix=3), T0)
    journal.close()
    return path


def _rewrite_header(path: str, **fields) -> None:
    with open(path, "r+b") as f:
        header = read_file_header(f.read(FILE_HEADER_SIZE))
        header.update(fields)
        values = [header[name] for name in FILE_HEADER.fields]
        raw = bytearray(FILE_HEADER.pack(*values))
        crc_at = FILE_HEADER.offset_of["crc"]
        raw[crc_at:crc_at + 4] = crc32c(bytes(raw[:crc_at])).to_bytes(4, "little")
        f.seek(0)
        f.write(raw)


def test_the_file_header_carries_the_records_hash_and_other_shapes_are_refused(tmp_path):
    path = _journal_of_one_start(tmp_path)
    records, _found, header = read_records(path)
    assert header["records_hash"] == jr.RECORDS_HASH and header["version"] == VERSION and len(records) == 1
    _rewrite_header(path, records_hash=jr.RECORDS_HASH ^ 1)
    for read in (lambda: Journal.open(path, SIZE, "page_cache"), lambda: read_records(path)):
        with pytest.raises(JournalError, match="other shapes"):
            read()


def _as_version_1(path: str) -> None:
    """Rewrite the file header as version 1 wrote it: no records hash, its CRC right after the day."""
    v1 = struct.Struct("<8sIIQQI")
    header = read_file_header(open(path, "rb").read(FILE_HEADER_SIZE))
    raw = bytearray(FILE_HEADER_SIZE)
    v1.pack_into(raw, 0, b"APPLOMSJ", 1, FILE_HEADER_SIZE, header["file_size"], header["created_ns"],
                 header["trading_day"])
    raw[v1.size:v1.size + 4] = crc32c(bytes(raw[:v1.size])).to_bytes(4, "little")
    with open(path, "r+b") as f:
        f.write(raw)


def test_a_version_1_journal_is_recovered_while_its_shapes_are_todays(tmp_path):
    """An upgrade in the middle of a day: the OMS recovers the journal the previous version wrote."""
    path = _journal_of_one_start(tmp_path)
    day = journal_day(path)
    _as_version_1(path)
    assert journal_day(path) == day
    records, _found, header = read_records(path)
    assert header["version"] == 1 and header["crc_ok"] and [r.sequence for r in records] == [1]
    journal = Journal.open(path, SIZE + MAX_RECORD_SIZE, "page_cache")    # grown: the header becomes version 2
    assert [r.sequence for r in journal.records()] == [1]
    assert journal.append(RecordType.SESSION, jr.SESSION.pack(jr.SessionEvent.START, prefix=4), T0 + 1) == 2
    journal.close()
    records, _found, header = read_records(path)
    assert header["version"] == VERSION and [jr.SESSION.parse(r.payload).prefix for r in records] == [3, 4]


def test_a_version_1_journal_with_a_bad_header_crc_or_other_shapes_is_refused(tmp_path, monkeypatch):
    path = str(tmp_path / "j.bin")
    Journal.open(path, SIZE, "page_cache", now_ns=T0).close()
    _as_version_1(path)
    monkeypatch.setattr(journal_format, "V1_RECORDS_HASH", jr.RECORDS_HASH ^ 1)    # the shapes changed since
    with pytest.raises(JournalError, match="other shapes"):
        Journal.open(path, SIZE, "page_cache")
    monkeypatch.undo()
    with open(path, "r+b") as f:
        f.seek(FILE_HEADER.offset_of["trading_day"])
        f.write(b"\xff")
    with pytest.raises(JournalError, match="fails its CRC"):
        Journal.open(path, SIZE, "page_cache")


def test_without_the_c_append_the_journal_does_not_open(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "_append", None)
    with pytest.raises(JournalError, match="C extension"):
        Journal.open(str(tmp_path / "j.bin"), SIZE, "page_cache")
    assert not (tmp_path / "j.bin").exists()


def test_an_extension_built_from_older_c_fails_closed_at_open_not_at_import(tmp_path):
    """A stale .so (no set_layout) must not break importing the OMS or reading journals."""
    import subprocess
    import sys
    code = (
        "import sys, types\n"
        "import appliance.oms\n"
        "from appliance.oms import _journal_fast as real\n"
        "old = types.ModuleType(real.__name__)\n"                  # the old extension's API: no set_layout
        "old.crc32c, old.append = real.crc32c, real.append\n"
        "sys.modules[real.__name__] = appliance.oms._journal_fast = old\n"
        "from appliance.oms.journal import Journal\n"
        "from appliance.oms.journal_format import JournalError\n"
        "try:\n"
        f"    Journal.open({str(tmp_path / 'j.bin')!r}, 1 << 20, 'page_cache')\n"
        "except JournalError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "out of date" in done.stdout
    assert not (tmp_path / "j.bin").exists()
