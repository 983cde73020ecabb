"""`appliance bench e2e`: the JSON shape on a tiny run, and argument errors (no timing asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.e2e


def bench(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "appliance", "bench", "e2e", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_a_tiny_run_reports_tick_to_trade_every_hop_and_cpu_per_process():
    result = bench("--json", "--orders", "5", "--seconds", "20", "--configs", "small", "--quiet-seconds", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    t2t = report["results"]["tick_to_trade"]
    assert t2t["orders"] >= 1
    assert 0 < t2t["p50_ns"] <= t2t["p99_ns"] <= t2t["p999_ns"]
    assert t2t["max_ns"] > 0 and set(t2t["targets_met"]) == {"p50_ns", "p99_ns", "p999_ns", "max_ns"}
    assert set(t2t["hops"]) == {"feed", "strategy", "risk", "oms"}
    assert all(v["p50_ns"] > 0 and v["max_ns"] > 0 for v in t2t["hops"].values())
    run = report["runs"][0]
    assert run["config"] == "small" and run["orders_sent"] >= t2t["orders"] and run["stopped"] == "orders"
    processes = {"supervisor", "feed", "strategy", "risk", "oms", "exchange"}
    for window in ("quiet", "load"):
        cpu = run["cpu_percent"][window]
        assert set(cpu) == processes and all(0 <= pct <= 100 * 64 for pct in cpu.values()), cpu
        assert set(run["runqueue_wait_us"][window]) == processes
    assert run["spinners"] == ["feed"]                          # the small profile's one spinner
    quiet = report["results"]["quiet_target"]
    assert quiet["judged"] == ["oms", "risk", "strategy", "supervisor"] and isinstance(quiet["met"], bool)
    assert run["exchange"]["simulator_cpu"] is not None and run["exchange"]["cpus"]


def test_cpu_is_read_from_proc_and_only_non_spinners_are_judged(tmp_path):
    from types import SimpleNamespace
    from appliance.bench import e2e
    me = e2e.process_cpu(os.getpid())
    assert me["seconds"] > 0 and me["cpus"] and -20 <= me["nice"] <= 19 and me["slices"] > 0 and me["wait_ns"] >= 0
    assert e2e.process_cpu(2**22 + 12345) is None                   # no such process
    idle = lambda strategy: SimpleNamespace(idle=SimpleNamespace(strategy=strategy))   # noqa: E731
    layout = SimpleNamespace(processes={"feed": idle("yield"), "oms": idle("doorbell"), "sup": idle("sleep")})
    verdict = e2e.quiet_verdict({"feed": 97.0, "oms": 6.0, "sup": 1.0, "exchange": 40.0}, layout)
    assert verdict == {"limit_pct": 5.0, "judged": ["oms", "sup"], "over": ["oms"], "met": False}
    assert e2e.quiet_verdict({"feed": 97.0, "oms": 4.9, "sup": 1.0}, layout)["met"]


@pytest.mark.parametrize("args", [["--configs", "turbo"], ["--orders", "0"], ["--seconds", "x"]])
def test_bad_arguments_are_refused(args):
    result = bench(*args, timeout=60)
    assert result.returncode == 2 and result.stderr
