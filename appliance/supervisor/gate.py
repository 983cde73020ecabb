"""The trading gate: open only when nothing argues against it. A pure function of what the
supervisor observes, so every decision can be tested and logged with its reasons.

New orders leave only while the gate is open (the OMS checks it per order); cancels always may.
A reason that clears reopens the gate only if it was the last one.

MARKET_DATA: a subscribed book (every symbol of the layout, when it runs a feed) has been bad
(``BOOK_FLAGS_BAD``: stale, inconsistent or crossed; a slot never written counts) for longer than
``market_data_stale_ms``; it holds until every book is good again. Crossed counts: a single
venue's book never crosses, so a lasting cross is a book we cannot believe (forged or lost data).
Halted does not: a halt is real data, and risk refuses orders in that symbol by itself. The OMS
cancels every resting order on this reason (``oms/recovery.CANCEL_ALL_GATE_REASONS``): quotes
priced off a book we cannot see are a liability, and the delay already forgives short gaps.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.messages.codes import GateReason, RiskState


@dataclass(frozen=True)
class ProcessHealth:
    alive: bool                    # the child process exists (or, for the supervisor, always)
    heartbeat_age_ns: int | None   # None: never beat since it started
    running: bool                  # its runner reports RUNNING


@dataclass(frozen=True)
class GateInputs:
    processes: dict                # name -> ProcessHealth, every managed process
    heartbeat_timeout_ns: int
    risk_heartbeat_timeout_ns: int
    risk_ready: bool
    risk_state: int
    risk_kill_latched: bool
    oms_ready: bool
    feed_ready: bool
    clock_blocks: bool
    starting: bool
    operator_closed: bool
    stopping: bool
    market_data_bad: bool = False  # MarketDataWatch.tripped
    takeover: bool = False         # the OMS's standby is taking over (standby.OmsStandby.taking_over)
    standby: bool = False          # this box's OMS is another box's standby (remote_standby.RemoteStandby.standing_by)


# Processes off the order path: their being down is logged and restarted, never a reason to close
# the gate (the drop copy: the journal keeps every event, it catches up when it is back).
OFF_ORDER_PATH = frozenset(("dropcopy",))


def _healthy(h: ProcessHealth | None, timeout_ns: int) -> bool:
    return (h is not None and h.alive and h.running and h.heartbeat_age_ns is not None
            and h.heartbeat_age_ns <= timeout_ns)


def gate_reasons(i: GateInputs) -> GateReason:
    reasons = GateReason(0)
    if i.stopping:
        reasons |= GateReason.STOPPING
    if i.starting:
        reasons |= GateReason.STARTING
    if i.operator_closed:
        reasons |= GateReason.OPERATOR
    if any(not _healthy(h, i.heartbeat_timeout_ns) for name, h in i.processes.items()
           if name != "risk" and name not in OFF_ORDER_PATH):
        reasons |= GateReason.PROCESS_DOWN
    if "risk" in i.processes and (not _healthy(i.processes["risk"], i.risk_heartbeat_timeout_ns) or not i.risk_ready):
        reasons |= GateReason.RISK_UNHEALTHY
    if i.risk_kill_latched or i.risk_state == RiskState.HALTED:
        reasons |= GateReason.KILL_SWITCH
    if "oms" in i.processes and not i.oms_ready:
        reasons |= GateReason.OMS_NOT_READY
    if "feed" in i.processes and not i.feed_ready:
        reasons |= GateReason.FEED_NOT_READY
    if i.clock_blocks:
        reasons |= GateReason.CLOCK_UNHEALTHY
    if i.market_data_bad:
        reasons |= GateReason.MARKET_DATA
    if i.takeover:
        reasons |= GateReason.TAKEOVER
    if i.standby:
        reasons |= GateReason.STANDBY
    return reasons


class MarketDataWatch:
    """Which books have been bad for how long: ``tripped`` once any one has been bad for
    ``limit_ns`` without a break, and until every book is good again (no flapping while the
    feed recovers book by book)."""

    def __init__(self, limit_ns: int):
        self.limit_ns = limit_ns
        self.bad_since: dict[str, int] = {}
        self.tripped = False

    def update(self, now_ns: int, problems: dict[str, str]) -> bool:
        """``problems``: ``{symbol: why}`` of the books bad now (``market_state.symbol_problems``)."""
        for symbol in [s for s in self.bad_since if s not in problems]:
            del self.bad_since[symbol]
        for symbol in problems:
            self.bad_since.setdefault(symbol, now_ns)
        if not problems:
            self.tripped = False
        elif any(now_ns - since >= self.limit_ns for since in self.bad_since.values()):
            self.tripped = True
        return self.tripped


def describe(reasons: int) -> str:
    if not reasons:
        return "open"
    return "closed: " + ", ".join(r.name.lower() for r in GateReason if reasons & r)
