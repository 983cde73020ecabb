"""The OMS agent in this process against a scripted SoupBinTCP venue: in-flight timeouts, recovery of
unacknowledged orders, a failing or full journal (fail closed, cancels still out), redelivered ring
records, the kill switch, the gate's cancel-all and risk's snapshot."""
from __future__ import annotations

import errno
import time

import pytest

from appliance.messages.codes import Action, ControlEventKind, ExecEvent, GateReason, OmsReason, RejectSource, SnapshotKind
from appliance.oms.journal_records import CONTROL, ControlKind, RecordType
from appliance.oms.journal import Journal
from appliance.oms.journal_format import JournalFull, read_records
from oms_rig import Rig, accept_all, accepted, pump, ready, setup  # noqa: F401 (setup: a fixture)

E = ExecEvent
K = SnapshotKind


def test_an_order_the_venue_never_answers_is_flagged_and_queried_by_cancel(setup):
    def policy(message):
        if message["type"] == "X":
            return [{"type": "I", "order_token": message["order_token"]}]
        return []                                               # Enter Orders vanish
    s = setup(policy, in_flight_timeout_ms=200)
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1)
    pump(agent, lambda: E.REJECTED in s.rig.events(1), timeout=10, message="the order resolved")
    assert s.rig.events(1) == [E.PENDING_TIMEOUT, E.REJECTED]
    assert s.rig.reports_of(1)[-1]["reason"] == ord("I")
    assert [m["type"] for m in s.venue.messages()] == ["O", "X"]
    assert s.venue.messages("X")[0]["order_token"] == s.venue.messages("O")[0]["order_token"]
    assert s.rig.counter("oms.in_flight_timeouts") >= 1 and s.rig.control.get("oms_open_orders") == 0


def test_an_order_journaled_but_unacknowledged_at_a_restart_is_cancelled_by_token_before_ready(setup):
    answers = {"cancel": False}

    def policy(message):
        if message["type"] == "X" and answers["cancel"]:
            return [{"type": "I", "order_token": message["order_token"]}]
        return []
    s = setup(policy, unacked_timeout_ms=300)
    first = s.start()
    ready(first, s.rig)
    s.rig.new(1)
    pump(first, lambda: len(s.venue.messages("O")) == 1, message="the order at the venue")
    s.crash(first)
    answers["cancel"] = True
    second = s.start()
    assert s.rig.control.get("oms_ready") == 0
    s.rig.new(2)                                                # the gate stays closed during recovery
    pump(second, lambda: E.REJECTED_LOCALLY in s.rig.events(2), message="order 2 refused")
    assert s.rig.reports_of(2)[0]["reason"] == OmsReason.NOT_RECOVERED
    ready(second, s.rig)
    assert [m["type"] for m in s.venue.messages()] == ["O", "X"]   # never sent twice; cancelled by token
    assert s.venue.messages("X")[0]["order_token"] == s.venue.messages("O")[0]["order_token"]
    assert second.orders.by_client[1].state.name == "REJECTED"
    s.rig.new(3)
    pump(second, lambda: len(s.venue.messages("O")) == 2, message="order 3 at the venue")
    tokens = [m["order_token"] for m in s.venue.messages("O")]
    assert tokens[0] != tokens[1] and tokens[1][:4] != tokens[0][:4]          # a new prefix after the restart


