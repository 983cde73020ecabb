"""Open orders and positions from the OMS's execution reports, and the rebuild from its snapshot."""
from __future__ import annotations

import pytest

from appliance.messages.codes import ORPHAN_CLIENT_ID_BASE, ExecEvent, RiskReason, SnapshotKind
from appliance.risk.state import (APPLIED, BAD_REPORT, SNAPSHOT_APPLIED, SNAPSHOT_COMPLETE, SNAPSHOT_IGNORED,
                                  UNKNOWN_ORDER)
from risk_harness import AAPL, DOLLAR, MSFT, NOW, REF, B, S, Harness, with_symbol

E = ExecEvent
K = SnapshotKind


def open_buy(h: Harness) -> int:
    return h.engine.portfolio.open_buy[AAPL]


def test_an_approved_order_is_open_with_all_its_shares_until_the_oms_closes_it():
    h = Harness()
    assert h.new(shares=300, cid=1) == 0
    assert open_buy(h) == 300 and h.engine.portfolio.open_count == 1
    assert h.report(E.ACCEPTED, 1, shares=300, leaves=300) == APPLIED
    assert h.report(E.EXECUTED, 1, shares=100, leaves=200, position=100, cost=100 * REF) == APPLIED
    assert open_buy(h) == 200 and h.engine.portfolio.position[AAPL] == 100
    assert h.report(E.CANCELED, 1, shares=50, leaves=150) == APPLIED
    assert open_buy(h) == 150
    assert h.report(E.EXECUTED, 1, shares=150, leaves=0, position=250, cost=250 * REF) == APPLIED
    assert open_buy(h) == 0 and h.engine.portfolio.open_count == 0
    assert h.engine.portfolio.position[AAPL] == 250


def test_rejected_orders_stop_counting():
    h = Harness()
    assert h.new(cid=1) == 0 and h.new(cid=2) == 0
    assert h.report(E.REJECTED, 1) == APPLIED
    assert h.report(E.REJECTED_LOCALLY, 2) == APPLIED
    assert open_buy(h) == 0 and h.engine.portfolio.open_count == 0
    assert h.report(E.REJECTED, 3) == UNKNOWN_ORDER


def test_a_refused_replace_goes_back_to_the_orders_leaves():
    h = Harness()
    assert h.new(shares=200, cid=1) == 0
    assert h.replace(1, 500, cid=2) == 0
    assert open_buy(h) == 500
    assert h.report(E.REJECTED, 2) == APPLIED
    assert open_buy(h) == 200 and h.engine.portfolio.orders[1].replacement_id == 0
    assert h.replace(1, 100, cid=3) == 0                       # replaceable again


def test_fills_on_an_order_being_replaced():
    h = Harness()
    assert h.new(shares=500, cid=1) == 0
    assert h.replace(1, 300, cid=2) == 0
    assert open_buy(h) == 500                                   # max(500, 300)
    h.report(E.EXECUTED, 1, shares=400, leaves=100, position=400, cost=400 * REF)
    assert open_buy(h) == 300                                   # max(100, 300): the replace may still land
    h.report(E.EXECUTED, 1, shares=100, leaves=0, position=500, cost=500 * REF)
    assert open_buy(h) == 0 and h.engine.portfolio.replacements == {}
    assert h.report(E.REPLACED, 2, orig=1, leaves=300) == UNKNOWN_ORDER


def test_replaced_moves_the_order_to_its_new_id():
    h = Harness()
    assert h.new(shares=200, cid=1, side=S) == 0
    assert h.replace(1, 400, cid=2, side=S) == 0
    assert h.report(E.REPLACED, 2, orig=1, side=S, shares=400, leaves=400, price=REF + 100) == APPLIED
    portfolio = h.engine.portfolio
    assert list(portfolio.orders) == [2] and portfolio.orders[2].price == REF + 100
    assert portfolio.open_sell[AAPL] == 400 and portfolio.open_count == 1
    assert h.cancel(2, side=S) == 0
    assert h.report(E.CANCELED, 2, side=S, shares=400, leaves=0) == APPLIED
    assert portfolio.open_sell[AAPL] == 0 and portfolio.open_count == 0


def test_positions_and_pnl_come_from_every_report():
    h = Harness()
    h.report(E.PENDING_TIMEOUT, 77, symbol=MSFT, position=-300, cost=-300 * 4_200_000, realized=12_345)
    portfolio = h.engine.portfolio
    assert portfolio.position[MSFT] == -300 and portfolio.realized_total == 12_345
    assert h.report(E.ACCEPTED, 999, symbol=5) == BAD_REPORT
    assert h.report(99, 1) == BAD_REPORT


