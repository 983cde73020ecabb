"""The background flow against the real matching engine: reproducible, its record of its own live
orders exact, every event type the engine can emit, bounded books that follow fair value."""
from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from appliance.exchange.events import (
    Accepted, AddOrder, CancelReject, Canceled, Executed, OrderCancel, OrderDelete, OrderExecuted, OrderReplace,
    Rejected, Replaced, Trade,
)
from appliance.exchange.matching import MARKET, MatchingEngine
from appliance.exchange.participants import BackgroundFlow

FIRM = "BGND"
TICK = 100
PRICES = {"AAPL": 1_900_000, "MSFT": 4_200_000, "SPY": 5_600_000, "QQQ": 4_800_000, "TSLA": 2_500_000}
DAY_STEPS = 50_000
CHECKPOINTS = 10


def engine_live(engine: MatchingEngine, symbol: str, firm: str = FIRM) -> dict[str, tuple[str, int, int]]:
    """The engine's resting orders of ``firm`` in ``symbol``: token -> (side, price, leaves)."""
    return {o.token: (o.side, o.price, o.leaves) for o in engine.book(symbol).resting().values() if o.firm == firm}


def new_flow(**kw) -> BackgroundFlow:
    args = dict(rate=2000, seed=11)
    args.update(kw)
    return BackgroundFlow(PRICES, **args)


# ---------------------------------------------------------------- one simulated day, shared

class Day:
    def __init__(self) -> None:
        self.engine = MatchingEngine(PRICES)
        self.flow = new_flow()
        self.events: list = []
        self.mismatches: list = []
        self.checked = 0
        self.two_sided = 0              # steps after which the stepped symbol's book had both sides
        step = self.flow.step
        books = self.engine.books
        chunk = DAY_STEPS // CHECKPOINTS
        for _ in range(CHECKPOINTS):
            for _ in range(chunk):
                self.events += step(self.engine)
                book = books[self.flow.last_symbol]
                if book.bid_side.keys and book.ask_side.keys:
                    self.two_sided += 1
            for symbol in PRICES:
                self.checked += 1
                if self.flow.live(symbol) != engine_live(self.engine, symbol):
                    self.mismatches.append((len(self.events), symbol))


@pytest.fixture(scope="module")
def day() -> Day:
    return Day()


def test_the_live_record_equals_the_engine_at_every_checkpoint(day):
    assert day.checked == CHECKPOINTS * len(PRICES)
    assert day.mismatches == []
    assert sum(len(day.flow.live(s)) for s in PRICES) == len(day.engine.firms[FIRM].live)


def test_every_event_type_the_engine_can_emit(day):
    kinds = Counter(type(e) for e in day.events)
    for kind in (OrderExecuted, OrderDelete, OrderCancel, OrderReplace, Trade, Accepted, Executed, Canceled, Replaced):
        assert kinds[kind] > 0, kind.__name__
    attributions = Counter(e.attribution for e in day.events if type(e) is AddOrder)
    assert attributions[None] > 0 and attributions[FIRM] > 0
    # about 5 % of passive orders attributable, 5 % hidden, among those that rest displayed
    entered = Counter(e.display for e in day.events if type(e) is Accepted and e.tif != 0)
    passive = sum(entered.values())
    assert 0.035 < entered["A"] / passive < 0.065 and 0.035 < entered["N"] / passive < 0.065


def test_no_rejects_in_normal_running(day):
    assert not [e for e in day.events if type(e) in (Rejected, CancelReject)]
    assert day.flow.counters["rejected"] == 0 and day.flow.counters["idle"] == 0


def test_the_operation_mix(day):
    c = day.flow.counters
    assert sum(c[k] for k in ("enter", "cancel", "replace", "marketable")) == DAY_STEPS
    share = {k: c[k] / DAY_STEPS for k in ("enter", "cancel", "replace", "marketable")}
    # cancels or replaces with nothing live fall back to entries, so those move a little
    assert 0.50 < share["enter"] < 0.62 and 0.20 < share["cancel"] < 0.30
    assert 0.04 < share["replace"] < 0.06 and 0.14 < share["marketable"] < 0.16
    # 1 in 5 cancels only reduces (when the order holds 2+ lots); hidden ones leave no ITCH 'X'
    reduced = sum(1 for e in day.events if type(e) is OrderCancel)
    assert 0.08 < reduced / c["cancel"] < 0.25


