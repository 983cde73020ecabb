"""The Prometheus metric families of one snapshot: every name the exporter serves is made here.

Conventions (what ``promtool check metrics`` checks): one prefix ``appliance_``, base units
(seconds, dollars), ``_total`` on counters (prometheus_client adds it to a CounterMetricFamily),
a state as one 0/1 series per possible value (``appliance_clock_state{state="healthy"}``), and
the tick-to-trade latencies as real histograms (cumulative ``le`` buckets ending in ``+Inf``,
``_sum``, ``_count``) in seconds. ``FAMILIES`` lists every family name so the dashboard and
alert tests can check that each expression asks for something the exporter emits.
"""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from appliance.messages.codes import ClockState, FeedStaleReason, GateReason, RiskState
from appliance.oms import latency, replication_status
from appliance.runtime.counters import CounterKind, ProcessState
from appliance.runtime.market_state import FLAG_NAMES
from appliance.supervisor import takeover_status

PREFIX = "appliance"
REJECT_SOURCES = {"risk.rejects.": "risk", "oms.rejects.": "oms"}
RESTARTS_PREFIX = "supervisor.restarts."
READY_WORDS = {"feed": "feed_ready", "strategy": "strategy_ready", "risk": "risk_ready", "oms": "oms_ready"}

# name -> (type, help). Counters without their _total suffix (prometheus_client appends it).
FAMILIES: dict[str, tuple[str, str]] = {
    "up": ("gauge", "1 when the appliance's shared memory is attached"),
    "segment_hugepages": ("gauge", "1 when the segment is backed by huge pages"),
    "ring_depth": ("gauge", "messages waiting in the ring"),
    "ring_capacity": ("gauge", "slots in the ring"),
    "ring_max_depth": ("gauge", "highest depth observed"),
    "ring_published": ("counter", "messages published into the ring"),
    "ring_consumed": ("counter", "messages consumed from the ring"),
    "ring_full_events": ("counter", "times the producer found the ring full"),
    "process_up": ("gauge", "1 when the process is running and alive"),
    "process_state": ("gauge", "1 for the process's current state"),
    "process_heartbeat_age_seconds": ("gauge", "time since the last duty cycle"),
    "process_max_duty_cycle_seconds": ("gauge", "longest do_work call"),
    "process_duty_cycles": ("counter", "duty cycles completed"),
    "process_restarts": ("counter", "restarts of the process by the supervisor"),
    "component_events": ("counter", "a counter from the shared-memory table"),
    "component_value": ("gauge", "a gauge or info value from the shared-memory table"),
    "gate_open": ("gauge", "1 when new orders may leave (the trading gate)"),
    "gate_closed_reason": ("gauge", "1 for each reason the trading gate is closed"),
    "gate_changes": ("counter", "changes of the gate's state or reasons"),
    "gate_last_change_timestamp_seconds": ("gauge", "when the gate last changed (Unix time)"),
    "clock_state": ("gauge", "1 for the clock guard's current verdict"),
    "clock_synced": ("gauge", "1 when the clock guard finds the clock within its limit"),
    "clock_offset_seconds": ("gauge", "offset from the reference clock (PTP master offset, 0 from adjtimex)"),
    "clock_maxerror_seconds": ("gauge", "the kernel's or PTP's bound on the clock error"),
    "clock_last_check_timestamp_seconds": ("gauge", "when the clock guard last checked (Unix time)"),
    "component_ready": ("gauge", "1 when the component reports itself ready"),
    "risk_state": ("gauge", "1 for the risk gateway's current trading state"),
    "kill_switch_latched": ("gauge", "1 while the kill switch is latched (only cancels pass)"),
    "oms_session_up": ("gauge", "1 while the OMS is logged in to the venue"),
    "oms_open_orders": ("gauge", "orders open at the venue"),
    "oms_cancel_alls": ("counter", "times the OMS cancelled every open order (gate or kill switch)"),
    "rejects": ("counter", "orders refused, by who refused them and why"),
    "position_shares": ("gauge", "signed position"),
    "position_cost_basis_dollars": ("gauge", "signed cost of the open position"),
    "pnl_realized_dollars": ("gauge", "realized profit and loss"),
    "pnl_unrealized_dollars": ("gauge", "open position marked at a good book's mid or last trade (else its last good mark)"),
    "mark_price_dollars": ("gauge", "the price the position is marked at (0: no mark yet)"),
    "mark_old": ("gauge", "1 while the book is bad and the position is marked at its last good price"),
    "orders_sent": ("counter", "orders sent to the venue"),
    "fills": ("counter", "fills received from the venue"),
    "filled_shares": ("counter", "shares filled"),
    "symbol_rejects": ("counter", "orders of the symbol refused (risk, OMS or venue)"),
    "open_orders": ("gauge", "orders of the symbol open at the venue"),
    "book_bid_price_dollars": ("gauge", "best bid (0: no bid)"),
    "book_ask_price_dollars": ("gauge", "best ask (0: no ask)"),
    "book_bid_shares": ("gauge", "shares at the best bid"),
    "book_ask_shares": ("gauge", "shares at the best ask"),
    "last_trade_price_dollars": ("gauge", "price of the last trade"),
    "book_flag": ("gauge", "1 for each condition flagged on the symbol's book"),
    "book_last_update_timestamp_seconds": ("gauge", "when the feed last wrote the symbol's market state (Unix time)"),
    "book_bad": ("gauge", "1 while the symbol's book is stale, inconsistent or crossed, labelled with why"),
    "feed_stale_reason": ("gauge", "1 for why the feed has every book stale (live: it does not)"),
    "tick_to_trade_seconds": ("histogram", "latency of each hop from packet receipt to order on the wire"),
    "tick_to_trade_max_seconds": ("gauge", "the largest latency of each hop so far, exact (not from the buckets)"),
    # journal replication to the hot standby (issue 18): only when the OMS replicates (REPLICATION_FAMILIES)
    "replication_info": ("gauge", "1, labelled with this OMS's role and its replication mode and transport"),
    "replication_standby_up": ("gauge", "1 while a standby is connected and subscribed"),
    "replication_lag_records": ("gauge", "journal records the standby has not acknowledged"),
    "replication_lag_seconds": ("gauge", "how long the oldest unacknowledged record has been on its way"),
    "replication_ack_round_trip_seconds": ("gauge", "the last record-to-acknowledgement round trip"),
    "replication_acked_sequence": ("gauge", "the last journal sequence the standby acknowledged"),
    "replication_disconnects": ("counter", "standby connections lost"),
    "replication_ack_timeouts": ("counter", "sync: no acknowledgement within the limit (gate closed or traded on)"),
}
FAMILIES.update({
    # the OMS's takeovers by its hot standby (issue 18): only when the supervisor has one
    "takeover": ("counter", "takeovers of the OMS by its hot standby (the OMS died, or a failover)"),
    "takeover_under_way": ("gauge", "1 while a takeover holds the gate closed"),
    "takeover_last_timestamp_seconds": ("gauge", "when the last takeover began (Unix time)"),
    "takeover_last_gate_closed_seconds": ("gauge", "how long the gate was closed for the last takeover "
                                                   "(the OMS seen dead, or the failover asked, to the new OMS ready)"),
    "takeover_last_planned": ("gauge", "1 when the last takeover was a failover, 0 when the OMS died"),
    "takeover_last_remote": ("gauge", "1 when the last takeover was this box's standby taking over from a primary "
                                      "on another box (its old pid is unknown here: 0)"),
    "takeover_last_old_pid": ("gauge", "pid of the OMS the last takeover replaced"),
    "takeover_last_new_pid": ("gauge", "pid of the standby that became the OMS in the last takeover"),
})
REPLICATION_FAMILIES = frozenset(name for name in FAMILIES if name.startswith("replication_"))


