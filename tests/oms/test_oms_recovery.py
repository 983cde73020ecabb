"""Recovery (``oms/recovery.py``) in-process: a journal written record by record through the real
journal, read back as the OMS reads it at a start, and rebuilt into orders, positions, owed
cancels, the token counter and the venue's sequence numbers; damaged and cut journals.

The checks go through ``rebuild`` and what it returns (orders by token, positions by symbol
index), never naming the order registry's classes; ``orders()`` is the one line that says where
``rebuild`` puts them."""
from __future__ import annotations

import os

import pytest

from appliance.messages.codes import Action, ControlEventKind, GateReason, Side
from appliance.oms import journal_records as jr
from appliance.oms.journal_records import ControlKind, RecordType, SessionEvent
from appliance.oms.journal import Journal
from appliance.oms.tokens import COUNTER_SIZE, PREFIX_SIZE, base36
from appliance.wire import ouch
from oms_rig import recover

SYMBOLS = ["AAPL", "MSFT", "SPY"]
AAPL, MSFT = 0, 1
SIZE = 1 << 20


def token(counter: int, prefix: int = 7) -> bytes:
    return base36(prefix, PREFIX_SIZE) + base36(counter, COUNTER_SIZE)


T1, T2, T3 = token(1), token(2), token(3)


# ---------------------------------------------------------------- the records, as the OMS journals them

def start(prefix: int = 7, counter: int = 1):
    return RecordType.SESSION, jr.SESSION.pack(SessionEvent.START, prefix=prefix, counter=counter)


def logged_in(session: bytes = b"S1", sequence: int = 1):
    return RecordType.SESSION, jr.SESSION.pack(SessionEvent.LOGIN_ACCEPTED, session=session, sequence=sequence)


def new_session(session: bytes, sequence: int):
    return RecordType.SESSION, jr.SESSION.pack(SessionEvent.NEW_SESSION, session=session, sequence=sequence)


def sent(tok: bytes, client_order_id: int, symbol: bytes = b"AAPL", side: int = Side.BUY, shares: int = 100,
         price: int = 1_900_000, action: int = Action.NEW, orig_token: bytes = b""):
    return RecordType.ORDER_SENT, jr.ORDER_SENT.pack(
        action=action, side=side, client_order_id=client_order_id, strategy_id=1, shares=shares, price=price,
        symbol=symbol.ljust(8), token=tok, orig_token=orig_token)


def venue(sequence: int, message: dict):
    return RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(sequence, ouch.encode_outbound({"timestamp": 0,
                                                                                                  **message}))


def accepted(sequence: int, tok: bytes, symbol: bytes = b"AAPL", side: str = "B", shares: int = 100,
             price: int = 1_900_000, ref: int = 1):
    return venue(sequence, {
        "type": "A", "order_token": tok.decode(), "buy_sell_indicator": side, "shares": shares,
        "stock": symbol.decode(), "price": price, "time_in_force": 0, "firm": "FIRM", "display": "Y",
        "order_reference_number": ref, "capacity": "A", "intermarket_sweep_eligibility": "N",
        "minimum_quantity": 0, "cross_type": "N", "order_state": "L", "bbo_weight_indicator": " "})


def executed(sequence: int, tok: bytes, shares: int, price: int = 1_900_000, match: int = 1):
    return venue(sequence, {"type": "E", "order_token": tok.decode(), "executed_shares": shares,
                            "execution_price": price, "liquidity_flag": "A", "match_number": match})


def control(kind: int, state: int = 0, value: int = 0, value2: int = 0, detail: bytes = b""):
    return RecordType.CONTROL, jr.CONTROL.pack(kind=kind, state=state, value=value, value2=value2, detail=detail)


def not_sent(action: int, tok: bytes, target: int = 0):
    return RecordType.NOT_SENT, jr.NOT_SENT.pack(action=action, target=target, token=tok)


# ---------------------------------------------------------------- a journal on disk, read back as at a start

def journal_of(tmp_path, records) -> str:
    path = str(tmp_path / "journal.bin")
    journal = Journal.open(path, SIZE, "page_cache")
    try:
        for i, (record_type, payload) in enumerate(records):
            journal.append(record_type, payload, 1_000 + i)
    finally:
        journal.close()
    return path


def day(tmp_path, *records):
    return recover(journal_of(tmp_path, records))


def orders(recovered):
    """The rebuilt order registry (the one place this file names where ``rebuild`` puts it)."""
    return recovered.orders


def state_of(recovered, tok: bytes) -> str:
    return orders(recovered).by_token[tok].state.name


# ---------------------------------------------------------------- orders and positions

