"""The audit trail: every event of the OMS journal as rows, with nanosecond UTC timestamps.

One row per journal record, in journal order. A record's fields fill the columns its schema
names (``events``: ``("shares", "u32", "shares")``); the rest (event names, details, what a
venue message lacks) is said here. Order events carry the strategy id, the client
order ids, the token, symbol, side, price and shares, and for venue messages the exchange's order
reference and match numbers: a venue message names only a token, so the fields it lacks come from
the ORDER_SENT that made the token (read earlier in the same journal).

Columns (``COLUMNS``): ``time`` (ISO 8601 UTC with 9 fractional digits, when the OMS journaled it),
``time_ns`` (the same, epoch ns), ``sequence`` (the journal's), ``record`` (ORDER_SENT,
EXCHANGE_MESSAGE, REJECTED_LOCALLY, CONTROL, SESSION), ``event`` (SENT_NEW, SENT_REPLACE,
SENT_CANCEL, ACCEPTED, REPLACED, CANCELED, EXECUTED, REJECTED, BROKEN, CANCEL_PENDING,
CANCEL_REJECT, SYSTEM_EVENT, REJECTED_LOCALLY, the control and session event names), ``strategy_id``,
``client_order_id``, ``orig_client_order_id``, ``token``, ``orig_token``, ``symbol``, ``side``,
``price`` (decimal, 4 places; ``MKT`` for a market order), ``shares``, ``order_ref``,
``match_number``, ``reason``, ``venue_sequence`` (SoupBinTCP), ``venue_time`` (the venue's
timestamp as ISO UTC), ``detail``, then the order's terms as sent (ORDER_SENT) or as the venue echoed
them (ACCEPTED, REPLACED): ``time_in_force`` (OUCH seconds: 0 immediate-or-cancel, 99998 day),
``display``, ``capacity``, ``intermarket_sweep`` (the OUCH bytes: Y/A/N, A/P/R/O, Y/N) and
``minimum_quantity``.
"""
from __future__ import annotations

import datetime as _dt
import re
import struct
from typing import Iterable, Iterator

from appliance.messages.codes import MARKET_PRICE, PRICE_SCALE, Action, ControlEventKind, OmsReason, name_of
from appliance.oms import journal_records as jr
from appliance.oms.journal_records import ControlKind, RecordType, SendReason, SessionEvent
from appliance.oms.journal_format import JournalRecord
from appliance.wire import ouch
from appliance.wire.errors import WireFormatError
from appliance.wire.venue_time import epoch_of_stamp

COLUMNS = ("time", "time_ns", "sequence", "record", "event", "strategy_id", "client_order_id",
           "orig_client_order_id", "token", "orig_token", "symbol", "side", "price", "shares", "order_ref",
           "match_number", "reason", "venue_sequence", "venue_time", "detail", "time_in_force", "display", "capacity",
           "intermarket_sweep", "minimum_quantity")
_OUCH_EVENTS = {"A": "ACCEPTED", "U": "REPLACED", "C": "CANCELED", "E": "EXECUTED", "J": "REJECTED",
                "B": "BROKEN", "P": "CANCEL_PENDING", "I": "CANCEL_REJECT", "S": "SYSTEM_EVENT"}
_SENT_EVENTS = {Action.NEW: "SENT_NEW", Action.REPLACE: "SENT_REPLACE", Action.CANCEL: "SENT_CANCEL"}


def iso_ns(epoch_ns: int) -> str:
    """``2026-01-02T13:45:12.123456789Z``: UTC with every nanosecond. The second's text is kept
    for the next call (a journal's records come many to a second: the drop copy formats each)."""
    global _last_second
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    if _last_second[0] != seconds:
        _last_second = (seconds, _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_last_second[1]}.{nanos:09d}Z"


_last_second: tuple = (None, "")       # (epoch seconds, its text): one tuple, so a thread reads a pair


_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
                  r"\s*(Z|[+-]\d{2}:?\d{2})?")


def parse_iso_ns(text: str) -> int:
    """Epoch ns of an ISO 8601 date or time (fraction to the nanosecond; no zone means UTC)."""
    match = _ISO.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-01-02T13:45:12.123456789Z)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    moment = _dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                          tzinfo=_dt.timezone.utc)
    nanos = int((fraction or "0").ljust(9, "0"))
    offset = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return (int(moment.timestamp()) - offset) * 1_000_000_000 + nanos


def _price(value: int) -> str:
    if value == MARKET_PRICE:
        return "MKT"
    return f"{value // PRICE_SCALE}.{value % PRICE_SCALE:04d}"


_PRICE = re.compile(r"(\d{1,15})\.(\d{4})")


