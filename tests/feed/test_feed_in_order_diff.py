"""The sequencer's in-order accept compiled into the packet path (``FastFeed.bind_sequencer``: _book_fast.c
``accept_packet``, with ``MoldSequencer.accept`` for every packet it declines) against the Python path
(``MoldSequencer.accept`` and ``drain``, ``BlockScanner`` + ``BookSet`` + ``BookOutputs``), packet by packet over
the same packets in the same receive buffer, as the feed agent runs them: the same BookUpdates, market-state
slots, book counters and books (tests/support/fast_feed_pair.py), and the same sequencer: every slot, every
counter, every request sent.

Input: days of the simulated exchange (its matching engine and packer: the packets it sent) as sent, and
perturbed (lost packets recovered late or given up, duplicates, reordering, truncated and garbage packets,
heartbeats, packets of another session, sessions restarted, huge sequence numbers); hand-built edge cases.
"""
from __future__ import annotations

import random
import socket
import time

import pytest

from appliance.feed import fast
from appliance.feed.receiver import UdpReceiver
from appliance.feed.sequencer import RESTARTED, MoldSequencer
from appliance.wire import moldudp64

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="appliance.feed._book_fast is not built")

from fast_feed_pair import VENUE_PRICES, Pair, add, blocks, directory, venue_packets  # noqa: E402

SESSION = b"FASTDIFF01"
_pack_header = moldudp64.HEADER.struct.pack
_unpack_header = moldudp64.HEADER.struct.unpack_from
MS = 1_000_000


def _sequencer_state(seq: MoldSequencer) -> dict:
    """Every slot but the request callable (held packets by value)."""
    state = {name: getattr(seq, name) for name in MoldSequencer.__slots__ if name != "send_request"}
    state["_pending"] = dict(state["_pending"])
    state["_heap"] = sorted(state["_heap"])
    return state


