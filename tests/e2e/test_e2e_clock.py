"""The clock guard in the running appliance, through the real PTP path: a ptp4l master and slave on
a veth pair in namespaces the test creates; stopping the master closes the gate."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.messages.codes import ClockState, GateReason
from appliance.sim.sandbox import Sandbox
from conftest import wait_until

import ptp_lab

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(ptp_lab.available() is not None, reason=str(ptp_lab.available()))
def test_losing_the_grandmaster_closes_the_gate_and_its_return_reopens_it(tmp_path):
    with ptp_lab.PtpLab() as lab:
        clock = {"require_sync": True, "source": "ptp", "check_interval_ms": 200,
                 "ptp": {"uds": lab.slave_uds, "accept_uncalibrated": True, "max_ingress_age_ms": 2000}}
        sb = Sandbox(tmp_path / "sb", background_rate=1000, seed=19,
                     params={"supervisor": {"clock": clock}})
        try:
            sb.start(wait_gate=False)
            sb.wait_gate_open(90)
            assert sb.control()["clock_state"] == ClockState.HEALTHY
            lab.stop_master()
            wait_until(lambda: sb.control()["gate_open"] == 0, 30, message="gate closed on the lost master")
            assert GateReason.CLOCK_UNHEALTHY & sb.control()["gate_reasons"]
            assert sb.control()["clock_state"] == ClockState.UNHEALTHY
            lab.start_master()
            sb.wait_gate_open(60)            # the clock was the only reason: it reopens
            assert "clock unhealthy" in sb.up_output()
            assert sb.down() == 0
            audit = subprocess.run([sys.executable, "-m", "appliance", "audit", "--journal", str(sb.journal),
                                    "--jsonl"], capture_output=True, text=True, timeout=60, env=sb.env)
            clock = [json.loads(line) for line in audit.stdout.splitlines() if '"CLOCK"' in line]
            states = [row["detail"].split()[1] for row in clock]
            assert "HEALTHY" in states and "UNHEALTHY" in states, states      # in the journal, next to the orders
        finally:
            sb.close()
