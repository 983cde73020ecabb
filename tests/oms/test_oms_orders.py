"""The order state machine, driven by hand-built OUCH messages: every transition and every illegal one;
replaces, reduces, cancel rejects, broken trades, orphans; positions and average prices."""
from __future__ import annotations

import itertools

import pytest

from appliance.messages.codes import ExecEvent, RejectSource
from appliance.oms.orders import LEGAL, OrderEvent, OrderRegistry, OrderState
from appliance.oms.positions import PositionLedger
from appliance.wire import ouch

S, E = OrderState, OrderEvent
STOCK = "AAPL"
_refs = itertools.count(1)
_matches = itertools.count(1000)


def token(n: int) -> bytes:
    return f"TOKEN{n:09d}".encode()


def msg(fields: dict) -> bytes:
    return ouch.encode_outbound({"timestamp": 1_000, **fields})


def accepted(tok: bytes, shares: int = 100, price: int = 1_900_000, side: str = "B", state: str = "L") -> bytes:
    return msg({"type": "A", "order_token": tok.decode(), "buy_sell_indicator": side, "shares": shares,
                "stock": STOCK, "price": price, "time_in_force": 99998, "firm": "ALGO", "display": "Y",
                "order_reference_number": next(_refs), "capacity": "A", "intermarket_sweep_eligibility": "N",
                "minimum_quantity": 0, "cross_type": "N", "order_state": state, "bbo_weight_indicator": " "})


def replaced(new: bytes, previous: bytes, shares: int = 100, price: int = 1_890_000, side: str = "B") -> bytes:
    return msg({"type": "U", "replacement_order_token": new.decode(), "buy_sell_indicator": side, "shares": shares,
                "stock": STOCK, "price": price, "time_in_force": 99998, "firm": "ALGO", "display": "Y",
                "order_reference_number": next(_refs), "capacity": "A", "intermarket_sweep_eligibility": "N",
                "minimum_quantity": 0, "cross_type": "N", "order_state": "L",
                "previous_order_token": previous.decode(), "bbo_weight_indicator": " "})


def canceled(tok: bytes, shares: int, reason: str = "U") -> bytes:
    return msg({"type": "C", "order_token": tok.decode(), "decrement_shares": shares, "reason": reason})


def executed(tok: bytes, shares: int, price: int = 1_900_000, match: int | None = None) -> bytes:
    return msg({"type": "E", "order_token": tok.decode(), "executed_shares": shares, "execution_price": price,
                "liquidity_flag": "A", "match_number": next(_matches) if match is None else match})


def rejected(tok: bytes, reason: str = "X") -> bytes:
    return msg({"type": "J", "order_token": tok.decode(), "reason": reason})


def broken(tok: bytes, match: int) -> bytes:
    return msg({"type": "B", "order_token": tok.decode(), "match_number": match, "reason": "E"})


def cancel_reject(tok: bytes) -> bytes:
    return msg({"type": "I", "order_token": tok.decode()})


def cancel_pending(tok: bytes) -> bytes:
    return msg({"type": "P", "order_token": tok.decode()})


class Recorder:
    def __init__(self):
        self.reports = []

    def __call__(self, event, order, shares, price, match, reason, source, t_exchange_ns, liquidity=0):
        self.reports.append((ExecEvent(event), order.client_order_id, shares, price, match, reason, source,
                             order.leaves))


@pytest.fixture
def book():
    return OrderRegistry(["AAPL", "MSFT"], report=Recorder())


_numbers = itertools.count(1)


def new_order(book: OrderRegistry, shares: int = 100, side: int = ord("B")):
    n = next(_numbers)
    return book.add_new(token(n), n, 7, 0, b"AAPL    ", side, shares, 1_900_000, 99998, 0, 1_000_000)


