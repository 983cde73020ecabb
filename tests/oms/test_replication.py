"""Journal replication, in this process: the OMS agent against a scripted venue, the standby (or a
raw socket playing one) polled in the same loop. The real-process tests are test_standby_process.py."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from appliance.messages.codes import ExecEvent, OmsReason
from appliance.oms import replication_wire as rw
from appliance.oms.config import parse_oms_params
from appliance.oms.journal_format import RECORD_HEADER, read_from, read_records
from appliance.oms.recovery import rebuild
from appliance.oms.standby import StandbyReplica
from appliance.sim.ports import free_port
from oms_rig import SYMBOLS, Setup, accept_all, drive


def replication_params(tmp_path: Path, port: int, **overrides) -> dict:
    return {"mode": "sync", "primary": {"host": "127.0.0.1", "port": port},
            "standby_journal": str(tmp_path / "standby" / "journal.bin"), "ack_limit_ms": 200,
            "heartbeat_ms": 20, "peer_timeout_ms": 2000, **overrides}


@pytest.fixture
def setup_factory(write_layout, unique_name, tmp_path):
    made = []

    def make(**replication) -> Setup:
        port = free_port(socket.SOCK_STREAM)
        setup = Setup(write_layout, unique_name, tmp_path, accept_all,
                      replication=replication_params(tmp_path, port, **replication))
        made.append(setup)
        return setup
    yield make
    for setup in made:
        setup.close()


def standby_of(setup: Setup) -> StandbyReplica:
    process = setup.rig.layout.processes["oms"]
    return StandbyReplica(parse_oms_params(process.params, setup.rig.layout.path), SYMBOLS, setup.rig.layout)


def journal_bytes(path: str, used: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(used)


def assert_identical(primary_path: str, standby: StandbyReplica) -> None:
    """The standby's file is the primary's, byte for byte, to its last record (and zeros after)."""
    used = standby.journal.used_bytes
    assert used > 4096
    assert journal_bytes(primary_path, used) == journal_bytes(standby.path, used)


def test_the_frame_reader_refuses_what_is_not_the_protocol():
    reader = rw.FrameReader((rw.SUBSCRIBE, rw.ACK))
    assert reader.feed(rw.ack(7)[:3]) == [] and reader.feed(rw.ack(7)[3:]) == [(rw.ACK, (7).to_bytes(8, "little"))]
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", rw.frame(rw.RECORDS, b"x" * 40), rw.frame(rw.ACK, b"1234"),
                    (10 << 20).to_bytes(4, "little") + bytes([rw.SUBSCRIBE]), b"\0\0\0\0A"):
        with pytest.raises(rw.ReplicationProtocolError):
            rw.FrameReader((rw.SUBSCRIBE, rw.ACK)).feed(garbage)


def test_sync_an_order_leaves_only_after_the_standby_acknowledged_its_record(setup_factory):
    setup = setup_factory(ack_limit_ms=5000)
    agent = setup.start()
    rig = setup.rig
    fake = socket.create_connection(("127.0.0.1", agent.replication.address[1]), timeout=5)
    try:
        fake.sendall(rw.subscribe(1, None))
        reader = rw.FrameReader((rw.HELLO, rw.RECORDS, rw.BEAT))
        received: list = []

        def take() -> bool:
            fake.settimeout(0.001)
            try:
                received.extend(reader.feed(fake.recv(1 << 16)))
            except socket.timeout:
                pass
            return True

        def last_record_sequence() -> int:
            records = [body for kind, body in received if kind == rw.RECORDS]
            if not records:
                return 0
            body = records[-1]
            found, end, why = read_from(body, len(body), 0, RECORD_HEADER.parse(body, 0).sequence, 1 << 20)
            assert end == len(body) and not why
            return found[-1].sequence

        # the fake standby acknowledges everything until the OMS is ready
        def acked_all() -> bool:
            take()
            if last_record_sequence():
                fake.sendall(rw.ack(last_record_sequence()))
            return rig.control.get("oms_ready") == 1
        drive(agent, acked_all, message="oms ready with a standby")
        assert received[0][0] == rw.HELLO
        rig.new(1, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: take() and last_record_sequence() == agent.journal.next_sequence - 1 and
            agent.sync_sends.held, message="the order's record streamed, its bytes held")
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:              # the standby says nothing: the order stays here
            agent.do_work()
        assert setup.venue.messages("O") == [] and len(agent.sync_sends.held) == 1
        fake.sendall(rw.ack(last_record_sequence()))
        drive(agent, lambda: len(setup.venue.messages("O")) == 1, message="the order at the venue after the ack")
        drive(agent, lambda: ExecEvent.ACCEPTED in rig.events(1), message="accepted")
    finally:
        fake.close()


@pytest.mark.parametrize("transport", ["tcp", "shm"])
def test_sync_without_a_standby_the_gate_closes_cancels_leave_and_a_standby_that_catches_up_reopens_it(
        setup_factory, transport):
    setup = setup_factory(ack_limit_ms=150, transport=transport)
    agent = setup.start()
    rig = setup.rig
    standby = standby_of(setup)
    try:
        drive(agent, lambda: rig.control.get("oms_ready") == 1 and agent.replication.caught_up, standby,
            message="ready with the standby caught up")
        rig.new(1, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: ExecEvent.ACCEPTED in rig.events(1), standby, message="order 1 accepted")
        standby.close()                                  # the link is cut
        drive(agent, lambda: rig.control.get("oms_ready") == 0, message="the gate closed without the standby")
        assert agent.gate.local_reason == OmsReason.NO_STANDBY
        rig.new(2, "MSFT", "B", 100, 4_200_000)
        drive(agent, lambda: ExecEvent.REJECTED_LOCALLY in rig.events(2), message="order 2 refused")
        assert rig.reports_of(2)[-1]["reason"] == OmsReason.NO_STANDBY
        rig.cancel(3, orig=1)
        drive(agent, lambda: len(setup.venue.messages("X")) == 1, message="the cancel left without a standby")
        drive(agent, lambda: ExecEvent.CANCELED in rig.events(1), message="order 1 canceled")
        assert rig.counter("oms.replication.ack_timeouts") >= 1
        # a standby again (the same journal: it asks from the record after its last and catches up)
        standby = standby_of(setup)
        assert standby.next_sequence > 1
        drive(agent, lambda: rig.control.get("oms_ready") == 1, standby, message="the gate reopened")
        rig.new(4, "SPY", "S", 100, 5_600_000)
        drive(agent, lambda: ExecEvent.ACCEPTED in rig.events(4), standby, message="order 4 accepted")
        drive(agent, lambda: agent.replication.caught_up and standby.next_sequence == agent.journal.next_sequence,
            standby, message="the standby caught up")
        assert_identical(setup.journal, standby)
        assert standby.connections == 1 and standby.bad_frames == 0
    finally:
        standby.close()


def test_sync_an_order_held_when_the_standby_goes_is_rejected_back_never_sent(setup_factory):
    setup = setup_factory(ack_limit_ms=150)
    agent = setup.start()
    rig = setup.rig
    fake = socket.create_connection(("127.0.0.1", agent.replication.address[1]), timeout=5)
    try:
        fake.sendall(rw.subscribe(1, None))
        fake.settimeout(0.001)

        def ack_everything() -> bool:          # a standby that acknowledges whatever the primary has
            try:
                fake.recv(1 << 16)
            except socket.timeout:
                pass
            fake.sendall(rw.ack(agent.replication.cursor_sequence - 1))
            return rig.control.get("oms_ready") == 1
        drive(agent, lambda: agent.replication.subscribed, message="subscribed")
        drive(agent, ack_everything, message="ready")
        rig.new(1, "AAPL", "B", 100, 1_900_000)          # and now the standby says nothing more
        drive(agent, lambda: ExecEvent.REJECTED_LOCALLY in rig.events(1), message="order 1 given back")
        assert rig.reports_of(1)[-1]["reason"] == OmsReason.NOT_SENT
        assert setup.venue.messages("O") == [] and rig.counter("oms.not_sent") == 1
    finally:
        fake.close()


@pytest.mark.parametrize("transport", ["tcp", "shm"])
def test_async_never_waits_and_the_standby_state_is_the_journal_replayed(setup_factory, transport):
    setup = setup_factory(mode="async", transport=transport)
    agent = setup.start()
    rig = setup.rig
    drive(agent, lambda: rig.control.get("oms_ready") == 1, message="ready without any standby")
    for i in range(1, 6):
        rig.new(i, SYMBOLS[i % 3], "B", 100 * i, 1_900_000)
    drive(agent, lambda: all(ExecEvent.ACCEPTED in rig.events(i) for i in range(1, 6)), message="accepted")
    standby = standby_of(setup)                          # attached late: catches up from the first record
    try:
        drive(agent, lambda: standby.next_sequence == agent.journal.next_sequence, standby, message="caught up")
        records, _found, _header = read_records(setup.journal)
        primary = rebuild(records, SYMBOLS)
        state = standby.state()
        assert (state.records, state.next_sequence_number, state.next_token_counter, state.session_name) == \
            (len(records), primary.next_sequence_number, primary.next_counter, primary.session_name)
        assert state.open_orders == 5 == agent.orders.open_orders
        assert sorted(standby.orders.by_token) == sorted(agent.orders.by_token)
        assert_identical(setup.journal, standby)
    finally:
        standby.close()


def test_the_standby_acknowledges_records_that_come_while_it_applies_before_it_applies_the_rest(setup_factory):
    """Records are applied after their acknowledgement, when no byte waits; bytes that come during that
    apply are read and acknowledged after the record being applied, not after all of those waiting
    (an order's acknowledgement would wait behind the state of every record before it)."""
    setup = setup_factory(mode="async")
    agent = setup.start()
    rig = setup.rig
    drive(agent, lambda: rig.control.get("oms_ready") == 1, message="ready")
    standby = standby_of(setup)
    try:
        drive(agent, lambda: standby.next_sequence == agent.journal.next_sequence, standby, message="caught up")
        standby.state()                                   # all applied so far
        for i in range(1, 6):
            rig.new(i, SYMBOLS[i % 3], "B", 100 * i, 1_900_000)
        drive(agent, lambda: all(ExecEvent.ACCEPTED in rig.events(i) for i in range(1, 6)), message="accepted")

        def read_only() -> bool:                          # written and acknowledged, none applied
            standby._read(time.monotonic_ns())
            return standby.next_sequence == agent.journal.next_sequence
        drive(agent, read_only, message="the standby holds the five orders")
        behind = standby._unapplied_records
        assert behind >= 10                               # ORDER_SENT and the acceptance of each
        written = standby.next_sequence
        rig.new(6, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: ExecEvent.ACCEPTED in rig.events(6) and agent.replication.cursor_sequence ==
              agent.journal.next_sequence and not standby._nothing_waiting(), message="the sixth on its way")
        came = agent.journal.next_sequence - written
        looks = iter([True])                              # poll's look: nothing yet; they come during the apply
        real = standby._nothing_waiting
        standby._nothing_waiting = lambda: next(looks, None) or real()
        standby.poll(0)
        assert standby.next_sequence == agent.journal.next_sequence      # read and acknowledged
        assert standby._unapplied_records == behind - 1 + came           # after one record applied, not all
        drive(agent, lambda: agent.replication.acked == agent.journal.next_sequence - 1, message="the ack")
        records, _found, _header = read_records(setup.journal)
        state = standby.state()                           # the rest, applied when the state is read
        assert state.records == len(records) and state.open_orders == 6 == agent.orders.open_orders
        assert sorted(standby.orders.by_token) == sorted(agent.orders.by_token)
    finally:
        standby.close()


def test_a_standby_with_standby_spin_us_polls_its_socket_then_sleeps_until_the_timeout(setup_factory):
    """TCP: polled without sleeping until the spin deadline (bytes then find it awake), select() after;
    the poll timeout bounds both."""
    setup = setup_factory(mode="async", standby_spin_us=50_000)
    agent = setup.start()
    drive(agent, lambda: setup.rig.control.get("oms_ready") == 1, message="ready")
    standby = standby_of(setup)
    try:
        assert standby.spin_ns == 50_000_000
        drive(agent, lambda: standby.next_sequence == agent.journal.next_sequence, standby, message="caught up")
        assert standby._wait_socket(0.02, time.monotonic_ns() + 10_000_000) is False     # nothing: the timeout
        assert standby._wait_socket(0.0, time.monotonic_ns() + 10_000_000) is False      # no time: no spin
        setup.rig.new(1, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: ExecEvent.ACCEPTED in setup.rig.events(1) and
              agent.replication.cursor_sequence == agent.journal.next_sequence, message="streamed")
        assert standby._wait_socket(5, time.monotonic_ns() + 5_000_000_000) is True
        standby.poll(0)
        assert standby.next_sequence == agent.journal.next_sequence
    finally:
        standby.close()


def test_sync_an_oms_stopping_with_orders_held_journals_them_not_sent(setup_factory):
    from appliance.oms.journal_records import NOT_SENT, RecordType
    setup = setup_factory(ack_limit_ms=5000)
    agent = setup.start()
    rig = setup.rig
    fake = socket.create_connection(("127.0.0.1", agent.replication.address[1]), timeout=5)
    try:
        fake.sendall(rw.subscribe(1, None))
        drive(agent, lambda: agent.replication.subscribed, message="subscribed")
        fake.sendall(rw.ack(agent.replication.cursor_sequence - 1))
        drive(agent, lambda: rig.control.get("oms_ready") == 1 or fake.sendall(
            rw.ack(agent.replication.cursor_sequence - 1)), message="ready")
        rig.new(1, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: agent.sync_sends.held, message="order 1 held")
        token = agent.sync_sends.held[0][3][1]
        agent.on_close()
        setup.agents.remove(agent)
    finally:
        fake.close()
    records, _found, _header = read_records(setup.journal)
    not_sent = [NOT_SENT.parse(r.payload) for r in records if r.type == RecordType.NOT_SENT]
    assert [n.token for n in not_sent] == [token] and setup.venue.messages("O") == []


def test_the_standby_drops_bad_bytes_from_whatever_answers_as_the_primary_and_keeps_its_journal(setup_factory):
    """A fake primary: a valid start, then a record with a broken CRC, one out of sequence, garbage;
    each closes the connection (counted) and the standby asks again from its last good record."""
    setup = setup_factory(mode="async")
    agent = setup.start()
    rig = setup.rig
    drive(agent, lambda: rig.control.get("oms_ready") == 1, message="ready")
    agent.on_close()                                     # its journal, finished, is what the fake primary serves
    setup.agents.remove(agent)
    records, found, _header = read_records(setup.journal)
    image = open(setup.journal, "rb").read()
    header, first = image[:4096], image[found.offsets[0]:found.offsets[1]]
    second = bytearray(image[found.offsets[1]:found.offsets[2]])
    corrupt = bytes(second[:-1]) + bytes([second[-1] ^ 0xFF]) if second[-1] else bytes(second[:40]) + b"\x01" + \
        bytes(second[41:])
    third = image[found.offsets[2]:found.offsets[3]]
    serve = [rw.hello(header, 1) + rw.records_header(len(first)) + first,        # good: record 1
             rw.hello(header, 2) + rw.records_header(len(corrupt)) + corrupt,    # a bit flipped in record 2
             rw.hello(header, 2) + rw.records_header(len(third)) + third,        # record 3 where 2 is due
             b"\xff" * 64,                                                       # not the protocol at all
             rw.hello(header, 5)]                                                # from where it is not
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    process = rig.layout.processes["oms"]
    params = {**process.params, "replication": {**process.params["replication"],
                                                "primary": {"host": "127.0.0.1", "port": port}}}
    standby = StandbyReplica(parse_oms_params(params, rig.layout.path), SYMBOLS)
    asked = []
    listener.settimeout(5)
    try:
        for answer in serve:
            standby.next_attempt_ns = 0
            standby.poll(0)                              # connects and subscribes
            conn, _ = listener.accept()
            conn.settimeout(5)
            reader, frames = rw.FrameReader((rw.SUBSCRIBE, rw.ACK)), []
            while not frames:
                frames = reader.feed(conn.recv(65536))
            asked.append(rw.parse_subscribe(frames[0][1])[0])
            conn.sendall(answer)
            deadline = time.monotonic() + 5
            while standby.sock is not None and standby.next_sequence == 1 and time.monotonic() < deadline:
                standby.poll(0.01)                       # the good record applied, or the bad bytes dropped
            conn.close()
            while standby.sock is not None and time.monotonic() < deadline:
                standby.poll(0.01)                       # the closed connection seen
            assert standby.sock is None
        assert asked == [1, 2, 2, 2, 2]
        assert standby.bad_frames == 4 and standby.next_sequence == 2
        assert journal_bytes(standby.path, found.offsets[1]) == image[:found.offsets[1]]
        assert journal_bytes(standby.path, 4096 * 4)[found.offsets[1]:] == bytes(4096 * 4 - found.offsets[1])
    finally:
        standby.close()
        listener.close()


def test_bytes_the_kernel_did_not_take_go_first_even_while_the_journal_grows(setup_factory):
    """A standby slow to read: the primary keeps what the socket refused and sends it before newer
    records, at once when the standby reads again (not at the next heartbeat, 30 s away here)."""
    from appliance.oms import journal_records as jr
    from appliance.oms.journal_records import RecordType
    setup = setup_factory(mode="async", heartbeat_ms=30_000, peer_timeout_ms=60_000)
    agent = setup.start()
    rig = setup.rig
    fake = socket.socket()
    fake.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    fake.connect(("127.0.0.1", agent.replication.address[1]))
    try:
        fake.sendall(rw.subscribe(1, None))
        drive(agent, lambda: agent.replication.subscribed and rig.control.get("oms_ready") == 1, message="ready")
        agent.replication.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)   # full after a few KiB
        payload = jr.CONTROL.pack(kind=jr.ControlKind.GATE_CHANGED, state=1, detail=b"x" * 16)
        drive(agent, lambda: agent.guard.record(RecordType.CONTROL, payload, time.time_ns()) and
            agent.replication._out, message="the socket refusing bytes")
        agent.guard.record(RecordType.CONTROL, payload, time.time_ns())      # and the journal grows behind them
        reader, sequences = rw.FrameReader((rw.HELLO, rw.RECORDS, rw.BEAT)), []
        fake.settimeout(0.001)

        def everything_arrived() -> bool:
            try:
                for kind, body in reader.feed(fake.recv(1 << 20)):
                    if kind == rw.RECORDS:
                        found, _end, _why = read_from(body, len(body), 0, RECORD_HEADER.parse(body, 0).sequence,
                                                      1 << 20)
                        sequences.extend(r.sequence for r in found)
            except socket.timeout:
                pass
            return sequences and sequences[-1] == agent.journal.next_sequence - 1
        drive(agent, everything_arrived, timeout=10, message="every record at the standby")
        assert sequences == list(range(1, agent.journal.next_sequence))
    finally:
        fake.close()


