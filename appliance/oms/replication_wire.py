"""The journal replication protocol between a primary OMS and its hot standby, defined once.

TCP, both directions framed the same way: ``u32 length`` (little-endian, the bytes after it) then
one kind byte and the body. The records themselves are never re-encoded: a RECORDS body is a run
of whole journal records exactly as the primary's journal file holds them (record header with the
journal's CRC-32C, payload, zero padding to 8 bytes), so the standby checks them with the
journal's own reader (``journal_format.read_from``) and appends the same bytes.

primary -> standby:
- HELLO (``H``): the primary's journal file header (``FILE_HEADER_SIZE`` bytes) and the sequence
  of the first record that follows. A standby whose file header differs starts a new journal
  with this header (then the first sequence is 1).
- RECORDS (``R``): whole records, consecutive sequences from where the standby asked.
- BEAT (``B``): the primary's last appended sequence and its wall clock, after ``heartbeat_ms``
  of silence.

standby -> primary:
- SUBSCRIBE (``S``): the next sequence the standby needs and its journal's file header (zeros
  when it has none): catch-up after a reconnect starts there.
- ACK (``A``): the last sequence written to the standby's journal (applied to its state after);
  sent after every RECORDS frame and, as a heartbeat, after ``heartbeat_ms`` of silence.

Anything else (unknown kind, a length out of range, a body of the wrong size) is a protocol
error: the reader raises ``ReplicationProtocolError`` and the side reading it closes the
connection and counts it; the peer reconnects and catches up.
"""
from __future__ import annotations

import struct

from appliance.oms.journal_format import FILE_HEADER_SIZE, MAX_RECORD_SIZE

FRAME_HEADER = struct.Struct("<IB")            # length (kind + body), kind
HELLO, RECORDS, BEAT, SUBSCRIBE, ACK = b"H"[0], b"R"[0], b"B"[0], b"S"[0], b"A"[0]
_U64 = struct.Struct("<Q")
_BEAT = struct.Struct("<QQ")                   # last appended sequence, primary wall clock ns
RECORDS_CHUNK = 64 << 10                       # a RECORDS frame carries at most this many bytes of records,
MAX_FRAME = RECORDS_CHUNK + MAX_RECORD_SIZE + 16   # or one record if it is larger: no frame is longer than this
# the fixed body size of each kind (RECORDS: variable, at least one record header)
BODY_SIZES = {HELLO: FILE_HEADER_SIZE + 8, BEAT: _BEAT.size, SUBSCRIBE: 8 + FILE_HEADER_SIZE, ACK: 8}
NO_HEADER = bytes(FILE_HEADER_SIZE)


class ReplicationProtocolError(ValueError):
    """Bytes on the replication connection that are not this protocol: the connection is closed."""


def frame(kind: int, body: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(len(body) + 1, kind) + body


def hello(file_header: bytes, first_sequence: int) -> bytes:
    return frame(HELLO, bytes(file_header) + _U64.pack(first_sequence))


def records_header(length: int) -> bytes:
    """The frame header of a RECORDS frame whose body (journal bytes, sent after it) is ``length`` bytes."""
    return FRAME_HEADER.pack(length + 1, RECORDS)


def beat(last_sequence: int, now_ns: int) -> bytes:
    return frame(BEAT, _BEAT.pack(last_sequence, now_ns))


def subscribe(next_sequence: int, file_header: bytes | None) -> bytes:
    return frame(SUBSCRIBE, _U64.pack(next_sequence) + (bytes(file_header) if file_header else NO_HEADER))


def ack(sequence: int) -> bytes:
    return frame(ACK, _U64.pack(sequence))


def parse_hello(body) -> tuple[bytes, int]:
    return bytes(body[:FILE_HEADER_SIZE]), _U64.unpack_from(body, FILE_HEADER_SIZE)[0]


def parse_beat(body) -> tuple[int, int]:
    return _BEAT.unpack_from(body)


def parse_subscribe(body) -> tuple[int, bytes]:
    return _U64.unpack_from(body)[0], bytes(body[8:8 + FILE_HEADER_SIZE])


def parse_ack(body) -> int:
    return _U64.unpack_from(body)[0]


class FrameReader:
    """Bytes from the socket in, whole frames (kind, body) out; raises on anything malformed.
    ``accepts``: the kinds this side may receive."""

    def __init__(self, accepts: tuple[int, ...]):
        self.accepts = frozenset(accepts)
        self._buffer = bytearray()

    def feed(self, data) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        size = FRAME_HEADER.size
        while len(buffer) - start >= size:
            length, kind = FRAME_HEADER.unpack_from(buffer, start)
            if kind not in self.accepts:
                raise ReplicationProtocolError(f"frame kind {kind:#04x} is not one this side accepts")
            if not 1 <= length <= MAX_FRAME:
                raise ReplicationProtocolError(f"frame length {length} out of range (1..{MAX_FRAME})")
            expected = BODY_SIZES.get(kind)
            if expected is not None and length - 1 != expected:
                raise ReplicationProtocolError(f"frame {chr(kind)} of {length - 1} bytes, not {expected}")
            if len(buffer) - start < 4 + length:
                break
            frames.append((kind, bytes(buffer[start + size:start + 4 + length])))
            start += 4 + length
        if start:
            del buffer[:start]
        return frames
