"""Exchange market data: MoldUDP64 packing, heartbeats, end of session, faults, and gap recovery
through the re-request server over real loopback UDP."""
from __future__ import annotations

import select
import socket
import time

import pytest

from appliance.exchange.market_data import FeedFaults, MessageStore, MoldPublisher, RerequestServer
from appliance.wire import itch, moldudp64

SESSION = "TESTSESS01"


def add_order(i: int) -> bytes:
    return itch.encode({"type": "A", "stock_locate": 1 + i % 3, "tracking_number": 0, "timestamp": 1_000 + i,
                        "order_reference_number": i + 1, "buy_sell_indicator": "B" if i % 2 else "S",
                        "shares": 100 + i % 7, "stock": "AAPL", "price": 1_500_000 + i})


def test_messages_are_packed_in_order_under_the_payload_limit():
    packets: list[bytes] = []
    publisher = MoldPublisher(SESSION, packets.append, max_payload=400)
    sent = [add_order(i) for i in range(1000)]
    for i, message in enumerate(sent):
        assert publisher.publish(message) == i + 1
    publisher.flush()
    received, expected_seq = [], 1
    for packet in packets:
        assert len(packet) <= 20 + 400
        decoded = moldudp64.decode_packet(packet)
        assert decoded.session == SESSION and decoded.sequence_number == expected_seq
        expected_seq += decoded.message_count
        received.extend(decoded.messages)
    assert received == sent
    assert publisher.counters.messages == 1000 and publisher.counters.packets == len(packets)
    assert list(publisher.store) == sent


def test_heartbeat_only_when_quiet_and_end_of_session_repeats():
    packets: list[bytes] = []
    publisher = MoldPublisher(SESSION, packets.append, heartbeat_interval_ns=1_000)
    publisher.publish(add_order(0))
    publisher.tick(10_000)                       # flushes the message: no heartbeat needed
    assert [moldudp64.decode_packet(p).message_count for p in packets] == [1]
    publisher.tick(10_500)                       # quiet for less than the interval
    assert len(packets) == 1
    publisher.tick(11_000)
    heartbeat = moldudp64.decode_packet(packets[-1])
    assert heartbeat.is_heartbeat and heartbeat.sequence_number == 2
    publisher.end_session()
    assert moldudp64.decode_packet(packets[-1]).is_end_of_session
    publisher.tick(12_000)
    publisher.tick(13_000)
    eos = moldudp64.decode_packet(packets[-1])
    assert eos.is_end_of_session and eos.sequence_number == 2
    with pytest.raises(RuntimeError, match="ended"):
        publisher.publish(add_order(1))


def test_faults_are_seeded_and_reproducible():
    def run(seed):
        packets: list[bytes] = []
        publisher = MoldPublisher(SESSION, packets.append, max_payload=200,
                                  faults=FeedFaults(drop=0.1, duplicate=0.1, reorder=0.1, seed=seed))
        for i in range(2000):
            publisher.publish(add_order(i))
        publisher.flush()
        return packets, publisher.counters
    first, counters = run(7)
    again, _ = run(7)
    other, _ = run(8)
    assert first == again and first != other
    assert counters.dropped > 0 and counters.duplicated > 0 and counters.reordered > 0
    sequences = [moldudp64.decode_packet(p).sequence_number for p in first]
    assert sequences != sorted(sequences)          # reordered for real


@pytest.mark.parametrize("bad", [
    {"drop": -0.1}, {"duplicate": 1.5}, {"reorder": "often"}, {"drop": True},
])
def test_fault_probabilities_are_validated(bad):
    with pytest.raises(ValueError, match="probability"):
        FeedFaults(**bad)


