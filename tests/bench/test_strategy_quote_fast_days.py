"""The compiled quote step (strategy/_quote_fast.c) against its reference on real BookUpdate streams: every
BookUpdate the reference feed makes of the bench's generated ITCH days (bench/itch.generate_day_file) gives
the reference's quotes, and the market maker quoting such a stream sends the same intents, one by one, with
the compiled step and without it. Correctness, not speed (here because it reads the bench's days)."""
from __future__ import annotations

import random

import pytest

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_UPDATE
from appliance.messages.codes import Action, ExecEvent, Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy.api import Book, OrderState
from appliance.strategy.ids import ClientOrderIds
from appliance.strategy.loader import build_parameters
from appliance.strategy.market_maker import MarketMaker, QuoteParams, _top_of, compiled_quote_step, desired_quotes

from strategy_harness import SYMBOLS, Harness, instruments, strategy_layout     # noqa: E402  (tests/support/)

pytestmark = pytest.mark.skipif(compiled_quote_step(QuoteParams()) is None,
                                reason="appliance.strategy._quote_fast is not built")


def random_params(rng: random.Random) -> QuoteParams:
    tick = rng.choice([1, 25, 100, 100, 500, 10_000])
    lot = rng.choice([1, 100, 300])
    size = lot * rng.randint(1, 5)
    return QuoteParams(
        tick=tick, spread_ticks=rng.randint(1, 41), lot=lot, size=size, spread_bp=rng.choice([0.0, 1, 2.5, 33.333]),
        max_position=size * rng.randint(1, 20), inventory_unit=rng.choice([1, 100, 777]),
        skew_ticks=rng.choice([0, 1.0, 1 / 3, 13.1]), widen_ticks=rng.choice([0, 0.5, 1 / 7]),
        requote_threshold_ticks=rng.randint(0, 3), fair_value=rng.choice(["mid", "microprice"]))


_FLAGS_AT = BOOK_UPDATE.offset_of["flags"]
_BID_AT, _ASK_AT = BOOK_UPDATE.offset_of["bid_price_0"], BOOK_UPDATE.offset_of["ask_price_0"]


def crossed_unflagged(record: bytes) -> bytes:
    """The record with its top's two prices exchanged and no CROSSED flag: the generated days' books are never
    crossed (as a venue's), so this makes the post-only clamps on crossed levels run on real prices and sizes."""
    copy = bytearray(record)
    copy[_FLAGS_AT] &= ~BOOK_FLAG_CROSSED & 0xFF
    bid, ask = copy[_BID_AT:_BID_AT + 4], copy[_ASK_AT:_ASK_AT + 4]
    copy[_BID_AT:_BID_AT + 4], copy[_ASK_AT:_ASK_AT + 4] = ask, bid
    return bytes(copy)


def real_book_updates(tmp_path, seed: int, symbols: int = 6, orders: int = 10_000) -> list[bytes]:
    """Every BookUpdate the reference feed makes of a generated ITCH day (bench/itch.generate_day_file)."""
    from appliance.bench.feed_replay import _packet_bounds, directory_symbols
    from appliance.bench.itch import generate_day_file
    from appliance.feed.books import BookSet
    from appliance.feed.outputs import BookOutputs
    from appliance.messages.catalog import BOOK_DEPTH
    from appliance.runtime.market_state import MarketStateWriter
    from appliance.wire import itch
    import mmap

    from fast_feed_pair import RecordingRing, feed_layout

    path = tmp_path / f"day-{seed}.itch"
    generate_day_file(str(path), orders, seed, symbols)
    data = path.read_bytes()
    names = directory_symbols(data, symbols)
    layout = feed_layout(names)
    ring = RecordingRing()
    books = BookSet(names, BOOK_DEPTH)
    scanner = itch.BlockScanner(books.subscribed_locates, strict=False)
    outputs = BookOutputs(ring, ring.buffer, MarketStateWriter(mmap.mmap(-1, layout.segments["main"].size), layout))
    outputs.midnight_ns, outputs.feed_stale = 1_700_000_000_000_000_000, False
    records = []
    for start, stop in _packet_bounds(data, len(data), 300):     # small packets: more updates
        outputs.publish_packet(scanner.scan(data[start:stop], 0, stop - start, True), books, start, stop)
        records += ring.take()
    return records


@pytest.mark.parametrize("seed", [1, 2])
def test_every_real_book_update_gives_the_reference_quotes(tmp_path, seed):
    rng = random.Random(seed)
    records = real_book_updates(tmp_path, seed)
    assert len(records) > 500
    book = Book("X", 0)
    quoted = 0
    for n, record in enumerate(records):
        if n % 50 == 0:
            params = random_params(rng)
            step = compiled_quote_step(params)
        for update in (record, crossed_unflagged(record)):
            book._view(update, 0)
            top = _top_of(book)
            for position in (0, rng.randint(-2000, 2000)):
                expected = desired_quotes(top, position, (), params)
                assert step.desired_at(update, 0, position, 0, 0) == expected, (n, BOOK_UPDATE.as_dict(update), params)
                quoted += expected != (None, None)
    assert quoted > 1000


