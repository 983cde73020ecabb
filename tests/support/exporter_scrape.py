"""The Prometheus exporter as tests run it: `appliance exporter --port 0` for a layout (the ``exporter``
fixture), the scrape parsed into series, and promtool's check of the exposition."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, SUPPORT, wait_until


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
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:             # say where it hangs, then fail
            proc.send_signal(signal.SIGUSR1)
            wait_until(lambda: "Thread" in open(log.name).read(), 10, 0.1, "the exporter's stacks")
            proc.kill()
            code = proc.wait(10)
        log.seek(0)
        text = log.read()
        log.close()
        assert code == 0, f"exporter exited {code}:\n{text}"


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(series: dict, metric: str, **labels) -> float:
    return series[(metric, tuple(sorted(labels.items())))]


def promtool_check_metrics(text: str) -> None:
    if shutil.which("promtool") or os.environ.get("CI"):      # .ci/run installs it: mandatory there
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=60)
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), \
            check.stdout + check.stderr