class Paths:
    """The two feed paths side by side, one receive buffer each (reused, as the socket's)."""

    def __init__(self, symbols=tuple(VENUE_PRICES), **sequencer_args) -> None:
        sequencer_args.setdefault("session", SESSION)
        sequencer_args.setdefault("request_timeout_ns", 5 * MS)
        sequencer_args.setdefault("max_retries", 2)
        sequencer_args.setdefault("silence_ns", 100 * MS)
        self.pair = Pair(list(symbols))
        self.py_requests: list[bytes] = []
        self.c_requests: list[bytes] = []
        self.py_seq = MoldSequencer(send_request=self.py_requests.append, **sequencer_args)
        self.c_seq = MoldSequencer(send_request=self.c_requests.append, **sequencer_args)
        self.accept = self.pair.fast.bind_sequencer(self.c_seq)
        self.py_buffer, self.c_buffer = bytearray(65536), bytearray(65536)
        self.in_c = self.declined = self.restarts = 0
        self.now = 1_000 * MS
        self.packets = 0

    def close(self) -> None:
        self.accept = None
        self.pair.close()

    # the feed agent's _on_packet, on each side's books
    def _py_apply(self, buffer, start, nbytes, mold, rx) -> None:
        p = self.pair
        p.outputs.publish_packet(p.scanner.scan(buffer, start, nbytes, True), p.books, mold, rx)

    def _c_apply(self, buffer, start, nbytes, mold, rx) -> None:
        self.pair.fast.apply_packet(buffer, start, nbytes, mold, rx)

    @staticmethod
    def _sequenced(seq, buffer, nbytes, rx, now, live, apply, clear) -> int:
        skip = seq.accept(buffer, nbytes, rx, now, live)
        if skip >= 0:
            apply(buffer, seq.payload_offset, nbytes, seq.next_expected - 1, rx)
            if seq.pending:
                Paths._drain(seq, apply)
        elif skip == RESTARTED:
            clear()
        return skip

    @staticmethod
    def _drain(seq, apply) -> None:
        for packet, size, skipped, rx in seq.drain():
            _session, first, count = _unpack_header(packet, 0)
            apply(packet, moldudp64.block_offset(packet, size, skipped), size, first + count - 1, rx)

    def feed(self, data: bytes, live: bool = True, step_ns: int = 1_000) -> None:
        """One received packet through both paths, then everything compared."""
        self.now += step_ns
        self.packets += 1
        n = len(data)
        rx = self.now + 7
        self.py_buffer[:n] = data
        self.c_buffer[:n] = data
        skip = self._sequenced(self.py_seq, self.py_buffer, n, rx, self.now, live, self._py_apply,
                               self.pair.books.clear)
        if skip == RESTARTED:
            self.restarts += 1
        if self.accept(self.c_buffer, n, rx, live, self.now) >= 0:
            self.in_c += 1
        else:
            self.declined += 1
            self._sequenced(self.c_seq, self.c_buffer, n, rx, self.now, live, self._c_apply, self.pair.fast.clear)
        self.compare(f"packet {self.packets} ({data[:20].hex()}, {n} bytes, live {live})")

    def feed_socket(self, data: bytes, sender: socket.socket, receiver: UdpReceiver) -> None:
        """One packet over loopback as the agent takes it: ``receive_in_order`` (the receive and the in-order
        accept in one C call, its own clock) or, declined, the Python path on the receiver's buffer; the
        reference path gets the same bytes, receive time and clock."""
        self.packets += 1
        sender.sendto(data, receiver.address)
        deadline = time.monotonic() + 5
        while (n := self.pair.fast.receive_in_order()) == -1:
            assert time.monotonic() < deadline, "the datagram did not arrive"
        rx = receiver.rx_ns
        if n == fast.IN_ORDER_TAKEN:
            self.in_c += 1
            now = self.c_seq._now_ns
        else:
            assert n == len(data)
            self.declined += 1
            now = time.monotonic_ns()
            self._sequenced(self.c_seq, receiver.buffer, n, rx, now, True, self._c_apply, self.pair.fast.clear)
        self.now = now
        self.py_buffer[:len(data)] = data
        if self._sequenced(self.py_seq, self.py_buffer, len(data), rx, now, True, self._py_apply,
                           self.pair.books.clear) == RESTARTED:
            self.restarts += 1
        self.compare(f"packet {self.packets} over the socket ({data[:20].hex()}, {len(data)} bytes)")

    def poll(self, step_ns: int) -> None:
        """The slow path's re-request timeouts on both sides."""
        self.now += step_ns
        for seq, apply in ((self.py_seq, self._py_apply), (self.c_seq, self._c_apply)):
            if seq.poll(self.now):
                self._drain(seq, apply)
        self.compare(f"poll at {self.now}")

    def compare(self, where: str) -> None:
        py, c = self.pair.py_ring.take(), self.pair.c_ring.take()
        assert c == py, f"{where}: BookUpdates differ"
        self.pair.check(where)
        assert self.c_requests == self.py_requests, f"{where}: requests differ"
        assert self.c_seq.counter_values() == self.py_seq.counter_values(), f"{where}: counters differ"
        c_state, py_state = _sequencer_state(self.c_seq), _sequencer_state(self.py_seq)
        assert c_state == py_state, f"{where}: sequencer differs: " + ", ".join(
            f"{k} C {c_state[k]!r} py {py_state[k]!r}" for k in c_state if c_state[k] != py_state[k])


@pytest.fixture
def paths():
    p = Paths()
    yield p
    p.close()


def perturbed(packets: list[bytes], rng: random.Random):
    """The day's packets as a network and a hostile host might deliver them: (kind, packet or step_ns, live)."""
    lost: list[bytes] = []
    out = []
    i = 0
    while i < len(packets):
        packet = packets[i]
        roll = rng.random()
        if roll < 0.04:                                   # lost; answered late by the re-request server, or never
            lost.append(packet)
        elif roll < 0.07 and i + 1 < len(packets):        # reordered
            out += [("packet", packets[i + 1], True), ("packet", packet, True)]
            i += 1
        elif roll < 0.09:                                 # duplicated
            out += [("packet", packet, True), ("packet", packet, True)]
        elif roll < 0.10:                                 # truncated
            out += [("packet", packet[:rng.randrange(len(packet))], True), ("packet", packet, True)]
        elif roll < 0.11:                                 # garbage, and a block length gone wrong
            bent = bytearray(packet)
            if len(bent) > moldudp64.HEADER_SIZE + 1:
                bent[moldudp64.HEADER_SIZE + rng.randrange(2)] ^= 1 << rng.randrange(8)
            out += [("packet", rng.randbytes(rng.randrange(80)), True), ("packet", bytes(bent), True),
                    ("packet", packet, True)]
        elif roll < 0.12:                                 # a heartbeat, another session's packet
            _session, first, _count = _unpack_header(packet, 0)
            out += [("packet", moldudp64.heartbeat(SESSION, first + rng.randrange(3)), True),
                    ("packet", b"OTHERSESS1" + packet[10:], True), ("packet", packet, True)]
        else:
            out.append(("packet", packet, True))
        if lost and rng.random() < 0.3:                   # an answer to a re-request
            out.append(("packet", lost.pop(rng.randrange(len(lost))), False))
        if rng.random() < 0.05:                           # the slow path, now and then after a long wait
            out.append(("poll", rng.choice((MS, 2 * MS, 7 * MS)), None))
        i += 1
    out += [("packet", p, False) for p in lost]
    return out


