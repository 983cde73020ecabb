"""Takeover from another box: the primary OMS and its standby in two network namespaces this test
creates, the simulated exchange in a third, each pair joined by a veth (``netns.Boxes``):

    venue 10.77.1.1 --- 10.77.1.2 boxa 10.77.3.1 --- 10.77.3.2 boxb 10.77.2.2 --- 10.77.2.1 venue

The exchange has a namespace of its own (not box B's side) so that box A's death is a box gone for
the venue as for box B: box A's session ends at the venue only by the venue's own peer timeout, and
box B reaches the venue over a link of its own that the teardown leaves alone.

Box A runs the primary OMS of layout A (sync replication, ``without_standby: close_gate``); box B
runs ``appliance oms-standby --takeover remote`` as the ``oms`` of layout B (its own shared-memory
names, its own journals; ``without_standby: trade``: after the takeover the other box is gone and the
survivor trades alone). The test plays risk and the strategy of both boxes (their shared memory is in
this process's /dev/shm: namespaces do not separate it) and a second firm rests liquidity.

Box A is torn down under load, network first: its venue link goes down (the orders it sends from then
on, which the standby acknowledged, never reach the venue: unacknowledged orders for the new primary
to cancel by token), then its link to box B, then its namespace is deleted and its OMS SIGKILLed (a
process keeps its namespace alive: the kill ends it). The standby hears nothing for its peer timeout,
takes over, and is refused by the venue ('S') while box A's session lives there; the venue's peer
timeout (longer than the standby's) ends that session, and only then is box B logged in.

The second test brings box A's network back with its OMS still running: its logins are refused while
box B's session is live, and nothing it is given reaches the venue. The third cuts only the link between
the boxes: box B tries to take over and is refused for as long as box A's session lives.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import time

import pytest

from appliance.messages.codes import TIF_IOC, ExecEvent
from appliance.runtime.counters import ProcessState
from appliance.sim.ports import free_port
from conftest import output_of, wait_until
from exchange_process import OrderClient, RunningExchange, base_config, end_of_day, venue_messages
from netns import Boxes, netns_permitted
from oms_rig import Rig, oms_layout, send_mixed
from standby_process import Standby
from takeover_checks import (ANSWERS, Load, assert_positions_match, assert_venue_saw_each_order_once,
                             journal_records, new_orders_during_takeovers, sent_tokens)

E = ExecEvent
VENUE_PEER_TIMEOUT_MS = 3000         # the venue ends a silent session after this (the fence's timing)
STANDBY_PEER_TIMEOUT_MS = 500        # the standby takes over after this long without a byte from box A
MISSED = 900_000                     # box A's resting order filled while no primary was there
NO_NETNS = netns_permitted()
pytestmark = pytest.mark.skipif(NO_NETNS is not None, reason=str(NO_NETNS))


@pytest.fixture
def world(write_layout, unique_name, tmp_path, spawner):
    """``world(a_without_standby)``: namespaces, the exchange in ``venue``, layouts A and B with their shared
    memory, box B's standby factory; every process, namespace and segment gone afterwards, whatever happened."""
    made: dict = {"standbys": [], "rigs": []}
    boxes = Boxes("t18", ["venue", "boxa", "boxb"])

    def make(a_without_standby: str = "close_gate") -> dict:
        venue_a, _ = boxes.link("venue", "boxa", 1)         # (the venue's end, the box's end)
        venue_b, _ = boxes.link("venue", "boxb", 2)
        a_rep, _ = boxes.link("boxa", "boxb", 3)
        exchange = RunningExchange(base_config(order_entry={"host": "0.0.0.0", "heartbeat_interval_ms": 100,
                                                            "peer_timeout_ms": VENUE_PEER_TIMEOUT_MS}),
                                   prefix=boxes.exec("venue"))
        made["exchange"] = exchange
        port = exchange.order_entry[1]
        replication_port = free_port(socket.SOCK_STREAM)     # free here; the boxes' ports are their own anyway

        def layout(box: str, venue_host: str, name: str, without_standby: str):
            replication = {"mode": "sync", "primary": {"host": a_rep, "port": replication_port},
                           "standby_journal": str(tmp_path / box / "standby" / "journal.bin"), "ack_limit_ms": 500,
                           "heartbeat_ms": 50, "peer_timeout_ms": STANDBY_PEER_TIMEOUT_MS,
                           "without_standby": without_standby}
            doc = oms_layout(name, port, str(tmp_path / box / "oms" / "journal.bin"), replication=replication,
                             venue={"host": venue_host, "port": port})
            made["rigs"].append(Rig(write_layout(doc, f"{box}.yaml")))
            return made["rigs"][-1]
        rig_a = layout("boxa", venue_a, unique_name, a_without_standby)
        rig_b = layout("boxb", venue_b, f"{unique_name}b", "trade")

        def standby(*args) -> Standby:
            made["standbys"].append(Standby(rig_b.layout.path, tmp_path / "standby-b.log", *args,
                                            prefix=boxes.exec("boxb")))
            return made["standbys"][-1]
        return {"boxes": boxes, "exchange": exchange, "a": rig_a, "b": rig_b, "standby": standby}
    try:
        yield make
    finally:
        spawner.cleanup()                    # box A's OMS (SIGKILL), before its namespace can go
        for s in made["standbys"]:
            s.stop()
        if "exchange" in made:
            made["exchange"].close()
        boxes.close()
        for rig in made["rigs"]:
            rig.close()


