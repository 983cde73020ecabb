"""The OMS's replication params (``processes.oms.params.replication``): defaults, every key checked."""
from __future__ import annotations

import os

import pytest

from appliance.config.yaml_lines import parse_yaml
from appliance.oms.config import OmsConfigError, parse_oms_params


def test_replication_is_off_by_default_and_the_standby_journal_is_relative_to_the_layout(tmp_path):
    config = parse_oms_params(None, str(tmp_path / "shm_layout.yaml")).replication
    assert config.mode == "off" and not config.enabled
    assert (config.primary_host, config.primary_port, config.without_standby) == ("127.0.0.1", 15010, "close_gate")
    assert config.standby_journal_path == os.path.join(str(tmp_path), "run", "oms-standby-journal.bin")


def test_every_replication_key_is_accepted_and_an_unquoted_off_is_the_mode_off():
    params = parse_yaml("replication: {mode: sync, primary: {host: 10.0.0.2, port: 9100}, standby_journal: s.bin,\n"
                        "  ack_limit_ms: 20, without_standby: trade, heartbeat_ms: 50, peer_timeout_ms: 500,\n"
                        "  standby_spin_us: 3000, ack_spin_us: 0}\n", ValueError)
    config = parse_oms_params(params, "/tmp/layout.yaml").replication
    assert (config.mode, config.primary_host, config.primary_port, config.ack_limit_ms, config.without_standby,
            config.heartbeat_ms, config.peer_timeout_ms) == ("sync", "10.0.0.2", 9100, 20, "trade", 50, 500)
    assert (config.standby_spin_us, config.ack_spin_us) == (3000, 0)
    defaults = parse_oms_params(parse_yaml("replication: {mode: sync}\n", ValueError), "/tmp/l.yaml").replication
    assert (defaults.standby_spin_us, defaults.ack_spin_us) == (0, 200)     # the standby sleeps unless told
    assert config.standby_journal_path == "/tmp/s.bin" and config.takeover == "restart"
    standby = parse_oms_params(parse_yaml("replication: {mode: async, takeover: standby}\n", ValueError), "/tmp/l.yaml")
    assert standby.replication.takeover == "standby"
    same_box = parse_oms_params(parse_yaml("replication: {mode: sync, transport: shm, takeover: standby}\n", ValueError),
                                "/tmp/l.yaml").replication          # takeover over the layout's rings too
    assert (same_box.transport, same_box.takeover) == ("shm", "standby")
    remote = parse_oms_params(parse_yaml("replication: {mode: sync, takeover: remote, primary: {host: 10.0.0.1}}\n",
                                         ValueError), "/tmp/l.yaml")
    assert (remote.replication.takeover, remote.replication.primary_host) == ("remote", "10.0.0.1")
    off = parse_oms_params(parse_yaml("replication: {mode: off}\n", ValueError), "/tmp/l.yaml").replication
    assert off.mode == "off"


P = "processes.oms.params.replication"


@pytest.mark.parametrize("replication,key,reason", [
    ({"mode": "semi"}, f"{P}.mode", "must be one of off, sync, async"),
    ({"mode": "sync", "takeover": "failover"}, f"{P}.takeover", "must be one of restart, standby, remote"),
    # remote: the standby of another box's primary, over TCP, at an address the layout gives
    ({"takeover": "remote", "primary": {"host": "10.0.0.1"}}, f"{P}.takeover", "needs replication mode sync or async"),
    ({"mode": "sync", "transport": "shm", "takeover": "remote", "primary": {"host": "10.0.0.1"}}, f"{P}.takeover",
     "over transport tcp"),
    ({"mode": "sync", "takeover": "remote"}, f"{P}.primary", "the other box's replication address"),
    ({"mode": "async", "takeover": "remote", "primary": {"port": 9100}}, f"{P}.primary", "needs primary"),
    ({"mode": "sync", "takeover": "remote", "primary": {"host": "0.0.0.0"}}, f"{P}.primary.host",
     "no address to connect to"),
    ({"takeover": "standby"}, f"{P}.takeover", "a standby needs replication"),
    ({"mode": True}, f"{P}.mode", "must be one of"),
    ({"bogus": 1}, f"{P}.bogus", "unknown key"),
    ({"primary": {"host": "standby.local"}}, f"{P}.primary.host", "not an IPv4 address"),
    ({"primary": {"port": 0}}, f"{P}.primary.port", "must be 1..65535"),
    ({"ack_limit_ms": 0}, f"{P}.ack_limit_ms", "must be 1..60000"),
    ({"standby_spin_us": 10_000_001}, f"{P}.standby_spin_us", "must be 0..10000000"),
    ({"standby_spin_us": -1}, f"{P}.standby_spin_us", "must not be negative"),
    ({"ack_spin_us": 1_000_001}, f"{P}.ack_spin_us", "must be 0..1000000"),
    ({"ack_spin_us": "fast"}, f"{P}.ack_spin_us", "integer"),
    ({"without_standby": "hope"}, f"{P}.without_standby", "must be one of close_gate, trade"),
    ({"heartbeat_ms": 100, "peer_timeout_ms": 100}, f"{P}.peer_timeout_ms", "more than"),
    ({"standby_journal": " "}, f"{P}.standby_journal", "must be a file path"),
    ({"mode": "sync", "standby_journal": "run/oms-journal.bin"}, f"{P}.standby_journal", "must not be the primary's"),
    ("sync", P, "expected a mapping"),
])
def test_bad_replication_params_name_the_key_and_the_reason(replication, key, reason):
    with pytest.raises(OmsConfigError) as raised:
        parse_oms_params({"replication": replication}, "/tmp/layout.yaml")
    assert raised.value.key_path == key and reason in raised.value.reason
