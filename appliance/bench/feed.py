"""``appliance bench feed``: the feed handler, replaying a recorded day into books and live over UDP.

Two parts, both in one run:

**replay** - decode-and-book throughput in this one process, over a BinaryFILE day
(``appliance.bench.itch.generate_day_file``: ``--symbols`` stocks, default 100, and
``--messages`` order messages, default 5,000,000, plus the system events and the stock
directory). The file is generated once and kept in a cache directory
(``--cache-dir``, default ``$XDG_CACHE_HOME/appliance/bench`` or ``~/.cache/appliance/bench``),
keyed by message count, seed, symbol count and a hash of the generator's source. A
BinaryFILE is ``[u16 length][message]`` blocks, the same framing as a MoldUDP64 payload, so
the whole file is one long payload for the feed's own code. Timed passes (garbage collector
disabled, this process pinned to one CPU):

* ``replay`` (ours, the headline): ``BlockScanner`` (the C fast path when built) with the
  locate filter of a ``BookSet`` of ``--subscribed`` symbols (default 10: every tenth locate,
  1, 11, ..., not the busiest), and ``BookSet.apply`` on every message that passes: exactly
  the feed agent's per-message work, without the socket, the sequencer and the ring write;
* ``filter_only``: the scanner with the same locate filter and no books (what the books add);
* ``decode_only``: the same scanner without a filter and without books (every message
  decoded to a raw tuple);
* ``books_all_symbols``: the scanner and books for every symbol (the worst case for books);
* ``replay_with_publish``: ``replay`` plus the feed's output for every book change
  (``BookOutputs.publish``: the market-state slot and a BookUpdate on a real shared-memory
  ring, released here every 1024 updates): the agent's whole per-message work but the socket
  and the sequencer;
* the peer ``itchfeed`` (PyPI, decode only; pure Python unless its C++ backend is present)
  on the first ``--itchfeed-messages`` messages (default 1,000,000: it runs ~0.25 M msg/s),
  and our two paths again on the same prefix, for the ratios.

The books are checked afterwards: no unknown order, over-execution, duplicate add or
malformed block, every message walked, and the subscribed books equal to the same symbols'
books of the all-symbols pass (the filter changes no book).

**live** - the packet-receive-to-ring-write path with real processes on loopback, one fresh
set per rate in ``--rates`` (background operations/s asked of the exchange):

* this process creates the shared memory (a ``bench<token>`` layout: a ``feed`` process with
  the ``--feed-idle`` strategy, backoff by default, and a ``strategy`` entry never started),
  starts the feed agent (``python -m appliance.runtime.agent``), waits until it runs, then
  starts the simulated exchange (``appliance exchange``) sending MoldUDP64 to the feed's port
  only, with its re-request server on the port the feed was configured with;
* after ``--settle`` seconds of warm-up, a ``--seconds`` window between two control-socket
  ``status`` answers (messages published = the exchange's message store); this process
  drains the ``book_updates`` ring every millisecond and takes, from every BookUpdate whose
  packet arrived in the window (``t_rx_ns``, the kernel receive timestamp), the latency
  ``t_feed_out_ns - t_rx_ns`` (one packet carries many messages: later ones wait for the
  earlier ones; ``first_in_packet`` is the first update of each packet alone, and
  ``update_spacing_in_packet`` the time between consecutive updates of one packet: the feed's
  work per update as it runs); the CPU time the feed, the exchange and this process used in
  the window (``/proc/PID/stat``; the feed's includes its idle strategy);
* then up to ``--catch-up`` seconds for the feed to deliver everything published by the
  end of the window. A rate has **no loss** when, from the start of the window to the end of
  the catch-up, ``feed.gaps`` and ``feed.messages_lost`` did not move and the feed caught
  up. ``max_msgs_per_s_no_loss`` is the highest published rate (messages/s the exchange
  actually sent, not the rate asked) with no loss. When the exchange ran fewer background
  operations than ``SENDER_LIMIT_RATIO`` of those asked, the row says the sender was the limit.

The live peer: a bare Python ``recv_into`` loop in this process on a UDP socket with the
same receive buffer and the same idle strategy, counting packets and messages (and gaps by
sequence number), fed by a fresh exchange at the same rates: the ceiling for any Python
receiver. Kernel socket drops (``/proc/net/udp``) are reported for both.

Every child process is ended and reaped and the shared memory unlinked on every path,
Ctrl-C and SIGTERM included.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

from appliance.bench.timing import machine_info as base_machine_info
from appliance.bench.timing import percentile as _percentile
from appliance.cli import UsageError, bounded, positive_int
from appliance.sim.exchange_process import appliance_env
from appliance.sim.ports import free_ports, udp_receiver

SEED = 20_240_605
SYMBOLS = 100
SUBSCRIBED = 10
ITCHFEED_MESSAGES = 1_000_000
TARGET_REPLAY_MSGS_PER_S = 1_000_000
TARGET_RX_TO_RING_P50_NS = 5_000
DEFAULT_RATES = (5_000, 10_000, 20_000, 40_000, 80_000)
MAX_RATE = 200_000                   # the exchange's --background-rate limit
SENDER_LIMIT_RATIO = 0.9             # fewer background operations than this share of the asked rate: sender-limited
RING_CAPACITY = 1 << 16
RCVBUF_BYTES = 8 << 20               # the feed's default rcvbuf_bytes; the bare receiver asks for the same
DRAIN_PERIOD_S = 0.001
LAYOUT_PREFIX = "bench"
IDLE_STRATEGIES = {
    # as in tests/feed/test_feed_agent.py: spin, yield, then park 10 us doubling to 200 us
    "backoff": {"strategy": "backoff", "spins": 100, "yields": 10, "min_park_ns": 10_000, "max_park_ns": 200_000},
    "yield": {"strategy": "yield"},
}

_rate = bounded(float, 1, MAX_RATE, " operations/s")


def _rates(text: str) -> tuple[float, ...]:
    values = tuple(_rate(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no rate")
    return values


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
    parser.add_argument("--rates", type=_rates, default=DEFAULT_RATES, metavar="RATE[,RATE...]",
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
                             "yield keeps one CPU busy)")
    parser.add_argument("--skip-replay", action="store_true", help="do not run the replay part")
    parser.add_argument("--skip-live", action="store_true", help="do not run the live part")
    parser.add_argument("--skip-peers", action="store_true",
                        help="do not run itchfeed nor the bare recv_into receiver")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def latency_summary(latencies) -> dict:
    """count, p50/p99/p99.9/max of a sequence of nanoseconds (None when empty)."""
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50_ns": None, "p99_ns": None, "p999_ns": None, "max_ns": None}
    return {"count": len(ordered), "p50_ns": _percentile(ordered, 0.50), "p99_ns": _percentile(ordered, 0.99),
            "p999_ns": _percentile(ordered, 0.999), "max_ns": int(ordered[-1])}


def machine_info() -> dict:
    info = base_machine_info()
    info["cores"] = os.cpu_count()
    try:
        with open("/proc/loadavg") as fh:
            info["loadavg_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    return info


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "appliance" / "bench"


# ---------------------------------------------------------------------------
# the day file
# ---------------------------------------------------------------------------

def _generator_fingerprint() -> str:
    """A short hash of the generator's source: a cached file from another generator is not reused."""
    from appliance.bench import itch as bench_itch
    try:
        source = inspect.getsource(bench_itch.generate_day_file) + inspect.getsource(bench_itch._remove)
    except (OSError, TypeError):
        return "nosrc"
    return hashlib.sha256(source.encode()).hexdigest()[:10]


