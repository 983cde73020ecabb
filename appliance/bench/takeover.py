"""Takeover time for ``appliance bench failover``: the primary OMS's death to the first new order the
venue accepts, through its hot standby (``oms/takeover.py``) against today's restart-and-recover.

One simulated exchange (order-entry heartbeat 100 ms: the OMS knows the venue's replay drained at
the first heartbeat after login, so both peers pay the same) and one private layout; the bench plays
risk (an immediate-or-cancel ApprovedOrder far from the market at a time, its heartbeat) and the
strategy (reads the reports). The OMS runs as a process (``runtime.agent``), as in production.

- ``takeover``: ``appliance oms-standby --takeover auto`` beside it (sync replication, ``without_standby:
  trade`` so that the new primary trades at once; a new standby is started after each measured
  takeover and waited for, outside the span). SIGKILL the primary.
- ``restart_recover``: no standby; SIGKILL the OMS and start a new one at once on the same journal (the
  supervisor's restart without its backoff).

Span, per kill: ``time.monotonic_ns()`` just before the SIGKILL to the ACCEPTED report of the first
order the new primary sent (orders put on the ring meanwhile are refused NOT_RECOVERED and replaced
by the next one). ``lost_orders``: orders never answered; ``duplicate_orders``: client order ids the
journal shows sent twice. Kinds alternate (takeover, restart, takeover, ...) so noise is shared.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ANSWER_WAIT_S = 10.0


def _exchange_config(path: str) -> None:
    import yaml

    from appliance.exchange.config import DEFAULT_CONFIG_YAML
    doc = yaml.safe_load(DEFAULT_CONFIG_YAML)
    doc["order_entry"]["heartbeat_interval_ms"] = 100
    doc["order_entry"]["peer_timeout_ms"] = 1000
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)


def _layout(directory: str, name: str, venue_port: int, replication_port: int) -> str:
    import yaml

    from appliance.bench.oms import _layout_document
    doc = _layout_document(name, "journal.bin", venue_port, "page_cache")
    params = doc["processes"][-1]["params"]
    params.update({"journal_size_mb": 16, "risk_heartbeat_limit_ms": 2_000, "heartbeat_ms": 100,
                   "peer_timeout_ms": 3_000, "reconnect_min_ms": 5, "reconnect_max_ms": 50,
                   "unacked_timeout_ms": 300})
    params["replication"] = {"mode": "sync", "primary": {"host": "127.0.0.1", "port": replication_port},
                             "standby_journal": "standby-journal.bin", "ack_limit_ms": 1_000,
                             "without_standby": "trade", "heartbeat_ms": 20, "peer_timeout_ms": 500}
    doc["processes"][-1]["idle"] = {"strategy": "backoff", "spins": 10, "yields": 5, "min_park_ns": 20_000,
                                    "max_park_ns": 200_000}
    path = os.path.join(directory, "layout.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    return path


class _Beat:
    """Risk's heartbeat in the process table, from a thread."""

    def __init__(self, memory):
        self._heartbeat = memory.heartbeat("risk")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self._heartbeat.begin()
            self._heartbeat.end(0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Rig:
    """The exchange, the layout's shared memory, the OMS process and (takeover) its standby."""

    def __init__(self, timeout: float, name: str):
        from appliance.bench.exchange_load import exchange_args
        from appliance.exchange.config import default_config
        from appliance.oms.config import OmsConfig
        from appliance.runtime.layout import load_layout
        from appliance.runtime.memory import SharedMemory
        from appliance.sim.credentials import write_sim_login
        from appliance.sim.exchange_process import ExchangeProcess
        from appliance.sim.ports import free_port

        self.timeout = timeout
        self.dir = tempfile.mkdtemp(prefix="bench-takeover-", dir="/tmp")
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.memory = self.beat = None
        self.feed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.feed.bind(("127.0.0.1", 0))
        config = os.path.join(self.dir, "exchange.yaml")
        _exchange_config(config)
        self.exchange = ExchangeProcess(["--config", config, *exchange_args(self.feed.getsockname()[1],
                                                                            os.path.join(self.dir, "ctl.sock"), 0)])
        try:
            ports = self.exchange.wait_ready(timeout)
            write_sim_login(os.path.join(self.dir, "venue.credentials"), default_config(), OmsConfig().firm)
            self.layout_path = _layout(self.dir, f"bto-{os.getpid()}-{name}", ports["order_entry"][1],
                                       free_port(socket.SOCK_STREAM))
            self.layout = load_layout(self.layout_path)
            self.memory = SharedMemory.create(self.layout)
            self.control = self.memory.control("*")
            self.control.write_gate(0)
            self.beat = _Beat(self.memory)
            self.approved = self.memory.ring("approved_orders", "producer")
            self.buffer = self.memory.ring_buffer("approved_orders")
            self.reports = self.memory.ring("exec_to_strategy", "consumer")
            self.reports_buffer = self.memory.ring_buffer("exec_to_strategy")
            self.to_risk = self.memory.ring("exec_to_risk", "consumer")
            self.table = self.memory.process_table()
        except BaseException:
            self.close()
            raise
        self.journals = [os.path.join(self.dir, "journal.bin"), os.path.join(self.dir, "standby-journal.bin")]
        self.next_id = 1
        self.answers: dict[int, int] = {}       # client order id -> the first answer's event
        self.sent: list[int] = []

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen:
        log = open(os.path.join(self.dir, f"{name}-{len(self.procs)}.log"), "wb")
        self.logs.append(log)
        proc = subprocess.Popen([sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_oms(self) -> subprocess.Popen:
        return self._spawn(["appliance.runtime.agent", "--layout", self.layout_path, "--process", "oms"], "oms")

    def start_standby(self, journal: str | None = None) -> subprocess.Popen:
        extra = ["--journal", journal, "--fresh"] if journal else []
        return self._spawn(["appliance", "oms-standby", "--layout", self.layout_path, "--takeover", "auto",
                            "--status-every", "3600", *extra], "standby")

    def counter(self, label: str) -> int:
        return self.memory.counters_reader().by_label().get(label, 0)

    def wait(self, predicate, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench takeover: {what} not within {self.timeout:g} s")
            self.drain()
            time.sleep(0.001)

    def running(self, pid: int) -> bool:
        from appliance.runtime.counters import ProcessState
        record = self.table.read("oms")
        return record.pid == pid and record.state is ProcessState.RUNNING

    def drain(self) -> None:
        from appliance.messages.catalog import EXECUTION_REPORT
        while (offset := self.reports.peek()) >= 0:
            if EXECUTION_REPORT.read(self.reports_buffer, offset).type_id == EXECUTION_REPORT.type_id:
                report = EXECUTION_REPORT.read(self.reports_buffer, offset)
                self.answers.setdefault(report.client_order_id, report.event)
            self.reports.release()
        while self.to_risk.peek() >= 0:
            self.to_risk.release()

    def order(self) -> int:
        """One IOC buy far below the market on the ring: its client order id."""
        from appliance.messages.catalog import APPROVED_ORDER
        from appliance.messages.codes import TIF_IOC, Action, Side
        while (offset := self.approved.claim()) < 0:
            self.drain()
            time.sleep(0.0005)
        i = self.next_id
        self.next_id += 1
        now = time.time_ns()
        APPROVED_ORDER.pack_into(self.buffer, offset, i, 0, 1, 0, Action.NEW, Side.BUY, 0, 0, 100, 1_000_000,
                                 TIF_IOC, 0, 0, 0, 0, now - 30_000, now - 20_000, now - 10_000, now)
        self.approved.commit()
        self.sent.append(i)
        return i

    def first_accepted_after(self) -> int:
        """Orders one at a time until one is ACCEPTED: the monotonic ns its report was read."""
        from appliance.messages.codes import ExecEvent
        deadline = time.monotonic() + ANSWER_WAIT_S
        while True:
            i = self.order()
            while i not in self.answers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"order {i} not answered within {ANSWER_WAIT_S:g} s")
                self.drain()
                if i not in self.answers:
                    time.sleep(0.0002)
            if self.answers[i] == ExecEvent.ACCEPTED:
                return time.monotonic_ns()

    def duplicates(self, journal: str) -> int:
        from appliance.messages.codes import Action
        from appliance.oms import journal_records as jr
        from appliance.oms.journal_format import read_records
        from appliance.oms.journal_records import RecordType
        seen: dict[int, int] = {}
        for record in read_records(journal)[0]:
            if record.type == RecordType.ORDER_SENT:
                sent = jr.ORDER_SENT.parse(record.payload)
                if sent.action == Action.NEW:
                    seen[sent.client_order_id] = seen.get(sent.client_order_id, 0) + 1
        return sum(n - 1 for n in seen.values() if n > 1)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for log in self.logs:
            log.close()
        if self.beat is not None:
            self.beat.stop()
        if self.memory is not None:
            self.memory.remove()
        self.exchange.terminate()
        self.exchange.close()
        self.feed.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(count: int, timeout: float) -> dict:
    """``count`` takeovers and ``count`` restarts, alternating: their spans (ns) and the order checks."""
    takeover_rig = Rig(timeout, "t")
    restart_rig = None
    try:
        restart_rig = Rig(timeout, "r")
        restart_rig.control.write_gate(0)
        spans = {"takeover": [], "restart_recover": []}
        # the takeover side: a primary and its standby, caught up
        primary = takeover_rig.start_oms()
        takeover_rig.wait(lambda: takeover_rig.running(primary.pid), "the OMS running")
        standby = takeover_rig.start_standby()
        takeover_rig.wait(lambda: takeover_rig.counter("oms.replication.connected") == 1
                          and takeover_rig.counter("oms.replication.lag_records") == 0, "the standby caught up")
        journal = 0
        # the restart side: one OMS
        oms = restart_rig.start_oms()
        restart_rig.wait(lambda: restart_rig.running(oms.pid) and restart_rig.control.get("oms_ready") == 1,
                         "the OMS ready")
        takeover_rig.wait(lambda: takeover_rig.control.get("oms_ready") == 1, "the OMS ready")
        for rig in (takeover_rig, restart_rig):
            rig.first_accepted_after()              # warm: one order through before the first kill
        for _ in range(count):
            # takeover
            killed = time.monotonic_ns()
            os.kill(primary.pid, signal.SIGKILL)
            done = takeover_rig.first_accepted_after()
            spans["takeover"].append(done - killed)
            primary.wait(10)
            takeover_rig.wait(lambda: takeover_rig.running(standby.pid), "the standby as the OMS")
            primary, old, journal = standby, takeover_rig.journals[journal], 1 - journal
            standby = takeover_rig.start_standby(old)
            takeover_rig.wait(lambda: takeover_rig.counter("oms.replication.connected") == 1
                              and takeover_rig.counter("oms.replication.lag_records") == 0,
                              "the new standby caught up")
            # restart and recover
            killed = time.monotonic_ns()
            os.kill(oms.pid, signal.SIGKILL)
            oms.wait(10)
            oms = restart_rig.start_oms()
            done = restart_rig.first_accepted_after()
            spans["restart_recover"].append(done - killed)
        for rig in (takeover_rig, restart_rig):
            try:
                rig.wait(lambda: all(i in rig.answers for i in rig.sent), "every order answered")
            except RuntimeError:
                pass                                # counted as lost below
        from appliance.messages.codes import ExecEvent
        return {"spans": spans,
                "lost_orders": sum(1 for i in takeover_rig.sent if i not in takeover_rig.answers),
                "duplicate_orders": takeover_rig.duplicates(takeover_rig.journals[journal]),
                "restart_duplicate_orders": restart_rig.duplicates(restart_rig.journals[0]),
                "refused_while_taking_over": sum(1 for e in takeover_rig.answers.values()
                                                 if e == ExecEvent.REJECTED_LOCALLY)}
    finally:
        takeover_rig.close()
        if restart_rig is not None:
            restart_rig.close()
