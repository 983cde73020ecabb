"""Box B's appliance around a remote standby (``replication.takeover: remote``, ``supervisor/remote_standby.py``),
on loopback: box A is the OMS of layout A run by the OMS rig (the test plays its risk and strategy) against the
simulated exchange; box B is ``appliance up`` on layout B (its own shared memory and journals, the real
supervisor, risk and strategy stand-ins), whose OMS is the standby of box A's.

While box A trades, box B's gate is closed with STANDBY (its status says so) and its OMS runs as
``oms-standby --takeover remote``, not as an OMS (killed, it is started again as a standby). SIGKILL box A's
OMS: on loopback its venue session ends at once (the fence clears), box B's standby hears nothing for its peer
timeout and takes over; box B's supervisor adopts it as its ``oms`` (TAKEOVER until it is ready), the gate
opens, an order on box B's approved-orders ring reaches the venue, and the takeover is counted as remote. Then box A, rebuilt, attaches as the standby of box
B's new primary (``oms-standby --primary``, its old journal ``--fresh``: archived) and catches up byte for byte;
box B's new primary SIGKILLed is restarted by the policy from its own journal and box A's standby follows it.
"""
from __future__ import annotations

import glob
import os
import signal
import socket
import time

import pytest

from appliance.messages.codes import ExecEvent, GateReason
from appliance.runtime.counters import ProcessState
from appliance.sim.ports import free_port
from appliance.supervisor.status import build_status
from conftest import wait_until
from exchange_process import venue  # noqa: F401  (the fixture)
from oms_rig import Rig, oms_layout
from standby_process import Standby
from supervisor_rig import Orders, appliance, supervised_oms, supervisor_status, up_factory  # noqa: F401

E = ExecEvent
PEER_TIMEOUT_MS = 500          # box B's standby takes over after this long without a byte from box A


def replication(tmp_path, box: str, port: int, **more) -> dict:
    return {"mode": "sync", "primary": {"host": "127.0.0.1", "port": port}, "heartbeat_ms": 50,
            "standby_journal": str(tmp_path / box / "standby" / "journal.bin"), "ack_limit_ms": 500,
            "peer_timeout_ms": PEER_TIMEOUT_MS, **more}


@pytest.fixture
def boxes(venue, write_layout, unique_name, tmp_path, spawner, up_factory):  # noqa: F811
    """(box A's rig with its OMS running, box B's ``appliance up``, new standby processes' list); every process
    and segment gone afterwards, whatever happened (``up_factory``, ``spawner`` and the rig's own cleanup)."""
    port = free_port(socket.SOCK_STREAM)
    doc_a = oms_layout(unique_name, venue.order_entry[1], str(tmp_path / "a" / "oms" / "journal.bin"),
                       replication=replication(tmp_path, "a", port))
    rig_a = Rig(write_layout(doc_a, "a.yaml"))
    standbys: list[Standby] = []
    try:
        rig_a.start(spawner)
        doc_b = oms_layout(f"{unique_name}b", venue.order_entry[1], str(tmp_path / "b" / "oms" / "journal.bin"),
                           replication=replication(tmp_path, "b", port, takeover="remote", without_standby="trade"))
        os.chmod(tmp_path / "b", 0o700)      # box B's control socket is there: private
        up_b = up_factory(write_layout(supervised_oms(doc_b, tmp_path / "b"), "b.yaml")).attach()
        yield rig_a, up_b, standbys
    finally:
        for standby in standbys:
            standby.stop()
        spawner.cleanup()
        rig_a.close()


