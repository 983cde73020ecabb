"""shmtop against a running pair of agents: --once, --json, the live view in a real terminal (tmux),
the no-appliance case and a layout mismatch; and with trading state (the gate and why, the clock,
tick-to-trade, positions, P&L and book top) written by the test, moving under a live view."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from appliance.messages.codes import ClockState
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import ROOT, SUPPORT, wait_until
from ops_trading_state import running_trading
from probe_pair import pair_document, running_pair


@pytest.fixture
def running(write_layout, unique_name, spawner):
    with running_pair(write_layout, unique_name, spawner) as (path, procs):
        yield path, procs


def top(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "appliance", "top", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def top_while_moving(*args, moving):
    """``top`` run again until ``moving(stdout)``: on a busy box the pair may not be scheduled within one
    interval, and a rate of 0 then is the truth, not a fault of shmtop."""
    def attempt():
        proc = top(*args)
        assert proc.returncode == 0, proc.stderr
        return proc if moving(proc.stdout) else None
    return wait_until(attempt, 60, interval=0.1, message="shmtop to show the pair's traffic")


def _probe_fields(out: str) -> list[str]:
    return next(line for line in out.splitlines() if line.startswith("probe ")).split()


def test_once_prints_rings_processes_and_counters(running):
    path, procs = running
    proc = top_while_moving("--layout", str(path), "--once", "--interval", "0.3",
                            moving=lambda out: all(int(f.replace(",", "")) > 0 for f in _probe_fields(out)[6:8]))
    out = proc.stdout
    fields = _probe_fields(out)
    assert fields[1:3] == ["producer", "consumer"] and fields[5] == "4096"
    assert int(fields[6].replace(",", "")) > 0 and int(fields[7].replace(",", "")) > 0     # in/s and out/s
    for name, p in procs.items():
        assert re.search(rf"^{name}\s+{p.pid}\s+running\s+\d\s+sleep", out, re.M), out
    assert re.search(r"probe\.received\s+[\d,]+", out)


def test_json_snapshot_has_live_values(running):
    path, procs = running
    proc = top_while_moving("--layout", str(path), "--json", "--interval", "0.3",
                            moving=lambda out: all(r["in_per_s"] > 0 and r["out_per_s"] > 0
                                                   for r in json.loads(out)["rings"]))
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


# --------------------------------------------------------------------------- trading state

@pytest.fixture
def trading(write_layout, unique_name, spawner):
    with running_trading(write_layout, unique_name, spawner) as running_state:
        yield running_state


def test_once_shows_the_gate_clock_latency_and_symbols(trading):
    path, procs, state = trading
    proc = top("--layout", str(path), "--once", "--interval", "0.2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^GATE\s+CLOSED: kill_switch, feed_not_ready\s+\(epoch 4", out, re.M), out
    assert re.search(r"^CLOCK\s+healthy\s+offset -1\.500 us\s+maxerror 25\.000 us", out, re.M), out
    assert re.search(r"^RISK\s+halted\s+ready\s+kill switch LATCHED.*OMS ready\s+session up\s+open orders 3", out,
                     re.M), out
    hops = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(feed|strategy|risk|oms|tick_to_trade)\s+(\d+)\s+([\d.,]+)\s+([\d.,]+)\s+([\d.,]+)\s+([\d.,]+)"
        r"\s+([\d.,]+)$", out, re.M)}
    assert set(hops) == {"feed", "strategy", "risk", "oms", "tick_to_trade"}, out
    assert hops["feed"][0] == "10" and 1.0 <= float(hops["feed"][2]) <= 10.0       # p50 inside the 1-10 us bucket
    assert hops["feed"][5] == "50.0"                                                # the exact max
    aapl = next(line for line in out.splitlines() if line.startswith("AAPL "))
    assert aapl.split()[1:7] == ["+100", "149.0000", "+2.50", "+101.00", "+103.50", "7"], aapl
    assert "300 x 150.0000" in aapl and "150.0200 x 400" in aapl and aapl.endswith("live")
    msft = next(line for line in out.splitlines() if line.startswith("MSFT "))
    assert msft.split()[1] == "-50" and msft.endswith("stale,crossed, no mark"), msft     # never a good book
    assert re.search(r"risk\.rejects\.MAX_SHARES\s+2$", out, re.M)


def test_json_has_the_trading_state(trading):
    path, procs, state = trading
    proc = top("--layout", str(path), "--json", "--interval", "0.2")
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    trading_state = snap["trading"]
    assert trading_state["gate"]["open"] is False
    assert trading_state["gate"]["reasons"] == ["KILL_SWITCH", "FEED_NOT_READY"]
    assert trading_state["clock"]["state"] == "HEALTHY" and trading_state["clock"]["offset_ns"] == -1500
    assert trading_state["risk"] == {"state": "HALTED", "ready": True, "kill_latched": True}
    assert snap["control"]["oms_open_orders"] == 3
    symbols = {s["symbol"]: s for s in snap["symbols"]}
    assert symbols["AAPL"]["position"] == 100 and symbols["AAPL"]["unrealized_pnl"] == 101.0
    assert symbols["AAPL"]["bid"] == 150.0 and symbols["AAPL"]["ask_shares"] == 400
    assert symbols["MSFT"]["flags"] == ["stale", "crossed"] and symbols["MSFT"]["realized_pnl"] == -1.0
    t2t = snap["tick_to_trade"]["tick_to_trade"]
    assert t2t["count"] == 10 and 10_000 <= t2t["p50_ns"] <= 100_000
    assert snap["rings"][0]["in_per_s"] > 0          # the rings are still there and live


def test_a_layout_without_trading_tables_shows_what_exists(running):
    path, procs = running
    snap = json.loads(top("--layout", str(path), "--json", "--interval", "0.1").stdout)
    assert snap["trading"] is None and snap["control"] is None and snap["symbols"] == []
    assert snap["tick_to_trade"] == {}
    text = top("--layout", str(path), "--once", "--interval", "0.1").stdout
    assert "GATE" not in text and "SYMBOL" not in text and "probe " in text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by .ci/run")
def test_live_view_shows_trading_state_moving(trading):
    path, procs, state = trading
    session = f"shmtop-{uuid.uuid4().hex[:8]}"
    command = (f"cd {ROOT} && PYTHONPATH={SUPPORT}:{ROOT} {sys.executable} -m appliance top --layout {path} "
               f"--interval 0.1")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "220", "-y", "60", command], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def keys(*sent):
        subprocess.run(["tmux", "send-keys", "-t", session, *sent], check=True)

    try:
        first = wait_until(lambda: (s := screen()) and re.search(r"^AAPL\s+\+100", s, re.M) and s, 30, 0.1,
                           "symbols on screen")
        assert "GATE     CLOSED: kill_switch, feed_not_ready" in first
        assert re.search(r"^CLOCK\s+healthy\s+offset -1\.500 us", first, re.M)
        assert re.search(r"^tick_to_trade\s+10\s", first, re.M)
        assert re.search(rf"producer\s+{procs['producer'].pid}\s+running", first)
        # the test changes the state; the screen follows
        state.position(0, 250, 372_500_000, 40_000, orders_sent=9, fills=5)
        state.readiness()
        state.gate(True)
        state.clock(ClockState.UNHEALTHY, 250_000, 400_000)
        moved = wait_until(lambda: (s := screen()) and re.search(r"^AAPL\s+\+250", s, re.M) and s, 10, 0.1,
                           "the new position")
        wait_until(lambda: re.search(r"^GATE\s+OPEN", screen(), re.M), 10, 0.1, "the gate reopened")
        assert re.search(r"^CLOCK\s+unhealthy\s+offset \+250\.000 us", screen(), re.M), moved
        keys("s")
        keys("s")
        keys("s")
        wait_until(lambda: "sort (pnl)" in screen(), 10, 0.1, "sort by P&L")
        rows = [line.split()[0] for line in screen().splitlines() if re.match(r"^(AAPL|MSFT)\s+[+-]\d", line)]
        assert rows == ["MSFT", "AAPL"], rows            # worst P&L first
        keys("/", "M", "S", "F", "T", "Enter")
        filtered = wait_until(lambda: (s := screen()) and "[MSFT]" in s and s, 10, 0.1, "filter applied")
        assert re.search(r"^MSFT\s", filtered, re.M) and not re.search(r"^AAPL\s", filtered, re.M)
        keys("q")
        wait_until(lambda: subprocess.run(["tmux", "has-session", "-t", session],
                                          capture_output=True).returncode != 0, 10, 0.1, "shmtop quit on q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
