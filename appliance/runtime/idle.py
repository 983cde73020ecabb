"""Idle strategies: what a duty cycle does when it found no work (after Agrona's IdleStrategy).

``idle(work)`` is called once per duty cycle with the work count; any work
resets the strategy. Chosen per process in the layout:

- ``busy_spin``: return at once. Only on an isolated core, one spinner per core.
- ``yield``: ``sched_yield`` when idle.
- ``backoff``: spin ``spins`` times, yield ``yields`` times, then park from
  ``min_park_ns`` doubling to ``max_park_ns``.
- ``sleep``: park ``sleep_ns`` when idle; an agent with sockets (``Agent.wait_fds``:
  the supervisor's control socket) parks in ``poll`` on them, so a request ends the nap.
- ``doorbell``: spin ``spins`` times, then announce sleep on the process's
  doorbell, re-check its input rings, and wait on the futex until a producer
  rings or ``park_timeout_ns`` passes (so timers and heartbeats still run),
  or sooner when the agent's next timer is due (``Agent.next_deadline_ns``).
  An agent that also reads sockets (``Agent.wait_fds``: the OMS's venue
  socket) cannot sleep on a futex: it announces a poll()ing sleep instead and
  waits in one ``poll`` on those sockets and its wake socket (an abstract unix
  datagram address its producers were given, ``wake_address``), so a ring and
  a socket each end the wait with no nap on the path.
  A process held back by a full output ring does not park on its doorbell:
  room comes from that ring's consumer, who rings no doorbell, so it naps
  ``BACKPRESSURE_NAP_NS`` and looks again.
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import socket
import time

from appliance.runtime import _shm
from appliance.runtime.counters import IdleStrategyId
from appliance.runtime.layout import IdleSpec

log = logging.getLogger(__name__)

PR_SET_TIMERSLACK = 29


def wake_address(layout_name: str, process: str) -> bytes:
    """The abstract unix datagram address a poll()ing consumer's producers send their wake byte to:
    named after the layout (unique per running appliance, like its /dev/shm segments) and the uid."""
    return f"\0{layout_name}.{os.getuid()}.doorbell.{process}".encode()


class WakeSocket:
    """The consumer's end of its pollable doorbell: a bound, non-blocking datagram socket.

    What arrives carries no data: one byte per wake, only ever a reason to re-check the rings.
    Anyone on the host may send to an abstract address; a stray byte costs one spurious wake."""

    def __init__(self, address: bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind(address)
        except OSError:
            self.sock.close()
            raise
        self._scratch = bytearray(64)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> int:
        """Read every queued wake byte; returns how many datagrams there were."""
        n = 0
        recv_into = self.sock.recv_into
        scratch = self._scratch
        while True:
            try:
                recv_into(scratch)
            except (BlockingIOError, InterruptedError):
                return n
            n += 1

    def close(self) -> None:
        self.sock.close()


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

    def close(self) -> None:
        """Release what waiting needed (the doorbell's wake socket)."""


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

    def __init__(self, sleep_ns: int, waiter=None):
        self.seconds = sleep_ns / 1e9
        self.wait_fds = getattr(waiter, "wait_fds", None)
        self._poller = select.poll()
        self._polled: tuple = ()

    def idle(self, work: int) -> None:
        if work > 0:
            return
        fds = self.wait_fds() if self.wait_fds is not None else ()
        if not fds:
            time.sleep(self.seconds)
            return
        if fds != self._polled:
            self._polled = _rewatch(self._poller, self._polled, fds)
        self._poller.poll(self.seconds * 1e3)      # ms; a readable socket (a request) ends the nap


def _rewatch(poller, old: tuple, new: tuple) -> tuple:
    """Point ``poller`` at the fds ``new`` instead of ``old`` (a closed fd may already be gone)."""
    for fd in old:
        try:
            poller.unregister(fd)
        except KeyError:
            pass
    for fd in new:
        poller.register(fd, select.POLLIN)
    return new


BACKPRESSURE_NAP_NS = 50_000
NO_WAKE_SOCKET_NAP_NS = 1_000_000   # the wake address was taken: poll the sockets, look at the rings each ms


class DoorbellIdle(IdleStrategy):
    """Sleep on a futex in shared memory, or in poll() beside the agent's sockets; producers of our
    input rings wake us either way."""
    id = IdleStrategyId.DOORBELL
    parks = True

    def __init__(self, doorbell: _shm.Doorbell, inputs: list[_shm.Ring], spins: int, park_timeout_ns: int,
                 outputs: list[_shm.Ring] | None = None, waiter=None, address: bytes | None = None):
        self.doorbell = doorbell
        self.inputs = inputs            # observer handles on the rings this process consumes
        self.outputs = outputs or []    # and on those it produces: full means wait for room, not for a ring
        self.max_spins = spins
        self.park_timeout_ns = park_timeout_ns
        self.spins = 0
        # The agent (or anything with wait_fds() and next_deadline_ns()); None: rings only, no timers.
        self.wait_fds = getattr(waiter, "wait_fds", None)
        self.next_deadline_ns = getattr(waiter, "next_deadline_ns", None)
        self.address = address          # where our producers send wake bytes (bound on first use)
        self.wake: WakeSocket | None = None
        self.wake_unavailable = False   # bind failed: never announce a poll()ing sleep
        self.poll_waits = 0             # waits in poll() (the futex's are counted by the doorbell)
        self.poll_timeouts = 0          # of them, ended by the timeout: nothing rang, no socket was readable
        self._poller = select.poll()
        self._polled: tuple = ()

    def _timeout_ns(self) -> int:
        timeout = self.park_timeout_ns
        if self.next_deadline_ns is not None:
            deadline = self.next_deadline_ns()
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic_ns())
        return timeout

    def _wake_socket(self) -> WakeSocket | None:
        if self.wake is None and not self.wake_unavailable and self.address is not None:
            try:
                self.wake = WakeSocket(self.address)
                self._poller.register(self.wake.fileno(), select.POLLIN)
            except OSError as exc:
                self.wake_unavailable = True
                log.warning("doorbell wake address %r unavailable (%s): rings are looked at every %.1f ms while "
                            "waiting on sockets", self.address, exc, NO_WAKE_SOCKET_NAP_NS / 1e6)
        return self.wake

    def _watch(self, fds: tuple) -> None:
        if fds != self._polled:
            self._polled = _rewatch(self._poller, self._polled, fds)

    def close(self) -> None:
        if self.wake is not None:
            self.wake.close()
            self.wake = None

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
        timeout_ns = self._timeout_ns()
        if timeout_ns <= 0:
            return                      # a timer is due: back to do_work
        fds = self.wait_fds() if self.wait_fds is not None else ()
        doorbell = self.doorbell
        if fds:
            self._watch(fds)
            wake = self._wake_socket()
            if wake is None:
                self._poller.poll(min(timeout_ns, NO_WAKE_SOCKET_NAP_NS) / 1e6)
                return
            doorbell.announce_poll()
        else:
            doorbell.announce()
        for ring in self.inputs:
            if ring.depth():
                doorbell.cancel()
                return
        if not fds:
            doorbell.wait(timeout_ns)
            return
        self.poll_waits += 1
        ready = self._poller.poll(timeout_ns / 1e6)     # ms, rounded up by Python; a ring or a socket ends it
        doorbell.settle()
        if not ready:
            self.poll_timeouts += 1
            return
        wake_fd = wake.fileno()
        for fd, _events in ready:
            if fd == wake_fd:
                # Every byte queued, this wake's and any late one from a wake that lost the race with a
                # cancel or a timeout: a byte left behind would end the next poll at once, and only once.
                wake.drain()
                break


def make_idle_strategy(spec: IdleSpec, doorbell: _shm.Doorbell | None = None,
                       inputs: list[_shm.Ring] | None = None, outputs: list[_shm.Ring] | None = None,
                       waiter=None, address: bytes | None = None) -> IdleStrategy:
    if spec.strategy == "busy_spin":
        return BusySpinIdle()
    if spec.strategy == "yield":
        return YieldIdle()
    if spec.strategy == "backoff":
        return BackoffIdle(spec.spins, spec.yields, spec.min_park_ns, spec.max_park_ns)
    if spec.strategy == "sleep":
        return SleepIdle(spec.sleep_ns, waiter)
    if spec.strategy == "doorbell":
        if doorbell is None:
            raise ValueError("the doorbell idle strategy needs the process's doorbell")
        return DoorbellIdle(doorbell, inputs or [], spec.spins, spec.park_timeout_ns, outputs, waiter, address)
    raise ValueError(f"unknown idle strategy {spec.strategy!r}")
