"""``appliance bench exchange``: the simulated exchange's matching engine against a peer, and its feed.

Two parts, both in one run:

**matching** - ``MatchingEngine`` alone (no I/O) on a seeded mixed flow generated before
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

**feed** - the whole exchange as a process (``appliance exchange``) at a few background
rates (``--rates``, default 10k, 50k and 200k operations/s asked): the bench binds a UDP
socket first, starts the exchange sending its MoldUDP64 feed there, waits for its
``exchange ready`` line, logs in as ``ALGO1`` over SoupBinTCP and sends a steady stream
of Enter Order / Cancel Order pairs in AAPL (``--order-rate`` messages/s, far from the
touch) for ``--seconds`` while receiving the feed. Reported per rate: MoldUDP64 messages
received per second in the window, of which the background's (received minus the ITCH
messages our own orders caused, counted from their OUCH answers), sequence gaps and the
messages missing in them, OUCH messages received, and the background operations per
second the exchange says it ran (its control socket's ``status``, when it answers). The
exchange is ended with SIGTERM and must exit 0; the process, sockets and temporary
directory are cleaned up on every path.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time
from array import array

from appliance.bench.timing import machine_info, timer_overhead_ns
from appliance.bench.timing import percentile as _percentile
from appliance.cli import bounded, positive_int
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

DEFAULT_RATES = (10_000, 50_000, 200_000)
FEED_SYMBOL = "AAPL"
FEED_FIRM, FEED_PASSWORD = "ALGO1", "secret1"
FEED_PRICE = 1_000_000           # far below the default AAPL reference (1,900,000): our orders rest, never trade

_rate = bounded(float, 1, 200_000, " operations/s")


def _rates(text: str) -> tuple[float, ...]:
    values = tuple(_rate(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no rate")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operations", type=positive_int, default=200_000,
                        help="operations in the matching flow (default 200000)")
    parser.add_argument("--symbols", type=bounded(int, 1, 10_000), default=8,
                        help="symbols the flow is spread over (default 8)")
    parser.add_argument("--seed", type=bounded(int, 0, 2**63), default=SEED, help=f"flow seed (default {SEED})")
    parser.add_argument("--repeat", type=bounded(int, 1, 100), default=3,
                        help="throughput passes per engine, the best counts (default 3)")
    parser.add_argument("--peer-operations", type=positive_int, default=20_000,
                        help="run order-matching on the first N operations of the flow (default 20000)")
    parser.add_argument("--skip-peer", action="store_true", help="do not run order-matching")
    parser.add_argument("--seconds", type=bounded(float, 0.1, 600, " s"), default=3.0,
                        help="measured window of the feed part, per rate (default 3)")
    parser.add_argument("--rates", type=_rates, default=DEFAULT_RATES, metavar="RATE[,RATE...]",
                        help="background rates asked of the exchange (default 10000,50000,200000)")
    parser.add_argument("--order-rate", type=bounded(float, 1, 100_000, " messages/s"), default=2000.0,
                        help="our Enter/Cancel messages per second during the window (default 2000)")
    parser.add_argument("--timeout", type=bounded(float, 1, 600, " s"), default=30.0,
                        help="seconds allowed for the exchange to start and to exit (default 30)")
    parser.add_argument("--skip-feed", action="store_true", help="do not start the exchange process")


# ---------------------------------------------------------------------------
# the flow
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# the feed part: the exchange as a process
# ---------------------------------------------------------------------------

def exchange_args(feed_port: int, control: str, rate: float, rerequest_port: int = 0, source_port: int = 0) -> list[str]:
    """``appliance exchange`` arguments for a benchmark: every port free (0) unless given, the feed
    sent to ``127.0.0.1:feed_port``, background flow at ``rate``, no linger."""
    return ["--order-port", "0", "--rerequest-port", str(rerequest_port), "--source-port", str(source_port),
            "--snapshot-port", "0", "--feed", f"127.0.0.1:{feed_port}", "--control", control,
            "--background-rate", f"{rate:g}", "--linger", "0"]


class FeedCounter:
    """Counts MoldUDP64 packets: messages, heartbeats, end of session, gaps (by sequence number)."""

    def __init__(self) -> None:
        from appliance.wire import moldudp64
        self._header = moldudp64.HEADER.struct.unpack_from
        self._header_size = moldudp64.HEADER_SIZE
        self._end_of_session = moldudp64.END_OF_SESSION_COUNT
        self._heartbeat = moldudp64.HEARTBEAT_COUNT
        self.next_sequence = 0        # 0: nothing seen yet
        self.packets = self.messages = self.heartbeats = 0
        self.gaps = self.missing = self.late = 0
        self.window_messages = self.window_packets = 0
        self.ended = False

    def packet(self, buffer, nbytes: int, in_window: bool) -> None:
        if nbytes < self._header_size:
            return
        _session, sequence, count = self._header(buffer)
        self.packets += 1
        if count == self._end_of_session:
            self.ended = True
            count = 0
        elif count == self._heartbeat:
            self.heartbeats += 1
        expected = self.next_sequence
        if expected == 0:
            expected = 1              # the stream starts at 1; the bench binds before the exchange starts
        if sequence > expected:
            self.gaps += 1
            self.missing += sequence - expected
        elif sequence < expected:
            self.late += 1            # a duplicate or reordered packet
        self.next_sequence = max(expected, sequence + count)
        self.messages += count
        if in_window:
            self.window_messages += count
            self.window_packets += 1


def _status(control: str) -> dict | None:
    try:
        from appliance.runtime.unix_socket import request_json
        answer = request_json(control, {"command": "status"}, 5.0, "the exchange")
        return answer if answer.get("ok", True) else None
    except Exception:  # noqa: BLE001 - the status is an extra; the feed is measured without it
        return None


def _status_numbers(status: dict | None) -> tuple[int | None, int | None]:
    """(background operations run, feed messages published) from a ``status`` answer."""
    if not status:
        return None, None
    ops = (status.get("counters") or {}).get("background_operations")
    if ops is None:
        ops = (status.get("background") or {}).get("operations")
    published = (status.get("feed") or {}).get("messages")
    return ops, published


def measure_feed(rate: float, seconds: float, order_rate: float, timeout: float) -> dict:
    """One exchange process at background ``rate``: our orders and the feed for ``seconds``."""
    import select
    import shutil
    import socket
    import tempfile

    from appliance.sim.exchange_process import ExchangeProcess
    from appliance.sim.ports import udp_receiver
    from appliance.wire import ouch
    from appliance.wire.soupbintcp_session import ClientSession, LoginAccepted, LoginRejected, SequencedMessage

    tmp = tempfile.mkdtemp(prefix="bexch", dir="/tmp")        # short: UNIX socket paths are limited
    control = os.path.join(tmp, "ctl.sock")
    feed = exchange = tcp = None
    try:
        feed = udp_receiver()
        exchange = ExchangeProcess(exchange_args(feed.getsockname()[1], control, rate))
        ports = exchange.wait_ready(timeout)
        if "order_entry" not in ports or not isinstance(ports["order_entry"], tuple):
            raise RuntimeError(f"no order_entry=HOST:PORT in the exchange's ready line ({ports})")

        counter = FeedCounter()
        buffer = bytearray(65536)
        recv_into = feed.recv_into

        def drain(in_window: bool) -> None:
            while True:
                try:
                    n = recv_into(buffer, 65536)
                except (BlockingIOError, InterruptedError):
                    return
                counter.packet(buffer, n, in_window)

        tcp = socket.create_connection(ports["order_entry"], timeout=timeout)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tcp.setblocking(False)
        session = ClientSession(FEED_FIRM, FEED_PASSWORD, "", 1)
        session.connect(time.monotonic_ns())
        tcp.sendall(session.take_outbound())
        ouch_types: dict[str, int] = {}
        window_types: dict[str, int] = {}
        tcp_open = True

        def pump_tcp(in_window: bool) -> list:
            nonlocal tcp_open
            events: list = []
            while tcp_open:
                try:
                    data = tcp.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    tcp_open = False
                    break
                if not data:
                    tcp_open = False
                    break
                events += session.receive(data, time.monotonic_ns())
            for event in events:
                if type(event) is SequencedMessage:
                    kind = chr(event.message[0]) if event.message else "?"
                    ouch_types[kind] = ouch_types.get(kind, 0) + 1
                    if in_window:
                        window_types[kind] = window_types.get(kind, 0) + 1
            return events

        def send(data: bytes) -> None:
            tcp.settimeout(timeout)           # blocking, but never for ever
            try:
                tcp.sendall(data)
            finally:
                tcp.setblocking(False)

        deadline = time.monotonic() + timeout
        logged_in = False
        while not logged_in:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no SoupBinTCP login answer within {timeout:g} s")
            select.select([tcp, feed], [], [], 0.05)
            drain(False)
            for event in pump_tcp(False):
                if type(event) is LoginAccepted:
                    logged_in = True
                elif type(event) is LoginRejected:
                    raise RuntimeError(f"login of {FEED_FIRM} rejected: {event.reason!r}")
            if not tcp_open and not logged_in:
                raise RuntimeError("the exchange closed the order-entry connection before the login answer")

        status_before = _status(control)
        interval_ns = int(1e9 / order_rate)
        entered = canceled = 0
        start = time.monotonic_ns()
        end = start + int(seconds * 1e9)
        next_send = start
        k = 0
        while True:
            now = time.monotonic_ns()
            if now >= end:
                break
            due = []
            while next_send <= now and len(due) < 64:
                if k % 2 == 0:
                    due.append(ouch.encode_inbound({
                        "type": "O", "order_token": f"B{k // 2}", "buy_sell_indicator": "B", "shares": 100,
                        "stock": FEED_SYMBOL, "price": FEED_PRICE, "time_in_force": ouch.TIME_IN_FORCE_MARKET_HOURS,
                        "firm": "", "display": "Y", "capacity": "A", "intermarket_sweep_eligibility": "N",
                        "minimum_quantity": 0, "cross_type": "N", "customer_type": "R"}))
                    entered += 1
                else:
                    due.append(ouch.encode_inbound({"type": "X", "order_token": f"B{k // 2}", "shares": 0}))
                    canceled += 1
                k += 1
                next_send += interval_ns
            if due:
                for message in due:
                    session.send_unsequenced(message, now)
            session.tick(now)
            out = session.take_outbound()
            if out and tcp_open:
                send(out)
            wait = max(0.0, min(next_send, end) - time.monotonic_ns()) / 1e9
            select.select([feed, tcp], [], [], min(wait, 0.005))
            drain(True)
            pump_tcp(True)
        window_s = (time.monotonic_ns() - start) / 1e9
        drain(True)
        window_messages = counter.window_messages
        status_after = _status(control)

        # End the day: SIGTERM, keep receiving (End of Session, the day's last messages) until it exits.
        exchange.terminate()
        stop_deadline = time.monotonic() + timeout
        while exchange.proc.poll() is None and time.monotonic() < stop_deadline:
            select.select([feed] + ([tcp] if tcp_open else []), [], [], 0.05)
            drain(False)
            pump_tcp(False)
        drain(False)
        exit_code = exchange.proc.poll()
        error = None
        if exit_code is None:
            error = f"the exchange did not exit within {timeout:g} s of SIGTERM (killed)"
        elif exit_code != 0:
            error = f"the exchange exited {exit_code} after SIGTERM:\n" + exchange.output_tail()

        # our own ITCH messages in the window: each Accepted (it rests) made an 'A', each Canceled a 'D'
        own_itch = window_types.get("A", 0) + window_types.get("C", 0)
        ops_before, pub_before = _status_numbers(status_before)
        ops_after, pub_after = _status_numbers(status_after)
        background_ops_per_s = (ops_after - ops_before) / window_s \
            if ops_before is not None and ops_after is not None else None
        published_per_s = (pub_after - pub_before) / window_s \
            if pub_before is not None and pub_after is not None else None
        msgs_per_s = window_messages / window_s
        background_msgs_per_s = max(0, window_messages - own_itch) / window_s
        result = {
            "rate_asked": rate,
            "seconds": window_s,
            "msgs": window_messages,
            "msgs_per_s": msgs_per_s,
            "background_msgs_per_s": background_msgs_per_s,
            "achieved_ratio": background_msgs_per_s / rate,
            "background_ops_per_s": background_ops_per_s,
            "background_ops_ratio": background_ops_per_s / rate if background_ops_per_s is not None else None,
            "published_msgs_per_s": published_per_s,
            "packets": counter.window_packets,
            "gaps": counter.gaps,
            "missing_messages": counter.missing,
            "late_packets": counter.late,
            "heartbeats": counter.heartbeats,
            "end_of_session": counter.ended,
            "orders_sent": entered,
            "cancels_sent": canceled,
            "ouch_messages": sum(ouch_types.values()),
            "ouch_messages_in_window": sum(window_types.values()),
            "ouch_by_type": dict(sorted(ouch_types.items())),
            "exit_code": exit_code,
        }
        if error:
            result["error"] = error
        return result
    finally:
        if tcp is not None:
            tcp.close()
        if exchange is not None:
            exchange.close()
        if feed is not None:
            feed.close()
        shutil.rmtree(tmp, ignore_errors=True)


def measure_feeds(rates, seconds: float, order_rate: float, timeout: float) -> tuple[dict, list[str]]:
    runs, errors = [], []
    for rate in rates:
        try:
            run = measure_feed(rate, seconds, order_rate, timeout)
        except Exception as exc:  # noqa: BLE001 - one failed rate is reported, the others still run
            run = {"rate_asked": rate, "error": f"{type(exc).__name__}: {exc}"}
        if "error" in run:
            errors.append(f"rate {rate:g}: {run['error']}")
        runs.append(run)
    measured = [r["msgs_per_s"] for r in runs if r.get("msgs_per_s") is not None]
    feed = {"msgs_per_s": max(measured) if measured else None, "seconds": seconds, "order_rate": order_rate,
            "symbol": FEED_SYMBOL, "runs": runs,
            "note": "msgs_per_s: the most MoldUDP64 messages per second received in any run's window"}
    return feed, errors


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

def _matching_cpu() -> int:
    return max(os.sched_getaffinity(0))


def run(args: argparse.Namespace) -> int:
    # The matching part runs pinned to one CPU (no migrations mid-pass); the affinity is restored
    # before the exchange processes are started, so they do not inherit it.
    allowed = os.sched_getaffinity(0)
    cpu = _matching_cpu()
    os.sched_setaffinity(0, {cpu})
    try:
        results, peers, ratios = measure_matching(args.operations, args.symbols, args.seed, args.repeat,
                                                  args.peer_operations, args.skip_peer)
    finally:
        os.sched_setaffinity(0, allowed)
    results["matching"]["cpu"] = cpu
    errors: dict[str, str] = {}
    if not args.skip_feed:
        feed, feed_errors = measure_feeds(args.rates, args.seconds, args.order_rate, args.timeout)
        results["feed"] = feed
        if feed_errors:
            errors["feed"] = "; ".join(feed_errors)
    report = {"benchmark": "exchange", "machine": machine_info(), "results": results, "peers": peers,
              "ratios": ratios, "errors": errors}
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 1 if errors else 0


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"


def _fmt(value, spec: str = ",.0f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _print_table(report: dict) -> None:
    m = report["machine"]
    results, peers, ratios = report["results"], report["peers"], report["ratios"]
    ours = results["matching"]
    mix = ours["mix"]
    total = ours["operations"]
    print(f"matching engine: {total:,} operations over {ours['symbols']} symbols (seed {ours['seed']}): "
          + ", ".join(f"{100 * mix[k] / total:.1f}% {k}" for k in KIND_NAMES)
          + f"; Python {m['python']}, pinned to CPU {ours.get('cpu', '?')} of {m['cpu_model'] or 'unknown CPU'}")
    header = (f"{'engine':<30} {'operations':>10} {'ops/s':>11} {'p50 ns':>8} {'p99 ns':>8} {'p99.9 ns':>9} "
              f"{'trades':>8} {'filled':>10} {'ours x':>7}")
    print(header)
    print("-" * len(header))

    def row(name: str, r: dict, ratio: str = "") -> None:
        print(f"{name:<30} {r['operations']:>10,} {r['ops_per_s']:>11,.0f} {r['p50_ns']:>8,} {r['p99_ns']:>8,} "
              f"{r['p999_ns']:>9,} {_fmt(r['trades'], ','):>8} {_fmt(r['filled_shares'], ','):>10} {ratio:>7}")

    row("appliance (whole flow)", ours)
    peer = peers.get(PEER_NAME, {})
    if peer.get("available"):
        prefix = results.get("matching_peer_prefix")
        if prefix is not None:
            row("appliance (peer's prefix)", prefix)
        row(f"order-matching {peer['version']}", peer, f"{ratios['ours_vs_order_matching']:.1f}x")
        if not peer["agrees"]:
            print("  note: order-matching's trades/filled shares/cancel rejects differ from ours on this prefix")
    elif peer.get("skipped"):
        print(f"{'order-matching':<30} skipped (--skip-peer)")
    else:
        print(f"{'order-matching':<30} unavailable: {peer.get('reason', '?')}")
    print(f"{'target':<30} {'':>10} {TARGET_OPS_PER_S:>11,} {'':>8} {'':>8} {'':>9} {'':>8} {'':>10} "
          f"{ratios['ours_vs_target']:.2f}x")
    print(f"{'liquibook (C++) - NOT MEASURED':<30} {'':>10} {'~' + format(LIQUIBOOK_OPS_PER_S, ','):>11}  "
          f"reference only: {LIQUIBOOK_NOTE}")
    kinds = ours["by_kind"]
    print(f"timer overhead {ours['timer_overhead_ns']} ns per perf_counter_ns pair (subtracted from the percentiles); "
          "ours by kind p50/p99 ns: "
          + ", ".join(f"{k} {v['p50_ns']:,}/{v['p99_ns']:,}" for k, v in kinds.items()))
    if peer.get("available"):
        print(f"order-matching: one place([order]) + match(ts) per order, one cancel_order(id) per cancel, "
              f"IOC/market remainders expire at the next match; first {ratios['peer_operations']:,} operations; "
              f"same trades and filled shares: {'yes' if peer['agrees'] else 'NO'}")

    feed = results.get("feed")
    if feed is None:
        return
    print()
    print(f"feed: the exchange as a process, {feed['seconds']:g} s window per rate, our Enter/Cancel at "
          f"{feed['order_rate']:,.0f} msg/s in {feed['symbol']}, MoldUDP64 over UDP on 127.0.0.1")
    header = (f"{'bg rate asked':>13} {'recv msg/s':>11} {'bg msg/s':>10} {'achieved':>9} {'bg ops/s':>10} "
              f"{'ops ratio':>9} {'packets':>8} {'gaps':>5} {'missing':>8} {'OUCH':>6} {'exit':>5}")
    print(header)
    print("-" * len(header))
    for r in feed["runs"]:
        if "msgs_per_s" not in r:
            print(f"{r['rate_asked']:>13,.0f} failed: {_one_line(r['error'])}")
            continue
        print(f"{r['rate_asked']:>13,.0f} {r['msgs_per_s']:>11,.0f} {r['background_msgs_per_s']:>10,.0f} "
              f"{r['achieved_ratio']:>8.2f}x {_fmt(r['background_ops_per_s']):>10} "
              f"{_fmt(r['background_ops_ratio'], '.2f'):>8}x {r['packets']:>8,} {r['gaps']:>5} "
              f"{r['missing_messages']:>8,} {r['ouch_messages']:>6,} {_fmt(r['exit_code'], 'd'):>5}")
        if "error" in r:
            print(f"{'':>13} error: {_one_line(r['error'])}")