def test_a_failed_journal_sync_refuses_new_orders_and_cancels_still_go_out(setup):
    s = setup(accept_all, durability="per_event")
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1)
    pump(agent, lambda: E.ACCEPTED in s.rig.events(1), message="order 1 accepted")

    def broken(offset, length):
        raise OSError(errno.EIO, "Input/output error")
    agent.journal._msync = broken
    s.rig.new(2)
    pump(agent, lambda: E.REJECTED_LOCALLY in s.rig.events(2), message="order 2 refused")
    assert s.rig.reports_of(2)[0]["reason"] == OmsReason.JOURNAL_FAILED
    assert s.rig.reports_of(2)[0]["source"] == RejectSource.OMS
    assert s.rig.control.get("oms_ready") == 0
    pump(agent, lambda: s.rig.counter("oms.journal.failed") == 1, message="the journal counter")
    s.rig.cancel(10, orig=1)
    pump(agent, lambda: E.CANCELED in s.rig.events(1), message="the cancel went out")
    s.rig.new(3)
    pump(agent, lambda: E.REJECTED_LOCALLY in s.rig.events(3), message="order 3 refused")
    assert [m["type"] for m in s.venue.messages()] == ["O", "X"]
    assert s.rig.counter("oms.rejects.JOURNAL_FAILED") == 2
    assert E.REJECTED_LOCALLY in s.rig.events(2, ring="risk")
    agent.journal._msync = lambda offset, length: None


def test_a_full_journal_refuses_new_orders(setup, tmp_path):
    s = setup(accept_all, journal_size_mb=1)
    journal = Journal.open(s.journal, 1 << 20, "page_cache")     # a day's worth already in it
    try:
        with pytest.raises(JournalFull):
            while True:
                journal.append(RecordType.CONTROL, CONTROL.pack(ControlEventKind.LIMITS_CHANGED), 1)
    finally:
        journal.close()
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1)
    pump(agent, lambda: E.REJECTED_LOCALLY in s.rig.events(1), message="order 1 refused")
    assert s.rig.reports_of(1)[0]["reason"] == OmsReason.JOURNAL_FAILED
    assert s.venue.messages("O") == [] and s.rig.control.get("oms_ready") == 0


def test_an_approved_order_read_again_after_a_crash_is_not_sent_twice(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1, "MSFT", "S", 300, 4_200_000)
    s.rig.new(1, "MSFT", "S", 300, 4_200_000)                   # the same record again
    s.rig.new(1, "MSFT", "S", 200, 4_200_000)                   # a different order with the same id
    pump(agent, lambda: E.REJECTED_LOCALLY in s.rig.events(1) and E.ACCEPTED in s.rig.events(1),
         message="the order accepted, the duplicate refused")
    assert len(s.venue.messages("O")) == 1
    assert s.rig.counter("oms.redelivered") == 1
    assert [r["reason"] for r in s.rig.reports_of(1) if r["event"] == E.REJECTED_LOCALLY] == \
        [OmsReason.DUPLICATE_CLIENT_ID]


def test_a_kill_from_risk_and_a_gate_closed_for_the_kill_switch_cancel_everything_once(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    for client in (1, 2, 3):
        s.rig.new(client, "SPY", "B", 100, 5_000_000 - client * 100)
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 3 and len(s.rig.events()) == 3,
         message="three orders accepted")
    epoch = s.rig.control.get("oms_cancel_all_epoch")
    s.rig.control_event(ControlEventKind.KILL, operator=b"alice")
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 0, message="everything cancelled")
    assert len(s.venue.messages("X")) == 3
    assert s.rig.control.get("oms_cancel_all_epoch") == epoch + 1
    s.rig.new(4, "SPY", "B", 100, 4_000_000)
    pump(agent, lambda: E.ACCEPTED in s.rig.events(4), message="order 4 accepted")
    s.rig.gate(False, GateReason.KILL_SWITCH)
    pump(agent, lambda: s.rig.control.get("oms_cancel_all_epoch") == epoch + 2, message="the gate's cancel-all")
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 0, message="order 4 cancelled")
    for _ in range(50):                                         # the same epoch never cancels twice
        pump(agent)
    assert s.rig.control.get("oms_cancel_all_epoch") == epoch + 2 and len(s.venue.messages("X")) == 4
    s.rig.gate(False, GateReason.OPERATOR)                      # closed, but not for risk or kill: no cancel-all
    for _ in range(50):
        pump(agent)
    assert s.rig.control.get("oms_cancel_all_epoch") == epoch + 2
    assert s.rig.counter("oms.cancel_all") == 2
    records, _found, _header = read_records(s.journal)
    controls = [CONTROL.parse(r.payload) for r in records if r.type == RecordType.CONTROL]
    assert [c.kind for c in controls if c.kind == ControlKind.CANCEL_ALL] == [ControlKind.CANCEL_ALL] * 2
    assert any(c.kind == ControlEventKind.KILL and c.operator.rstrip(b"\0") == b"alice" for c in controls)


