"""The feed's params in the layout: defaults, and every bad value named by key path and reason."""
from __future__ import annotations

import pytest

from appliance.feed.config import FeedConfig, FeedConfigError, parse_feed_params
from appliance.runtime.agent import EXIT_CONFIG
from conftest import layout_document, output_of


def test_no_params_gives_the_simulated_exchange_defaults():
    assert parse_feed_params(None) == parse_feed_params({}) == FeedConfig()
    assert FeedConfig().listen_port == 15001 and FeedConfig().rerequest_port == 15002
    assert (FeedConfig().source_host, FeedConfig().source_port) == ("127.0.0.1", 15003)   # the exchange's source


def test_the_publisher_is_an_address_and_a_port_or_any_port_of_an_address():
    assert (parse_feed_params({"source": {"host": "10.1.2.3", "port": 5000}}).source_host,
            parse_feed_params({"source": {"host": "10.1.2.3", "port": 5000}}).source_port) == ("10.1.2.3", 5000)
    assert parse_feed_params({"source": {"host": "10.1.2.3"}}).source_port is None


def test_params_are_read():
    config = parse_feed_params({"listen": {"host": "127.0.0.1", "port": 0}, "session": "SIMEX00001",
                                "multicast": {"group": "239.1.2.3"}, "rerequest": {"port": 30002},
                                "stale_after_ms": 250, "book_dump": "/tmp/x.json"})
    assert (config.listen_port, config.session, config.multicast_group, config.interface) == \
        (0, "SIMEX00001", "239.1.2.3", "127.0.0.1")
    assert (config.rerequest_host, config.rerequest_port, config.stale_after_ms) == ("127.0.0.1", 30002, 250)
    assert FeedConfig().compiled_books is True and config.compiled_books is True
    assert parse_feed_params({"compiled_books": False}).compiled_books is False


@pytest.mark.parametrize("params,key,reason", [
    ({"nope": 1}, "p.nope", "unknown key"),
    ({"stale_after_ms": 0}, "p.stale_after_ms", "must be 1..3600000"),
    ({"stale_after_ms": True}, "p.stale_after_ms", "expected an integer, got a boolean"),
    ({"listen": {"host": "localhost"}}, "p.listen.host", "is not an IPv4 address"),
    ({"listen": {"port": 70000}}, "p.listen.port", "must be 0..65535"),
    ({"listen": {"prot": 1}}, "p.listen.prot", "unknown key"),
    ({"listen": "127.0.0.1:1"}, "p.listen", "expected a mapping, got a string"),
    ({"rerequest": {"port": 0}}, "p.rerequest.port", "must be the server's port"),
    ({"multicast": {"group": "10.0.0.1"}}, "p.multicast.group", "is not a multicast address"),
    ({"multicast": {"group": "x"}}, "p.multicast.group", "is not an IPv4 address"),
    ({"multicast": {}}, "p.multicast.group", "missing required key"),
    ({"multicast": {"group": "239.0.0.1", "interface": "eth0"}}, "p.multicast.interface", "not an IPv4"),
    ({"session": "ELEVENCHARS"}, "p.session", "must be 1..10 printable ASCII"),
    ({"book_dump": ""}, "p.book_dump", "must be a file path"),
    ({"compiled_books": "yes"}, "p.compiled_books", "true or false"),
    ({"compiled_books": 1}, "p.compiled_books", "true or false"),
    ({"source": {"port": 15003}}, "p.source.host", "missing required key"),
    ({"source": {"host": "10.0.0.1", "port": 0}}, "p.source.port", "must be the publisher's port"),
    ({"source": {"host": "any"}}, "p.source.host", "is not an IPv4 address"),
    ({"source": {"host": "10.0.0.1", "from": 1}}, "p.source.from", "unknown key"),
    ({"source": "10.0.0.1"}, "p.source", "expected a mapping"),
])
def test_bad_params_name_key_and_reason(params, key, reason):
    with pytest.raises(FeedConfigError) as info:
        parse_feed_params(params, "p")
    assert info.value.key_path == key and reason in info.value.reason


def test_the_agent_refuses_to_start_on_bad_params(write_layout, unique_name, spawner):
    from appliance.runtime.layout import load_layout
    from appliance.runtime.memory import SharedMemory
    doc = layout_document(
        unique_name,
        processes=[{"name": "feed", "agent": "appliance.feed.agent:FeedAgent", "idle": {"strategy": "sleep"},
                    "params": {"listen": {"port": -1}}},
                   {"name": "strategy", "agent": "m:S", "idle": {"strategy": "sleep"}}],
        rings=[{"name": "book_updates", "segment": "main", "producer": "feed", "consumer": "strategy",
                "message": "BookUpdate", "slot_size": 192, "capacity": 64}],
        symbols=["AAPL"])
    path = write_layout(doc)
    with SharedMemory.create(load_layout(path)):
        proc = spawner.start(path, "feed")
        out = output_of(proc, 30)
        assert proc.returncode == EXIT_CONFIG, out
        assert "processes.feed.params.listen.port: must not be negative, got -1" in out


def test_the_snapshot_server_is_optional_and_checked():
    assert parse_feed_params({}).snapshot is None
    snap = parse_feed_params({"snapshot": {"port": 15003, "crossed_ms": 100}}).snapshot
    assert (snap.host, snap.port, snap.crossed_ms, snap.timeout_ms) == ("127.0.0.1", 15003, 100, 2000)
    for bad, key in [({"port": 0}, "snapshot.port"), ({}, "snapshot.port"), ({"port": 1, "extra": 1}, "snapshot.extra"),
                     ({"port": 1, "timeout_ms": 0}, "snapshot.timeout_ms"), ({"port": 1, "host": "x"}, "snapshot.host"),
                     ({"port": 1, "crossed_ms": True}, "snapshot.crossed_ms")]:
        with pytest.raises(FeedConfigError) as info:
            parse_feed_params({"snapshot": bad})
        assert key in str(info.value)