def day_file(messages: int, seed: int, symbols: int, cache_dir: Path) -> dict:
    """The cached day file for these settings, generated when missing: path, messages, bytes, cached, seconds."""
    from appliance.bench.itch import generate_day_file

    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"day-{messages}m-{seed}s-{symbols}sym-{_generator_fingerprint()}"
    path = cache_dir / f"{stem}.itch"
    meta_path = cache_dir / f"{stem}.json"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size and meta.get("messages", 0) > 0:
            return {"path": str(path), "messages": meta["messages"], "bytes": meta["bytes"], "cached": True,
                    "generate_seconds": meta.get("generate_seconds")}
    except (OSError, ValueError, AttributeError):
        pass
    tmp = cache_dir / f"{stem}.itch.tmp{os.getpid()}"
    try:
        started = time.perf_counter()
        total = generate_day_file(str(tmp), messages, seed, symbols)
        seconds = time.perf_counter() - started
        size = tmp.stat().st_size
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    meta = {"messages": total, "bytes": size, "seed": seed, "symbols": symbols, "order_messages": messages,
            "generate_seconds": seconds, "generator": "appliance.bench.itch.generate_day_file"}
    meta_path.write_text(json.dumps(meta))
    return {"path": str(path), "messages": total, "bytes": size, "cached": False, "generate_seconds": seconds}


def directory_symbols(data, count: int) -> list[str]:
    """The stock symbols of the file's first ``count`` Stock Directory messages, in locate order."""
    from appliance.wire.itch import BlockScanner

    names: dict[int, str] = {}
    for raw in BlockScanner(None).scan(data, 0, len(data)):
        if raw[0] == b"R":
            names[raw[1]] = raw[4].rstrip(b" ").decode("ascii")
            if len(names) == count:
                break
        elif raw[0] != b"S":
            break                         # the directory is over
    return [names[locate] for locate in sorted(names)]


# ---------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------

def _timed(fn):
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        value = fn()
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return value, elapsed


def _books_pass(data, end: int, symbols: list[str]):
    """Scanner with the BookSet's locate filter + ``apply`` on every passing message: (result, books)."""
    from appliance.feed.books import BookSet
    from appliance.messages.catalog import BOOK_DEPTH
    from appliance.wire.itch import BlockScanner

    books = BookSet(symbols, BOOK_DEPTH)
    scanner = BlockScanner(books.subscribed_locates, strict=False)     # as FeedPacketScanner builds it
    apply = books.apply

    def walk() -> int:
        updates = 0
        for raw in scanner.scan(data, 0, end):
            if apply(raw) >= 0:
                updates += 1
        return updates
    updates, elapsed = _timed(walk)
    walked = scanner.decoded + scanner.filtered_out + scanner.malformed
    result = {"messages": walked, "seconds": elapsed, "msgs_per_s": walked / elapsed,
              "ns_per_msg": elapsed * 1e9 / walked,
              "decoded": scanner.decoded, "filtered_out": scanner.filtered_out, "malformed": scanner.malformed,
              "applied": books.messages_applied, "book_changes": updates, "books": len(symbols),
              "backend": "c" if scanner.uses_c else "python"}
    return result, books


class _ScratchMemory:
    """A feed layout's shared memory owned by this process alone (no agent runs): for the publish pass."""

    def __init__(self, symbols: list[str]) -> None:
        import yaml

        from appliance.runtime.layout import load_layout
        from appliance.runtime.memory import SharedMemory

        self.name, self.workdir = _workdir()
        self.memory = None
        try:
            path = os.path.join(self.workdir, "layout.yaml")
            with open(path, "w") as fh:
                yaml.safe_dump(feed_layout(self.name, 0, 1, 1, symbols, "backoff"), fh, sort_keys=False)
            self.memory = SharedMemory.create(load_layout(path))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        memory, self.memory = self.memory, None
        if memory is not None:
            try:
                memory.unlink()
            finally:
                try:
                    memory.close()
                except Exception:  # noqa: BLE001 - the name is gone already; the mapping dies with us
                    pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def _publish_pass(data, end: int, symbols: list[str]) -> dict:
    """The books pass plus the feed's output for every book change: ``BookOutputs.publish`` (market-state
    slot + BookUpdate on a real shared-memory ring), the ring released here every 1024 updates."""
    from appliance.feed.books import BookSet
    from appliance.feed.outputs import BookOutputs
    from appliance.messages.catalog import BOOK_DEPTH
    from appliance.wire.itch import BlockScanner

    scratch = _ScratchMemory(symbols)
    producer = consumer = outputs = None
    try:
        memory = scratch.memory
        producer, consumer = memory.ring("book_updates", "producer"), memory.ring("book_updates", "consumer")
        outputs = BookOutputs(producer, memory.buffer_of("main"), memory.market_state_writer())
        outputs.feed_stale = False
        books = BookSet(symbols, BOOK_DEPTH)
        scanner = BlockScanner(books.subscribed_locates, strict=False)
        apply, publish, book_list = books.apply, outputs.publish, books.books
        peek, release = consumer.peek, consumer.release

        def walk() -> int:
            published = 0
            for raw in scanner.scan(data, 0, end):
                sid = apply(raw)
                if sid >= 0:
                    publish(book_list[sid], 0, 1)
                    published += 1
                    if not published & 1023:
                        while peek() >= 0:
                            release()
            return published
        published, elapsed = _timed(walk)
        walked = scanner.decoded + scanner.filtered_out + scanner.malformed
        result = {"messages": walked, "seconds": elapsed, "msgs_per_s": walked / elapsed,
                  "ns_per_msg": elapsed * 1e9 / walked, "malformed": scanner.malformed,
                  "applied": books.messages_applied, "published": published, "dropped": outputs.dropped,
                  "path": "BlockScanner + locate filter + BookSet.apply + BookOutputs.publish (ring + market state)"}
    finally:
        if outputs is not None:
            outputs.market_state.close()
        producer = consumer = outputs = None
        scratch.close()
    return result


def _decode_pass(data, end: int, locates=None) -> dict:
    """The scanner alone: every message decoded (``locates`` None), or only those of ``locates``."""
    from appliance.wire.itch import BlockScanner

    scanner = BlockScanner(None if locates is None else BlockScanner.locate_map(locates), strict=False)

    def walk() -> int:
        n = 0
        for _raw in scanner.scan(data, 0, end):
            n += 1
        return n
    returned, elapsed = _timed(walk)
    walked = scanner.decoded + scanner.filtered_out + scanner.malformed
    return {"messages": walked, "returned": returned, "seconds": elapsed, "msgs_per_s": walked / elapsed,
            "ns_per_msg": elapsed * 1e9 / walked, "malformed": scanner.malformed,
            "backend": "c" if scanner.uses_c else "python"}


