"""Trading states and the kill switch: REDUCING lets only position-shrinking orders through, HALTED only
cancels; the kill switch latches, asks the OMS to cancel everything, and needs a named reset."""
from __future__ import annotations

from appliance.messages.codes import Action, ControlEventKind, RiskReason, RiskState
from appliance.risk.kill_switch import TradingControl
from appliance.risk.paper_market import limits_document
from risk_harness import AAPL, MSFT, NOW, REF, S, SPY, T, Harness


def kinds(control: TradingControl) -> list[int]:
    return [event[0] for event in control.take_events()]


def test_reducing_lets_only_orders_that_shrink_the_position_through():
    document = limits_document(["AAPL", "MSFT", "SPY"])
    document["symbol_defaults"]["allow_short_sell"] = True          # side T below: a short sale is a sell
    h = Harness(document)
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


# ---------------------------------------------------------------------------- per-symbol kill (RTS 6 Art. 12)

def test_a_symbol_kill_refuses_new_orders_and_replaces_in_that_symbol_only_and_lets_cancels_out():
    h = Harness()
    assert h.new(cid=1) == 0
    engine, control = h.engine, h.engine.control
    control.take_events()
    assert engine.kill_symbol(AAPL, "alice", NOW)
    assert [e[:5] for e in control.take_events()] == [(ControlEventKind.KILL_SYMBOL, RiskState.ACTIVE, AAPL, "alice",
                                                      "AAPL")]
    assert control.state == RiskState.ACTIVE and not control.latched and control.symbols_killed() == [AAPL]
    assert h.new() == RiskReason.SYMBOL_KILLED
    assert h.replace(1, 50) == RiskReason.SYMBOL_KILLED
    assert h.cancel(1) == 0
    assert engine.decide(int(Action.CANCEL_ALL), 9, 0, AAPL, 0, 0, 0, 0, 7, NOW) == 0
    assert h.new(symbol=MSFT, price=4_200_000) == 0                  # the other symbols trade on
    assert not engine.kill_symbol(AAPL, "bob", NOW + 1)              # latched already: the first stays
    assert control.symbol_kills[AAPL][:2] == ("MANUAL", "alice") and control.take_events() == []


def test_symbol_killed_comes_right_after_the_gateways_own_state():
    h = Harness(ready=False)
    engine = h.engine
    assert engine.kill_symbol(AAPL, "alice", NOW)
    assert h.new(shares=0) == RiskReason.BAD_ORDER
    assert h.new() == RiskReason.NOT_READY
    engine.mark_ready(NOW)
    assert h.new() == RiskReason.SYMBOL_KILLED
    assert h.new(cid=h.last_id) == RiskReason.SYMBOL_KILLED          # before DUPLICATE_CLIENT_ID
    engine.control.trip("MANUAL", NOW, operator="alice")
    assert h.new() == RiskReason.TRADING_HALTED
    document = limits_document(["AAPL", "MSFT", "SPY"])
    del document["symbols"]["SPY"]
    h = Harness(document)
    assert h.engine.kill_symbol(SPY, "alice", NOW)
    assert h.new(symbol=SPY, price=5_600_000) == RiskReason.UNKNOWN_SYMBOL     # no limits: unknown first


def test_a_symbol_reset_needs_a_name_and_a_full_reset_leaves_symbol_latches_alone():
    h = Harness()
    engine, control = h.engine, h.engine.control
    assert engine.kill_symbol(AAPL, "alice", NOW)
    control.trip("MANUAL", NOW, operator="alice")
    control.take_events()
    assert control.reset("bob", NOW + 1)
    assert h.new() == RiskReason.SYMBOL_KILLED                       # the full reset did not unlatch AAPL
    assert not engine.reset_symbol(AAPL, " ", NOW + 2) and control.resets_refused == 1
    assert not engine.reset_symbol(MSFT, "bob", NOW + 2) and control.commands_refused == 1    # not latched
    assert h.new() == RiskReason.SYMBOL_KILLED
    assert engine.reset_symbol(AAPL, "bob", NOW + 3)
    assert [e[:5] for e in control.take_events()] == [
        (ControlEventKind.RESET, RiskState.ACTIVE, 0, "bob", "RESET"),
        (ControlEventKind.RESET_SYMBOL, RiskState.ACTIVE, AAPL, "bob", "AAPL")]
    assert h.new() == 0 and control.symbols_killed() == [] and control.symbol_resets == 1


def test_a_limits_reload_keeps_the_symbol_latches():
    h = Harness()
    assert h.engine.kill_symbol(MSFT, "alice", NOW)
    h.engine.apply_limits(h.limits)
    assert h.new(symbol=MSFT, price=4_200_000) == RiskReason.SYMBOL_KILLED
    assert h.new() == 0