def order_in(book: OrderRegistry, state: OrderState):
    """An order brought to ``state`` by the messages that lead there, and its last fill's match."""
    order = new_order(book)
    match = None
    if state is S.PENDING_NEW:
        return order, match
    if state is S.REJECTED:
        book.apply_ouch(rejected(order.token), 0)
        return order, match
    book.apply_ouch(accepted(order.token), 0)
    if state is S.PARTIALLY_FILLED:
        match = next(_matches)
        book.apply_ouch(executed(order.token, 40, match=match), 0)
    elif state is S.FILLED:
        match = next(_matches)
        book.apply_ouch(executed(order.token, 100, match=match), 0)
    elif state is S.PENDING_CANCEL:
        book.request_cancel(order, 0)
    elif state is S.CANCELED:
        book.request_cancel(order, 0)
        book.apply_ouch(canceled(order.token, 100), 0)
    elif state is S.REPLACED:
        replacement = book.add_replacement(order, token(next(_numbers)), 999_000 + next(_numbers), 100, 1_890_000,
                                           99998)
        book.apply_ouch(replaced(replacement.token, order.token), 0)
    assert order.state is state
    return order, match


def apply_event(book: OrderRegistry, order, event: OrderEvent, match):
    """Deliver ``event`` to ``order`` as the venue (or the OMS, for a cancel request) would."""
    if event is E.ACCEPT:
        book.apply_ouch(accepted(order.token), 0)
    elif event is E.REPLACE_ACK:
        # the order is acknowledged as somebody's replacement
        book.apply_ouch(replaced(order.token, token(999_999_999)), 0)
    elif event is E.REPLACE_DONE:
        replacement = book.add_replacement(order, token(next(_numbers)), 888_000 + next(_numbers), 100, 1_890_000,
                                           99998)
        book.apply_ouch(replaced(replacement.token, order.token), 0)
    elif event is E.EXECUTE:
        book.apply_ouch(executed(order.token, 10), 0)
    elif event is E.VENUE_CANCEL:
        book.apply_ouch(canceled(order.token, 10, "S"), 0)
    elif event is E.REJECT:
        book.apply_ouch(rejected(order.token), 0)
    elif event is E.BREAK:
        book.apply_ouch(broken(order.token, match if match is not None else 1), 0)
    elif event is E.CANCEL_REQUEST:
        book.request_cancel(order, 0)
    elif event is E.CANCEL_REJECT:
        book.apply_ouch(cancel_reject(order.token), 0)
    elif event is E.CANCEL_PENDING:
        book.apply_ouch(cancel_pending(order.token), 0)


# The resulting state of every legal (state, event) in the fixtures above (10 shares executed or
# canceled out of 100; a partially filled order has 40 filled; a broken trade never changes the
# state); None: illegal (counted, unchanged).
EXPECTED = {
    S.PENDING_NEW: {E.ACCEPT: S.LIVE, E.REPLACE_ACK: S.LIVE, E.REJECT: S.REJECTED, E.CANCEL_REQUEST: S.PENDING_CANCEL},
    S.LIVE: {E.EXECUTE: S.PARTIALLY_FILLED, E.VENUE_CANCEL: S.LIVE, E.REPLACE_DONE: S.REPLACED, E.BREAK: S.LIVE,
             E.CANCEL_REQUEST: S.PENDING_CANCEL, E.CANCEL_PENDING: S.LIVE},
    S.PARTIALLY_FILLED: {E.EXECUTE: S.PARTIALLY_FILLED, E.VENUE_CANCEL: S.PARTIALLY_FILLED,
                         E.REPLACE_DONE: S.REPLACED, E.BREAK: S.PARTIALLY_FILLED, E.CANCEL_REQUEST: S.PENDING_CANCEL,
                         E.CANCEL_PENDING: S.PARTIALLY_FILLED},
    S.PENDING_CANCEL: {E.EXECUTE: S.PENDING_CANCEL, E.VENUE_CANCEL: S.PENDING_CANCEL, E.REPLACE_DONE: S.REPLACED,
                       E.BREAK: S.PENDING_CANCEL, E.CANCEL_REQUEST: S.PENDING_CANCEL, E.CANCEL_REJECT: S.LIVE,
                       E.CANCEL_PENDING: S.PENDING_CANCEL},
    S.FILLED: {E.BREAK: S.FILLED, E.CANCEL_REJECT: S.FILLED},
    S.CANCELED: {E.BREAK: S.CANCELED, E.CANCEL_REJECT: S.CANCELED},
    S.REJECTED: {E.CANCEL_REJECT: S.REJECTED},
    S.REPLACED: {E.BREAK: S.REPLACED, E.CANCEL_REJECT: S.REPLACED},
}


