"""End to end: the venue password of a whole run (the appliance trading against the simulated
exchange, with the exporter) appears in none of the run's outputs: no log, the layout, the OMS
journal and its audit export, `appliance status` (text and JSON), `appliance top` (text and
JSON), the metrics page, nor any process's command line. Only the credentials file holds it
(and the venue's own config, which is the venue's). Operator commands are logged with the
caller's uid and pid."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import urllib.request

import pytest

from appliance.sim.sandbox import Sandbox
from conftest import wait_until

pytestmark = pytest.mark.e2e
SECRET = "Vq7#pZ2!kW"               # 10 printable characters: a SoupBinTCP password
VENUE_ONLY = re.compile(r"exchange-\d+\.yaml")     # the simulated venue's own config: it is the venue


def test_the_venue_password_is_in_no_output_of_a_run(tmp_path):
    sb = Sandbox(tmp_path / "sb", background_rate=1500, seed=23, exchange={"firms": {"ALGO1": {"password": SECRET}}},
                 params={"supervisor": {"exporter": {"enabled": True, "address": "127.0.0.1", "port": 0}}})
    outputs: dict[str, bytes] = {}
    try:
        sb.start()
        assert stat.S_IMODE(os.stat(sb.credentials).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(sb.control_socket)).st_mode) == 0o700
        wait_until(lambda: sb.status()["totals"]["orders_sent"] > 0, 90, 0.2, "orders at the venue")
        for args in (("status",), ("status", "--json"), ("top", "--once"), ("top", "--json"),
                     ("kill", "--operator", "carol"), ("resume", "--operator", "carol"),
                     ("close-gate", "--operator", "carol"), ("open-gate", "--operator", "carol")):
            result = sb.appliance(*args)
            assert result.returncode == 0, (args, result.stdout, result.stderr)
            outputs[" ".join(args)] = (result.stdout + result.stderr).encode()

        def exporter_port():
            log = (sb.dir / "logs" / "exporter.log")
            match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", log.read_text()) if log.exists() else None
            return int(match.group(1)) if match else None
        port = wait_until(exporter_port, 30, 0.1, "the exporter's port")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            outputs["metrics"] = response.read()
        assert b"appliance_up 1.0" in outputs["metrics"]
        outputs["ps"] = subprocess.run(["ps", "-eo", "args"], capture_output=True, timeout=30).stdout
        assert sb.down() == 0
        audit = sb.appliance("audit", "--jsonl")
        assert audit.returncode == 0, audit.stderr
        outputs["audit"] = (audit.stdout + audit.stderr).encode()
    finally:
        sb.close()
    up_log = (sb.dir / "up.log").read_text(errors="replace")
    caller = f"(uid {os.geteuid()} pid "
    for said in ("kill switch requested by carol " + caller, "kill switch reset requested by carol " + caller,
                 "gate closed by operator carol " + caller, "gate reopened by operator carol " + caller):
        assert said in up_log, said
    assert (sb.dir / "oms-journal.bin").stat().st_size > 0 and outputs["audit"]
    for path in sorted(sb.dir.rglob("*")):       # every file the run wrote: logs, layout, journal, records
        if path.is_file() and path != sb.credentials and not VENUE_ONLY.fullmatch(path.name):
            outputs[str(path.relative_to(sb.dir))] = path.read_bytes()
    assert "layout.yaml" in outputs and "oms-journal.bin" in outputs and "logs/oms.log" in outputs
    leaked = [name for name, data in outputs.items() if SECRET.encode() in data]
    assert not leaked, f"the venue password appears in: {leaked}"
    assert SECRET.encode() in sb.credentials.read_bytes()       # the grep would have found it
