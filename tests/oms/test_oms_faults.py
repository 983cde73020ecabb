"""The OMS under faults, in this process against a scripted venue (issue 15's behaviours):

- a cancel-all that was owed is never forgotten: the session down when the gate closed, or the
  OMS killed between journaling a kill and sending the cancels;
- an order whose symbol the layout no longer lists is still cancelled by token;
- the OMS is ready only when the venue's replay is known to be drained, and a login that skips
  sequence numbers keeps new orders out;
- bytes journaled as sent but never handed to the kernel are rejected back (or the cancel owed);
- a venue that lost its session (restarted) is noticed and the old orders are gone;
- every refusal has its own reason; orphans each get their own client id.
"""
from __future__ import annotations

import time

import pytest

from appliance.messages.codes import (ORPHAN_CLIENT_ID_BASE, ControlEventKind, ExecEvent, GateReason, OmsReason,
                                      SnapshotKind)
from appliance.oms import journal_records as jr
from appliance.oms.journal_records import RecordType, SessionEvent
from appliance.oms.journal import Journal
from appliance.oms.journal_format import read_records
from appliance.wire import ouch
from oms_rig import accept_all, accepted, pump, ready, setup  # noqa: F401 (setup: a fixture)

E = ExecEvent


def live_orders(s, agent, count: int, symbol: str = "SPY") -> list[str]:
    """``count`` orders accepted by the venue; their tokens."""
    first = len(s.venue.messages("O"))
    for client in range(1, count + 1):
        s.rig.new(client, symbol, "B", 100, 5_000_000 - client * 100)
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == count and len(s.rig.events()) >= count,
         message=f"{count} orders accepted")
    return [m["order_token"] for m in s.venue.messages("O")[first:]]


def session_down(s, agent) -> None:
    s.venue.accepting.clear()
    s.venue.drop()
    pump(agent, lambda: s.rig.control.get("oms_session_up") == 0, message="the session down")


def journal_events(s) -> list:
    records, _found, _header = read_records(s.journal)
    return records


# ------------------------------------------------------------------ a cancel-all owed is never forgotten

def test_a_gate_closed_for_the_kill_switch_while_the_session_is_down_cancels_after_an_oms_restart(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    tokens = live_orders(s, agent, 3)
    session_down(s, agent)
    s.rig.gate(False, GateReason.KILL_SWITCH)
    pump(agent, lambda: any(r.type == RecordType.CONTROL
                            and jr.CONTROL.parse(r.payload).kind == jr.ControlKind.GATE_CHANGED
                            and jr.CONTROL.parse(r.payload).value & GateReason.KILL_SWITCH for r in journal_events(s)),
         message="the gate change journaled")
    s.crash(agent)                                  # before the session came back
    s.venue.accepting.set()
    agent = s.start()
    pump(agent, lambda: sorted(m["order_token"] for m in s.venue.messages("X")) == sorted(tokens), timeout=15,
         message="a cancel for every order live at the venue")
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 0, message="no open order")


def test_a_kill_journaled_by_an_oms_that_died_before_cancelling_is_carried_out_after_the_restart(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    tokens = live_orders(s, agent, 3)

    class Died(Exception):
        pass
    append = agent.journal.append

    def append_then_die(record_type, payload, *args, **kwargs):
        sequence = append(record_type, payload, *args, **kwargs)
        if record_type == RecordType.CONTROL and jr.CONTROL.parse(payload).kind == ControlEventKind.KILL:
            raise Died()                            # the kill is on disk; the cancels never went out
        return sequence
    agent.journal.append = append_then_die
    s.rig.control_event(ControlEventKind.KILL, operator=b"alice")
    with pytest.raises(Died):
        pump(agent, lambda: False, timeout=5, message="the kill")
    assert s.venue.messages("X") == []
    s.crash(agent)
    agent = s.start()
    pump(agent, lambda: sorted(m["order_token"] for m in s.venue.messages("X")) == sorted(tokens), timeout=15,
         message="a cancel for every order live at the venue")
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 0, message="no open order")
    assert s.rig.counter("oms.cancel_all") >= 1


def test_a_symbol_kill_cancels_that_symbols_orders_only(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    live_orders(s, agent, 2, "SPY")
    s.rig.new(10, "AAPL", "B", 100, 1_800_000)
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 3, message="three orders")
    s.rig.control_event(ControlEventKind.KILL_SYMBOL, value=2, operator=b"alice")          # SPY
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 1, message="SPY's orders cancelled")
    assert {m["order_token"] for m in s.venue.messages("X")} == {m["order_token"] for m in s.venue.messages("O")
                                                                  if m["stock"] == "SPY"}


