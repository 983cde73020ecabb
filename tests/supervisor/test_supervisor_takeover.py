"""The supervisor and the OMS's hot standby (``replication.takeover: standby``): ``appliance up`` with the
real OMS against the simulated exchange (risk and the strategy are stand-ins; the test puts approved
orders on the ring and reads the OMS's reports as they would).

Over both transports (TCP, and the same box's rings). SIGKILL the OMS: the supervisor closes the gate with TAKEOVER and keeps it closed until the standby,
now the OMS (the same pid in the process table, not a restart of the old one), is ready; orders go
on through the new primary; then ``appliance failover --operator NAME`` switches to the new standby the
supervisor started (no name: exit 2). After each, ``appliance status`` (its line and --json), shmtop and
the exporter say the last takeover: when, how long the gate was closed for it (checked against the gate
as sampled), which pid died and which took over, crash or failover, and how many.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from appliance.messages.codes import ExecEvent, GateReason, OmsReason
from appliance.runtime.counters import ProcessState
from appliance.sim.ports import free_port
from appliance.supervisor.status import build_status
from conftest import wait_until
from exchange_process import venue  # noqa: F401  (the fixture)
from exporter_scrape import exporter, promtool_check_metrics, samples as series_of, value  # noqa: F401  (exporter)
from oms_rig import journal_path, oms_layout
from supervisor_rig import Orders, Up, appliance, supervised_oms, supervisor_status, up_factory  # noqa: F401

E = ExecEvent


def takeover_layout(write_layout, unique_name, tmp_path, venue_port: int, transport: str = "tcp"):  # noqa: F811
    replication = {"mode": "sync", "transport": transport,
                   "primary": {"host": "127.0.0.1", "port": free_port(socket.SOCK_STREAM)},
                   "standby_journal": str(tmp_path / "standby" / "journal.bin"), "ack_limit_ms": 500,
                   "heartbeat_ms": 50, "peer_timeout_ms": 1000, "takeover": "standby"}
    doc = oms_layout(unique_name, venue_port, journal_path(tmp_path), replication=replication)
    return write_layout(supervised_oms(doc, tmp_path))


class GateSampler:
    """(gate open, reasons, oms pid, oms RUNNING, oms_ready, monotonic ns before and after the reads) every
    half millisecond, from a thread."""

    def __init__(self, memory):
        self.control = memory.control()
        self.table = memory.process_table()
        self.samples: list[tuple] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.0005):
            before = time.monotonic_ns()
            gate = self.control.gate()
            record = self.table.read("oms")
            self.samples.append((gate.open, gate.reasons, record.pid, record.state is ProcessState.RUNNING,
                                 self.control.get("oms_ready"), before, time.monotonic_ns()))

    def stop_once_ready(self, new_pid: int) -> list[tuple]:
        """The samples, once one shows ``new_pid`` running ready with the gate open (the test saw the gate open
        first: on a busy box the sampler's thread may not have looked since)."""
        wait_until(lambda: any(s[2] == new_pid and s[3] and s[4] == 1 and s[0] for s in self.samples), 10,
                   message=f"the sampler saw the OMS pid {new_pid} ready with the gate open")
        return self.stop()

    def stop(self) -> list[tuple]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


def assert_closed_through_the_takeover(samples: list[tuple], old_pid: int, new_pid: int) -> None:
    """From the first closed sample after the old OMS's last open one, closed until the new OMS runs
    ready; TAKEOVER among the reasons."""
    first_closed = next(i for i, s in enumerate(samples) if not s[0])
    ready = next(i for i, s in enumerate(samples) if s[2] == new_pid and s[3] and s[4] == 1 and s[0])
    assert first_closed < ready
    assert all(not s[0] for s in samples[first_closed:ready]), "the gate opened during the takeover"
    assert any(s[1] & GateReason.TAKEOVER for s in samples[first_closed:ready])
    assert all(s[2] in (old_pid, new_pid) for s in samples), "a third OMS ran"


SLACK_NS = 20_000_000     # the supervisor times its duty cycles, the sampler the gate words: a cycle apart at most


def assert_the_last_takeover(up: Up, samples: list[tuple], count: int, old_pid: int, new_pid: int, planned: bool,
                             began_ns: int) -> dict:
    """``appliance status``'s figures of the last takeover (read from the supervisor's counters): these pids,
    begun after ``began_ns`` (wall clock), done, and the gate closed as long as the sampler saw it closed."""
    t = build_status(up.layout, up.memory)["oms"]["takeover"]
    assert (t["count"], t["under_way"], t["last_old_pid"], t["last_new_pid"], t["last_planned"]) == \
        (count, False, old_pid, new_pid, planned)
    assert began_ns <= t["last_unix_ns"] <= time.time_ns()
    first_closed = next(i for i, s in enumerate(samples) if not s[0])
    ready = next(i for i, s in enumerate(samples) if s[2] == new_pid and s[3] and s[4] == 1 and s[0])
    assert first_closed > 0, "the sampler started after the gate closed"
    # the gate closed between the last open sample and the first closed one, and opened between the last
    # closed sample and the first open one: the reported figure lies between the shortest and longest such
    shortest = samples[ready - 1][5] - samples[first_closed][6]
    longest = samples[ready][6] - samples[first_closed - 1][5]
    closed_ns = t["last_gate_closed_ms"] * 1e6
    assert shortest - SLACK_NS <= closed_ns <= longest + SLACK_NS, (shortest, closed_ns, longest)
    return t


def assert_only_the_new_standby_connected(up: Up) -> None:
    """The new primary's replication saw one connection, its new standby's, and nothing else (over shm: no
    slot the takeover's own standby side left in replication_acks taken for a connection)."""
    counters = up.memory.counters_reader().by_label()
    assert [counters.get(f"oms.replication.{name}") for name in ("connected", "connections", "bad_frames",
                                                                 "refused_connections")] == [1, 1, 0, 0]


@pytest.fixture(params=["tcp", "shm"])
def running(request, venue, write_layout, unique_name, tmp_path, up_factory):  # noqa: F811
    """``appliance up`` with its OMS's standby, over either transport (shm: the layout's rings, whose
    roles stay by name through each takeover)."""
    up = up_factory(takeover_layout(write_layout, unique_name, tmp_path, venue.order_entry[1],
                                    request.param)).attach()
    wait_until(lambda: up.gate()[0] == 1, 60, message="the gate open (the standby caught up)")
    orders = Orders(up.layout)
    yield up, orders
    orders.close()


def test_sigkill_the_oms_the_supervisor_holds_the_gate_closed_while_its_standby_takes_over(running, exporter):  # noqa: F811
    up, orders = running
    assert build_status(up.layout, up.memory)["oms"]["takeover"]["count"] == 0
    table = up.memory.process_table()
    orders.new(1, shares=100, price=1_800_000)
    wait_until(lambda: E.ACCEPTED in orders.events(1), 10, message="order 1 accepted")
    old_pid = table.read("oms").pid
    standby_pid = supervisor_status(up)["standby"]["pid"]
    assert standby_pid and standby_pid != old_pid
    sampler = GateSampler(up.memory)
    wait_until(lambda: sampler.samples, 5, message="the gate sampled")
    killed_ns = time.time_ns()
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: up.gate()[0] == 1 and table.read("oms").pid == standby_pid, 30,
               message="the gate open again with the standby as the OMS")
    samples = sampler.stop_once_ready(standby_pid)
    assert_closed_through_the_takeover(samples, old_pid, standby_pid)
    assert_the_last_takeover(up, samples, 1, old_pid, standby_pid, False, killed_ns)
    status = supervisor_status(up)
    assert status["children"]["oms"]["pid"] == standby_pid and status["children"]["oms"]["restarts"] == 0
    assert status["standby"]["takeovers"] == 1 and status["standby"]["alive"]
    assert status["standby"]["pid"] not in (old_pid, standby_pid)          # a new standby beside the new OMS
    orders.new(2, shares=100, price=1_800_000)
    wait_until(lambda: E.ACCEPTED in orders.events(2), 10, message="order 2 accepted through the new primary")
    assert_only_the_new_standby_connected(up)
    assert up.memory.counters_reader().by_label().get("supervisor.restarts.oms", 0) == 0

    # a planned switch: the operator's name is required; then the standby started after the takeover takes over
    layout = str(up.layout_path)
    assert appliance("failover", "--layout", layout).returncode == 2
    new_standby = status["standby"]["pid"]
    sampler = GateSampler(up.memory)
    wait_until(lambda: sampler.samples, 5, message="the gate sampled")
    asked_ns = time.time_ns()
    done = appliance("failover", "--layout", layout, "--operator", "alice")
    assert done.returncode == 0, done.stderr
    assert f"pid {new_standby}" in done.stdout
    assert table.read("oms").pid == new_standby
    wait_until(lambda: up.gate()[0] == 1, 30, message="the gate open after the failover")
    samples = sampler.stop_once_ready(new_standby)
    assert_closed_through_the_takeover(samples, standby_pid, new_standby)
    # planned: counted from the failover's request, when the gate closed, not from the old OMS's exit
    last = assert_the_last_takeover(up, samples, 2, standby_pid, new_standby, True, asked_ns)
    said = f"takeovers 2, last {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last['last_unix_ns'] / 1e9))} " \
           f"failover pid {standby_pid} -> {new_standby}, gate closed {last['last_gate_closed_ms']:,.1f} ms"
    shown = appliance("status", "--layout", layout)
    assert shown.returncode == 0 and f"takeover: {said}" in shown.stdout, shown.stdout + shown.stderr
    as_json = appliance("status", "--layout", layout, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["oms"]["takeover"] == last
    top = appliance("top", "--layout", layout, "--once", "--interval", "0.05")
    assert top.returncode == 0 and f"TAKEOVER {said}" in top.stdout, top.stdout + top.stderr
    text = exporter(layout)()
    promtool_check_metrics(text)
    series = series_of(text)
    assert value(series, "appliance_takeover_total") == 2 and value(series, "appliance_takeover_under_way") == 0
    assert value(series, "appliance_takeover_last_planned") == 1
    assert (value(series, "appliance_takeover_last_old_pid"), value(series, "appliance_takeover_last_new_pid")) == \
        (standby_pid, new_standby)
    assert value(series, "appliance_takeover_last_timestamp_seconds") == last["last_unix_ns"] / 1e9
    assert value(series, "appliance_takeover_last_gate_closed_seconds") == pytest.approx(
        last["last_gate_closed_ms"] / 1e3, abs=1e-6)
    orders.new(3, shares=100, price=1_800_000)
    wait_until(lambda: E.ACCEPTED in orders.events(3), 10, message="order 3 accepted after the failover")
    assert_only_the_new_standby_connected(up)
    assert supervisor_status(up)["standby"]["takeovers"] == 2


def test_a_standby_the_oms_last_saw_disconnected_does_not_take_over_the_oms_restarts(running):
    up, orders = running
    table = up.memory.process_table()
    counters = up.memory.counters_reader
    old_pid = table.read("oms").pid
    standby_pid = supervisor_status(up)["standby"]["pid"]
    os.kill(standby_pid, signal.SIGSTOP)              # alive, silent: the OMS drops it after peer_timeout_ms
    try:
        wait_until(lambda: counters().by_label().get("oms.replication.connected") == 0, 10,
                   message="the OMS saw its standby gone")
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: table.read("oms").pid not in (0, old_pid), 30, message="an OMS again")
        new_pid = table.read("oms").pid
        assert new_pid != standby_pid                 # restarted, not taken over
        status = supervisor_status(up)
        assert status["children"]["oms"]["restarts"] == 1 and status["standby"]["takeovers"] == 0
        assert status["standby"]["pid"] == standby_pid and not status["standby"]["taking_over"]
    finally:
        os.kill(standby_pid, signal.SIGCONT)
    wait_until(lambda: up.gate()[0] == 1, 30, message="the gate open: the restarted OMS and its standby again")
    orders.new(1, shares=100, price=1_800_000)
    wait_until(lambda: E.ACCEPTED in orders.events(1), 10, message="order 1 accepted by the restarted OMS")


