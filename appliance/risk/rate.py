"""Sliding-window message counting: the last N message times in a ring, no buckets, no allocation.

A window admits a message at ``now`` when fewer than ``limit`` messages were recorded in
``(now - window, now]``: the ring holds the ``limit`` most recent times, so the oldest of them
decides. Exact at the edges (a message exactly ``window`` ns after the oldest is admitted),
unlike fixed one-second buckets, which let two full buckets through back to back.
"""
from __future__ import annotations


class SlidingWindow:
    """At most ``limit`` events in any ``window_ns``; ``record`` every event that happened."""

    __slots__ = ("limit", "window_ns", "times", "next_index", "recorded")

    def __init__(self, limit: int, window_ns: int):
        if limit < 1 or window_ns < 1:
            raise ValueError("a sliding window needs limit >= 1 and window_ns >= 1")
        self.limit = limit
        self.window_ns = window_ns
        self.times = [-(1 << 62)] * limit       # "long ago": an empty window admits
        self.next_index = 0                     # the slot of the oldest recorded time
        self.recorded = 0

    def full(self, now: int) -> bool:
        """True when another event now would make more than ``limit`` inside the window."""
        return now - self.times[self.next_index] < self.window_ns

    def record(self, now: int) -> None:
        """An event happened at ``now`` (also when it was let through over the limit, like a cancel)."""
        i = self.next_index
        self.times[i] = now
        i += 1
        self.next_index = 0 if i == self.limit else i
        self.recorded += 1

    def count(self, now: int) -> int:
        """Events inside ``(now - window, now]`` that the ring still holds (slow; for tests and gauges)."""
        return sum(1 for t in self.times if now - self.window_ns < t <= now)

    def resized(self, limit: int, window_ns: int) -> "SlidingWindow":
        """A window with new limits that remembers the most recent events (limits reload)."""
        fresh = SlidingWindow(limit, window_ns)
        ordered = self.times[self.next_index:] + self.times[:self.next_index]     # oldest first
        for t in ordered[-limit:]:
            if t > -(1 << 62):
                fresh.record(t)
        fresh.recorded = self.recorded
        return fresh
