"""The journal's record types and their payloads, defined once (writer, recovery and audit).

Every payload is a ``JournalSchema`` (little-endian, text fields NUL-padded ASCII): write one
with ``SESSION.pack(event=..., session=...)``, read one with ``SESSION.parse(payload).session``.

- ``ORDER_SENT``: an Enter, Replace or Cancel Order about to be written to the venue (journaled
  before its bytes leave): everything needed to rebuild the order and the token counter, with the
  OUCH flags it carried (display, capacity, intermarket sweep, minimum quantity).
- ``EXCHANGE_MESSAGE``: every sequenced OUCH message from the venue, with its SoupBinTCP
  sequence number, journaled as received and before it is applied.
- ``REJECTED_LOCALLY``: an approved order the OMS refused before the wire, with its OmsReason.
- ``CONTROL``: risk's control events (kill, reset, limits, state, clock, snapshot requests),
  gate changes seen in the control words, and the OMS's own cancel-alls.
- ``SESSION``: OMS start (token prefix), login accepted/rejected with the sequence number,
  disconnects, end of session, logout, recovery complete, a new venue session.
- ``NOT_SENT``: an Enter, Replace or Cancel Order journaled as sent whose bytes never left (the
  session could not take them, or the connection was lost with them queued).
"""
from __future__ import annotations

import enum

from appliance.oms.journal_schema import JournalSchema, records_hash


class RecordType(enum.IntEnum):
    ORDER_SENT = 1
    EXCHANGE_MESSAGE = 2
    REJECTED_LOCALLY = 3
    CONTROL = 4
    SESSION = 5
    NOT_SENT = 6


class SendReason(enum.IntEnum):
    """Why an ORDER_SENT was sent."""
    STRATEGY = 0          # an approved order from risk
    CANCEL_ALL = 1        # kill switch or gate closed for risk/kill
    TIMEOUT_QUERY = 2     # no answer within the in-flight limit: queried by cancel
    RECOVERY = 3          # journaled as sent, unacknowledged after the restart


class SessionEvent(enum.IntEnum):
    START = 1             # the OMS started: prefix = its token prefix, sequence = next token counter
    LOGIN_ACCEPTED = 2    # session, sequence = the next sequence number the venue will send
    LOGIN_REJECTED = 3    # session field holds the reason
    DISCONNECTED = 4
    END_OF_SESSION = 5
    LOGOUT = 6
    RECOVERED = 7         # replay applied, unacknowledged orders resolved: ready for new orders
    LOGIN_SENT = 8        # sequence = the next sequence number asked for
    NEW_SESSION = 9       # the venue lost the old session (new name, or numbers restarting below ours):
                          # session = the new name, sequence = its first number; every open order is gone


class ControlKind(enum.IntEnum):
    """CONTROL.kind: ControlEventKind values 1..99 come from risk; these are the OMS's own."""
    GATE_CHANGED = 100    # state = gate_open, value = gate_reasons, value2 = gate_epoch
    CANCEL_ALL = 101      # value = orders asked to cancel, value2 = oms_cancel_all_epoch; detail = why
    JOURNAL_FAILED = 102  # detail = the reason (best effort: the journal may not take it)


# The order an ORDER_SENT or a REJECTED_LOCALLY is about (after action, side, why, pad).
_ORDER_FIELDS = [
    ("time_in_force", "u32", "time_in_force"),
    ("client_order_id", "u64", "client_order_id"),
    ("orig_client_order_id", "u64", "orig_client_order_id"),
    ("strategy_id", "u32", "strategy_id"),
    ("symbol_id", "u32"),
    ("shares", "u32", "shares"),
    ("price", "u32", "price"),
    ("symbol", "char8", "symbol"),
]

# The OUCH flags are the bytes the Enter / Replace Order carried (display, capacity, ISO 'Y'/'N');
# a cancel carries none (0). Version 2: the flags (version 1, without them: ``ORDER_SENT_V1`` below).
ORDER_SENT_FIELDS_V1 = (
    ("action", "u8"),
    ("side", "u8", "side"),
    ("send_reason", "u8"),
    ("pad0", "u8"),
    *_ORDER_FIELDS,
    ("token", "char14", "token"),
    ("orig_token", "char14", "orig_token"),
    ("t_rx_ns", "u64"),
    ("t_feed_out_ns", "u64"),
    ("t_strategy_out_ns", "u64"),
    ("t_risk_out_ns", "u64"),
)
ORDER_SENT = JournalSchema("OrderSent", type_id=RecordType.ORDER_SENT, version=2, fields=[
    *ORDER_SENT_FIELDS_V1,
    ("display", "u8", "display"),
    ("capacity", "u8", "capacity"),
    ("intermarket_sweep", "u8", "intermarket_sweep"),
    ("pad1", "u8"),
    ("minimum_quantity", "u32", "minimum_quantity"),
])

