"""The exchange's market-data side: ITCH messages numbered, stored, packed into MoldUDP64, sent by UDP.

No sockets and no clock inside: the publisher is handed a ``send(packet)``
callable and the time, so the asyncio server, a test or a benchmark can drive
it. Three pieces:

- ``MessageStore``: every ITCH message of the session by sequence number, for
  the re-request server and the day file.
- ``MoldPublisher``: packs messages into MoldUDP64 packets up to a payload
  limit, sends a heartbeat after a quiet interval and the end of session at
  close, and applies the configured faults (drop, duplicate, reorder) to
  rehearse a lossy network. The faults are seeded: a run is reproducible.
- ``RerequestServer``: answers MoldUDP64 request packets from the store with an
  ordinary downstream packet sent to the requester; bad requests are counted
  and dropped.
"""
from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from typing import Callable

from appliance.wire import moldudp64
from appliance.wire.errors import WireFormatError

SendPacket = Callable[[bytes], None]
SendPacketTo = Callable[[bytes, tuple], None]

_unpack_header = moldudp64.HEADER.struct.unpack_from


class MessageStore:
    """The session's ITCH messages; sequence numbers start at 1.

    Kept as one growing ``bytearray`` and an array of end offsets (about 8 bytes of overhead
    per message instead of a Python object each), so a long day at tens of thousands of
    messages a second stays within memory."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")

    @property
    def next_sequence(self) -> int:
        return len(self._ends) + 1

    def append(self, message: bytes) -> int:
        self._data += message
        self._ends.append(len(self._data))
        return len(self._ends)

    def get(self, first: int, count: int) -> list[bytes]:
        """Messages ``first .. first+count-1`` that exist (fewer, or none, past the end)."""
        ends = self._ends
        if first < 1 or count <= 0 or first > len(ends):
            return []
        last = min(first - 1 + count, len(ends))
        data = self._data
        start = ends[first - 2] if first > 1 else 0
        out = []
        for index in range(first - 1, last):
            end = ends[index]
            out.append(bytes(data[start:end]))
            start = end
        return out

    def __len__(self) -> int:
        return len(self._ends)

    def __iter__(self):
        return iter(self.get(1, len(self._ends)))


@dataclass
class FeedFaults:
    """Probabilities per downstream packet (heartbeats and end of session are never faulted)."""
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0          # hold a packet back and send it after the next one
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"feed fault {name} must be a probability 0..1, got {value!r}")

    @property
    def active(self) -> bool:
        return bool(self.drop or self.duplicate or self.reorder)


@dataclass
class PublisherCounters:
    packets: int = 0
    messages: int = 0
    heartbeats: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


class MoldPublisher:
    """Packs ITCH messages into MoldUDP64 packets and hands them to ``send``."""

    def __init__(self, session: str, send: SendPacket, store: MessageStore | None = None, *,
                 max_payload: int = moldudp64.DEFAULT_MAX_PAYLOAD, heartbeat_interval_ns: int = 1_000_000_000,
                 faults: FeedFaults | None = None) -> None:
        self.session = session
        self.store = store if store is not None else MessageStore()
        self._send_raw = send
        self._builder = moldudp64.PacketBuilder(session, self.store.next_sequence, max_payload)
        self.heartbeat_interval_ns = heartbeat_interval_ns
        self.faults = faults or FeedFaults()
        self._rng = random.Random(self.faults.seed)
        self._held: bytes | None = None          # a packet held back by a reorder fault
        self._last_send_ns = 0
        self._sent_since_tick = False
        self.ended = False
        self.drop_next = 0                       # operator fault: drop this many packets from now on
        self.counters = PublisherCounters()

    def publish(self, message: bytes) -> int:
        """Store and queue one message; returns its sequence number. Full packets go out at once."""
        if self.ended:
            raise RuntimeError("the session has ended")
        sequence = self.store.append(message)
        if not self._builder.add(message):
            self._send(self._builder.finish())
            self._builder.add(message)
        return sequence

    def flush(self) -> None:
        """Send the partly filled packet, if any (call at the end of every batch of book events)."""
        if self._builder.message_count:
            self._send(self._builder.finish())

    def tick(self, now_ns: int) -> None:
        """Flush; then, if nothing went out for the heartbeat interval, a heartbeat (or, once the
        session has ended, the end-of-session packet again)."""
        self.flush()
        if self._sent_since_tick:
            self._sent_since_tick = False
            self._last_send_ns = now_ns
        elif now_ns - self._last_send_ns >= self.heartbeat_interval_ns:
            self._release_held()
            self._send_raw(self._builder.end_of_session() if self.ended else self._builder.heartbeat())
            self.counters.heartbeats += 1
            self._last_send_ns = now_ns

    def end_session(self) -> None:
        """Flush and announce the end of session."""
        self.flush()
        self._release_held()
        self.ended = True
        self._send_raw(self._builder.end_of_session())
        self._sent_since_tick = True

    def _release_held(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._send_raw(held)

    def _send(self, packet: bytes) -> None:
        self._sent_since_tick = True
        self.counters.packets += 1
        _session, _sequence, count = _unpack_header(packet)
        self.counters.messages += count
        if self.drop_next:
            self.drop_next -= 1
            self.counters.dropped += 1
            return
        faults = self.faults
        if faults.active:
            rng = self._rng
            if faults.drop and rng.random() < faults.drop:
                self.counters.dropped += 1
                return
            if faults.reorder and self._held is None and rng.random() < faults.reorder:
                self.counters.reordered += 1
                self._held = packet
                return
            self._send_raw(packet)
            self._release_held()
            if faults.duplicate and rng.random() < faults.duplicate:
                self.counters.duplicated += 1
                self._send_raw(packet)
            return
        self._send_raw(packet)


class RerequestServer:
    """Answers MoldUDP64 requests from the store; one downstream packet per request."""

    MAX_ANSWER_MESSAGES = 1000   # bounds the work one request can ask for

    def __init__(self, session: str, store: MessageStore, send_to: SendPacketTo, *,
                 max_payload: int = moldudp64.DEFAULT_MAX_PAYLOAD) -> None:
        self.session = session
        self.store = store
        self.send_to = send_to
        self.max_payload = max_payload
        self.requests = 0
        self.bad_requests = 0
        self.wrong_session = 0
        self.messages_resent = 0

    def handle(self, data: bytes, address: tuple) -> None:
        try:
            session, first, count = moldudp64.decode_request(data)
        except WireFormatError:
            self.bad_requests += 1
            return
        if session != self.session:
            self.wrong_session += 1
            return
        self.requests += 1
        messages = self.store.get(first, min(count, self.MAX_ANSWER_MESSAGES))
        builder = moldudp64.PacketBuilder(self.session, first, self.max_payload)
        for message in messages:
            if not builder.add(message):
                break
        if builder.message_count:
            self.messages_resent += builder.message_count
            self.send_to(builder.finish(), address)
        else:
            # nothing stored there (yet): tell the requester where the session stands
            self.send_to(moldudp64.heartbeat(self.session, self.store.next_sequence), address)
