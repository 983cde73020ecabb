"""The strategy's time: the host's clock, the event being handled, and timers in deadline order.

One clock for everything a strategy does with time: ``Clock.now_ns()`` is the host's injected
clock (``StrategyHost(clock_ns=...)``: ``time.time_ns`` live, the event time a backtest drives),
and timers fire against that same clock, so the same strategy code is correct live and in a
backtest. ``event_exchange_ns`` / ``event_rx_ns`` are the stamps of the event being handled (a book
update's ITCH time and its kernel receive time; a fill's venue time and the OMS's receive time),
0 outside a callback that has one.

Timers (``TimerQueue``): one-shot (``after``) and repeating (``every``), in nanoseconds here (the
``Strategy.schedule`` front takes seconds, float or int, or exact ``*_ns`` ints). They run in
deadline order (ties in the order they were scheduled), between other callbacks, on the
strategy's one thread; nothing runs concurrently with a callback. A repeating timer keeps its
phase (deadline + every, not now + every); when the host was busy past several periods it fires
once and resumes at the next period in the future (no burst of catch-up calls).
"""
from __future__ import annotations

import heapq
import math
import operator

NS_PER_S = 1_000_000_000
MAX_DELAY_NS = 366 * 24 * 3600 * NS_PER_S        # a year and a day: anything longer is a mistake
NEVER = 1 << 63                                  # TimerQueue.due_ns with nothing scheduled


class Clock:
    """The host's clock and the stamps of the event being handled (read-only for the strategy)."""

    __slots__ = ("_host",)

    def __init__(self, host):
        object.__setattr__(self, "_host", host)

    def __setattr__(self, name, value):
        raise AttributeError(f"Clock is read-only: cannot set {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"Clock is read-only: cannot delete {name!r}")

    def now_ns(self) -> int:
        """The host's time, epoch ns: wall time live, event time in a backtest."""
        return self._host.clock_ns()

    @property
    def event_exchange_ns(self) -> int:
        """The venue's time of the event being handled (a book update's ITCH timestamp, a fill's
        OUCH timestamp), epoch ns; 0 when the callback has no event (on_start, a timer)."""
        return self._host._event_exchange_ns

    @property
    def event_rx_ns(self) -> int:
        """When the event being handled reached us (a book update's kernel receive time, an
        execution report's OMS receive time), epoch ns; 0 when the callback has no event."""
        return self._host._event_rx_ns


def to_ns(seconds, what: str) -> int:
    """Seconds (int or float) as int ns; a clear error for anything else (user input)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be seconds as an int or float, got {type(seconds).__name__}")
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, got {seconds}")
    return int(round(seconds * NS_PER_S))


def check_ns(value, what: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int of nanoseconds, got {type(value).__name__}") from None
    return value


class Timer:
    """The handle ``Strategy.schedule`` returns: ``cancel()`` it; ``active`` until it has fired for
    the last time or was cancelled."""

    __slots__ = ("_callback", "_deadline_ns", "_every_ns", "_active", "_queue")

    def __init__(self, queue, callback, deadline_ns: int, every_ns: int):
        setter = object.__setattr__
        setter(self, "_queue", queue)
        setter(self, "_callback", callback)
        setter(self, "_deadline_ns", deadline_ns)
        setter(self, "_every_ns", every_ns)
        setter(self, "_active", True)

    def __setattr__(self, name, value):
        raise AttributeError(f"Timer is read-only: cannot set {name!r} (cancel() it and schedule another)")

    def __delattr__(self, name):
        raise AttributeError(f"Timer is read-only: cannot delete {name!r}")

    deadline_ns = property(operator.attrgetter("_deadline_ns"), doc="when it fires next (host clock, epoch ns)")
    every_ns = property(operator.attrgetter("_every_ns"), doc="its period (0: one-shot)")
    active = property(operator.attrgetter("_active"))

    def cancel(self) -> bool:
        """Stop it (it will not fire again); False when it was not active."""
        return self._queue.cancel(self)

    def __repr__(self) -> str:
        kind = f"every {self._every_ns} ns" if self._every_ns else "one-shot"
        return f"Timer({getattr(self._callback, '__name__', self._callback)!r}, {kind}, next {self._deadline_ns}, " \
               f"{'active' if self._active else 'done'})"


_SET_DEADLINE = Timer._deadline_ns.__set__
_SET_ACTIVE = Timer._active.__set__


class TimerQueue:
    """Timers by deadline (a heap of (deadline, sequence, timer)); the host runs the due ones."""

    def __init__(self):
        self._heap: list[tuple[int, int, Timer]] = []
        self._sequence = 0
        self.active = 0
        self.due_ns = NEVER       # the heap's first deadline (maybe of a cancelled timer): one int compare per
                                  # duty cycle says whether ``pop_due`` can have anything

    def add(self, callback, now_ns: int, after_ns: int, every_ns: int) -> Timer:
        if not callable(callback):
            raise TypeError(f"the timer's callback must be callable (it is called with now_ns), got "
                            f"{type(callback).__name__}")
        if every_ns < 0 or every_ns > MAX_DELAY_NS:
            raise ValueError(f"every must be > 0 and at most {MAX_DELAY_NS // NS_PER_S} s, got {every_ns} ns")
        if after_ns < 0 or after_ns > MAX_DELAY_NS:
            raise ValueError(f"after must be >= 0 and at most {MAX_DELAY_NS // NS_PER_S} s, got {after_ns} ns")
        timer = Timer(self, callback, now_ns + after_ns, every_ns)
        self._push(timer)
        self.active += 1
        return timer

    def _push(self, timer: Timer) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (timer._deadline_ns, self._sequence, timer))
        self.due_ns = self._heap[0][0]

    def cancel(self, timer: Timer) -> bool:
        if timer._queue is not self or not timer._active:
            return False
        _SET_ACTIVE(timer, False)          # left in the heap, skipped when it comes up
        self.active -= 1
        return True

    def next_deadline_ns(self) -> int | None:
        """The earliest deadline of an active timer (None: none)."""
        heap = self._heap
        while heap and not heap[0][2]._active:
            heapq.heappop(heap)
        self.due_ns = heap[0][0] if heap else NEVER
        return heap[0][0] if heap else None

    def pop_due(self, now_ns: int) -> Timer | None:
        """The next timer due at ``now_ns`` (re-armed first if it repeats), or None."""
        heap = self._heap
        while heap:
            deadline, _, timer = heap[0]
            if not timer._active:
                heapq.heappop(heap)
                continue
            if deadline > now_ns:
                self.due_ns = deadline
                return None
            heapq.heappop(heap)
            self.due_ns = heap[0][0] if heap else NEVER
            every = timer._every_ns
            if every:
                following = deadline + every
                if following <= now_ns:                     # late by whole periods: resume in phase
                    following += ((now_ns - following) // every + 1) * every
                _SET_DEADLINE(timer, following)
                self._push(timer)
            else:
                _SET_ACTIVE(timer, False)
                self.active -= 1
            return timer
        self.due_ns = NEVER
        return None

    def clear(self) -> None:
        """Every timer stops (the strategy stopped)."""
        for _, _, timer in self._heap:
            _SET_ACTIVE(timer, False)
        self._heap.clear()
        self.active = 0
        self.due_ns = NEVER