def test_orders_fills_and_positions_come_back_as_they_were(tmp_path):
    r = day(tmp_path, start(), logged_in(),
            sent(T1, 11), accepted(1, T1), executed(2, T1, 40, match=5),
            sent(T2, 12, symbol=b"MSFT", side=Side.SELL, shares=50, price=3_000_000), accepted(3, T2, b"MSFT", "S", 50,
                                                                                           3_000_000, ref=2),
            executed(4, T2, 50, price=3_000_000, match=6),
            sent(T3, 13, shares=30))                                         # sent, never answered
    assert (r.records, r.orders_sent, r.exchange_messages, r.bad_records) == (9, 3, 4, 0)
    one = orders(r).by_token[T1]
    assert state_of(r, T1) == "PARTIALLY_FILLED" and (one.executed, one.leaves, one.client_order_id) == (40, 60, 11)
    assert state_of(r, T2) == "FILLED" and state_of(r, T3) == "PENDING_NEW"
    positions = orders(r).positions
    assert positions.position[AAPL] == 40 and positions.position[MSFT] == -50
    assert positions.fills[AAPL] == 1 and positions.filled_shares[MSFT] == 50
    assert [o.token for o in r.unacknowledged] == [T3]                      # the agent cancels it by token
    assert orders(r).by_client[13] is orders(r).by_token[T3]


def test_a_fill_already_applied_is_not_counted_twice(tmp_path):
    r = day(tmp_path, sent(T1, 11), accepted(1, T1), executed(2, T1, 40, match=5), executed(3, T1, 40, match=5))
    assert orders(r).positions.position[AAPL] == 40 and orders(r).by_token[T1].executed == 40


def test_a_cancel_journaled_but_never_answered_is_outstanding_and_one_never_sent_is_owed(tmp_path):
    asked = day(tmp_path, sent(T1, 11), accepted(1, T1), sent(T1, 0, shares=0, action=Action.CANCEL))
    assert state_of(asked, T1) == "PENDING_CANCEL" and [o.token for o in asked.unacknowledged] == [T1]
    os.unlink(tmp_path / "journal.bin")
    undone = day(tmp_path, sent(T1, 11), accepted(1, T1), sent(T1, 0, shares=0, action=Action.CANCEL),
                 not_sent(Action.CANCEL, T1))
    assert state_of(undone, T1) == "LIVE" and undone.unacknowledged == [] and undone.not_sent == 1
    assert [o.token for o in orders(undone).cancel_owed] == [T1]              # sent as soon as the session is up


def test_a_new_order_whose_bytes_never_left_is_rejected_not_left_open(tmp_path):
    r = day(tmp_path, sent(T1, 11), not_sent(Action.NEW, T1))
    assert state_of(r, T1) == "REJECTED" and r.unacknowledged == [] and orders(r).open_orders == 0


def test_a_replace_rebuilds_the_new_order_against_the_old_and_an_unknown_target_is_counted(tmp_path):
    r = day(tmp_path, sent(T1, 11), accepted(1, T1),
            sent(T2, 12, shares=200, price=1_800_000, action=Action.REPLACE, orig_token=T1),
            sent(T3, 13, action=Action.REPLACE, orig_token=token(99)))
    new = orders(r).by_token[T2]
    assert new.replaces is orders(r).by_token[T1] and (new.shares, new.price, new.orig_client_order_id) == (200, 1_800_000, 11)
    assert r.unknown_orders == 1 and T3 in orders(r).by_token                  # kept: its token stays used


def test_an_order_in_a_symbol_the_layout_dropped_keeps_its_token_but_no_position(tmp_path):
    r = day(tmp_path, sent(T1, 11, symbol=b"GONE"), accepted(1, T1, b"GONE"), executed(2, T1, 10))
    assert r.unknown_symbols == 1 and orders(r).by_token[T1].symbol_id < 0
    assert list(orders(r).positions.position) == [0, 0, 0] and r.next_counter == 2


# ---------------------------------------------------------------- cancels owed from control records

@pytest.mark.parametrize("record,owed", [
    (control(ControlEventKind.KILL), {T1, T2}),
    (control(ControlEventKind.KILL_SYMBOL, detail=b"MSFT"), {T2}),
    (control(ControlEventKind.KILL_SYMBOL, detail=b"NOPE"), set()),
    (control(ControlKind.GATE_CHANGED, state=0, value=GateReason.KILL_SWITCH, value2=4), {T1, T2}),
    (control(ControlKind.GATE_CHANGED, state=0, value=GateReason.RISK_UNHEALTHY, value2=4), {T1, T2}),
    (control(ControlKind.GATE_CHANGED, state=0, value=GateReason.MARKET_DATA, value2=4), {T1, T2}),
    (control(ControlKind.GATE_CHANGED, state=0, value=GateReason.OPERATOR | GateReason.CLOCK_UNHEALTHY,
             value2=4), set()),
    (control(ControlKind.GATE_CHANGED, state=1, value=0, value2=4), set()),
    (control(ControlEventKind.RESET), set()),
], ids=["kill", "kill-symbol", "kill-unknown-symbol", "gate-kill", "gate-risk", "gate-market-data",
        "gate-operator-clock", "gate-open", "reset"])
