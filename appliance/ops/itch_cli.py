"""``appliance itch decode|stats FILE``: look inside an ITCH 5.0 BinaryFILE day file.

``decode`` prints one JSON object per message (type, timestamp, stock_locate,
tracking_number, then the spec's fields in snake_case; text without padding,
prices as integers with 4 implied decimals), optionally filtered by type and by
symbol. ``stats`` prints counts per type and per symbol and the decode rate.
"""
from __future__ import annotations

import argparse
import sys

from appliance.command_io.arguments import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="itch_command", metavar="ACTION", required=True)
    decode = sub.add_parser("decode", help="print one JSON object per message",
                            description="Print one JSON object per line per message of an ITCH 5.0 BinaryFILE.")
    decode.add_argument("file", metavar="FILE", help="BinaryFILE: messages each preceded by a u16 length")
    decode.add_argument("--type", dest="types", metavar="CODES",
                        help="comma-separated message types to keep, e.g. A,E (case-sensitive: h is Operational Halt)")
    decode.add_argument("--stock", metavar="SYMBOL",
                        help="keep only messages for SYMBOL (by stock field, or by the stock locate it was given)")
    stats = sub.add_parser("stats", help="counts per type and per symbol, and messages/s decoded",
                           description="Count the messages of an ITCH 5.0 BinaryFILE per type and per symbol.")
    stats.add_argument("file", metavar="FILE", help="BinaryFILE: messages each preceded by a u16 length")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    stats.add_argument("--top", type=int, default=20, metavar="N", help="symbols to list (default 20; 0 = all)")


def _parse_types(text: str | None, known: dict) -> set[bytes] | None:
    if text is None:
        return None
    codes = [code.strip() for code in text.split(",") if code.strip()]
    if not codes:
        raise UsageError("--type needs at least one message type, e.g. --type A,E")
    unknown = [code for code in codes if code not in known]
    if unknown:
        raise UsageError(f"unknown ITCH message type(s) {','.join(unknown)}; known: {''.join(sorted(known))}")
    return {code.encode("ascii") for code in codes}


def _parse_stock(text: str | None) -> bytes | None:
    if text is None:
        return None
    symbol = text.strip()
    if not symbol or len(symbol) > 8 or not symbol.isascii() or " " in symbol:
        raise UsageError(f"--stock {text!r} is not a symbol of 1 to 8 ASCII characters")
    return symbol.encode("ascii").ljust(8, b" ")


def _open(path: str):
    try:
        return open(path, "rb")
    except OSError as exc:
        print(f"appliance itch: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from appliance.wire import itch
    from appliance.wire.dayfile import DayFileReader
    from appliance.wire.errors import WireFormatError

    if args.itch_command == "decode":
        types = _parse_types(args.types, itch.ITCH.by_code)
        stock = _parse_stock(args.stock)
    elif args.top < 0:
        raise UsageError("--top must be >= 0")
    file = _open(args.file)
    if file is None:
        return 1
    by_byte = itch.LAYOUT_BY_BYTE
    stock_index = itch.STOCK_INDEX_BY_BYTE
    try:
        with file:
            reader = DayFileReader(file)
            if args.itch_command == "decode":
                out = sys.stdout
                stock_locates: set[int] = set()
                for raw in reader.iter_raw():
                    type_byte = raw[0]
                    if stock is not None:
                        index = stock_index[type_byte[0]]
                        if index is not None:      # carries a stock field: compare it
                            if raw[index] != stock:
                                continue
                            if raw[1]:
                                stock_locates.add(raw[1])
                        elif not raw[1] or raw[1] not in stock_locates:
                            continue               # no stock field: keep if its locate is the symbol's
                    if types is not None and type_byte not in types:
                        continue
                    fields = by_byte[type_byte[0]].to_dict(raw)
                    record = {"type": fields.pop("type"), "timestamp": fields.pop("timestamp"),
                              "stock_locate": fields.pop("stock_locate"),
                              "tracking_number": fields.pop("tracking_number")}
                    record.update(fields)
                    out.write(json.dumps(record))
                    out.write("\n")
                out.flush()
                return 0
            return _stats(args, reader, by_byte, stock_index, time, json)
    except WireFormatError as exc:
        sys.stdout.flush()
        print(f"appliance itch: {args.file}: bad ITCH data at offset {exc.offset}: {exc.reason}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # piped into head: stop quietly, and keep the interpreter's final flush quiet too
        import os
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"appliance itch: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _stats(args, reader, by_byte, stock_index, time, json) -> int:
    per_type = [0] * 256
    per_locate: dict[int, int] = {}
    symbol_of_locate: dict[int, str] = {}
    started = time.perf_counter()
    total = 0
    for raw in reader.iter_raw():
        total += 1
        type_int = raw[0][0]
        per_type[type_int] += 1
        locate = raw[1]
        if locate:
            per_locate[locate] = per_locate.get(locate, 0) + 1
            if locate not in symbol_of_locate:
                index = stock_index[type_int]
                if index is not None:
                    symbol_of_locate[locate] = raw[index].decode("ascii", "replace").rstrip(" ")
    elapsed = time.perf_counter() - started
    rate = total / elapsed if elapsed > 0 else 0.0
    types = {chr(t): n for t, n in enumerate(per_type) if n}
    symbols: dict[str, int] = {}
    for locate, n in per_locate.items():
        name = symbol_of_locate.get(locate, f"locate {locate}")
        symbols[name] = symbols.get(name, 0) + n
    ranked = sorted(symbols.items(), key=lambda item: (-item[1], item[0]))
    if args.top:
        ranked = ranked[:args.top]
    if args.json:
        print(json.dumps({"messages": total, "seconds": elapsed, "msgs_per_s": rate,
                          "bytes": reader.bytes_consumed, "per_type": types, "per_symbol": dict(ranked)}))
        return 0
    print(f"{total} messages, {reader.bytes_consumed} bytes, decoded in {elapsed:.3f} s: {rate:,.0f} msg/s")
    print()
    print(f"{'type':<5} {'message':<34} {'count':>12}")
    for code, n in sorted(types.items(), key=lambda item: -item[1]):
        print(f"{code:<5} {by_byte[ord(code)].name:<34} {n:>12}")
    print()
    print(f"{'symbol':<12} {'count':>12}   ({len(symbols)} symbols{', top ' + str(args.top) if args.top and len(symbols) > args.top else ''})")
    for name, n in ranked:
        print(f"{name:<12} {n:>12}")
    return 0
