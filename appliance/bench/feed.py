"""``appliance bench feed``: the feed handler, replaying a recorded day into books and live over UDP.

Two parts, both in one run:

**replay** (``feed_replay.py``) - decode-and-book throughput in this one process over a
generated, cached BinaryFILE day: the feed's scanner, locate filter and books (and the same with
the feed's output on a real ring), against the peer ``itchfeed``, with the books checked.

**live** (``feed_live.py``) - the packet-receive-to-ring-write path with real processes on
loopback (the exchange sending MoldUDP64 to the feed agent), one fresh set per rate: messages
per second with no loss, rx->ring latency, CPU, against a bare Python ``recv_into`` receiver.

This module holds the command: its options, the run of both parts and the ``--json`` report;
``feed_report.py`` prints the table.
"""
from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from appliance.bench.exchange_load import background_rates
from appliance.bench.feed_live import DEFAULT_RATES, IDLE_STRATEGIES, TARGET_RX_TO_RING_P50_NS, measure_live
from appliance.bench.feed_replay import (
    ITCHFEED_MESSAGES, SEED, SUBSCRIBED, SYMBOLS, TARGET_FEED_PATH_MSGS_PER_S, TARGET_REPLAY_MSGS_PER_S, default_cache_dir, measure_replay,
)
from appliance.bench.feed_report import print_table
from appliance.bench.timing import machine_info as base_machine_info
from appliance.bench.timing import publish
from appliance.command_io.arguments import UsageError, bounded, positive_int

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=positive_int, default=5_000_000,
                        help="order messages in the replayed day file (default 5000000)")
    parser.add_argument("--symbols", type=bounded(int, 1, 9999), default=SYMBOLS,
                        help=f"stocks in the day file (default {SYMBOLS})")
    parser.add_argument("--subscribed", type=bounded(int, 1, 9999), default=SUBSCRIBED,
                        help=f"of those, the ones with books in the replay (default {SUBSCRIBED})")
    parser.add_argument("--seed", type=bounded(int, 0, 2**63), default=SEED, help=f"generator seed (default {SEED})")
    parser.add_argument("--cache-dir", metavar="DIR", default=None,
                        help="where generated day files are kept (default $XDG_CACHE_HOME/appliance/bench "
                             "or ~/.cache/appliance/bench)")
    parser.add_argument("--itchfeed-messages", type=bounded(int, 0, 2**62), default=ITCHFEED_MESSAGES,
                        help=f"run itchfeed on the first N messages, 0 for all (default {ITCHFEED_MESSAGES})")
    parser.add_argument("--rates", type=background_rates, default=DEFAULT_RATES, metavar="RATE[,RATE...]",
                        help="background operations/s asked of the exchange, one live run each "
                             f"(default {','.join(str(r) for r in DEFAULT_RATES)})")
    parser.add_argument("--seconds", type=bounded(float, 0.2, 600, " s"), default=3.0,
                        help="measured live window per rate (default 3)")
    parser.add_argument("--settle", type=bounded(float, 0, 60, " s"), default=1.0,
                        help="warm-up before each live window (default 1)")
    parser.add_argument("--catch-up", type=bounded(float, 0.1, 60, " s"), default=2.0,
                        help="time allowed after a window for the receiver to deliver everything published "
                             "(default 2)")
    parser.add_argument("--timeout", type=bounded(float, 1, 600, " s"), default=30.0,
                        help="seconds allowed for a process to start (default 30)")
    parser.add_argument("--feed-idle", choices=sorted(IDLE_STRATEGIES), default="backoff",
                        help="idle strategy of the feed agent and of the bare receiver (default backoff; "
                             "yield and spin keep one CPU busy)")
    parser.add_argument("--feed-books", choices=("compiled", "python"), default="compiled",
                        help="the live feed agent's books: compiled (feed/_book_fast.c, the default) or python "
                             "(params.compiled_books: false, the reference) for a before/after")
    parser.add_argument("--skip-replay", action="store_true", help="do not run the replay part")
    parser.add_argument("--skip-live", action="store_true", help="do not run the live part")
    parser.add_argument("--skip-peers", action="store_true",
                        help="do not run itchfeed nor the bare recv_into receiver")


def machine_info() -> dict:
    info = base_machine_info()
    info["cores"] = os.cpu_count()
    try:
        with open("/proc/loadavg") as fh:
            info["loadavg_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    return info



# ---------------------------------------------------------------------------
# run and report
# ---------------------------------------------------------------------------

def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    if args.subscribed > args.symbols:
        raise UsageError(f"--subscribed {args.subscribed} is more than --symbols {args.symbols}")
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)   # SIGTERM cleans up like Ctrl-C
    try:
        results: dict = {}
        peers: dict = {}
        ratios: dict = {}
        errors: dict[str, str] = {}
        machine = machine_info()
        if not args.skip_replay:
            r_results, r_peers, r_ratios, r_errors = measure_replay(args, cache)
            results.update(r_results)
            peers.update(r_peers)
            ratios.update(r_ratios)
            if r_errors:
                errors["replay"] = "; ".join(r_errors)
        if not args.skip_live:
            live, l_peers, l_ratios, l_errors = measure_live(args)
            results["live"] = live
            peers.update(l_peers)
            ratios.update(l_ratios)
            if l_errors:
                errors["live"] = "; ".join(l_errors)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return publish("feed", results, errors, args.json, print_table, machine=machine, peers=peers, ratios=ratios,
                   targets={"replay_msgs_per_s": TARGET_REPLAY_MSGS_PER_S,
                            "feed_path_all_symbols_msgs_per_s": TARGET_FEED_PATH_MSGS_PER_S,
                            "rx_to_ring_p50_ns": TARGET_RX_TO_RING_P50_NS})