def _book_state(book) -> tuple:
    from appliance.messages.catalog import BOOK_DEPTH
    levels = [0] * (4 * BOOK_DEPTH)
    book.snapshot_into(levels, 0)
    return (tuple(levels), book.order_count, book.last_trade_price, book.last_trade_shares, book.trading_state,
            book.locate)


def books_check(subscribed_books, all_books, total: int, passes: list[dict]) -> dict:
    """The sanity check of the replayed books (``ok`` and what was looked at)."""
    counters = subscribed_books.counter_values()
    problems = []
    for name in ("unknown_order", "over_execution", "duplicate_add", "bad_shares"):
        if counters[name]:
            problems.append(f"{name} {counters[name]}")
    for p in passes:
        if p["messages"] != total:
            problems.append(f"walked {p['messages']} of {total} messages")
        if p["malformed"]:
            problems.append(f"{p['malformed']} malformed blocks")
    all_counters = all_books.counter_values() if all_books is not None else {}
    for name in ("unknown_order", "over_execution", "duplicate_add"):
        if all_counters.get(name):
            problems.append(f"all-symbols pass: {name} {all_counters[name]}")
    differing = []
    if all_books is not None:
        for book in subscribed_books.books:
            if _book_state(book) != _book_state(all_books.book(book.symbol)):
                differing.append(book.symbol)
        if differing:
            problems.append(f"books differ from the all-symbols pass: {', '.join(differing)}")
    unmapped = [b.symbol for b in subscribed_books.books if b.locate is None]
    if unmapped:
        problems.append(f"no directory message for {', '.join(unmapped)}")
    return {"ok": not problems, "problems": problems,
            "unknown_order": counters["unknown_order"], "over_execution": counters["over_execution"],
            "duplicate_add": counters["duplicate_add"], "bad_shares": counters["bad_shares"],
            "compared_with_all_symbols_pass": all_books is not None and not differing,
            "resting_orders": sum(b.order_count for b in subscribed_books.books),
            "books_with_orders": sum(1 for b in subscribed_books.books if b.order_count),
            "trades_seen": sum(b.trades for b in subscribed_books.books),
            "book_counters": counters}


def measure_replay(args, cache: Path) -> tuple[dict, dict, dict, list[str]]:
    """(results, peers, ratios, errors) of the replay part."""
    from appliance.bench.itch import _measure_itchfeed, _prefix_bytes

    info = day_file(args.messages, args.seed, args.symbols, cache)
    with open(info["path"], "rb") as fh:
        data = fh.read()
    if len(data) != info["bytes"]:
        raise RuntimeError(f"{info['path']}: {len(data)} bytes, the cache says {info['bytes']}")
    total = info["messages"]
    names = directory_symbols(data, args.symbols)
    if len(names) != args.symbols:
        raise RuntimeError(f"{info['path']}: {len(names)} stock directory messages, expected {args.symbols}")
    step = args.symbols // args.subscribed
    subscribed = [names[i * step] for i in range(args.subscribed)]

    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        ours, books = _books_pass(data, len(data), subscribed)
        filtered = _decode_pass(data, len(data), [names.index(s) + 1 for s in subscribed])
        decode = _decode_pass(data, len(data))
        every, all_books = _books_pass(data, len(data), names)
        published = _publish_pass(data, len(data), subscribed)
        peers: dict = {}
        prefix: dict = {}
        if args.skip_peers:
            peers["itchfeed"] = {"available": False, "skipped": True, "reason": "--skip-peers"}
        else:
            limit = args.itchfeed_messages
            end = len(data) if not limit or limit >= total else _prefix_bytes(data, limit)
            feed = _measure_itchfeed(data if end == len(data) else data[:end])
            if feed is None:
                peers["itchfeed"] = {"available": False, "reason": "not installed; pip install itchfeed"}
            else:
                count, seconds, cpp, version = feed
                peers["itchfeed"] = {"available": True, "version": version, "cpp_backend": bool(cpp),
                                     "messages": count, "seconds": seconds, "msgs_per_s": count / seconds,
                                     "ns_per_msg": seconds * 1e9 / count, "whole_file": end == len(data),
                                     "decodes": "every message to a Python object (parse_stream)"}
                if end == len(data):
                    prefix = {"replay": ours, "decode_only": decode}
                else:
                    prefix = {"replay": _books_pass(data, end, subscribed)[0], "decode_only": _decode_pass(data, end)}
    finally:
        os.sched_setaffinity(0, allowed)

    check = books_check(books, all_books, total, [ours, filtered, decode, every, published])
    if published["published"] != ours["book_changes"] or published["dropped"]:
        check["ok"] = False
        check["problems"].append(f"the publish pass wrote {published['published']} updates ({published['dropped']} "
                                 f"dropped), the books pass made {ours['book_changes']} changes")
    ours.update(subscribed=subscribed, subscribed_locates=[names.index(s) + 1 for s in subscribed],
                symbols=args.symbols, book_share=ours["applied"] / total, check=check, cpu=cpu,
                file={k: info[k] for k in ("path", "messages", "bytes", "cached", "generate_seconds")},
                seed=args.seed, target_msgs_per_s=TARGET_REPLAY_MSGS_PER_S,
                path="BlockScanner + locate filter + BookSet.apply, whole file, one process",
                books_ns_per_applied_msg=(ours["seconds"] - filtered["seconds"]) * 1e9 / max(1, ours["applied"]))
    filtered["path"] = "BlockScanner + the same locate filter, no books"
    decode["path"] = "BlockScanner, no filter, no books"
    every["path"] = "BlockScanner + BookSet.apply, every symbol subscribed"
    every["books_ns_per_applied_msg"] = (every["seconds"] - decode["seconds"]) * 1e9 / max(1, every["applied"])
    published["publish_ns_per_update"] = (published["seconds"] - ours["seconds"]) * 1e9 / max(1, published["published"])
    results = {"replay": ours, "filter_only": filtered, "decode_only": decode, "books_all_symbols": every,
               "replay_with_publish": published}
    if prefix:
        results["itchfeed_prefix"] = {name: {"messages": r["messages"], "seconds": r["seconds"],
                                             "msgs_per_s": r["msgs_per_s"]} for name, r in prefix.items()}
    ratios: dict = {"replay_vs_target": ours["msgs_per_s"] / TARGET_REPLAY_MSGS_PER_S,
                    "target_replay_msgs_per_s": TARGET_REPLAY_MSGS_PER_S}
    peer = peers["itchfeed"]
    if peer.get("available"):
        ratios["replay_vs_itchfeed"] = prefix["replay"]["msgs_per_s"] / peer["msgs_per_s"]
        ratios["decode_only_vs_itchfeed"] = prefix["decode_only"]["msgs_per_s"] / peer["msgs_per_s"]
        ratios["itchfeed_messages"] = peer["messages"]
    errors = [] if check["ok"] else [f"books check: {'; '.join(check['problems'])}"]
    return results, peers, ratios, errors


