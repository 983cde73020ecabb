"""The replay part of ``appliance bench feed``: decode-and-book throughput over a recorded day.

Decode-and-book throughput in this one process, over a BinaryFILE day
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
* ``replay_with_publish``: ``replay`` packet by packet (the file cut into MoldUDP64 payloads of at
  most ``moldudp64.DEFAULT_MAX_PAYLOAD`` bytes, as the exchange packs them) plus the feed's output:
  ``BookOutputs.publish_packet``, one update per changed symbol per packet (the market-state slot
  and a BookUpdate on a real shared-memory ring, released here every 1024 updates): the agent's
  whole per-packet work but the socket and the sequencer. ``publish_ns_per_update`` is its time
  over ``replay``'s per update written; ``messages_covered`` (the updates' message counts) equals
  ``replay``'s book changes;
* ``compiled_with_publish`` and ``compiled_all_symbols`` (ours, when ``feed/_book_fast`` is built):
  ``replay_with_publish`` through the compiled path (``feed.fast.FastFeed.apply_packet``: decode,
  filter, books, snapshot, ring and market-state writes in C, one call per packet) with the
  subscribed symbols and with every symbol; the peer ``python_feed_path`` is the Python path (the
  reference) on the same packets in the same run, and the two must agree on every count. The
  issue-16 target (``TARGET_FEED_PATH_MSGS_PER_S``) is for the all-symbols compiled pass;
* the peer ``itchfeed`` (PyPI, decode only; pure Python unless its C++ backend is present)
  on the first ``--itchfeed-messages`` messages (default 1,000,000: it runs ~0.25 M msg/s),
  and our two paths again on the same prefix, for the ratios.

The books are checked afterwards: no unknown order, over-execution, duplicate add or
malformed block, every message walked, and the subscribed books equal to the same symbols'
books of the all-symbols pass (the filter changes no book).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from pathlib import Path

from appliance.bench.feed_live import bench_workdir, feed_layout
from appliance.bench.itch import scan_pass
from appliance.bench.timing import timed

SEED = 20_240_605
SYMBOLS = 100
SUBSCRIBED = 10
ITCHFEED_MESSAGES = 1_000_000
TARGET_REPLAY_MSGS_PER_S = 1_000_000
# Issue 16: every symbol subscribed, books built and every BookUpdate published (ring + market state).
TARGET_FEED_PATH_MSGS_PER_S = 2_000_000


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
    updates, elapsed = timed(walk)
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

        self.name, self.workdir = bench_workdir()
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
            memory.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _packet_bounds(data, end: int, max_payload: int) -> list[tuple[int, int]]:
    """The file's blocks cut into MoldUDP64-sized payloads (at most ``max_payload`` bytes, as the exchange
    packs them): ``(start, stop)`` byte ranges, whole blocks each."""
    bounds = []
    start = offset = 0
    while offset + 2 <= end:
        size = 2 + (data[offset] << 8 | data[offset + 1])
        if offset + size - start > max_payload and offset > start:
            bounds.append((start, offset))
            start = offset
        offset += size
    if end > start:
        bounds.append((start, end))
    return bounds


def _publish_pass(data, end: int, symbols: list[str], compiled: bool = False) -> dict:
    """The books pass plus the feed's output, packet by packet as the feed agent does it: the file cut into
    MoldUDP64-sized payloads, each through ``BookOutputs.publish_packet`` (the books, then one update per
    changed symbol: market-state slot + BookUpdate on a real shared-memory ring), the ring released here
    every 1024 updates. ``compiled``: the same through ``feed.fast.FastFeed.apply_packet`` (decode, books,
    snapshot and both writes in C, one call per packet), the path the feed agent takes when it is built."""
    from appliance.feed.books import BookSet
    from appliance.feed.outputs import BookOutputs
    from appliance.messages.catalog import BOOK_DEPTH
    from appliance.wire.itch import BlockScanner
    from appliance.wire.moldudp64 import DEFAULT_MAX_PAYLOAD

    bounds = _packet_bounds(data, end, DEFAULT_MAX_PAYLOAD)
    scratch = _ScratchMemory(symbols)
    producer = consumer = outputs = None
    try:
        memory = scratch.memory
        producer, consumer = memory.ring("book_updates", "producer"), memory.ring("book_updates", "consumer")
        peek, release = consumer.peek, consumer.release
        if compiled:
            from appliance.feed.fast import FastFeed

            outputs = books = FastFeed(symbols, producer, memory.ring_buffer("book_updates"),
                                       memory.market_state_writer())
            counters = books.scan_counters
            apply_packet = books.apply_packet

            def one(start, stop):
                return apply_packet(data, start, stop, 0, 1)
        else:
            outputs = BookOutputs(producer, memory.ring_buffer("book_updates"), memory.market_state_writer())
            books = BookSet(symbols, BOOK_DEPTH)
            scanner = BlockScanner(books.subscribed_locates, strict=False)
            counters = scanner.counters
            scan, publish_packet = scanner.scan, outputs.publish_packet

            def one(start, stop):
                return publish_packet(scan(data, start, stop, True), books, 0, 1)
        outputs.feed_stale = False

        def walk() -> int:
            published = unreleased = 0
            for start, stop in bounds:
                unreleased += one(start, stop)
                if unreleased >= 1024:
                    published += unreleased
                    unreleased = 0
                    while peek() >= 0:
                        release()
            return published + unreleased
        published, elapsed = timed(walk)
        walked = sum(counters)
        result = {"messages": walked, "seconds": elapsed, "msgs_per_s": walked / elapsed,
                  "ns_per_msg": elapsed * 1e9 / walked, "malformed": counters[2],
                  "applied": books.counters[books.COUNTER_NAMES.index("messages")], "published": published,
                  "dropped": outputs.dropped, "messages_covered": outputs.messages, "packets": len(bounds),
                  "max_payload": DEFAULT_MAX_PAYLOAD, "books": len(symbols),
                  "path": "FastFeed.apply_packet (C: decode, locate filter, books, one update per changed symbol "
                          "per packet: ring + market state)" if compiled else
                          "BlockScanner + locate filter + BookOutputs.publish_packet (BookSet.apply, then one "
                          "update per changed symbol per packet: ring + market state)"}
    finally:
        if outputs is not None:
            outputs.market_state.close()
        producer = consumer = outputs = books = None
        scratch.close()
    return result


def _compiled_available() -> bool:
    from appliance.feed import fast
    return fast.AVAILABLE


def _decode_pass(data, end: int, locates=None) -> dict:
    """The scanner alone: every message decoded (``locates`` None), or only those of ``locates``."""
    from appliance.wire.itch import BlockScanner

    scanner = BlockScanner(None if locates is None else BlockScanner.locate_map(locates), strict=False)
    walked, returned, elapsed = scan_pass(scanner, data, end)
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
        compiled = compiled_all = python_all = None
        if _compiled_available():
            compiled = _publish_pass(data, len(data), subscribed, compiled=True)
            compiled_all = _publish_pass(data, len(data), names, compiled=True)
            python_all = _publish_pass(data, len(data), names)
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
    if published["messages_covered"] != ours["book_changes"] or published["dropped"]:
        check["ok"] = False
        check["problems"].append(f"the publish pass's {published['published']} updates ({published['dropped']} "
                                 f"dropped) covered {published['messages_covered']} changes, the books pass made "
                                 f"{ours['book_changes']}")
    for label, c_pass, py_pass in (("subscribed", compiled, published), ("all-symbols", compiled_all, python_all)):
        if c_pass is None:
            continue
        same = ("applied", "published", "messages_covered", "dropped", "malformed", "messages")
        if any(c_pass[k] != py_pass[k] for k in same):
            check["ok"] = False
            check["problems"].append(f"the compiled {label} publish pass disagrees with the Python one: "
                                     + ", ".join(f"{k} {c_pass[k]} vs {py_pass[k]}" for k in same
                                                 if c_pass[k] != py_pass[k]))
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
    if compiled is not None:
        # ours: the compiled path; its peer in the same run: the Python path (the reference) on the same symbols.
        results["compiled_with_publish"] = compiled
        results["compiled_all_symbols"] = compiled_all
        peers["python_feed_path"] = {"available": True, "all_symbols": python_all, "subscribed": published,
                                     "path": python_all["path"]}
    if prefix:
        results["itchfeed_prefix"] = {name: {"messages": r["messages"], "seconds": r["seconds"],
                                             "msgs_per_s": r["msgs_per_s"]} for name, r in prefix.items()}
    ratios: dict = {"replay_vs_target": ours["msgs_per_s"] / TARGET_REPLAY_MSGS_PER_S,
                    "target_replay_msgs_per_s": TARGET_REPLAY_MSGS_PER_S}
    if compiled is not None:
        ratios["compiled_vs_python_subscribed"] = compiled["msgs_per_s"] / published["msgs_per_s"]
        ratios["compiled_vs_python_all_symbols"] = compiled_all["msgs_per_s"] / python_all["msgs_per_s"]
        ratios["compiled_all_symbols_vs_target"] = compiled_all["msgs_per_s"] / TARGET_FEED_PATH_MSGS_PER_S
        ratios["target_feed_path_msgs_per_s"] = TARGET_FEED_PATH_MSGS_PER_S
    else:
        peers["python_feed_path"] = {"available": False, "reason": "appliance.feed._book_fast is not built: "
                                                                    "no compiled path to compare"}
    peer = peers["itchfeed"]
    if peer.get("available"):
        ratios["replay_vs_itchfeed"] = prefix["replay"]["msgs_per_s"] / peer["msgs_per_s"]
        ratios["decode_only_vs_itchfeed"] = prefix["decode_only"]["msgs_per_s"] / peer["msgs_per_s"]
        ratios["itchfeed_messages"] = peer["messages"]
    errors = [] if check["ok"] else [f"books check: {'; '.join(check['problems'])}"]
    return results, peers, ratios, errors
