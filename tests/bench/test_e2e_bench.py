"""`appliance bench e2e`: the JSON shape on a tiny run, and argument errors (no timing asserted)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.e2e


def bench(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "appliance", "bench", "e2e", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_a_tiny_run_reports_tick_to_trade_and_every_hop():
    result = bench("--json", "--orders", "5", "--seconds", "20", "--configs", "gentle")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    t2t = report["results"]["tick_to_trade"]
    assert t2t["orders"] >= 1
    assert 0 < t2t["p50_ns"] <= t2t["p99_ns"] <= t2t["p999_ns"]
    assert set(t2t["hops"]) == {"feed", "strategy", "risk", "oms"}
    assert all(v["p50_ns"] > 0 for v in t2t["hops"].values())
    assert report["runs"][0]["config"] == "gentle" and report["runs"][0]["orders_sent"] >= t2t["orders"]


@pytest.mark.parametrize("args", [["--configs", "turbo"], ["--orders", "0"], ["--seconds", "x"]])
def test_bad_arguments_are_refused(args):
    result = bench(*args, timeout=60)
    assert result.returncode == 2 and result.stderr