@pytest.mark.parametrize("state,event", list(itertools.product(OrderState, OrderEvent)),
                         ids=lambda v: v.name)
def test_every_transition_and_every_illegal_one(book, state, event):
    order, match = order_in(book, state)
    before_illegal = book.illegal_transitions
    executed_before = order.executed
    apply_event(book, order, event, match)
    expected = EXPECTED[state].get(event)
    if expected is None:
        assert book.illegal_transitions == before_illegal + 1, f"{state.name} + {event.name} should be illegal"
        if event is not E.EXECUTE:
            assert order.state is state
    else:
        assert book.illegal_transitions == before_illegal, f"{state.name} + {event.name} should be legal"
        assert order.state is expected, f"{state.name} + {event.name} -> {order.state.name}, not {expected.name}"
        assert (state, event) in LEGAL
    if event is E.EXECUTE:
        assert order.executed == executed_before + 10       # the venue says we traded: always applied
    if event is E.BREAK and expected is not None and match is not None:
        assert order.executed == executed_before - (40 if state is S.PARTIALLY_FILLED else 100)


def test_open_order_counts_follow_the_states(book):
    a, b, c = new_order(book), new_order(book), new_order(book)
    assert book.open_orders == 3 and book.positions.open_orders[0] == 3
    book.apply_ouch(accepted(a.token), 0)
    book.apply_ouch(rejected(b.token), 0)
    book.apply_ouch(accepted(c.token, state="D"), 0)
    book.apply_ouch(executed(c.token, 100), 0)
    assert book.open_orders == 1 and book.positions.open_orders[0] == 1 and book.open_orders_list() == [a]
    assert book.positions.rejects[0] == 1 and book.positions.orders_sent[0] == 3


def test_a_replace_answered_by_cancel_reject_rejects_the_replacement_only(book):
    old = new_order(book)
    book.apply_ouch(accepted(old.token), 0)
    new = book.add_replacement(old, token(next(_numbers)), 5001, 50, 1_880_000, 99998)
    book.apply_ouch(cancel_reject(old.token), 0)
    assert new.state is S.REJECTED and old.state is S.LIVE and not old.requests
    event, client, *_rest, reason, source, _leaves = book.report.reports[-1]
    assert (event, client, reason, source) == (ExecEvent.REJECTED, 5001, ord("I"), RejectSource.EXCHANGE)
    assert book.in_flight == set()


def test_a_replacement_rejected_by_the_venue_leaves_the_old_order_working(book):
    old = new_order(book)
    book.apply_ouch(accepted(old.token), 0)
    new = book.add_replacement(old, token(next(_numbers)), 5002, 50, 0, 99998)
    book.apply_ouch(rejected(new.token, "X"), 0)
    assert new.state is S.REJECTED and old.state is S.LIVE and not old.requests


def test_a_replace_moves_the_open_order_to_the_replacement(book):
    old = new_order(book)
    book.apply_ouch(accepted(old.token), 0)
    book.apply_ouch(executed(old.token, 30), 0)
    new = book.add_replacement(old, token(next(_numbers)), 5003, 80, 1_880_000, 99998)
    book.apply_ouch(replaced(new.token, old.token, shares=80, price=1_880_000), 0)
    assert old.state is S.REPLACED and old.leaves == 0
    assert new.state is S.LIVE and new.leaves == 80 and new.orig_client_order_id == old.client_order_id
    assert book.open_orders_list() == [new]
    event, client, shares, price, *_ = book.report.reports[-1]
    assert (event, client, shares, price) == (ExecEvent.REPLACED, 5003, 80, 1_880_000)


