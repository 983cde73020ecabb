"""Journal inputs the fuzz (test_fuzz_journal.py) found: each failed before its fix."""
from __future__ import annotations

import pytest

from appliance.oms.audit import AuditTrail
from appliance.oms.journal_records import RecordType
from appliance.oms.journal_format import JournalRecord


@pytest.mark.parametrize("kind", [RecordType.ORDER_SENT, RecordType.EXCHANGE_MESSAGE, RecordType.REJECTED_LOCALLY,
                                  RecordType.CONTROL, RecordType.SESSION])
def test_regression_audit_row_of_a_payload_too_short_for_its_type(kind):
    """A CRC-valid record whose payload is shorter than its type's struct (another version, a buggy
    writer): struct.error escaped AuditTrail.row and `appliance audit` stopped with a traceback."""
    row = AuditTrail(["AAPL"]).row(JournalRecord(7, 1_764_000_000_000_000_000, int(kind), b"\x01", 4096))
    assert row["event"] == "UNREADABLE" and row["sequence"] == 7 and row["detail"]
