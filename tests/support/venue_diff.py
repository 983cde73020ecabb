"""The venue's differential check (``replay/_venue_fast.c`` against ``venue.py``, ``compiled=False``): both
venues through the same recorded messages with the same orders of ours (``Trader``), compared event by
event and state by state (``differ``); ``perturbed`` puts defects into a day's messages."""
from __future__ import annotations

import random

from appliance.replay.latency import Latency
from appliance.replay.venue import MARKET_PRICE, ReplayVenue
from appliance.wire import itch

MODELS = ("risk-averse", "fifo", "prob-power:2", "prob-log")


def raws(path) -> list[tuple]:
    """Every message of a day file as the scanner hands it over (no locate filter)."""
    data = open(path, "rb").read()
    walk = itch.BlockScanner(bytearray(b"\x01" * 65536), strict=True).scan(data)
    return list(walk)


def perturbed(messages: list[tuple], seed: int) -> list[tuple]:
    """The day with defects a real file or a bad recorder can hold, at random places."""
    rng = random.Random(seed)
    refs = [m[4] for m in messages if m[0] in (b"A", b"F")]
    directories = [m for m in messages if m[0] == b"R"]
    out = []
    for m in messages:
        kind = m[0]
        roll = rng.random()
        if kind in (b"A", b"F") and roll < 0.05:
            m = m[:4] + (rng.choice(refs),) + m[5:]                     # a duplicate reference
        elif kind in (b"A", b"F") and roll < 0.08:
            m = m[:6] + (0,) + m[7:]                                    # zero shares
        elif kind in (b"E", b"C", b"X") and roll < 0.1:
            m = m[:5] + (m[5] * 7 + 1000,) + m[6:]                     # more shares than the order has
        elif kind in (b"E", b"C", b"X", b"D") and roll < 0.14:
            m = m[:4] + (rng.randrange(1, 1 << 40),) + m[5:]           # an unknown reference
        elif kind == b"U" and roll < 0.2:
            m = m[:5] + (rng.choice(refs),) + m[6:]                     # replaced onto a live (or dead) reference
        elif kind == b"U" and roll < 0.25:
            m = m[:6] + (0,) + m[7:]
        out.append(m)
        if kind in (b"A", b"F") and roll > 0.97:                        # a hidden print at that price
            out.append((b"P", m[1], 0, m[3], 0, rng.choice((b"B", b"S")), rng.randrange(0, 900), m[7], m[8],
                        rng.randrange(1 << 30)))
        if roll > 0.998 and directories:                                # a halt, a resume, a re-mapped locate
            d = rng.choice(directories)
            out.append((b"H", d[1], 0, m[3], d[4], rng.choice((b"H", b"T")), b" ", b"    "))
            if rng.random() < 0.3:
                out.append(d[:1] + (rng.randrange(1, 200),) + d[2:3] + (m[3],) + d[4:])
    return out


def state(v: ReplayVenue) -> tuple:
    books = []
    for b in v.books:
        sides = []
        for is_buy in (True, False):
            sides.append((dict(b.levels[is_buy]), dict(b.taken[is_buy]),
                          {p: [(o.token, o.leaves, o.ahead, o.joined) for o in orders]
                           for p, orders in b.ours[is_buy].items()}))
        books.append((b.locate, b.halted, sides, v.best_price(b.sid, True), v.best_price(b.sid, False)))
    orders = {ref: (e[0].sid, e[1], e[2], e[3], e[4]) for ref, e in v.orders.items()}
    return v.now_ns, v._adds, dict(v.counters), orders, books, sorted(v.live), bytes(v.locate_map)


class Trader:
    """Our side: seeded random orders where the recorded book is (joining, crossing, market, IOC),
    cancels, reductions and replaces of live ones, a reused token now and then."""

    def __init__(self, seed: int, symbols):
        self.rng = random.Random(seed)
        self.symbols = list(symbols)
        self.token = 0

    def act(self, venues, now_ns: int) -> None:
        rng, reference = self.rng, venues[0]
        roll = rng.random()
        if roll < 0.55:
            sid = rng.randrange(len(self.symbols))
            book = reference.books[sid]
            side = rng.choice("BS")
            levels = book.levels[side == "B"] or book.levels[side != "B"]
            price = rng.choice(sorted(levels)) if levels else 1_000_000
            if rng.random() < 0.2:
                price += rng.choice((-100, 100, 500, -500))
            if rng.random() < 0.03:
                price = MARKET_PRICE
            tif = 0 if rng.random() < 0.1 else 99998
            self.token += 1
            token = self.token if rng.random() > 0.02 else max(self.token - 5, 1)
            shares = rng.randrange(1, 6) * 100
            for v in venues:
                v.submit(token, self.symbols[sid], side, shares, price, tif, now_ns)
        elif reference.live:
            token = rng.choice(sorted(reference.live))
            order = reference.live[token]
            if roll < 0.75:
                shares = 0 if rng.random() < 0.7 else rng.randrange(0, order.leaves + 200)
                for v in venues:
                    v.cancel(token, now_ns, shares)
            else:
                self.token += 1
                same = rng.random() < 0.5
                price = order.price if same else order.price + rng.choice((-100, 100))
                shares = max(order.leaves - 100, 100) if same else rng.randrange(1, 6) * 100
                for v in venues:
                    v.replace(token, self.token, shares, price, now_ns)


def differ(messages, symbols, model, seed, latency=Latency(feed_ns=0, entry_ns=30_000, ack_ns=20_000)):
    """Both venues through ``messages`` with the same orders; compared event by event and state at checkpoints."""
    compiled = ReplayVenue(symbols, model, latency, seed)
    python = ReplayVenue(symbols, model, latency, seed, compiled=False)
    assert compiled.compiled and not python.compiled
    venues = (python, compiled)
    trader = Trader(seed, symbols)
    rng = random.Random(seed + 1)
    events = 0
    for i, raw in enumerate(messages):
        for v in venues:
            v.on_itch(raw)
        if rng.random() < 0.2:
            trader.act(venues, raw[3])
        if i % 50 == 0:
            for v in venues:
                v.advance(raw[3])
        left, right = python.poll(raw[3] + 10**9), compiled.poll(raw[3] + 10**9)
        assert left == right, f"message {i} {raw}"
        events += len(left)
        if i % 500 == 0:
            assert state(python) == state(compiled), f"message {i}"
    for v in venues:
        v.advance(1 << 60)
    assert python.poll(1 << 62) == compiled.poll(1 << 62)
    assert state(python) == state(compiled)
    return python, events
