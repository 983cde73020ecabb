"""The supervisor tests' rig: a layout with stand-in risk and OMS agents (tests/support/supervised_agents.py),
``appliance up`` as a child reading the shared memory it made, and the CLI run as the operator runs it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from appliance.command_io.json_lines import request_json
from appliance.messages.catalog import EXECUTION_REPORT
from appliance.messages.codes import GateReason
from appliance.oms import agent as oms_agent
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.runtime.segment import segment_path
from conftest import ROOT, SUPPORT, layout_document, wait_until
from oms_rig import Rig

IDLE = {"strategy": "sleep", "sleep_ns": 1_000_000}


def make_layout(tmp_path, name, *, risk="supervised_agents:FakeRisk", oms="supervised_agents:FakeOms",
                strategy="simple_agents:IdleAgent", supervisor_params=None, feed=None, oms_idle=None):
    doc = layout_document(
        name,
        processes=[{"name": "supervisor", "agent": "appliance.supervisor.agent:SupervisorAgent", "idle": IDLE,
                    "params": {"clock": {"require_sync": False}, "exporter": {"enabled": False},
                               "control_socket": str(tmp_path / "sup.sock"), "log_dir": str(tmp_path / "logs"),
                               "restart": {"backoff_initial_ms": 100, "backoff_max_ms": 400},
                               "risk_heartbeat_timeout_ms": 300, "start_timeout_s": 20,
                               **(supervisor_params or {})}},
                   {"name": "strategy", "agent": strategy, "idle": IDLE},
                   {"name": "risk", "agent": risk, "idle": IDLE},
                   {"name": "oms", "agent": oms, "idle": oms_idle or IDLE}],
        rings=[{"name": "risk_commands", "segment": "main", "producer": "supervisor", "consumer": "risk",
                "message": "RiskCommand", "slot_size": 64, "capacity": 64}],
        symbols=["AAPL"])
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    doc["processes"][0]["params"]["start_order"] = ["oms", "risk", "strategy"]
    if feed is not None:
        doc["processes"].append({"name": "feed", "agent": feed, "idle": IDLE})
        doc["processes"][0]["params"]["start_order"].insert(0, "feed")
    path = tmp_path / "layout.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def supervised_oms(doc: dict, directory) -> dict:
    """An ``oms_rig.oms_layout`` document made for ``appliance up`` with the real OMS: the supervisor's params
    (its socket and logs in ``directory``), risk and the strategy stand-ins (the test puts approved orders on
    the ring and reads the reports: ``Orders``)."""
    supervisor, strategy, risk = doc["processes"][:3]
    supervisor["params"] = {"clock": {"require_sync": False}, "exporter": {"enabled": False},
                            "control_socket": str(directory / "sup.sock"), "log_dir": str(directory / "logs"),
                            "restart": {"backoff_initial_ms": 100, "backoff_max_ms": 400},
                            "risk_heartbeat_timeout_ms": 300, "start_timeout_s": 20,
                            "start_order": ["oms", "risk", "strategy"]}
    strategy["agent"] = "simple_agents:IdleAgent"
    risk["agent"] = "supervised_agents:FakeRisk"
    doc["rings"].append({"name": "risk_commands", "segment": "main", "producer": "supervisor", "consumer": "risk",
                         "message": "RiskCommand", "slot_size": 64, "capacity": 64})
    return doc


class Orders:
    """The test as risk's producer side of ``approved_orders`` and the strategy's reader of reports."""

    def __init__(self, layout):
        self.memory = SharedMemory.attach(layout)
        self.approved = self.memory.channel(oms_agent.ORDERS_RING.other_side(), "risk")
        self.reports = self.memory.channel(oms_agent.TO_STRATEGY.other_side(), "strategy")
        self.seen: list[dict] = []
        self.new = Rig.approve.__get__(self)           # the rig's one way of packing an ApprovedOrder

    def events(self, client_order_id: int) -> list[int]:
        while (offset := self.reports.peek()) >= 0:
            if EXECUTION_REPORT.read(self.reports.buffer, offset).type_id == EXECUTION_REPORT.type_id:
                self.seen.append(EXECUTION_REPORT.as_dict(self.reports.buffer, offset))
            self.reports.release()
        return [r["event"] for r in self.seen if r["client_order_id"] == client_order_id]

    def close(self) -> None:
        self.memory.close()


def supervisor_status(up: "Up") -> dict:
    """The supervisor's own answer to ``status`` on its control socket."""
    path = up.layout.processes["supervisor"].params["control_socket"]
    return request_json(path, {"command": "status"}, 5)["supervisor"]


def env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(SUPPORT), str(ROOT), os.environ.get("PYTHONPATH", "")]))


def appliance(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=ROOT)


class Up:
    """`appliance up` as a child; reads the shared memory it created."""

    def __init__(self, layout_path):
        self.layout_path = layout_path
        self.layout = load_layout(layout_path)
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "up", "--layout", str(layout_path),
                                      "--status-line", "off"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env(), cwd=ROOT)
        self.memory = None

    def attach(self):
        def attached():
            if self.proc.poll() is not None:
                raise AssertionError(f"appliance up exited {self.proc.returncode}:\n{self.proc.stdout.read()}")
            try:
                self.memory = SharedMemory.attach(self.layout, writable=False)
                return True
            except Exception:
                return False
        wait_until(attached, 30, message="the segment")
        self.control = self.memory.control()
        return self

    def gate(self):
        return self.control.get("gate_open"), GateReason(self.control.get("gate_reasons"))

    def output(self, timeout=60):
        out, _ = self.proc.communicate(timeout=timeout)
        return out

    def close(self):
        if self.memory is not None:
            self.memory.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for spec in self.layout.segments.values():      # nothing may be left behind, even on failure
            assert not os.path.exists(segment_path(spec)), f"segment {spec.shm_name} left behind"


@pytest.fixture
def up_factory():
    started = []

    def start(layout_path):
        u = Up(layout_path)
        started.append(u)
        return u
    yield start
    for u in started:
        u.close()
