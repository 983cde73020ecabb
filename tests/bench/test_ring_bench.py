"""`appliance bench ring --json` runs the ring and every peer in one run and reports numbers and ratios.

Small counts: this checks the benchmark works and reports what it measured, not how fast anything is.
"""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

PEERS = ("shm_ring", "mp_queue", "mp_pipe", "posix_mq", "zmq_ipc", "faster_fifo")


def test_bench_ring_json_reports_every_peer_and_ratios():
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "ring", "--json", "--round-trips", "2000",
                           "--messages", "50000", "--peer-round-trips", "300", "--peer-messages", "3000",
                           "--timeout", "120"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    assert set(report["results"]) == set(PEERS) and not report["errors"]
    ring = report["results"]["shm_ring"]
    assert ring["round_trips"] == 2000 and ring["messages"] == 50000
    assert 0 < ring["rtt_p50_ns"] <= ring["rtt_p99_ns"] <= ring["rtt_p999_ns"]
    assert ring["throughput_msgs_per_s"] > 0 and ring["batch_throughput_msgs_per_s"] > 0
    for peer in PEERS[1:]:
        result = report["results"][peer]
        assert result["round_trips"] == 300 and result["throughput_msgs_per_s"] > 0
        assert report["ratios"][peer]["rtt_p50_vs_ring"] > 0
    assert report["machine"]["message_size"] == 64


def test_bench_ring_rejects_an_unknown_peer():
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "ring", "--peers", "carrier_pigeon"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "unknown peer(s) carrier_pigeon" in proc.stderr


def test_bench_ring_rejects_a_bad_count():
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "ring", "--messages", "-5"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "must be between 1 and" in proc.stderr
