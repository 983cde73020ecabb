"""Journal replication as operators see it, with an OMS replicating to a standby (this process, over
the same-box rings or TCP): `appliance status`'s line and fields, shmtop's STANDBY line, the
exporter's replication families (valid for promtool), the standby up then gone."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from appliance.oms.config import parse_oms_params
from appliance.oms.standby import StandbyReplica
from appliance.sim.ports import free_port
from appliance.supervisor.status import build_status, one_line
from conftest import ROOT, SUPPORT
from oms_rig import SYMBOLS, Setup, accept_all, drive
from exporter_scrape import exporter, promtool_check_metrics, samples, value   # noqa: F401  (exporter: the fixture)


def top_once(layout_path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "appliance", "top", "--layout", str(layout_path), "--once"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("mode, transport", [("sync", "shm"), ("async", "tcp")])
def test_status_shmtop_and_metrics_show_the_primary_its_standby_mode_transport_and_lag(
        write_layout, unique_name, tmp_path, exporter, mode, transport):  # noqa: F811
    replication = {"mode": mode, "transport": transport,
                   "primary": {"host": "127.0.0.1", "port": free_port(socket.SOCK_STREAM)},
                   "standby_journal": str(tmp_path / "standby" / "journal.bin"), "ack_limit_ms": 200,
                   "heartbeat_ms": 20, "peer_timeout_ms": 2000}
    setup = Setup(write_layout, unique_name, tmp_path, accept_all, replication=replication)
    standby = None
    try:
        agent = setup.start()
        rig = setup.rig
        standby = StandbyReplica(parse_oms_params(rig.layout.processes["oms"].params, rig.layout.path), SYMBOLS,
                                 rig.layout)
        drive(agent, lambda: rig.control.get("oms_ready") == 1 and agent.replication.caught_up
              and rig.counter("oms.replication.connected") == 1, standby, message="ready, the standby caught up")
        rig.new(1, "AAPL", "B", 100, 1_900_000)
        drive(agent, lambda: agent.replication.caught_up and agent.orders.open_orders == 1
              and rig.counter("oms.replication.acked_sequence") == agent.journal.next_sequence - 1, standby,
              message="order 1 open and replicated")
        status = build_status(rig.layout, rig.memory)["oms"]["replication"]
        acked = agent.journal.next_sequence - 1
        pid = os.getpid() if transport == "shm" else 0          # the standby runs in this process
        assert (status["role"], status["mode"], status["transport"], status["standby"], status["lag_records"],
                status["acked_sequence"], status["standby_pid"]) == ("primary", mode, transport, "up", 0, acked, pid)
        words = f"primary {mode}/{transport}, standby up{f' (pid {pid})' if pid else ''} lag 0 rec 0.0 us"
        assert words in one_line(build_status(rig.layout, rig.memory))
        assert f"STANDBY  {words}  acked {acked}" in top_once(rig.layout.path)
        scrape = exporter(rig.layout.path)
        text = scrape()
        promtool_check_metrics(text)
        series = samples(text)
        assert value(series, "appliance_replication_info", role="primary", mode=mode, transport=transport) == 1
        assert value(series, "appliance_replication_standby_up") == 1
        assert value(series, "appliance_replication_lag_records") == 0
        assert value(series, "appliance_replication_acked_sequence") == acked
        assert value(series, "appliance_replication_disconnects_total") == 0
        assert value(series, "appliance_replication_ack_round_trip_seconds") > 0
        # the standby goes: the OMS says so, and the lag grows with the records it does not hold
        standby.close()
        standby = None
        drive(agent, lambda: rig.counter("oms.replication.connected") == 0, message="the standby seen gone")
        rig.new(2, "MSFT", "B", 100, 4_100_000)
        drive(agent, lambda: rig.counter("oms.replication.lag_records") > 0, message="records not replicated")
        line = one_line(build_status(rig.layout, rig.memory))
        assert f"primary {mode}/{transport}, standby DOWN lag " in line
        assert "STANDBY  primary" in top_once(rig.layout.path) and "standby DOWN" in top_once(rig.layout.path)
        series = samples(scrape())
        assert value(series, "appliance_replication_standby_up") == 0
        assert value(series, "appliance_replication_lag_records") > 0
        assert value(series, "appliance_replication_disconnects_total") == 1
    finally:
        if standby is not None:
            standby.close()
        setup.close()


def test_without_replication_nothing_of_it_is_shown(write_layout, unique_name, tmp_path, exporter):  # noqa: F811
    setup = Setup(write_layout, unique_name, tmp_path, accept_all)
    try:
        agent = setup.start()
        drive(agent, lambda: setup.rig.control.get("oms_ready") == 1, message="ready")
        status = build_status(setup.rig.layout, setup.rig.memory)
        assert "replication" not in status["oms"] and "standby" not in one_line(status)
        assert "\nSTANDBY " not in top_once(setup.rig.layout.path)
        assert not [name for name, _ in samples(exporter(setup.rig.layout.path)()) if "replication" in name]
    finally:
        setup.close()
