"""The idle strategies (``runtime/idle.py``): the doorbell parks on its futex only when a ring
producer can wake it; backoff, sleep, yield and busy spin wait as their layout spec says."""
from __future__ import annotations

import mmap
import os
import socket
import threading
import time

import pytest

from appliance.runtime import _shm
from appliance.runtime import idle as idle_module
from appliance.runtime.idle import (
    BACKPRESSURE_NAP_NS, BackoffIdle, BusySpinIdle, DoorbellIdle, SleepIdle, YieldIdle, make_idle_strategy,
)
from appliance.runtime.layout import IdleSpec
from appliance.runtime.polling import poll_until

SLOT, CAPACITY = 64, 8


def ring_pair():
    region = mmap.mmap(-1, _shm.RING_HEADER_SIZE + SLOT * CAPACITY)
    _shm.ring_format(region, 0, SLOT, CAPACITY)
    return region, _shm.Ring(region, 0, SLOT, CAPACITY, "p"), _shm.Ring(region, 0, SLOT, CAPACITY, "o")


def test_a_producer_held_back_by_a_full_output_ring_naps_instead_of_parking():
    """Found by the ring stress test under load: a producer whose only blocker was a full ring slept
    the whole park timeout on its doorbell (nobody rings a producer), 5 s a time."""
    doorbell_region = mmap.mmap(-1, 64)
    doorbell = _shm.Doorbell(doorbell_region, 0)
    _region, producer, observer = ring_pair()
    while producer.try_push(b"x" * SLOT):
        pass
    idle = DoorbellIdle(doorbell, inputs=[], spins=0, park_timeout_ns=5_000_000_000, outputs=[observer])
    started = time.monotonic_ns()
    idle.idle(0)
    assert doorbell.waits == 0                                          # never parked on the futex
    assert time.monotonic_ns() - started < 1_000_000_000                 # a nap, not the park timeout
    assert BACKPRESSURE_NAP_NS < 1_000_000


def test_with_room_in_its_outputs_it_parks_until_the_timeout():
    doorbell = _shm.Doorbell(mmap.mmap(-1, 64), 0)
    _region, _producer, observer = ring_pair()
    idle = DoorbellIdle(doorbell, inputs=[], spins=0, park_timeout_ns=20_000_000, outputs=[observer])
    idle.idle(0)
    assert doorbell.waits == 1


# ---------------------------------------------------------------- every strategy, in-process

class Calls:
    """Stands in for ``time.sleep`` and ``os.sched_yield``: records, never waits."""

    def __init__(self):
        self.sleeps: list[float] = []
        self.yields = 0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def sched_yield(self) -> None:
        self.yields += 1


@pytest.fixture
def calls(monkeypatch):
    recorded = Calls()
    monkeypatch.setattr(idle_module.time, "sleep", recorded.sleep)
    monkeypatch.setattr(idle_module.os, "sched_yield", recorded.sched_yield)
    return recorded


def test_backoff_spins_then_yields_then_parks_doubling_to_its_cap_and_work_starts_it_over(calls):
    idle = BackoffIdle(spins=3, yields=2, min_park_ns=1_000, max_park_ns=8_000)
    for _ in range(3):
        idle.idle(0)
    assert calls.yields == 0 and calls.sleeps == []                         # spinning
    idle.idle(0)
    idle.idle(0)
    assert calls.yields == 2 and calls.sleeps == []                         # yielding
    for _ in range(6):
        idle.idle(0)
    assert calls.sleeps == [1e-6, 2e-6, 4e-6, 8e-6, 8e-6, 8e-6]              # parks, doubling, capped
    idle.idle(1)                                                            # work: from the start again
    calls.sleeps.clear()
    for _ in range(6):
        idle.idle(0)
    assert calls.yields == 4 and calls.sleeps == [1e-6]


def test_sleep_and_yield_wait_only_when_there_was_no_work(calls):
    sleeper = SleepIdle(250_000)
    sleeper.idle(3)
    assert calls.sleeps == []
    sleeper.idle(0)
    assert calls.sleeps == [0.00025]
    yields = []
    yielder = YieldIdle()
    yielder.idle(1, _yield=lambda: yields.append(1))
    yielder.idle(0, _yield=lambda: yields.append(1))
    assert yields == [1]
    BusySpinIdle().idle(0)
    assert calls.sleeps == [0.00025] and calls.yields == 0                  # busy spin never gives up the core


