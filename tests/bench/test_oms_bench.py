"""`appliance bench journal` and `appliance bench oms` with tiny settings: they run, report what they
measured in the agreed JSON shape, and clean up; never how fast anything is."""
from __future__ import annotations

import json
import os

from appliance.bench import journal as journal_bench
from appliance.bench import oms as oms_bench
from bench_args import bench_args, live_children


def test_bench_journal_reports_appends_per_policy_and_recovery(capsys, tmp_path):
    code = journal_bench.run(bench_args(journal_bench, "--records", "2000", "--per-event-records", "20",
                                   "--recovery-records", "3000", "--directory", str(tmp_path)))
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["errors"]
    journal = out["results"]["journal"]
    for policy in ("per_event", "group", "page_cache"):
        assert journal[f"{policy}_appends_per_s"] > 0
        assert journal["appends"][policy]["records"] == (20 if policy == "per_event" else 2000)
    assert journal["appends"]["per_event"]["syncs"] == 20
    assert journal["recovery"]["records"] == 3000 and journal["recovery"]["extrapolated"]
    assert journal["recovery_1m_s"] > 0 and journal["rebuild_1m_s"] > 0
    assert os.listdir(tmp_path) == []


def test_bench_oms_reports_ring_to_wire_percentiles(capsys):
    code = oms_bench.run(bench_args(oms_bench, "--orders", "200", "--warmup", "20"))
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["errors"]
    oms = out["results"]["oms"]
    assert 0 < oms["ring_to_wire_p50_ns"] <= oms["ring_to_wire_p99_ns"]
    assert oms["orders"] == 200 and oms["orders_sent"] == 220 and oms["rejects"] == 0
    assert not live_children()