def exposed_names() -> set[str]:
    """Every sample name the exporter can serve (counters with _total, histograms' three series)."""
    names = set()
    for name, (kind, _help) in FAMILIES.items():
        full = f"{PREFIX}_{name}"
        if kind == "counter":
            names.add(f"{full}_total")
        elif kind == "histogram":
            names.update({f"{full}_bucket", f"{full}_sum", f"{full}_count"})
        else:
            names.add(full)
    return names


def _family(name: str, labels=()):
    kind, help_text = FAMILIES[name]
    cls = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily}[kind]
    return cls(f"{PREFIX}_{name}", help_text, labels=list(labels))


def down() -> list:
    up = _family("up")
    up.add_metric([], 0)
    return [up]


def families(snap, counter_infos) -> list:
    """Every family for one snapshot (``snapshot.Snapshot``) and the counters' kinds."""
    out = []
    up = _family("up")
    up.add_metric([], 1)
    out.append(up)
    out += _segments_and_rings(snap)
    out += _processes(snap)
    out += _counters(snap, counter_infos)
    if snap.control is not None:
        out += _control(snap.control)
    out += _symbols(snap)
    out += _tick_to_trade(snap.counters)
    out += _replication(snap.counters)
    out += _takeover(snap.counters)
    return [f for f in out if f.samples or f.name == f"{PREFIX}_up"]


