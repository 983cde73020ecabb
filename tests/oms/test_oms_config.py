"""The OMS's params: defaults, every key checked with its key path and reason."""
from __future__ import annotations

import os

import pytest

from appliance.oms.config import OmsConfig, OmsConfigError, parse_oms_params


def test_defaults_match_the_simulated_exchange_and_the_journal_is_relative_to_the_layout(tmp_path):
    config = parse_oms_params(None, str(tmp_path / "shm_layout.yaml"))
    assert (config.venue_host, config.venue_port, config.firm) == ("127.0.0.1", 15000, "ALGO")
    assert config.credentials_path == os.path.join(str(tmp_path), "run", "venue.credentials")
    assert config.durability == "group" and config.risk_heartbeat_limit_ms == 50
    assert config.journal_path == os.path.join(str(tmp_path), "run", "oms-journal.bin")
    absolute = parse_oms_params({"journal": "/var/lib/oms/j.bin"}, str(tmp_path / "l.yaml"))
    assert absolute.journal_path == "/var/lib/oms/j.bin"


def test_every_documented_key_is_accepted():
    params = {"venue": {"host": "10.0.0.1", "port": 9000}, "credentials": "/etc/appliance/venue.credentials",
              "journal": "j.bin", "journal_size_mb": 8, "durability": "per_event", "group_commit_us": 500,
              "risk_heartbeat_limit_ms": 20, "in_flight_timeout_ms": 100, "unacked_timeout_ms": 100,
              "reconnect_min_ms": 10, "reconnect_max_ms": 1000, "firm": "ALG2", "heartbeat_ms": 200,
              "peer_timeout_ms": 2000, "replay_margin_ms": 2}
    config = parse_oms_params(params, "/tmp/layout.yaml")
    assert isinstance(config, OmsConfig) and config.venue_port == 9000 and config.durability == "per_event"


@pytest.mark.parametrize("params,key,reason", [
    ({"bogus": 1}, "processes.oms.params.bogus", "unknown key"),
    ({"venue": {"host": "localhost"}}, "processes.oms.params.venue.host", "not an IPv4 address"),
    ({"venue": {"port": 70000}}, "processes.oms.params.venue.port", "must be 1..65535"),
    ({"venue": {"port": "15000"}}, "processes.oms.params.venue.port", "expected an integer"),
    ({"venue": {"hots": "1.2.3.4"}}, "processes.oms.params.venue.hots", "unknown key"),
    ({"venue": "127.0.0.1:15000"}, "processes.oms.params.venue", "expected a mapping"),
    ({"username": "ALGO1"}, "processes.oms.params.username", "put 'username = ...' and 'password = ...' in the "
                                                             "credentials file"),
    ({"password": "secret1"}, "processes.oms.params.password", "no longer in the layout"),
    ({"credentials": ""}, "processes.oms.params.credentials", "must be a file path"),
    ({"firm": "algo"}, "processes.oms.params.firm", "4 capital letters"),
    ({"durability": "fsync"}, "processes.oms.params.durability", "must be one of"),
    ({"journal": " "}, "processes.oms.params.journal", "must be a file path"),
    ({"journal_size_mb": 0}, "processes.oms.params.journal_size_mb", "must be 1..65536"),
    ({"risk_heartbeat_limit_ms": True}, "processes.oms.params.risk_heartbeat_limit_ms", "expected an integer"),
    ({"reconnect_min_ms": 500, "reconnect_max_ms": 100}, "processes.oms.params.reconnect_max_ms", "at least"),
    ({"heartbeat_ms": 1000, "peer_timeout_ms": 1000}, "processes.oms.params.peer_timeout_ms", "more than"),
    ([1, 2], "processes.oms.params", "expected a mapping"),
])
def test_bad_params_name_the_key_and_the_reason(params, key, reason):
    with pytest.raises(OmsConfigError) as raised:
        parse_oms_params(params, "/tmp/layout.yaml")
    assert raised.value.key_path == key and reason in raised.value.reason


def test_a_bad_param_stops_the_oms_process_with_exit_status_2(write_layout, unique_name, spawner, tmp_path):
    from conftest import output_of
    from oms_rig import oms_layout
    doc = oms_layout(unique_name, 1, str(tmp_path / "j.bin"), durability="sometimes")
    path = write_layout(doc)
    from appliance.runtime.layout import load_layout
    from appliance.runtime.memory import SharedMemory
    with SharedMemory.create(load_layout(path)):
        proc = spawner.start(path, "oms")
        assert proc.wait(30) == 2
        out = output_of(proc)
    assert "processes.oms.params.durability" in out and "must be one of" in out
