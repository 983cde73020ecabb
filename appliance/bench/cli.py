"""``appliance bench NAME [--json]``: one module per benchmark.

A benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``
(heavy imports inside ``run``); it prints a table, or with ``--json`` a single
JSON object on stdout.
"""
from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "ring": ("appliance.bench.ring", "SPSC shared-memory ring vs multiprocessing, posix_ipc, zmq, faster-fifo"),
    "itch": ("appliance.bench.itch", "ITCH 5.0 decode: full, locate-filtered, and itchfeed"),
    "e2e": ("appliance.bench.e2e", "tick-to-trade of the whole appliance against the simulated exchange, per hop"),
    "risk": ("appliance.bench.risk", "pre-trade risk: the full check set per order vs a naive dict baseline"),
    "journal": ("appliance.bench.journal", "OMS journal: appends/s per durability policy, recovery of 1M records"),
    "oms": ("appliance.bench.oms", "OMS: ring read to bytes handed to the socket, p50/p99"),
    "exchange": ("appliance.bench.exchange", "simulated exchange: matching engine vs order-matching, and the feed"),
    "backtest": ("appliance.bench.backtest", "appliance backtest on bench feed's generated day (10 of 100 symbols, the market maker) beside the feed's replay of it"),
    "feed": ("appliance.bench.feed", "feed handler: ITCH replay into books, and the live UDP path"),
    "dropcopy": ("appliance.bench.dropcopy", "drop copy and risk hub over a real nats-server: publish and hub events/s, append-to-hub lag, firm kill; plain NATS as the peer"),
    "failover": ("appliance.bench.failover", "hot standby: takeover time against restart-and-recover, and the cost of sync and async journal replication on OMS ring-to-wire against none"),
    "hops": ("appliance.bench.hops", "each hop alone (feed, strategy, risk, OMS, ring): agent pinned and spinning, driver on the other CPU"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        bench_parser = sub.add_parser(name, help=help_text, description=help_text)
        bench_parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        module.add_arguments(bench_parser)
        bench_parser.set_defaults(_bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    return args._bench_run(args)