def algo2(world, *orders) -> None:
    """The second firm enters ``orders`` (``OrderClient.enter``'s arguments) from inside ``venue``; each accepted."""
    boxes, exchange = world["boxes"], world["exchange"]
    other = OrderClient(("127.0.0.1", exchange.order_entry[1]), "ALGO2", "secret2",
                        connect=lambda address, timeout: boxes.connect_in("venue", address, timeout))
    try:
        for order in orders:
            other.enter(*order)
        for _ in orders:
            while (message := other.next_message())["type"] == "S":
                pass
            assert message["type"] == "A", message
    finally:
        other.close()


def rest_liquidity(world) -> None:
    """ALGO2's resting orders that ALGO1's AAPL buys and MSFT sells fill against."""
    algo2(world, ("LIQ1", "S", 1_000_000, "AAPL", 1_900_000), ("LIQ2", "B", 1_000_000, "MSFT", 4_190_000))


def firm_events(lines: list[str], firm: str = "ALGO1") -> list[tuple[str, str]]:
    """The exchange's log of ``firm``'s sessions, in order: ("login", from sequence), ("refused", reason),
    ("lost", why)."""
    out = []
    for line in lines:
        if m := re.search(rf"exchange: login {firm} from sequence (\d+)", line):
            out.append(("login", m.group(1)))
        elif m := re.search(rf"exchange: login refused for '{firm}': reason (\w)", line):
            out.append(("refused", m.group(1)))
        elif m := re.search(rf"exchange: session {firm} lost \(([^)]*)\)", line):
            out.append(("lost", m.group(1)))
    return out


def start_both(world, spawner) -> Standby:
    """Box A's OMS and box B's standby (``--takeover remote``), box A ready, the liquidity resting."""
    rig_a = world["a"]
    rig_a.start(spawner, prefix=world["boxes"].exec("boxa"))
    standby = world["standby"]("--takeover", "remote")
    rig_a.wait_ready(30)                     # sync: ready once box B's standby caught up (close_gate)
    rest_liquidity(world)
    wait_until(lambda: rig_a.counter("oms.replication.connected") == 1, 30, message="box B's standby subscribed")
    return standby


def wait_taken_over(rig_b: Rig, standby: Standby) -> str:
    """Box B's standby running as box B's ``oms`` and ready; its log."""
    table = rig_b.memory.process_table()
    wait_until(lambda: rig_b.drain() or (table.read("oms").pid == standby.pid and table.read("oms").state is
                                         ProcessState.RUNNING) or standby.proc.poll() is not None, 30,
               message="box B's standby running as box B's oms")
    assert standby.proc.poll() is None, standby.log()
    wait_until(lambda: rig_b.drain() or rig_b.control.get("oms_ready") == 1 or standby.proc.poll() is not None,
               30, message="box B's new primary ready")
    assert standby.proc.poll() is None, standby.log()
    log = standby.log()
    assert "TAKEOVER (remote)" in log, log
    return log


