"""`appliance bench dropcopy --json` runs the drop copy, the hub and plain NATS in one run against a
nats-server of its own and reports every figure the issue names. Small counts: this checks the
benchmark works and reports what it measured, not how fast anything is."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from nats_server import nats_server_binary


def test_bench_dropcopy_json_reports_lag_rates_the_firm_kill_and_the_nats_core_peer():
    nats_server_binary()                       # skipped without nats-server (failed under CI)
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "dropcopy", "--json", "--events", "600",
                           "--appliances", "2", "--lag-events", "20", "--lag-interval-us", "500", "--kills", "3"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    results = report["results"]
    assert 0 < results["lag"]["p50_ns"] <= results["lag"]["p99_ns"] and results["lag"]["count"] == 40
    assert results["publish_events_per_s"] > 0 and results["hub_events_per_s"] > 0
    assert results["publish_cpu_us_per_event"] > 0 and results["hub_cpu_us_per_event"] > 0
    assert results["publish_start_ms"] >= 0 and results["hub_start_ms"] >= 0
    kill = results["firm_kill"]
    assert 0 < kill["p50_ms"] <= kill["p99_ms"] and (kill["count"], kill["appliances"]) == (3, 2)
    core = report["peers"]["nats_core"]
    assert core["publish_events_per_s"] > 0 and core["events"] == 600 + 2 * 20    # the first journal, the lag fills too
    assert core["cpu_us_per_event"] > 0
    floor = report["peers"]["nats_py_jetstream"]
    assert floor["publish_acked_cpu_us_per_event"] > 0 and floor["consume_cpu_us_per_event"] > 0
    assert floor["events"] == core["events"]


def test_bench_dropcopy_rejects_a_bad_count():
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "dropcopy", "--events", "5"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "must be between 100 and" in proc.stderr
