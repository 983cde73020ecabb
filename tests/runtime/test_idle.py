"""The doorbell idle strategy: parks on its futex only when a ring producer can wake it."""
from __future__ import annotations

import mmap
import time

from appliance.runtime import _shm
from appliance.runtime.idle import BACKPRESSURE_NAP_NS, DoorbellIdle

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
