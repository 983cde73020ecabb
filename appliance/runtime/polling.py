"""Waiting for a condition by polling, with a deadline: the one loop behind every "wait until".

Callers that need the condition to hold (tests, the sandbox, ``appliance up``) poll with a
timeout instead of sleeping a fixed time; each decides what a timeout means (an assertion, a
``TimeoutError``, a start-up failure)."""
from __future__ import annotations

import time


def poll_until(predicate, timeout_s: float, interval_s: float = 0.01):
    """Call ``predicate`` every ``interval_s`` until it returns a truthy value, and return that
    value; None when ``timeout_s`` passed first (the predicate is called once more at the end)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval_s)
