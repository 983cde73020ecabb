"""What ``appliance status`` and the live status line show, read from shared memory (read-only).

Works whether or not the supervisor answers: the process table, the control words, the
positions and market-state tables and the counters are all in the segment.
"""
from __future__ import annotations

import time

from appliance.messages.codes import PRICE_SCALE, ClockState, FeedStaleReason, GateReason, RiskState, name_of
from appliance.oms import latency, replication_status
from appliance.runtime.market_state import describe_problems, view_problem
from appliance.runtime.seqlock import TornRead

from . import takeover_status


def build_status(layout, memory) -> dict:
    now_mono = time.monotonic_ns()
    table = memory.process_table()
    processes = {}
    for name in layout.processes:
        r = table.read(name)
        age = r.heartbeat_age_ns(now_mono)
        processes[name] = {"pid": r.pid, "state": r.state.name, "cpu": r.cpu,
                           "heartbeat_age_ms": None if age is None else round(age / 1e6, 3),
                           "max_duty_us": round(r.max_duty_ns / 1e3, 1)}
    kinds = {t.kind for t in layout.tables.values()}
    if "control" in kinds:
        words = memory.control().snapshot()
    else:                                   # an older or partial layout: nothing to say about these
        from appliance.runtime.control import ControlWords
        words = dict.fromkeys(ControlWords.NAMES, 0)
    reasons = GateReason(words["gate_reasons"])
    status = {
        "layout": layout.path,
        "gate": {"open": bool(words["gate_open"]),
                 "reasons": [r.name for r in GateReason if reasons & r]},
        "clock": {"state": name_of(ClockState, words["clock_state"]), "offset_ns": words["clock_offset_ns"],
                  "maxerror_ns": words["clock_maxerror_ns"]},
        "risk": {"state": name_of(RiskState, words["risk_state"]), "ready": bool(words["risk_ready"]),
                 "kill_latched": bool(words["risk_kill_latched"])},
        "oms": {"ready": bool(words["oms_ready"]), "session_up": bool(words["oms_session_up"]),
                "open_orders": words["oms_open_orders"]},
        "feed": {"ready": bool(words["feed_ready"]),
                 "stale_reason": FeedStaleReason.describe(words.get("feed_stale_reason", 0))},
        "processes": processes,
    }
    symbols = {}
    problems = {}               # symbol -> why its book is bad (good books left out)
    totals = {"orders_sent": 0, "fills": 0, "filled_shares": 0, "rejects": 0, "realized_pnl": 0.0,
              "unrealized_pnl": 0.0, "pnl": 0.0}
    if "positions" in kinds and "market_state" in kinds:
        positions, market = memory.positions_reader(), memory.market_state_reader()
        for sid, symbol in enumerate(layout.symbols):
            p, m = _read(positions, sid), _read(market, sid)
            problem = "unreadable" if m is None else view_problem(m, words.get("feed_stale_reason", 0))
            if problem:
                problems[symbol] = problem
            if p is None or m is None:          # its writer died mid-write; its restart rewrites the slot
                symbols[symbol] = {"position": None if p is None else p.position,
                                   "book": "unreadable (its writer died mid-write)" if m is None else
                                   ",".join(m.flag_names) or "live",
                                   "unreadable": [name for name, v in (("positions", p), ("market_state", m))
                                                  if v is None]}
                continue
            mark, old = m.mark              # only from a good book; else the last good one, flagged old
            unrealized = p.unrealized_pnl(mark) / PRICE_SCALE
            realized = p.realized_pnl / PRICE_SCALE
            symbols[symbol] = {"position": p.position, "orders_sent": p.orders_sent, "fills": p.fills,
                               "filled_shares": p.filled_shares, "rejects": p.rejects, "open_orders": p.open_orders,
                               "realized_pnl": realized, "unrealized_pnl": unrealized,
                               "pnl": realized + unrealized,
                               "bid": m.bid_price / PRICE_SCALE, "ask": m.ask_price / PRICE_SCALE,
                               "mark": mark / PRICE_SCALE, "mark_old": old,
                               "book": ",".join(m.flag_names) or "live", "problem": problem}
            for key in ("orders_sent", "fills", "filled_shares", "rejects"):
                totals[key] += getattr(p, key)
            totals["realized_pnl"] += realized
            totals["unrealized_pnl"] += unrealized
            totals["pnl"] += realized + unrealized
    status["symbols"] = symbols
    status["market_data"] = {"problems": problems, "summary": describe_problems(problems)}
    status["totals"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in totals.items()}
    counters = memory.counters_reader().by_label()
    status["tick_to_trade"] = latency.summary(counters)
    dropcopy = {label[len("dropcopy."):]: value for label, value in counters.items() if label.startswith("dropcopy.")}
    if dropcopy:                            # the drop copy runs (its counters are allocated when it starts)
        status["dropcopy"] = dropcopy
    replication = replication_status.summary(counters)
    if replication:                         # the OMS replicates its journal (issue 18): its standby, its lag
        status["oms"]["replication"] = replication
    takeover = takeover_status.summary(counters)
    if takeover:                            # the supervisor has a hot standby for the OMS: its takeovers
        status["oms"]["takeover"] = takeover
    return status


def _read(table, sid: int):
    try:
        return table.read(sid)
    except TornRead:
        return None


def one_line(status: dict) -> str:
    gate = "OPEN" if status["gate"]["open"] else "CLOSED(" + ",".join(r.lower() for r in status["gate"]["reasons"]) + ")"
    t = status["totals"]
    positions = " ".join(f"{s}{v['position']:+d}" if v["position"] is not None else f"{s}?"
                         for s, v in status["symbols"].items() if v["position"] != 0)
    old = [s for s, v in status["symbols"].items() if v.get("mark_old") and v["position"]]
    line = (f"gate {gate} | orders {t['orders_sent']} fills {t['fills']} rejects {t['rejects']} | "
            f"pos {positions or 'flat'} | P&L {t['pnl']:+.2f}")
    if old:                                 # marked at the last good price: the books cannot be believed
        line += f" (old mark {' '.join(old[:5])}{f' +{len(old) - 5} more' if len(old) > 5 else ''})"
    market = status.get("market_data", {}).get("summary")
    if market:
        line += f" | market data {market}"
    t2t = status.get("tick_to_trade", {}).get("tick_to_trade")
    if t2t and t2t.get("count"):
        line += f" | t2t p50 {t2t['p50_ns'] / 1000:.0f}us p99 {t2t['p99_ns'] / 1000:.0f}us"
    replication = status.get("oms", {}).get("replication")
    if replication:
        line += " | " + replication_status.one_line(replication)
    takeover = status.get("oms", {}).get("takeover")
    if takeover:
        line += " | " + takeover_status.one_line(takeover)
    dropcopy = status.get("dropcopy")
    if dropcopy:
        line += (f" | drop copy {'up' if dropcopy.get('connected') else 'NATS DOWN'} lag "
                 f"{dropcopy.get('lag_records', 0)} rec {dropcopy.get('lag_us', 0) / 1000:.1f} ms")
        if dropcopy.get("hub_silent"):      # the firm's risk hub not heard: the layout's on_silence applies
            line += " | RISK HUB SILENT"
    return line