# ---------------------------------------------------------------- days of the simulated exchange

@pytest.mark.parametrize("seed", [1, 2])
def test_venue_day_as_sent(paths, seed):
    """In order: nearly every packet goes through the C call (the first names nothing new: both paths pin the
    configured session) and the books, updates and sequencer agree with the Python path's."""
    paths.pair.publish_all()
    packets = venue_packets(seed, 3000)
    for packet in packets:
        paths.feed(packet)
    assert paths.in_c >= len(packets) - 2 and paths.c_seq.ended
    assert paths.c_seq.messages_delivered > 1000


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_venue_day_perturbed(seed):
    """Lost, late, reordered, duplicated, truncated, garbage and foreign packets, heartbeats, re-request timeouts
    and given-up gaps: the C call declines all that and both paths stay identical."""
    rng = random.Random(seed)
    paths = Paths()
    try:
        paths.pair.publish_all()
        for kind, item, live in perturbed(venue_packets(seed, 3000, max_payload=160), rng):
            if kind == "packet":
                paths.feed(item, live)
            else:
                paths.poll(item)
        s = paths.c_seq
        assert paths.in_c > 50 and paths.declined > 50
        assert s.gaps > 0 and s.duplicate_packets > 0 and s.bad_packets > 0 and s.wrong_session > 0
        assert s.requests_sent > 0 and s.messages_recovered > 0
    finally:
        paths.close()


def test_venue_day_given_up_gaps():
    """Gaps that are never answered: re-sent, given up (lost latched), the books rebuilt from sequence 1 by the
    agent's restart; the in-order packets after that go through the C call again."""
    rng = random.Random(9)
    paths = Paths(max_retries=1)
    try:
        packets = venue_packets(9, 2000, max_payload=160)
        cut = 2 * len(packets) // 3
        for i, packet in enumerate(packets[:cut]):
            if i % 40 == 39 and rng.random() < 0.7:
                continue                                  # lost for good
            paths.feed(packet)
            if i % 10 == 0:
                paths.poll(4 * MS)
        assert paths.c_seq.gaps_abandoned > 0 and paths.c_seq.lost
        for seq in (paths.py_seq, paths.c_seq):           # the agent's rebuild after a lost gap
            seq.restart(seq.session, seq.high_water, paths.now)
        paths.pair.books.clear()
        paths.pair.fast.clear()
        for packet in packets[:cut]:                      # the re-request server's answers, from sequence 1
            paths.feed(packet, live=False)
        assert not paths.c_seq.lost and not paths.c_seq.rebuilding
        in_c = paths.in_c
        for packet in packets[cut:]:
            paths.feed(packet)
        assert paths.in_c > in_c + 10
    finally:
        paths.close()


def test_session_restart_and_a_first_packet_that_names_the_session():
    """No configured session: the first packet names it (Python path), the rest go through C; the venue restarts
    under another name, the old one silent: the sequencer adopts it (RESTARTED, books cleared) on both paths."""
    paths = Paths(session=None)
    try:
        first = venue_packets(11, 1500, max_payload=300)
        second = venue_packets(12, 1500, session="RESTART002", max_payload=300)
        for packet in first[:-1]:                         # no end of session: a crash
            paths.feed(packet)
        half = len(second) // 2
        for packet in second[:half]:
            paths.feed(packet, step_ns=40 * MS)
        assert paths.restarts == 1 and paths.c_seq.session == b"RESTART002"
        for packet in second[:half]:                      # the rebuild from sequence 1, answered
            paths.feed(packet, live=False)
        in_c = paths.in_c
        for packet in second[half:]:
            paths.feed(packet)
        assert paths.c_seq.session_restarts == 1 and paths.in_c > in_c + 10 and paths.c_seq.ended
    finally:
        paths.close()