def _segments_and_rings(snap) -> list:
    hugepages = _family("segment_hugepages", ["segment"])
    for seg in snap.segments:
        hugepages.add_metric([seg.name], 1 if seg.backing.startswith("hugepage") else 0)
    labels = ["ring", "producer", "consumer"]
    depth, capacity, max_depth = (_family(n, labels) for n in ("ring_depth", "ring_capacity", "ring_max_depth"))
    published, consumed, full = (_family(n, labels) for n in ("ring_published", "ring_consumed", "ring_full_events"))
    for ring in snap.rings:
        values = [ring.name, ring.producer, ring.consumer]
        depth.add_metric(values, ring.depth)
        capacity.add_metric(values, ring.capacity)
        max_depth.add_metric(values, ring.max_depth)
        published.add_metric(values, ring.published)
        consumed.add_metric(values, ring.consumed)
        full.add_metric(values, ring.full_events)
    return [hugepages, depth, capacity, max_depth, published, consumed, full]


def _processes(snap) -> list:
    process_up = _family("process_up", ["process"])
    state = _family("process_state", ["process", "state"])
    age = _family("process_heartbeat_age_seconds", ["process"])
    duty = _family("process_max_duty_cycle_seconds", ["process"])
    cycles = _family("process_duty_cycles", ["process"])
    for proc in snap.processes:
        process_up.add_metric([proc.name], 1 if proc.alive and proc.state == "running" else 0)
        for s in ProcessState:
            state.add_metric([proc.name, s.name.lower()], 1 if proc.state == s.name.lower() else 0)
        if proc.heartbeat_age_ms is not None:
            age.add_metric([proc.name], proc.heartbeat_age_ms / 1e3)
        duty.add_metric([proc.name], proc.max_duty_us / 1e6)
        cycles.add_metric([proc.name], proc.beats)
    return [process_up, state, age, duty, cycles]


def _counters(snap, counter_infos) -> list:
    """Named families for the counters with a known meaning; every other one under its label."""
    events = _family("component_events", ["name"])
    values = _family("component_value", ["name"])
    rejects = _family("rejects", ["source", "reason"])
    restarts = _family("process_restarts", ["process"])
    for info in counter_infos:
        label = info.label
        if label.startswith(latency.PREFIX):
            continue                                  # served as the tick-to-trade histograms
        if info.kind is CounterKind.COUNTER:
            events.add_metric([label], info.value)
        else:
            values.add_metric([label], info.value)
        for prefix, source in REJECT_SOURCES.items():
            if label.startswith(prefix) and len(label) > len(prefix):
                rejects.add_metric([source, label[len(prefix):]], info.value)
        if label.startswith(RESTARTS_PREFIX) and len(label) > len(RESTARTS_PREFIX):
            restarts.add_metric([label[len(RESTARTS_PREFIX):]], info.value)
    return [events, values, rejects, restarts]