def test_rerequest_server_answers_and_counts_bad_requests():
    store = MessageStore()
    for i in range(50):
        store.append(add_order(i))
    answers: list[tuple[bytes, tuple]] = []
    server = RerequestServer(SESSION, store, lambda packet, addr: answers.append((packet, addr)), max_payload=200)
    server.handle(moldudp64.request(SESSION, 10, 5), ("127.0.0.1", 9))
    packet = moldudp64.decode_packet(answers[-1][0])
    assert packet.sequence_number == 10 and list(packet.messages) == store.get(10, 5)
    assert answers[-1][1] == ("127.0.0.1", 9)
    server.handle(moldudp64.request(SESSION, 1, 50), ("127.0.0.1", 9))   # more than fits: as many as fit
    packet = moldudp64.decode_packet(answers[-1][0])
    assert 0 < packet.message_count < 50 and len(answers[-1][0]) <= 220
    server.handle(moldudp64.request(SESSION, 500, 3), ("127.0.0.1", 9))  # beyond the end: where we are
    packet = moldudp64.decode_packet(answers[-1][0])
    assert packet.is_heartbeat and packet.sequence_number == 51
    server.handle(b"garbage", ("127.0.0.1", 9))
    server.handle(moldudp64.request("OTHERSESS1", 1, 1), ("127.0.0.1", 9))
    assert server.bad_requests == 1 and server.wrong_session == 1 and server.requests == 3
    assert len(answers) == 3


class GapFillingConsumer:
    """A minimal MoldUDP64 consumer: applies packets in order, buffers what comes early, re-requests gaps."""

    def __init__(self, sock: socket.socket, rerequest_address):
        self.sock = sock
        self.rerequest_address = rerequest_address
        self.next_expected = 1
        self.messages: list[bytes] = []
        self.pending: dict[int, list[bytes]] = {}     # sequence -> messages of an early packet
        self.requests = 0
        self.ended_at: int | None = None

    def _apply(self, sequence: int, messages) -> None:
        for i, message in enumerate(messages):
            seq = sequence + i
            if seq == self.next_expected:
                self.messages.append(message)
                self.next_expected += 1
            elif seq > self.next_expected:
                self.pending.setdefault(seq, [message])
        while self.next_expected in self.pending:
            self.messages.extend(self.pending.pop(self.next_expected))
            self.next_expected += 1

    def poll(self, timeout: float) -> None:
        """Read every packet waiting (the first wait up to `timeout`)."""
        while select.select([self.sock], [], [], timeout)[0]:
            timeout = 0
            packet = moldudp64.decode_packet(self.sock.recv(65536))
            if packet.is_end_of_session:
                self.ended_at = packet.sequence_number
            elif not packet.is_heartbeat:
                self._apply(packet.sequence_number, packet.messages)

    def request_gap(self, known_end: int) -> None:
        if self.next_expected < known_end:
            missing = min(self.pending) if self.pending else known_end
            count = min(missing - self.next_expected, 100)
            self.sock.sendto(moldudp64.request(SESSION, self.next_expected, count), self.rerequest_address)
            self.requests += 1


def test_consumer_recovers_every_message_in_order_through_the_rerequest_server():
    feed_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rerequest = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    publisher_tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets = (feed_rx, rerequest, publisher_tx)
    try:
        feed_rx.bind(("127.0.0.1", 0))
        rerequest.bind(("127.0.0.1", 0))
        rerequest.setblocking(False)
        feed_address = feed_rx.getsockname()
        publisher = MoldPublisher(SESSION, lambda p: publisher_tx.sendto(p, feed_address), max_payload=300,
                                  heartbeat_interval_ns=5_000_000,
                                  faults=FeedFaults(drop=0.2, duplicate=0.1, reorder=0.1, seed=42))
        server = RerequestServer(SESSION, publisher.store, rerequest.sendto, max_payload=300)
        consumer = GapFillingConsumer(feed_rx, rerequest.getsockname())
        sent = [add_order(i) for i in range(3000)]
        for i, message in enumerate(sent):
            publisher.publish(message)
            if i % 50 == 49:
                publisher.flush()
                consumer.poll(0)
        publisher.end_session()
        deadline = time.monotonic() + 60
        while len(consumer.messages) < len(sent) and time.monotonic() < deadline:
            publisher.tick(time.monotonic_ns())       # repeats the end of session: it may be lost too
            consumer.poll(0.002)
            try:
                while True:
                    data, address = rerequest.recvfrom(64)
                    server.handle(data, address)
            except BlockingIOError:
                pass
            if consumer.ended_at is not None:
                consumer.request_gap(consumer.ended_at)
        assert publisher.counters.dropped > 0
        assert consumer.messages == sent
        assert consumer.requests > 0 and server.messages_resent > 0
    finally:
        for sock in sockets:
            sock.close()