def test_exposure_totals_stay_equal_to_a_recomputation():
    h = Harness()
    assert h.new(shares=300, cid=1) == 0
    assert h.new(shares=200, cid=2, side=S) == 0
    h.report(E.EXECUTED, 1, shares=100, leaves=200, position=100, cost=100 * REF)
    assert h.replace(2, 600, cid=3, side=S) == 0
    h.market.quote(AAPL, REF + 900, REF + 1100)
    h.engine.refresh_marks()
    portfolio = h.engine.portfolio
    totals = (portfolio.gross_total, portfolio.long_total, portfolio.short_total, portfolio.unrealized_total,
              list(portfolio.sector_gross))
    portfolio.recompute()
    assert totals == (portfolio.gross_total, portfolio.long_total, portfolio.short_total,
                      portfolio.unrealized_total, list(portfolio.sector_gross))
    assert portfolio.unrealized_total == 100 * (REF + 1000) - 100 * REF


def test_rebuild_from_the_oms_snapshot_then_approve():
    h = Harness(with_symbol(max_long=1000), ready=False)
    # reports from before the restart, left in the ring: applied, then replaced by the snapshot
    assert h.report(E.ACCEPTED, 5, leaves=100) == UNKNOWN_ORDER
    assert h.new() == RiskReason.NOT_READY
    assert h.snapshot(K.POSITION, 0, position=600, cost=600 * REF, realized=-500) == SNAPSHOT_APPLIED
    assert h.snapshot(K.ORDER, 41, leaves=300, price=REF) == SNAPSHOT_APPLIED
    assert h.snapshot(K.ORDER, 42, side=S, leaves=200, price=REF) == SNAPSHOT_APPLIED
    assert h.new() == RiskReason.NOT_READY
    assert h.snapshot(K.END, 0) == SNAPSHOT_COMPLETE
    portfolio = h.engine.portfolio
    assert portfolio.position[AAPL] == 600 and portfolio.open_buy[AAPL] == 300 and portfolio.open_sell[AAPL] == 200
    assert portfolio.realized_total == -500 and portfolio.open_count == 2
    assert h.new(shares=100) == 0                              # 600 + 300 + 100 = 1,000
    assert h.new(shares=1) == RiskReason.MAX_LONG
    assert h.new(cid=41) == RiskReason.DUPLICATE_CLIENT_ID      # the snapshot's ids are known
    assert h.engine.peak_pnl == h.engine.portfolio.pnl()        # the peak restarts at the rebuilt P&L


def test_a_snapshot_kind_risk_does_not_know_and_a_report_with_an_old_snapshot_event_change_nothing():
    """The rebuild comes only as RiskSnapshot records: an ExecutionReport with the event codes that once
    carried it (9..11) is a bad report, as is a snapshot record of an unknown kind; neither clears the
    state nor makes risk ready."""
    h = Harness(ready=False)
    h.report(E.BROKEN, 1, position=900, cost=900 * REF)
    for event in (9, 10, 11):
        assert h.report(event, 0, position=5) == BAD_REPORT
    assert h.snapshot(0, 0, position=5) == BAD_REPORT and h.snapshot(4, 0) == BAD_REPORT
    assert not h.engine.ready and not h.engine.in_snapshot and h.engine.portfolio.position[AAPL] == 900
    assert h.new() == RiskReason.NOT_READY


def test_a_second_snapshot_after_ready_is_ignored():
    h = Harness(ready=False)
    h.snapshot(K.END, 0)
    assert h.new(shares=100, cid=1) == 0
    assert h.snapshot(K.POSITION, 0, position=5) == SNAPSHOT_IGNORED
    assert h.snapshot(K.END, 0) == SNAPSHOT_IGNORED
    assert h.engine.portfolio.open_count == 1 and h.engine.portfolio.position[AAPL] == 0


def test_a_snapshot_starts_from_nothing():
    h = Harness(ready=False)
    h.report(E.BROKEN, 1, position=900, cost=900 * REF)
    h.snapshot(K.END, 0)                                         # an empty snapshot: flat, no orders
    assert h.engine.portfolio.position[AAPL] == 0 and h.engine.ready


def test_the_order_pool_bounds_open_orders_and_a_snapshot_may_exceed_it():
    from appliance.risk.checks import RiskEngine
    h = Harness()
    h.engine = RiskEngine(h.limits, h.market.symbols, h.market.reader, order_capacity=2)
    h.engine.control.start(NOW)
    h.engine.mark_ready(NOW)
    assert h.new(cid=1) == 0 and h.new(cid=2) == 0
    assert h.new(cid=3) == RiskReason.MAX_OPEN_ORDERS
    h.engine.restart_rebuild()
    for cid in (10, 11, 12):
        h.snapshot(K.ORDER, cid, leaves=100)
    h.snapshot(K.END, 0)
    assert h.engine.portfolio.open_count == 3 and h.engine.portfolio.pool_overflow == 1
    assert h.new(cid=4) == RiskReason.MAX_OPEN_ORDERS


