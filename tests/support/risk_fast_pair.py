"""Two risk engines fed the same events in lockstep, one deciding with the reference check
(``RiskEngine.check``), one with the compiled one (``appliance.risk.fast.compiled_check``): the
differential tests' rig (tests/risk/test_risk_fast_diff.py, tests/bench/test_risk_fast_streams.py).

An intent whose values fit the OrderIntent record goes through the agent's compiled hop
(``FastCheck.approve``: packed into a slot, read, checked, the ApprovedOrder written in C), and an
approval's bytes must be what the agent's Python path packs (``APPROVED_ORDER.pack_into`` with the
intent's fields), stamped between the instants before and after the call; others (a value beyond
its field, a REDUCE) through the call with ``engine.check``'s arguments."""
from __future__ import annotations

import time

from appliance.messages.catalog import APPROVED_ORDER, ORDER_INTENT
from appliance.messages.codes import Action
from appliance.messages.schema import HEADER_COUNT
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


REDUCE = int(Action.REDUCE)


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
        self.approved_via_slot = 0                   # intents that took the compiled hop (approve)

    def both(self, step) -> None:
        step(self.ref)
        step(self.engine)

    def intent(self, action, cid, orig, sid, side, shares, price, tif, now, display=0, capacity=0, min_qty=0, iso=0,
               strategy_id=7, compare_state=True) -> int:
        args = (action, cid, orig, sid, side, shares, price, tif, now, display, capacity, min_qty, iso)
        expected = self.ref.check(*args)
        fallbacks = self.fast.fallbacks
        wire = (cid, orig, strategy_id, sid, action, side, display, capacity, shares, price, tif, min_qty, iso, 0, 0,
                11, 22, 33)
        if action != REDUCE and all(0 <= v < 1 << (8 * f.size) for v, f in zip(wire, ORDER_INTENT.fields[HEADER_COUNT:])):
            intent = bytearray(ORDER_INTENT.size)
            ORDER_INTENT.pack_into(intent, 0, *wire)
            approved = bytearray(b"\xa5" * (APPROVED_ORDER.size + 8))
            before = time.time_ns()
            got = self.fast.approve(intent, 0, approved, 8, now)
            after = time.time_ns()
            if got == 0:
                fields = APPROVED_ORDER.unpack_from(approved, 8)
                assert before <= fields[-1] <= after, "t_risk_out_ns is the instant of the approval"
                expected_bytes = bytearray(b"\xa5" * (APPROVED_ORDER.size + 8))
                APPROVED_ORDER.pack_into(expected_bytes, 8, *wire, fields[-1])
                assert approved == expected_bytes, f"the ApprovedOrder of {args} differs from the Python path's"
            else:
                assert approved == bytearray(b"\xa5" * (APPROVED_ORDER.size + 8)), "a refusal writes nothing"
            self.approved_via_slot += 1
        else:
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