@pytest.fixture
def two_memories(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name + "c"), "c.yaml"))) as a, \
            SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name + "r"), "r.yaml"))) as b:
        yield a, b


def _answer(h: Harness, intent: dict, fill: bool, position: int, symbol: str) -> int:
    """The OMS's answer to one intent (accepted, replaced, canceled; a NEW sometimes filled at once)."""
    action, cid = intent["action"], intent["client_order_id"]
    common = dict(side=intent["side"], shares=intent["shares"], price=intent["price"], symbol=symbol)
    if action == Action.NEW:
        h.report(ExecEvent.ACCEPTED, cid, leaves=intent["shares"], position=position, **common)
        if fill:
            position += intent["shares"] if intent["side"] == Side.BUY else -intent["shares"]
            h.report(ExecEvent.EXECUTED, cid, side=intent["side"], shares=intent["shares"], price=intent["price"],
                     leaves=0, position=position, symbol=symbol)
    elif action == Action.REPLACE:
        h.report(ExecEvent.REPLACED, cid, orig=intent["orig_client_order_id"], leaves=intent["shares"],
                 position=position, **common)
        if fill:
            position += intent["shares"] if intent["side"] == Side.BUY else -intent["shares"]
            h.report(ExecEvent.EXECUTED, cid, side=intent["side"], shares=intent["shares"], price=intent["price"],
                     leaves=0, position=position, symbol=symbol)
    elif action == Action.CANCEL:
        h.report(ExecEvent.CANCELED, intent["orig_client_order_id"], side=intent["side"], leaves=0,
                 position=position, symbol=symbol)
    return position


def test_the_market_maker_sends_the_same_intents_with_and_without_the_compiled_step(tmp_path, two_memories):
    """A real BookUpdate stream (one symbol of a generated day, as AAPL), the same answers and fills: the
    compiled market maker's intents are the reference's, field by field."""
    records = real_book_updates(tmp_path, 3, symbols=len(SYMBOLS))     # its symbols as the harness's
    stream = records
    assert len(stream) > 500
    values = dict(spread_ticks=3, size=100, max_position=400, skew_ticks=1.0, widen_ticks=0.5,
                  requote_threshold_ticks=1, reject_cooldown_ms=60_000, fair_value="microprice")
    harnesses = [Harness(memory, MarketMaker, build_parameters(MarketMaker, {**values, "compiled_step": compiled}),
                         instruments=instruments("0.01"), ids=ClientOrderIds(clock_ns=lambda: 0))
                 for memory, compiled in zip(two_memories, (True, False))]
    assert all(q.step is not None for q in harnesses[0].strategy.quotes.values())
    assert all(q.step is None for q in harnesses[1].strategy.quotes.values())
    for h in harnesses:
        assert [i["action"] for i in h.intents()] == [Action.CANCEL_ALL]       # the start's
    positions = [{}, {}]
    rng = random.Random(5)
    sent = widest = 0
    for n, record in enumerate(stream):
        fill = rng.random() < 0.3
        filled_side = rng.choice((Side.BUY, Side.SELL))       # one side: a two-sided fill leaves no position
        seen = []
        for k, h in enumerate(harnesses):
            offset = h.feed.claim()
            h.buffer[offset:offset + BOOK_UPDATE.size] = record
            h.feed.commit()
            intents, batch = [], h.intents()
            for _ in range(10):                 # answer until the strategy has nothing more to say
                if not batch:
                    break
                for intent in batch:
                    symbol = SYMBOLS[intent["symbol_id"]]
                    positions[k][symbol] = _answer(h, intent, fill and intent["side"] == filled_side,
                                                   positions[k].get(symbol, 0), symbol)
                intents += batch
                batch = h.intents()
            for intent in intents:
                intent.pop("t_strategy_out_ns")
            seen.append(intents)
        assert seen[0] == seen[1], f"update {n}: compiled {seen[0]}\nreference {seen[1]}"
        sent += len(seen[0])
        widest = max([widest, *map(abs, positions[0].values())])
    assert positions[0] == positions[1]
    assert sent > 30 and widest >= 200        # quoted, requoted and skewed by fills (43 and 400 with these seeds)
    for h in harnesses:
        assert h.host.stats.errors == 0 and not h.host.failed


class _CountingStep:
    """A compiled step that counts ``quiet``'s answers (the test must see it say both)."""

    def __init__(self, step, counts):
        self._step, self._counts = step, counts

    def quiet(self, *args):
        answer = self._step.quiet(*args)
        self._counts[answer] += 1
        return answer

    def __getattr__(self, name):
        return getattr(self._step, name)