# ---------------------------------------------------------------------------- issue 15: exact after a snapshot

def snapshot(h: Harness, orders, *, position=0, realized=0) -> None:
    """A rebuild: one position, the open orders (cid, orig, side, leaves, price) in the order given, the end."""
    assert h.snapshot(K.POSITION, 0, position=position, cost=position * REF, realized=realized) \
        == SNAPSHOT_APPLIED
    for cid, orig, side, leaves, price in orders:
        h.snapshot(K.ORDER, cid, orig=orig, side=side, leaves=leaves, price=price)
    assert h.snapshot(K.END, 0) == SNAPSHOT_COMPLETE


def test_issue_15_snapshot_then_replaced_then_cancel_leaves_nothing_open():
    """The repro: a replace in flight when the OMS took its snapshot was held as two open orders, one of
    which no report ever closed (its shares counted against the position limits for the rest of the day)."""
    h = Harness(ready=False)
    snapshot(h, [(51, 0, B, 200, REF), (52, 51, B, 500, REF)])
    h.report(E.REPLACED, 52, orig=51, shares=500, leaves=500)
    h.report(E.CANCELED, 52, shares=500, leaves=0)
    portfolio = h.engine.portfolio
    assert (portfolio.open_count, open_buy(h)) == (0, 0)


@pytest.mark.parametrize("replacement_first", [True, False])
@pytest.mark.parametrize("answer", [E.REPLACED, E.REJECTED])
def test_a_replace_in_flight_at_the_snapshot_leaves_exactly_one_open_order(replacement_first, answer):
    """The OMS sends the unacknowledged replacement as its own snapshot ORDER (orig = the order it replaces):
    risk holds it as a pending replace of that order, so the venue's answer leaves one open order."""
    h = Harness(ready=False)
    original = (51, 0, B, 200, REF)
    replacement = (52, 51, B, 500, REF + 100)
    snapshot(h, [replacement, original] if replacement_first else [original, replacement])
    portfolio = h.engine.portfolio
    assert portfolio.open_count == 1 and open_buy(h) == 500                 # worst case max(200, 500)
    assert portfolio.orders[51].replacement_id == 52
    assert portfolio.own_bid[AAPL] == REF + 100                             # both prices may rest until answered
    if answer == E.REPLACED:
        assert h.report(E.REPLACED, 52, orig=51, shares=500, leaves=500, price=REF + 100) == APPLIED
        assert list(portfolio.orders) == [52] and open_buy(h) == 500 and portfolio.own_bid[AAPL] == REF + 100
        survivor, leaves = 52, 500
    else:
        assert h.report(E.REJECTED, 52) == APPLIED
        assert list(portfolio.orders) == [51] and open_buy(h) == 200 and portfolio.own_bid[AAPL] == REF
        survivor, leaves = 51, 200
    assert portfolio.open_count == 1 and portfolio.replacements == {}
    assert h.report(E.CANCELED, survivor, shares=leaves, leaves=0) == APPLIED
    assert portfolio.open_count == 0 and open_buy(h) == 0 and portfolio.orders == {}
    assert portfolio.by_symbol[AAPL] == set()


def test_a_replacement_whose_original_is_gone_is_an_ordinary_open_order():
    """After REPLACED the OMS still remembers the order it replaced (orig != 0), but only the replacement is open."""
    h = Harness(ready=False)
    snapshot(h, [(62, 61, S, 300, REF)])
    portfolio = h.engine.portfolio
    assert portfolio.open_count == 1 and portfolio.open_sell[AAPL] == 300 and list(portfolio.orders) == [62]
    assert h.replace(62, 100, side=S, cid=63) == 0                          # replaceable like any open order
    assert h.report(E.REPLACED, 63, orig=62, side=S, shares=100, leaves=100) == APPLIED
    assert portfolio.open_count == 1 and portfolio.open_sell[AAPL] == 100