def test_a_snapshot_request_is_answered_on_exec_to_risk(setup):
    def policy(message):
        if message["type"] == "O" and message["shares"] == 100:
            return [accepted(message), {"type": "E", "order_token": message["order_token"], "executed_shares": 100,
                                        "execution_price": message["price"], "liquidity_flag": "R",
                                        "match_number": 1}]
        return accept_all(message)
    s = setup(policy)
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1, "MSFT", "B", 100, 4_200_000)                    # filled
    s.rig.new(2, "AAPL", "S", 300, 1_950_000)                    # open
    pump(agent, lambda: s.rig.control.get("oms_open_orders") == 1 and s.rig.position("MSFT").position == 100
         and E.ACCEPTED in s.rig.events(2), message="a fill and an acknowledged open order")
    s.rig.drain()                               # (order 2 is open before its Accepted: wait for that too)
    s.rig.risk_reports.clear()
    s.rig.strategy_reports.clear()
    s.rig.control_event(ControlEventKind.SNAPSHOT_REQUEST)
    pump(agent, lambda: K.END in s.rig.snapshot_kinds(), message="the snapshot")
    snapshot = s.rig.risk_snapshots
    assert [r["kind"] for r in snapshot] == [K.POSITION] * 3 + [K.ORDER, K.END]
    msft = snapshot[1]
    assert (msft["symbol_id"], msft["position"], msft["cost_basis"]) == (1, 100, 100 * 4_200_000)
    order = snapshot[3]
    assert (order["client_order_id"], order["symbol_id"], order["side"], order["leaves_shares"], order["price"],
            order["strategy_id"]) == (2, 0, ord("S"), 300, 1_950_000, 1)
    assert s.rig.risk_reports == [] and s.rig.events(ring="strategy") == []


def test_a_strategy_snapshot_request_is_answered_on_exec_to_strategy_with_that_strategys_orders(setup):
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1, "AAPL", "B", 100, 1_900_000, strategy=5)
    s.rig.new(2, "MSFT", "S", 200, 4_200_000, strategy=5)
    s.rig.new(3, "AAPL", "B", 100, 1_890_000, strategy=6)          # another strategy's: not in the answer
    pump(agent, lambda: all(E.ACCEPTED in s.rig.events(cid) for cid in (1, 2, 3)), message="three open orders")
    s.rig.approve(900, Action.SNAPSHOT, None, None, 0, 0, strategy=5)
    pump(agent, lambda: s.rig.drain() or any(r["kind"] == K.END for r in s.rig.strategy_snapshots),
         message="the strategy's snapshot")
    answer = s.rig.strategy_snapshots
    assert [r["kind"] for r in answer] == [K.POSITION] * 3 + [K.ORDER, K.ORDER, K.END]
    assert {r["strategy_id"] for r in answer} == {5}
    assert [(r["client_order_id"], r["symbol_id"], r["side"], r["leaves_shares"], r["price"]) for r in answer[3:5]] \
        == [(1, 0, ord("B"), 100, 1_900_000), (2, 1, ord("S"), 200, 4_200_000)]
    assert answer[-1]["client_order_id"] == 900                     # END names the request
    assert s.rig.risk_snapshots == []                               # risk's ring carries none of it
    assert OmsReason.UNKNOWN_ACTION not in [r["reason"] for r in s.rig.strategy_reports]


