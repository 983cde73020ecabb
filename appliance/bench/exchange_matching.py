"""The matching part of ``appliance bench exchange``: ``MatchingEngine`` alone against the peer
``order-matching`` on one seeded flow.

``MatchingEngine`` alone (no I/O) on a seeded mixed flow generated before
any timing (``make_flow``): about 50% day limit orders 1..10 ticks from the mid (most
rest), 35% cancels of orders entered earlier (some have executed by then; those cost a
CancelReject, as on a real venue), 15% marketable orders (70% IOC limits 3 ticks through
the mid, 30% market orders at price 0x7FFFFFFF), spread over several symbols. Measured:

* ``ops_per_s``: one untimed-per-operation pass over the whole flow on a fresh engine,
  the best of ``--repeat`` passes, timed as one batch with ``time.perf_counter_ns``;
* ``p50_ns`` / ``p99_ns`` / ``p999_ns``: a second pass on a fresh engine with
  ``time.perf_counter_ns()`` read before and after every single call. The cost of a
  bare pair of timer reads (``timer_overhead_ns``, the median of 200,000 empty pairs
  measured in the same run) is subtracted from every percentile and reported.

The garbage collector is disabled during every timed pass, for every contender alike.

The peer, run in the same process on the same flow: the PyPI package ``order-matching``
(khrapovs/OrderBookMatchingEngine), a maintained pure-Python price-time engine with one
book per engine, so one engine per symbol. It is driven one operation at a time, the most
favourable correct way its public API allows:

* an order (limit, IOC or market) is one ``place(Orders([order]))`` followed by one
  ``match(timestamp)``; the ``Order`` objects, their ``Orders`` wrappers and the
  timestamps (2 us apart) are built before timing, as the peer's input messages (our
  engine builds its ``VenueOrder`` inside ``enter``);
* a cancel is one ``cancel_order(order_id)``; the ``ValueError`` it raises for an order
  no longer in the book is its CancelReject;
* the peer has no immediate-or-cancel and rests the remainder of a market order (at
  +inf/0). IOC and market orders therefore get ``expiration = timestamp + 1 us``: the
  peer's own expiry sweep cancels the remainder at the start of that book's next
  ``match``, before the next order there can meet it (the cost lands on that operation);
* its loguru debug logging is disabled while it runs (it would write every operation
  to stderr).

On this flow both engines make the same executions and fill the same shares (checked
every run: ``agrees``). The peer's cost per operation grows with the orders resting in
its book (it scans and re-sorts plain lists on every place, match and cancel), so it runs
the first ``--peer-operations`` operations of the flow (default 20,000; the book keeps
growing over the flow, so a longer prefix only lowers its rate), and our engine is timed
again on exactly that prefix for the ratio. Also reported: ours against the 200,000 ops/s
target, and a constant reference line for liquibook (C++), a published figure that is
*not* run here.
"""
from __future__ import annotations

import gc
import random
import time
from array import array

from appliance.bench.timing import percentile as _percentile
from appliance.bench.timing import timer_overhead_ns
from appliance.wire.ouch import MARKET_PRICE

SEED = 42
MID = 1_000_000                  # $100.0000
TICK = 100                       # $0.01
MARKET = MARKET_PRICE            # OUCH market-order price
LIMIT, CANCEL, IOC_ORDER, MARKET_ORDER = 0, 1, 2, 3
KIND_NAMES = ("limit", "cancel", "ioc", "market")
FIRMS = ("F1", "F2", "F3", "F4")

TARGET_OPS_PER_S = 200_000
LIQUIBOOK_OPS_PER_S = 2_000_000
LIQUIBOOK_NOTE = "liquibook (C++) ~2,000,000 ops/s, published figure, not run here"
PEER_NAME = "order_matching"
PEER_PACKAGE = "order-matching"


def symbol_names(count: int) -> list[str]:
    return [f"SYM{i}" for i in range(count)]