# ---------------------------------------------------------------------------
# live: processes and sockets
# ---------------------------------------------------------------------------

def udp_drops(port: int) -> int | None:
    """The kernel's drop count of the UDP socket bound to 127.0.0.1:``port`` (``/proc/net/udp``)."""
    wanted = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/udp") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if len(fields) >= 13 and fields[1] == wanted:
                    return int(fields[12])
    except (OSError, StopIteration, ValueError):
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``), None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_share(before: float | None, after: float | None, seconds: float) -> float | None:
    return None if before is None or after is None else (after - before) / seconds


def _start_exchange(feed_port: int, rerequest_port: int, source_port: int, control: str, rate: float, timeout: float):
    from appliance.bench.exchange_load import exchange_args
    from appliance.sim.exchange_process import ExchangeProcess
    exchange = ExchangeProcess(exchange_args(feed_port, control, rate, rerequest_port, source_port))
    try:
        exchange.wait_ready(timeout)
    except BaseException:
        exchange.close()
        raise
    return exchange


def _stop_exchange(exchange) -> int | None:
    """SIGTERM, up to 5 s to end the day: its exit status (None when it had to be killed)."""
    exchange.terminate()
    try:
        exchange.proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    code = exchange.proc.poll()
    exchange.close()
    return code


def _background_ops(status: dict | None) -> int | None:
    from appliance.bench.exchange_load import status_numbers
    return status_numbers(status)[0]


def _published(status: dict | None) -> int | None:
    from appliance.bench.exchange_load import status_numbers
    return status_numbers(status)[1]


def _status_or_fail(control: str) -> dict:
    from appliance.bench.exchange_load import exchange_status
    status = exchange_status(control)
    if status is None or _published(status) is None:
        raise RuntimeError("the exchange's control socket gave no status")
    return status


def exchange_symbols() -> list[str]:
    from appliance.exchange.config import default_config
    return [s.symbol for s in default_config().symbols]


def feed_layout(name: str, feed_port: int, rerequest_port: int, source_port: int, symbols: list[str], idle: str) -> dict:
    return {
        "version": 1,
        "name": name,
        "segments": [{"name": "main", "backing": "4k", "mode": "0600"}],
        "tables": [{"name": "counters", "kind": "counters", "segment": "main", "slots_per_process": 128},
                   {"name": "processes", "kind": "processes", "segment": "main"},
                   {"name": "market_state", "kind": "market_state", "segment": "main"}],
        "rings": [{"name": "book_updates", "segment": "main", "producer": "feed", "consumer": "strategy",
                   "message": "BookUpdate", "slot_size": 192, "capacity": RING_CAPACITY}],
        "processes": [{"name": "feed", "agent": "appliance.feed.agent:FeedAgent", "idle": dict(IDLE_STRATEGIES[idle]),
                       "params": {"listen": {"host": "127.0.0.1", "port": feed_port},
                                  "rerequest": {"host": "127.0.0.1", "port": rerequest_port},
                                  "source": {"host": "127.0.0.1", "port": source_port},
                                  "rcvbuf_bytes": RCVBUF_BYTES}},
                      {"name": "strategy", "agent": "appliance.strategy.agent:StrategyAgent",
                       "idle": {"strategy": "sleep"}}],
        "symbols": list(symbols),
    }


class FeedUnderLoad:
    """The shared memory (owned here), the feed agent as a process, and a reader of its ring and counters."""

    def __init__(self, workdir: str, name: str, feed_port: int, rerequest_port: int, source_port: int,
                 symbols: list[str], idle: str, timeout: float) -> None:
        import yaml

        from appliance.messages.catalog import BOOK_UPDATE
        from appliance.runtime.counters import ProcessState
        from appliance.runtime.layout import load_layout
        from appliance.runtime.memory import SharedMemory

        self.memory = self.proc = self._log = None
        self.ring = self.buffer = self.counters_reader = None
        self.layout_path = os.path.join(workdir, "layout.yaml")
        with open(self.layout_path, "w") as fh:
            yaml.safe_dump(feed_layout(name, feed_port, rerequest_port, source_port, symbols, idle), fh, sort_keys=False)
        self.log_path = os.path.join(workdir, "feed.log")
        try:
            layout = load_layout(self.layout_path)
            self.memory = SharedMemory.create(layout)
            self.ring = self.memory.ring("book_updates", "consumer")
            self.buffer = self.memory.buffer_of("main")
            self.counters_reader = self.memory.counters_reader()
            self._times = struct.Struct("<QQ").unpack_from
            self._rx_offset = BOOK_UPDATE.offset_of["t_rx_ns"]
            assert BOOK_UPDATE.offset_of["t_feed_out_ns"] == self._rx_offset + 8
            self._log = open(self.log_path, "wb")
            self.proc = subprocess.Popen([sys.executable, "-m", "appliance.runtime.agent", "--layout",
                                          self.layout_path, "--process", "feed"], stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT, env=appliance_env())
            table = self.memory.process_table()
            deadline = time.monotonic() + timeout
            while table.read("feed").state is not ProcessState.RUNNING:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the feed agent exited {self.proc.returncode} before running:\n"
                                       + self.log_tail())
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the feed agent was not running within {timeout:g} s:\n" + self.log_tail())
                time.sleep(0.01)
        except BaseException:
            self.close()
            raise
        self.updates = 0
        self.latencies = array("q")
        self.first_in_packet = array("q")
        self.spacing = array("q")                 # t_feed_out between consecutive updates of one packet
        self.stale_updates = 0
        self._last_rx = -1
        self._last_out = 0

    def log_tail(self, lines: int = 10) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def counters(self) -> dict[str, int]:
        return self.counters_reader.by_label()

    def drain(self, window_start_ns: int = 0, window_end_ns: int = 0) -> int:
        """Release every waiting BookUpdate; those whose packet arrived in [start, end) give a latency."""
        ring, buffer, times, offset_rx = self.ring, self.buffer, self._times, self._rx_offset
        latencies, first, spacing = self.latencies, self.first_in_packet, self.spacing
        n = 0
        while True:
            offset = ring.peek()
            if offset < 0:
                break
            t_rx, t_out = times(buffer, offset + offset_rx)
            ring.release()
            n += 1
            if t_rx == 0:
                self.stale_updates += 1           # a state change not caused by a packet (stale/live)
                continue
            if window_start_ns <= t_rx < window_end_ns:
                latency = t_out - t_rx
                latencies.append(latency)
                if t_rx != self._last_rx:
                    first.append(latency)
                else:
                    spacing.append(t_out - self._last_out)
            self._last_rx = t_rx
            self._last_out = t_out
        self.updates += n
        return n

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 5 s; the exit status (None when it had to be killed)."""
        if self.proc is None:
            return None
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        else:
            code = self.proc.returncode
        return code

    def close(self) -> None:
        """Kill the agent if it still runs, reap it, and remove the shared memory (every path ends here)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.memory is not None:
            memory, self.memory = self.memory, None
            if self.counters_reader is not None:
                self.counters_reader.close()
            self.ring = self.buffer = self.counters_reader = None
            try:
                memory.unlink()
            finally:
                try:
                    memory.close()
                except Exception:  # noqa: BLE001 - the name is gone already; the mapping dies with us
                    pass


