"""The idle strategies (``runtime/idle.py``): the doorbell parks on its futex only when a ring
producer can wake it; backoff, sleep, yield and busy spin wait as their layout spec says."""
from __future__ import annotations

import mmap
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