def make_flow(operations: int, symbols: list[str], seed: int = SEED) -> list[tuple]:
    """A reproducible mixed flow: ``(kind, firm, token, symbol, side, shares, price)`` per operation.

    ``kind`` is ``LIMIT`` (day order 1..10 ticks from the mid, never crossing), ``CANCEL``
    (an order entered earlier, chosen at random among those not yet canceled; it may have
    executed since), ``IOC_ORDER`` (3 ticks through the mid) or ``MARKET_ORDER`` (price
    ``MARKET``). Cancels carry the symbol too (our engine ignores it; the peer needs it).
    Tokens are unique across the flow.
    """
    rng = random.Random(seed)
    random_, randint, randrange, choice = rng.random, rng.randint, rng.randrange, rng.choice
    flow: list[tuple] = []
    live: list[tuple[str, str, str]] = []
    n = 0
    for _ in range(operations):
        r = random_()
        if r < 0.50 or not live:
            n += 1
            firm, symbol = choice(FIRMS), choice(symbols)
            side = "B" if random_() < 0.5 else "S"
            offset = randint(1, 10) * TICK
            token = f"T{n}"
            flow.append((LIMIT, firm, token, symbol, side, choice((100, 100, 200, 300, 500)),
                         MID - offset if side == "B" else MID + offset))
            live.append((firm, token, symbol))
        elif r < 0.85:
            i = randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            firm, token, symbol = live.pop()
            flow.append((CANCEL, firm, token, symbol, "", 0, 0))
        else:
            n += 1
            firm, symbol = choice(FIRMS), choice(symbols)
            side = "B" if random_() < 0.5 else "S"
            shares = choice((100, 200, 300))
            if random_() < 0.3:
                flow.append((MARKET_ORDER, firm, f"T{n}", symbol, side, shares, MARKET))
            else:
                flow.append((IOC_ORDER, firm, f"T{n}", symbol, side, shares,
                             MID + 3 * TICK if side == "B" else MID - 3 * TICK))
    return flow


def flow_mix(flow: list[tuple]) -> dict:
    counts = [0, 0, 0, 0]
    for op in flow:
        counts[op[0]] += 1
    return {name: counts[i] for i, name in enumerate(KIND_NAMES)}


# ---------------------------------------------------------------------------
# timing helpers
# ---------------------------------------------------------------------------

def latency_summary(latencies, kinds: bytes, overhead: int) -> dict:
    """p50/p99/p99.9 net of ``overhead`` (clamped at 0), overall and per operation kind."""
    ordered = sorted(latencies)
    out = {f"{key}_ns": max(0, _percentile(ordered, q) - overhead)
           for key, q in (("p50", 0.50), ("p99", 0.99), ("p999", 0.999))}
    out["max_ns"] = max(0, int(ordered[-1]) - overhead)
    by_kind = {}
    for kind, name in enumerate(KIND_NAMES):
        values = sorted(v for v, k in zip(latencies, kinds) if k == kind)
        if values:
            by_kind[name] = {"count": len(values), "p50_ns": max(0, _percentile(values, 0.50) - overhead),
                             "p99_ns": max(0, _percentile(values, 0.99) - overhead)}
    out["by_kind"] = by_kind
    return out


def _timed_pass(run_once) -> int:
    gc.collect()
    gc.disable()
    try:
        return run_once()
    finally:
        gc.enable()


# ---------------------------------------------------------------------------
# our engine
# ---------------------------------------------------------------------------

def run_ours(flow: list[tuple], symbols: list[str], *, per_op: bool = False) -> dict:
    """One pass of our engine over ``flow`` on a fresh engine.

    Without ``per_op``: the elapsed ns of the whole pass. With it: each call timed on its
    own (``latencies``) and the cancel rejects counted outside the timed region.
    """
    from appliance.exchange.events import CancelReject
    from appliance.exchange.matching import DAY, IOC, MatchingEngine

    engine = MatchingEngine(symbols)
    enter, cancel = engine.enter, engine.cancel
    pc = time.perf_counter_ns
    latencies = array("q", bytes(8 * len(flow))) if per_op else None
    rejects = 0

    def batch() -> int:
        t0 = pc()
        for kind, firm, token, symbol, side, shares, price in flow:
            if kind == CANCEL:
                cancel(firm, token)
            elif kind == LIMIT:
                enter(firm, token, symbol, side, shares, price, DAY, "Y")
            else:
                enter(firm, token, symbol, side, shares, price, IOC, "Y")
        return pc() - t0

    def each() -> int:
        nonlocal rejects
        started = pc()
        i = 0
        for kind, firm, token, symbol, side, shares, price in flow:
            if kind == CANCEL:
                t0 = pc()
                result = cancel(firm, token)
                t1 = pc()
                if result and type(result[0]) is CancelReject:
                    rejects += 1
            elif kind == LIMIT:
                t0 = pc()
                enter(firm, token, symbol, side, shares, price, DAY, "Y")
                t1 = pc()
            else:
                t0 = pc()
                enter(firm, token, symbol, side, shares, price, IOC, "Y")
                t1 = pc()
            latencies[i] = t1 - t0
            i += 1
        return pc() - started

    elapsed = _timed_pass(each if per_op else batch)
    return {
        "elapsed_ns": elapsed,
        "latencies": latencies,
        "trades": engine.next_match - 1,
        "filled_shares": sum(f.bought for f in engine.firms.values()),
        "cancel_rejects": rejects if per_op else None,
        "resting": sum(len(book.orders) for book in engine.books.values()),
    }