def test_a_clean_stop_logs_out_and_journals_it(setup):
    from conftest import wait_until
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    assert s.rig.control.get("oms_session_up") == 1
    s.agents.remove(agent)
    agent.on_close()
    wait_until(lambda: s.venue.logouts == 1, 5, message="the Logout Request")
    assert s.rig.control.get("oms_ready") == 0 and s.rig.control.get("oms_session_up") == 0
    records, _found, _header = read_records(s.journal)
    from appliance.oms.journal_records import SESSION, SessionEvent
    events = [SESSION.parse(r.payload).event for r in records if r.type == RecordType.SESSION]
    assert events[0] == SessionEvent.START and SessionEvent.LOGIN_ACCEPTED in events
    assert events[-1] == SessionEvent.LOGOUT and SessionEvent.RECOVERED in events


def test_a_disk_too_full_for_the_journal_stops_the_oms_from_starting(setup, monkeypatch):
    import os
    from appliance.oms.journal_format import JournalError
    s = setup(accept_all)

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(JournalError, match="cannot preallocate"):
        s.start()
    assert s.rig.control.get("oms_ready") == 0 and s.venue.messages() == []


def test_rings_in_two_segments_are_each_read_and_written_through_their_own_segment(setup):
    """approved_orders and risk_events in a segment of their own, the report rings in ``main``: the
    OMS reads orders and control events from the one and writes reports into the other (it once
    wrote every ring through approved_orders' segment, right only while the layout had one)."""
    s = setup(accept_all, ring_segments={"approved_orders": "orders", "risk_events": "orders"})
    assert {s.rig.layout.rings[name].segment for name in ("approved_orders", "risk_events")} == {"orders"}
    assert {s.rig.layout.rings[name].segment for name in ("exec_to_strategy", "exec_to_risk")} == {"main"}
    agent = s.start()
    ready(agent, s.rig)
    s.rig.new(1, "AAPL", "B", 100, 1_900_000)
    pump(agent, lambda: E.ACCEPTED in s.rig.events(1), message="the accept on exec_to_strategy")
    assert s.rig.reports_of(1)[0]["shares"] == 100 and s.rig.reports_of(1)[0]["price"] == 1_900_000
    assert s.rig.events(1, ring="risk") == [E.ACCEPTED]
    assert [m["type"] for m in s.venue.messages()] == ["O"]
    s.rig.control_event(ControlEventKind.SNAPSHOT_REQUEST)
    pump(agent, lambda: K.END in s.rig.snapshot_kinds(), message="the snapshot on exec_to_risk")
    assert s.rig.counter("oms.bad_ring_records") == 0


def test_a_parked_oms_waits_on_its_venue_socket_and_its_doorbell_at_once(setup, unique_name):
    """Small profile: the OMS used to nap 2 ms between looks at its venue socket. Parked now, it
    sleeps in one poll() on the venue socket and its wake socket: the venue's Accepted ends the
    wait (the 20 s park timeout is only a backstop), and with the session quiet it has no timer
    of its own sooner than the park timeout."""
    from appliance.runtime.idle import DoorbellIdle, wake_address
    s = setup(accept_all)
    agent = s.start()
    ready(agent, s.rig)
    pump(agent, lambda: agent.next_deadline_ns() is None, message="the session quiet")
    assert agent.wait_fds() == (agent.session.sock.fileno(),)
    idle = DoorbellIdle(s.rig.memory.doorbell("oms"), inputs=[], spins=0, park_timeout_ns=20_000_000_000,
                        waiter=agent, address=wake_address(s.rig.layout.name, "oms"))
    try:
        s.rig.new(1)
        pump(agent, lambda: s.venue.messages("O"), message="the order at the venue")
        started = time.monotonic_ns()
        idle.idle(0)                                            # the Accepted is on its way or there
        assert time.monotonic_ns() - started < 10_000_000_000 and idle.poll_timeouts == 0
        pump(agent, lambda: E.ACCEPTED in s.rig.events(1), message="the Accepted applied")
    finally:
        idle.close()


class _IntentTap:
    """The strategy's order_intents ring as the test's list (the test plays risk in between)."""

    def __init__(self):
        from appliance.messages.catalog import ORDER_INTENT
        self.buffer = bytearray(ORDER_INTENT.size)
        self.intents: list[dict] = []
        self._read = ORDER_INTENT.as_dict

    def claim(self) -> int:
        return 0

    def commit(self) -> None:
        self.intents.append(self._read(self.buffer, 0))