def test_snapshot_follower_skips_history():
    """``skip_history`` (GLIMPSE rebuilds): a late join jumps to the first packet seen (Python path), then C."""
    paths = Paths(skip_history=True)
    try:
        packets = venue_packets(13, 1500, max_payload=300)
        for packet in packets[len(packets) // 2:]:
            paths.feed(packet)
        assert paths.c_seq.origin > 1 and paths.in_c > 10
    finally:
        paths.close()


def test_receive_in_order_over_a_socket():
    """The agent's live path: each packet over loopback into a ``UdpReceiver``, received and taken in one C call
    (``receive_in_order``) or handed back for the Python path; perturbed days, and the answers to re-requests
    (not on the live socket) through ``accept_packet`` and the Python path."""
    rng = random.Random(21)
    paths = Paths()
    receiver = UdpReceiver("127.0.0.1", 0, source=("127.0.0.1", None))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    try:
        if receiver.c_receiver is None:
            pytest.skip("the compiled receive is not built")
        paths.pair.fast.bind_sequencer(paths.c_seq, receiver.c_receiver)
        paths.pair.publish_all()
        for kind, item, live in perturbed(venue_packets(21, 2000, max_payload=200), rng):
            if kind == "packet" and live:
                paths.feed_socket(item, sender, receiver)
            elif kind == "packet":
                paths.now = time.monotonic_ns()
                paths.feed(item, live)
            else:
                paths.now = time.monotonic_ns()
                paths.poll(item)
        assert paths.in_c > 50 and paths.declined > 20 and paths.c_seq.messages_recovered > 0
        assert receiver.packets > paths.in_c
    finally:
        sender.close()
        receiver.close()
        paths.close()


# ---------------------------------------------------------------- hand-built edges

def _packet(sequence: int, *messages: bytes, session: bytes = SESSION, count: int | None = None) -> bytes:
    return _pack_header(session, sequence, len(messages) if count is None else count) + blocks(*messages)


def test_edges(paths):
    day = [directory("AAPL", 1), add(1, 1, "B", 10, 100), add(1, 2, "S", 10, 101)]
    paths.feed(_packet(1, *day))
    paths.feed(_packet(4, add(1, 3, "B", 5, 100)))                              # in order: C
    assert paths.in_c == 2
    edges = [
        _packet(5, add(1, 4, "B", 5, 99), count=2),                                # blocks do not fill the packet
        _packet(5, add(1, 4, "B", 5, 99), add(1, 5, "B", 5, 98), count=1),         # bytes left after the blocks
        _packet(5, count=0),                                                       # heartbeat
        _packet(5, add(1, 4, "B", 5, 99))[:-1],                                    # truncated
        _packet(5, add(1, 4, "B", 5, 99))[:19],                                    # shorter than a header
        _packet(5, add(1, 4, "B", 5, 99), session=b"ELSEWHERE1"),                  # another session
        _packet(4, add(1, 3, "B", 5, 100), add(1, 4, "B", 5, 99)),                 # overlaps what was delivered
        _packet(6, b"", add(1, 5, "B", 5, 98)),                                    # a zero-length block: C
        _packet(8, add(1, 7, "B", 1, 97)),                                         # the next one: C
        _packet(2 ** 63 - 2, add(1, 8, "B", 1, 96)),                               # far ahead: a gap
        _packet(10, add(1, 9, "B", 1, 95)),                                        # inside the gap
        _packet(2 ** 63 - 1, count=0xFFFF),                                        # end of session
    ]
    for packet in edges:
        paths.feed(packet)
    assert paths.in_c == 4 and paths.c_seq.gap_open and paths.c_seq.ended
    paths.feed(_packet(9, add(1, 10, "B", 1, 94)), live=False)                  # an answer: fills some
    assert paths.c_seq.next_expected == 11
    paths.poll(10 * MS)


def test_sequence_numbers_beyond_int64_stay_on_the_python_path():
    """``next_expected`` past 2**63: the C call declines (it keeps its numbers in int64); Python delivers them."""
    paths = Paths(next_expected=2 ** 63 + 5)
    try:
        paths.feed(_packet(2 ** 63 + 5, directory("AAPL", 1), add(1, 1, "B", 1, 1)))
        paths.feed(_packet(2 ** 63 + 7, add(1, 2, "B", 1, 2)))
        paths.feed(_packet(2 ** 64 - 1, add(1, 3, "B", 1, 3)))                  # its end is 2**64: bad
        assert paths.in_c == 0 and paths.c_seq.next_expected == 2 ** 63 + 8 and paths.c_seq.bad_packets == 1
    finally:
        paths.close()


def test_bind_sequencer_refuses_what_has_no_slots():
    p = Pair(["AAPL"])
    try:
        class NoSlots:
            pass

        with pytest.raises(AttributeError):
            p.fast.bind_sequencer(NoSlots())

        class Shadowed(MoldSequencer):
            next_expected = 1                                                     # not the slot any more

        with pytest.raises(TypeError, match="next_expected is not a writable slot"):
            p.fast.bind_sequencer(Shadowed.__new__(Shadowed))
    finally:
        p.close()
