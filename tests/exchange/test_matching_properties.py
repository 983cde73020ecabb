"""The matching engine under random (seeded) order flow: after every operation the book is sane and
the events alone account for every share.

The checker keeps its own model built only from the emitted events (what a firm's OMS and an ITCH
book builder would see) and compares it with the engine's book after each operation:

- the book is never crossed; every level's aggregate equals the sum of its live orders; the level
  bookkeeping (live count, dead entries, sorted keys) is consistent;
- per token: entered == executed + canceled + handed to a replacement + resting, from the events;
  the tokens the events say are live are exactly the engine's resting orders, with the same leaves;
- the ITCH events rebuild exactly the displayed part of every book (order by order);
- per firm, the positions of the report equal the sum of the Executed events;
- reference and match numbers strictly increase; both sides of each match are reported at the
  resting order's price.
"""
from __future__ import annotations

import random
from collections import defaultdict

import pytest

from appliance.exchange.book import Book
from appliance.exchange.events import (
    Accepted, AddOrder, CancelReject, Canceled, Executed, OrderCancel, OrderDelete, OrderExecuted, OrderReplace,
    Rejected, Replaced, Trade, TradingAction,
)
from appliance.exchange.matching import DAY, IOC, MARKET, MatchingEngine

SYMBOLS = ["AAPL", "MSFT", "SPY"]
FIRMS = ["F1", "F2", "F3", "F4"]
MID = 1_000_000
TICK = 100


class TokenModel:
    __slots__ = ("firm", "symbol", "side", "price", "entered", "executed", "canceled", "replaced", "live", "ref")

    def __init__(self, firm, symbol, side, price, entered, ref):
        self.firm, self.symbol, self.side, self.price = firm, symbol, side, price
        self.entered, self.ref = entered, ref
        self.executed = self.canceled = self.replaced = 0
        self.live = False

    @property
    def leaves(self):
        return self.entered - self.executed - self.canceled - self.replaced