def _delta(after: dict, before: dict, label: str) -> int:
    return after.get(label, 0) - before.get(label, 0)


def _sender(rate: float, ops_per_s: float | None) -> dict:
    ratio = ops_per_s / rate if ops_per_s is not None else None
    return {"background_ops_per_s": ops_per_s, "achieved_ratio": ratio,
            "sender_limited": ratio is not None and ratio < SENDER_LIMIT_RATIO}


def _workdir() -> tuple[str, str]:
    token = secrets.token_hex(4)
    name = f"{LAYOUT_PREFIX}feed{token}"                    # the layout name prefixes /dev/shm names (<= 24)
    return name, tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp")   # short: UNIX socket paths are limited


def measure_feed_rate(rate: float, args, symbols: list[str]) -> dict:
    """One exchange and one feed agent at ``rate``: the window, the catch-up, the latencies."""
    name, workdir = _workdir()
    control = os.path.join(workdir, "ctl.sock")
    feed = exchange = None
    try:
        feed_port, rerequest_port, source_port = free_ports(3)
        feed = FeedUnderLoad(workdir, name, feed_port, rerequest_port, source_port, symbols, args.feed_idle,
                             args.timeout)
        exchange = _start_exchange(feed_port, rerequest_port, source_port, control, rate, args.timeout)
        deadline = time.monotonic() + args.timeout
        while feed.counters().get("feed.messages_delivered", 0) == 0:   # the start of day arrived
            if time.monotonic() > deadline:
                raise RuntimeError(f"the feed delivered nothing within {args.timeout:g} s:\n" + feed.log_tail())
            feed.drain()
            time.sleep(0.01)
        settle_end = time.monotonic() + args.settle
        while time.monotonic() < settle_end:
            feed.drain()
            time.sleep(DRAIN_PERIOD_S)
        feed.drain()

        before = feed.counters()
        drops_before = udp_drops(feed_port)
        cpu_before = cpu_seconds(feed.proc.pid), cpu_seconds(exchange.proc.pid), _own_cpu()
        status_before = _status_or_fail(control)
        start_mono, start_wall = time.monotonic(), time.time_ns()
        end_mono = start_mono + args.seconds
        far = 2**63
        while time.monotonic() < end_mono:
            feed.drain(start_wall, far)
            time.sleep(DRAIN_PERIOD_S)
        end_wall = time.time_ns()
        status_after = _status_or_fail(control)
        window_s = time.monotonic() - start_mono
        cpu_after = cpu_seconds(feed.proc.pid), cpu_seconds(exchange.proc.pid), _own_cpu()
        in_window = feed.counters()
        feed.drain(start_wall, end_wall)

        published = _published(status_after)
        catch_up_deadline = time.monotonic() + args.catch_up
        caught_up_s = None
        while True:
            feed.drain(start_wall, end_wall)
            if feed.counters().get("feed.messages_delivered", 0) >= published:
                caught_up_s = time.monotonic() - (catch_up_deadline - args.catch_up)
                break
            if time.monotonic() > catch_up_deadline:
                break
            time.sleep(DRAIN_PERIOD_S)
        time.sleep(0.02)                                  # the counters are refreshed every 10 ms
        after = feed.counters()
        feed.drain(start_wall, end_wall)
        drops_after = udp_drops(feed_port)
        exchange_exit = _stop_exchange(exchange)
        exchange = None
        feed_exit = feed.stop()

        sent = published - _published(status_before)
        ops_before, ops_after = _background_ops(status_before), _background_ops(status_after)
        ops_per_s = (ops_after - ops_before) / window_s if ops_before is not None and ops_after is not None else None
        gaps = _delta(after, before, "feed.gaps")
        lost = _delta(after, before, "feed.messages_lost")
        delivered_window = _delta(in_window, before, "feed.messages_delivered")
        latency = latency_summary(feed.latencies)
        first = latency_summary(feed.first_in_packet)
        kernel_drops = None if drops_before is None or drops_after is None else drops_after - drops_before
        no_loss = gaps == 0 and lost == 0 and caught_up_s is not None
        feed_cpu = _cpu_share(cpu_before[0], cpu_after[0], window_s)
        return {
            "rate_asked": rate, "seconds": window_s,
            "published": sent, "published_msgs_per_s": sent / window_s, **_sender(rate, ops_per_s),
            "delivered": delivered_window, "delivered_msgs_per_s": delivered_window / window_s,
            "delivered_total": after.get("feed.messages_delivered", 0), "published_total": published,
            "caught_up": caught_up_s is not None, "catch_up_s": caught_up_s,
            "gaps": gaps, "messages_recovered": _delta(after, before, "feed.messages_recovered"),
            "messages_lost": lost, "gaps_abandoned": _delta(after, before, "feed.gaps_abandoned"),
            "gaps_before_window": before.get("feed.gaps", 0),
            "kernel_drops": kernel_drops,
            "packets": _delta(after, before, "feed.rx_packets"),
            "duplicate_packets": _delta(after, before, "feed.duplicate_packets"),
            "bad_packets": _delta(after, before, "feed.bad_packets"),
            "book_updates": _delta(in_window, before, "feed.book_updates"),
            "book_updates_dropped": _delta(after, before, "feed.book_updates_dropped"),
            "unknown_order": after.get("feed.book.unknown_order", 0),
            "no_loss": no_loss,
            "rx_to_ring": latency, "rx_to_ring_first_in_packet": first,
            "update_spacing_in_packet": latency_summary(feed.spacing),
            "feed_cpu_share": feed_cpu,
            "feed_cpu_ns_per_msg": feed_cpu * 1e9 / (delivered_window / window_s)
            if feed_cpu is not None and delivered_window else None,
            "exchange_cpu_share": _cpu_share(cpu_before[1], cpu_after[1], window_s),
            "bench_cpu_share": _cpu_share(cpu_before[2], cpu_after[2], window_s),
            "rx_to_ring_p50_ns": latency["p50_ns"], "rx_to_ring_p99_ns": latency["p99_ns"],
            "rx_to_ring_p999_ns": latency["p999_ns"],
            "exchange_exit": exchange_exit, "feed_exit": feed_exit, "layout": name,
        }
    finally:
        if exchange is not None:
            exchange.close()
        if feed is not None:
            feed.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _make_idle(name: str):
    from appliance.runtime.idle import BackoffIdle, YieldIdle, lower_timer_slack
    spec = IDLE_STRATEGIES[name]
    if spec["strategy"] == "yield":
        return YieldIdle()
    lower_timer_slack()                  # as the agent runner does for a parking strategy
    return BackoffIdle(spec["spins"], spec["yields"], spec["min_park_ns"], spec["max_park_ns"])