# Every sequenced venue message, as received: its SoupBinTCP sequence number, then the OUCH bytes.
EXCHANGE_MESSAGE = JournalSchema("ExchangeMessage", type_id=RecordType.EXCHANGE_MESSAGE, fields=[
    ("sequence", "u64", "venue_sequence"),
    ("message", "bytes"),
])

REJECTED_LOCALLY = JournalSchema("RejectedLocally", type_id=RecordType.REJECTED_LOCALLY, fields=[
    ("action", "u8"),
    ("side", "u8", "side"),
    ("reason", "u8"),                     # OmsReason
    ("pad0", "u8"),
    *_ORDER_FIELDS,
])

CONTROL = JournalSchema("Control", type_id=RecordType.CONTROL, fields=[
    ("kind", "u32"),                      # ControlEventKind (from risk) or ControlKind (the OMS's own)
    ("state", "u32"),
    ("value", "i64"),
    ("value2", "i64"),
    ("operator", "char16"),
    ("detail", "char16"),
    ("t_ns", "u64"),
])

SESSION = JournalSchema("Session", type_id=RecordType.SESSION, fields=[
    ("event", "u8"),                      # SessionEvent
    ("reason", "u8"),
    ("pad0", "u16"),
    ("prefix", "u32"),                    # START: the token prefix
    ("session", "char10"),                # the venue's session name (LOGIN_REJECTED: the reason)
    ("pad1", "u16"),
    ("pad2", "u32"),
    ("sequence", "u64"),                  # the next venue sequence number
    ("counter", "u64"),                   # START: the next token counter
])

NOT_SENT = JournalSchema("NotSent", type_id=RecordType.NOT_SENT, fields=[
    ("action", "u8"),
    ("pad0", "u8"),
    ("pad1", "u16"),
    ("target", "u32"),                    # a cancel's target shares
    ("token", "char14", "token"),
])

# Every journal record, by type: the writer, recovery and the audit read the payloads through these
# (an ORDER_SENT through ``parse_order_sent``, which reads the earlier shape too).
RECORDS: dict[int, JournalSchema] = {schema.type_id: schema for schema in (
    ORDER_SENT, EXCHANGE_MESSAGE, REJECTED_LOCALLY, CONTROL, SESSION, NOT_SENT)}
assert set(RECORDS) == set(RecordType), "every RecordType has its schema"
# The records' shapes, in the journal's file header: a journal written with other shapes is refused.
RECORDS_HASH = records_hash(RECORDS.values())

# ORDER_SENT as the OMS wrote it before the OUCH flags (108 bytes; every order then carried display
# Y, capacity A, no ISO, no minimum quantity). A journal of those shapes is still read (an upgrade in
# the middle of a day recovers that day's journal): each ORDER_SENT is told apart by its length.
ORDER_SENT_V1 = JournalSchema("OrderSent", type_id=RecordType.ORDER_SENT, fields=list(ORDER_SENT_FIELDS_V1))
_V1_FLAGS = (ord("Y"), ord("A"), ord("N"), 0)
EARLIER_RECORDS_HASHES = frozenset((records_hash([ORDER_SENT_V1, *(RECORDS[t] for t in RECORDS if t != RecordType.ORDER_SENT)]),))


def parse_order_sent(payload) -> ORDER_SENT.view:
    """An ORDER_SENT payload of either shape, as today's view (the earlier one with its fixed flags)."""
    if len(payload) == ORDER_SENT_V1.size:
        return ORDER_SENT.view(*ORDER_SENT_V1.parse(payload), *_V1_FLAGS)
    return ORDER_SENT.parse(payload)


def text(raw: bytes) -> str:
    return raw.rstrip(b"\0 ").decode("ascii", "replace")