def test_sync_without_standby_trade_sends_unprotected_until_a_standby_has_caught_up(setup_factory):
    setup = setup_factory(ack_limit_ms=150, without_standby="trade")
    agent = setup.start()
    rig = setup.rig
    drive(agent, lambda: rig.control.get("oms_ready") == 1, message="ready without a standby (trade)")
    rig.new(1, "AAPL", "B", 100, 1_900_000)
    drive(agent, lambda: ExecEvent.ACCEPTED in rig.events(1), message="order 1 accepted, unprotected")
    assert agent.sync_sends.unprotected and agent.sync_sends.unprotected_sends == 1
    standby = standby_of(setup)
    try:
        drive(agent, lambda: not agent.sync_sends.unprotected, standby, message="protected once caught up")
        rig.new(2, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: agent.sync_sends.held, standby, message="order 2 held for the standby")
        drive(agent, lambda: ExecEvent.ACCEPTED in rig.events(2), standby, message="order 2 accepted")
        assert agent.sync_sends.unprotected_sends == 1 and rig.control.get("oms_ready") == 1
    finally:
        standby.close()


class AckingStandby:
    """A raw socket playing the standby in a thread: it reads the primary's frames and, while ``acking``,
    acknowledges each RECORDS frame's last record at once (perf_counter time of each ack kept)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(rw.subscribe(1, None))
        self.acking = True
        self.last_sequence = 0
        self.acked: list[tuple[int, int]] = []      # (sequence, perf_counter_ns just before the ACK was sent)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = rw.FrameReader((rw.HELLO, rw.RECORDS, rw.BEAT))
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                data = None
            except OSError:
                return
            if data == b"":
                return
            for kind, body in reader.feed(data or b""):
                if kind == rw.RECORDS:
                    found, _end, _why = read_from(body, len(body), 0, RECORD_HEADER.parse(body, 0).sequence, 1 << 20)
                    self.last_sequence = found[-1].sequence
            if self.acking and self.last_sequence and (not self.acked or self.acked[-1][0] < self.last_sequence):
                self.acked.append((self.last_sequence, time.perf_counter_ns()))
                self.sock.sendall(rw.ack(self.last_sequence))

    def close(self) -> None:
        self._stop = True
        self._thread.join(10)
        self.sock.close()


@contextlib.contextmanager
def waiting_for_acks(setup_factory):
    """(setup, agent, standby): a sync OMS that waits up to a second for each order's acknowledgement where it
    sends (``ack_spin_us``), ready with a standby that acknowledges every record; the standby closed after."""
    setup = setup_factory(ack_limit_ms=5000, ack_spin_us=1_000_000)
    agent = setup.start()
    standby = AckingStandby(agent.replication.address[1])
    try:
        drive(agent, lambda: setup.rig.control.get("oms_ready") == 1, message="oms ready with a standby")
        yield setup, agent, standby
    finally:
        standby.close()


def test_sync_an_order_acknowledged_while_the_oms_waits_for_it_leaves_from_that_wait_never_before(setup_factory):
    """ack_spin_us: the sender waits for the acknowledgement where it sends (no duty cycle, no hold);
    the bytes still leave only after the standby acknowledged the order's ORDER_SENT."""
    with waiting_for_acks(setup_factory) as (setup, agent, standby):
        agent.session.stamp_sends = True
        sync = agent.sync_sends
        setup.rig.new(1, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: sync.held_total == 1, message="the order sent")
        assert sync.released_waiting == 1 and not sync.held
        sequence = agent.journal.next_sequence - 1
        assert [t for s, t in standby.acked if s >= sequence][0] < agent.session.t_handed_ns   # acked, then sent
        drive(agent, lambda: len(setup.venue.messages("O")) == 1, message="the order at the venue")


def test_sync_orders_read_together_are_streamed_together_not_each_waiting_for_its_acknowledgement(setup_factory):
    """With another order waiting in the ring the sender does not wait for the acknowledgement: a burst's
    records go out at once and the duty cycle releases them as acknowledged (waiting would serialise
    them, a round trip each, and a standby acknowledging at once would release each from its wait)."""
    with waiting_for_acks(setup_factory) as (setup, agent, _standby):
        sync = agent.sync_sends
        for client in (1, 2, 3):
            setup.rig.new(client, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: sync.held_total == 3, message="the three orders read")
        drive(agent, lambda: len(setup.venue.messages("O")) == 3, message="the three at the venue")
        assert sync.released_waiting == 0 and not sync.held