def measure_bare_rate(rate: float, args) -> dict:
    """The peer: one exchange at ``rate`` sending to a ``recv_into`` loop in this process."""
    from appliance.bench.exchange_load import FeedCounter

    name, workdir = _workdir()
    control = os.path.join(workdir, "ctl.sock")
    sock = exchange = None
    try:
        sock = udp_receiver(RCVBUF_BYTES)
        port = sock.getsockname()[1]
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        exchange = _start_exchange(port, 0, 0, control, rate, args.timeout)
        counter = FeedCounter()
        buffer = bytearray(65536)
        recv_into = sock.recv_into
        packet = counter.packet
        idle = _make_idle(args.feed_idle).idle
        monotonic = time.monotonic

        def pump(in_window: bool) -> int:
            work = 0
            while True:
                try:
                    n = recv_into(buffer, 65536)
                except (BlockingIOError, InterruptedError):
                    return work
                packet(buffer, n, in_window)
                work += 1

        def loop(until: float, in_window: bool, done=None) -> bool:
            gc.disable()
            try:
                while monotonic() < until:
                    idle(pump(in_window))
                    if done is not None and done():
                        return True
                return False
            finally:
                gc.enable()

        deadline = monotonic() + args.timeout
        while counter.messages == 0:
            if monotonic() > deadline:
                raise RuntimeError(f"the bare receiver got nothing within {args.timeout:g} s")
            loop(monotonic() + 0.01, False)
        loop(monotonic() + args.settle, False)
        gaps0, missing0 = counter.gaps, counter.missing
        drops_before = udp_drops(port)
        cpu_before = _own_cpu(), cpu_seconds(exchange.proc.pid)
        status_before = _status_or_fail(control)
        start = monotonic()
        loop(start + args.seconds, True)
        status_after = _status_or_fail(control)
        window_s = monotonic() - start
        cpu_after = _own_cpu(), cpu_seconds(exchange.proc.pid)
        published = _published(status_after)
        catch_start = monotonic()
        caught = loop(catch_start + args.catch_up, False, lambda: counter.next_sequence - 1 >= published) or \
            counter.next_sequence - 1 >= published
        caught_up_s = monotonic() - catch_start if caught else None
        drops_after = udp_drops(port)
        exchange_exit = _stop_exchange(exchange)
        exchange = None

        sent = published - _published(status_before)
        ops_before, ops_after = _background_ops(status_before), _background_ops(status_after)
        ops_per_s = (ops_after - ops_before) / window_s if ops_before is not None and ops_after is not None else None
        gaps = counter.gaps - gaps0
        kernel_drops = None if drops_before is None or drops_after is None else drops_after - drops_before
        return {
            "rate_asked": rate, "seconds": window_s,
            "published": sent, "published_msgs_per_s": sent / window_s, **_sender(rate, ops_per_s),
            "received": counter.window_messages, "received_msgs_per_s": counter.window_messages / window_s,
            "packets": counter.window_packets, "gaps": gaps, "missing_messages": counter.missing - missing0,
            "late_packets": counter.late, "kernel_drops": kernel_drops, "rcvbuf_bytes": rcvbuf,
            "caught_up": caught, "catch_up_s": caught_up_s, "no_loss": gaps == 0 and caught,
            "receiver_cpu_share": _cpu_share(cpu_before[0], cpu_after[0], window_s),
            "exchange_cpu_share": _cpu_share(cpu_before[1], cpu_after[1], window_s),
            "exchange_exit": exchange_exit,
        }
    finally:
        if exchange is not None:
            exchange.close()
        if sock is not None:
            sock.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _max_no_loss(runs: list[dict]) -> float | None:
    good = [r["published_msgs_per_s"] for r in runs if r.get("no_loss")]
    return max(good) if good else None


def measure_live(args) -> tuple[dict, dict, dict, list[str]]:
    """(live result, peers, ratios, errors) of the live part."""
    symbols = exchange_symbols()
    runs, bare_runs, errors = [], [], []
    for rate in args.rates:
        try:
            run = measure_feed_rate(rate, args, symbols)
        except Exception as exc:  # noqa: BLE001 - one failed rate is reported, the others still run
            run = {"rate_asked": rate, "error": f"{type(exc).__name__}: {exc}"}
            errors.append(f"feed at rate {rate:g}: {run['error']}")
        runs.append(run)
        if args.skip_peers:
            continue
        try:
            bare = measure_bare_rate(rate, args)
        except Exception as exc:  # noqa: BLE001
            bare = {"rate_asked": rate, "error": f"{type(exc).__name__}: {exc}"}
            errors.append(f"bare receiver at rate {rate:g}: {bare['error']}")
        bare_runs.append(bare)
        if "error" not in run and "error" not in bare and bare["received_msgs_per_s"]:
            run["vs_bare_receiver"] = run["delivered_msgs_per_s"] / bare["received_msgs_per_s"]

    best = _max_no_loss(runs)
    measured = [r for r in runs if "error" not in r]
    # The headline latency: at the highest rate without loss; without one, at the lowest rate measured.
    lossless = [r for r in measured if r["no_loss"]]
    pick = max(lossless, key=lambda r: r["published_msgs_per_s"]) if lossless else \
        (min(measured, key=lambda r: r["rate_asked"]) if measured else None)
    live = {
        "max_msgs_per_s_no_loss": best,
        "rx_to_ring_p50_ns": pick["rx_to_ring_p50_ns"] if pick else None,
        "rx_to_ring_p99_ns": pick["rx_to_ring_p99_ns"] if pick else None,
        "rx_to_ring_p999_ns": pick["rx_to_ring_p999_ns"] if pick else None,
        "latency_at_rate_asked": pick["rate_asked"] if pick else None,
        "latency_at_msgs_per_s": pick["published_msgs_per_s"] if pick else None,
        "latency_run_had_loss": bool(pick) and not pick["no_loss"],
        "sender_limited_at": [r["rate_asked"] for r in measured if r["sender_limited"]],
        "highest_published_msgs_per_s": max((r["published_msgs_per_s"] for r in measured), default=None),
        # "sender": no loss at the most the exchange sent, so the feed's limit was not reached;
        # "feed": some rate the exchange reached had loss
        "limited_by": None if not measured else
        ("feed" if any(not r["no_loss"] for r in measured) else "sender"),
        "seconds": args.seconds, "settle_seconds": args.settle, "catch_up_seconds": args.catch_up,
        "symbols": symbols, "subscribed": symbols, "feed_idle": IDLE_STRATEGIES[args.feed_idle],
        "rcvbuf_bytes": RCVBUF_BYTES, "target_rx_to_ring_p50_ns": TARGET_RX_TO_RING_P50_NS,
        "runs": runs,
    }
    peers: dict = {}
    ratios: dict = {"target_rx_to_ring_p50_ns": TARGET_RX_TO_RING_P50_NS}
    if live["rx_to_ring_p50_ns"]:
        ratios["rx_to_ring_p50_vs_target"] = live["rx_to_ring_p50_ns"] / TARGET_RX_TO_RING_P50_NS
    if args.skip_peers:
        peers["bare_recv_into"] = {"available": False, "skipped": True, "reason": "--skip-peers"}
    else:
        bare_best = _max_no_loss(bare_runs)
        peers["bare_recv_into"] = {"available": True, "max_msgs_per_s_no_loss": bare_best,
                                   "idle": IDLE_STRATEGIES[args.feed_idle], "runs": bare_runs,
                                   "what": "recv_into on a non-blocking UDP socket + MoldUDP64 header count "
                                           "and sequence check, in the bench process"}
        if best and bare_best:
            ratios["live_max_no_loss_vs_bare"] = best / bare_best
    return live, peers, ratios, errors


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
    report = {"benchmark": "feed", "machine": machine, "results": results, "peers": peers, "ratios": ratios,
              "targets": {"replay_msgs_per_s": TARGET_REPLAY_MSGS_PER_S,
                          "rx_to_ring_p50_ns": TARGET_RX_TO_RING_P50_NS},
              "errors": errors}
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 1 if errors else 0


