"""``appliance top`` / ``tools/shmtop``: a live view over a running appliance's shared memory (after AeronStat).

Read-only and lock-free: it maps the segments with PROT_READ and never writes.
``--once`` prints one plain-text snapshot, ``--json`` one JSON object; without
either it refreshes in the terminal until ``q``. Keys: ``s`` cycles the ring
sort (name, depth, rate), ``/`` starts a filter on ring, process and counter
names (Enter to apply, empty to clear), ``q`` quits.

Exit status: 0 ok, 1 no appliance running or its layout differs, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from appliance.cli import bounded

DEFAULT_LAYOUT = "shm_layout.yaml"
BAR_WIDTH = 20
SORTS = ("name", "depth", "rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default=DEFAULT_LAYOUT, help=f"layout file (default {DEFAULT_LAYOUT})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="print one plain-text snapshot and exit")
    mode.add_argument("--json", action="store_true", help="print one JSON snapshot and exit")
    parser.add_argument("--interval", type=bounded(float, 0.05, 3600, " seconds"), default=1.0,
                        help="seconds between refreshes; --once/--json sample twice this far apart for rates "
                             "(default 1.0)")


def run(args: argparse.Namespace) -> int:
    from appliance.ops.snapshot import Observer
    from appliance.runtime.layout import LayoutError, load_layout
    from appliance.runtime.segment import SegmentError

    try:
        layout = load_layout(args.layout)
    except LayoutError as exc:
        print(f"shmtop: {exc}", file=sys.stderr)
        return 1
    try:
        observer = Observer(layout)
    except SegmentError as exc:
        reason = str(exc)
        if "does not exist" in reason:
            print(f"shmtop: no appliance running for layout {layout.name!r} ({args.layout}): {reason}",
                  file=sys.stderr)
        else:
            print(f"shmtop: {reason}", file=sys.stderr)
        return 1
    try:
        if args.once or args.json:
            observer.snapshot()
            time.sleep(args.interval)            # the second sample gives the rates
            snap = observer.snapshot()
            if args.json:
                json.dump(snap.as_dict(), sys.stdout, indent=2)
                print()
            else:
                print("\n".join(render(snap)))
            return 0
        return _live(observer, args.interval)
    finally:
        observer.close()


# --------------------------------------------------------------------------- text

def _bar(depth: int, capacity: int) -> str:
    filled = min(BAR_WIDTH, round(BAR_WIDTH * depth / capacity)) if capacity else 0
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _matches(text: str, needle: str) -> bool:
    return not needle or needle.lower() in text.lower()


def render(snap, sort: str = "name", needle: str = "") -> list[str]:
    """The snapshot as lines of text (shared by --once and the live view)."""
    lines = [f"appliance layout {snap.layout} v{snap.layout_version} hash {snap.layout_hash[:12]}  "
             f"{time.strftime('%H:%M:%S', time.localtime(snap.taken_ns / 1e9))}"]
    for seg in snap.segments:
        lines.append(f"segment {seg.name}: {seg.path} {seg.size // 1024} KiB {seg.backing}, owner pid {seg.creator_pid}")
    lines.append("")
    lines.append(f"{'RING':<18} {'PRODUCER':>10} {'CONSUMER':>10} {'DEPTH':>8} {'':22} {'CAP':>7} "
                 f"{'IN/S':>12} {'OUT/S':>12} {'FULL':>6} {'MAXDEPTH':>8}")
    rings = [r for r in snap.rings if _matches(f"{r.name} {r.producer} {r.consumer}", needle)]
    if sort == "depth":
        rings.sort(key=lambda r: -r.depth)
    elif sort == "rate":
        rings.sort(key=lambda r: -(r.in_per_s or 0))
    for r in rings:
        lines.append(f"{r.name:<18} {r.producer:>10} {r.consumer:>10} {r.depth:>8} {_bar(r.depth, r.capacity):22} "
                     f"{r.capacity:>7} {_rate(r.in_per_s):>12} {_rate(r.out_per_s):>12} {r.full_events:>6} "
                     f"{r.max_depth:>8}")
    lines.append("")
    lines.append(f"{'PROCESS':<12} {'PID':>7} {'STATE':<9} {'CPU':>3} {'IDLE':<9} {'HB AGE ms':>10} "
                 f"{'MAX DUTY us':>11} {'CPU%':>6} {'CTXSW vol/invol':>16}")
    for p in snap.processes:
        if not _matches(p.name, needle):
            continue
        state = p.state if p.alive or p.state in ("absent", "stopped") else f"{p.state}!"   # ! : pid gone
        age = "-" if p.heartbeat_age_ms is None else f"{p.heartbeat_age_ms:,.1f}"
        cpu_pct = "-" if p.cpu_percent is None else f"{p.cpu_percent:.0f}"
        switches = ("-" if p.ctx_switches_voluntary is None
                    else f"{p.ctx_switches_voluntary}/{p.ctx_switches_involuntary}")
        lines.append(f"{p.name:<12} {p.pid or '-':>7} {state:<9} {'-' if p.cpu is None else p.cpu:>3} "
                     f"{p.idle:<9} {age:>10} {p.max_duty_us:>11,.1f} {cpu_pct:>6} {switches:>16}")
    counters = {k: v for k, v in snap.counters.items() if _matches(k, needle)}
    if counters:
        lines.append("")
        lines.append("COUNTERS")
        for label in sorted(counters):
            lines.append(f"  {label:<44} {counters[label]:>16,}")
    return lines


# --------------------------------------------------------------------------- live

def _live(observer, interval: float) -> int:
    import curses

    def main(screen) -> int:
        curses.curs_set(0)
        screen.timeout(int(interval * 1000))
        sort, needle, typing = 0, "", None
        while True:
            snap = observer.snapshot()
            screen.erase()
            height, width = screen.getmaxyx()
            status = (f"q quit  s sort ({SORTS[sort]})  / filter" + (f" [{needle}]" if needle else "")
                      + (f"  filter: {typing}_" if typing is not None else ""))
            for row, line in enumerate(render(snap, SORTS[sort], needle)[:height - 1]):
                screen.addnstr(row, 0, line, width - 1)
            screen.addnstr(height - 1, 0, status, width - 1, curses.A_REVERSE)
            screen.refresh()
            key = screen.getch()
            if typing is not None:
                if key in (curses.KEY_ENTER, 10, 13):
                    needle, typing = typing, None
                elif key == 27:
                    typing = None
                elif key in (curses.KEY_BACKSPACE, 127, 8):
                    typing = typing[:-1]
                elif 32 <= key < 127:
                    typing += chr(key)
            elif key in (ord("q"), ord("Q")):
                return 0
            elif key == ord("s"):
                sort = (sort + 1) % len(SORTS)
            elif key == ord("/"):
                typing = ""

    try:
        return curses.wrapper(main)
    except KeyboardInterrupt:
        return 0
