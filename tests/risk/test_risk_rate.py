"""The message rate: a sliding window exact at its edges; cancels count but are never blocked; a throttle
tripped again and again latches the kill switch. Time is injected (no sleeps)."""
from __future__ import annotations

from appliance.messages.codes import ALL_SYMBOLS, TIF_DAY, ControlEventKind, RiskReason, RiskState
from appliance.risk.rate import SlidingWindow
from appliance.risk.paper_market import limits_document
from risk_harness import B, CANCEL_ALL, NEW, NOW, REF, Harness

SECOND = 1_000_000_000


def test_window_admits_exactly_limit_events_in_any_window():
    window = SlidingWindow(3, SECOND)
    for t in (0, 10, 20):
        assert not window.full(t)
        window.record(t)
    assert window.full(20) and window.full(SECOND - 1)
    assert not window.full(SECOND)                 # the event at 0 is out of (SECOND - window, SECOND]
    window.record(SECOND)
    assert window.full(SECOND + 10 - 1)
    assert not window.full(SECOND + 10)
    assert window.count(SECOND + 5) == 3


def test_two_bursts_back_to_back_at_the_window_edge_do_not_double_the_rate():
    """Fixed one-second buckets would let 2 x limit through around a bucket boundary; a sliding window does not."""
    window = SlidingWindow(5, SECOND)
    admitted = []
    for t in [SECOND - 5 + i for i in range(5)] + [SECOND + i for i in range(5)]:
        if not window.full(t):
            window.record(t)
            admitted.append(t)
    assert len(admitted) == 5
    assert not window.full(2 * SECOND - 5)         # one window after the first burst began


def test_resized_window_keeps_the_most_recent_events():
    window = SlidingWindow(4, SECOND)
    for t in (1, 2, 3, 4):
        window.record(t)
    smaller = window.resized(2, SECOND)
    assert sorted(smaller.times) == [3, 4] and smaller.full(5)
    larger = window.resized(8, SECOND)
    assert not larger.full(5) and larger.count(5) == 4


def rate_harness(limit=3, **overrides) -> Harness:
    return Harness(limits_document(["AAPL", "MSFT", "SPY"], max_messages_per_second=limit, rate_window_ms=1000,
                                   max_identical_orders=1000, **overrides))


def test_orders_over_the_rate_are_denied_at_the_edge_of_the_window():
    h = rate_harness(3)
    assert [h.new(now=NOW + i) for i in range(3)] == [0, 0, 0]
    assert h.new(now=NOW + 3) == RiskReason.MESSAGE_RATE
    assert h.new(now=NOW + SECOND - 1) == RiskReason.MESSAGE_RATE
    assert h.new(now=NOW + SECOND) == 0                      # the first left the window
    assert h.new(now=NOW + SECOND) == RiskReason.MESSAGE_RATE
    assert h.new(now=NOW + SECOND + 1) == 0
    assert h.engine.throttled == 3


def test_denied_orders_do_not_count_as_messages_sent():
    h = rate_harness(2)
    assert h.new(now=NOW) == 0 and h.new(now=NOW) == 0
    for i in range(10):
        assert h.new(now=NOW + 1 + i) == RiskReason.MESSAGE_RATE
    assert h.new(now=NOW + SECOND) == 0


def test_cancels_are_counted_but_never_blocked():
    h = rate_harness(3)
    assert h.new(cid=1, now=NOW) == 0
    for i in range(5):                                       # over the rate: still out, counted as throttled
        assert h.cancel(1, now=NOW + 1 + i) == 0
    assert h.engine.cancels == 5 and h.engine.cancels_over_rate == 3
    assert h.new(now=NOW + 10) == RiskReason.MESSAGE_RATE    # the cancels filled the window
    assert h.new(now=NOW + SECOND + 2) == RiskReason.MESSAGE_RATE    # cancels at +3, +4, +5 still inside
    assert h.new(now=NOW + SECOND + 3) == 0                   # only two of them left inside the window