def _fmt(value, spec: str = ",.0f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _pct(share) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def _us(ns) -> str:
    return "-" if ns is None else f"{ns / 1000:.1f}"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"


def _print_table(report: dict) -> None:
    m = report["machine"]
    results, peers, ratios = report["results"], report["peers"], report["ratios"]
    print(f"feed handler bench: {m.get('cpu_model') or 'unknown CPU'}, {m.get('cores')} cores "
          f"(allowed {m.get('cpus_allowed')}), Python {m['python']}, kernel {m.get('kernel')}, "
          f"load {' '.join(m.get('loadavg_at_start', []))}")
    if "replay" in results:
        _print_replay(results, peers, ratios)
    if "live" in results:
        if "replay" in results:
            print()
        _print_live(results["live"], peers, ratios)
    for part, text in report["errors"].items():
        print(f"error ({part}): {text}")


def _print_replay(results: dict, peers: dict, ratios: dict) -> None:
    ours = results["replay"]
    f = ours["file"]
    print(f"replay: {f['messages']:,} messages, {f['bytes'] / 1e6:.1f} MB BinaryFILE "
          f"({'cached' if f['cached'] else 'generated in ' + format(f['generate_seconds'], '.1f') + ' s'}: "
          f"{f['path']}), seed {ours['seed']}, {ours['symbols']} symbols; one process pinned to CPU {ours['cpu']}, "
          f"gc disabled")
    print(f"subscribed {len(ours['subscribed'])} of {ours['symbols']} (locates "
          f"{', '.join(map(str, ours['subscribed_locates']))}): {100 * ours['book_share']:.1f}% of the messages "
          f"reach a book; decoder backend {ours['backend']}")
    feed = peers.get("itchfeed", {})
    header = (f"{'path':<48} {'messages':>11} {'seconds':>8} {'msg/s':>12} {'ns/msg':>7} {'vs itchfeed':>11} "
              f"{'vs target':>9}")
    print(header)
    print("-" * len(header))
    prefix = results.get("itchfeed_prefix", {})

    def row(label: str, r: dict, key: str | None) -> None:
        vs_peer = "-"
        if feed.get("available") and key in prefix:
            vs_peer = f"{prefix[key]['msgs_per_s'] / feed['msgs_per_s']:.1f}x"
        print(f"{label:<48} {r['messages']:>11,} {r['seconds']:>8.3f} {r['msgs_per_s']:>12,.0f} "
              f"{r['ns_per_msg']:>7.0f} {vs_peer:>11} {r['msgs_per_s'] / TARGET_REPLAY_MSGS_PER_S:>8.2f}x")

    row(f"ours: scan + filter + books ({len(ours['subscribed'])}/{ours['symbols']})", ours, "replay")
    row(f"ours: scan + filter, no books ({len(ours['subscribed'])}/{ours['symbols']})", results["filter_only"], None)
    row("ours: decode only (all symbols, no books)", results["decode_only"], "decode_only")
    row(f"ours: scan + books ({ours['symbols']}/{ours['symbols']})", results["books_all_symbols"], None)
    row(f"ours: scan + filter + books + publish ({len(ours['subscribed'])}/{ours['symbols']})",
        results["replay_with_publish"], None)
    if feed.get("available"):
        label = f"itchfeed {feed['version']} ({'C++' if feed['cpp_backend'] else 'pure Python'}), decode only"
        print(f"{label:<48} {feed['messages']:>11,} {feed['seconds']:>8.3f} {feed['msgs_per_s']:>12,.0f} "
              f"{feed['ns_per_msg']:>7.0f} {'1.0x':>11} {feed['msgs_per_s'] / TARGET_REPLAY_MSGS_PER_S:>8.2f}x")
    else:
        print(f"{'itchfeed':<48} {'skipped' if feed.get('skipped') else 'unavailable'}: {feed.get('reason', '?')}")
    print(f"{'target':<48} {'':>11} {'':>8} {TARGET_REPLAY_MSGS_PER_S:>12,} {1e9 / TARGET_REPLAY_MSGS_PER_S:>7.0f}")
    if feed.get("available") and not feed["whole_file"]:
        p = prefix
        print(f"itchfeed ran on the first {feed['messages']:,} messages only (--itchfeed-messages); the 'vs itchfeed' "
              f"ratios compare ours on that same prefix ({p['replay']['msgs_per_s']:,.0f} and "
              f"{p['decode_only']['msgs_per_s']:,.0f} msg/s there)")
    check = ours["check"]
    if check["ok"]:
        print(f"books check: ok - unknown_order 0, over_execution 0, duplicate_add 0, no malformed block, every "
              f"message walked; the {len(ours['subscribed'])} books equal those of the {ours['symbols']}-symbol pass; "
              f"{check['resting_orders']:,} orders resting in {check['books_with_orders']} books, "
              f"{ours['book_changes']:,} book changes")
        print(f"books cost per message applied (books pass minus scanner pass): "
              f"{ours['books_ns_per_applied_msg']:,.0f} ns with {len(ours['subscribed'])} books, "
              f"{results['books_all_symbols']['books_ns_per_applied_msg']:,.0f} ns with all {ours['symbols']}; "
              f"publish (market state + ring) per book change: "
              f"{results['replay_with_publish']['publish_ns_per_update']:,.0f} ns")
    else:
        print(f"books check: FAILED - {'; '.join(check['problems'])}")


def _print_live(live: dict, peers: dict, ratios: dict) -> None:
    idle = live["feed_idle"]
    idle_text = idle["strategy"] if idle["strategy"] != "backoff" else \
        (f"backoff: {idle['spins']} spins, {idle['yields']} yields, park {idle['min_park_ns'] // 1000}.."
         f"{idle['max_park_ns'] // 1000} us")
    print(f"live: the exchange as a process (background flow, {len(live['symbols'])} symbols, all subscribed) -> "
          f"MoldUDP64 on 127.0.0.1 -> the feed agent as a process ({idle_text}) -> book_updates ring drained here; "
          f"{live['seconds']:g} s window per rate after {live['settle_seconds']:g} s of warm-up, "
          f"{live['catch_up_seconds']:g} s to catch up")
    header = (f"{'asked op/s':>10} {'sent msg/s':>10} {'sender':>8} {'feed msg/s':>10} {'gaps':>5} {'recov':>6} "
              f"{'lost':>5} {'kdrop':>5} {'updates':>8} {'no loss':>7} {'feed CPU':>8} {'CPU us/msg':>10} "
              f"{'exch CPU':>8}")
    print(header)
    print("-" * len(header))
    for r in live["runs"]:
        if "error" in r:
            print(f"{r['rate_asked']:>10,.0f} failed: {_one_line(r['error'])}")
            continue
        sender = "LIMIT" if r["sender_limited"] else (f"{r['achieved_ratio']:.2f}x" if r["achieved_ratio"] else "-")
        print(f"{r['rate_asked']:>10,.0f} {r['published_msgs_per_s']:>10,.0f} {sender:>8} "
              f"{r['delivered_msgs_per_s']:>10,.0f} {r['gaps']:>5} {r['messages_recovered']:>6,} "
              f"{r['messages_lost']:>5,} {_fmt(r['kernel_drops'], 'd'):>5} {r['book_updates']:>8,} "
              f"{'yes' if r['no_loss'] else 'NO':>7} {_pct(r['feed_cpu_share']):>8} "
              f"{_us(r['feed_cpu_ns_per_msg']):>10} {_pct(r['exchange_cpu_share']):>8}")
    print(f"sender: background operations the exchange ran / asked (LIMIT: under {SENDER_LIMIT_RATIO:.0%}: the "
          "sender was the limit); gaps: packets the feed never saw (recov: messages re-requested, lost: given "
          "up); kdrop: the kernel's drops on the feed's socket; CPU: share of one core in the window (the feed's "
          "includes its idle strategy)")
    print()
    print("rx->ring latency (t_feed_out - t_rx, the kernel receive timestamp), every BookUpdate of the window, us")
    header = (f"{'asked op/s':>10} {'sent msg/s':>10} {'msgs/pkt':>8} {'updates':>8} {'p50':>7} {'p99':>8} "
              f"{'p99.9':>8} {'max':>8} {'1st p50':>8} {'1st p99':>8} {'step p50':>8}")
    print(header)
    print("-" * len(header))
    for r in live["runs"]:
        if "error" in r:
            continue
        lat, first, step = r["rx_to_ring"], r["rx_to_ring_first_in_packet"], r["update_spacing_in_packet"]
        per_packet = r["delivered"] / r["packets"] if r["packets"] else None
        print(f"{r['rate_asked']:>10,.0f} {r['published_msgs_per_s']:>10,.0f} {_fmt(per_packet, '.1f'):>8} "
              f"{lat['count']:>8,} {_us(lat['p50_ns']):>7} {_us(lat['p99_ns']):>8} {_us(lat['p999_ns']):>8} "
              f"{_us(lat['max_ns']):>8} {_us(first['p50_ns']):>8} {_us(first['p99_ns']):>8} {_us(step['p50_ns']):>8}")
    print("1st: the first update of each packet only (wake-up and receive, no queueing behind the packet's earlier "
          "messages); step: between consecutive updates of one packet (the feed's work per update)")
    bare = peers.get("bare_recv_into", {})
    if bare.get("available"):
        print()
        print("peer: a bare Python recv_into loop (same rcvbuf and idle strategy, this process, no decoding, "
              "no books) at the same rates, its own exchange")
        header = (f"{'asked op/s':>10} {'sent msg/s':>10} {'sender':>8} {'recv msg/s':>10} {'packets':>8} "
                  f"{'gaps':>5} {'missing':>7} {'kdrop':>5} {'no loss':>7} {'feed/bare':>9}")
        print(header)
        print("-" * len(header))
        feed_by_rate = {r["rate_asked"]: r for r in live["runs"]}
        for r in bare["runs"]:
            if "error" in r:
                print(f"{r['rate_asked']:>10,.0f} failed: {_one_line(r['error'])}")
                continue
            sender = "LIMIT" if r["sender_limited"] else (f"{r['achieved_ratio']:.2f}x" if r["achieved_ratio"] else "-")
            ratio = feed_by_rate.get(r["rate_asked"], {}).get("vs_bare_receiver")
            print(f"{r['rate_asked']:>10,.0f} {r['published_msgs_per_s']:>10,.0f} {sender:>8} "
                  f"{r['received_msgs_per_s']:>10,.0f} {r['packets']:>8,} {r['gaps']:>5} {r['missing_messages']:>7,} "
                  f"{_fmt(r['kernel_drops'], 'd'):>5} {'yes' if r['no_loss'] else 'NO':>7} "
                  f"{_fmt(ratio, '.2f'):>8}x")
    elif bare:
        print(f"peer bare recv_into: {'skipped' if bare.get('skipped') else 'unavailable'}: {bare.get('reason', '?')}")
    print()
    best = live["max_msgs_per_s_no_loss"]
    line = f"max msg/s with no loss: feed {_fmt(best)}"
    if bare.get("available"):
        line += f", bare recv_into {_fmt(bare['max_msgs_per_s_no_loss'])}"
        if "live_max_no_loss_vs_bare" in ratios:
            line += f" (feed/bare {ratios['live_max_no_loss_vs_bare']:.2f}x)"
    highest = live["highest_published_msgs_per_s"]
    if live["sender_limited_at"]:
        line += (f"; the exchange was the limit at {', '.join(format(r, ',.0f') for r in live['sender_limited_at'])} "
                 f"op/s asked (most it sent: {_fmt(highest)} msg/s)")
    if best is not None and highest is not None and best >= highest:
        line += "; no loss at the highest rate the exchange sent: the feed's own limit is above it"
    print(line)
    if live["rx_to_ring_p50_ns"] is not None:
        where = f"{live['latency_at_msgs_per_s']:,.0f} msg/s ({live['latency_at_rate_asked']:,.0f} op/s asked)"
        print(f"rx->ring at {where}{' (that run had loss)' if live['latency_run_had_loss'] else ''}: "
              f"p50 {_us(live['rx_to_ring_p50_ns'])} us, p99 {_us(live['rx_to_ring_p99_ns'])} us, "
              f"p99.9 {_us(live['rx_to_ring_p999_ns'])} us; target p50 <= {TARGET_RX_TO_RING_P50_NS / 1000:g} us: "
              f"{ratios.get('rx_to_ring_p50_vs_target', 0):.1f}x the target")
