"""deploy/prometheus/alerts.yml: valid (`promtool check rules`), behaving as its unit tests say
(`promtool test rules`), covering the alerts the issue asks for, and asking only for metrics the
exporter serves."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from appliance.ops.metrics import exposed_names
from conftest import ROOT

RULES_DIR = ROOT / "deploy" / "prometheus"
METRIC = re.compile(r"\b(appliance_[a-z0-9_]+)\b")
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                                    reason="promtool comes with Debian's prometheus package (.ci/run installs it)")


def rules() -> list[dict]:
    document = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR)


@needs_promtool
def test_promtool_check_rules():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "WARNING" not in (result.stdout + result.stderr).upper()


@needs_promtool
def test_promtool_unit_tests_of_the_alerts():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_the_alerts_the_issue_asks_for_exist_and_are_tested():
    names = {rule["alert"] for rule in rules()}
    required = {"TradingGateClosed", "ClockUnsynced", "HeartbeatStale", "RingNearFull", "KillSwitchLatched",
                "ProcessRestarted", "MarketDataBad"}
    assert required <= names, required - names
    tested = {test["alertname"] for case in yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())["tests"]
              for test in case["alert_rule_test"]}
    assert required <= tested, required - tested
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_expression_asks_for_metrics_the_exporter_serves():
    served = exposed_names()
    for rule in rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= served, (rule["alert"], used - served)
