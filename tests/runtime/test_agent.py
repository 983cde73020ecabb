"""Agent runner: heartbeat, the layout's idle strategy, pinning, SIGTERM, failures, privileges."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from appliance.runtime.counters import IdleStrategyId, ProcessState
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document, output_of, wait_until

STRATEGIES = {"busy_spin": IdleStrategyId.BUSY_SPIN, "yield": IdleStrategyId.YIELD,
              "backoff": IdleStrategyId.BACKOFF, "sleep": IdleStrategyId.SLEEP, "doorbell": IdleStrategyId.DOORBELL}


def solo_layout(write_layout, name, agent="simple_agents:IdleAgent", idle=None, cpu=1):
    doc = layout_document(name, processes=[{"name": "solo", "agent": agent, "cpu": cpu,
                                            "idle": idle or {"strategy": "backoff"}}], rings=[])
    path = write_layout(doc)
    return path, load_layout(path)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_heartbeat_advances_with_the_layouts_idle_strategy_and_sigterm_stops_it(
        write_layout, unique_name, spawner, strategy):
    path, layout = solo_layout(write_layout, unique_name, idle={"strategy": strategy})
    with SharedMemory.create(layout) as memory:
        table = memory.process_table()
        proc = spawner.start(path, "solo")
        wait_until(lambda: table.read("solo").state is ProcessState.RUNNING or proc.poll() is not None, 30,
                   message="agent running")
        assert proc.poll() is None, output_of(proc)
        first = table.read("solo").beats
        wait_until(lambda: table.read("solo").beats > first + 5, 10, message="heartbeat advancing")
        record = table.read("solo")
        assert record.pid == proc.pid
        assert record.idle_strategy == STRATEGIES[strategy]
        assert record.cpu == 1 and psutil.Process(proc.pid).cpu_affinity() == [1]
        assert record.heartbeat_age_ns() < 5_000_000_000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=1.0) == 0, output_of(proc)
        assert table.read("solo").state is ProcessState.STOPPED


def test_an_agent_that_raises_is_reported_failed(write_layout, unique_name, spawner):
    path, layout = solo_layout(write_layout, unique_name, agent="simple_agents:FailingAgent")
    with SharedMemory.create(layout) as memory:
        proc = spawner.start(path, "solo")
        out = output_of(proc, timeout=30)
        assert proc.returncode == 4
        assert "deliberate failure" in out
        assert memory.process_table().read("solo").state is ProcessState.FAILED


@pytest.mark.parametrize("agent,reason", [
    ("simple_agents:NotAnAgent", "is not an Agent subclass"),
    ("simple_agents:Missing", "has no 'Missing'"),
    ("no_such_module_xyz:Agent", "cannot import 'no_such_module_xyz'"),
])
def test_an_agent_that_cannot_be_loaded_stops_start_up(write_layout, unique_name, spawner, agent, reason):
    path, layout = solo_layout(write_layout, unique_name, agent=agent)
    with SharedMemory.create(layout):
        proc = spawner.start(path, "solo")
        out = output_of(proc, timeout=30)
        assert proc.returncode == 2 and reason in out


def test_runner_without_segments_says_so(write_layout, unique_name, spawner):
    path, _ = solo_layout(write_layout, unique_name)
    proc = spawner.start(path, "solo")
    out = output_of(proc, timeout=30)
    assert proc.returncode == 2 and "does not exist" in out


def test_unknown_process_name_is_refused(write_layout, unique_name, spawner):
    path, layout = solo_layout(write_layout, unique_name)
    proc = spawner.start(path, "ghost")
    out = output_of(proc, timeout=30)
    assert proc.returncode == 2 and "no process named 'ghost'" in out


UNPRIVILEGED_CHECK = r"""
import os, resource, sys
from appliance.runtime.agent import SchedulingError, apply_scheduling
from appliance.runtime.layout import IdleSpec, ProcessSpec, SchedulingSpec
# Imports first (the interpreter may live where 'nobody' cannot read), then drop every privilege.
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
def spec(**kw):
    return ProcessSpec(name="p", index=0, agent="m:A", cpu=None, idle=IdleSpec("yield"), scheduling=SchedulingSpec(**kw))
for kw in ({"policy": "fifo", "priority": 10}, {"mlockall": True}):
    try:
        apply_scheduling(spec(**kw))
        print("ALLOWED", kw)
    except SchedulingError as exc:
        print("REFUSED", exc)
"""


def test_scheduling_privileges_refused_with_a_clear_error():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", UNPRIVILEGED_CHECK], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": root}, cwd="/").stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("REFUSED SCHED_FIFO priority 10 not permitted (EPERM)")
    assert "CAP_SYS_NICE" in lines[0] and "policy: other" in lines[0]
    assert lines[1].startswith("REFUSED mlockall refused") and "LimitMEMLOCK=infinity" in lines[1]