def test_orphan_orders_are_each_counted_and_closed_when_the_oms_reports_them_gone():
    base = ORPHAN_CLIENT_ID_BASE
    h = Harness(ready=False)
    snapshot(h, [(base, 0, B, 100, REF), (base + 1, 0, B, 100, REF)])
    portfolio = h.engine.portfolio
    assert portfolio.open_count == 2 and open_buy(h) == 200
    # an orphan the OMS adopts after the rebuild: its ACCEPTED opens it
    assert h.report(E.ACCEPTED, base + 2, shares=300, leaves=300) == APPLIED
    assert portfolio.open_count == 3 and open_buy(h) == 500
    assert h.report(E.CANCELED, base + 2, shares=300, leaves=0) == APPLIED
    assert h.report(E.EXECUTED, base, shares=100, leaves=0, position=100, cost=100 * REF) == APPLIED
    assert portfolio.open_count == 1 and open_buy(h) == 100 and list(portfolio.orders) == [base + 1]
    assert h.report(E.EXECUTED, base + 2, shares=1, leaves=0, position=101, cost=101 * REF) == UNKNOWN_ORDER


def test_orders_without_a_client_id_are_bad_reports_counted_one_by_one():
    """Client id 0 names no order: two of them are two open orders (fail closed), never one, and bad reports."""
    h = Harness(ready=False)
    assert h.snapshot(K.POSITION, 0) == SNAPSHOT_APPLIED
    assert h.snapshot(K.ORDER, 0, leaves=100) == BAD_REPORT
    assert h.snapshot(K.ORDER, 0, leaves=200) == BAD_REPORT
    assert h.snapshot(K.END, 0) == SNAPSHOT_COMPLETE
    portfolio = h.engine.portfolio
    assert portfolio.open_count == 2 and open_buy(h) == 300 and portfolio.orders_without_id == 2
    assert h.report(E.ACCEPTED, 0, shares=100, leaves=100) == BAD_REPORT    # a live one: counted too
    assert portfolio.open_count == 3 and open_buy(h) == 400 and portfolio.orders_without_id == 3
    assert h.report(E.EXECUTED, 0, shares=100, leaves=0, position=100, cost=100 * REF) == BAD_REPORT
    assert portfolio.position[AAPL] == 100 and portfolio.open_count == 3    # the position still counts


def test_the_days_realized_loss_from_the_snapshot_is_enforced_after_a_restart():
    """The OMS's journal keeps the day's realized P&L: after a rebuild the daily-loss check sees it."""
    h = Harness(ready=False)
    snapshot(h, [], position=0, realized=-50_001 * DOLLAR)                  # max_daily_loss is $50,000
    assert h.engine.portfolio.realized_total == -50_001 * DOLLAR
    assert h.new() == RiskReason.DAILY_LOSS
    assert h.engine.control.latched and h.engine.control.kill_reason == "DAILY_LOSS"


def test_own_best_prices_kept_incrementally_equal_a_recount_of_the_open_orders():
    """A new order or a replace's price joins the symbol's best bid/ask without the loop; after any
    mix of opens, replaces, fills, cancels, rejects and snapshots both must be what a recount of the
    open orders (and their pending replacement prices) says."""
    import random

    from appliance.risk.state import NO_ASK, Portfolio

    def recount(p: Portfolio, s: int) -> tuple[int, int]:
        bid, ask = 0, NO_ASK
        for o in p.by_symbol[s]:
            for price in (o.price, o.pending_price):
                if o.buy and price > bid:
                    bid = price
                elif not o.buy and price and price < ask:
                    ask = price
        return bid, ask

    rng = random.Random(16)
    p = Portfolio(3, order_capacity=16)
    next_id = 100
    for _ in range(4000):
        roll = rng.random()
        orders = list(p.orders.values())
        if roll < 0.35 or not orders:
            next_id += 1
            p.add_order(next_id, rng.randrange(3), rng.choice([B, S, ord("T")]), rng.randrange(1, 500),
                        rng.randrange(1, 60) * 100, 7)
        elif roll < 0.55:
            order = rng.choice(orders)
            if not order.replacement_id:
                next_id += 1
                p.add_replace(order, next_id, rng.randrange(1, 500), rng.randrange(1, 60) * 100)
        elif roll < 0.97:
            order = rng.choice(orders)
            event = rng.choice([ExecEvent.EXECUTED, ExecEvent.CANCELED, ExecEvent.REJECTED, ExecEvent.REPLACED])
            cid, orig, price, leaves = order.client_order_id, 0, order.price, rng.randrange(0, order.leaves + 1)
            if event == ExecEvent.REPLACED:
                if not order.replacement_id:
                    continue
                cid, orig, price = order.replacement_id, order.client_order_id, order.pending_price
            elif event == ExecEvent.REJECTED and order.replacement_id and rng.random() < 0.5:
                cid = order.replacement_id
            p.on_report(int(event), cid, orig, order.symbol_id, leaves, price, 0, 0, 0, order.side, 7)
        else:
            p.clear()
            for s in range(3):
                p.snapshot_position(s, 0, 0, 0)
        for s in range(3):
            assert (p.own_bid[s], p.own_ask[s]) == recount(p, s)
