"""MoldUDP64: the UDP framing of ITCH (downstream packets, heartbeats, end of session, requests).

A downstream packet is a 20-byte header (session Alpha 10, sequence u64 of the
first message, message count u16) and ``count`` blocks of ``[u16 length][message]``.
Count 0 is a heartbeat, 0xFFFF the end of session; both carry the next expected
sequence. A request packet (to the re-request server) has the same 20-byte shape:
session, first sequence wanted, count.

Sender side: ``PacketBuilder`` packs messages up to a payload limit. Receiver side:
``decode_header`` / ``iter_messages`` (strict), ``FeedPacketScanner`` (a packet's
subscribed messages: locate filter, counters, never raises; the feed agent scans from
where its sequencer's walk found the new messages, and uses ``block_offset`` for held
packets) and ``SequenceTracker`` (gaps and duplicates).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from appliance.wire import itch
from appliance.wire.errors import WireEncodeError, WireFormatError
from appliance.wire.schema import MessageLayout, alpha, pad_alpha, u16, u64

HEADER = MessageLayout(None, "MoldUDP64 header", (alpha("session", 10), u64("sequence_number"), u16("message_count")),
                       expected_size=20, type_field=None)
REQUEST = MessageLayout(None, "MoldUDP64 request", (alpha("session", 10), u64("sequence_number"), u16("requested_message_count")),
                        expected_size=20, type_field=None)
HEADER_SIZE = HEADER.size
HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
DEFAULT_MAX_PAYLOAD = 1400   # keeps a packet under a normal Ethernet MTU
MAX_BLOCKS = 0xFFFE          # 0xFFFF means end of session

_unpack_header = HEADER.struct.unpack_from
_pack_header = HEADER.struct.pack_into


def session_bytes(session: str | bytes) -> bytes:
    """A session name as the 10 space-padded bytes on the wire."""
    return pad_alpha(session, 10, "session")


# ------------------------------------------------------------------ sender side

class PacketBuilder:
    """Packs messages into downstream packets of at most ``max_payload`` bytes after the header.

    ``add`` returns False when the message does not fit (send ``finish()`` first,
    then add again). Sequence numbers advance by the count of each finished packet.
    """

    def __init__(self, session: str | bytes, next_sequence: int = 1, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if max_payload < 2:
            raise ValueError("max_payload must hold at least one block header")
        self.session = session_bytes(session)
        self.next_sequence = next_sequence
        self.max_payload = max_payload
        self.buffer = bytearray(HEADER_SIZE + max_payload)
        self.used = HEADER_SIZE
        self.message_count = 0

    def add(self, message: bytes) -> bool:
        """Append one message; False if it would exceed the payload limit (or the block count)."""
        size = len(message)
        if self.used + 2 + size > len(self.buffer) or self.message_count >= MAX_BLOCKS:
            if self.message_count == 0:
                raise WireEncodeError(f"a {size}-byte message never fits a {self.max_payload}-byte payload")
            return False
        buffer = self.buffer
        buffer[self.used] = size >> 8
        buffer[self.used + 1] = size & 0xFF
        buffer[self.used + 2:self.used + 2 + size] = message
        self.used += 2 + size
        self.message_count += 1
        return True

    def finish(self) -> bytes:
        """The packet of everything added since the last ``finish`` (the header written now)."""
        _pack_header(self.buffer, 0, self.session, self.next_sequence, self.message_count)
        packet = bytes(self.buffer[:self.used])
        self.next_sequence += self.message_count
        self.used = HEADER_SIZE
        self.message_count = 0
        return packet

    def heartbeat(self) -> bytes:
        return heartbeat(self.session, self.next_sequence)

    def end_of_session(self) -> bytes:
        return end_of_session(self.session, self.next_sequence)


def pack_messages(session: str | bytes, first_sequence: int, messages, max_payload: int = DEFAULT_MAX_PAYLOAD) -> list[bytes]:
    """Pack a sequence of messages into as few packets as the payload limit allows."""
    builder = PacketBuilder(session, first_sequence, max_payload)
    packets = []
    for message in messages:
        if not builder.add(message):
            packets.append(builder.finish())
            builder.add(message)
    if builder.message_count:
        packets.append(builder.finish())
    return packets


def heartbeat(session: str | bytes, next_sequence: int) -> bytes:
    return HEADER.struct.pack(session_bytes(session), next_sequence, HEARTBEAT_COUNT)


def end_of_session(session: str | bytes, next_sequence: int) -> bytes:
    return HEADER.struct.pack(session_bytes(session), next_sequence, END_OF_SESSION_COUNT)


def request(session: str | bytes, first_sequence: int, count: int) -> bytes:
    """A re-request for ``count`` messages from ``first_sequence``."""
    if not 0 < count <= MAX_BLOCKS:
        raise WireEncodeError(f"request count {count} outside 1..{MAX_BLOCKS}")
    return REQUEST.struct.pack(session_bytes(session), first_sequence, count)


# ------------------------------------------------------------------ receiver side

@dataclass(frozen=True)
class Packet:
    """A decoded downstream packet (convenience form)."""

    session: str
    sequence_number: int
    message_count: int
    messages: tuple[bytes, ...]

    @property
    def is_heartbeat(self) -> bool:
        return self.message_count == HEARTBEAT_COUNT

    @property
    def is_end_of_session(self) -> bool:
        return self.message_count == END_OF_SESSION_COUNT


def decode_header(packet, nbytes: int | None = None) -> tuple[bytes, int, int]:
    """``(session bytes, sequence, count)`` of a packet; ``WireFormatError`` if under 20 bytes."""
    if nbytes is None:
        nbytes = len(packet)
    if nbytes < HEADER_SIZE:
        raise WireFormatError(0, f"MoldUDP64 packet of {nbytes} bytes is shorter than its 20-byte header")
    return _unpack_header(packet, 0)


def iter_messages(packet, nbytes: int | None = None) -> Iterator[tuple[int, int, int]]:
    """Yield ``(sequence, offset, length)`` per message; raise if the blocks disagree with the count."""
    if nbytes is None:
        nbytes = len(packet)
    _, sequence, count = decode_header(packet, nbytes)
    offset = HEADER_SIZE
    if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
        if nbytes != HEADER_SIZE:
            raise WireFormatError(HEADER_SIZE, f"{nbytes - HEADER_SIZE} bytes after a {'heartbeat' if count == 0 else 'end-of-session'} header")
        return
    for index in range(count):
        if offset + 2 > nbytes:
            raise WireFormatError(offset, f"truncated packet: message {index + 1} of {count} missing")
        length = packet[offset] << 8 | packet[offset + 1]
        if offset + 2 + length > nbytes:
            raise WireFormatError(offset, f"truncated packet: block says {length} bytes, {nbytes - offset - 2} remain")
        yield sequence + index, offset + 2, length
        offset += 2 + length
    if offset != nbytes:
        raise WireFormatError(offset, f"oversized packet: {nbytes - offset} bytes after the {count} messages the header counts")


def decode_packet(packet, nbytes: int | None = None) -> Packet:
    """Convenience: the whole packet with its messages as bytes (validated framing, not content)."""
    if nbytes is None:
        nbytes = len(packet)
    session, sequence, count = decode_header(packet, nbytes)
    messages = tuple(bytes(packet[o:o + n]) for _, o, n in iter_messages(packet, nbytes))
    try:
        name = session.decode("ascii").rstrip(" ")
    except UnicodeDecodeError:
        raise WireFormatError(0, f"session {session!r} is not ASCII") from None
    return Packet(name, sequence, count, messages)


def decode_request(packet, nbytes: int | None = None) -> tuple[str, int, int]:
    """``(session, first sequence, count)`` of a re-request; exactly 20 bytes."""
    if nbytes is None:
        nbytes = len(packet)
    if nbytes != REQUEST.size:
        raise WireFormatError(0 if nbytes < REQUEST.size else REQUEST.size,
                              f"MoldUDP64 request must be 20 bytes, got {nbytes}")
    raw = REQUEST.to_dict(REQUEST.unpack_from(packet, 0))
    return raw["session"], raw["sequence_number"], raw["requested_message_count"]


class SequenceTracker:
    """Follows a session's sequence numbers: which messages of a packet are new, which are missing.

    ``accept(sequence, count)`` returns how many leading messages of the packet were
    already seen (skip them); ``-1`` when the whole packet is old. A packet that
    starts beyond the next expected number records the gap in ``gap`` as
    ``(first missing, count)`` for a re-request, and counts it in ``gaps``.
    """

    def __init__(self, next_expected: int = 1) -> None:
        self.next_expected = next_expected
        self.gaps = 0
        self.duplicates = 0
        self.gap: tuple[int, int] | None = None

    def accept(self, sequence: int, count: int) -> int:
        if count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
            if sequence > self.next_expected:
                self.gaps += 1
                self.gap = (self.next_expected, sequence - self.next_expected)
            return -1
        if sequence + count <= self.next_expected:
            self.duplicates += 1
            return -1
        skip = 0
        if sequence > self.next_expected:
            self.gaps += 1
            self.gap = (self.next_expected, sequence - self.next_expected)
        elif sequence < self.next_expected:
            skip = self.next_expected - sequence
        self.next_expected = sequence + count
        return skip


class FeedPacketScanner:
    """The feed's per-packet fast path: header check, locate filter, counters; never raises on bad input.

    ``scan(buffer, nbytes)`` returns an iterator of raw ITCH tuples for the
    subscribed messages of one packet (empty for heartbeats, end of session and
    packets with a bad header, which are counted in ``bad_packets``). Bad blocks
    are counted in ``scanner.malformed`` (a block cut short by the end of the
    packet too). The payload is walked in place: no copy. The header's count is
    not cross-checked here (``iter_messages`` does, strictly).
    """

    def __init__(self, subscribed_locates=None, *, use_c: bool | None = None) -> None:
        self.scanner = itch.BlockScanner(subscribed_locates, strict=False, use_c=use_c)
        self.packets = 0
        self.bad_packets = 0
        self.session = b""
        self.sequence_number = 0
        self.message_count = 0
        self._empty = ()

    def scan(self, buffer, nbytes: int, skip: int = 0):
        """Iterator over the packet's subscribed messages; ``skip`` leading blocks already seen
        (``SequenceTracker.accept`` says how many) are stepped over without decoding."""
        self.packets += 1
        if nbytes < HEADER_SIZE or nbytes > len(buffer):
            self.bad_packets += 1
            self.message_count = 0
            return iter(self._empty)
        self.session, self.sequence_number, self.message_count = _unpack_header(buffer, 0)
        if self.message_count in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT):
            if nbytes != HEADER_SIZE:
                self.bad_packets += 1
            return iter(self._empty)
        return self.scanner.scan(buffer, block_offset(buffer, nbytes, skip), nbytes, final=True)


def block_offset(buffer, nbytes: int, skip: int) -> int:
    """Where block ``skip`` (counting from 0) of a downstream packet starts: its leading blocks stepped
    over without decoding; ``nbytes`` at most, whatever the blocks say (never raises)."""
    offset = HEADER_SIZE
    for _ in range(skip):
        if offset + 2 > nbytes:
            break
        offset = min(offset + 2 + (buffer[offset] << 8 | buffer[offset + 1]), nbytes)
    return offset