def test_a_fill_s_facts_reach_the_strategy_intact_through_the_oms_and_a_broken_trade_hands_it_back(setup):
    """The venue's Executed (timestamp, match number, liquidity flag) -> the OMS's journal and report ->
    the strategy host's Fill (with the fee) -> the venue's Broken Trade of it -> on_fill_broken."""
    from appliance.messages.catalog import EXECUTION_REPORT
    from appliance.strategy import Strategy
    from appliance.strategy.fees import FeeSchedule
    from appliance.strategy.host import StrategyHost
    from appliance.strategy.intents import IntentWriter
    from appliance.wire.venue_time import ns_since_midnight
    from oms_rig import SYMBOLS

    venue_ns = time.time_ns() // 1000 * 1000 - 5_000_000_000             # the venue's clock, 5 s behind ours
    fills = []

    def policy(message):
        if message["type"] == "O":
            token = message["order_token"]
            return [accepted(message),
                    {"type": "E", "timestamp": ns_since_midnight(venue_ns), "order_token": token, "executed_shares": 40,
                     "execution_price": message["price"], "liquidity_flag": "A", "match_number": 880_001},
                    {"type": "E", "timestamp": ns_since_midnight(venue_ns + 1), "order_token": token,
                     "executed_shares": 60, "execution_price": message["price"] - 100, "liquidity_flag": "R",
                     "match_number": 880_002},
                    {"type": "B", "timestamp": ns_since_midnight(venue_ns + 2), "order_token": token,
                     "match_number": 880_001, "reason": "E"}]
        return accept_all(message)

    class Recording(Strategy):
        def on_fill(self, order, fill):
            fills.append(("fill", order.leaves, fill))

        def on_fill_broken(self, order, fill):
            fills.append(("broken", order.filled, fill))

    s = setup(policy)
    agent = s.start()
    ready(agent, s.rig)
    tap = _IntentTap()
    host = StrategyHost(Recording, None, symbols=tuple(SYMBOLS), strategy_id=1, intents=IntentWriter(tap, tap.buffer, 1),
                        fees=FeeSchedule({"A": -2000, "R": 3000}, 3000))
    host.start()
    cid = host.strategy.buy("MSFT", 100, 4_200_000)
    intent = tap.intents[-1]
    assert intent["client_order_id"] == cid
    s.rig.new(cid, "MSFT", "B", 100, 4_200_000, strategy=intent["strategy_id"])       # risk approves it
    pump(agent, lambda: E.BROKEN in s.rig.events(cid), message="the fills and the break")
    t_before = time.time_ns()
    for report in s.rig.reports_of(cid):                           # the OMS's very records, into the host
        record = bytearray(EXECUTION_REPORT.size)
        EXECUTION_REPORT.pack_into(record, 0, *[report[name] for name in EXECUTION_REPORT.field_names[3:]])
        host.handle_execution_report(record, 0)
    (_, leaves1, first), (_, leaves2, second), (kind, filled, undone) = fills
    assert (first.client_order_id, first.symbol, first.shares, first.price, first.leaves, leaves1) == \
        (cid, "MSFT", 40, 4_200_000, 60, 60)
    assert (first.liquidity, first.fee, first.match_number, first.t_exchange_ns) == ("A", -800, 880_001, venue_ns)
    assert venue_ns < first.t_rx_ns < t_before                     # the OMS's receive time, on our clock
    assert (second.liquidity, second.fee, second.match_number, second.price, second.leaves, leaves2) == \
        ("R", 1800, 880_002, 4_199_900, 0, 0)
    assert second.t_exchange_ns == venue_ns + 1
    assert kind == "broken" and undone is first and filled == 60
    assert host.positions["MSFT"] == 60 and host.positions.fees("MSFT") == 1800
    assert host.positions.cost_basis("MSFT") == 60 * 4_199_900 and host.positions.avg_price("MSFT") == 4_199_900
