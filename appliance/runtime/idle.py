"""Idle strategies: what a duty cycle does when it found no work (after Agrona's IdleStrategy).

``idle(work)`` is called once per duty cycle with the work count; any work
resets the strategy. Chosen per process in the layout:

- ``busy_spin``: return at once. Only on an isolated core, one spinner per core.
- ``yield``: ``sched_yield`` when idle.
- ``backoff``: spin ``spins`` times, yield ``yields`` times, then park from
  ``min_park_ns`` doubling to ``max_park_ns``.
- ``sleep``: park ``sleep_ns`` when idle.
- ``doorbell``: spin ``spins`` times, then announce sleep on the process's
  doorbell, re-check its input rings, and wait on the futex until a producer
  rings or ``park_timeout_ns`` passes (so timers and heartbeats still run).
  A process held back by a full output ring does not park on its doorbell:
  room comes from that ring's consumer, who rings no doorbell, so it naps
  ``BACKPRESSURE_NAP_NS`` and looks again.
"""
from __future__ import annotations

import ctypes
import os
import time

from appliance.runtime import _shm
from appliance.runtime.counters import IdleStrategyId
from appliance.runtime.layout import IdleSpec

PR_SET_TIMERSLACK = 29


def lower_timer_slack(slack_ns: int = 1) -> bool:
    """Ask the kernel not to round our short sleeps up to its default ~50 us slack."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(slack_ns), 0, 0, 0) == 0
    except OSError:
        return False


class IdleStrategy:
    id: IdleStrategyId
    parks = False           # whether it sleeps (then the runner lowers timer slack)

    def idle(self, work: int) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        pass


class BusySpinIdle(IdleStrategy):
    id = IdleStrategyId.BUSY_SPIN

    def idle(self, work: int) -> None:
        pass


class YieldIdle(IdleStrategy):
    id = IdleStrategyId.YIELD

    def idle(self, work: int, _yield=os.sched_yield) -> None:
        if work <= 0:
            _yield()


class BackoffIdle(IdleStrategy):
    id = IdleStrategyId.BACKOFF
    parks = True

    def __init__(self, spins: int, yields: int, min_park_ns: int, max_park_ns: int):
        self.max_spins = spins
        self.max_yields = yields
        self.min_park_ns = min_park_ns
        self.max_park_ns = max_park_ns
        self.reset()

    def reset(self) -> None:
        self.spins = 0
        self.yields = 0
        self.park_ns = self.min_park_ns

    def idle(self, work: int) -> None:
        if work > 0:
            if self.spins or self.yields or self.park_ns != self.min_park_ns:
                self.reset()
            return
        if self.spins < self.max_spins:
            self.spins += 1
        elif self.yields < self.max_yields:
            self.yields += 1
            os.sched_yield()
        else:
            time.sleep(self.park_ns / 1e9)
            self.park_ns = min(self.park_ns * 2, self.max_park_ns)


class SleepIdle(IdleStrategy):
    id = IdleStrategyId.SLEEP
    parks = True

    def __init__(self, sleep_ns: int):
        self.seconds = sleep_ns / 1e9

    def idle(self, work: int) -> None:
        if work <= 0:
            time.sleep(self.seconds)


BACKPRESSURE_NAP_NS = 50_000


class DoorbellIdle(IdleStrategy):
    """Sleep on a futex in shared memory; producers of our input rings wake us."""
    id = IdleStrategyId.DOORBELL
    parks = True

    def __init__(self, doorbell: _shm.Doorbell, inputs: list[_shm.Ring], spins: int, park_timeout_ns: int,
                 outputs: list[_shm.Ring] | None = None):
        self.doorbell = doorbell
        self.inputs = inputs            # observer handles on the rings this process consumes
        self.outputs = outputs or []    # and on those it produces: full means wait for room, not for a ring
        self.max_spins = spins
        self.park_timeout_ns = park_timeout_ns
        self.spins = 0

    def idle(self, work: int) -> None:
        if work > 0:
            self.spins = 0
            return
        if self.spins < self.max_spins:
            self.spins += 1
            return
        for ring in self.outputs:
            if ring.depth() >= ring.capacity:
                time.sleep(BACKPRESSURE_NAP_NS / 1e9)
                return
        doorbell = self.doorbell
        doorbell.announce()
        for ring in self.inputs:
            if ring.depth():
                doorbell.cancel()
                return
        doorbell.wait(self.park_timeout_ns)


def make_idle_strategy(spec: IdleSpec, doorbell: _shm.Doorbell | None = None,
                       inputs: list[_shm.Ring] | None = None, outputs: list[_shm.Ring] | None = None) -> IdleStrategy:
    if spec.strategy == "busy_spin":
        return BusySpinIdle()
    if spec.strategy == "yield":
        return YieldIdle()
    if spec.strategy == "backoff":
        return BackoffIdle(spec.spins, spec.yields, spec.min_park_ns, spec.max_park_ns)
    if spec.strategy == "sleep":
        return SleepIdle(spec.sleep_ns)
    if spec.strategy == "doorbell":
        if doorbell is None:
            raise ValueError("the doorbell idle strategy needs the process's doorbell")
        return DoorbellIdle(doorbell, inputs or [], spec.spins, spec.park_timeout_ns, outputs)
    raise ValueError(f"unknown idle strategy {spec.strategy!r}")
