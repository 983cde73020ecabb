"""OUCH 4.2 at the venue: inbound messages checked and turned into engine requests, the engine's
order-entry events turned into outbound messages.

Inbound bytes are untrusted. ``parse_inbound`` returns an ``InboundRequest`` or raises
``WireFormatError`` (unknown type, wrong length, a token or stock that is not printable
ASCII); the venue counts and drops such a message and tells the client in a Debug packet,
as the session itself stays healthy. Field values the engine judges (side, shares, price,
stock) are passed through and rejected with OUCH reasons there.

Outbound Accepted and Replaced echo fields the engine does not keep (capacity, intermarket
sweep eligibility, minimum quantity, cross type): the venue keeps them per token in
``EchoFields`` from the request that created the order.
"""
from __future__ import annotations

from typing import NamedTuple

from appliance.wire import ouch
from appliance.wire.errors import WireFormatError
from appliance.wire.schema import pad_alpha

from .events import Accepted, CancelReject, Canceled, Executed, Rejected, Replaced

ENTER, REPLACE, CANCEL, MODIFY = "O", "U", "X", "M"
_INBOUND = {layout.type_code: layout for layout in (ouch.ENTER_ORDER, ouch.REPLACE_ORDER, ouch.CANCEL_ORDER,
                                                    ouch.MODIFY_ORDER)}
_PRINTABLE = bytes(range(0x20, 0x7F))

# OUCH System Event codes
SYSTEM_START_OF_DAY = "S"
SYSTEM_END_OF_DAY = "E"


class EchoFields(NamedTuple):
    """Entered fields the engine does not keep but Accepted / Replaced must echo."""
    capacity: bytes = b"A"
    intermarket_sweep: bytes = b"N"
    minimum_quantity: int = 0
    cross_type: bytes = b"N"


DEFAULT_ECHO = EchoFields()


class InboundRequest(NamedTuple):
    """One decoded client message: ``kind`` is the OUCH type, ``values`` the raw field tuple."""
    kind: str
    values: tuple


def _text(raw: bytes, offset: int, name: str) -> str:
    if raw.translate(None, _PRINTABLE):
        raise WireFormatError(offset, f"{name} {raw!r} is not printable ASCII")
    return raw.decode("ascii").rstrip(" ")


def parse_inbound(message: bytes) -> InboundRequest:
    """Check one OUCH inbound message (the payload of an Unsequenced Data packet)."""
    if not message:
        raise WireFormatError(0, "empty OUCH message")
    code = chr(message[0])
    layout = _INBOUND.get(code)
    if layout is None:
        raise WireFormatError(0, f"unknown OUCH inbound type {message[:1]!r}")
    if len(message) != layout.size:
        raise WireFormatError(0, f"{layout.name} is {layout.size} bytes, got {len(message)}")
    values = layout.unpack_from(message, 0)
    if code == ENTER:
        token = _text(values[1], 1, "order token")
        stock = _text(values[4], 20, "stock")
        return InboundRequest(code, (token, values[2].decode("latin-1"), values[3], stock) + values[5:])
    if code == REPLACE:
        return InboundRequest(code, (_text(values[1], 1, "existing order token"),
                                     _text(values[2], 15, "replacement order token")) + values[3:])
    if code in (CANCEL, MODIFY):
        return InboundRequest(code, (_text(values[1], 1, "order token"),) + values[2:])
    raise AssertionError(code)  # pragma: no cover


class OuchEncoder:
    """Outbound OUCH bytes from engine events; ``mpids`` maps engine firm names to the MPID echoed
    in Accepted / Replaced."""

    def __init__(self, mpids: dict[str, str]) -> None:
        self._mpid = {firm: pad_alpha(mpid, 4, "firm") for firm, mpid in mpids.items()}
        self._pack_a = ouch.ACCEPTED.struct.pack
        self._pack_u = ouch.REPLACED.struct.pack
        self._pack_c = ouch.CANCELED.struct.pack
        self._pack_e = ouch.EXECUTED.struct.pack
        self._pack_j = ouch.REJECTED.struct.pack
        self._pack_i = ouch.CANCEL_REJECT.struct.pack
        self._pack_s = ouch.SYSTEM_EVENT.struct.pack

    def system_event(self, code: str, timestamp: int) -> bytes:
        return self._pack_s(b"S", timestamp, code.encode("ascii"))

    def encode(self, event, timestamp: int, echo: EchoFields = DEFAULT_ECHO) -> bytes:
        kind = type(event)
        if kind is Executed:
            _firm, token, shares, price, liquidity, match = event
            return self._pack_e(b"E", timestamp, _token(token), shares, price, liquidity.encode(), match)
        if kind is Canceled:
            _firm, token, shares, reason = event
            return self._pack_c(b"C", timestamp, _token(token), shares, reason.encode())
        if kind is Accepted:
            firm, token, side, shares, symbol, price, tif, display, ref, state = event
            return self._pack_a(b"A", timestamp, _token(token), side.encode("latin-1"), shares, _stock(symbol), price,
                                tif, self._mpid.get(firm, b"    "), display.encode("latin-1"), ref, echo.capacity,
                                echo.intermarket_sweep, echo.minimum_quantity, echo.cross_type, state.encode(), b" ")
        if kind is Replaced:
            firm, token, previous, side, shares, symbol, price, tif, display, ref, state = event
            return self._pack_u(b"U", timestamp, _token(token), side.encode("latin-1"), shares, _stock(symbol), price,
                                tif, self._mpid.get(firm, b"    "), display.encode("latin-1"), ref, echo.capacity,
                                echo.intermarket_sweep, echo.minimum_quantity, echo.cross_type, state.encode(),
                                _token(previous), b" ")
        if kind is Rejected:
            return self._pack_j(b"J", timestamp, _token(event[1]), event[2].encode())
        if kind is CancelReject:
            return self._pack_i(b"I", timestamp, _token(event[1]))
        raise TypeError(f"not an order-entry event: {event!r}")


def _token(token: str) -> bytes:
    return token.encode("ascii").ljust(ouch.TOKEN_SIZE)


def _stock(symbol: str) -> bytes:
    return symbol.encode("ascii").ljust(8)