def _answer_late(h: Harness, intent: dict, roll: random.Random, position: int, symbol: str) -> int:
    """The OMS's answer as a busy day gives it: rejected (risk or exchange), partly or wholly filled, a
    cancel refused; else as ``_answer``."""
    action, cid, side = intent["action"], intent["client_order_id"], intent["side"]
    r = roll.random()
    if action == Action.NEW and r < 0.05:
        h.risk_reject(cid, 3, symbol=symbol)                                  # the side cools down
        return position
    if action == Action.NEW and r < 0.1:
        h.report(ExecEvent.REJECTED, cid, side=side, reason=ord("X"), source=3, position=position, symbol=symbol)
        return position
    if action == Action.CANCEL and r < 0.2:
        h.report(ExecEvent.CANCEL_REJECTED, intent["orig_client_order_id"], reason=ord("I"), position=position,
                 symbol=symbol)                                               # a cancel retry waits
        return position
    if action == Action.NEW and r < 0.35:
        h.report(ExecEvent.ACCEPTED, cid, side=side, shares=intent["shares"], price=intent["price"],
                 leaves=intent["shares"], position=position, symbol=symbol)
        part = intent["shares"] // 2 or intent["shares"]
        position += part if side == Side.BUY else -part
        h.report(ExecEvent.EXECUTED, cid, side=side, shares=part, price=intent["price"],
                 leaves=intent["shares"] - part, position=position, symbol=symbol)
        return position
    return _answer(h, intent, r > 0.8, position, symbol)


def test_quiet_requotes_send_what_the_reference_sends(tmp_path, two_memories):
    """``QuoteStep.quiet`` (``_requote`` sends nothing: skip it) against the reference market maker on a real
    stream, with answers left pending for a few updates (orders pending new, replace and cancel), rejects
    (cooldowns), refused cancels (retry waits) and partial fills, on an event clock (1 ms an update): the
    same intents, field by field, and ``quiet`` said both yes and no."""
    records = real_book_updates(tmp_path, 4, symbols=len(SYMBOLS), orders=60_000)
    values = dict(spread_ticks=1, size=200, max_position=300, skew_ticks=1.0, widen_ticks=0.5,
                  requote_threshold_ticks=0, reject_cooldown_ms=20)
    counts = {True: 0, False: 0}
    now = [0]
    harnesses = [Harness(memory, MarketMaker, build_parameters(MarketMaker, {**values, "compiled_step": compiled}),
                         instruments=instruments("0.01"), ids=ClientOrderIds(clock_ns=lambda: 0),
                         clock_ns=lambda: now[0])
                 for memory, compiled in zip(two_memories, (True, False))]
    for state in harnesses[0].strategy.quotes.values():
        state.step = _CountingStep(state.step, counts)
    for h in harnesses:
        h.intents()
    positions, waiting = [{}, {}], [[], []]
    sent = 0
    for n, record in enumerate(records):
        now[0] = n * 1_000_000
        seen = []
        for k, h in enumerate(harnesses):
            offset = h.feed.claim()
            h.buffer[offset:offset + BOOK_UPDATE.size] = record
            h.feed.commit()
            fill = random.Random(-n)
            if fill.random() < 0.3:              # the market trades through one of our resting quotes
                live = sorted((o.client_order_id, o) for o in h.strategy.orders if o.state == OrderState.LIVE)
                if live:
                    _, order = live[fill.randrange(len(live))]
                    shares = order.leaves if fill.random() < 0.7 else min(100, order.leaves)
                    symbol = order.symbol
                    positions[k][symbol] = position = positions[k].get(symbol, 0) + (
                        shares if order.side == Side.BUY else -shares)
                    h.report(ExecEvent.EXECUTED, order.client_order_id, side=order.side, shares=shares,
                             price=order.price, leaves=order.leaves - shares, position=position, symbol=symbol)
            intents = []
            for round_ in range(10):            # answer what is due until the strategy has nothing more to say
                batch = h.intents()
                for number, intent in enumerate(batch):
                    intent.pop("t_strategy_out_ns")
                    key = (n * 10 + round_) * 1000 + number
                    waiting[k].append((n + random.Random(key).choice((0, 0, 0, 1, 3)), key, intent))
                intents += batch
                due = sorted(w for w in waiting[k] if w[0] <= n)
                if not due:
                    break
                waiting[k] = [w for w in waiting[k] if w[0] > n]
                for _, key, intent in due:
                    symbol = SYMBOLS[intent["symbol_id"]]
                    positions[k][symbol] = _answer_late(h, intent, random.Random(key), positions[k].get(symbol, 0),
                                                        symbol)
            seen.append(intents)
        assert seen[0] == seen[1], f"update {n}: compiled {seen[0]}\nreference {seen[1]}"
        sent += len(seen[0])
    assert positions[0] == positions[1]
    assert sent > 100 and counts[True] > 500 and counts[False] > 100, (sent, counts)
    for h in harnesses:
        assert h.host.stats.errors == 0 and not h.host.failed
