"""The Prometheus exporter scraped over HTTP while a pair of agents runs: key series present and
moving, valid exposition (promtool check metrics), appliance_up 0 when nothing runs; the trading
state (gate, clock, risk, OMS, positions, book, rejects, restarts, tick-to-trade histograms)
written by the test and followed scrape after scrape; and the exporter `appliance up` starts,
showing the real supervisor's gate and the kill switch."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest
import yaml

from appliance.ops import metrics
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.runtime.segment import segment_path
from conftest import ROOT, SUPPORT, layout_document, wait_until
from ops_trading_state import running_trading, trading_document
from exporter_scrape import exporter, promtool_check_metrics, samples, value  # noqa: F401  (exporter: the fixture)
from probe_pair import pair_document, running_pair


def test_scrape_shows_rings_processes_and_counters_moving(write_layout, unique_name, spawner, exporter):
    with running_pair(write_layout, unique_name, spawner) as (path, procs):
        scrape = exporter(path)
        first = samples(scrape())
        ring = {"ring": "probe", "producer": "producer", "consumer": "consumer"}
        assert value(first, "appliance_up") == 1
        assert value(first, "appliance_ring_capacity", **ring) == 4096
        assert value(first, "appliance_process_up", process="producer") == 1
        assert value(first, "appliance_process_state", process="consumer", state="running") == 1
        assert value(first, "appliance_process_state", process="consumer", state="failed") == 0
        assert 0 <= value(first, "appliance_process_heartbeat_age_seconds", process="consumer") < 10
        assert value(first, "appliance_component_events_total", name="probe.errors") == 0
        assert value(first, "appliance_component_value", name="segment.main.hugepages") == 0
        assert value(first, "appliance_segment_hugepages", segment="main") == 0
        before = value(first, "appliance_ring_published_total", **ring)
        wait_until(lambda: value(samples(scrape()), "appliance_ring_published_total", **ring) > before, 10, 0.05,
                   "published_total moving")
        later = samples(scrape())
        assert value(later, "appliance_ring_consumed_total", **ring) > value(first, "appliance_ring_consumed_total",
                                                                                 **ring)
        assert value(later, "appliance_component_events_total", name="probe.received") > 0
        if shutil.which("promtool") or os.environ.get("CI"):      # .ci/run installs it: mandatory there
            check = subprocess.run(["promtool", "check", "metrics"], input=scrape(), capture_output=True, text=True,
                                   timeout=60)
            assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), \
                check.stdout + check.stderr


def test_nothing_running_is_appliance_up_zero(write_layout, unique_name, exporter):
    scrape = exporter(write_layout(pair_document(unique_name)))
    series = samples(scrape())
    assert value(series, "appliance_up") == 0 and len(series) == 1


def test_scrape_shows_the_trading_state_and_follows_it(write_layout, unique_name, spawner, exporter):
    with running_trading(write_layout, unique_name, spawner) as (path, procs, state):
        scrape = exporter(path)
        text = scrape()
        promtool_check_metrics(text)
        first = samples(text)
        assert value(first, "appliance_gate_open") == 0
        assert value(first, "appliance_gate_closed_reason", reason="kill_switch") == 1
        assert value(first, "appliance_gate_closed_reason", reason="feed_not_ready") == 1
        assert value(first, "appliance_gate_closed_reason", reason="clock_unhealthy") == 0
        assert value(first, "appliance_gate_changes_total") == 4
        assert value(first, "appliance_clock_synced") == 1
        assert value(first, "appliance_clock_state", state="healthy") == 1
        assert value(first, "appliance_clock_offset_seconds") == pytest.approx(-1.5e-6)
        assert value(first, "appliance_clock_maxerror_seconds") == pytest.approx(25e-6)
        assert value(first, "appliance_kill_switch_latched") == 1
        assert value(first, "appliance_risk_state", state="halted") == 1
        assert value(first, "appliance_component_ready", component="oms") == 1
        assert value(first, "appliance_oms_open_orders") == 3
        assert value(first, "appliance_position_shares", symbol="AAPL") == 100
        assert value(first, "appliance_position_shares", symbol="MSFT") == -50
        assert value(first, "appliance_pnl_realized_dollars", symbol="AAPL") == pytest.approx(2.5)
        assert value(first, "appliance_pnl_unrealized_dollars", symbol="AAPL") == pytest.approx(101.0)
        assert value(first, "appliance_orders_sent_total", symbol="AAPL") == 7
        assert value(first, "appliance_fills_total", symbol="AAPL") == 3
        assert value(first, "appliance_book_bid_price_dollars", symbol="AAPL") == pytest.approx(150.0)
        assert value(first, "appliance_book_ask_shares", symbol="AAPL") == 400
        assert value(first, "appliance_book_flag", symbol="MSFT", flag="crossed") == 1
        assert value(first, "appliance_book_flag", symbol="AAPL", flag="stale") == 0
        assert value(first, "appliance_rejects_total", source="risk", reason="MAX_SHARES") == 2
        assert value(first, "appliance_rejects_total", source="oms", reason="GATE_CLOSED") == 5
        assert value(first, "appliance_process_restarts_total", process="producer") == 1
        # tick-to-trade: cumulative buckets in seconds, +Inf equal to the count, the sum in seconds
        hop = {"hop": "tick_to_trade"}
        assert value(first, "appliance_tick_to_trade_seconds_bucket", le="1e-06", **hop) == 2
        assert value(first, "appliance_tick_to_trade_seconds_bucket", le="1e-05", **hop) == 2
        assert value(first, "appliance_tick_to_trade_seconds_bucket", le="0.0001", **hop) == 10
        assert value(first, "appliance_tick_to_trade_seconds_bucket", le="+Inf", **hop) == 10
        assert value(first, "appliance_tick_to_trade_seconds_count", **hop) == 10
        assert value(first, "appliance_tick_to_trade_seconds_sum", **hop) == pytest.approx(251e-6)
        assert value(first, "appliance_tick_to_trade_max_seconds", **hop) == pytest.approx(50e-6)   # exact
        assert not any(name == "appliance_component_events_total" and dict(labels)["name"].startswith("lat.")
                       for name, labels in first)          # served as histograms only

        # the state moves; the next scrapes follow
        state.position(0, 250, 372_500_000, 40_000, orders_sent=9, fills=5)
        state.readiness()
        state.gate(True)
        state.reject("risk", "MAX_SHARES", 3)
        state.latency({"tick_to_trade": [2_000_000] + [5_000] * 11})
        later = samples(scrape())
        assert value(later, "appliance_gate_open") == 1
        assert value(later, "appliance_gate_closed_reason", reason="kill_switch") == 0
        assert value(later, "appliance_kill_switch_latched") == 0
        assert value(later, "appliance_position_shares", symbol="AAPL") == 250
        assert value(later, "appliance_fills_total", symbol="AAPL") == 5
        assert value(later, "appliance_rejects_total", source="risk", reason="MAX_SHARES") == 3
        assert value(later, "appliance_tick_to_trade_seconds_count", **hop) == 12
        assert value(later, "appliance_tick_to_trade_max_seconds", **hop) == pytest.approx(2e-3)
        assert value(later, "appliance_tick_to_trade_seconds_bucket", le="0.001", **hop) == 11     # 2 ms: overflow
        ring = {"ring": "probe", "producer": "producer", "consumer": "consumer"}
        wait_until(lambda: value(samples(scrape()), "appliance_ring_published_total", **ring)
                   > value(first, "appliance_ring_published_total", **ring), 10, 0.05, "the ring moving")
        promtool_check_metrics(scrape())


def test_a_removed_segment_is_noticed_at_the_next_scrape(write_layout, unique_name, exporter):
    path = write_layout(trading_document(unique_name))
    scrape = exporter(path)
    with SharedMemory.create(load_layout(path)):
        assert value(samples(scrape()), "appliance_up") == 1
    assert value(samples(scrape()), "appliance_up") == 0        # not the dead appliance's last values
    with SharedMemory.create(load_layout(path)) as memory:      # a new appliance: attached again
        memory.control("*").write_gate(0)
        assert value(samples(scrape()), "appliance_gate_open") == 1


IDLE = {"strategy": "sleep", "sleep_ns": 1_000_000}


def supervised_layout(tmp_path, name):
    """The supervisor with its stand-in risk and OMS, and the exporter it starts (port 0: any free one)."""
    doc = layout_document(
        name,
        processes=[{"name": "supervisor", "agent": "appliance.supervisor.agent:SupervisorAgent", "idle": IDLE,
                    "params": {"clock": {"require_sync": False}, "exporter": {"enabled": True, "port": 0},
                               "control_socket": str(tmp_path / "sup.sock"), "log_dir": str(tmp_path / "logs"),
                               "start_order": ["oms", "risk", "strategy"], "start_timeout_s": 20}},
                   {"name": "strategy", "agent": "simple_agents:IdleAgent", "idle": IDLE},
                   {"name": "risk", "agent": "supervised_agents:FakeRisk", "idle": IDLE},
                   {"name": "oms", "agent": "supervised_agents:FakeOms", "idle": IDLE}],
        rings=[{"name": "risk_commands", "segment": "main", "producer": "supervisor", "consumer": "risk",
                "message": "RiskCommand", "slot_size": 64, "capacity": 64}],
        symbols=["AAPL"])
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    path = tmp_path / "layout.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_exporter_the_supervisor_starts_shows_the_real_gate(tmp_path, unique_name):
    path = supervised_layout(tmp_path, unique_name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}
    up = subprocess.Popen([sys.executable, "-m", "appliance", "up", "--layout", str(path), "--status-line", "off"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    exporter_log = tmp_path / "logs" / "exporter.log"
    try:
        def port():
            assert up.poll() is None, up.stdout.read()
            match = exporter_log.exists() and re.search(r"http://127\.0\.0\.1:(\d+)/metrics", exporter_log.read_text())
            return int(match.group(1)) if match else None
        url = f"http://127.0.0.1:{wait_until(port, 30, 0.05, 'the exporter listening')}/metrics"

        def scrape() -> dict:
            with urllib.request.urlopen(url, timeout=10) as response:
                return samples(response.read().decode())
        series = wait_until(lambda: (s := scrape()) and s.get(("appliance_gate_open", ())) == 1 and s, 30, 0.1,
                            "the gate open")
        assert value(series, "appliance_process_up", process="risk") == 1
        assert value(series, "appliance_component_ready", component="risk") == 1
        assert value(series, "appliance_process_restarts_total", process="risk") == 0
        assert value(series, "appliance_clock_state", state="not_required") == 1
        killed = subprocess.run([sys.executable, "-m", "appliance", "kill", "--layout", str(path), "--operator", "t"],
                                capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert killed.returncode == 0, killed.stderr
        series = wait_until(lambda: (s := scrape()) and s[("appliance_kill_switch_latched", ())] == 1 and s, 10, 0.1,
                            "the kill switch latched")
        wait_until(lambda: value(scrape(), "appliance_gate_closed_reason", reason="kill_switch") == 1, 10, 0.1,
                   "the gate closed by the kill switch")
        assert value(scrape(), "appliance_gate_open") == 0
    finally:
        up.terminate()
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        up.stdout.close()
    for spec in load_layout(path).segments.values():
        assert not os.path.exists(segment_path(spec)), "segment left behind"


def test_every_declared_family_is_served_by_a_full_appliance(write_layout, unique_name, spawner, exporter):
    """metrics.FAMILIES is what the dashboard and alert tests check against: each must really appear."""
    with running_trading(write_layout, unique_name, spawner) as (path, procs, state):
        served = {name for name, _labels in samples(exporter(path)())}
    expected = metrics.exposed_names() - {n for n in metrics.exposed_names()   # served when the OMS replicates
                                          if n.startswith(("appliance_replication_",   # (test_replication_ops.py)
                                                           "appliance_takeover"))}   # or has a hot standby
    # (the takeover families: test_supervisor_takeover.py)
    assert expected <= served, expected - served