# ---------------------------------------------------------------------------
# the peer: order-matching
# ---------------------------------------------------------------------------

def peer_version() -> tuple[str | None, str | None]:
    """(version, None) when order-matching imports, else (None, why not)."""
    try:
        from importlib.metadata import version

        import order_matching.matching_engine  # noqa: F401 - imports polars/pandera too
        return version(PEER_PACKAGE), None
    except Exception as exc:  # noqa: BLE001 - any import failure means "unavailable", never a crash
        missing = getattr(exc, "name", None)
        detail = f"not installed ({missing})" if isinstance(exc, ImportError) and missing else \
            f"{type(exc).__name__}: {exc}"
        return None, f"{detail}; pip install -e '.[bench]'"


def _peer_inputs(flow: list[tuple], symbols: list[str], seed: int) -> list[tuple]:
    """The peer's input messages, built before timing: one fresh engine per symbol, and per
    operation ``(kind, call, argument, match, timestamp)`` (``match`` None for a cancel)."""
    from datetime import datetime, timedelta

    from order_matching.enums import Side
    from order_matching.matching_engine import MatchingEngine as PeerEngine
    from order_matching.order import LimitOrder, MarketOrder
    from order_matching.orders import Orders

    engines = {symbol: PeerEngine(seed=seed) for symbol in symbols}
    base = datetime(2024, 1, 2, 9, 30)
    us = timedelta(microseconds=1)
    ops = []
    for i, (kind, firm, token, symbol, side, shares, price) in enumerate(flow):
        engine = engines[symbol]
        if kind == CANCEL:
            ops.append((CANCEL, engine.cancel_order, token, None, None))
            continue
        ts = base + 2 * i * us
        s = Side.BUY if side == "B" else Side.SELL
        if kind == LIMIT:
            order = LimitOrder(side=s, price=price, size=shares, timestamp=ts, order_id=token, trader_id=firm)
        elif kind == MARKET_ORDER:
            order = MarketOrder(side=s, size=shares, timestamp=ts, order_id=token, trader_id=firm,
                                expiration=ts + us)
        else:
            order = LimitOrder(side=s, price=price, size=shares, timestamp=ts, order_id=token, trader_id=firm,
                               expiration=ts + us)
        ops.append((kind, engine.place, Orders([order]), engine.match, ts))
    return ops


def run_peer(flow: list[tuple], symbols: list[str], *, per_op: bool = False, seed: int = SEED) -> dict:
    """One pass of order-matching over ``flow`` (fresh engines, inputs built before timing)."""
    from loguru import logger

    ops = _peer_inputs(flow, symbols, seed)
    pc = time.perf_counter_ns
    latencies = array("q", bytes(8 * len(flow))) if per_op else None
    trades = filled = rejects = 0

    def batch() -> int:
        t0 = pc()
        for kind, call, argument, match, ts in ops:
            if kind == CANCEL:
                try:
                    call(argument)
                except ValueError:
                    pass
            else:
                call(argument)
                match(ts)
        return pc() - t0

    def each() -> int:
        nonlocal trades, filled, rejects
        started = pc()
        i = 0
        for kind, call, argument, match, ts in ops:
            if kind == CANCEL:
                rejected = False
                t0 = pc()
                try:
                    call(argument)
                except ValueError:
                    rejected = True
                t1 = pc()
                rejects += rejected
            else:
                t0 = pc()
                call(argument)
                executed = match(ts)
                t1 = pc()
                done = executed.trades
                trades += len(done)
                filled += sum(t.size for t in done)
            latencies[i] = t1 - t0
            i += 1
        return pc() - started

    logger.disable("order_matching")
    try:
        elapsed = _timed_pass(each if per_op else batch)
    finally:
        logger.enable("order_matching")
    return {"elapsed_ns": elapsed, "latencies": latencies, "trades": trades if per_op else None,
            "filled_shares": int(filled) if per_op else None, "cancel_rejects": rejects if per_op else None}