def test_replaces_count_in_the_window():
    h = rate_harness(2)
    assert h.new(cid=1, now=NOW) == 0
    assert h.replace(1, 200, cid=2, now=NOW + 1) == 0
    assert h.replace(2, 300, cid=3, now=NOW + 2) == RiskReason.UNKNOWN_ORDER
    assert h.new(now=NOW + 2) == RiskReason.MESSAGE_RATE


def test_a_throttle_tripped_repeatedly_latches_the_kill_switch():
    h = rate_harness(1, throttle_kill={"trips": 3, "window_ms": 10_000})
    assert h.new(now=NOW) == 0
    assert h.new(now=NOW + 1) == RiskReason.MESSAGE_RATE
    assert h.new(now=NOW + 2) == RiskReason.MESSAGE_RATE
    assert not h.engine.control.latched
    assert h.new(now=NOW + 3) == RiskReason.MESSAGE_RATE      # the third trip inside 10 s
    control = h.engine.control
    assert control.latched and control.kill_reason == "THROTTLE" and control.state == RiskState.HALTED
    assert ControlEventKind.KILL in [e[0] for e in control.take_events()]
    assert h.new(now=NOW + 20 * SECOND) == RiskReason.TRADING_HALTED
    assert h.cancel(1, now=NOW + 20 * SECOND) == 0


def test_throttle_trips_spread_wider_than_their_window_do_not_latch():
    h = rate_harness(1, throttle_kill={"trips": 3, "window_ms": 10_000})
    for k in range(6):
        t = NOW + k * 6 * SECOND                              # one trip every 6 s: never 3 inside 10 s
        assert h.new(now=t) == 0
        assert h.new(now=t + 1) == RiskReason.MESSAGE_RATE
    assert not h.engine.control.latched


def test_a_cancel_all_counts_as_the_cancels_it_will_send():
    """The OMS sends one cancel per open order of the strategy (in the symbol, or in all); a replace still
    pending is an open order of its own there. The window counts those cancels, not the one intent."""
    h = rate_harness(20)
    engine = h.engine
    early = NOW - 5 * SECOND                                  # the orders themselves have left the window
    for cid in (1, 2, 3):
        assert h.new(cid=cid, now=early) == 0                 # strategy 7, AAPL
    assert h.new(cid=4, symbol=1, price=4_200_000, now=early) == 0      # strategy 7, MSFT
    assert engine.decide(NEW, 5, 0, 0, B, 100, REF, TIF_DAY, 8, early) == 0        # strategy 8, AAPL
    assert h.replace(3, 200, cid=6, now=early) == 0           # pending: the OMS holds 3 and 6
    assert engine.rate.count(NOW) == 0
    assert engine.decide(CANCEL_ALL, 0, 0, 0, 0, 0, 0, 0, 7, NOW) == 0                # AAPL, strategy 7
    assert engine.rate.count(NOW) == 4                        # 1, 2, 3 and its pending replacement 6
    assert engine.decide(CANCEL_ALL, 0, 0, ALL_SYMBOLS, 0, 0, 0, 0, 7, NOW + 1) == 0
    assert engine.rate.count(NOW + 1) == 9                    # and again, plus MSFT's 4
    assert engine.decide(CANCEL_ALL, 0, 0, ALL_SYMBOLS, 0, 0, 0, 0, 9, NOW + 2) == 0  # strategy 9 has none
    assert engine.rate.count(NOW + 2) == 9


def test_a_cancel_all_over_the_rate_still_goes_out_and_fills_the_window():
    h = rate_harness(3)
    engine = h.engine
    for cid in (1, 2, 3):
        assert h.new(cid=cid, now=NOW - 5 * SECOND) == 0
    assert h.new(cid=4, now=NOW - SECOND + 1) == 0            # still inside the window at NOW
    assert engine.decide(CANCEL_ALL, 0, 0, ALL_SYMBOLS, 0, 0, 0, 0, 7, NOW) == 0
    assert engine.cancels_over_rate == 2                      # 1 + 4 cancels in a window of 3: the last 2 over
    assert h.new(now=NOW + 1) == RiskReason.MESSAGE_RATE
    assert h.new(now=NOW + SECOND) == 0