def parse_price(text: str) -> int:
    """The integer price (4 implied decimals) of a ``price`` column (``190.0100``, ``MKT``): what a
    reader of the rows (the risk hub, from the drop copy's events) turns back into a price.
    ValueError for anything else."""
    if text == "MKT":
        return MARKET_PRICE
    match = _PRICE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{str(text)[:40]!r} is not a price column (e.g. 190.0100 or MKT)")
    return int(match.group(1)) * PRICE_SCALE + int(match.group(2))


def _text(raw) -> str:
    if isinstance(raw, bytes):
        return raw.rstrip(b"\0 ").decode("ascii", "replace")
    return str(raw).rstrip()


def _side(value: int) -> str:
    return chr(value) if value else ""


def _plain(value):
    return value


# How a journal field shows in the audit column its schema names (``JournalSchema.audit``).
_FORMATS = {"price": _price, "side": _side, "symbol": _text, "token": _text, "orig_token": _text,
            "display": _side, "capacity": _side, "intermarket_sweep": _side}
_KINDS = {int(kind): kind for kind in RecordType}       # RecordType(n) without the enum's call
_FILLS: dict = {}


def _fills(schema, view) -> tuple:
    """(index in the view, column, format) of each field the schema gives a column, worked out
    once per schema and view (a row is made for every record the drop copy publishes)."""
    plan = _FILLS.get((schema, view))
    if plan is None:
        plan = _FILLS[(schema, view)] = tuple((view._fields.index(field_name), column, _FORMATS.get(column, _plain))
                                               for field_name, column in schema.audit)
    return plan


_HANDLERS = {RecordType.ORDER_SENT: "_order_sent", RecordType.EXCHANGE_MESSAGE: "_exchange_message",
             RecordType.REJECTED_LOCALLY: "_rejected_locally", RecordType.CONTROL: "_control",
             RecordType.SESSION: "_session", RecordType.NOT_SENT: "_not_sent"}


