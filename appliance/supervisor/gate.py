"""The trading gate: open only when nothing argues against it. A pure function of what the
supervisor observes, so every decision can be tested and logged with its reasons.

New orders leave only while the gate is open (the OMS checks it per order); cancels always may.
A reason that clears reopens the gate only if it was the last one.
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
    if any(not _healthy(h, i.heartbeat_timeout_ns) for name, h in i.processes.items() if name != "risk"):
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
    return reasons


def describe(reasons: int) -> str:
    if not reasons:
        return "open"
    return "closed: " + ", ".join(r.name.lower() for r in GateReason if reasons & r)