# ------------------------------------------------------------------ the kill path never crashes

def test_an_order_in_a_symbol_the_layout_no_longer_lists_is_cancelled_by_token(setup):
    s = setup(accept_all)
    token = b"ZZTOKEN0000001"
    journal = Journal.open(s.journal, 4 << 20, "page_cache")
    now = time.time_ns()
    journal.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(1, ord("B"), 0, 99998, 77, 0, 1, 9, 100, 1_000_000,
                                                            b"ZZZZ    ", token), now)
    accepted_message = ouch.encode_outbound({"timestamp": 0, **accepted(
        {"order_token": token.decode(), "buy_sell_indicator": "B", "shares": 100, "stock": "ZZZZ",
         "price": 1_000_000, "time_in_force": 99998, "firm": "ALGO"})})
    s.venue.store.append(accepted_message)
    journal.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(1, accepted_message), now)
    journal.close()
    agent = s.start()
    ready(agent, s.rig)
    assert s.rig.control.get("oms_open_orders") == 1
    s.rig.control_event(ControlEventKind.KILL, operator=b"alice")
    pump(agent, lambda: [m["order_token"] for m in s.venue.messages("X")] == [token.decode()],
         message="the cancel by token")
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 0, message="the order cancelled")


# ------------------------------------------------------------------ ready only when the replay is drained

