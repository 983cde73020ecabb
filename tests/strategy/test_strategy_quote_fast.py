"""The compiled quote step (strategy/_quote_fast.c) against its reference (market_maker.desired_quotes,
needs_requote): the same quotes and requote decisions on generated tops, parameters, positions and open
orders (the real BookUpdate streams: tests/bench/test_strategy_quote_fast_days.py)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from appliance.messages.catalog import (BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT,
                                        BOOK_FLAG_STALE, BOOK_UPDATE)
from appliance.messages.codes import Side
from appliance.strategy.market_maker import QuoteParams, compiled_quote_step, desired_quotes, needs_requote

pytestmark = pytest.mark.skipif(compiled_quote_step(QuoteParams()) is None,
                                reason="appliance.strategy._quote_fast is not built")

_FLAGS = (0, BOOK_FLAG_STALE, BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_INCONSISTENT)


def random_params(rng: random.Random) -> QuoteParams:
    tick = rng.choice([1, 25, 100, 100, 500, 10_000, 12_345])
    lot = rng.choice([1, 100, 100, 300])
    size = lot * rng.randint(1, 5)
    return QuoteParams(
        tick=tick, spread_ticks=rng.randint(1, 41), lot=lot, size=size,
        spread_bp=rng.choice([0.0, 0.0, 1, 2.5, 7.3, 33.333, 10_000]),
        max_position=size * rng.randint(1, 20), inventory_unit=rng.choice([1, 100, 300, 777]),
        skew_ticks=rng.choice([0, 0.0, 1.0, 0.5, 1 / 3, 2, 0.7, 13.1]),
        widen_ticks=rng.choice([0, 0.0, 0.5, 0.25, 1 / 7, 3]),
        requote_threshold_ticks=rng.randint(0, 3), fair_value=rng.choice(["mid", "microprice"]),
    )


def random_top(rng: random.Random, tick: int) -> tuple:
    mid = rng.choice([rng.randint(1, 50), rng.randint(1, 20_000) * tick, rng.randint(1, 0xFFFFFFFF)])
    spread = rng.choice([0, 1, tick, 2 * tick, 3 * tick + 1, rng.randint(1, 100_000)])
    bid = max(0, min(mid - spread // 2, 0xFFFFFFFF)) if rng.random() > 0.05 else 0
    ask = min(mid + (spread + 1) // 2, 0xFFFFFFFF) if rng.random() > 0.05 else 0
    shares = (lambda: rng.choice([0, 1, 100, rng.randint(1, 0xFFFFFFFF)]) if rng.random() > 0.9
              else rng.randint(1, 5000))
    flags = rng.choice(_FLAGS) if rng.random() < 0.2 else 0
    state = 0x54 if rng.random() > 0.05 else rng.choice([0, ord("H"), ord("P")])
    return bid, shares(), ask, shares(), flags, state


def as_top(values) -> tuple:
    bid, bid_shares, ask, ask_shares, flags, state = values
    return (bid, bid_shares, ask, ask_shares, flags & (BOOK_FLAG_STALE | BOOK_FLAG_INCONSISTENT) != 0,
            flags & BOOK_FLAG_CROSSED != 0, flags & BOOK_FLAG_HALTED != 0 or state != 0x54)


def random_orders(rng: random.Random) -> list:
    return [SimpleNamespace(side=rng.choice([Side.BUY, Side.SELL, Side.SELL_SHORT]), leaves=rng.randint(1, 900))
            for _ in range(rng.choice([0, 0, 1, 3]))]


def slot(values) -> bytearray:
    """One BookUpdate at offset 7 of a buffer (not at 0: the step honours the offset)."""
    bid, bid_shares, ask, ask_shares, flags, state = values
    buf = bytearray(7 + BOOK_UPDATE.size + 5)
    BOOK_UPDATE.pack_into(buf, 7, *BOOK_UPDATE.body(
        flags=flags, trading_state=state, bid_levels=1 if bid else 0, ask_levels=1 if ask else 0,
        bid_price_0=bid, bid_shares_0=bid_shares if bid else 999, ask_price_0=ask,
        ask_shares_0=ask_shares if ask else 999))
    return buf


@pytest.mark.parametrize("seed", range(6))
def test_generated_tops_positions_and_parameters_give_the_reference_quotes(seed):
    rng = random.Random(seed)
    compared = quoted = 0
    for _ in range(60):
        params = random_params(rng)
        step = compiled_quote_step(params)
        for _ in range(60):
            values = random_top(rng, params.tick)
            top = as_top(values)
            position = rng.choice([0, 0, rng.randint(-3000, 3000), rng.randint(-10 ** 6, 10 ** 6)])
            orders = random_orders(rng)
            buys = sum(o.leaves for o in orders if o.side == Side.BUY)
            sells = sum(o.leaves for o in orders if o.side != Side.BUY)
            expected = desired_quotes(top, position, orders, params)
            assert step.desired(top, position, buys, sells) == expected, (params, top, position, orders)
            got = step.desired_at(slot(values), 7, position, buys, sells)
            assert got == expected, (params, values, position, orders)
            assert all(type(q).__name__ == "Quote" for q in got if q is not None)
            compared += 1
            quoted += expected != (None, None)
            for quote in expected:
                if quote is not None:
                    price = rng.choice([quote.price, quote.price + params.tick, rng.randint(1, 0xFFFFFFFF)])
                    leaves = rng.choice([quote.shares, quote.shares + 1, rng.randint(1, 5000)])
                    assert step.needs_requote(price, leaves, quote) == needs_requote(price, leaves, quote, params)
    assert compared == 3600 and quoted > 1000


def test_ties_on_half_ticks_round_as_the_reference():
    """Odd widths and mids: the half-width is x.5 and the floor divisions meet exact halves."""
    for fair_value in ("mid", "microprice"):
        for spread_ticks in (1, 3, 5):
            for tick in (1, 3, 100):
                params = QuoteParams(tick=tick, spread_ticks=spread_ticks, size=100, lot=100, max_position=500,
                                     inventory_unit=100, skew_ticks=0.5, widen_ticks=0.5, fair_value=fair_value)
                step = compiled_quote_step(params)
                for bid in range(1000 * tick, 1000 * tick + 7):
                    for gap in (1, 2, 3, tick, 2 * tick + 1):
                        top = (bid, 300, bid + gap, 100, False, False, False)
                        for position in (-250, -100, -50, 0, 50, 100, 150):
                            assert step.desired(top, position, 0, 0) == desired_quotes(top, position, (), params)


def test_beyond_exact_range_it_answers_none_and_the_market_maker_asks_the_reference():
    params = QuoteParams(skew_ticks=13.0)
    step = compiled_quote_step(params)
    top = (1_900_000, 100, 1_900_200, 100, False, False, False)
    assert step.desired(top, 2 ** 60, 0, 0) is None                   # a position beyond 2**53
    assert step.desired(top, 0, 2 ** 70, 0) is None
    assert step.desired(top, 10 ** 15, 0, 0) is None                   # prices beyond 2**50
    assert step.desired((2 ** 40, 100, 2 ** 40, 100, False, False, False), 0, 0, 0) is None
    assert step.desired(top, 100, 0, 0) == desired_quotes(top, 100, (), params)
    with pytest.raises(ValueError):
        step.desired_at(bytearray(BOOK_UPDATE.size - 1), 0, 0, 0, 0)   # a slot that does not fit
    with pytest.raises(ValueError):
        step.desired_at(bytearray(BOOK_UPDATE.size), -1, 0, 0, 0)
    with pytest.raises(TypeError):
        step.desired((1, 2, 3), 0, 0, 0)
    assert step.needs_requote(2 ** 70, 1, top[:2]) is None


class _Quiet:
    """The host side of ``MarketMaker._requote`` for one call: its clock and controls, the open orders and the
    position; every action it takes is recorded, none sent."""

    def __init__(self, now):
        self.now = now

    def clock_ns(self):
        return self.now

    def feed_live(self):
        return True

    def gate_open(self):
        return True


def _requote_actions(params, book, position, bid, ask, cooling, may_cancel) -> list:
    """What the reference ``_requote`` (``step`` None: desired_quotes, needs_requote) does in this state."""
    from appliance.strategy.market_maker import MarketMaker, _SymbolQuotes
    mm = MarketMaker.__new__(MarketMaker)
    mm._host = _Quiet(10**12)
    mm.params = SimpleNamespace(pull_when_feed_down=True)
    orders = {o.client_order_id: o for o in (bid, ask) if o is not None}
    mm._orders = SimpleNamespace(get=orders.get, count=lambda symbol: len(orders),
                                 of=lambda symbol: tuple(orders.values()))
    mm._positions = {"AAPL": position}
    actions = []
    mm.buy = lambda *a, **k: actions.append(("buy", a, k)) or 900
    mm.sell = lambda *a, **k: actions.append(("sell", a, k)) or 901
    mm.replace = lambda *a, **k: actions.append(("replace", a, k)) or 902
    mm.cancel = lambda *a, **k: actions.append(("cancel", a, k))
    state = _SymbolQuotes("AAPL", book, params)
    state.bid_id = bid.client_order_id if bid is not None else 0
    state.ask_id = ask.client_order_id if ask is not None else 0
    state.cooldown_until_ns = mm._host.now + 1 if cooling else 0
    state.cancel_retry_ns = 0 if may_cancel else mm._host.now + 1
    mm._requote(state)
    return actions


def _quote_order(rng, cid, side, near, params):
    """An open order of ours near a desired price (or anywhere), in any open state."""
    from appliance.strategy.api import ORDER_SETTERS, OrderState, make_order
    price = max(1, near + rng.choice((0, 0, 0, 1, -1, 2, -3)) * params.tick * rng.choice((1, params.requote_threshold_ticks or 1)))
    shares = rng.choice((params.size, params.lot, params.size + params.lot, 2 * params.size))
    order = make_order(cid, "AAPL", 0, side, price, shares, 0)
    state = rng.choice((OrderState.LIVE, OrderState.LIVE, OrderState.LIVE, OrderState.PENDING_NEW,
                        OrderState.PENDING_CANCEL, OrderState.PENDING_REPLACE))
    ORDER_SETTERS["_state"](order, state)
    ORDER_SETTERS["_leaves"](order, rng.choice((shares, shares, params.lot, shares + params.lot)))
    if rng.random() < 0.1:
        ORDER_SETTERS["_replaced_by"](order, cid + 100)
    return order


@pytest.mark.parametrize("seed", range(4))
def test_quiet_says_yes_only_where_the_reference_requote_does_nothing(seed):
    """``QuoteStep.quiet`` (``_requote``'s shortcut) on generated tops, parameters, positions, our two quotes
    (prices at, near and away from the desired ones, our bid at or above our ask, sizes over the cap, every
    open state, a pending replace), cooldowns and cancel retries: wherever it says True, the reference
    ``_requote`` sends, replaces and cancels nothing; and it says True often."""
    from appliance.strategy.api import Book
    rng = random.Random(seed)
    said = {True: 0, False: 0}
    for n in range(4000):
        if n % 40 == 0:
            params = random_params(rng)
            step = compiled_quote_step(params)
        values = random_top(rng, params.tick)
        buf = slot(values)
        book = Book("AAPL", 0)
        book._view(buf, 7)
        position = rng.choice((0, 0, params.lot, -params.lot, params.max_position, -params.max_position,
                               rng.randint(-2 * params.max_position, 2 * params.max_position)))
        desired_bid, desired_ask = desired_quotes(as_top(values), position, (), params)
        bid_near = desired_bid.price if desired_bid else values[0] or params.tick
        ask_near = desired_ask.price if desired_ask else values[2] or 2 * params.tick
        if rng.random() < 0.1:
            bid_near = ask_near = rng.choice((bid_near, ask_near))          # our quotes meet: the holds
        bid = _quote_order(rng, 11, Side.BUY, bid_near, params) if rng.random() < 0.85 else None
        ask = _quote_order(rng, 12, Side.SELL, ask_near, params) if rng.random() < 0.85 else None
        cooling, may_cancel = rng.random() < 0.3, rng.random() < 0.8
        quiet = step.quiet(buf, 7, position, bid, ask, cooling, may_cancel)
        said[quiet] += 1
        if quiet:
            actions = _requote_actions(params, book, position, bid, ask, cooling, may_cancel)
            assert actions == [], (n, params, values, position, bid, ask, cooling, may_cancel)
    assert said[True] > 800 and said[False] > 800, said