def _replication(counters: dict[str, int]) -> list:
    """The replication families (none when the OMS does not replicate its journal)."""
    r = replication_status.summary(counters)
    if r is None:
        return []
    info = _family("replication_info", ["role", "mode", "transport"])
    info.add_metric([r["role"], r["mode"], r["transport"]], 1)
    out = [info]
    for name, value in (("replication_standby_up", 1 if r["standby"] == "up" else 0),
                        ("replication_lag_records", r.get("lag_records", 0)),
                        ("replication_lag_seconds", r.get("lag_ns", 0) / 1e9),
                        ("replication_ack_round_trip_seconds", r.get("ack_rtt_ns", 0) / 1e9),
                        ("replication_acked_sequence", r.get("acked_sequence", 0)),
                        ("replication_disconnects", r.get("disconnects", 0)),
                        ("replication_ack_timeouts", r.get("ack_timeouts", 0))):
        family = _family(name)
        family.add_metric([], value)
        out.append(family)
    return out


def _takeover(counters: dict[str, int]) -> list:
    """The takeover families (none when the supervisor has no hot standby; the last one's only after one)."""
    t = takeover_status.summary(counters)
    if t is None:
        return []
    values = [("takeover", t["count"]), ("takeover_under_way", 1 if t["under_way"] else 0)]
    if t["count"]:
        values += [("takeover_last_timestamp_seconds", t["last_unix_ns"] / 1e9),
                   ("takeover_last_planned", 1 if t["last_planned"] else 0),
                   ("takeover_last_remote", 1 if t["last_remote"] else 0),
                   ("takeover_last_old_pid", t["last_old_pid"]), ("takeover_last_new_pid", t["last_new_pid"])]
    if t["last_gate_closed_ms"] is not None:
        values.append(("takeover_last_gate_closed_seconds", t["last_gate_closed_ms"] / 1e3))
    out = []
    for name, value in values:
        family = _family(name)
        family.add_metric([], value)
        out.append(family)
    return out


def _one_of(name: str, label: str, enum_type, value: int):
    family = _family(name, [label])
    for member in enum_type:
        family.add_metric([member.name.lower()], 1 if member == value else 0)
    return family


def _control(words: dict[str, int]) -> list:
    gate_open = _family("gate_open")
    gate_open.add_metric([], 1 if words["gate_open"] else 0)
    reasons = _family("gate_closed_reason", ["reason"])
    for reason in GateReason:
        reasons.add_metric([reason.name.lower()], 1 if words["gate_reasons"] & reason else 0)
    changes = _family("gate_changes")
    changes.add_metric([], words["gate_epoch"])
    out = [gate_open, reasons, changes]
    if words["gate_changed_ns"]:
        changed = _family("gate_last_change_timestamp_seconds")
        changed.add_metric([], words["gate_changed_ns"] / 1e9)
        out.append(changed)

    out.append(_one_of("clock_state", "state", ClockState, words["clock_state"]))
    synced = _family("clock_synced")
    synced.add_metric([], 1 if words["clock_state"] == ClockState.HEALTHY else 0)
    offset = _family("clock_offset_seconds")
    offset.add_metric([], words["clock_offset_ns"] / 1e9)
    maxerror = _family("clock_maxerror_seconds")
    maxerror.add_metric([], words["clock_maxerror_ns"] / 1e9)
    out += [synced, offset, maxerror]
    if words["clock_checked_ns"]:
        checked = _family("clock_last_check_timestamp_seconds")
        checked.add_metric([], words["clock_checked_ns"] / 1e9)
        out.append(checked)

    ready = _family("component_ready", ["component"])
    for component, word in READY_WORDS.items():
        ready.add_metric([component], 1 if words[word] else 0)
    out += [ready, _one_of("risk_state", "state", RiskState, words["risk_state"])]
    stale = _family("feed_stale_reason", ["reason"])
    for member in FeedStaleReason:
        if member != FeedStaleReason.NO_DIRECTORY:         # a book's own reason, never in the feed's word
            stale.add_metric([member.name.lower()], 1 if member == words["feed_stale_reason"] else 0)
    out.append(stale)
    for name, value in (("kill_switch_latched", 1 if words["risk_kill_latched"] else 0),
                        ("oms_session_up", 1 if words["oms_session_up"] else 0),
                        ("oms_open_orders", words["oms_open_orders"]),
                        ("oms_cancel_alls", words["oms_cancel_all_epoch"])):
        family = _family(name)
        family.add_metric([], value)
        out.append(family)
    return out