def test_the_doorbell_spins_first_and_does_not_park_while_an_input_ring_has_messages():
    doorbell = _shm.Doorbell(mmap.mmap(-1, 64), 0)
    _region, producer, observer = ring_pair()
    idle = DoorbellIdle(doorbell, inputs=[observer], spins=2, park_timeout_ns=5_000_000_000)
    producer.try_push(b"x" * SLOT)               # a message arrived after the last poll found none
    started = time.monotonic_ns()
    idle.idle(0)
    idle.idle(0)
    assert doorbell.waits == 0 and not doorbell.asleep                      # still spinning
    idle.idle(0)
    assert doorbell.waits == 0 and not doorbell.asleep                      # announced, saw the message, cancelled
    assert time.monotonic_ns() - started < 1_000_000_000


def test_a_parked_doorbell_is_woken_by_a_producer_before_its_timeout():
    region = mmap.mmap(-1, 64)
    doorbell, producer_side = _shm.Doorbell(region, 0), _shm.Doorbell(region, 0)
    idle = DoorbellIdle(doorbell, inputs=[], spins=0, park_timeout_ns=20_000_000_000)

    def ring_when_asleep():
        poll_until(lambda: producer_side.asleep, 10)
        producer_side.ring()
    ringer = threading.Thread(target=ring_when_asleep, daemon=True)
    ringer.start()
    started = time.monotonic_ns()
    idle.idle(0)
    ringer.join(10)
    assert doorbell.waits == 1 and doorbell.wakeups == 1
    assert time.monotonic_ns() - started < 10_000_000_000                   # the ring, not the 20 s timeout


def test_work_resets_the_doorbells_spins():
    doorbell = _shm.Doorbell(mmap.mmap(-1, 64), 0)
    idle = DoorbellIdle(doorbell, inputs=[], spins=2, park_timeout_ns=1_000_000)
    idle.idle(0)
    idle.idle(0)
    idle.idle(5)
    idle.idle(0)
    idle.idle(0)
    assert doorbell.waits == 0
    idle.idle(0)
    assert doorbell.waits == 1


@pytest.mark.parametrize("spec,kind,parks", [
    (IdleSpec("busy_spin"), BusySpinIdle, False), (IdleSpec("yield"), YieldIdle, False),
    (IdleSpec("backoff", spins=7, yields=3, min_park_ns=10, max_park_ns=90), BackoffIdle, True),
    (IdleSpec("sleep", sleep_ns=5_000), SleepIdle, True), (IdleSpec("doorbell", spins=4), DoorbellIdle, True),
])
def test_the_layouts_idle_spec_builds_its_strategy_with_its_numbers(spec, kind, parks):
    made = make_idle_strategy(spec, doorbell=_shm.Doorbell(mmap.mmap(-1, 64), 0))
    assert type(made) is kind and made.parks is parks
    if kind is BackoffIdle:
        assert (made.max_spins, made.max_yields, made.min_park_ns, made.max_park_ns) == (7, 3, 10, 90)
    if kind is SleepIdle:
        assert made.seconds == 5e-6
    if kind is DoorbellIdle:
        assert made.max_spins == 4 and made.park_timeout_ns == spec.park_timeout_ns


def test_a_doorbell_spec_without_a_doorbell_or_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="needs the process's doorbell"):
        make_idle_strategy(IdleSpec("doorbell"))
    with pytest.raises(ValueError, match="unknown idle strategy 'nap'"):
        make_idle_strategy(IdleSpec("nap"))


# ---------------------------------------------------------------- the pollable doorbell (rings and sockets)

class SocketWaiter:
    """An agent's waiting surface: the sockets it reads and its next timer."""

    def __init__(self, fds=(), deadline_ns=None):
        self.fds = tuple(fds)
        self.deadline_ns = deadline_ns

    def wait_fds(self):
        return self.fds

    def next_deadline_ns(self):
        return self.deadline_ns


@pytest.fixture
def address(request):
    return idle_module.wake_address(f"test-{os.getpid()}-{request.node.name[:40]}", "consumer")