def test_the_oms_is_ready_only_after_the_venues_slow_replay_arrived(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    [token] = live_orders(s, agent, 1)
    s.crash(agent)
    s.venue.store.append(ouch.encode_outbound({"type": "E", "timestamp": 0, "order_token": token,
                                               "executed_shares": 100, "execution_price": 4_999_900,
                                               "liquidity_flag": "R", "match_number": 77}))
    s.venue.replay_delay_s = 0.4                    # the fill arrives 0.4 s after the LoginAccepted
    agent = s.start()
    ready(agent, s.rig)
    assert s.rig.position("SPY").position == 100, "ready before the venue's replay was applied"
    assert agent.session.replayed_by


def test_a_login_that_skips_sequence_numbers_keeps_new_orders_out(setup):
    s = setup(accept_all)
    for _ in range(5):
        s.venue.store.append(ouch.encode_outbound({"type": "S", "timestamp": 0, "event_code": "S"}))
    s.venue.login_hook = lambda fields: {**fields, "requested_sequence_number": 4}   # asked 1, gets 4
    agent = s.start()
    pump(agent, lambda: s.rig.control.get("oms_session_up") == 1, message="logged in")
    pump(agent, lambda: agent.session.replayed, message="the replay drained")
    for _ in range(100):
        pump(agent)
    assert s.rig.control.get("oms_ready") == 0
    assert s.rig.counter("oms.session.sequence_gaps") == 1
    s.rig.new(1, "SPY", "B", 100, 5_000_000)
    pump(agent, lambda: E.REJECTED_LOCALLY in s.rig.events(1), message="the order refused")
    assert s.rig.reports_of(1)[-1]["reason"] == OmsReason.SEQUENCE_GAP
    assert s.venue.messages("O") == []


# ------------------------------------------------------------------ what was journaled as sent was sent

class StuckSocket:
    """A socket whose send buffer is full: nothing is handed to the kernel."""

    def __init__(self, sock):
        self._sock = sock

    def send(self, data):
        raise BlockingIOError()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_an_order_queued_when_the_connection_is_lost_is_rejected_back_not_booked_live(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    agent.session.sock = StuckSocket(agent.session.sock)
    s.rig.new(1, "SPY", "B", 100, 5_000_000)
    pump(agent, lambda: agent.orders.by_client.get(1) is not None, message="the order journaled and queued")
    s.venue.drop()
    pump(agent, lambda: E.REJECTED_LOCALLY in s.rig.events(1), timeout=5, message="the order rejected back")
    assert s.rig.reports_of(1)[-1]["reason"] == OmsReason.NOT_SENT
    assert s.rig.control.get("oms_open_orders") == 0
    ready(agent, s.rig)
    assert s.venue.messages("O") == []              # it never reached the venue
    assert any(r.type == RecordType.NOT_SENT for r in journal_events(s))
    s.crash(agent)                                  # and a restart agrees: not an open order
    agent = s.start()
    ready(agent, s.rig)
    assert s.rig.control.get("oms_open_orders") == 0


def test_a_cancel_queued_when_the_connection_is_lost_is_sent_after_the_reconnect(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    [token] = live_orders(s, agent, 1)
    agent.session.sock = StuckSocket(agent.session.sock)
    s.rig.control_event(ControlEventKind.KILL, operator=b"alice")
    pump(agent, lambda: 0 in agent.orders.by_client[1].requests, message="the cancel journaled and queued")
    s.venue.drop()
    pump(agent, lambda: [m["order_token"] for m in s.venue.messages("X")] == [token], timeout=10,
         message="the cancel sent after the reconnect")
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 0, message="the order cancelled")


# ------------------------------------------------------------------ a venue that lost its session

@pytest.mark.parametrize("new_session", ["SCRIPT0001", "SCRIPT0002"])
def test_a_restarted_venue_is_a_new_session_and_the_old_orders_are_gone(setup, new_session):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    live_orders(s, agent, 2)
    s.restart_venue(session=new_session)
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 0, timeout=10, message="the old orders gone")
    assert s.rig.events(1)[-1] == E.CANCELED and s.rig.events(2)[-1] == E.CANCELED
    assert s.rig.counter("oms.session.sequence_resets") == 1
    ready(agent, s.rig)
    s.rig.new(3, "SPY", "B", 100, 4_000_000)       # and trading goes on in the new session
    pump(agent, lambda: E.ACCEPTED in s.rig.events(3), message="order 3 accepted")
    s.crash(agent)
    agent = s.start()                               # a restart agrees with all of it
    ready(agent, s.rig)
    assert s.rig.control.get("oms_open_orders") == 1
    assert agent.session.client.session.strip() == new_session
    sessions = [jr.SESSION.parse(r.payload) for r in journal_events(s) if r.type == RecordType.SESSION]
    assert [x.event for x in sessions].count(SessionEvent.NEW_SESSION) == 1


# ------------------------------------------------------------------ reasons and orphans

def test_a_malformed_order_and_an_unknown_action_each_have_their_own_reason(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1, "SPY", "B", 0, 5_000_000)                         # zero shares
    s.rig.approve(2, 9, "SPY", "B", 100, 5_000_000)                # action 9
    pump(agent, lambda: E.REJECTED_LOCALLY in s.rig.events(1) and E.REJECTED_LOCALLY in s.rig.events(2),
         message="both refused")
    assert s.rig.reports_of(1)[-1]["reason"] == OmsReason.BAD_ORDER
    assert s.rig.reports_of(2)[-1]["reason"] == OmsReason.UNKNOWN_ACTION


def test_orphans_each_get_their_own_client_id_and_are_in_the_snapshot(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    for n, token in enumerate(("ORPHAN00000001", "ORPHAN00000002")):
        s.venue.store.append(ouch.encode_outbound({"timestamp": 0, **accepted(
            {"order_token": token, "buy_sell_indicator": "S", "shares": 100, "stock": "SPY",
             "price": 5_100_000 + n, "time_in_force": 99998, "firm": "ALGO"})}))
    s.venue.drop()                                  # the reconnect's replay brings them
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 2, timeout=10, message="two orphans")
    s.rig.drain()
    s.rig.control_event(ControlEventKind.SNAPSHOT_REQUEST)
    pump(agent, lambda: SnapshotKind.END in s.rig.snapshot_kinds(), message="the snapshot")
    ids = [r["client_order_id"] for r in s.rig.risk_snapshots if r["kind"] == SnapshotKind.ORDER]
    assert len(set(ids)) == 2 and all(i >= ORPHAN_CLIENT_ID_BASE for i in ids)


def test_orders_approved_before_a_kill_but_read_after_it_never_leave(setup):
    """Risk approved a burst, then latched a symbol's kill switch: the OMS reads the kill while part
    of the burst is still in its ring. Those never leave (KILLED); the ones that left are cancelled."""
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    for client in range(1, 101):
        s.rig.new(client, "SPY", "B", 100, 4_000_000 + client)
    s.rig.control_event(ControlEventKind.KILL_SYMBOL, value=2, operator=b"alice")          # SPY
    pump(agent, lambda: len(s.rig.events()) >= 100 and s.rig.control.get("oms_open_orders") == 0, timeout=15,
         message="every order refused or cancelled")
    refused = [c for c in range(1, 101) if E.REJECTED_LOCALLY in s.rig.events(c)]
    assert refused and all(s.rig.reports_of(c)[-1]["reason"] == OmsReason.KILLED for c in refused)
    sent = {m["order_token"] for m in s.venue.messages("O")}
    assert len(sent) + len(refused) == 100
    assert {m["order_token"] for m in s.venue.messages("X")} == sent
