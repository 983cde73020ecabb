"""SoupBinTCP 3.0 packets: the one table of their layouts, their encoders and decoders.

Packets are ``[u16 length][type][payload]``; the length counts the type byte and
the payload. Numeric fields are ASCII, right-justified and space-padded on emit,
parsed by stripping spaces on both sides (some peers left-justify).

This module is the codec only: bytes in, fields out, and back. The client and
server session state machines (login, replay, heartbeats, timeouts) that use it
are in ``appliance.wire.soupbintcp_session``.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from appliance.wire.errors import WireFormatError
from appliance.wire.schema import MessageLayout, Protocol, alpha, char, numeric, prefixed, u16

_HEADER = (u16("packet_length"), char("packet_type"))
PREFIX = MessageLayout(None, "SoupBinTCP packet prefix", _HEADER, type_field=None)
_PREFIX = PREFIX.struct
PREFIX_SIZE = PREFIX.size  # length + type


def _packet(code: str, name: str, *fields) -> MessageLayout:
    return MessageLayout(code, name, _HEADER + fields, type_field="packet_type")


# Fixed-size packets. S, U and + carry a variable payload after the 3-byte prefix.
LOGIN_REQUEST = _packet("L", "Login Request", alpha("username", 6), alpha("password", 10),
                        alpha("requested_session", 10), numeric("requested_sequence_number", 20))
LOGIN_ACCEPTED = _packet("A", "Login Accepted", alpha("session", 10), numeric("sequence_number", 20))
LOGIN_REJECTED = _packet("J", "Login Rejected", char("reject_reason_code"))
SERVER_HEARTBEAT = _packet("H", "Server Heartbeat")
CLIENT_HEARTBEAT = _packet("R", "Client Heartbeat")
END_OF_SESSION = _packet("Z", "End of Session")
LOGOUT_REQUEST = _packet("O", "Logout Request")
SEQUENCED_DATA = _packet("S", "Sequenced Data")      # + message
UNSEQUENCED_DATA = _packet("U", "Unsequenced Data")  # + message
DEBUG = _packet("+", "Debug")                        # + text

PACKETS = Protocol("SoupBinTCP 3.0", (LOGIN_REQUEST, LOGIN_ACCEPTED, LOGIN_REJECTED, SERVER_HEARTBEAT,
                                      CLIENT_HEARTBEAT, END_OF_SESSION, LOGOUT_REQUEST, SEQUENCED_DATA,
                                      UNSEQUENCED_DATA, DEBUG))
VARIABLE_TYPES = frozenset(b"SU+")
REJECT_NOT_AUTHORIZED = "A"
REJECT_SESSION_NOT_AVAILABLE = "S"



# ------------------------------------------------------------------ encoding

def _fixed(layout: MessageLayout, **fields) -> bytes:
    fields["packet_length"] = layout.size - 2
    return layout.encode(fields)


def login_request(username: str, password: str, requested_session: str = "", requested_sequence_number: int = 0) -> bytes:
    return _fixed(LOGIN_REQUEST, username=username, password=password, requested_session=requested_session,
                  requested_sequence_number=requested_sequence_number)


def login_accepted(session: str, sequence_number: int) -> bytes:
    return _fixed(LOGIN_ACCEPTED, session=session, sequence_number=sequence_number)


def login_rejected(reason: str) -> bytes:
    return _fixed(LOGIN_REJECTED, reject_reason_code=reason)


SERVER_HEARTBEAT_BYTES = b"\x00\x01H"
CLIENT_HEARTBEAT_BYTES = b"\x00\x01R"
END_OF_SESSION_BYTES = b"\x00\x01Z"
LOGOUT_REQUEST_BYTES = b"\x00\x01O"


def _variable(code: bytes, payload: bytes) -> bytes:
    if len(payload) > 0xFFFE:
        raise ValueError(f"a SoupBinTCP payload holds at most 65534 bytes, not {len(payload)}")
    return _PREFIX.pack(len(payload) + 1, code) + payload


def sequenced_data(message: bytes) -> bytes:
    return _variable(b"S", message)


def unsequenced_data(message: bytes) -> bytes:
    return _variable(b"U", message)


def debug(text: str | bytes) -> bytes:
    return _variable(b"+", text.encode("ascii") if isinstance(text, str) else text)


def write_data_into(buffer, offset: int, packet_type: bytes, message: bytes) -> int:
    """Write an S or U packet around ``message`` at ``offset``; returns the bytes written (hot path)."""
    _PREFIX.pack_into(buffer, offset, len(message) + 1, packet_type)
    buffer[offset + PREFIX_SIZE:offset + PREFIX_SIZE + len(message)] = message
    return 3 + len(message)


class DataFrame:
    """A Sequenced or Unsequenced Data packet around one fixed-size message, as one layout.

    The prefix fields and the message's fields make one ``MessageLayout``, so a hot path
    packs the whole frame in a single ``struct`` call and the length and both type bytes
    come from the tables, not from the caller: ``pack(*values)`` takes the message's raw
    field values after its type byte and returns the packet's bytes.
    """

    def __init__(self, packet: MessageLayout, message: MessageLayout) -> None:
        if packet.type_byte[0] not in VARIABLE_TYPES or packet is DEBUG:
            raise ValueError(f"{packet.name} carries no message")
        if message.type_field is None or any(f.kind in ("u48", "numeric") for f in message.fields):
            raise ValueError(f"{message.name}: a frame packs typed messages of plain struct fields")
        self.packet = packet
        self.message = message
        self.layout = prefixed(packet, message)
        self.packet_length = self.layout.size - 2
        self.pack = partial(self.layout.struct.pack, self.packet_length, packet.type_byte, message.type_byte)

    def compiled_shape(self) -> tuple[bytes, list[tuple[int, int, str]]]:
        """The frame for a compiled packer (the OMS's order step): its bytes with the constant ones set
        (length, packet type, message type; the rest 0), and the (offset, width, kind) of each value
        ``pack`` takes, in order, big-endian: 'u' unsigned integer, 's' text (struct's "Ns"), 'c' one byte."""
        values = self.layout.fields[len(self.pack.args):]       # after the length and both type bytes
        image = self.pack(*(b"\0" if f.kind == "char" else b"" if f.kind == "alpha" else 0 for f in values))
        kinds = {"char": "c", "alpha": "s"}
        return image, [(self.layout.offset_of[f.name], f.size, kinds.get(f.kind, "u")) for f in values]

    def __repr__(self) -> str:
        return f"DataFrame({self.packet.type_code!r}, {self.message.name!r}, size={self.layout.size})"


# ------------------------------------------------------------------ decoding

def check_packet(buffer, offset: int, length: int) -> MessageLayout:
    """Validate the type and length of a complete packet (``length`` from its prefix)."""
    if length == 0:
        raise WireFormatError(offset, "SoupBinTCP packet of length 0 has no type byte")
    type_byte = buffer[offset + 2]
    layout = PACKETS.by_byte[type_byte]
    if layout is None:
        raise WireFormatError(offset + 2, f"unknown SoupBinTCP packet type {bytes([type_byte])!r}")
    if type_byte not in VARIABLE_TYPES and length != layout.size - 2:
        kind = "oversized" if length > layout.size - 2 else "truncated"
        raise WireFormatError(offset, f"{kind} {layout.name}: length {length}, expected {layout.size - 2}")
    return layout


def decode_packet(buffer, offset: int = 0, available: int | None = None) -> dict[str, Any]:
    """Decode one complete packet at ``offset`` into a dict (``message``/``text`` for S, U, +)."""
    if available is None:
        available = len(buffer) - offset
    if available < 2:
        raise WireFormatError(offset, f"truncated SoupBinTCP packet: {max(available, 0)} of 2 length bytes")
    length = buffer[offset] << 8 | buffer[offset + 1]
    if available < 2 + length:
        raise WireFormatError(offset, f"truncated SoupBinTCP packet: length says {length}, {available - 2} present")
    if available > 2 + length:
        raise WireFormatError(offset + 2 + length, f"oversized SoupBinTCP packet: {available - 2 - length} bytes after it")
    layout = check_packet(buffer, offset, length)
    if layout.type_byte[0] in VARIABLE_TYPES:
        payload = bytes(buffer[offset + PREFIX_SIZE:offset + 2 + length])
        if layout is DEBUG:
            return {"packet_type": "+", "text": payload.decode("ascii", "replace")}
        return {"packet_type": layout.type_code, "message": payload}
    fields = layout.decode(buffer, offset)
    del fields["packet_length"]
    return fields


class PacketReader:
    """Reassembles packets from a TCP byte stream; holds at most one partial packet between calls."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.position = 0          # start of the first unread packet in ``buffer``
        self.stream_offset = 0     # stream offset of buffer[0], for error reports

    def feed(self, data) -> None:
        if self.position:
            del self.buffer[:self.position]
            self.stream_offset += self.position
            self.position = 0
        self.buffer += data

    def next_packet(self) -> tuple[MessageLayout, int, int] | None:
        """``(layout, offset of the packet in buffer, length)`` of the next complete packet, or None."""
        buffer, position = self.buffer, self.position
        if len(buffer) - position < 2:
            return None
        length = buffer[position] << 8 | buffer[position + 1]
        if len(buffer) - position - 2 < length:
            return None
        try:
            layout = check_packet(buffer, position, length)
        except WireFormatError as exc:
            raise WireFormatError(self.stream_offset + exc.offset, exc.reason) from None
        self.position = position + 2 + length
        return layout, position, length