class AuditTrail:
    """Turns journal records into audit rows, remembering each token's order."""

    def __init__(self, symbols: list[str] | None = None):
        self.symbols = symbols or []
        self.orders: dict[bytes, dict] = {}          # token -> strategy_id, client ids, symbol, side

    def rows(self, records: Iterable[JournalRecord]) -> Iterator[dict]:
        for record in records:
            row = self.row(record)
            if row is not None:
                yield row

    def row(self, record: JournalRecord) -> dict | None:
        row = dict.fromkeys(COLUMNS, "")
        row["time"] = iso_ns(record.timestamp_ns)
        row["time_ns"] = record.timestamp_ns
        row["sequence"] = record.sequence
        kind = _KINDS.get(record.type)
        if kind is None:
            row["record"] = f"TYPE_{record.type}"
            return row
        row["record"] = kind.name
        schema = jr.RECORDS[kind]
        try:
            fields = jr.parse_order_sent(record.payload) if kind == RecordType.ORDER_SENT else \
                schema.parse(record.payload)
            for index, column, form in _fills(schema, type(fields)):   # the columns the schema says its fields fill
                row[column] = form(fields[index])
            getattr(self, _HANDLERS[kind])(row, fields, record)
        except (ValueError, WireFormatError, IndexError, struct.error) as exc:   # a payload too short for its type
            row["event"] = "UNREADABLE"
            row["detail"] = str(exc)
        return row

    def _order_sent(self, row: dict, sent: jr.ORDER_SENT.view, _record) -> None:
        row["event"] = _SENT_EVENTS.get(sent.action, f"SENT_{sent.action}")
        token = sent.token.rstrip(b" ")
        if sent.send_reason != SendReason.STRATEGY:
            row["detail"] = name_of(SendReason, sent.send_reason)
        if sent.action not in (Action.NEW, Action.REPLACE):          # a cancel carries no terms
            row.update(time_in_force="", minimum_quantity="")
        if sent.action in (Action.NEW, Action.REPLACE):
            self.orders[token] = {"strategy_id": sent.strategy_id, "client_order_id": sent.client_order_id,
                                  "orig_client_order_id": sent.orig_client_order_id, "symbol": _text(sent.symbol),
                                  "side": row["side"]}
        else:
            row["client_order_id"], row["orig_client_order_id"] = sent.orig_client_order_id, sent.client_order_id
            if sent.client_order_id:
                row["detail"] = (row["detail"] + " " if row["detail"] else "") + f"request {sent.client_order_id}"

    def _exchange_message(self, row: dict, journaled: jr.EXCHANGE_MESSAGE.view, record: JournalRecord) -> None:
        fields = ouch.decode_outbound(journaled.message)
        kind = fields["type"]
        row["event"] = _OUCH_EVENTS.get(kind, kind)
        venue_ns = epoch_of_stamp(fields["timestamp"], record.timestamp_ns)
        row["venue_time"] = iso_ns(venue_ns)
        if kind == "S":
            row["detail"] = fields["event_code"]
            return
        token = (fields.get("replacement_order_token") or fields.get("order_token") or "").encode()
        row["token"] = token.decode()
        known = self.orders.get(token)
        if known is not None:
            row.update(strategy_id=known["strategy_id"], client_order_id=known["client_order_id"],
                       orig_client_order_id=known["orig_client_order_id"], symbol=known["symbol"], side=known["side"])
        if kind in ("A", "U"):
            row.update(symbol=fields["stock"], side=fields["buy_sell_indicator"], price=_price(fields["price"]),
                       shares=fields["shares"], order_ref=fields["order_reference_number"],
                       detail=f"state {fields['order_state']}", time_in_force=fields["time_in_force"],
                       display=fields["display"], capacity=fields["capacity"],
                       intermarket_sweep=fields["intermarket_sweep_eligibility"],
                       minimum_quantity=fields["minimum_quantity"])
            if kind == "U":
                row["orig_token"] = fields["previous_order_token"]
        elif kind == "C":
            row.update(shares=fields["decrement_shares"], reason=fields["reason"])
        elif kind == "E":
            row.update(shares=fields["executed_shares"], price=_price(fields["execution_price"]),
                       match_number=fields["match_number"], detail=f"liquidity {fields['liquidity_flag']}")
        elif kind == "J":
            row["reason"] = fields["reason"]
        elif kind == "B":
            row.update(match_number=fields["match_number"], reason=fields["reason"])

    def _rejected_locally(self, row: dict, rejected: jr.REJECTED_LOCALLY.view, _record) -> None:
        row.update(event="REJECTED_LOCALLY", reason=name_of(OmsReason, rejected.reason),
                   detail=name_of(Action, rejected.action))

    def _not_sent(self, row: dict, record: jr.NOT_SENT.view, _record) -> None:
        token = record.token.rstrip(b" \0")
        row.update(event="NOT_SENT", detail=name_of(Action, record.action))
        known = self.orders.get(token)
        if known is not None:
            row.update(strategy_id=known["strategy_id"], client_order_id=known["client_order_id"],
                       symbol=known["symbol"], side=known["side"])

    def _control(self, row: dict, control: jr.CONTROL.view, _record) -> None:
        if control.kind >= 100:
            row["event"] = name_of(ControlKind, control.kind)
        else:
            row["event"] = name_of(ControlEventKind, control.kind)
        if control.kind == ControlKind.GATE_CHANGED:
            row["detail"] = f"gate_open {control.state} reasons {control.value:#x} epoch {control.value2}"
        elif control.kind == ControlEventKind.CLOCK:
            row["detail"] = f"clock {_text(control.detail)} offset {control.value} ns maxerror {control.value2} ns"
        elif control.kind == ControlKind.CANCEL_ALL:
            row["detail"] = f"{_text(control.detail)}: {control.value} orders, epoch {control.value2}"
        else:
            parts = [f"state {control.state}", f"value {control.value}"]
            if _text(control.operator):
                parts.append(f"operator {_text(control.operator)}")
            if _text(control.detail):
                parts.append(_text(control.detail))
            row["detail"] = ", ".join(parts)

    def _session(self, row: dict, session: jr.SESSION.view, _record) -> None:
        row["event"] = name_of(SessionEvent, session.event)
        if session.event == SessionEvent.START:
            row["detail"] = f"token prefix {session.prefix}, next counter {session.counter}"
        elif session.event == SessionEvent.LOGIN_REJECTED:
            row["reason"] = _text(session.session)
        else:
            row["venue_sequence"] = session.sequence
            row["detail"] = f"session {_text(session.session)}"


ORDER_RECORDS = frozenset(("ORDER_SENT", "EXCHANGE_MESSAGE", "REJECTED_LOCALLY"))


def select(rows: Iterable[dict], start_ns: int | None = None, end_ns: int | None = None,
           orders_only: bool = False) -> Iterator[dict]:
    """Rows with ``start_ns <= time_ns < end_ns`` (either bound optional)."""
    for row in rows:
        t = row["time_ns"]
        if start_ns is not None and t < start_ns:
            continue
        if end_ns is not None and t >= end_ns:
            continue
        if orders_only and (row["record"] not in ORDER_RECORDS or row["event"] == "SYSTEM_EVENT"):
            continue
        yield row
