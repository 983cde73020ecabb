"""``appliance status | down | kill | resume | reduce | activate | close-gate | open-gate |
reload-limits | failover``: talk to a running appliance.

``status`` reads shared memory directly (read-only), so it answers even when the supervisor
does not; the others go through the supervisor's control socket (which logs each with the
operator's name) and then wait, reading shared memory, until the outcome shows or ``--timeout``
passes. Exit status: 0 done, 1 the appliance refused, did not do it in time, or is not running,
2 a bad command line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from appliance.messages.codes import GateReason, RiskState

from .up import wait_for


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default="shm_layout.yaml", help="the layout (default ./shm_layout.yaml)")
    parser.add_argument("--socket", help="the supervisor's control socket (default: from the layout)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the outcome")


def _socket_path(args, layout) -> str:
    from .config import layout_control_socket
    return args.socket or layout_control_socket(layout)


def _load(args):
    from appliance.runtime.layout import LayoutError, load_layout
    try:
        return load_layout(args.layout)
    except (LayoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _ask(args, layout, request: dict) -> dict | None:
    from appliance.command_io.json_lines import request_json
    path = _socket_path(args, layout)
    try:
        return request_json(path, request, args.timeout, "the supervisor")
    except (OSError, ValueError) as exc:
        print(f"error: no appliance answering on {path} ({exc}); is it up?", file=sys.stderr)
        return None


def _attach(layout):
    from appliance.runtime.memory import SharedMemory
    from appliance.runtime.segment import SegmentError
    try:
        return SharedMemory.attach(layout, writable=False)
    except (SegmentError, OSError) as exc:
        print(f"error: no running appliance for {layout.path}: {exc}", file=sys.stderr)
        return None


def _wait_word(memory, predicate, timeout: float) -> bool:
    control = memory.control()
    return wait_for(lambda: predicate(control), timeout, 0.05)


def _send(args, request: dict):
    """Load the layout and send ``request`` to its supervisor: the layout when it said ok, else None
    (after saying why)."""
    layout = _load(args)
    if layout is None:
        return None
    answer = _ask(args, layout, request)
    if not answer or not answer.get("ok"):
        if answer:
            print(f"error: {answer.get('error', 'refused')}", file=sys.stderr)
        return None
    return layout


# ---------------------------------------------------------------- status

class status:  # noqa: N801 - a subcommand module-like namespace
    @staticmethod
    def add_arguments(parser):
        _common(parser)
        parser.add_argument("--json", action="store_true", help="one JSON object")

    @staticmethod
    def run(args) -> int:
        from .status import build_status
        layout = _load(args)
        if layout is None:
            return 1
        memory = _attach(layout)
        if memory is None:
            return 1
        try:
            report = build_status(layout, memory)
        finally:
            memory.close()
        answer = _ask(argparse.Namespace(**{**vars(args), "timeout": 2.0}), layout, {"command": "status"}) \
            if not args.json else None
        if args.json:
            print(json.dumps(report, indent=1))
            return 0
        print(render(report, answer.get("supervisor") if answer and answer.get("ok") else None))
        return 0


def _old_mark(v: dict) -> str:
    """A held position's mark when its book is bad: the last good price (or none ever seen)."""
    if not (v.get("mark_old") and v["position"]):
        return ""
    return f" (old mark {v['mark']:.2f})" if v["mark"] else " (no mark)"


def _standby_lines(oms: dict) -> list[str]:
    """The OMS's hot standby and its last takeover, when it has one (the same words as the status line)."""
    from appliance.oms import replication_status
    from . import takeover_status
    lines = []
    if oms.get("replication"):
        lines.append(f"replication: {replication_status.one_line(oms['replication'])}")
    if oms.get("takeover"):
        lines.append(f"takeover: {takeover_status.one_line(oms['takeover'])}")
    return lines