def test_a_kill_or_a_gate_closed_for_it_leaves_every_open_order_it_covers_owing_a_cancel(tmp_path, record, owed):
    r = day(tmp_path, sent(T1, 11), accepted(1, T1), sent(T2, 12, symbol=b"MSFT"), accepted(2, T2, b"MSFT", ref=2),
            sent(T3, 13), accepted(3, T3, ref=3), executed(4, T3, 100), record)
    assert {o.token for o in orders(r).cancel_owed} == owed                   # T3 is filled: nothing to cancel
    if jr.CONTROL.parse(record[1]).kind == ControlKind.GATE_CHANGED:
        assert r.last_gate_epoch == 4                                       # no second cancel-all for this epoch


def test_the_oms_own_cancel_alls_are_counted(tmp_path):
    r = day(tmp_path, control(ControlKind.CANCEL_ALL, value=2, value2=1), control(ControlKind.CANCEL_ALL, value=0,
                                                                                   value2=2))
    assert r.cancel_alls == 2


# ---------------------------------------------------------------- tokens, sessions, sequence numbers

def test_the_token_counter_and_prefix_carry_on_past_everything_the_journal_saw(tmp_path):
    r = day(tmp_path, start(prefix=7, counter=1), sent(T2, 12), start(prefix=9, counter=50), sent(token(60, 9), 13))
    assert r.last_prefix == 9 and r.started == [7, 9]
    assert r.next_counter == 61                                             # past the highest token, not the START
    os.unlink(tmp_path / "journal.bin")
    r = day(tmp_path, start(counter=500), sent(T1, 11))
    assert r.next_counter == 500                                            # a START ahead of every token wins


def test_the_next_sequence_number_follows_the_highest_venue_message_and_a_new_session_restarts_it(tmp_path):
    r = day(tmp_path, logged_in(b"S1", 1), sent(T1, 11), accepted(1, T1), sent(T2, 12), accepted(7, T2, ref=2),
            executed(3, T1, 10))
    assert r.session_name == "S1" and r.next_sequence_number == 8
    os.unlink(tmp_path / "journal.bin")
    r = day(tmp_path, logged_in(b"S1", 1), sent(T1, 11), accepted(1, T1), sent(T2, 12), accepted(7, T2, ref=2),
            new_session(b"S2", 1), sent(T3, 13), accepted(1, T3, ref=3))
    assert r.session_name == "S2" and r.new_sessions == 1 and r.next_sequence_number == 2
    assert state_of(r, T1) == state_of(r, T2) == "CANCELED" and state_of(r, T3) == "LIVE"


def test_an_empty_journal_starts_the_day_fresh(tmp_path):
    r = day(tmp_path)
    assert (r.records, r.next_counter, r.next_sequence_number, r.session_name, r.ended) == (0, 1, 1, "", False)


def test_end_of_session_is_remembered(tmp_path):
    r = day(tmp_path, logged_in(), (RecordType.SESSION, jr.SESSION.pack(SessionEvent.END_OF_SESSION)))
    assert r.ended


# ---------------------------------------------------------------- bad and cut journals

def test_records_it_cannot_read_are_counted_and_the_rest_still_applied(tmp_path, caplog):
    order_sent = sent(T2, 12)[1]
    r = day(tmp_path, sent(T1, 11), (99, b"from a later version"), (RecordType.ORDER_SENT, order_sent[:20]),
            (RecordType.CONTROL, b""), (RecordType.REJECTED_LOCALLY, jr.REJECTED_LOCALLY.pack(reason=3)),
            accepted(1, T1), executed(2, T1, 100))
    assert r.bad_records == 3 and r.records == 7                            # REJECTED_LOCALLY is not bad: nothing to do
    assert state_of(r, T1) == "FILLED" and orders(r).positions.position[AAPL] == 100
    assert T2 not in orders(r).by_token
    unreadable = [m for m in caplog.messages if "unreadable" in m]
    assert len(unreadable) == 3                                            # every bad record, by number
    assert any("type 99" in m and "does not know" in m for m in unreadable)   # the unknown type too


def test_a_journal_cut_inside_its_last_record_recovers_everything_before_it(tmp_path):
    path = journal_of(tmp_path, [sent(T1, 11), accepted(1, T1), executed(2, T1, 40)])
    whole = recover(path)
    journal = Journal.open(path, SIZE, "page_cache")
    last = list(journal.records())[-1].offset
    journal.close()
    with open(path, "r+b") as f:                                             # the fill's record half written
        f.seek(last + 20)
        f.write(b"\0" * 40)
    cut = recover(path)
    assert orders(whole).positions.position[AAPL] == 40 and whole.next_sequence_number == 3
    assert cut.records == 2 and orders(cut).positions.position[AAPL] == 0 and state_of(cut, T1) == "LIVE"
    assert cut.next_sequence_number == 2                                     # the venue replays the fill