def test_prices_are_positive_multiples_of_the_tick_and_tokens_unique(day):
    tokens = []
    for e in day.events:
        if type(e) in (Accepted, Replaced):
            assert e.firm == FIRM
            assert e.price == MARKET or (e.price > 0 and e.price % TICK == 0), e
            assert e.shares > 0 and e.shares % 100 == 0
            tokens.append(e.token)
        elif type(e) in (AddOrder, OrderReplace, Executed, Trade):
            assert e.price > 0 and e.price % TICK == 0, e
    assert len(tokens) == len(set(tokens)) == day.flow.counters["enter"] + day.flow.counters["marketable"] + \
        day.flow.counters["replace"]
    assert max(map(len, tokens)) <= 14
    for symbol in PRICES:
        assert day.flow.fair_value(symbol) % TICK == 0 and day.flow.fair_value(symbol) >= 10 * TICK


def test_the_books_follow_fair_value(day):
    """At 1 bp a step the walk can run over one side of a book for a moment (takers and new
    orders clear the stale side; the next entry refills it), so two-sidedness is measured."""
    assert day.two_sided / DAY_STEPS > 0.9
    for symbol in PRICES:
        book = day.engine.book(symbol)
        fair = day.flow.fair_value(symbol)
        touches = [p for p in (book.best_bid(), book.best_ask()) if p is not None]
        assert touches, symbol
        assert all(abs(p - fair) < 0.05 * fair for p in touches), (symbol, fair, touches)
        assert abs(fair - PRICES[symbol]) < 0.2 * PRICES[symbol]
        assert len(day.flow.live(symbol)) <= 200


# ---------------------------------------------------------------- reproducibility

def test_same_seed_same_events_different_seed_different():
    state = random.getstate()

    def events(seed: int, global_seed: int) -> list:
        random.seed(global_seed)            # the flow must not care about the global generator
        engine = MatchingEngine(PRICES)
        return new_flow(seed=seed).run(engine, 20_000)

    first = events(5, 1)
    assert first == events(5, 2)
    assert first != events(6, 1)
    random.setstate(state)


def test_the_flow_never_touches_the_global_generator():
    state = random.getstate()
    new_flow(seed=1).run(MatchingEngine(PRICES), 2000)
    assert random.getstate() == state


def test_arrivals_do_not_shift_the_operations():
    """The server draws arrivals on a clock it does not control; the engine calls stay the same."""
    plain = new_flow(seed=8).run(MatchingEngine(PRICES), 3000)
    engine, flow = MatchingEngine(PRICES), new_flow(seed=8)
    interleaved: list = []
    for i in range(3000):
        flow.arrivals(1_000_000 + i)
        interleaved += flow.step(engine)
    assert plain == interleaved


# ---------------------------------------------------------------- limits, halts, other firms

def test_never_more_than_max_resting_per_symbol():
    engine, flow = MatchingEngine(PRICES), new_flow(seed=4, volatility_bp=0.1, max_resting_per_symbol=25)
    reached = set()
    for _ in range(10_000):
        flow.step(engine)
        symbol = flow.last_symbol
        n = sum(1 for o in engine.book(symbol).orders.values() if o.firm.name == FIRM)
        assert n <= 25 and len(flow.live(symbol)) == n
        if n == 25:
            reached.add(symbol)
    assert reached == set(PRICES)       # the cap was binding, not just never reached
    assert flow.counters["rejected"] == 0


def test_max_resting_zero_rests_nothing():
    engine, flow = MatchingEngine(PRICES), new_flow(max_resting_per_symbol=0)
    events = flow.run(engine, 2000)
    assert not any(type(e) in (AddOrder, Rejected, CancelReject) for e in events)
    assert all(engine.book(s).resting() == {} for s in PRICES)


