"""``appliance layout check|show [FILE]``: validate a layout, or print what it computes."""
from __future__ import annotations

import argparse
import sys

DEFAULT_LAYOUT = "shm_layout.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check", "show"), help="check: validate only; show: print offsets")
    parser.add_argument("file", nargs="?", default=DEFAULT_LAYOUT, help=f"layout file (default {DEFAULT_LAYOUT})")


def run(args: argparse.Namespace) -> int:
    from appliance.runtime.layout import LayoutError, load_layout

    try:
        layout = load_layout(args.file)
    except LayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in layout.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.action == "check":
        print(f"{args.file}: ok (version {layout.version}, profile {layout.profile}, hash {layout.hash_hex[:16]})")
        return 0
    print(f"layout {layout.name} version {layout.version} profile {layout.profile} hash {layout.hash_hex}")
    for seg in layout.segments.values():
        print(f"segment {seg.name:<12} /dev/shm/{seg.shm_name:<24} {seg.size:>12} bytes  backing {seg.backing}  "
              f"mode {seg.mode:04o}")
    for table in layout.tables.values():
        print(f"table   {table.name:<12} {table.kind:<10} segment {table.segment:<8} offset {table.offset:>10}  "
              f"{table.slots} x {table.slot_size} B")
    for ring in layout.rings.values():
        print(f"ring    {ring.name:<20} {ring.producer:>10} -> {ring.consumer:<10} {ring.message:<16} segment "
              f"{ring.segment:<8} offset {ring.offset:>10}  {ring.capacity} x {ring.slot_size} B")
    for sid, symbol in enumerate(layout.symbols):
        instrument = layout.instruments.by_id(sid) if layout.instruments is not None else None
        facts = "" if instrument is None else (
            f"  tick {_dollars(instrument.tick)} round lot {instrument.round_lot} band {_dollars(instrument.min_price)}"
            f"..{_dollars(instrument.max_price)}" + (f" reference {_dollars(instrument.reference_price)}"
                                                    if instrument.reference_price else "")
            + f"  ({layout.instruments.where(instrument)})")
        print(f"symbol  {sid:<3} {symbol:<8}{facts}")
    for proc in layout.processes.values():
        cpu = "-" if proc.cpu is None else proc.cpu
        print(f"process {proc.name:<12} cpu {cpu!s:<3} idle {proc.idle.strategy:<9} sched {proc.scheduling.policy}"
              f"{'/' + str(proc.scheduling.priority) if proc.scheduling.policy == 'fifo' else ''}  {proc.agent}")
    return 0


def _dollars(units: int) -> str:
    return f"{units // 10_000}.{units % 10_000:04d}"
