"""The Prometheus exporter scraped over HTTP while a pair of agents runs: key series present and
moving, valid exposition (promtool check metrics), appliance_up 0 when nothing runs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, SUPPORT, wait_until
from probe_pair import pair_document, running_pair


@pytest.fixture
def exporter(tmp_path):
    """Start `appliance exporter --port 0` for a layout; yields a scrape() function."""
    procs = []

    def start(layout_path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}
        log = open(tmp_path / "exporter.log", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "exporter", "--layout", str(layout_path),
                                 "--port", "0"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))

        def bound_port():
            log.seek(0)
            match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", log.read())
            assert proc.poll() is None, open(tmp_path / "exporter.log").read()
            return int(match.group(1)) if match else None
        port = wait_until(bound_port, 30, 0.05, "exporter listening")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return response.read().decode()
        return scrape
    yield start
    for proc, log in procs:
        proc.terminate()
        assert proc.wait(10) == 0
        log.close()


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(series: dict, metric: str, **labels) -> float:
    return series[(metric, tuple(sorted(labels.items())))]


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