def test_a_reduce_made_moot_by_a_fill_is_answered(book):
    order = new_order(book)
    book.apply_ouch(accepted(order.token), 0)
    book.request_cancel(order, 50)                       # reduce to 50
    assert order.state is S.PENDING_CANCEL
    book.apply_ouch(executed(order.token, 60), 0)        # leaves 40 <= 50: the venue will say nothing
    assert order.state is S.PARTIALLY_FILLED and not order.requests and order not in book.in_flight


def test_a_reduce_answered_by_canceled_keeps_the_order_working(book):
    order = new_order(book)
    book.apply_ouch(accepted(order.token), 0)
    book.request_cancel(order, 30)
    book.apply_ouch(canceled(order.token, 70), 0)
    assert order.state is S.LIVE and order.leaves == 30 and order.canceled == 70


def test_a_cancel_reject_for_an_order_the_venue_never_had_rejects_it(book):
    order = new_order(book)
    book.request_cancel(order, 0)                        # queried by cancel: no answer ever came
    book.apply_ouch(cancel_reject(order.token), 0)
    assert order.state is S.REJECTED and book.open_orders == 0
    assert book.report.reports[-1][0] is ExecEvent.REJECTED


def test_a_fill_is_never_applied_twice(book):
    order = new_order(book)
    book.apply_ouch(accepted(order.token), 0)
    fill = executed(order.token, 10, match=77_777)
    book.apply_ouch(fill, 0)
    book.apply_ouch(fill, 0)
    assert order.executed == 10 and book.duplicate_fills == 1 and book.positions.position[0] == 10


def test_unknown_tokens_are_counted_and_an_unknown_accepted_is_adopted(book):
    book.apply_ouch(executed(b"NOBODY00000001", 10), 0)
    assert book.unknown_tokens == 1 and book.positions.position[0] == 0
    book.apply_ouch(accepted(b"ORPHAN00000001", shares=200, side="S"), 0)
    book.apply_ouch(executed(b"ORPHAN00000001", 50), 0)
    assert book.orphans == 1 and book.positions.position[0] == -50


def test_bad_messages_are_counted_not_raised(book):
    assert book.apply_ouch(b"", 0) == 0
    assert book.apply_ouch(b"Q" * 10, 0) == 0
    assert book.apply_ouch(accepted(token(1))[:-1], 0) == 0
    assert book.bad_messages == 3


def test_exchange_timestamps_become_epoch_ns(book):
    order = new_order(book)
    day = 20_000 * 86_400 * 10**9
    book.apply_ouch(msg({"type": "J", "order_token": order.token.decode(), "reason": "X", "timestamp": 3_600 * 10**9}),
                    day + 3_601 * 10**9)
    assert book.report.reports[-1] is not None
    assert book.by_token[order.token].state is S.REJECTED


# ------------------------------------------------------------------ positions

def test_positions_average_price_and_realized_pnl():
    p = PositionLedger(1)
    p.fill(0, 100, 100_000)            # buy 100 @ 10
    p.fill(0, 100, 120_000)            # buy 100 @ 12: average 11
    assert (p.position[0], p.cost_basis[0]) == (200, 22_000_000) and p.average_price(0) == 11.0
    p.fill(0, -150, 130_000)           # sell 150 @ 13: +2 x 150
    assert p.position[0] == 50 and p.realized_pnl[0] == 150 * 20_000 and p.average_price(0) == 11.0
    p.fill(0, -100, 90_000)            # sell 100 @ 9: closes 50 (-2 x 50), opens 50 short @ 9
    assert p.position[0] == -50 and p.realized_pnl[0] == 150 * 20_000 - 50 * 20_000
    assert p.cost_basis[0] == -50 * 90_000 and p.average_price(0) == 9.0
    p.fill(0, 50, 80_000)              # buy 50 @ 8: short closed at a 1.00 profit per share
    assert p.position[0] == 0 and p.cost_basis[0] == 0 and p.realized_pnl[0] == 2_000_000 + 50 * 10_000