def render(s: dict, supervisor: dict | None) -> str:
    lines = [f"gate: {'OPEN' if s['gate']['open'] else 'CLOSED'}"
             + ("" if s["gate"]["open"] else f" ({', '.join(r.lower() for r in s['gate']['reasons'])})"),
             f"clock: {s['clock']['state']} offset {s['clock']['offset_ns']} ns",
             f"risk: {s['risk']['state']}{' (kill switch latched)' if s['risk']['kill_latched'] else ''}, "
             f"ready {s['risk']['ready']}; oms: ready {s['oms']['ready']}, session "
             f"{'up' if s['oms']['session_up'] else 'down'}, {s['oms']['open_orders']} open orders; "
             f"feed: {'live' if s['feed']['ready'] else 'not ready'}"
             f"{'' if s['feed'].get('stale_reason', 'live') == 'live' else ' (' + s['feed']['stale_reason'] + ')'}",
             *([f"market data: {s['market_data']['summary']}"] if s.get("market_data", {}).get("summary") else []),
             *(["standby: this box's OMS is the hot standby of the primary on another box, which trades; it takes "
                "over when that primary's stream goes silent"] if "STANDBY" in s["gate"]["reasons"] else []),
             *_standby_lines(s["oms"]),
             "", f"{'process':<11}{'pid':>8}  {'state':<9}{'heartbeat':>12}{'max duty':>11}  restarts"]
    for name, p in s["processes"].items():
        age = "-" if p["heartbeat_age_ms"] is None else f"{p['heartbeat_age_ms']:.1f} ms"
        restarts = ""
        if supervisor and name in supervisor.get("children", {}):
            restarts = str(supervisor["children"][name]["restarts"])
        lines.append(f"{name:<11}{p['pid']:>8}  {p['state']:<9}{age:>12}{p['max_duty_us']:>9.0f}us  {restarts}")
    if s["symbols"]:
        lines += ["", f"{'symbol':<8}{'position':>9}{'orders':>8}{'fills':>7}{'rejects':>8}{'open':>6}"
                      f"{'P&L':>12}  book"]
        for symbol, v in s["symbols"].items():
            if v.get("unreadable"):
                lines.append(f"{symbol:<8}  {' and '.join(v['unreadable'])} unreadable: its writer died mid-write "
                             f"(rewritten when it restarts)")
                continue
            lines.append(f"{symbol:<8}{v['position']:>+9d}{v['orders_sent']:>8}{v['fills']:>7}{v['rejects']:>8}"
                         f"{v['open_orders']:>6}{v['pnl']:>+12.2f}  {v['book']}"
                         f"{_old_mark(v)}")
        t = s["totals"]
        lines.append(f"{'total':<8}{'':>9}{t['orders_sent']:>8}{t['fills']:>7}{t['rejects']:>8}{'':>6}"
                     f"{t['pnl']:>+12.2f}")
    for hop, v in s.get("tick_to_trade", {}).items():
        if v.get("count"):
            lines.append(f"latency {hop}: p50 {v['p50_ns'] / 1000:.1f} us, p99 {v['p99_ns'] / 1000:.1f} us "
                         f"({v['count']} orders)")
    return "\n".join(lines)


# ---------------------------------------------------------------- down, kill, resume

class down:  # noqa: N801
    @staticmethod
    def add_arguments(parser):
        _common(parser)
        parser.add_argument("--operator", default="", help="who (recorded in the log)")

    @staticmethod
    def run(args) -> int:
        layout = _send(args, {"command": "down", "operator": args.operator})
        if layout is None:
            return 1
        from appliance.runtime.segment import segment_path
        paths = [segment_path(spec) for spec in layout.segments.values()]
        if not wait_for(lambda: not any(os.path.exists(p) for p in paths), args.timeout, 0.1):
            print(f"error: the appliance did not finish stopping within {args.timeout:g} s", file=sys.stderr)
            return 1
        print("appliance down: orders cancelled, processes stopped, segments removed")
        return 0


def _operator_argument(parser, required: bool, what: str) -> None:
    parser.add_argument("--operator", required=required, default="", help=f"who {what} (recorded)")


def _named(args) -> bool:
    if not args.operator.strip():
        print("error: --operator needs a name", file=sys.stderr)
        return False
    return True


def _symbol_argument(parser, what: str) -> None:
    parser.add_argument("--symbol", help=f"{what} one symbol only (default: all)")


