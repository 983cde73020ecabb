"""The compiled check set (appliance/risk/_risk_fast.c via risk/fast.py) against the reference
(``RiskEngine.check``, checks.py): the same verdict and reason for every intent, and the same state
after it.

Two engines on one paper market are fed the same events in lockstep: one decides with
``engine.check``, the other with ``compiled_check(engine)``; both book what they approve, take the
same execution reports, re-quotes, housekeeping passes, operator commands, limit reloads and
rebuilds. After every intent the verdicts must be equal and so must everything the engines hold
(positions, open orders, totals, rate and duplicate windows, client ids, kill switch, events).

Input here: seeded random scenarios (every reason reached, boundary values, every action, side,
order flag and TIF, replaces and cancels, bad values, rate limits over time, values beyond the
common case). The real streams (``bench risk``'s state and flow, the ``bench hops`` risk driver's
flow) are in tests/bench/test_risk_fast_streams.py; the rig in tests/support/risk_fast_pair.py.
"""
from __future__ import annotations

import dataclasses
import random

import pytest
import yaml

from appliance.messages.catalog import (BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_LOCKED,
                                        BOOK_FLAG_STALE)
from appliance.messages.codes import (ALL_SYMBOLS, MARKET_PRICE, TIF_DAY, TIF_IOC, TIF_SYSTEM_HOURS, Action,
                                      ExecEvent, RiskReason, SnapshotKind)
from appliance.risk import fast
from appliance.risk.checks import RiskEngine
from appliance.risk.limits import parse_limits
from appliance.risk.paper_market import PaperMarket
from risk_fast_pair import Pair

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="the _risk_fast extension is not built")

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE", "NOLIM"]     # NOLIM: in the layout, no limits
TICK = 100
NOW = 1_700_000_000_000_000_000
B, S, T = ord("B"), ord("S"), ord("T")
NEW, REPLACE, CANCEL, CANCEL_ALL, SNAPSHOT = (int(a) for a in (Action.NEW, Action.REPLACE, Action.CANCEL,
                                                               Action.CANCEL_ALL, Action.SNAPSHOT))
ALWAYS_REFERENCE = {RiskReason.MESSAGE_RATE, RiskReason.DAILY_LOSS, RiskReason.DRAWDOWN}   # they change state


# ---------------------------------------------------------------------------
# generated scenarios
# ---------------------------------------------------------------------------

