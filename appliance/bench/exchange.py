"""``appliance bench exchange``: the simulated exchange's matching engine against a peer, and its feed.

Two parts, both in one run:

**matching** (``exchange_matching.py``) - ``MatchingEngine`` alone (no I/O) on a seeded mixed
flow against the PyPI package ``order-matching``: operations/s, per-operation percentiles, and
the agreement of the two engines' executions.

**feed** (``exchange_load.py``) - the whole exchange as a process (``appliance exchange``) at a
few background rates, with a steady stream of our own orders: MoldUDP64 messages received per
second, gaps, OUCH answers, and the background operations the exchange says it ran.

This module holds the command: its options, the run of both parts, the table and ``--json``.
"""
from __future__ import annotations

import argparse
import json
import os

from appliance.bench.exchange_load import DEFAULT_RATES, background_rates, measure_feeds
from appliance.bench.exchange_matching import (
    KIND_NAMES, LIQUIBOOK_NOTE, LIQUIBOOK_OPS_PER_S, PEER_NAME, SEED, TARGET_OPS_PER_S, measure_matching,
)
from appliance.bench.table import fmt, one_line
from appliance.bench.timing import machine_info
from appliance.command_io.arguments import bounded, positive_int


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
    parser.add_argument("--rates", type=background_rates, default=DEFAULT_RATES, metavar="RATE[,RATE...]",
                        help="background rates asked of the exchange (default 10000,50000,200000)")
    parser.add_argument("--order-rate", type=bounded(float, 1, 100_000, " messages/s"), default=2000.0,
                        help="our Enter/Cancel messages per second during the window (default 2000)")
    parser.add_argument("--timeout", type=bounded(float, 1, 600, " s"), default=30.0,
                        help="seconds allowed for the exchange to start and to exit (default 30)")
    parser.add_argument("--skip-feed", action="store_true", help="do not start the exchange process")


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
              f"{r['p999_ns']:>9,} {fmt(r['trades'], ','):>8} {fmt(r['filled_shares'], ','):>10} {ratio:>7}")

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
            print(f"{r['rate_asked']:>13,.0f} failed: {one_line(r['error'])}")
            continue
        print(f"{r['rate_asked']:>13,.0f} {r['msgs_per_s']:>11,.0f} {r['background_msgs_per_s']:>10,.0f} "
              f"{r['achieved_ratio']:>8.2f}x {fmt(r['background_ops_per_s']):>10} "
              f"{fmt(r['background_ops_ratio'], '.2f'):>8}x {r['packets']:>8,} {r['gaps']:>5} "
              f"{r['missing_messages']:>8,} {r['ouch_messages']:>6,} {fmt(r['exit_code'], 'd'):>5}")
        if "error" in r:
            print(f"{'':>13} error: {one_line(r['error'])}")
