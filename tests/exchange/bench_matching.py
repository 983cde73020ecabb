"""Throughput of the matching engine on a mixed flow (not a test; run it by hand).

    cd /work/main && python3 tests/exchange/bench_matching.py [--operations 200000] [--symbols 8]

The flow is generated first (seeded) and only the engine calls are timed: about 50% limit
orders near the touch (most rest), 35% cancels of live orders, 15% marketable orders
(IOC limits through the touch and market orders). Cancels name orders that may have
executed in the meantime; those cost a CancelReject, as they would on a real venue.
"""
from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.exchange.matching import DAY, IOC, MARKET, MatchingEngine  # noqa: E402

MID = 1_000_000
TICK = 100


def make_flow(operations: int, symbols: list[str], seed: int = 42) -> list[tuple]:
    rng = random.Random(seed)
    flow: list[tuple] = []
    live: list[tuple[str, str]] = []
    firms = ["F1", "F2", "F3", "F4"]
    n = 0
    for _ in range(operations):
        r = rng.random()
        if r < 0.50 or not live:
            n += 1
            firm = rng.choice(firms)
            side = "B" if rng.random() < 0.5 else "S"
            offset = rng.randint(1, 10) * TICK
            price = MID - offset if side == "B" else MID + offset
            token = f"T{n}"
            flow.append((0, firm, token, rng.choice(symbols), side, rng.choice((100, 100, 200, 300, 500)), price))
            live.append((firm, token))
        elif r < 0.85:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            firm, token = live.pop()
            flow.append((1, firm, token))
        else:
            n += 1
            firm = rng.choice(firms)
            side = "B" if rng.random() < 0.5 else "S"
            if rng.random() < 0.3:
                price = MARKET
            else:
                price = MID + 3 * TICK if side == "B" else MID - 3 * TICK
            flow.append((2, firm, f"T{n}", rng.choice(symbols), side, rng.choice((100, 200, 300)), price))
    return flow


def run(flow: list[tuple], symbols: list[str]) -> tuple[float, int, MatchingEngine]:
    engine = MatchingEngine(symbols)
    enter, cancel = engine.enter, engine.cancel
    events = 0
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    for op in flow:
        kind = op[0]
        if kind == 0:
            events += len(enter(op[1], op[2], op[3], op[4], op[5], op[6], DAY))
        elif kind == 1:
            events += len(cancel(op[1], op[2]))
        else:
            events += len(enter(op[1], op[2], op[3], op[4], op[5], op[6], IOC))
    elapsed = time.perf_counter() - start
    gc.enable()
    return elapsed, events, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    symbols = [f"SYM{i}" for i in range(args.symbols)]
    flow = make_flow(args.operations, symbols)
    best = None
    for _ in range(args.repeat):
        elapsed, events, engine = run(flow, symbols)
        best = elapsed if best is None else min(best, elapsed)
    resting = sum(len(engine.book(s).orders) for s in symbols)
    print(f"{args.operations} operations, {events} events, {engine.next_match - 1} executions, "
          f"{resting} resting at the end")
    print(f"best of {args.repeat}: {best:.3f} s = {args.operations / best:,.0f} operations/s "
          f"({best / args.operations * 1e6:.2f} us/operation)")


if __name__ == "__main__":
    main()
