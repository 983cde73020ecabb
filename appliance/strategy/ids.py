"""Client order ids: unique for the whole day, across restarts of the strategy process, never 0.

The id is a counter that starts at the wall clock in microseconds since the epoch and never
falls behind it: every ``next()`` returns ``max(previous + 1, time.time_ns() // 1000)``.

Why this is unique across restarts without any state on disk: an id issued by one incarnation
is at most ``now_us + burst`` where ``burst`` is how many ids it issued faster than one per
microsecond and not yet caught up by the clock. Python cannot issue an intent in under a
microsecond for long (and the strategy-to-risk ring holds 4096), so the counter stays within
a few thousand microseconds of the clock; a restarted process starts at its own clock, which
is later than the dead one's by at least the time to exec Python and map the memory (tens of
milliseconds, i.e. tens of thousands of ids). Ids also increase across days, so they are
unique for the day a fortiori. The one way to collide is the wall clock stepping backwards by
more than that between two incarnations; risk and the OMS both refuse a duplicate client order
id (DUPLICATE_CLIENT_ID), so even then nothing is sent twice. The ids fit easily in the u64
field (about 1.8e15 today).
"""
from __future__ import annotations

import time


class ClientOrderIds:
    """Issues increasing client order ids that follow the wall clock (microseconds)."""

    __slots__ = ("_last", "_clock_ns")

    def __init__(self, floor: int = 0, clock_ns=time.time_ns):
        """``floor``: a value every id must exceed (e.g. the highest id seen before a restart)."""
        self._clock_ns = clock_ns
        self._last = max(int(floor), 0)

    def next(self) -> int:
        now_us = self._clock_ns() // 1000
        last = self._last + 1
        self._last = now_us if now_us > last else last
        return self._last

    @property
    def last(self) -> int:
        """The last id issued (or the floor before the first)."""
        return self._last