class Checker:
    def __init__(self, engine: MatchingEngine):
        self.engine = engine
        self.tokens: dict[tuple[str, str], TokenModel] = {}
        self.itch: dict[int, list] = {}                  # ref -> [symbol, side, shares, price]
        self.positions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.last_ref = 0
        self.last_match = 0                 # from Executed (liquidity 'A')
        self.last_md_match = 0              # from OrderExecuted and Trade
        self.halted: set[str] = set()

    def apply(self, events: list) -> None:
        pending_r: dict[int, Executed] = {}
        for e in events:
            t = type(e)
            if t is Accepted or t is Replaced:
                assert e.ref > self.last_ref
                self.last_ref = e.ref
                key = (e.firm, e.token)
                assert key not in self.tokens, f"token reused: {e}"
                side = "B" if e.side == "B" else "S"
                if t is Replaced:
                    prev = self.tokens[(e.firm, e.previous_token)]
                    assert prev.live and prev.side == side and prev.symbol == e.symbol
                    prev.replaced = prev.leaves
                    prev.live = False
                model = self.tokens[key] = TokenModel(e.firm, e.symbol, side, e.price, e.shares, e.ref)
                model.live = e.state == "L"
            elif t is Executed:
                model = self.tokens[(e.firm, e.token)]
                model.executed += e.shares
                assert model.leaves >= 0
                if model.price != MARKET:
                    assert (e.price <= model.price) if model.side == "B" else (e.price >= model.price)
                if e.liquidity == "A":
                    assert e.price == model.price               # the resting order's price
                    assert e.match == self.last_md_match        # right after its 'E' or 'P'
                    assert e.match > self.last_match
                    self.last_match = e.match
                    pending_r[e.match] = e
                else:
                    resting = pending_r.pop(e.match)
                    assert resting.shares == e.shares and resting.price == e.price
                    assert self.tokens[(resting.firm, resting.token)].side != model.side
                if model.leaves == 0:
                    model.live = False
                self.positions[e.firm][model.symbol] += e.shares if model.side == "B" else -e.shares
            elif t is Canceled:
                model = self.tokens[(e.firm, e.token)]
                model.canceled += e.shares
                assert model.leaves >= 0 and e.shares > 0
                if model.leaves == 0:
                    model.live = False
            elif t is Rejected or t is CancelReject:
                pass
            elif t is AddOrder:
                assert e.ref not in self.itch
                self.itch[e.ref] = [e.symbol, e.side, e.shares, e.price]
            elif t is OrderExecuted:
                assert e.match > self.last_md_match
                self.last_md_match = e.match
                entry = self.itch[e.ref]
                entry[2] -= e.shares
                assert entry[2] >= 0
                if entry[2] == 0:
                    del self.itch[e.ref]
            elif t is OrderCancel:
                entry = self.itch[e.ref]
                entry[2] -= e.shares
                assert entry[2] > 0
            elif t is OrderDelete:
                del self.itch[e.ref]
            elif t is OrderReplace:
                symbol, side, _, _ = self.itch.pop(e.old_ref)
                assert e.new_ref not in self.itch
                self.itch[e.new_ref] = [symbol, side, e.shares, e.price]
            elif t is Trade:
                assert e.match > self.last_md_match
                self.last_md_match = e.match
            elif t is TradingAction:
                (self.halted.add if e.state == "H" else self.halted.discard)(e.symbol)
            else:
                raise AssertionError(f"unknown event {e!r}")
        assert not pending_r, "an execution was reported to one side only"

    def check(self) -> None:
        engine = self.engine
        resting_by_token = {}
        for symbol in SYMBOLS:
            book = engine.book(symbol)
            assert book.halted == (symbol in self.halted)
            check_book(book)
            for ref, r in book.resting().items():
                resting_by_token[(r.firm, r.token)] = r
            # the ITCH events rebuild the displayed book
            itch_orders = {ref: v for ref, v in self.itch.items() if v[0] == symbol}
            shown = {ref: [symbol, r.side, r.leaves, r.price] for ref, r in book.resting().items() if r.displayed}
            assert itch_orders == shown
            for side, depth in (("B", book.bids(displayed_only=True)), ("S", book.asks(displayed_only=True))):
                agg = defaultdict(int)
                for _, s, shares, price in itch_orders.values():
                    if s == side:
                        agg[price] += shares
                assert dict(depth) == dict(agg)
        live = {key: m for key, m in self.tokens.items() if m.live}
        assert set(live) == set(resting_by_token)
        for key, model in self.tokens.items():
            assert model.entered == model.executed + model.canceled + model.replaced + model.leaves
            if model.live:
                r = resting_by_token[key]
                assert (r.leaves, r.price, r.side, r.ref) == (model.leaves, model.price, model.side, model.ref)
            else:
                assert model.leaves == 0, f"{key} is not live but has {model.leaves} shares unaccounted"
        for firm in FIRMS:
            if firm in engine.firms:
                expected = {s: v for s, v in self.positions[firm].items()}
                assert engine.firm_report(firm).positions == expected


def check_book(book: Book) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask, f"crossed book {book}"
    for side in (book.bid_side, book.ask_side):
        assert side.keys == sorted(side.keys)
        assert sorted(side.keys) == sorted(side.sign * p for p in side.levels)
        for price, level in side.levels.items():
            live = [o for o in level.orders if o.leaves]
            assert level.count == len(live) > 0
            assert level.dead == len(level.orders) - len(live)
            assert level.shares == sum(o.leaves for o in live)
            assert all(o.price == price and o.side == side.side and book.orders[o.ref] is o for o in live)
            refs = [o.ref for o in live]
            assert refs == sorted(refs)                  # time priority: refs are given in arrival order
        levels = {}
        for o in book.orders.values():
            if o.side == side.side:
                levels[o.price] = levels.get(o.price, 0) + o.leaves
        assert dict((p, l.shares) for p, l in side.levels.items()) == levels