def test_box_a_torn_down_under_load_and_box_b_takes_over_once_the_venue_ended_box_a_session(world, spawner):
    world = world()
    boxes, exchange, rig_a, rig_b = world["boxes"], world["exchange"], world["a"], world["b"]
    standby = start_both(world, spawner)
    primary = rig_a.proc
    rig_a.new(MISSED, "SPY", "B", 100, 4_500_000)            # rests above the load's SPY bids
    wait_until(lambda: E.ACCEPTED in rig_a.events(MISSED), 10, message="box A's SPY bid resting")
    load = Load(rig_a)
    load.start()
    wait_until(lambda: rig_a.drain() or rig_a.counter("oms.orders_sent") >= 150, 30, interval=0.001,
               message="load under way on box A")

    # box A's network goes first: the venue link, then (once box B holds orders that never reached the
    # venue) the link to box B; then the box itself
    boxes.link_down("boxa", "venue")
    cut = time.monotonic()
    acked = rig_a.counter("oms.replication.acked_sequence")
    wait_until(lambda: rig_a.drain() or rig_a.counter("oms.replication.acked_sequence") >= acked + 10, 10,
               interval=0.001, message="box B acknowledged orders that box A could not send")
    boxes.link_down("boxa", "boxb")
    boxes.delete("boxa")
    os.kill(primary.pid, signal.SIGKILL)
    primary.wait(10)
    load.stop()
    # while no primary is heard: a fill of box A's resting bid, which box B knows only from the venue's replay
    algo2(world, ("HIT1", "S", 100, "SPY", 4_500_000, 0))

    log = wait_taken_over(rig_b, standby)
    ready_s = time.monotonic() - cut
    assert E.EXECUTED in rig_b.events(MISSED), "the fill box B missed did not come in the venue's replay"

    # a new order on box B's approved-orders ring reaches the venue
    rig_b.new(1_000_001, "AAPL", "B", 10, 1_900_000, tif=TIF_IOC)
    wait_until(lambda: E.EXECUTED in rig_b.events(1_000_001), 10, message="box B's new order filled at the venue")

    # the fence: box B was refused while box A's session lived at the venue, and logged in only after the
    # venue ended it (its peer timeout), with the next sequence number the standby held
    events = firm_events(exchange.lines)
    assert [kind for kind, _ in events if kind != "refused"] == ["login", "lost", "login"], events
    assert ("lost", "peer timeout") in events, events       # the venue ended box A's session, nothing else
    lost_at = events.index(("lost", "peer timeout"))
    refused = [e for e in events[1:lost_at] if e[0] == "refused"]
    assert refused and {reason for _, reason in refused} == {"S"}, events
    assert not [e for e in events[lost_at:] if e[0] == "refused"], events
    assert log.count("login refused by the venue ('S'") >= len(refused), log
    next_sequence = int(re.search(r"TAKEOVER \(remote\).* next venue sequence (\d+)", log).group(1))
    assert events[-1] == ("login", str(next_sequence)), (events, next_sequence)

    journal_b = rig_b.layout.processes["oms"].params["replication"]["standby_journal"]
    records = journal_records(journal_b)
    assert new_orders_during_takeovers(records) == [], "a new order left during the takeover"
    report = end_of_day(exchange)
    wait_until(lambda: rig_b.control.get("oms_open_orders") == 0, 10, message="day orders expired")
    inbound, outbound = venue_messages(exchange)
    enter_tokens = [m["order_token"] for m in inbound if m["type"] == "O"]
    sent = sent_tokens(records)
    # sync: every order at the venue is one box B's journal holds (KeyError-free), none twice, no fill twice
    assert_venue_saw_each_order_once(outbound, enter_tokens, sent)
    # the orders box B knew as sent that never reached the venue: cancelled by token, answered to box B's
    # strategy (the venue knows no such order: rejected)
    never_arrived = sorted(set(sent) - set(enter_tokens))
    assert never_arrived, "no order was sent into box A's dead venue link (the test did not make its point)"
    cancelled = {m["order_token"] for m in inbound if m["type"] == "X"}
    assert set(never_arrived) <= cancelled, "an unacknowledged order was not cancelled by token"
    for token in never_arrived:
        assert E.REJECTED in rig_b.events(sent[token]), (token, rig_b.reports_of(sent[token]))
    assert "unacknowledged after the replay: cancelled by token" in log
    # no order lost: every order box B's journal holds as sent was answered to a strategy, box A's or box B's
    rig_a.drain()
    answered = {r["client_order_id"] for r in rig_a.strategy_reports + rig_b.strategy_reports
                if r["event"] in ANSWERS}
    unanswered = sorted(set(sent.values()) - answered)
    assert unanswered == [], f"orders never answered (lost): {unanswered[:20]}"
    assert_positions_match(rig_b, report)
    assert rig_b.counter("oms.duplicate_fills") == 0
    assert rig_b.counter("oms.reports_dropped.strategy") == 0
    print(f"{len(enter_tokens)} Enter Orders at the venue, {len(never_arrived)} sent into box A's dead link and "
          f"cancelled by token, {len(refused)} logins of box B refused before the venue ended box A's session; "
          f"box B logged in from sequence {next_sequence} and was ready {ready_s:.2f} s after box A's venue link "
          f"went down (the venue's peer timeout {VENUE_PEER_TIMEOUT_MS} ms)")