def test_a_former_standby_that_became_the_oms_restarts_from_its_own_journal(running):
    up, orders = running
    table = up.memory.process_table()
    counters = up.memory.counters_reader
    orders.new(1, shares=100, price=1_800_000)
    wait_until(lambda: E.ACCEPTED in orders.events(1), 10, message="order 1 accepted")
    first = supervisor_status(up)["standby"]["pid"]
    os.kill(table.read("oms").pid, signal.SIGKILL)
    wait_until(lambda: up.gate()[0] == 1 and table.read("oms").pid == first, 30, message="taken over")
    orders.new(2, shares=100, price=1_800_000)
    wait_until(lambda: E.ACCEPTED in orders.events(2), 10, message="order 2 accepted")
    second = supervisor_status(up)["standby"]["pid"]
    os.kill(second, signal.SIGSTOP)                   # no standby to take over this time
    try:
        wait_until(lambda: counters().by_label().get("oms.replication.connected") == 0, 10,
                   message="the OMS saw its standby gone")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: table.read("oms").pid not in (0, first), 30, message="the OMS restarted")
        status = supervisor_status(up)
        assert status["children"]["oms"]["restarts"] == 1 and status["standby"]["takeovers"] == 1
    finally:
        os.kill(second, signal.SIGCONT)
    wait_until(lambda: up.gate()[0] == 1, 30, message="the gate open again")
    orders.new(3, shares=100, price=1_800_000)
    wait_until(lambda: E.ACCEPTED in orders.events(3), 10, message="order 3 accepted")
    # the restarted OMS read the journal the takeover wrote (orders 1 and 2 known), not the layout's first one
    orders.new(2, shares=100, price=1_700_000)
    wait_until(lambda: E.REJECTED_LOCALLY in orders.events(2), 10, message="client order id 2 again refused")
    assert orders.seen[-1]["reason"] == OmsReason.DUPLICATE_CLIENT_ID
