"""The strategy's order view on its own: reports in, order states and positions out, callbacks after."""
from __future__ import annotations

from appliance.messages.catalog import EXECUTION_REPORT
from appliance.messages.codes import VENUE_EVENTS, ExecEvent, OmsReason, RejectSource, Side
from appliance.strategy.api import Order, OrderState
from appliance.strategy.host import RateLimitedLog, StrategyStats, log
from appliance.strategy.order_view import OrderView

SYMBOLS = ("AAPL", "MSFT")


def report(event, client_order_id, symbol_id=0, **fields) -> tuple:
    """An ExecutionReport tuple as ``unpack_from`` gives it (header checked by the host, not here)."""
    values = dict.fromkeys(EXECUTION_REPORT.field_names, 0)
    values.update(event=int(event), client_order_id=client_order_id, symbol_id=symbol_id, **fields)
    return tuple(values[name] for name in EXECUTION_REPORT.field_names)


def make_view():
    calls = []

    def notify(callback, order, *args):
        calls.append((callback, order._state, *args))      # the state the callback sees

    view = OrderView(SYMBOLS, {s: i for i, s in enumerate(SYMBOLS)}, StrategyStats(), notify, RateLimitedLog(log))
    return view, calls


def test_a_fill_changes_the_view_before_the_callback_runs():
    view, calls = make_view()
    view.add(Order(7, "AAPL", 0, Side.BUY, 1_000_000, 100, 0))
    assert view.apply_report(report(ExecEvent.EXECUTED, 7, shares=100, price=1_000_000, position=100))
    assert [(c[0], c[1], c[2].shares, c[2].price, c[2].leaves) for c in calls] == \
        [("on_fill", OrderState.FILLED, 100, 1_000_000, 0)]
    assert 7 not in view.open_orders and view.positions["AAPL"] == 100 and view.stats.fills == 1


def test_the_position_comes_from_venue_events_only():
    view, _ = make_view()
    assert ExecEvent.PENDING_TIMEOUT in VENUE_EVENTS and ExecEvent.REJECTED_LOCALLY not in VENUE_EVENTS
    view.apply_report(report(ExecEvent.PENDING_TIMEOUT, 1, position=300))
    view.apply_report(report(ExecEvent.REJECTED_LOCALLY, 2, position=-5, source=RejectSource.OMS,
                             reason=OmsReason.NOT_RECOVERED))
    assert view.positions["AAPL"] == 300


def test_a_refused_cancel_all_puts_the_orders_back_and_an_unknown_event_is_not_applied():
    view, calls = make_view()
    view.add(Order(1, "MSFT", 1, Side.SELL, 2_000_000, 100, 0))
    view.apply_report(report(ExecEvent.ACCEPTED, 1, symbol_id=1, leaves_shares=100))
    assert view.mark_pending_cancel(1) == 1
    view.remember_cancel_all(50, 1)
    view.apply_reject(50, RejectSource.OMS, OmsReason.SESSION_DOWN)
    assert view.get(1).state == OrderState.LIVE
    assert [c[0] for c in calls] == ["on_order_accepted", "on_cancel_rejected"]
    assert not view.apply_report(report(99, 1, symbol_id=1))
