"""The compiled check set against the reference on real streams: ``appliance bench risk``'s warm
state and order flow, and the ``bench hops`` risk driver's flow (the generated scenarios are in
tests/risk/test_risk_fast_diff.py; the rig in tests/support/risk_fast_pair.py)."""
from __future__ import annotations

import random

import pytest
import yaml

from appliance.bench.risk import BenchState
from appliance.messages.codes import Action, ExecEvent
from appliance.risk import fast
from appliance.risk.limits import parse_limits
from appliance.risk.paper_market import PaperMarket
from risk_fast_pair import Pair, fingerprint

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="the _risk_fast extension is not built")

TICK = 100
NOW = 1_700_000_000_000_000_000
B, S = ord("B"), ord("S")
NEW = int(Action.NEW)


def test_bench_risk_state_and_flow_decide_alike(monkeypatch):
    """``appliance bench risk``'s warm state (50 symbols, 200 open orders, market hours, a throttle)
    and its order flow, decided and booked, the OMS acknowledging each (ACCEPTED) and cancelling
    some, the books re-quoted as they go."""
    import time
    monkeypatch.setattr(time, "time_ns", lambda: NOW)   # both built at one instant: the same state
    bench = BenchState(50, 200, 42)
    ref = bench.engine
    twin = BenchState(50, 200, 42).engine            # the same seed: the same state, built the same way
    monkeypatch.undo()
    twin.market = ref.market
    twin._ms_buffer = ref._ms_buffer                 # one market table for both
    fast_check = fast.compiled_check(twin)
    assert fingerprint(twin)[3:] == fingerprint(ref)[3:]
    flow = bench.flow(3000)
    rng = random.Random(7)
    now = bench.now
    decided = 0
    for i, (action, cid, orig, sid, side, shares, price, tif) in enumerate(flow):
        now += rng.choice([1_000, 50_000, 2_000_000])
        expected = ref.check(action, cid, orig, sid, side, shares, price, tif, now)
        before = fast_check.fallbacks
        assert fast_check(action, cid, orig, sid, side, shares, price, tif, now) == expected, flow[i]
        decided += fast_check.fallbacks == before
        for engine in (ref, twin):
            if not expected:
                engine.record(action, cid, orig, sid, side, shares, price, 1, now)
                p = engine.portfolio
                engine.on_report(int(ExecEvent.ACCEPTED), cid, 0, sid, side, shares, price, shares, p.position[sid],
                                 p.cost_basis[sid], p.realized[sid], 1, now)
                if i % 3:
                    engine.on_report(int(ExecEvent.CANCELED), cid, 0, sid, side, 0, price, 0, p.position[sid],
                                     p.cost_basis[sid], p.realized[sid], 1, now)
        if i % 50 == 0:
            sid = rng.randrange(50)
            mid = bench.refs[sid] + rng.choice([-TICK, TICK])
            bench.market.quote(sid, mid - TICK, mid + TICK, last=mid)
            ref.housekeeping(now)
            twin.housekeeping(now)
    assert fingerprint(twin)[3:] == fingerprint(ref)[3:]
    assert decided > len(flow) * 0.9


def test_bench_hops_driver_flow_decides_alike():
    """The ``bench hops`` risk driver's flow: a NEW 1..5 ticks from the mid on the passive side, the
    venue's CANCELED for each approved one (hops_risk.py), on the bench's limits."""
    from appliance.bench.risk import limits_document, symbol_names
    symbols = symbol_names(8)
    now = NOW
    document = limits_document(symbols, now)
    document["global"].update(max_identical_orders=10_000)
    limits = parse_limits(yaml.safe_dump(document), symbols, "hops.yaml")
    market = PaperMarket(symbols)
    rng = random.Random(42)
    refs = [rng.randrange(2_000, 50_000) * TICK for _ in symbols]
    for sid, ref in enumerate(refs):
        market.quote(sid, ref - TICK, ref + TICK, last=ref)
    pair = Pair(limits, symbols, market, now, order_capacity=4096)
    for i in range(3000):
        sid = rng.randrange(len(symbols))
        buy = rng.random() < 0.5
        away = rng.randrange(1, 6) * TICK
        side, price = (B, refs[sid] - away) if buy else (S, refs[sid] + away)
        now += 20_000
        cid = 10_000 + i
        if pair.intent(NEW, cid, 0, sid, side, 100, price, 99998, now, strategy_id=1, compare_state=i % 100 == 0) == 0:
            pair.both(lambda e: e.on_report(int(ExecEvent.CANCELED), cid, 0, sid, side, 0, price, 0, 0, 0, 0, 1, now))
    assert fingerprint(pair.engine) == fingerprint(pair.ref)
    assert pair.reasons == {0: 3000}
    assert pair.compiled[0] >= 2990          # the first call asks the calendar (market hours): the reference
