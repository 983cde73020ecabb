"""The journal's record types and their payloads, defined once (writer, recovery and audit).

Every payload is a little-endian ``struct``; text fields are space- or NUL-padded ASCII.

- ``ORDER_SENT``: an Enter, Replace or Cancel Order about to be written to the venue (journaled
  before its bytes leave): everything needed to rebuild the order and the token counter.
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
import struct
from typing import NamedTuple

from appliance.oms.journal import RECORD_BODY_FORMAT


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


ORDER_SENT = struct.Struct("<BBBBIQQIIII8s14s14sQQQQ")
# The journal record of an ORDER_SENT from the CRC field on: what the hot path packs in one call
# into the space ``Journal.claim`` gave it (length, sequence, timestamp, type, reserved, payload).
ORDER_SENT_RECORD = struct.Struct(RECORD_BODY_FORMAT + ORDER_SENT.format[1:])
EXCHANGE_MESSAGE_HEADER = struct.Struct("<Q")
REJECTED_LOCALLY = struct.Struct("<BBBBIQQIIII8s")
CONTROL = struct.Struct("<IIqq16s16sQ")
NOT_SENT = struct.Struct("<B3xI14s")          # action, cancel target shares, token
SESSION = struct.Struct("<BBHI10s6xQQ")


class OrderSent(NamedTuple):
    action: int
    side: int
    send_reason: int
    time_in_force: int
    client_order_id: int
    orig_client_order_id: int
    strategy_id: int
    symbol_id: int
    shares: int
    price: int
    symbol: bytes
    token: bytes
    orig_token: bytes
    t_rx_ns: int
    t_feed_out_ns: int
    t_strategy_out_ns: int
    t_risk_out_ns: int


class RejectedLocally(NamedTuple):
    action: int
    side: int
    reason: int
    time_in_force: int
    client_order_id: int
    orig_client_order_id: int
    strategy_id: int
    symbol_id: int
    shares: int
    price: int
    symbol: bytes


class Control(NamedTuple):
    kind: int
    state: int
    value: int
    value2: int
    operator: bytes
    detail: bytes
    t_ns: int


class Session(NamedTuple):
    event: int
    reason: int
    prefix: int
    session: bytes
    sequence: int
    counter: int


def order_sent(action: int, side: int, send_reason: int, tif: int, client_order_id: int, orig_client_order_id: int,
               strategy_id: int, symbol_id: int, shares: int, price: int, symbol: bytes, token: bytes,
               orig_token: bytes = b"", t_rx_ns: int = 0, t_feed_out_ns: int = 0, t_strategy_out_ns: int = 0,
               t_risk_out_ns: int = 0) -> bytes:
    return ORDER_SENT.pack(action, side, send_reason, 0, tif, client_order_id, orig_client_order_id, strategy_id,
                           symbol_id, shares, price, symbol, token, orig_token, t_rx_ns, t_feed_out_ns,
                           t_strategy_out_ns, t_risk_out_ns)


def parse_order_sent(payload: bytes) -> OrderSent:
    v = ORDER_SENT.unpack_from(payload)
    return OrderSent(v[0], v[1], v[2], v[4], *v[5:])


def exchange_message(sequence: int, message: bytes) -> bytes:
    return EXCHANGE_MESSAGE_HEADER.pack(sequence) + message


def parse_exchange_message(payload: bytes) -> tuple[int, bytes]:
    return EXCHANGE_MESSAGE_HEADER.unpack_from(payload)[0], payload[EXCHANGE_MESSAGE_HEADER.size:]


def rejected_locally(action: int, side: int, reason: int, tif: int, client_order_id: int, orig_client_order_id: int,
                     strategy_id: int, symbol_id: int, shares: int, price: int, symbol: bytes) -> bytes:
    return REJECTED_LOCALLY.pack(action, side, reason, 0, tif, client_order_id, orig_client_order_id, strategy_id,
                                 symbol_id, shares, price, symbol)


def parse_rejected_locally(payload: bytes) -> RejectedLocally:
    v = REJECTED_LOCALLY.unpack_from(payload)
    return RejectedLocally(v[0], v[1], v[2], *v[4:])


class NotSent(NamedTuple):
    action: int
    target: int
    token: bytes


def not_sent(action: int, token: bytes, target: int = 0) -> bytes:
    return NOT_SENT.pack(action, target, token)


def parse_not_sent(payload: bytes) -> NotSent:
    return NotSent(*NOT_SENT.unpack_from(payload))


def control(kind: int, state: int = 0, value: int = 0, value2: int = 0, operator: bytes = b"", detail: bytes = b"",
            t_ns: int = 0) -> bytes:
    return CONTROL.pack(kind, state, value, value2, operator[:16], detail[:16], t_ns)


def parse_control(payload: bytes) -> Control:
    return Control(*CONTROL.unpack_from(payload))


def session(event: int, session_name: bytes = b"", sequence: int = 0, prefix: int = 0, counter: int = 0,
            reason: int = 0) -> bytes:
    return SESSION.pack(event, reason, 0, prefix, session_name[:10].ljust(10), sequence, counter)


def parse_session(payload: bytes) -> Session:
    event, reason, _pad, prefix, name, sequence, counter = SESSION.unpack_from(payload)
    return Session(event, reason, prefix, name, sequence, counter)


def text(raw: bytes) -> str:
    return raw.rstrip(b"\0 ").decode("ascii", "replace")
