"""``appliance top`` / ``tools/shmtop``: a live view over a running appliance's shared memory (after AeronStat).

Read-only and lock-free: it maps the segments with PROT_READ and never writes.
Shows rings, processes, the trading gate and why it is closed, the clock guard,
readiness and the kill switch, which books are bad and why (MARKET), the OMS's hot standby
(STANDBY) and its last takeover (TAKEOVER), tick-to-trade
percentiles per hop, per-symbol position, P&L (marked only from good books; "old
mark" when a bad book's last good price is used) and book top, and every counter
(each part the layout has).
``--once`` prints one plain-text snapshot, ``--json`` one JSON object; without
either it refreshes in the terminal until ``q``. Keys: ``s`` cycles the sort
(name; depth: rings by depth, symbols by size of position; rate: rings by
messages in; pnl: symbols by P&L, worst first), ``/`` starts a filter on ring,
process, hop, symbol and counter names (Enter to apply, empty to clear; the
``lat.*`` counters behind the latency table are listed only when the filter
starts with ``lat.``), arrows, j/k, space and PgUp/PgDn scroll, ``q`` quits.

Exit status: 0 ok, 1 no appliance running or its layout differs, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from appliance.command_io.arguments import bounded
from appliance.oms import replication_status
from appliance.supervisor import takeover_status

DEFAULT_LAYOUT = "shm_layout.yaml"
BAR_WIDTH = 20
SORTS = ("name", "depth", "rate", "pnl")
LATENCY_PREFIX = "lat."          # the OMS's histogram counters: shown as the TICK-TO-TRADE table


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
    lines += _render_trading(snap)
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
    lines += _render_latency(snap, needle)
    lines += _render_symbols(snap, sort, needle)
    counters = {k: v for k, v in snap.counters.items() if _matches(k, needle)
                and (not k.startswith(LATENCY_PREFIX) or needle.lower().startswith(LATENCY_PREFIX))}
    if counters:
        lines.append("")
        lines.append("COUNTERS")
        for label in sorted(counters):
            lines.append(f"  {label:<44} {counters[label]:>16,}")
    return lines


def _yes(flag: bool, yes: str = "ready", no: str = "NOT READY") -> str:
    return yes if flag else no


def _us(ns) -> str:
    return "-" if ns is None else f"{ns / 1e3:,.1f}"


def _ago(epoch_ns: int, now_ns: int) -> str:
    return "never" if not epoch_ns else f"{max(0, now_ns - epoch_ns) / 1e9:,.1f} s ago"


def _render_trading(snap) -> list[str]:
    """The gate and why, the clock guard, readiness and the kill switch (layouts with a control table)."""
    t = snap.trading
    if t is None:
        return []
    if "error" in t:
        return ["", f"CONTROL  unreadable: {t['error']}"]
    gate, clock, risk, oms = t["gate"], t["clock"], t["risk"], t["oms"]
    state = "OPEN" if gate["open"] else "CLOSED: " + (", ".join(r.lower() for r in gate["reasons"]) or "?")
    lines = ["", f"GATE     {state}  (epoch {gate['epoch']}, changed {_ago(gate['changed_ns'], snap.taken_ns)})"]
    lines.append(f"CLOCK    {clock['state'].lower()}  offset {clock['offset_ns'] / 1e3:+,.3f} us  "
                 f"maxerror {clock['maxerror_ns'] / 1e3:,.3f} us  checked {_ago(clock['checked_ns'], snap.taken_ns)}")
    lines.append(f"RISK     {risk['state'].lower()}  {_yes(risk['ready'])}  kill switch "
                 f"{'LATCHED' if risk['kill_latched'] else 'off'}   "
                 f"OMS {_yes(oms['ready'])}  session {'up' if oms['session_up'] else 'DOWN'}  "
                 f"open orders {oms['open_orders']}  cancel-alls {oms['cancel_all_epoch']}   "
                 f"FEED {_yes(t['feed']['ready'])}"
                 f"{'' if t['feed'].get('stale_reason', 'live') == 'live' else ' (' + t['feed']['stale_reason'] + ')'}"
                 f"   STRATEGY {_yes(t['strategy']['ready'])}")
    market = t.get("market_data", {}).get("summary")
    if market:
        lines.append(f"MARKET   {market}")
    replication = oms.get("replication")
    if replication:                          # the OMS replicates its journal to a hot standby
        lines.append(f"STANDBY  {replication_status.one_line(replication)}  acked {replication.get('acked_sequence', 0)}"
                     f"  ack rtt {replication['ack_rtt_us']:,.1f} us  disconnects {replication.get('disconnects', 0)}"
                     f"  ack timeouts {replication.get('ack_timeouts', 0)}")
    takeover = oms.get("takeover")
    if takeover:                             # the supervisor has a hot standby for the OMS
        lines.append(f"TAKEOVER {takeover_status.one_line(takeover)}")
    return lines


def _render_latency(snap, needle: str) -> list[str]:
    hops = {hop: row for hop, row in snap.tick_to_trade.items() if _matches(hop, needle)}
    if not hops:
        return []
    lines = ["", f"{'TICK-TO-TRADE':<16} {'COUNT':>12} {'MEAN us':>10} {'P50 us':>10} {'P90 us':>10} {'P99 us':>10} {'MAX us':>10}"]
    for hop, row in hops.items():
        lines.append(f"{hop:<16} {row.get('count') or 0:>12,} {_us(row.get('mean_ns')):>10} "
                     f"{_us(row.get('p50_ns')):>10} {_us(row.get('p90_ns')):>10} {_us(row.get('p99_ns')):>10} {_us(row.get('max_ns')):>10}")
    return lines


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _render_symbols(snap, sort: str, needle: str) -> list[str]:
    symbols = [v for v in snap.symbols if _matches(v.symbol, needle)]
    if not symbols:
        return []
    if sort == "depth":
        symbols.sort(key=lambda v: -abs(v.position or 0))
    elif sort == "pnl":
        symbols.sort(key=lambda v: v.pnl if v.pnl is not None else 0.0)
    lines = ["", f"{'SYMBOL':<8} {'POS':>8} {'AVG PX':>10} {'REALIZED':>11} {'UNREALIZED':>11} {'P&L':>11} "
                 f"{'ORDERS':>7} {'FILLS':>6} {'REJ':>5} {'OPEN':>5} {'BID':>19} {'ASK':>19} {'LAST':>10}  BOOK"]
    for v in symbols:
        if v.error:
            lines.append(f"{v.symbol:<8} unreadable: {v.error}")
            continue
        bid = "-" if v.bid is None else (f"{v.bid_shares:,} x {v.bid:.4f}" if v.bid else "none")
        ask = "-" if v.ask is None else (f"{v.ask:.4f} x {v.ask_shares:,}" if v.ask else "none")
        book = "-" if v.flags is None else (",".join(v.flags) or "live")
        if v.problem and v.problem not in (v.flags or ()):         # the flags say it already
            book += f" ({v.problem})"
        if v.mark_old and v.position:
            book += f", old mark {v.mark:.4f}" if v.mark else ", no mark"
        lines.append(f"{v.symbol:<8} {_cell(v.position, '+,d'):>8} {_cell(v.average_price, '.4f'):>10} "
                     f"{_cell(v.realized_pnl, '+,.2f'):>11} {_cell(v.unrealized_pnl, '+,.2f'):>11} "
                     f"{_cell(v.pnl, '+,.2f'):>11} {_cell(v.orders_sent, ','):>7} {_cell(v.fills, ','):>6} "
                     f"{_cell(v.rejects, ','):>5} {_cell(v.open_orders, ','):>5} {bid:>19} {ask:>19} "
                     f"{_cell(v.last, '.4f'):>10}  {book}")
    return lines


# --------------------------------------------------------------------------- live

def _follow_terminal_size(curses) -> None:
    """Resize to the terminal's real size: a pane sized just after start (tmux) may never send
    the SIGWINCH curses waits for."""
    try:
        size = os.get_terminal_size(sys.__stdout__.fileno())
    except (OSError, ValueError, AttributeError):
        return
    if curses.is_term_resized(size.lines, size.columns):
        curses.resizeterm(size.lines, size.columns)


def _live(observer, interval: float) -> int:
    import curses

    def main(screen) -> int:
        curses.curs_set(0)
        screen.timeout(int(interval * 1000))
        sort, needle, typing, top = 0, "", None, 0
        while True:
            snap = observer.snapshot()
            lines = render(snap, SORTS[sort], needle)
            replaced = observer.replaced()
            if replaced:
                lines.insert(0, f"!! {replaced}: these are its last values; restart shmtop")
            _follow_terminal_size(curses)
            screen.erase()
            height, width = screen.getmaxyx()
            top = max(0, min(top, len(lines) - (height - 1)))
            status = (f"q quit  s sort ({SORTS[sort]})  / filter" + (f" [{needle}]" if needle else "")
                      + (f"  filter: {typing}_" if typing is not None else "")
                      + (f"  rows {top + 1}-{min(len(lines), top + height - 1)} of {len(lines)}"
                         if len(lines) > height - 1 else ""))
            for row, line in enumerate(lines[top:top + height - 1]):
                screen.addnstr(row, 0, line, width - 1)
            screen.addnstr(height - 1, 0, status, width - 1, curses.A_REVERSE)
            screen.refresh()
            key = screen.getch()
            page = max(1, height - 2)
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
            elif key in (curses.KEY_DOWN, ord("j")):
                top += 1
            elif key in (curses.KEY_UP, ord("k")):
                top = max(0, top - 1)
            elif key in (curses.KEY_NPAGE, ord(" ")):
                top += page
            elif key == curses.KEY_PPAGE:
                top = max(0, top - page)

    try:
        return curses.wrapper(main)
    except KeyboardInterrupt:
        return 0
