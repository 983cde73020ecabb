"""Venue time: ITCH 5.0 and OUCH 4.2 stamp messages in nanoseconds since (UTC) midnight.

The wire carries no date, so a reader puts a stamp on the calendar by a reference moment of its
own (when the message was received, when the session logged in). Both directions are defined
here once: the exchange stamps with ``ns_since_midnight``; the feed, the OMS and the audit read
stamps back with ``utc_midnight_ns`` and ``epoch_of_stamp``.
"""
from __future__ import annotations

import time

NS_PER_DAY = 86_400 * 1_000_000_000
NS_PER_HOUR = 3_600 * 1_000_000_000


def ns_since_midnight(epoch_ns: int) -> int:
    """The wire timestamp of an epoch time."""
    return epoch_ns % NS_PER_DAY


def utc_midnight_ns(now_ns: int | None = None) -> int:
    """Epoch ns of the last UTC midnight at ``now_ns`` (now when omitted)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    return now_ns - now_ns % NS_PER_DAY


def epoch_of_stamp(stamp_ns: int, reference_ns: int, ahead_ns: int = NS_PER_HOUR) -> int:
    """Epoch ns of a wire stamp, read on the day of ``reference_ns``, or on the day before when that
    would put it more than ``ahead_ns`` after the reference (stamped before midnight, read after)."""
    epoch_ns = reference_ns - reference_ns % NS_PER_DAY + stamp_ns
    if epoch_ns > reference_ns + ahead_ns:
        epoch_ns -= NS_PER_DAY
    return epoch_ns