def _after(args, request: dict, outcome, done: str, failed: str) -> int:
    """Send ``request``; wait until ``outcome(memory)`` holds; say ``done`` or ``failed``."""
    layout = _send(args, request)
    if layout is None:
        return 1
    memory = _attach(layout)
    if memory is None:
        return 1
    try:
        ok = wait_for(lambda: outcome(memory), args.timeout, 0.05)
    finally:
        memory.close()
    print(done if ok else f"error: {failed}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _counters(layout) -> dict | None:
    memory = _attach(layout)
    if memory is None:
        return None
    try:
        return memory.counters_reader().by_label()
    finally:
        memory.close()


def _symbol_open_orders(memory, symbol_id: int) -> int:
    return memory.positions_reader().read(symbol_id).open_orders


def _symbol_killed(memory, symbol: str) -> bool:
    return memory.counters_reader().by_label().get(f"risk.symbol_killed.{symbol}", 0) == 1


class kill:  # noqa: N801
    @staticmethod
    def add_arguments(parser):
        _common(parser)
        _operator_argument(parser, False, "pulled it")
        _symbol_argument(parser, "halt and cancel")

    @staticmethod
    def run(args) -> int:
        if args.symbol:
            return kill._symbol(args)
        layout = _send(args, {"command": "kill", "operator": args.operator})
        if layout is None:
            return 1
        memory = _attach(layout)
        if memory is None:
            return 1
        try:
            latched = _wait_word(memory, lambda c: c.get("risk_kill_latched") == 1, args.timeout)
            flat = _wait_word(memory, lambda c: c.get("oms_open_orders") == 0, args.timeout)
            open_orders = memory.control().get("oms_open_orders")
        finally:
            memory.close()
        if not latched:
            print("error: the kill switch did not latch (is risk alive?)", file=sys.stderr)
            return 1
        print("kill switch latched: trading HALTED" + ("; every open order cancelled" if flat else
                                                       f"; {open_orders} orders still open"))
        print("resume with: appliance resume --operator NAME")
        return 0 if flat else 1

    @staticmethod
    def _symbol(args) -> int:
        layout = _load(args)
        if layout is None:
            return 1
        if args.symbol not in layout.symbols:
            print(f"error: unknown symbol {args.symbol!r} (the layout's: {', '.join(layout.symbols)})", file=sys.stderr)
            return 2
        symbol_id = list(layout.symbols).index(args.symbol)
        return _after(args, {"command": "kill", "operator": args.operator, "symbol": args.symbol},
                      lambda m: _symbol_killed(m, args.symbol) and _symbol_open_orders(m, symbol_id) == 0,
                      f"kill switch latched for {args.symbol}: no new order in it, every open order cancelled\n"
                      f"resume with: appliance resume --symbol {args.symbol} --operator NAME",
                      f"{args.symbol}: not latched with no open orders within {args.timeout:g} s (is risk alive?)")


class resume:  # noqa: N801
    @staticmethod
    def add_arguments(parser):
        _common(parser)
        _operator_argument(parser, True, "resets the kill switch")
        _symbol_argument(parser, "reset")

    @staticmethod
    def run(args) -> int:
        if not _named(args):
            return 2
        if args.symbol:
            return _after(args, {"command": "resume", "operator": args.operator, "symbol": args.symbol},
                          lambda m: not _symbol_killed(m, args.symbol),
                          f"kill switch for {args.symbol} reset by {args.operator}",
                          f"the kill switch for {args.symbol} is still latched")
        return _after(args, {"command": "resume", "operator": args.operator},
                      lambda m: m.control().get("risk_kill_latched") == 0,
                      f"kill switch reset by {args.operator}; the gate reopens when nothing else holds it",
                      "the kill switch is still latched")


def _named_command(command: str, outcome, done: str, failed: str):
    """A subcommand that needs ``--operator``: send ``command``, then wait until ``outcome(memory)``
    holds; ``done`` may name ``{operator}``."""
    class named:  # noqa: N801
        @staticmethod
        def add_arguments(parser):
            _common(parser)
            _operator_argument(parser, True, "asks for it")

        @staticmethod
        def run(args) -> int:
            if not _named(args):
                return 2
            return _after(args, {"command": command, "operator": args.operator}, outcome,
                          done.format(operator=args.operator), failed)
    return named


reduce = _named_command(
    "reduce", lambda m: m.control().get("risk_state") == RiskState.REDUCING,
    "risk REDUCING (by {operator}): only orders that shrink a position pass",
    "risk is not REDUCING (a latched kill switch needs `appliance resume` first)")
activate = _named_command(
    "activate", lambda m: m.control().get("risk_state") == RiskState.ACTIVE, "risk ACTIVE (by {operator})",
    "risk is not ACTIVE (a latched kill switch needs `appliance resume` first)")
close_gate = _named_command(
    "close-gate", lambda m: bool(m.control().gate().reasons & GateReason.OPERATOR),
    "gate closed by {operator}: no new order leaves, cancels still do",
    "the gate did not change (is the supervisor running?)")
open_gate = _named_command(
    "open-gate", lambda m: not m.control().gate().reasons & GateReason.OPERATOR,
    "operator hold on the gate lifted by {operator}; it opens when nothing else holds it",
    "the gate did not change (is the supervisor running?)")


class reload_limits:  # noqa: N801
    @staticmethod
    def add_arguments(parser):
        _common(parser)
        _operator_argument(parser, False, "asks for it")

    @staticmethod
    def run(args) -> int:
        """The file is checked here first (file:line, key, reason); risk checks it again and keeps
        its old limits when it cannot use the new ones."""
        from appliance.risk.agent import parse_params
        from appliance.risk.limits import LimitsError, load_limits
        from appliance.runtime.layout import LayoutError
        layout = _load(args)
        if layout is None:
            return 1
        spec = layout.processes.get("risk")
        try:
            path = parse_params(spec.params if spec else {}, layout.path, "processes.risk.params")["limits"]
            limits = load_limits(path, layout.symbols, instruments=layout.instruments)
        except (LimitsError, LayoutError, OSError) as exc:
            print(f"error: {exc}; nothing sent, risk keeps its limits", file=sys.stderr)
            return 1
        before = _counters(layout)
        if before is None:
            return 1
        outcomes = ("risk.limits_reloaded", "risk.limits_reload_failed")

        def answered(m) -> bool:
            now = m.counters_reader().by_label()
            return any(now.get(k, 0) > before.get(k, 0) for k in outcomes)
        code = _after(args, {"command": "reload-limits", "operator": args.operator}, answered,
                      f"limits from {path} sent to risk (crc32 {limits.digest:08x})", "risk did not answer")
        if code == 0:
            after = _counters(layout)
            if after is None:
                return 1
            if after.get(outcomes[1], 0) > before.get(outcomes[1], 0):
                print("error: risk refused the new limits and keeps its old ones (see its log)", file=sys.stderr)
                return 1
            print("risk reloaded them")
        return code


class failover:  # noqa: N801
    """``appliance failover --operator NAME``: a planned switch to the OMS's hot standby (``standby.py``):
    the OMS stops (it logs out), the standby takes over; done when the standby runs as the OMS and the
    gate no longer says TAKEOVER."""

    @staticmethod
    def add_arguments(parser):
        _common(parser)
        _operator_argument(parser, True, "asks for the switch")

    @staticmethod
    def run(args) -> int:
        if not _named(args):
            return 2
        layout = _load(args)
        if layout is None:
            return 1
        answer = _ask(args, layout, {"command": "failover", "operator": args.operator})
        if not answer or not answer.get("ok"):
            if answer:
                print(f"error: {answer.get('error', 'refused')}", file=sys.stderr)
            return 1
        memory = _attach(layout)
        if memory is None:
            return 1
        standby = answer["standby"]
        from appliance.runtime.counters import ProcessState
        table = memory.process_table()

        def switched() -> bool:
            record = table.read("oms")
            return (record.pid == standby and record.state is ProcessState.RUNNING
                    and not memory.control().gate().reasons & GateReason.TAKEOVER)
        try:
            ok = wait_for(switched, args.timeout, 0.02)
        finally:
            memory.close()
        if ok:
            print(f"failover by {args.operator}: the standby (pid {standby}) is the OMS, pid {answer['stopping']} "
                  f"stopped")
            return 0
        print(f"error: the standby (pid {standby}) is not the ready OMS after {args.timeout:g} s "
              f"(appliance status says why)", file=sys.stderr)
        return 1