def _midday_zone(now_ns: int, open_now: bool) -> str:
    import time
    hour = time.gmtime(now_ns // 1_000_000_000).tm_hour
    offset = max(-12, min(14, 12 - hour)) if open_now else max(-12, min(14, 2 - hour))   # noon, or 02:00
    return "Etc/GMT" + (f"-{offset}" if offset >= 0 else f"+{-offset}")


def limits_for(rng: random.Random, now: int):
    """A limits document whose bounds the generated orders meet on both sides of."""
    g = {"capital": rng.choice([20_000, 200_000, 5_000_000]),
         "max_gross_notional": rng.choice([30_000, 300_000, 5_000_000]),
         "max_net_notional": rng.choice([20_000, 200_000, 5_000_000]),
         "max_leverage": rng.choice([0.5, 1.0, 2.0]),
         "max_daily_loss": rng.choice([500, 5_000, 1_000_000]), "max_drawdown": rng.choice([300, 3_000, 1_000_000]),
         "max_messages_per_second": rng.choice([4, 30, 1000]), "rate_window_ms": rng.choice([1, 50, 1000]),
         "max_open_orders": rng.choice([3, 12, 60]), "max_identical_orders": rng.choice([1, 2, 10]),
         "duplicate_window_ms": rng.choice([1, 100, 1000]),
         "throttle_kill": {"trips": rng.choice([2, 10, 1000]), "window_ms": 1000},
         "allow_market_orders": rng.random() < 0.5, "allow_hidden": rng.random() < 0.7,
         "allow_iso": rng.random() < 0.5, "prevent_self_match": rng.random() < 0.6}
    if rng.random() < 0.3:
        g["market_hours"] = {"open": "00:00", "close": "23:59:59", "timezone": _midday_zone(now, rng.random() < 0.7)}
    if rng.random() < 0.1:     # closed today: a weekday list without today's
        import time
        today = time.gmtime(now // 1_000_000_000).tm_wday
        g["market_hours"] = {"open": "00:00", "close": "12:00", "timezone": "UTC",
                             "weekdays": [["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][(today + 3) % 7]]}
    symbols = {}
    for name in SYMBOLS[:-1]:
        s = {"sector": rng.choice(["ONE", "TWO"]), "max_shares": rng.choice([300, 1000, 5000]),
             "max_notional": rng.choice([10_000, 60_000, 2_000_000]), "min_shares": rng.choice([1, 1, 20]),
             "tick": 0.01, "max_long": rng.choice([150, 800, 10_000]), "max_short": rng.choice([150, 800, 10_000]),
             "allow_short_sell": rng.random() < 0.5}
        if rng.random() < 0.4:
            s["round_lot"] = rng.choice([10, 100])
        if rng.random() < 0.7:
            s["collar_pct"] = rng.choice([1, 5, 3.3, 100])
        else:
            s["collar_abs"] = rng.choice([0.05, 1.5, 500])
        symbols[name] = s
    document = {"version": 1, "global": g,
                "sectors": {"ONE": {"max_gross_notional": rng.choice([25_000, 250_000, 5_000_000])},
                            "TWO": {"max_gross_notional": rng.choice([25_000, 250_000, 5_000_000])}},
                "symbols": symbols}
    limits = parse_limits(yaml.safe_dump(document), SYMBOLS, "generated.yaml")
    rows = list(limits.symbols)
    for i, row in enumerate(rows):     # an instrument's price band on some symbols (as an instruments file gives)
        if row is not None and rng.random() < 0.4:
            rows[i] = dataclasses.replace(row, min_price=rng.choice([1, 1_000_000]),
                                          max_price=rng.choice([900_000, 3_000_000]))
    return dataclasses.replace(limits, symbols=tuple(rows))


class Scenario:
    """A seeded random walk of intents, reports, quotes, time, housekeeping, commands, reloads, rebuilds."""

    def __init__(self, seed: int):
        self.rng = rng = random.Random(seed)
        self.now = NOW + rng.randrange(0, 86_400) * 1_000_000_000
        self.market = PaperMarket(SYMBOLS)
        self.refs = [rng.randrange(200, 20_000) * TICK for _ in SYMBOLS]
        for sid in range(len(SYMBOLS)):
            self.quote(sid, good=True)
        self.pair = Pair(limits_for(rng, self.now), SYMBOLS, self.market, self.now,
                         order_capacity=rng.choice([8, 64]))
        self.next_id = 1000
        self.used_ids: list[int] = []
        self.last_new: tuple | None = None

    def quote(self, sid: int, good: bool = False) -> None:
        rng = self.rng
        self.refs[sid] = max(TICK, self.refs[sid] + rng.randrange(-3, 4) * TICK)
        ref = self.refs[sid]
        bid, ask, last, flags, state = ref - TICK, ref + TICK, ref, 0, ord("T")
        if not good:
            kind = rng.randrange(12)
            if kind == 0:
                flags = rng.choice([BOOK_FLAG_STALE, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED,
                                    BOOK_FLAG_LOCKED, BOOK_FLAG_STALE | BOOK_FLAG_HALTED])
            elif kind == 1:
                state = rng.choice([0, ord("H"), ord("P")])
            elif kind == 2:
                bid, ask = ask, bid                          # crossed, unflagged
            elif kind == 3:
                bid = 0                                       # one-sided: the last trade is the reference
            elif kind == 4:
                bid = ask = 0
                last = rng.choice([0, ref])
            elif kind == 5:
                bid = ask = ref                               # locked
        self.market.quote(sid, bid, ask, last=last, flags=flags, trading_state=state)

    def fresh_id(self) -> int:
        self.next_id += 1
        self.used_ids.append(self.next_id)
        return self.next_id

    def order_fields(self, sid: int) -> tuple:
        rng = self.rng
        limits = self.pair.ref.limits.symbols[sid] if 0 <= sid < len(SYMBOLS) else None
        ref = self.refs[sid] if 0 <= sid < len(SYMBOLS) else 1_000_000
        side = rng.choices([B, S, T, 0, ord("X")], [45, 40, 12, 1, 1])[0]
        lot = (limits.round_lot or 1) if limits else 1
        shares = rng.choice([lot, lot * rng.randrange(1, 8), lot * rng.randrange(1, 30), rng.randrange(1, 2000)])
        if limits and rng.random() < 0.15:
            shares = rng.choice([limits.min_shares - 1, limits.min_shares, limits.max_shares,
                                 limits.max_shares + 1, 0])
        away = rng.choice([1, 2, 5, 20, 200, 3000]) * TICK
        price = ref - away if side == B else ref + away
        roll = rng.random()
        if roll < 0.05:
            price = MARKET_PRICE
        elif roll < 0.08:
            price += rng.randrange(1, TICK)                  # off the tick
        elif roll < 0.10:
            price = rng.choice([0, 1, 4_000_000_000 // TICK * TICK])
        elif roll < 0.25:
            price = ref + rng.randrange(-10, 11) * TICK      # near or through the book (self-match, collar edges)
        if limits and roll > 0.9:                            # the collar's edge, exactly and one tick beyond
            band = ref * limits.collar_ppm // 1_000_000 if limits.collar_ppm else limits.collar_abs
            price = max(TICK, (ref + rng.choice([-band, band, -band - TICK, band + TICK])) // TICK * TICK)
        tif = rng.choices([TIF_DAY, TIF_IOC, TIF_SYSTEM_HOURS, 12345], [70, 28, 1, 1])[0]
        display = capacity = min_qty = iso = 0
        if rng.random() < 0.25:
            display = rng.choices([0, ord("Y"), ord("A"), ord("N"), ord("P"), 300], [3, 3, 3, 3, 1, 1])[0]
            capacity = rng.choices([0, ord("A"), ord("P"), ord("R"), ord("O"), ord("Z")], [3, 3, 3, 3, 3, 1])[0]
            min_qty = rng.choice([0, 0, shares, shares + 1, 1])
            iso = rng.choices([0, 1, 2], [6, 3, 1])[0]
        return side, shares, price, tif, display, capacity, min_qty, iso

    def some_intent(self) -> None:
        rng, pair = self.rng, self.pair
        sid = rng.choices([rng.randrange(5), 5, 6, 99, -1], [90, 3, 3, 1, 1])[0]
        side, shares, price, tif, display, capacity, min_qty, iso = self.order_fields(sid)
        action = rng.choices([NEW, REPLACE, CANCEL, CANCEL_ALL, SNAPSHOT, 0, 7], [55, 22, 10, 5, 3, 2, 1])[0]
        if action == NEW and self.last_new is not None and rng.random() < 0.15:
            sid, side, shares, price = self.last_new          # the same order again (REPEATED_ORDER)
        elif action == NEW:
            self.last_new = (sid, side, shares, price)
        cid = self.fresh_id()
        roll = rng.random()
        if roll < 0.04 and self.used_ids:
            cid = rng.choice(self.used_ids)                  # a client id used before
        elif roll < 0.05:
            cid = rng.choice([0, 2 ** 70])                   # none, and beyond 64 bits
        orig = 0
        if action in (REPLACE, CANCEL):
            orders = list(pair.ref.portfolio.orders.values())
            if orders and rng.random() < 0.85:
                order = rng.choice(orders)
                orig = order.client_order_id
                if action == REPLACE and rng.random() < 0.85:
                    sid, side = order.symbol_id, order.side   # a well-formed replace (mostly)
                    side, shares, price, tif, display, capacity, min_qty, iso = self.order_fields(sid) \
                        if rng.random() < 0.2 else (side, *self.order_fields(sid)[1:])
                    if rng.random() < 0.5:
                        shares = rng.choice([max(1, order.worst // 2), order.worst, order.worst + 100])
            else:
                orig = rng.choice([cid, 424242])
        if action == CANCEL_ALL and rng.random() < 0.5:
            sid = ALL_SYMBOLS
        if rng.random() < 0.01:
            shares = -100                                    # only a caller's bug: the reference decides
        pair.intent(action, cid, orig, sid, side, shares, price, tif, self.now, display, capacity, min_qty, iso)

    def some_report(self) -> None:
        """The OMS on an open order: accepted, (part) filled, cancelled, rejected, replaced."""
        rng, ref_engine = self.rng, self.pair.ref
        orders = list(ref_engine.portfolio.orders.values())
        if not orders:
            return
        order = rng.choice(orders)
        sid = order.symbol_id
        p = ref_engine.portfolio
        position, cost, realized = p.position[sid], p.cost_basis[sid], p.realized[sid]
        event = rng.choice([ExecEvent.ACCEPTED, ExecEvent.EXECUTED, ExecEvent.EXECUTED, ExecEvent.CANCELED,
                            ExecEvent.REJECTED, ExecEvent.REPLACED])
        cid, leaves, price = order.client_order_id, order.leaves, order.price
        if event == ExecEvent.EXECUTED:
            filled = max(1, leaves // rng.choice([1, 2, 4]))
            leaves -= filled
            fill_price = self.refs[sid] + rng.randrange(-30, 31) * TICK      # P&L moves: peaks, losses
            signed = filled if order.buy else -filled
            position += signed
            cost += signed * fill_price
            realized += rng.randrange(-2_000, 2_001) * TICK * rng.choice([0, 1, 50, 300])
        elif event == ExecEvent.CANCELED:
            leaves = 0
        elif event == ExecEvent.REPLACED:
            if not order.replacement_id:
                return
            cid, leaves, price = order.replacement_id, order.pending_shares, order.pending_price
        elif event == ExecEvent.REJECTED and order.replacement_id and rng.random() < 0.7:
            cid = order.replacement_id
        orig = order.client_order_id if event == ExecEvent.REPLACED else 0
        self.pair.both(lambda e: e.on_report(int(event), cid, orig, sid, order.side, 0, price, leaves, position, cost,
                                             realized, 7, self.now))

    def some_command(self) -> None:
        rng, now = self.rng, self.now
        kind = rng.choices(range(6), [1, 3, 1, 4, 1, 2])[0]
        sid = rng.randrange(5)
        if kind == 0:
            self.pair.both(lambda e: e.kill_symbol(sid, "op", now))
        elif kind == 1:
            self.pair.both(lambda e: e.reset_symbol(sid, "op", now))
        elif kind == 2:
            self.pair.both(lambda e: e.control.trip("MANUAL", now, 0, "op"))
        elif kind == 3:
            self.pair.both(lambda e: e.control.reset("op", now))
        elif kind == 4:
            self.pair.both(lambda e: e.control.set_reducing(now, "op"))
        else:
            self.pair.both(lambda e: e.control.set_active(now, "op"))

    def rebuild(self) -> None:
        """A restart of the state: the OMS's snapshot (positions only) and its END."""
        rng, now = self.rng, self.now
        positions = [(sid, rng.randrange(-5, 6) * 100) for sid in range(5)]

        def apply(e: RiskEngine) -> None:
            e.restart_rebuild()
            for sid, pos in positions:
                e.on_snapshot(int(SnapshotKind.POSITION), 0, 0, sid, 0, 0, 0, pos, pos * self.refs[sid], 0, 7, now)
            e.on_snapshot(int(SnapshotKind.END), 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, now)

        if rng.random() < 0.5:                              # intents while not ready: NOT_READY
            self.pair.both(lambda e: e.restart_rebuild())
            for _ in range(3):
                self.some_intent()
        self.pair.both(apply)

    def run(self, steps: int) -> Pair:
        rng = self.rng
        burst = 0
        for _ in range(steps):
            if burst:                                        # a burst: many messages inside one window
                burst -= 1
                self.now += rng.choice([0, 1_000, 100_000])
            else:
                self.now += rng.choice([0, 1_000, 1_000_000, 40_000_000, 300_000_000, 1_100_000_000])
                burst = 30 if rng.random() < 0.02 else 0
            roll = rng.random()
            if roll < 0.62:
                self.some_intent()
            elif roll < 0.82:
                self.some_report()
            elif roll < 0.92:
                self.quote(rng.randrange(len(SYMBOLS)), good=rng.random() < 0.6)
            elif roll < 0.95:
                self.pair.both(lambda e: e.housekeeping(self.now))
            elif roll < 0.98:
                self.some_command()
            elif roll < 0.99:
                limits = limits_for(rng, self.now)
                self.pair.both(lambda e: e.apply_limits(limits))
            else:
                self.rebuild()
        return self.pair


def test_generated_scenarios_decide_alike_and_reach_every_reason():
    reasons: dict[int, int] = {}
    compiled: dict[int, int] = {}
    intents = decided_compiled = slot_hops = 0
    for seed in range(24):
        pair = Scenario(seed).run(900)
        for reason, n in pair.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        for reason, n in pair.compiled.items():
            compiled[reason] = compiled.get(reason, 0) + n
        intents += pair.intents
        decided_compiled += pair.fast.decided
        slot_hops += pair.approved_via_slot
    missing = {r.name for r in RiskReason} - {RiskReason(r).name for r in reasons if r}
    assert not missing, f"reasons never reached: {sorted(missing)}"
    assert reasons.get(0, 0) > 500, "too few approvals to compare the booking"
    by_compiled = {RiskReason(r) for r in compiled if r}
    assert set(RiskReason) - by_compiled == ALWAYS_REFERENCE, \
        f"reasons the compiled code never decided itself: {sorted(r.name for r in set(RiskReason) - by_compiled)}"
    assert 0 in compiled and decided_compiled > intents // 2
    assert slot_hops > intents // 2              # most took the agent's compiled hop (bytes compared)


def test_state_changing_checks_are_left_to_the_reference():
    """MESSAGE_RATE counts the throttle and may latch the kill switch; a loss limit latches it: the
    compiled call hands those to ``engine.check``, so the side effects are the reference's own."""
    market = PaperMarket(SYMBOLS)
    for sid in range(5):
        market.quote(sid, 999_900, 1_000_100, last=1_000_000)
    rng = random.Random(5)
    limits = limits_for(rng, NOW)
    limits = dataclasses.replace(limits, max_messages=2, rate_window_ns=1_000_000_000, max_open_orders=100,
                                 max_identical_orders=100, throttle_kill_trips=2, market_hours=None)
    pair = Pair(limits, SYMBOLS, market, NOW)
    pair.both(lambda e: e.apply_limits(limits))
    symbol = next(s for s, row in enumerate(limits.symbols) if row is not None)
    price = 1_000_000 - TICK
    shares = limits.symbols[symbol].min_shares
    results = [pair.intent(NEW, 5000 + i, 0, symbol, B, shares, price, TIF_DAY, NOW + i) for i in range(5)]
    assert results[2] == RiskReason.MESSAGE_RATE
    assert pair.engine.control.latched and pair.engine.control.kill_reason == "THROTTLE"
    assert RiskReason.TRADING_HALTED in results[3:]
    assert pair.engine.throttled == pair.ref.throttled == 2


def test_the_compiled_hop_refuses_bad_slots_and_leaves_foreign_records_and_reduce_to_the_agent():
    from appliance.messages.catalog import APPROVED_ORDER, ORDER_INTENT
    from appliance.risk.paper_market import limits_document
    market = PaperMarket(SYMBOLS)
    market.quote(0, 999_900, 1_000_100, last=1_000_000)
    pair = Pair(parse_limits(yaml.safe_dump(limits_document(SYMBOLS)), SYMBOLS, "roomy.yaml"), SYMBOLS, market, NOW)
    approve = pair.fast.approve
    intent = bytearray(ORDER_INTENT.size)
    ORDER_INTENT.pack_into(intent, 0, 77, 0, 1, 0, NEW, B, 0, 0, 100, 999_800, TIF_DAY, 0, 0, 0, 0, 0, 0, 0)
    out = bytearray(APPROVED_ORDER.size)
    with pytest.raises(ValueError, match="outside"):
        approve(intent, 8, out, 0, NOW)                      # the intent runs past its buffer
    with pytest.raises(ValueError, match="outside"):
        approve(intent, -1, out, 0, NOW)
    with pytest.raises(TypeError):
        approve(intent, 0, out, 0)
    with pytest.raises(ValueError, match="outside"):
        approve(intent, 0, out, 1, NOW)                      # the approved slot runs past its buffer
    with pytest.raises(BufferError):
        approve(intent, 0, bytes(APPROVED_ORDER.size), 0, NOW)        # not writable
    assert out == bytearray(APPROVED_ORDER.size)
    foreign = bytearray(intent)
    foreign[0:2] = (ORDER_INTENT.type_id + 1).to_bytes(2, "little")
    assert approve(foreign, 0, out, 0, NOW) == -1            # the agent counts it (bad_intents)
    reduce = bytearray(ORDER_INTENT.size)
    ORDER_INTENT.pack_into(reduce, 0, 78, 0, 1, 0, int(Action.REDUCE), B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert approve(reduce, 0, out, 0, NOW) == -1             # the agent holds the strategy in REDUCING
    assert out == bytearray(APPROVED_ORDER.size)
    assert approve(intent, 0, out, 0, NOW) == 0 and APPROVED_ORDER.unpack_from(out)[3] == 77