def test_an_old_primary_whose_network_comes_back_is_refused_by_the_venue_and_sends_nothing(world, spawner):
    """Box A's links go down but its OMS lives on (``without_standby: trade``: nothing of its own stops it
    trading without box B); box B takes over; box A's links come back. Box A's logins are refused while box
    B's session is live, so none of the orders box A is given afterwards reaches the venue, and box B's
    session and orders are undisturbed."""
    world = world("trade")
    boxes, exchange, rig_a, rig_b = world["boxes"], world["exchange"], world["a"], world["b"]
    standby = start_both(world, spawner)
    for i in range(1, 9):
        send_mixed(rig_a, i)
    wait_until(lambda: all(set(rig_a.events(i)) & ANSWERS for i in range(1, 9) if i % 4 != 3), 10,
               message="box A's orders answered")
    wait_until(lambda: rig_a.counter("oms.replication.lag_records") == 0, 10, message="box B holds them all")
    boxes.link_down("boxa", "venue")
    boxes.link_down("boxa", "boxb")
    wait_taken_over(rig_b, standby)
    assert rig_a.proc.poll() is None, "box A's OMS lives on"
    events_before = len(firm_events(exchange.lines))
    boxes.link_up("boxa", "venue")
    boxes.link_up("boxa", "boxb")
    # box A tries again (its own peer timeout has long ended its session) and is refused
    wait_until(lambda: [e for e in firm_events(exchange.lines)[events_before:] if e == ("refused", "S")], 20,
               message="box A's login refused after its network came back")
    for i in range(100, 120):                # box A's strategy goes on: none of it may reach the venue
        send_mixed(rig_a, i)
    rig_b.new(2_000_001, "AAPL", "B", 10, 1_900_000, tif=TIF_IOC)
    wait_until(lambda: E.EXECUTED in rig_b.events(2_000_001), 10, message="box B trades on")
    wait_until(lambda: len([e for e in firm_events(exchange.lines)[events_before:] if e[0] == "refused"]) >= 3, 20,
               message="box A refused again and again")
    assert [e for e in firm_events(exchange.lines)[events_before:] if e[0] != "refused"] == [], \
        "box B's session ended or box A logged in"
    assert rig_a.control.get("oms_session_up") == 0 and rig_b.control.get("oms_session_up") == 1
    unanswered = [i for i in range(100, 120) if i % 4 != 3 and not set(rig_a.events(i)) & ANSWERS]
    assert unanswered == [], f"box A left orders unanswered instead of refusing them: {unanswered}"
    end_of_day(exchange)
    rig_a.proc.send_signal(signal.SIGTERM)
    assert "login refused by the venue ('S'" in output_of(rig_a.proc, 20)
    # every order the venue saw is one box B's journal holds (box A's until the cut, then box B's own)
    inbound, _ = venue_messages(exchange)
    journal_b = rig_b.layout.processes["oms"].params["replication"]["standby_journal"]
    known = sent_tokens(journal_records(journal_b))
    strangers = [m["order_token"] for m in inbound if m["type"] == "O" and m["order_token"] not in known]
    assert strangers == [], f"box A traded after coming back: {strangers}"


def test_only_the_replication_link_cut_box_b_tries_to_take_over_and_the_venue_keeps_box_a(world, spawner):
    """A partition between the boxes alone: box B hears nothing and takes over, but box A is alive and
    logged in, so the venue refuses box B again and again; box A keeps the only session (its gate closed
    for want of a standby: close_gate) and box B never sends."""
    world = world()
    boxes, exchange, rig_a, rig_b = world["boxes"], world["exchange"], world["a"], world["b"]
    standby = start_both(world, spawner)
    boxes.link_down("boxa", "boxb")
    table = rig_b.memory.process_table()
    wait_until(lambda: table.read("oms").pid == standby.pid or standby.proc.poll() is not None, 30,
               message="box B's standby trying to take over")
    wait_until(lambda: len([e for e in firm_events(exchange.lines) if e[0] == "refused"]) >= 5, 30,
               message="box B refused again and again")
    assert standby.proc.poll() is None, standby.log()
    assert [e for e in firm_events(exchange.lines) if e[0] != "refused"] == [("login", "1")], "box A's session ended"
    assert rig_a.control.get("oms_session_up") == 1 and rig_b.control.get("oms_session_up") == 0
    assert rig_b.control.get("oms_ready") == 0
    rig_b.new(3_000_001, "AAPL", "B", 10, 1_900_000, tif=TIF_IOC)   # box B's strategy: refused, never sent
    wait_until(lambda: set(rig_b.events(3_000_001)) & ANSWERS, 10, message="box B refusing its order")
    assert E.ACCEPTED not in rig_b.events(3_000_001) and E.EXECUTED not in rig_b.events(3_000_001)
    assert rig_b.counter("oms.orders_sent") == 0
