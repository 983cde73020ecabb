"""Two risk engines fed the same events in lockstep, one deciding with the reference check
(``RiskEngine.check``), one with the compiled one (``appliance.risk.fast.compiled_check``): the
differential tests' rig (tests/risk/test_risk_fast_diff.py, tests/bench/test_risk_fast_streams.py)."""
from __future__ import annotations

from appliance.risk import fast
from appliance.risk.checks import RiskEngine
from appliance.risk.paper_market import PaperMarket


def fingerprint(engine: RiskEngine) -> tuple:
    """Everything an intent can change, and what the next decisions read."""
    p, c = engine.portfolio, engine.control
    throttle = c.throttle_trips
    return (engine.ready, engine.peak_pnl, engine.loss_floor, engine.throttled, engine.approved, engine.cancels,
            engine.cancels_over_rate, engine.torn_reads, engine.hours_open, engine.hours_valid_until_ns,
            engine.hours_valid_from_ns, c.state, c.latched, c.kill_reason, c.kill_value, c.kills, c.epoch,
            tuple(c.events), dict(c.symbol_kills),
            None if throttle is None else (tuple(throttle.times), throttle.next_index),
            p.open_orders(), {cid: (o.replacement_id, o.pending_shares, o.price, o.pending_price)
                              for cid, o in p.orders.items()},
            tuple(p.position), tuple(p.open_buy), tuple(p.open_sell), p.long_total, p.short_total, p.gross_total,
            p.unrealized_total, p.realized_total, tuple(p.own_bid), tuple(p.own_ask), tuple(p.sector_gross),
            p.open_count, tuple(engine.rate.times), engine.rate.next_index, frozenset(engine.seen_client_ids),
            {k: (tuple(w.times), w.next_index) for k, w in engine.identical.items()})


class Pair:
    """The reference engine and the compiled one, fed the same events."""

    def __init__(self, limits, symbols, market: PaperMarket, now: int, order_capacity: int = 64):
        self.ref = RiskEngine(limits, symbols, market.reader, order_capacity=order_capacity)
        self.engine = RiskEngine(limits, symbols, market.reader, order_capacity=order_capacity)
        self.fast = fast.compiled_check(self.engine)
        self.both(lambda e: e.control.start(now))
        self.both(lambda e: e.mark_ready(now))
        self.reasons: dict[int, int] = {}            # reason -> intents decided so
        self.compiled: dict[int, int] = {}           # reason -> intents the compiled code decided itself
        self.intents = 0

    def both(self, step) -> None:
        step(self.ref)
        step(self.engine)

    def intent(self, action, cid, orig, sid, side, shares, price, tif, now, display=0, capacity=0, min_qty=0, iso=0,
               strategy_id=7, compare_state=True) -> int:
        args = (action, cid, orig, sid, side, shares, price, tif, now, display, capacity, min_qty, iso)
        expected = self.ref.check(*args)
        fallbacks = self.fast.fallbacks
        got = self.fast(*args)
        assert got == expected, f"intent {args}: compiled {got}, reference {expected}"
        self.intents += 1
        self.reasons[expected] = self.reasons.get(expected, 0) + 1
        if self.fast.fallbacks == fallbacks:
            self.compiled[expected] = self.compiled.get(expected, 0) + 1
        if not expected:
            self.both(lambda e: e.record(action, cid, orig, sid, side, shares, price, strategy_id, now))
        if compare_state:
            assert fingerprint(self.engine) == fingerprint(self.ref), f"state differs after intent {args}"
        return expected