def test_a_socket_ends_a_poll_wait_long_before_the_park_timeout(address):
    """The OMS's venue answers used to wait out the 2 ms nap: now the socket itself ends the wait."""
    venue, peer = socket.socketpair()
    region = mmap.mmap(-1, 64)
    idle = DoorbellIdle(_shm.Doorbell(region, 0), inputs=[], spins=0, park_timeout_ns=20_000_000_000,
                        waiter=SocketWaiter([venue.fileno()]), address=address)
    try:
        threading.Timer(0.05, peer.send, (b"x",)).start()
        started = time.monotonic_ns()
        idle.idle(0)
        assert time.monotonic_ns() - started < 10_000_000_000
        assert idle.poll_waits == 1 and idle.poll_timeouts == 0
        assert not _shm.Doorbell(region, 0).asleep              # the announcement was withdrawn
    finally:
        idle.close()
        venue.close()
        peer.close()


def test_a_ring_producer_wakes_a_consumer_waiting_in_poll(address):
    venue, peer = socket.socketpair()
    # the producer rings the doorbell word in its own mapping: ring and doorbell share one
    mapping = mmap.mmap(-1, 128 + _shm.RING_HEADER_SIZE + SLOT * CAPACITY)
    _shm.ring_format(mapping, 128, SLOT, CAPACITY)
    producer = _shm.Ring(mapping, 128, SLOT, CAPACITY, "p", 0, address)
    observer = _shm.Ring(mapping, 128, SLOT, CAPACITY, "o")
    doorbell = _shm.Doorbell(mapping, 0)
    idle = DoorbellIdle(doorbell, inputs=[observer], spins=0, park_timeout_ns=20_000_000_000,
                        waiter=SocketWaiter([venue.fileno()]), address=address)

    def publish_when_asleep():
        poll_until(lambda: doorbell.asleep, 10, 0.001)
        producer.try_push(b"x" * 8)
    try:
        publisher = threading.Thread(target=publish_when_asleep, daemon=True)
        publisher.start()
        started = time.monotonic_ns()
        idle.idle(0)
        publisher.join(10)
        assert time.monotonic_ns() - started < 10_000_000_000
        assert producer.wake_sends == 1 and doorbell.wakeups == 1 and idle.poll_timeouts == 0
        assert idle.wake.drain() == 0                           # the wake byte was read with the wake
    finally:
        idle.close()
        venue.close()
        peer.close()


def test_a_late_wake_byte_costs_one_spurious_wake_and_no_more(address):
    """A producer that swapped the word just before the consumer cancelled sends its byte anyway: the
    next poll ends at once on it, drains it, and the one after waits again."""
    venue, peer = socket.socketpair()
    region = mmap.mmap(-1, 64)
    doorbell = _shm.Doorbell(region, 0)
    late_producer = _shm.Doorbell(region, 0, address)
    idle = DoorbellIdle(doorbell, inputs=[], spins=0, park_timeout_ns=50_000_000,
                        waiter=SocketWaiter([venue.fileno()]), address=address)
    try:
        idle._wake_socket()
        doorbell.announce_poll()
        late_producer.ring()                                    # swapped and sent...
        doorbell.cancel()                                       # ...while the consumer found work
        assert late_producer.wake_sends == 1
        idle.idle(0)                                            # ends at once on the stale byte
        assert idle.poll_timeouts == 0 and idle.wake.drain() == 0
        idle.idle(0)                                            # nothing left: waits its timeout
        assert idle.poll_timeouts == 1
    finally:
        idle.close()
        venue.close()
        peer.close()


def test_the_next_timer_shortens_the_wait_and_a_due_timer_skips_it(address):
    region = mmap.mmap(-1, 64)
    waiter = SocketWaiter(deadline_ns=time.monotonic_ns() + 20_000_000)
    idle = DoorbellIdle(_shm.Doorbell(region, 0), inputs=[], spins=0, park_timeout_ns=20_000_000_000,
                        waiter=waiter, address=address)
    started = time.monotonic_ns()
    idle.idle(0)                                                # the futex: no sockets
    assert time.monotonic_ns() - started < 10_000_000_000
    waiter.deadline_ns = time.monotonic_ns() - 1
    before = idle.doorbell.waits
    idle.idle(0)
    assert idle.doorbell.waits == before                        # due already: no wait at all


def test_a_taken_wake_address_falls_back_to_short_socket_polls(address, caplog):
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    squatter.bind(address)
    venue, peer = socket.socketpair()
    region = mmap.mmap(-1, 64)
    doorbell = _shm.Doorbell(region, 0)
    idle = DoorbellIdle(doorbell, inputs=[], spins=0, park_timeout_ns=20_000_000_000,
                        waiter=SocketWaiter([venue.fileno()]), address=address)
    try:
        started = time.monotonic_ns()
        idle.idle(0)
        assert time.monotonic_ns() - started < 10_000_000_000      # the short nap, not the park timeout
        assert idle.wake_unavailable and not doorbell.asleep       # never announced: producers send nothing
        assert "unavailable" in caplog.text
    finally:
        idle.close()
        squatter.close()
        venue.close()
        peer.close()