def test_box_b_stands_by_with_its_gate_closed_then_takes_over_trades_and_takes_box_a_as_its_standby(
        boxes, tmp_path):
    rig_a, up_b, standbys = boxes
    layout_b = str(up_b.layout_path)
    table_b = up_b.memory.process_table()
    rig_a.wait_ready(30)                     # sync, close_gate: ready once box B's standby caught up
    wait_until(lambda: rig_a.counter("oms.replication.connected") == 1, 30, message="box B's standby subscribed")

    # box B stands by: no OMS of its own, the gate closed for that reason alone, said by status
    wait_until(lambda: up_b.gate() == (0, GateReason.STANDBY), 30, message="box B's gate closed by STANDBY alone")
    status = supervisor_status(up_b)
    standby_pid = status["standby"]["pid"]
    assert status["standby"]["alive"] and status["standby"]["standing_by"] and "oms" not in status["children"]
    assert table_b.read("oms").pid == 0
    shown = appliance("status", "--layout", layout_b)
    assert shown.returncode == 0 and "gate: CLOSED (standby)" in shown.stdout, shown.stdout + shown.stderr
    assert "hot standby of the primary on another box" in shown.stdout
    assert build_status(up_b.layout, up_b.memory)["oms"]["takeover"]["count"] == 0
    refused = appliance("failover", "--layout", layout_b, "--operator", "alice")
    assert refused.returncode == 1 and "standby of a primary on another box" in refused.stderr

    # the standby dies without taking over (box A alive): started again as a standby, never as an OMS
    os.kill(standby_pid, signal.SIGKILL)
    wait_until(lambda: supervisor_status(up_b)["standby"]["pid"] not in (None, standby_pid), 30,
               message="box B's standby started again")
    status = supervisor_status(up_b)
    standby_pid = status["standby"]["pid"]
    assert status["standby"]["standing_by"] and "oms" not in status["children"] and table_b.read("oms").pid == 0
    wait_until(lambda: rig_a.counter("oms.replication.connected") == 1, 30, message="the new standby subscribed")
    assert up_b.gate() == (0, GateReason.STANDBY)
    rig_a.wait_ready(30)

    rig_a.new(1, shares=100, price=1_800_000)          # box A trades; box B's standby holds the order
    wait_until(lambda: E.ACCEPTED in rig_a.events(1), 10, message="box A's order accepted")
    wait_until(lambda: rig_a.counter("oms.replication.lag_records") == 0, 10, message="box B holds it")

    killed = time.monotonic()
    os.kill(rig_a.proc.pid, signal.SIGKILL)
    rig_a.proc.wait(10)
    wait_until(lambda: table_b.read("oms").pid == standby_pid and table_b.read("oms").state is ProcessState.RUNNING,
               30, message="box B's standby running as box B's oms")
    wait_until(lambda: up_b.gate()[0] == 1, 30, message="box B's gate open: its new primary ready")
    open_s = time.monotonic() - killed
    status = supervisor_status(up_b)
    assert status["children"]["oms"]["pid"] == standby_pid and status["children"]["oms"]["restarts"] == 0
    assert not status["standby"]["standing_by"] and not status["standby"]["taking_over"]
    takeover = build_status(up_b.layout, up_b.memory)["oms"]["takeover"]
    assert (takeover["count"], takeover["under_way"], takeover["last_remote"], takeover["last_new_pid"]) == \
        (1, False, True, standby_pid)
    assert takeover["last_gate_closed_ms"] > 0
    print(f"box B's gate open {open_s:.2f} s after box A's SIGKILL (its standby's peer timeout {PEER_TIMEOUT_MS} ms); "
          f"TAKEOVER held {takeover['last_gate_closed_ms']:.1f} ms from the adoption to oms_ready")
    shown = appliance("status", "--layout", layout_b)
    assert f"remote -> pid {standby_pid}" in shown.stdout and "gate: OPEN" in shown.stdout, shown.stdout

    orders = Orders(up_b.layout)
    try:
        orders.new(1, shares=100, price=1_700_000)       # box A's client order id: box B's journal knows it
        orders.new(2, shares=100, price=1_800_000)
        wait_until(lambda: E.ACCEPTED in orders.events(2), 10, message="box B's order accepted at the venue")
        assert E.ACCEPTED not in orders.events(1)
    finally:
        orders.close()

    # box A, rebuilt, attaches as the standby of box B's new primary: its old journal archived, box B's copied
    journal_a = rig_a.layout.processes["oms"].params["journal"]
    journal_b = up_b.layout.processes["oms"].params["replication"]["standby_journal"]   # box B's primary's now
    port = rig_a.layout.processes["oms"].params["replication"]["primary"]["port"]    # box B listens there now
    standbys.append(Standby(rig_a.layout.path, tmp_path / "a-standby.log", "--journal", journal_a, "--fresh",
                            "--primary", f"127.0.0.2:{port}"))                    # an address of box B's
    counters_b = up_b.memory.counters_reader

    def caught_up() -> bool:
        with open(journal_a, "rb") as a, open(journal_b, "rb") as b:
            return a.read() == b.read()
    wait_until(lambda: counters_b().by_label().get("oms.replication.connected") == 1, 30,
               message="box A subscribed to box B's new primary")
    wait_until(caught_up, 30, interval=0.05, message="box A's journal byte-identical to box B's")
    assert glob.glob(f"{journal_a}.*"), "--fresh archived nothing of box A's old journal"
    assert standbys[0].proc.poll() is None, standbys[0].log()

    # box B's new primary dies: a primary now, the restart policy restarts it from its own journal (listening
    # for box A's standby again), never a second standby; the gate closes and opens again
    os.kill(standby_pid, signal.SIGKILL)
    wait_until(lambda: table_b.read("oms").pid not in (0, standby_pid), 30, message="box B's OMS restarted")
    wait_until(lambda: up_b.gate()[0] == 1, 30, message="box B's gate open again")
    status = supervisor_status(up_b)
    assert status["children"]["oms"]["restarts"] == 1 and status["standby"]["pid"] is None
    assert counters_b().by_label().get("supervisor.restarts.oms") == 1
    assert build_status(up_b.layout, up_b.memory)["oms"]["takeover"]["count"] == 1
    orders = Orders(up_b.layout)
    try:
        orders.new(3, shares=100, price=1_800_000)
        wait_until(lambda: E.ACCEPTED in orders.events(3), 10, message="the restarted primary's order accepted")
    finally:
        orders.close()
    wait_until(lambda: counters_b().by_label().get("oms.replication.connected") == 1, 30,
               message="box A's standby back on box B's restarted primary")
    wait_until(caught_up, 30, interval=0.05, message="box A's journal byte-identical to box B's again")


@pytest.mark.parametrize("bad,says", [
    ({"transport": "shm"}, "replication.takeover: takeover: remote reaches the other box's primary over transport tcp"),
    ({"primary": None}, "replication.primary: takeover: remote needs primary"),
    ({"mode": "off"}, "replication.takeover: takeover: remote is the standby of another box's primary"),
])
def test_up_refuses_a_remote_standby_layout_it_cannot_run_and_says_why(write_layout, unique_name, tmp_path, bad, says):
    """Box B's layout checked before anything starts: exit 2, the key path and the reason, no segment left."""
    more = {"takeover": "remote", **bad}
    params = replication(tmp_path, "b", free_port(socket.SOCK_STREAM), **more)
    if params["primary"] is None:
        del params["primary"]
    doc = oms_layout(unique_name, 1, str(tmp_path / "b" / "oms" / "journal.bin"), replication=params)
    os.chmod(tmp_path / "b", 0o700)
    refused = appliance("up", "--layout", str(write_layout(supervised_oms(doc, tmp_path / "b"), "b.yaml")))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"processes.oms.params.{says}" in refused.stderr, refused.stderr