# ---------------------------------------------------------------------------
# the matching part
# ---------------------------------------------------------------------------

def _engine_result(runner, flow, symbols, repeat: int, overhead: int, **kw) -> dict:
    best = min(runner(flow, symbols, **kw)["elapsed_ns"] for _ in range(repeat))
    timed = runner(flow, symbols, per_op=True, **kw)
    kinds = bytes(op[0] for op in flow)
    result = {"operations": len(flow), "seconds": best / 1e9, "ops_per_s": len(flow) / (best / 1e9),
              "mean_ns": best / len(flow), **latency_summary(timed["latencies"], kinds, overhead),
              "timer_overhead_ns": overhead, "trades": timed["trades"], "filled_shares": timed["filled_shares"],
              "cancel_rejects": timed["cancel_rejects"]}
    if timed.get("resting") is not None:
        result["resting_at_end"] = timed["resting"]
    return result


def measure_matching(operations: int, symbols_count: int, seed: int, repeat: int, peer_operations: int,
                     skip_peer: bool) -> tuple[dict, dict, dict]:
    """(results, peers, ratios) of the matching part."""
    symbols = symbol_names(symbols_count)
    started = time.perf_counter()
    flow = make_flow(operations, symbols, seed)
    generate_s = time.perf_counter() - started
    overhead = timer_overhead_ns()
    ours = _engine_result(run_ours, flow, symbols, repeat, overhead)
    ours.update(symbols=symbols_count, seed=seed, generate_seconds=generate_s, mix=flow_mix(flow),
                timing="batch: best of --repeat whole passes; percentiles: perf_counter_ns around each call "
                       "in a second pass, minus timer_overhead_ns")
    results = {"matching": ours}
    ratios: dict = {"ours_vs_target": ours["ops_per_s"] / TARGET_OPS_PER_S, "target_ops_per_s": TARGET_OPS_PER_S}
    peers: dict = {}
    if skip_peer:
        peers[PEER_NAME] = {"available": False, "skipped": True, "reason": "--skip-peer"}
    else:
        version, why = peer_version()
        if version is None:
            peers[PEER_NAME] = {"available": False, "reason": why}
        else:
            prefix = flow[:min(peer_operations, len(flow))]
            if len(prefix) == len(flow):
                ours_prefix = ours
            else:
                ours_prefix = _engine_result(run_ours, prefix, symbols, repeat, overhead)
                results["matching_peer_prefix"] = ours_prefix
            peer = _engine_result(run_peer, prefix, symbols, repeat, overhead, seed=seed)
            agrees = all(peer[k] == ours_prefix[k] for k in ("trades", "filled_shares", "cancel_rejects"))
            peer.update(available=True, package=PEER_PACKAGE, version=version, agrees=agrees,
                        driven="one place(Orders([order])) + match(ts) per order; one cancel_order(id) per cancel "
                               "(ValueError = CancelReject); IOC/market remainders expire at the book's next "
                               "match; inputs prebuilt; loguru disabled")
            peers[PEER_NAME] = peer
            ratios["ours_vs_order_matching"] = ours_prefix["ops_per_s"] / peer["ops_per_s"]
            if ours_prefix["p50_ns"]:
                ratios["order_matching_p50_vs_ours"] = peer["p50_ns"] / ours_prefix["p50_ns"]
            ratios["peer_operations"] = len(prefix)
    ratios["reference"] = {"liquibook": {"ops_per_s": LIQUIBOOK_OPS_PER_S, "measured": False,
                                         "note": LIQUIBOOK_NOTE}}
    return results, peers, ratios