def test_a_tiny_price_and_a_wild_walk_stay_valid():
    prices = {"PENNY": 500, "BIG": 1_999_990_000}
    engine = MatchingEngine(prices)
    flow = BackgroundFlow(prices, rate=1, seed=2, volatility_bp=500.0)
    events = flow.run(engine, 5000)
    assert not [e for e in events if type(e) in (Rejected, CancelReject)]
    for symbol in prices:
        assert flow.fair_value(symbol) >= 10 * TICK and flow.fair_value(symbol) % TICK == 0
        assert flow.live(symbol) == engine_live(engine, symbol)


def test_in_a_halted_symbol_the_flow_only_cancels():
    engine, flow = MatchingEngine(PRICES), new_flow(seed=9)
    flow.run(engine, 3000)
    engine.halt("AAPL")
    for _ in range(3000):
        events = flow.step(engine)
        if flow.last_symbol == "AAPL":
            assert all(type(e) in (Canceled, OrderDelete, OrderCancel) for e in events), events
    assert flow.counters["rejected"] == 0
    assert flow.live("AAPL") == engine_live(engine, "AAPL")
    assert flow.counters["idle"] > 0 or flow.live("AAPL")   # drained, then idle
    engine.resume("AAPL")
    flow.run(engine, 1000)
    assert flow.live("AAPL") == engine_live(engine, "AAPL") != {}


def test_observe_keeps_the_record_exact_when_another_firm_trades_with_the_flow():
    engine, flow = MatchingEngine(PRICES), new_flow(seed=12)
    flow.run(engine, 2000)
    for i, symbol in enumerate(PRICES):
        book = engine.book(symbol)
        flow.observe(engine.enter("MM", f"b{i}", symbol, "B", 700, book.best_ask() + 5 * TICK, 0))
        flow.observe(engine.enter("MM", f"s{i}", symbol, "S", 700, book.best_bid() - 5 * TICK, 0))
    flow.observe(engine.cancel_all(symbol="SPY"))
    for symbol in PRICES:
        assert flow.live(symbol) == engine_live(engine, symbol)
    assert flow.live("SPY") == {}
    flow.run(engine, 2000)
    assert flow.counters["rejected"] == 0
    assert all(flow.live(s) == engine_live(engine, s) for s in PRICES)


def test_a_stale_record_heals_on_cancel_reject():
    """Fills the flow was never told of: the engine's Cancel Reject drops the token for good."""
    engine, flow = MatchingEngine(["AAPL"]), BackgroundFlow({"AAPL": 1_900_000}, rate=1, seed=1)
    flow.run(engine, 500)
    engine.cancel_all(firm=FIRM)                    # not observed
    events = flow.run(engine, 500)
    assert any(type(e) is CancelReject for e in events)
    assert flow.counters["rejected"] > 0
    engine.cancel_all(firm=FIRM)
    flow.run(engine, 500)
    flow.observe(engine.cancel_all(firm=FIRM))
    assert flow.live("AAPL") == engine_live(engine, "AAPL") == {}


# ---------------------------------------------------------------- arrivals

def test_arrivals_mean_at_50_per_millisecond():
    flow = new_flow(rate=50_000)
    draws = [flow.arrivals(1_000_000) for _ in range(50_000)]
    assert abs(statistics.fmean(draws) - 50) < 0.03 * 50
    assert abs(statistics.pvariance(draws) - 50) < 0.1 * 50       # Poisson: variance == mean
    assert min(draws) >= 0


@pytest.mark.parametrize("rate, elapsed_ns, mean", [(2000, 1_000_000, 2.0), (7000, 1_000_000, 7.0),
                                                    (200_000, 50_000_000, 10_000.0)])
def test_arrivals_small_and_large_means(rate, elapsed_ns, mean):
    flow = new_flow(rate=rate)
    draws = [flow.arrivals(elapsed_ns) for _ in range(20_000)]
    assert abs(statistics.fmean(draws) - mean) < 0.03 * mean
    assert abs(statistics.pvariance(draws) - mean) < 0.1 * mean


def test_arrivals_rate_zero_and_rate_changes():
    flow = new_flow(rate=0)
    assert flow.arrivals(1_000_000) == 0 and flow.arrivals(10**12) == 0
    flow.rate = 1e6                                 # the control socket sets it
    assert flow.arrivals(0) == 0
    assert 800 < flow.arrivals(1_000_000) < 1200
