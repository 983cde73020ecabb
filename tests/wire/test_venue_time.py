"""Venue time (wire/venue_time.py): stamps in ns since UTC midnight, put back on the calendar."""
from __future__ import annotations

from appliance.wire.venue_time import NS_PER_DAY, NS_PER_HOUR, epoch_of_stamp, ns_since_midnight, utc_midnight_ns

MIDNIGHT = 20_000 * NS_PER_DAY                  # some UTC midnight, as epoch ns
SECOND = 1_000_000_000


def test_a_stamp_round_trips_through_the_wire_on_its_own_day():
    moment = MIDNIGHT + 9 * NS_PER_HOUR + 123
    assert ns_since_midnight(moment) == 9 * NS_PER_HOUR + 123
    assert utc_midnight_ns(moment) == MIDNIGHT
    assert epoch_of_stamp(ns_since_midnight(moment), moment + 5 * SECOND) == moment


def test_a_stamp_from_before_midnight_read_after_it_is_yesterdays():
    read_at = MIDNIGHT + 2 * SECOND                  # 00:00:02
    stamp = NS_PER_DAY - SECOND                      # 23:59:59
    assert epoch_of_stamp(stamp, read_at) == MIDNIGHT - SECOND


def test_a_stamp_slightly_ahead_of_the_reader_stays_today_and_the_window_is_the_callers():
    read_at = MIDNIGHT + 10 * NS_PER_HOUR
    assert epoch_of_stamp(10 * NS_PER_HOUR + 30 * 60 * SECOND, read_at) == read_at + 30 * 60 * SECOND
    two_hours_ahead = 12 * NS_PER_HOUR
    assert epoch_of_stamp(two_hours_ahead, read_at) == MIDNIGHT - NS_PER_DAY + two_hours_ahead
    assert epoch_of_stamp(two_hours_ahead, read_at, ahead_ns=NS_PER_DAY // 2) == MIDNIGHT + two_hours_ahead
