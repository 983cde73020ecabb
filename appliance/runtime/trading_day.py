"""The trading day a moment belongs to (local calendar date as YYYYMMDD).

The OMS journal and risk's persisted state both start afresh on a new trading day and carry over
within one: they must agree on what a day is, so it is defined here once.
"""
from __future__ import annotations

import time


def trading_day_of(epoch_ns: int) -> int:
    t = time.localtime(epoch_ns // 1_000_000_000)
    return t.tm_year * 10000 + t.tm_mon * 100 + t.tm_mday