def test_a_broken_trade_reverses_the_fill(book):
    order = new_order(book)
    book.apply_ouch(accepted(order.token), 0)
    book.apply_ouch(executed(order.token, 100, 1_900_000, match=424_242), 0)
    assert book.positions.position[0] == 100
    book.apply_ouch(broken(order.token, 424_242), 0)
    assert book.positions.position[0] == 0 and book.positions.cost_basis[0] == 0 and order.executed == 0
    assert book.positions.fills[0] == 0 and book.report.reports[-1][0] is ExecEvent.BROKEN


def test_the_liquidity_flag_of_an_execution_reaches_its_report_and_the_broken_trade_s(book):
    reports = []
    book.report = lambda event, order, shares, price, match, reason, source, t_exchange_ns, liquidity: \
        reports.append((ExecEvent(event), shares, price, match, liquidity))
    order = new_order(book)
    book.apply_ouch(accepted(order.token), 0)
    for flag, match in (("R", 501), ("k", 502)):
        book.apply_ouch(msg({"type": "E", "order_token": order.token.decode(), "executed_shares": 30,
                             "execution_price": 1_900_000, "liquidity_flag": flag, "match_number": match}), 0)
    book.apply_ouch(broken(order.token, 501), 0)
    assert reports == [(ExecEvent.ACCEPTED, 100, 1_900_000, 0, 0),
                       (ExecEvent.EXECUTED, 30, 1_900_000, 501, ord("R")),
                       (ExecEvent.EXECUTED, 30, 1_900_000, 502, ord("k")),
                       (ExecEvent.BROKEN, 30, 1_900_000, 501, ord("R"))]


def test_a_broken_trade_takes_its_fill_out_of_the_day_exactly(book):
    """Undoing a fill as an opposite trade realized a P&L that never was (a broken closing fill) and left the
    cost at the average instead of the fills that remain (a broken opening fill)."""
    order = new_order(book, shares=300)
    book.apply_ouch(accepted(order.token, shares=300), 0)
    book.apply_ouch(executed(order.token, 40, 1_900_000, match=601), 0)
    book.apply_ouch(executed(order.token, 60, 1_899_900, match=602), 0)
    book.apply_ouch(broken(order.token, 601), 0)                 # the opening fill at 190.00 never was
    p = book.positions
    assert (p.position[0], p.cost_basis[0], p.realized_pnl[0]) == (60, 60 * 1_899_900, 0)
    seller = new_order(book, shares=50, side=ord("S"))
    book.apply_ouch(accepted(seller.token, shares=50, side="S"), 0)
    book.apply_ouch(executed(seller.token, 50, 1_910_000, match=603), 0)
    assert p.realized_pnl[0] == 50 * (1_910_000 - 1_899_900)
    book.apply_ouch(broken(seller.token, 603), 0)                # the closing sale never was: nothing realized
    assert (p.position[0], p.cost_basis[0], p.realized_pnl[0]) == (60, 60 * 1_899_900, 0)
    assert p.fills[0] == 1 and p.filled_shares[0] == 60


def test_both_sides_of_a_self_match_are_fills_of_their_own(book):
    buyer, seller = new_order(book), new_order(book, side=ord("S"))
    for order, side in ((buyer, "B"), (seller, "S")):
        book.apply_ouch(accepted(order.token, side=side), 0)
    book.apply_ouch(executed(buyer.token, 100, 1_900_000, match=700), 0)
    book.apply_ouch(executed(seller.token, 100, 1_900_000, match=700), 0)     # the same match number
    assert book.duplicate_fills == 0 and book.positions.fills[0] == 2 and book.positions.position[0] == 0
    book.apply_ouch(broken(buyer.token, 700), 0)
    assert book.positions.position[0] == -100 and book.bad_messages == 0