def _produce(mapping, address, total, seed):
    """Child process: publish ``total`` sequence numbers in random bursts, each after the consumer took
    the one before (a lost wake would then leave the ring waiting out the backstop), after a random
    pause of a few us, so the burst often lands between the consumer's last pop and its announcement."""
    import random
    rng = random.Random(seed)
    producer = _shm.Ring(mapping, 128, SLOT, CAPACITY, "p", 0, address)
    observer = _shm.Ring(mapping, 128, SLOT, CAPACITY, "o")
    sent = 0
    while sent < total:
        while observer.depth():
            os.sched_yield()
        for _ in range(rng.randint(1, 3)):
            if sent == total:
                break
            while not producer.try_push(sent.to_bytes(8, "little")):
                pass
            sent += 1
        pause = rng.random()            # most gaps are a few us: the consumer is between its last pop and
        if pause < 0.05:                # its announcement as often as possible
            time.sleep(rng.random() * 100e-6)
        elif pause < 0.15:
            os.sched_yield()
        elif pause < 0.85:
            spin_until = time.perf_counter_ns() + rng.randint(0, 8_000)
            while time.perf_counter_ns() < spin_until:
                pass


def test_no_wake_up_is_lost_between_a_producer_process_and_a_poll_waiting_consumer(address):
    """The announce / re-check / poll / settle protocol under a real race: every wait must end by a
    ring (or a stale byte), never by the park timeout, which is only the backstop."""
    total = 20000
    mapping = mmap.mmap(-1, 128 + _shm.RING_HEADER_SIZE + SLOT * CAPACITY)
    _shm.ring_format(mapping, 128, SLOT, CAPACITY)
    consumer = _shm.Ring(mapping, 128, SLOT, CAPACITY, "c")
    observer = _shm.Ring(mapping, 128, SLOT, CAPACITY, "o")
    venue, peer = socket.socketpair()
    idle = DoorbellIdle(_shm.Doorbell(mapping, 0), inputs=[observer], spins=0, park_timeout_ns=2_000_000_000,
                        waiter=SocketWaiter([venue.fileno()]), address=address)
    idle._wake_socket()                       # bound before the producer's first ring
    pid = os.fork()
    if pid == 0:
        try:
            _produce(mapping, address, total, 11)
        finally:
            os._exit(0)
    try:
        received = 0
        deadline = time.monotonic() + 120
        while received < total and time.monotonic() < deadline:
            n = 0
            while (record := consumer.try_pop()) is not None:
                assert int.from_bytes(record[:8], "little") == received + n
                n += 1
            received += n
            idle.idle(n)
        assert received == total
        assert idle.poll_waits > 100                            # it did park, many times
        assert idle.poll_timeouts == 0
    finally:
        os.kill(pid, 9) if received < total else None
        os.waitpid(pid, 0)
        idle.close()
        venue.close()
        peer.close()


def test_a_sleeper_with_sockets_is_woken_by_a_request_instead_of_sleeping_out_its_nap():
    """The supervisor slept its 10 ms nap (small profile) with a kill waiting on its control socket: a
    sleeper given the agent's sockets now naps in poll() on them, so the request ends the nap."""
    control, client = socket.socketpair()
    sleeper = make_idle_strategy(IdleSpec("sleep", sleep_ns=60_000_000_000), waiter=SocketWaiter([control.fileno()]))
    try:
        threading.Timer(0.05, client.send, (b"kill\n",)).start()
        started = time.monotonic_ns()
        sleeper.idle(0)                         # a 60 s nap without the socket
        assert time.monotonic_ns() - started < 30_000_000_000
        sleeper.idle(5)                         # work: no nap at all
        assert control.recv(16) == b"kill\n"
    finally:
        control.close()
        client.close()


def test_a_sleeper_without_sockets_still_sleeps(calls):
    sleeper = make_idle_strategy(IdleSpec("sleep", sleep_ns=250_000), waiter=SocketWaiter([]))
    sleeper.idle(0)
    assert calls.sleeps == [0.00025]
