"""The supervisor's gate decision (``supervisor/gate.gate_reasons``), in-process: every reason that
closes the gate, how reasons combine and clear, the latched kill, the clock verdict, market data,
and the supervisor's reading of its control words into that decision (``_gate_inputs``)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.clock.guard import ClockVerdict
from appliance.messages.codes import ClockState, GateReason, RiskState
from appliance.supervisor.agent import SupervisorAgent
from appliance.supervisor.gate import GateInputs, ProcessHealth, describe, gate_reasons

SECOND = 1_000_000_000
HEALTHY = ProcessHealth(alive=True, heartbeat_age_ns=0, running=True)
EVERY_PROCESS = ("supervisor", "feed", "strategy", "risk", "oms")


def inputs(**overrides) -> GateInputs:
    """Everything healthy and ready (the gate open); ``overrides`` change one observation."""
    values = dict(processes={name: HEALTHY for name in EVERY_PROCESS}, heartbeat_timeout_ns=SECOND,
                  risk_heartbeat_timeout_ns=SECOND // 4, risk_ready=True, risk_state=RiskState.ACTIVE,
                  risk_kill_latched=False, oms_ready=True, feed_ready=True, clock_blocks=False, starting=False,
                  operator_closed=False, stopping=False)
    values.update(overrides)
    return GateInputs(**values)


def with_process(name: str, **health) -> dict:
    processes = {n: HEALTHY for n in EVERY_PROCESS}
    processes[name] = ProcessHealth(**{**HEALTHY.__dict__, **health})
    return processes


def test_everything_healthy_and_ready_opens_the_gate():
    assert gate_reasons(inputs()) == GateReason(0)
    assert describe(gate_reasons(inputs())) == "open"


@pytest.mark.parametrize("observed,reason", [
    ({"stopping": True}, GateReason.STOPPING),
    ({"starting": True}, GateReason.STARTING),
    ({"operator_closed": True}, GateReason.OPERATOR),
    ({"risk_ready": False}, GateReason.RISK_UNHEALTHY),
    ({"risk_kill_latched": True}, GateReason.KILL_SWITCH),
    ({"risk_state": RiskState.HALTED}, GateReason.KILL_SWITCH),
    ({"oms_ready": False}, GateReason.OMS_NOT_READY),
    ({"feed_ready": False}, GateReason.FEED_NOT_READY),
    ({"clock_blocks": True}, GateReason.CLOCK_UNHEALTHY),
    ({"market_data_bad": True}, GateReason.MARKET_DATA),
    ({"standby": True}, GateReason.STANDBY),
], ids=lambda v: v.name if isinstance(v, GateReason) else None)
def test_each_observation_closes_the_gate_with_its_own_reason_alone(observed, reason):
    assert gate_reasons(inputs(**observed)) == reason


@pytest.mark.parametrize("name", ["supervisor", "feed", "strategy", "oms"])
@pytest.mark.parametrize("health", [
    {"alive": False}, {"running": False}, {"heartbeat_age_ns": None}, {"heartbeat_age_ns": SECOND + 1},
], ids=["dead", "not-running", "never-beat", "heartbeat-late"])
def test_any_process_but_risk_unwell_is_process_down(name, health):
    assert gate_reasons(inputs(processes=with_process(name, **health))) == GateReason.PROCESS_DOWN


def test_a_heartbeat_exactly_at_the_timeout_is_still_healthy():
    assert gate_reasons(inputs(processes=with_process("feed", heartbeat_age_ns=SECOND))) == GateReason(0)
    assert gate_reasons(inputs(processes=with_process("risk", heartbeat_age_ns=SECOND // 4))) == GateReason(0)


@pytest.mark.parametrize("health", [
    {"alive": False}, {"running": False}, {"heartbeat_age_ns": None}, {"heartbeat_age_ns": SECOND // 4 + 1},
], ids=["dead", "not-running", "never-beat", "heartbeat-late"])
def test_risk_unwell_is_risk_unhealthy_on_its_own_shorter_timeout_not_process_down(health):
    assert gate_reasons(inputs(processes=with_process("risk", **health))) == GateReason.RISK_UNHEALTHY


def test_a_missing_process_is_down_and_an_unmanaged_one_is_not_waited_for():
    processes = {n: HEALTHY for n in EVERY_PROCESS}
    processes["feed"] = None                     # managed, but nothing known of it
    assert gate_reasons(inputs(processes=processes)) == GateReason.PROCESS_DOWN
    only_supervisor = {"supervisor": HEALTHY}    # no risk, OMS or feed in this layout: their readiness is moot
    assert gate_reasons(inputs(processes=only_supervisor, risk_ready=False, oms_ready=False,
                               feed_ready=False)) == GateReason(0)


def test_the_latched_kill_holds_the_gate_whatever_risk_says_of_its_state():
    """The latch is the kill switch's memory across a restarted risk: a risk back ACTIVE (or still
    STARTING, or REDUCING) does not reopen the gate while the latch is set, and a reset clears it."""
    for state in RiskState:
        reasons = gate_reasons(inputs(risk_kill_latched=True, risk_state=state))
        assert reasons == GateReason.KILL_SWITCH, state
    assert gate_reasons(inputs(risk_kill_latched=False, risk_state=RiskState.REDUCING)) == GateReason(0)


def test_reasons_combine_and_the_gate_reopens_only_when_the_last_one_clears():
    observed = {"starting": True, "operator_closed": True, "risk_kill_latched": True, "clock_blocks": True,
                "market_data_bad": True, "processes": with_process("oms", alive=False)}
    expected = (GateReason.STARTING | GateReason.OPERATOR | GateReason.KILL_SWITCH | GateReason.CLOCK_UNHEALTHY
                | GateReason.MARKET_DATA | GateReason.PROCESS_DOWN)
    assert gate_reasons(inputs(**observed)) == expected
    assert describe(expected) == "closed: starting, process_down, clock_unhealthy, kill_switch, operator, market_data"
    for cleared in list(observed):
        del observed[cleared]
        reasons = gate_reasons(inputs(**observed))
        assert bool(reasons) == bool(observed), (cleared, reasons)
    every = gate_reasons(inputs(stopping=True, starting=True, operator_closed=True, risk_ready=False,
                                risk_kill_latched=True, oms_ready=False, feed_ready=False, clock_blocks=True,
                                market_data_bad=True, takeover=True, standby=True,
                                processes=with_process("feed", alive=False)))
    assert every == GateReason(sum(GateReason))
    assert gate_reasons(inputs(takeover=True)) == GateReason.TAKEOVER      # the OMS's standby taking over


@pytest.mark.parametrize("state,closes", [
    (ClockState.HEALTHY, False), (ClockState.NOT_REQUIRED, False),
    (ClockState.UNHEALTHY, True), (ClockState.UNKNOWN, True),          # not yet checked: fail closed
])
def test_the_clock_verdict_closes_the_gate_unless_healthy_or_not_required(state, closes):
    verdict = ClockVerdict(state, "")
    expected = GateReason.CLOCK_UNHEALTHY if closes else GateReason(0)
    assert gate_reasons(inputs(clock_blocks=verdict.blocks_trading)) == expected


def supervisor(control: dict, *, verdict=ClockState.HEALTHY, starting=False, operator_closed=False,
               stop_requested=None, market_tripped=False, taking_over=None, standing_by=None):
    """A stand-in for the supervisor agent, as far as ``_gate_inputs`` needs one."""
    words = {"risk_ready": 1, "risk_state": RiskState.ACTIVE, "risk_kill_latched": 0, "oms_ready": 1, "feed_ready": 1,
             **control}
    return SimpleNamespace(
        control=SimpleNamespace(get=words.__getitem__),
        config=SimpleNamespace(heartbeat_timeout_ms=1000, risk_heartbeat_timeout_ms=250),
        clock=SimpleNamespace(verdict=ClockVerdict(verdict, "")), starting=starting,
        operator_closed=operator_closed, stop_requested=stop_requested,
        market_watch=SimpleNamespace(tripped=market_tripped),
        standby=None if taking_over is None and standing_by is None else
        SimpleNamespace(taking_over=bool(taking_over), **({} if standing_by is None else {"standing_by": standing_by})))


@pytest.mark.parametrize("state,words,reason", [
    ({}, {}, GateReason(0)),
    ({}, {"risk_kill_latched": 1}, GateReason.KILL_SWITCH),
    ({}, {"risk_state": RiskState.HALTED}, GateReason.KILL_SWITCH),
    ({}, {"risk_ready": 0}, GateReason.RISK_UNHEALTHY),
    ({}, {"oms_ready": 0}, GateReason.OMS_NOT_READY),
    ({}, {"feed_ready": 0}, GateReason.FEED_NOT_READY),
    ({"verdict": ClockState.UNHEALTHY}, {}, GateReason.CLOCK_UNHEALTHY),
    ({"verdict": ClockState.NOT_REQUIRED}, {}, GateReason(0)),
    ({"starting": True}, {}, GateReason.STARTING),
    ({"operator_closed": True}, {}, GateReason.OPERATOR),
    ({"stop_requested": "operator"}, {}, GateReason.STOPPING),
    ({"market_tripped": True}, {}, GateReason.MARKET_DATA),
    ({"taking_over": True}, {}, GateReason.TAKEOVER),
    ({"taking_over": False}, {}, GateReason(0)),
    ({"standing_by": True}, {}, GateReason.STANDBY),         # this box's OMS is another box's standby
    ({"standing_by": False}, {}, GateReason(0)),             # it took over
])
def test_the_supervisor_reads_each_control_word_and_its_own_state_into_the_decision(state, words, reason):
    health = {name: HEALTHY for name in EVERY_PROCESS}
    assert SupervisorAgent._gate_inputs(supervisor(words, **state), health) == reason


def test_the_supervisor_holds_risk_to_the_risk_heartbeat_timeout_and_the_others_to_theirs():
    me = supervisor({})
    risk_late = with_process("risk", heartbeat_age_ns=251_000_000)
    assert SupervisorAgent._gate_inputs(me, risk_late) == GateReason.RISK_UNHEALTHY
    feed_late = with_process("feed", heartbeat_age_ns=999_000_000)
    assert SupervisorAgent._gate_inputs(me, feed_late) == GateReason(0)
    feed_late = with_process("feed", heartbeat_age_ns=1_001_000_000)
    assert SupervisorAgent._gate_inputs(me, feed_late) == GateReason.PROCESS_DOWN
