"""``appliance bench itch``: ITCH 5.0 decode rate, full and locate-filtered, against itchfeed.

A seeded generator writes a realistic day (system event, stock directory, then an
order-book mix of mostly A, D, E, X and U over live orders) into a temporary
BinaryFILE; the bench reads it back into memory once and decodes the same bytes
with:

* ``full_decode``: ``BlockScanner`` yielding a raw tuple of every field of every message;
* ``filtered``: the same scanner with 1 in 20 symbols subscribed (type + locate
  read for every message, the subscribed ones fully decoded); the rate counts
  every message walked;
* ``itchfeed``: the PyPI package's ``MessageParser.parse_stream`` (pure Python
  unless its optional C++ backend ``itchcpp`` is installed; reported either way);
* ``pure_python_full`` / ``pure_python_filtered``: the same scanner without the C
  extension (first million messages), for reference.

The garbage collector is disabled while any decoder runs (as the appliance's
agents run), for every contender alike.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time

from appliance.command_io.arguments import positive_int
from appliance.bench.timing import timed

SYMBOL_COUNT = 2000
SUBSCRIBE_ONE_IN = 20
SEED = 20_240_605
CENT = 100                 # price units (4 implied decimals)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=positive_int, default=5_000_000,
                        help="order messages in the generated day file (default 5000000)")
    parser.add_argument("--itchfeed-messages", type=positive_int, default=None,
                        help="decode only the first N messages with itchfeed (default: all of them)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"generator seed (default {SEED})")


# ---------------------------------------------------------------- generator

def generate_day_file(path: str, order_messages: int, seed: int = SEED, symbols: int = SYMBOL_COUNT) -> int:
    """Write a reproducible BinaryFILE; returns the number of messages written.

    Uses the schema's own layouts (each with the u16 block length in front) so the
    bytes are exactly what the codec defines. Prices are whole cents and a book is never
    locked or crossed, as a real venue's (which matches a crossing order at once): each
    symbol has a reference price ($10..$500, from its own seeded draw, so the message
    stream is the one of ``seed``), bids rest 1..49 cents below it and asks above it,
    and a replace moves an order at most 5 cents without leaving its side.
    """
    from appliance.wire import itch
    from appliance.wire.dayfile import DayFileWriter
    from appliance.wire.schema import prefixed

    rng = random.Random(seed)
    L = itch.ITCH.by_code
    framed = {code: prefixed(itch.BLOCK, L[code]).struct for code in "SRAFEXDUCP"}
    sizes = {code: L[code].size for code in framed}
    names = [f"S{i:04d}" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(2)) for i in range(symbols)]
    with open(path, "wb") as file:
        writer = DayFileWriter(file, buffer_size=1 << 22)
        buffer = writer.buffer
        limit = len(buffer) - 64
        ts = 34_200_000_000_000  # 09:30
        tracking = 0
        written = 0

        def put(code, *values):
            nonlocal written
            if writer.used > limit:
                writer.flush()
            framed[code].pack_into(buffer, writer.used, sizes[code], *values)
            writer.used += framed[code].size
            written += 1

        put("S", b"S", 0, 0, ts >> 32, ts & 0xFFFFFFFF, b"O")
        for locate, name in enumerate(names, start=1):
            put("R", b"R", locate, 0, ts >> 32, ts & 0xFFFFFFFF, name.encode().ljust(8), b"Q", b"N", 100, b"N",
                b"C", b"  ", b"P", b"N", b"N", b"1", b"N", 0, b"N")
        stocks = [name.encode().ljust(8) for name in names]
        references = [random.Random(seed * 7919 + locate).randrange(10_00, 500_00) * CENT
                      for locate in range(symbols + 1)]       # by locate (1..symbols)
        # Live orders as parallel lists; removal swaps with the last (O(1)).
        refs: list[int] = []
        locs: list[int] = []
        qty: list[int] = []
        pxs: list[int] = []
        next_ref = 1
        match = 1
        random_ = rng.random
        randrange = rng.randrange
        weights_locate = [rng.paretovariate(1.2) for _ in range(symbols)]
        total_w = sum(weights_locate)
        cumulative = []
        acc = 0.0
        for w in weights_locate:
            acc += w / total_w
            cumulative.append(acc)
        from bisect import bisect_left
        for _ in range(order_messages):
            ts += randrange(1, 20_000)
            hi, lo = ts >> 32, ts & 0xFFFFFFFF
            tracking = (tracking + 1) & 0xFFFF
            r = random_()
            if r < 0.42 or len(refs) < 1000:
                locate = min(bisect_left(cumulative, random_()), symbols - 1) + 1
                side = b"B" if random_() < 0.5 else b"S"
                shares = randrange(1, 10) * 100
                offset = randrange(1, 50) * CENT
                price = references[locate] - offset if side == b"B" else references[locate] + offset
                if r < 0.01:
                    put("F", b"F", locate, tracking, hi, lo, next_ref, side, shares, stocks[locate - 1], price, b"MPID")
                else:
                    put("A", b"A", locate, tracking, hi, lo, next_ref, side, shares, stocks[locate - 1], price)
                refs.append(next_ref); locs.append(locate); qty.append(shares); pxs.append(price)
                next_ref += 1
                continue
            i = randrange(len(refs))
            ref, locate = refs[i], locs[i]
            if r < 0.77:      # delete
                put("D", b"D", locate, tracking, hi, lo, ref)
                _remove(refs, locs, qty, pxs, i)
            elif r < 0.85:    # replace
                shares = randrange(1, 10) * 100
                reference = references[locate]
                price = pxs[i] + randrange(-5, 5) * CENT        # on its side of the reference: never crossing
                price = min(price, reference - CENT) if pxs[i] < reference else max(price, reference + CENT)
                put("U", b"U", locate, tracking, hi, lo, ref, next_ref, shares, price)
                refs[i], qty[i], pxs[i] = next_ref, shares, price
                next_ref += 1
            elif r < 0.92:    # partial cancel
                cancel = min(qty[i] - 1, 100) if qty[i] > 100 else 0
                if cancel:
                    put("X", b"X", locate, tracking, hi, lo, ref, cancel)
                    qty[i] -= cancel
                else:
                    put("D", b"D", locate, tracking, hi, lo, ref)
                    _remove(refs, locs, qty, pxs, i)
            elif r < 0.99:    # execution
                executed = min(qty[i], 100)
                if r < 0.98:
                    put("E", b"E", locate, tracking, hi, lo, ref, executed, match)
                else:
                    put("C", b"C", locate, tracking, hi, lo, ref, executed, match, b"Y", pxs[i])
                match += 1
                qty[i] -= executed
                if qty[i] == 0:
                    _remove(refs, locs, qty, pxs, i)
            else:             # hidden trade
                put("P", b"P", locate, tracking, hi, lo, 0, b"B", 100, stocks[locate - 1], pxs[i], match)
                match += 1
        ts += 1
        put("S", b"S", 0, 0, ts >> 32, ts & 0xFFFFFFFF, b"C")
        writer.messages_written = written
        writer.close()
    return written


def _remove(refs, locs, qty, pxs, i):
    for column in (refs, locs, qty, pxs):
        column[i] = column[-1]
        column.pop()


# ---------------------------------------------------------------- measurements

def scan_pass(scanner, data: bytes, end: int) -> tuple[int, int, float]:
    """One timed walk of ``scanner`` over ``data[:end]``: (messages walked, messages returned, seconds)."""
    def walk():
        n = 0
        for _raw in scanner.scan(data, 0, end):
            n += 1
        return n
    returned, elapsed = timed(walk)
    return scanner.decoded + scanner.filtered_out + scanner.malformed, returned, elapsed


def _measure_scanner(data: bytes, subscribed, use_c: bool, limit_bytes: int | None = None):
    from appliance.wire.itch import BlockScanner

    scanner = BlockScanner(subscribed, use_c=use_c)
    walked, returned, elapsed = scan_pass(scanner, data, len(data) if limit_bytes is None else limit_bytes)
    return walked, returned, elapsed, scanner


def _prefix_bytes(data: bytes, messages: int) -> int:
    offset = 0
    for _ in range(messages):
        if offset + 2 > len(data):
            break
        offset += 2 + (data[offset] << 8 | data[offset + 1])
    return min(offset, len(data))


def _measure_itchfeed(data: bytes):
    try:
        import itch as itchfeed_pkg
        from itch.parser import MessageParser
    except ImportError:
        return None
    parser = MessageParser()

    def walk():
        n = 0
        for _message in parser.parse_stream(data):
            n += 1
        return n
    count, elapsed = timed(walk)
    return count, elapsed, getattr(itchfeed_pkg, "USING_CPP_BACKEND", False), getattr(itchfeed_pkg, "__version__", "?")


def run(args: argparse.Namespace) -> int:
    from appliance.wire import itch

    if itch._itch_fast is None:
        print("note: appliance.wire._itch_fast is not built; full_decode/filtered use the pure-Python scanner",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-itch-") as tmp:
        path = os.path.join(tmp, "day.itch")
        started = time.perf_counter()
        total = generate_day_file(path, args.messages, args.seed)
        generate_s = time.perf_counter() - started
        with open(path, "rb") as file:
            data = file.read()
    # (the temporary file is gone here; the bytes stay in memory for every contender)

    use_c = itch._itch_fast is not None
    full_walked, _, full_s, full = _measure_scanner(data, None, use_c)
    subscribed = itch.BlockScanner.locate_map(range(1, SYMBOL_COUNT + 1, SUBSCRIBE_ONE_IN))
    filt_walked, filt_returned, filt_s, _ = _measure_scanner(data, subscribed, use_c)
    py_messages = min(total, 1_000_000)
    py_bytes = _prefix_bytes(data, py_messages)
    py_walked, _, py_s, _ = _measure_scanner(data, None, False, py_bytes)
    pyf_walked, _, pyf_s, _ = _measure_scanner(data, subscribed, False, py_bytes)
    feed_bytes = data if args.itchfeed_messages is None else data[:_prefix_bytes(data, args.itchfeed_messages)]
    feed = _measure_itchfeed(feed_bytes)

    results = {
        "full_decode": {"messages": full_walked, "seconds": full_s, "msgs_per_s": full_walked / full_s,
                        "backend": "c" if use_c else "python"},
        "filtered": {"messages": filt_walked, "decoded": filt_returned, "seconds": filt_s,
                     "msgs_per_s": filt_walked / filt_s, "subscribed": f"1 in {SUBSCRIBE_ONE_IN} symbols",
                     "backend": "c" if use_c else "python"},
        "pure_python_full": {"messages": py_walked, "seconds": py_s, "msgs_per_s": py_walked / py_s},
        "pure_python_filtered": {"messages": pyf_walked, "seconds": pyf_s, "msgs_per_s": pyf_walked / pyf_s},
    }
    if feed is not None:
        count, seconds, cpp, version = feed
        results["itchfeed"] = {"messages": count, "seconds": seconds, "msgs_per_s": count / seconds,
                               "version": version, "cpp_backend": bool(cpp)}
    report = {
        "benchmark": "itch",
        "messages": total,
        "bytes": len(data),
        "generate_seconds": generate_s,
        "seed": args.seed,
        "python": platform.python_version(),
        "results": results,
    }
    if full_walked != total or filt_walked != total or full.malformed:
        print(f"bench itch: decoded {full_walked}/{filt_walked} of {total} messages", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
        return 0
    _print_table(report)
    return 0


def _print_table(report: dict) -> None:
    results = report["results"]
    feed_rate = results.get("itchfeed", {}).get("msgs_per_s")
    print(f"ITCH 5.0 decode: {report['messages']:,} messages, {report['bytes'] / 1e6:.1f} MB "
          f"(generated in {report['generate_seconds']:.1f} s, seed {report['seed']}, Python {report['python']})")
    print(f"{'path':<20} {'messages':>11} {'seconds':>9} {'msg/s':>14} {'vs itchfeed':>12}")
    for name in ("full_decode", "filtered", "pure_python_full", "pure_python_filtered", "itchfeed"):
        if name not in results:
            continue
        r = results[name]
        ratio = f"{r['msgs_per_s'] / feed_rate:.1f}x" if feed_rate else "n/a"
        print(f"{name:<20} {r['messages']:>11,} {r['seconds']:>9.3f} {r['msgs_per_s']:>14,.0f} {ratio:>12}")
    if "itchfeed" in results:
        r = results["itchfeed"]
        print(f"itchfeed {r['version']} ({'C++ itchcpp backend' if r['cpp_backend'] else 'pure Python'})")
    else:
        print("itchfeed is not installed (pip install itchfeed): no comparison")
