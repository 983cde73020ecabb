"""deploy/grafana/appliance-dashboard.json: valid JSON in Grafana's shape, every panel asking
for metrics the exporter serves, every expression valid PromQL (checked by promtool as the
expression of a recording rule)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from appliance.ops.metrics import exposed_names
from conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "appliance-dashboard.json"
METRIC = re.compile(r"\b(appliance_[a-z0-9_]+)\b")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))          # collapsed rows hold their panels
    return [p for p in found if p.get("type") != "row"]


def expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, Grafana's variables replaced as it would."""
    out = []
    for panel in panels():
        for target in panel["targets"]:
            out.append((panel["title"], target["expr"].replace("$instance", ".*")))
    return out


def test_dashboard_shape():
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels():
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_panel_uses_metrics_the_exporter_serves():
    served = exposed_names()
    used_anywhere = set()
    for title, expr in expressions():
        used = set(METRIC.findall(expr))
        assert used, f"{title}: {expr} names no appliance metric"
        assert used <= served, (title, used - served)
        used_anywhere |= used
    # the views: gate, clock, positions and P&L, rejects, latency, rings, heartbeats, restarts
    for metric in ("appliance_gate_open", "appliance_gate_closed_reason", "appliance_clock_offset_seconds",
                   "appliance_position_shares", "appliance_pnl_realized_dollars", "appliance_rejects_total",
                   "appliance_tick_to_trade_seconds_bucket", "appliance_ring_depth",
                   "appliance_process_heartbeat_age_seconds", "appliance_process_restarts_total"):
        assert metric in used_anywhere, metric


@pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                    reason="promtool comes with Debian's prometheus package (.ci/run installs it)")
def test_every_expression_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": expr} for i, (_title, expr) in enumerate(expressions())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
