"""shmtop against a running pair of agents: --once, --json, the live view in a real terminal (tmux),
the no-appliance case and a layout mismatch."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import ROOT, SUPPORT, wait_until
from probe_pair import pair_document, running_pair


@pytest.fixture
def running(write_layout, unique_name, spawner):
    with running_pair(write_layout, unique_name, spawner) as (path, procs):
        yield path, procs


def top(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "appliance", "top", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_once_prints_rings_processes_and_counters(running):
    path, procs = running
    proc = top("--layout", str(path), "--once", "--interval", "0.3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    ring_line = next(line for line in out.splitlines() if line.startswith("probe "))
    fields = ring_line.split()
    assert fields[1:3] == ["producer", "consumer"] and fields[5] == "4096"
    assert int(fields[6].replace(",", "")) > 0 and int(fields[7].replace(",", "")) > 0     # in/s and out/s
    for name, p in procs.items():
        assert re.search(rf"^{name}\s+{p.pid}\s+running\s+\d\s+sleep", out, re.M), out
    assert re.search(r"probe\.received\s+[\d,]+", out)


def test_json_snapshot_has_live_values(running):
    path, procs = running
    proc = top("--layout", str(path), "--json", "--interval", "0.3")
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    (ring,) = snap["rings"]
    assert ring["name"] == "probe" and ring["capacity"] == 4096
    assert ring["published"] >= ring["consumed"] > 10_000 and ring["in_per_s"] > 0 and ring["out_per_s"] > 0
    states = {p["name"]: p for p in snap["processes"]}
    for name, p in procs.items():
        assert states[name]["pid"] == p.pid and states[name]["state"] == "running" and states[name]["alive"]
        assert states[name]["heartbeat_age_ms"] < 10_000 and states[name]["idle"] == "sleep"
    assert snap["counters"]["probe.errors"] == 0 and snap["segments"][0]["backing"] == "4k (/dev/shm)"


def test_no_appliance_running_exits_non_zero(write_layout, unique_name):
    path = write_layout(pair_document(unique_name))
    proc = top("--layout", str(path), "--once", "--interval", "0.1")
    assert proc.returncode == 1 and "no appliance running" in proc.stderr


def test_a_segment_of_another_layout_version_says_which(write_layout, unique_name):
    created = write_layout(pair_document(unique_name, version=1), "v1.yaml")
    newer = write_layout(pair_document(unique_name, version=2), "v2.yaml")
    with SharedMemory.create(load_layout(created)):
        proc = top("--layout", str(newer), "--once", "--interval", "0.1")
    assert proc.returncode == 1
    assert "layout version: segment 1" in proc.stderr and "v2.yaml 2" in proc.stderr


def test_bad_interval_is_a_usage_error(write_layout, unique_name):
    proc = top("--layout", "x.yaml", "--interval", "0")
    assert proc.returncode == 2 and "between 0.05 and 3600" in proc.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by .ci/run")
def test_live_view_in_a_real_terminal(running):
    path, procs = running
    session = f"shmtop-{uuid.uuid4().hex[:8]}"
    env_prefix = f"PYTHONPATH={SUPPORT}:{ROOT}"
    command = f"cd {ROOT} && {env_prefix} {sys.executable} -m appliance top --layout {path} --interval 0.2"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def published(text: str) -> int | None:
        match = re.search(r"probe\.published\s+([\d,]+)", text)
        return int(match.group(1).replace(",", "")) if match else None

    try:
        first = wait_until(lambda: (s := screen()) and published(s) and s, 30, 0.1, "shmtop on screen")
        assert re.search(rf"producer\s+{procs['producer'].pid}\s+running", first)
        assert "probe " in first and "sort (name)" in first
        wait_until(lambda: (published(screen()) or 0) > published(first), 10, 0.1, "live values moving")
        subprocess.run(["tmux", "send-keys", "-t", session, "s"], check=True)
        wait_until(lambda: "sort (depth)" in screen(), 10, 0.1, "sort key")
        subprocess.run(["tmux", "send-keys", "-t", session, "/", "c", "o", "n", "s", "Enter"], check=True)
        filtered = wait_until(lambda: (s := screen()) and "[cons]" in s and s, 10, 0.1, "filter applied")
        assert re.search(r"^consumer\s", filtered, re.M) and not re.search(r"^producer\s", filtered, re.M)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_until(lambda: subprocess.run(["tmux", "has-session", "-t", session],
                                          capture_output=True).returncode != 0, 10, 0.1, "shmtop quit on q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