def random_flow(seed: int, operations: int, check_every: int = 1, ticks: int = 8) -> Checker:
    rng = random.Random(seed)
    engine = MatchingEngine(SYMBOLS, max_shares=5_000)
    checker = Checker(engine)
    counter = 0
    for step in range(operations):
        roll = rng.random()
        firm = rng.choice(FIRMS)
        live = [key for key, m in checker.tokens.items() if m.live and key[0] == firm]
        if roll < 0.45 or not live:
            counter += 1
            token = f"T{counter}" if rng.random() > 0.01 else rng.choice([f"T{counter - 1}", "T1"])
            symbol = rng.choice(SYMBOLS) if rng.random() > 0.005 else "NOPE"
            side = rng.choice("BBSSTE" if rng.random() > 0.005 else "X")
            r = rng.random()
            if r < 0.05:
                price = MARKET
            elif r < 0.06:
                price = rng.choice([0, 2_000_000_001])
            else:
                offset = rng.randint(-ticks, ticks + ticks // 2) * TICK
                price = MID - offset if side == "B" else MID + offset
            shares = rng.choice([1, 10, 50, 100, 100, 200, 500, 1000]) if rng.random() > 0.01 else rng.choice([0, 5_001])
            tif = IOC if rng.random() < 0.15 else DAY
            display = rng.choice("YYYYYAAN")
            events = engine.enter(firm, token, symbol, side, shares, price, tif, display)
        elif roll < 0.75:
            key = rng.choice(live) if rng.random() > 0.03 else (firm, f"T{rng.randint(1, counter + 5)}")
            model = checker.tokens.get(key)
            shares = 0 if rng.random() < 0.7 or model is None else rng.randint(0, model.leaves + 10)
            events = engine.cancel(key[0], key[1], shares)
        elif roll < 0.93:
            key = rng.choice(live) if rng.random() > 0.03 else (firm, f"T{rng.randint(1, counter + 5)}")
            counter += 1
            model = checker.tokens.get(key)
            base = model.price if model is not None and model.price != MARKET else MID
            price = max(1, base + rng.randint(-ticks, ticks) * TICK)
            shares = rng.choice([1, 50, 100, 300]) if rng.random() > 0.01 else 0
            tif = None if rng.random() < 0.9 else rng.choice([IOC, DAY])
            display = None if rng.random() < 0.9 else rng.choice("YN")
            events = engine.replace(key[0], key[1], f"T{counter}", shares, price, tif, display)
        elif roll < 0.96:
            symbol = rng.choice(SYMBOLS)
            events = engine.halt(symbol) if rng.random() < 0.5 else engine.resume(symbol)
        elif roll < 0.965:
            events = engine.cancel_all(firm=firm if rng.random() < 0.5 else None,
                                       symbol=rng.choice(SYMBOLS) if rng.random() < 0.5 else None)
        else:
            symbol = rng.choice(SYMBOLS)
            events = engine.resume(symbol)
        checker.apply(events)
        if step % check_every == 0:
            checker.check()
    checker.apply(engine.close(expire=True))
    checker.check()
    assert not any(m.live for m in checker.tokens.values())
    return checker


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_flow_keeps_the_book_and_the_accounts_straight(seed):
    checker = random_flow(seed, 2500)
    executions = sum(m.executed for m in checker.tokens.values())
    assert executions > 0 and len(checker.tokens) > 500        # the flow really traded


def test_long_random_flow_checked_now_and_then():
    random_flow(99, 30_000, check_every=97)


@pytest.mark.parametrize("seed", [7, 8])
def test_random_flow_on_few_prices_builds_deep_queues(seed):
    random_flow(seed, 2500, ticks=1)


def test_deep_queue_with_mid_queue_cancels_is_compacted_and_matched_in_order():
    engine = MatchingEngine(["AAPL"])
    for i in range(400):
        engine.enter("F1", f"b{i}", "AAPL", "B", 10, MID)
    kept = [i for i in range(400) if i % 10 == 0 or i == 399]
    for i in range(400):
        if i not in kept:
            engine.cancel("F1", f"b{i}")
            check_book(engine.book("AAPL"))
    book = engine.book("AAPL")
    level = book.bid_side.levels[MID]
    assert level.count == len(kept) and len(level.orders) <= 2 * level.count + 40
    assert book.queue("B", MID) == [i + 1 for i in kept]
    events = engine.enter("F2", "s", "AAPL", "S", 10 * (len(kept) - 3), MID)
    assert [e.ref for e in events if type(e) is OrderExecuted] == [i + 1 for i in kept[:-3]]
    check_book(book)
    assert book.queue("B", MID) == [i + 1 for i in kept[-3:]]
    engine.cancel("F1", f"b{kept[-2]}")
    check_book(book)
    events = engine.enter("F2", "s2", "AAPL", "S", 100, MID)
    assert [e.ref for e in events if type(e) is OrderExecuted] == [kept[-3] + 1, kept[-1] + 1]
    assert book.bids() == [] and book.bid_side.levels == {}