# (family, SymbolView attribute)
POSITION_FIELDS = (("position_shares", "position"), ("position_cost_basis_dollars", "cost_basis"),
                   ("pnl_realized_dollars", "realized_pnl"), ("pnl_unrealized_dollars", "unrealized_pnl"),
                   ("orders_sent", "orders_sent"),
                   ("fills", "fills"), ("filled_shares", "filled_shares"), ("symbol_rejects", "rejects"),
                   ("open_orders", "open_orders"))
BOOK_FIELDS = (("book_bid_price_dollars", "bid"), ("book_ask_price_dollars", "ask"),
               ("book_bid_shares", "bid_shares"), ("book_ask_shares", "ask_shares"),
               ("last_trade_price_dollars", "last"))


def _symbols(snap) -> list:
    by_name = {name: _family(name, ["symbol"]) for name, _ in POSITION_FIELDS + BOOK_FIELDS}
    flags = _family("book_flag", ["symbol", "flag"])
    updated = _family("book_last_update_timestamp_seconds", ["symbol"])
    bad = _family("book_bad", ["symbol", "reason"])
    mark, mark_old = _family("mark_price_dollars", ["symbol"]), _family("mark_old", ["symbol"])
    for view in snap.symbols:
        if view.error:                                 # a torn slot: leave the symbol out of this scrape
            continue
        for name, attribute in POSITION_FIELDS + BOOK_FIELDS:
            value = getattr(view, attribute)
            if value is not None:
                by_name[name].add_metric([view.symbol], value)
        if view.flags is not None:
            for _bit, flag in FLAG_NAMES:
                flags.add_metric([view.symbol, flag], 1 if flag in view.flags else 0)
        if view.book_updated_ns:
            updated.add_metric([view.symbol], view.book_updated_ns / 1e9)
        if view.problem is not None:
            bad.add_metric([view.symbol, view.problem.replace(" ", "_") or "none"], 1 if view.problem else 0)
        if view.mark is not None:
            mark.add_metric([view.symbol], view.mark)
            mark_old.add_metric([view.symbol], 1 if view.mark_old else 0)
    return [*by_name.values(), flags, updated, bad, mark, mark_old]


def _tick_to_trade(counters: dict[str, int]) -> list:
    family = _family("tick_to_trade_seconds", ["hop"])
    largest = _family("tick_to_trade_max_seconds", ["hop"])
    for hop, histogram in latency.histograms(counters).items():
        buckets = [(floatToGoString(bound / 1e9), value) for bound, value in histogram.cumulative()]
        buckets.append(("+Inf", histogram.total))
        family.add_metric([hop], buckets, histogram.sum_ns / 1e9)
        largest.add_metric([hop], histogram.max_ns / 1e9)
    return [family, largest]
