"""Trading states and the kill switch: REDUCING lets only position-shrinking orders through, HALTED only
cancels; the kill switch latches, asks the OMS to cancel everything, and needs a named reset."""
from __future__ import annotations

from appliance.messages.codes import ControlEventKind, RiskReason, RiskState
from appliance.risk.kill_switch import TradingControl
from test_risk_checks import AAPL, NOW, REF, S, T, Harness


def kinds(control: TradingControl) -> list[int]:
    return [event[0] for event in control.take_events()]


def test_reducing_lets_only_orders_that_shrink_the_position_through():
    h = Harness()
    h.fill_position(500)
    control = h.engine.control
    control.take_events()
    assert control.set_reducing(NOW)
    assert control.state == RiskState.REDUCING
    assert kinds(control) == [ControlEventKind.STATE_CHANGED]
    assert h.new(shares=1) == RiskReason.TRADING_REDUCING            # a buy grows a long position
    assert h.new(shares=300, side=S, cid=1) == 0
    assert h.new(shares=200, side=T, cid=2) == 0                     # 500 - 300 - 200 = 0: flat at worst
    assert h.new(shares=1, side=S) == RiskReason.TRADING_REDUCING    # would go short
    assert h.replace(1, 100, side=S) == 0                            # shrinking an order always passes
    assert h.cancel(1, side=S) == 0
    assert control.set_active(NOW)
    assert h.new(shares=1) == 0


def test_reducing_from_a_short_position_allows_buys_up_to_flat():
    h = Harness()
    h.fill_position(-300)
    h.engine.control.set_reducing(NOW)
    assert h.new(shares=300) == 0
    assert h.new(shares=1) == RiskReason.TRADING_REDUCING
    assert h.new(shares=1, side=S) == RiskReason.TRADING_REDUCING


def test_manual_kill_latches_halted_sends_kill_and_only_cancels_pass():
    h = Harness()
    assert h.new(cid=1) == 0
    control = h.engine.control
    control.take_events()
    assert control.trip("MANUAL", NOW, operator="alice")
    assert control.state == RiskState.HALTED and control.latched
    events = control.take_events()
    assert [(e[0], e[1], e[3], e[4]) for e in events] == [(ControlEventKind.KILL, RiskState.HALTED, "alice", "MANUAL")]
    assert h.new() == RiskReason.TRADING_HALTED
    assert h.replace(1, 50) == RiskReason.TRADING_HALTED
    assert h.cancel(1) == 0
    assert not control.trip("DAILY_LOSS", NOW)                       # latched already: the first reason stays
    assert control.kill_reason == "MANUAL" and control.kills == 1


def test_halted_cannot_be_left_by_set_active_or_set_reducing():
    h = Harness()
    control = h.engine.control
    control.trip("MANUAL", NOW, operator="alice")
    assert not control.set_active(NOW) and not control.set_reducing(NOW)
    assert control.state == RiskState.HALTED and control.commands_refused == 2


def test_reset_needs_an_operator_name_which_is_recorded():
    h = Harness()
    control = h.engine.control
    control.trip("DRAWDOWN", NOW)
    control.take_events()
    assert not control.reset("", NOW + 1)
    assert not control.reset("   ", NOW + 2)
    assert control.latched and control.resets_refused == 2 and control.take_events() == []
    assert h.new() == RiskReason.TRADING_HALTED
    assert control.reset("bob", NOW + 3)
    assert not control.latched and control.state == RiskState.ACTIVE
    assert control.reset_log == [("bob", NOW + 3)]
    assert [(e[0], e[1], e[3]) for e in control.take_events()] == [(ControlEventKind.RESET, RiskState.ACTIVE, "bob")]
    assert h.new() == 0


def test_a_kill_switch_latched_by_the_previous_run_stays_latched_after_a_restart():
    control = TradingControl()
    control.start(NOW, latched_before=True)
    assert control.latched and control.state == RiskState.HALTED and control.kill_reason == "PREVIOUS_RUN"
    control.ready(NOW)
    assert control.state == RiskState.HALTED
    assert control.reset("carol", NOW)
    assert control.state == RiskState.ACTIVE


def test_reducing_survives_a_restart():
    control = TradingControl()
    control.start(NOW, reducing_before=True)
    assert control.state == RiskState.STARTING
    control.ready(NOW)
    assert control.state == RiskState.REDUCING


def test_automatic_kill_on_the_loss_limit_keeps_the_reason_and_value():
    h = Harness()
    h.fill_position(1000, price=REF)
    h.market.quote(AAPL, 1_399_900, 1_400_100)                       # -$50 x 1,000 = -$50,000.00: at the limit
    assert h.engine.housekeeping(NOW) == 0
    assert h.new(price=1_400_000) == 0
    h.market.quote(AAPL, 1_399_800, 1_400_100)                       # mid 139.995: -$50,005
    h.engine.refresh_marks()
    assert h.new(price=1_400_000) == RiskReason.DAILY_LOSS
    control = h.engine.control
    assert control.kill_reason == "DAILY_LOSS" and control.kill_value == -500_050_000
    kill = [e for e in control.take_events() if e[0] == ControlEventKind.KILL]
    assert kill and kill[0][2] == -500_050_000 and kill[0][4] == "DAILY_LOSS"
