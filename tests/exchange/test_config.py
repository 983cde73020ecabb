"""The exchange's configuration: the embedded default, a full document, and every way a file can be wrong."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from appliance.exchange import config_check
from appliance.exchange.config import DEFAULT_CONFIG_YAML, default_config, load_config, parse_config
from appliance.exchange.config_model import (
    BackgroundConfig, ConfigError, ControlConfig, ExchangeConfig, FaultConfig, FirmConfig, MarketDataConfig,
    MulticastConfig, OrderEntryConfig, RecordsConfig, SymbolConfig,
)

# Lines 1..5; every bad document below that starts with BASE adds its mistake from line 6 on.
BASE = """\
version: 1
symbols:
  - {symbol: AAPL, reference_price: 1900000}
firms:
  - {username: ALGO1, password: secret1}
"""

FULL = """\
version: 1
symbols:
  - {symbol: IBM, reference_price: 1500000, round_lot: 10}
  - symbol: BRK.A
    reference_price: 2000000000
    round_lot: 1
  - {symbol: X-1, reference_price: 1}
limits:
  max_shares: 4294967295
order_entry:
  host: 0.0.0.0
  port: 0
  heartbeat_interval_ms: 250
  peer_timeout_ms: 251
firms:
  - {username: ab1, password: "123456", mpid: WXYZ}
  - {username: Zed, password: "p@ss!~"}
market_data:
  session: SESSION-42
  source_host: 10.0.0.5
  subscribers: ["10.0.0.6:20001", "10.0.0.7:65535"]
  multicast: {group: 239.255.0.1, port: 30001, interface: 10.0.0.5, ttl: 4}
  rerequest_host: 10.0.0.5
  rerequest_port: 0
  max_payload: 64
  heartbeat_interval_ms: 500
faults: {drop: 0.25, duplicate: 1, reorder: 0, seed: 99}
background:
  enabled: false
  rate: 200000
  seed: 0
  firm: NOISE
  tick: 1
  volatility_bp: 0
  max_resting_per_symbol: 0
records: {directory: /var/tmp/simex}
control: {socket: /run/simex.sock}
duration_s: 2.5
"""


# --------------------------------------------------------------------------
# The embedded default
# --------------------------------------------------------------------------

def test_the_default_parses_and_holds_the_documented_values():
    config = default_config()
    assert [(s.symbol, s.reference_price, s.round_lot) for s in config.symbols] == [
        ("AAPL", 1900000, 100), ("MSFT", 4200000, 100), ("SPY", 5600000, 100), ("QQQ", 4800000, 100),
        ("TSLA", 2500000, 100)]
    assert config.firms == (FirmConfig("ALGO1", "secret1", "ALGO"), FirmConfig("ALGO2", "secret2", "ALG2"))
    assert config.max_shares == 1_000_000
    assert config.order_entry == OrderEntryConfig("127.0.0.1", 15000, 1000, 15000)
    assert config.market_data == MarketDataConfig(
        session="SIMEX00001", source_host="127.0.0.1", source_port=15003,
        subscribers=(("127.0.0.1", 15001),), multicast=None,
        rerequest_host="127.0.0.1", rerequest_port=15002, max_payload=1400, heartbeat_interval_ms=1000)
    assert config.faults == FaultConfig(0.0, 0.0, 0.0, 1)
    assert config.background == BackgroundConfig(enabled=True, rate=2000.0, seed=7, firm="BGND", tick=100,
                                                 volatility_bp=1.0, max_resting_per_symbol=200)
    assert config.records == RecordsConfig(None)
    assert config.control == ControlConfig(None)
    assert config.duration_s is None
    assert config == parse_config(DEFAULT_CONFIG_YAML)


def test_the_default_is_commented_and_names_every_section():
    assert DEFAULT_CONFIG_YAML.count("#") >= 10
    document = yaml.safe_load(DEFAULT_CONFIG_YAML)
    assert list(document) == ["version", "symbols", "limits", "order_entry", "firms", "market_data", "faults",
                              "background", "records", "control", "duration_s"]


def test_omitted_sections_and_keys_take_the_defaults():
    config = parse_config(BASE)
    default = default_config()
    for name in ("order_entry", "market_data", "faults", "background", "records", "control", "duration_s",
                 "max_shares"):
        assert getattr(config, name) == getattr(default, name), name
    assert config.symbols == (SymbolConfig("AAPL", 1900000, 100),)
    assert config.firms == (FirmConfig("ALGO1", "secret1", "ALGO"),)   # mpid from the username


def test_cancel_on_disconnect_is_per_firm_and_off_unless_asked():
    config = parse_config(BASE + "  - {username: ALGO2, password: secret2, cancel_on_disconnect: true}\n"
                                 "  - {username: ALGO3, password: secret3, cancel_on_disconnect: false}\n")
    assert [(f.username, f.cancel_on_disconnect) for f in config.firms] == [
        ("ALGO1", False), ("ALGO2", True), ("ALGO3", False)]
    assert FirmConfig("ALGO1", "secret1", "ALGO").cancel_on_disconnect is False
    assert parse_config(config.to_yaml()) == config
    assert default_config().with_overrides(
        firms=(FirmConfig("ALGO1", "secret1", "ALGO", cancel_on_disconnect=True),)).firms[0].cancel_on_disconnect
    with pytest.raises(ConfigError) as info:
        default_config().with_overrides(firms=(FirmConfig("ALGO1", "secret1", "ALGO", cancel_on_disconnect="yes"),))
    assert info.value.key_path == "firms[0].cancel_on_disconnect"


def test_the_default_config_shows_cancel_on_disconnect_off_for_every_firm():
    document = yaml.safe_load(DEFAULT_CONFIG_YAML)
    assert [firm["cancel_on_disconnect"] for firm in document["firms"]] == [False, False]
    assert any(line.startswith("# cancel_on_disconnect:") for line in DEFAULT_CONFIG_YAML.splitlines())
    out = subprocess.run([sys.executable, "-m", "appliance", "exchange", "default-config"], check=True,
                         capture_output=True, text=True, timeout=60, cwd=ROOT).stdout
    assert out == DEFAULT_CONFIG_YAML
    assert [f.cancel_on_disconnect for f in parse_config(out).firms] == [False, False]


def test_a_null_section_takes_the_defaults():
    config = parse_config(BASE + "faults:\nbackground:\n")
    assert config.faults == default_config().faults
    assert config.background == default_config().background


@pytest.mark.parametrize("username, mpid", [("ALGO1", "ALGO"), ("ab", "ABXX"), ("x1", "X1XX"), ("Zed", "ZEDX")])
def test_the_default_mpid_is_the_username_upper_cased_and_padded(username, mpid):
    text = BASE.replace("username: ALGO1", f"username: {username}")
    assert parse_config(text).firms[0].mpid == mpid


# --------------------------------------------------------------------------
# A full document
# --------------------------------------------------------------------------

def test_a_full_document_is_read_exactly():
    config = parse_config(FULL, "full.yaml")
    assert config.symbols == (SymbolConfig("IBM", 1500000, 10), SymbolConfig("BRK.A", 2_000_000_000, 1),
                              SymbolConfig("X-1", 1, 100))
    assert config.max_shares == 4_294_967_295
    assert config.order_entry == OrderEntryConfig("0.0.0.0", 0, 250, 251)
    assert config.firms == (FirmConfig("ab1", "123456", "WXYZ"), FirmConfig("Zed", "p@ss!~", "ZEDX"))
    assert config.market_data == MarketDataConfig(
        session="SESSION-42", source_host="10.0.0.5", source_port=15003,
        subscribers=(("10.0.0.6", 20001), ("10.0.0.7", 65535)),
        multicast=MulticastConfig("239.255.0.1", 30001, "10.0.0.5", 4), rerequest_host="10.0.0.5",
        rerequest_port=0, max_payload=64, heartbeat_interval_ms=500)
    assert config.faults == FaultConfig(drop=0.25, duplicate=1.0, reorder=0.0, seed=99)
    assert config.background == BackgroundConfig(enabled=False, rate=200000.0, seed=0, firm="NOISE", tick=1,
                                                 volatility_bp=0.0, max_resting_per_symbol=0)
    assert config.records == RecordsConfig("/var/tmp/simex")
    assert config.control == ControlConfig("/run/simex.sock")
    assert config.duration_s == 2.5
    assert isinstance(config.faults.duplicate, float) and isinstance(config.background.rate, float)


@pytest.mark.parametrize("text", [FULL, DEFAULT_CONFIG_YAML, BASE])
def test_a_document_round_trips(text):
    config = parse_config(text)
    assert parse_config(config.to_yaml()) == config
    assert parse_config(yaml.safe_dump(config.to_dict())) == config


def test_the_multicast_defaults_fill_in_around_the_group():
    config = parse_config(BASE + "market_data:\n  subscribers: []\n  multicast: {group: 224.0.0.251}\n")
    assert config.market_data.subscribers == ()
    assert config.market_data.multicast == MulticastConfig("224.0.0.251", 15001, "127.0.0.1", 1)


def test_no_subscribers_and_no_multicast_is_allowed():
    config = parse_config(BASE + "market_data: {subscribers: [], multicast: null}\n")
    assert config.market_data.subscribers == () and config.market_data.multicast is None


def test_the_config_is_frozen():
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_shares = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.order_entry.port = 5  # type: ignore[misc]


# --------------------------------------------------------------------------
# Every way a document can be wrong
# --------------------------------------------------------------------------

BAD_DOCUMENTS = [
    # (id, text, key_path, line, reason fragment)
    ("unknown top-level key", BASE + "bogus: 1\n", "bogus", 6,
     "unknown key (allowed: background, control, duration_s, faults, firms, instruments, limits, market_data, order_entry, records"),
    ("unknown nested key", BASE + "faults:\n  drop: 0.1\n  dorp: 0.2\n", "faults.dorp", 8,
     "unknown key (allowed: drop, duplicate, reorder, seed)"),
    ("unknown key in a symbol", BASE.replace("1900000}", "1900000, lot: 5}"), "symbols[0].lot", 3,
     "unknown key"),
    ("missing symbols", "version: 1\nfirms:\n  - {username: ALGO1, password: secret1}\n", "symbols", 1,
     "missing required key"),
    ("missing firms", "version: 1\nsymbols:\n  - {symbol: AAPL, reference_price: 1}\n", "firms", 1,
     "missing required key"),
    ("missing version", BASE.replace("version: 1\n", "# no version\n"), "version", 2, "missing required key"),
    ("missing reference price", BASE.replace(", reference_price: 1900000", ""), "symbols[0].reference_price", 3,
     "missing required key"),
    ("missing multicast group", BASE + "market_data:\n  multicast: {port: 1}\n", "market_data.multicast.group", 7,
     "missing required key"),
    ("bool as a number", BASE + "limits: {max_shares: true}\n", "limits.max_shares", 6,
     "expected an integer, got a boolean"),
    ("bool as a probability", BASE + "faults: {drop: yes}\n", "faults.drop", 6, "expected a number, got a boolean"),
    ("bool as a duration", BASE + "duration_s: on\n", "duration_s", 6, "got a boolean"),
    ("float as an integer", BASE.replace("1900000}", "1900000, round_lot: 100.5}"), "symbols[0].round_lot", 3,
     "expected an integer, got a number"),
    ("number as enabled", BASE + "background: {enabled: 1}\n", "background.enabled", 6,
     "expected true or false, got an integer"),
    ("unquoted ON symbol", BASE.replace("symbol: AAPL", "symbol: ON"), "symbols[0].symbol", 3,
     "expected a string, got a boolean (quote it)"),
    ("unquoted numeric password", BASE.replace("password: secret1", "password: 123456"), "firms[0].password", 5,
     "expected a string, got an integer (quote it)"),
    ("order entry port too big", BASE + "order_entry:\n  port: 70000\n", "order_entry.port", 7,
     "must be 0..65535, got 70000"),
    ("negative rerequest port", BASE + "market_data: {rerequest_port: -1}\n", "market_data.rerequest_port", 6,
     "must not be negative, got -1"),
    ("multicast port 0", BASE + "market_data:\n  multicast: {group: 239.1.1.1, port: 0}\n",
     "market_data.multicast.port", 7, "must be 1..65535, got 0"),
    ("host name, not IPv4", BASE + "order_entry: {host: localhost}\n", "order_entry.host", 6,
     "'localhost' is not an IPv4 address"),
    ("multicast interface not IPv4", BASE + "market_data:\n  multicast: {group: 239.1.1.1, interface: eth0}\n",
     "market_data.multicast.interface", 7, "'eth0' is not an IPv4 address"),
    ("duplicate symbol",
     "version: 1\nsymbols:\n  - {symbol: AAPL, reference_price: 1}\n  - {symbol: MSFT, reference_price: 1}\n"
     "  - {symbol: AAPL, reference_price: 2}\nfirms:\n  - {username: A, password: b}\n",
     "symbols[2].symbol", 5, "duplicate symbol 'AAPL' (first at symbols[0])"),
    ("bad symbol", BASE.replace("symbol: AAPL", "symbol: aapl"), "symbols[0].symbol", 3,
     "'aapl' must be 1..8 characters of A-Z, 0-9, '.' or '-'"),
    ("symbol too long", BASE.replace("symbol: AAPL", "symbol: ABCDEFGHI"), "symbols[0].symbol", 3, "1..8"),
    ("reference price 0", BASE.replace("reference_price: 1900000", "reference_price: 0"),
     "symbols[0].reference_price", 3, "must be 1..2000000000, got 0"),
    ("empty symbols list", "version: 1\nsymbols: []\nfirms:\n  - {username: A, password: b}\n", "symbols", 2,
     "0 symbols; between 1 and 1000 are needed"),
    ("symbols not a list", "version: 1\nsymbols: AAPL\nfirms:\n  - {username: A, password: b}\n", "symbols", 2,
     "expected a list, got a string"),
    ("symbol entry not a mapping", "version: 1\nsymbols:\n  - AAPL\nfirms:\n  - {username: A, password: b}\n",
     "symbols[0]", 3, "expected a mapping, got a string"),
    ("duplicate username", BASE + "  - {username: ALGO1, password: other}\n", "firms[1].username", 6,
     "duplicate username 'ALGO1' (first at firms[0])"),
    ("username too long", BASE.replace("username: ALGO1", "username: ALGO123"), "firms[0].username", 5,
     "1..6 letters or digits"),
    ("bad mpid", BASE.replace("password: secret1", "password: secret1, mpid: algo"), "firms[0].mpid", 5,
     "'algo' must be 4 characters A-Z or 0-9"),
    ("mpid too short", BASE.replace("password: secret1", "password: secret1, mpid: ABC"), "firms[0].mpid", 5,
     "must be 4 characters"),
    ("password with a space", BASE.replace("password: secret1", 'password: "sec ret"'), "firms[0].password", 5,
     "printable ASCII characters without spaces"),
    ("password too long", BASE.replace("password: secret1", "password: abcdefghijk"), "firms[0].password", 5,
     "1..10"),
    ("no firms", "version: 1\nsymbols:\n  - {symbol: A, reference_price: 1}\nfirms: []\n", "firms", 4,
     "0 firms; between 1 and 64 are needed"),
    ("subscriber without a port", BASE + 'market_data:\n  subscribers: ["127.0.0.1:15001", "127.0.0.1"]\n',
     "market_data.subscribers[1]", 7, 'not host:port ("127.0.0.1")'),
    ("subscriber port 0", BASE + 'market_data:\n  subscribers:\n    - "127.0.0.1:0"\n',
     "market_data.subscribers[0]", 8, 'port 0 outside 1..65535 ("127.0.0.1:0")'),
    ("subscriber host name", BASE + 'market_data: {subscribers: ["feed:1"]}\n', "market_data.subscribers[0]", 6,
     "host 'feed' is not an IPv4 address"),
    ("subscriber not a string", BASE + "market_data: {subscribers: [15001]}\n", "market_data.subscribers[0]", 6,
     'expected a "host:port" string, got an integer'),
    ("duplicate subscriber", BASE + 'market_data: {subscribers: ["127.0.0.1:1", "127.0.0.1:1"]}\n',
     "market_data.subscribers[1]", 6, "duplicate subscriber"),
    ("multicast group not multicast", BASE + "market_data:\n  multicast: {group: 10.0.0.1, port: 15001}\n",
     "market_data.multicast.group", 7, "10.0.0.1 is not a multicast address (224.0.0.0/4)"),
    ("multicast ttl", BASE + "market_data:\n  multicast: {group: 239.1.1.1, ttl: 256}\n",
     "market_data.multicast.ttl", 7, "must be 0..255, got 256"),
    ("session too long", BASE + "market_data: {session: SIMEX000001}\n", "market_data.session", 6,
     "1..10 printable ASCII"),
    ("probability over 1", BASE + "faults: {reorder: 1.5}\n", "faults.reorder", 6, "must be 0..1, got 1.5"),
    ("negative probability", BASE + "faults: {duplicate: -0.1}\n", "faults.duplicate", 6, "must not be negative, got -0.1"),
    ("infinite probability", BASE + "faults: {drop: .inf}\n", "faults.drop", 6, "not a finite number"),
    ("version 2", BASE.replace("version: 1", "version: 2"), "version", 1, "unsupported version 2"),
    ("version as a string", BASE.replace("version: 1", 'version: "1"'), "version", 1,
     "expected an integer, got a string"),
    ("invalid YAML", BASE + "faults: {drop: 0.1\nrecords: {}\n", "", 7, "not valid YAML"),
    ("invalid YAML indentation", "version: 1\n  symbols: []\n", "", 2, "not valid YAML"),
    ("duplicate key", BASE + "order_entry:\n  port: 1\n  port: 2\n", "order_entry.port", 8,
     "duplicate key (first at line 7)"),
    ("duplicate top-level key", BASE + "version: 1\n", "version", 6, "duplicate key (first at line 1)"),
    ("duplicate key in a list item", BASE.replace("password: secret1}", "password: a, password: b}"),
     "firms[0].password", 5, "duplicate key"),
    ("rate over the limit", BASE + "background: {rate: 200001}\n", "background.rate", 6,
     "must be 0..200000, got 200001"),
    ("tick 0", BASE + "background: {tick: 0}\n", "background.tick", 6, "must be 1..2000000000, got 0"),
    ("timeout equal to the heartbeat", BASE + "order_entry: {heartbeat_interval_ms: 1000, peer_timeout_ms: 1000}\n",
     "order_entry.peer_timeout_ms", 6, "1000 must be greater than heartbeat_interval_ms (1000)"),
    ("timeout below the default heartbeat", BASE + "order_entry:\n  peer_timeout_ms: 500\n",
     "order_entry.peer_timeout_ms", 7, "must be greater than heartbeat_interval_ms"),
    ("background firm collides", BASE + "background: {firm: algo1}\n", "background.firm", 6,
     "'algo1' is also the username of firms[0]"),
    ("max_payload too small", BASE + "market_data: {max_payload: 40}\n", "market_data.max_payload", 6,
     "must be 64..65000, got 40"),
    ("max_payload too large", BASE + "market_data: {max_payload: 65001}\n", "market_data.max_payload", 6,
     "must be 64..65000, got 65001"),
    ("top level a list", "- version: 1\n- symbols: []\n", "", 1, "expected a mapping, got a list"),
    ("top level a string", "\n\nhello\n", "", 3, "expected a mapping, got a string"),
    ("section not a mapping", BASE + "faults: [0.1]\n", "faults", 6, "expected a mapping, got a list"),
    ("duration 0", BASE + "duration_s: 0\n", "duration_s", 6, "must be greater than 0, got 0"),
    ("negative duration", BASE + "duration_s: -1.5\n", "duration_s", 6, "must be greater than 0"),
    ("records directory empty", BASE + 'records: {directory: ""}\n', "records.directory", 6, "must not be empty"),
    ("control socket too long", BASE + f"control: {{socket: /tmp/{'s' * 103}}}\n", "control.socket", 6,
     "path is 108 bytes; a UNIX socket path holds at most 107"),
    ("cancel_on_disconnect a string", BASE.replace("secret1}", "secret1, cancel_on_disconnect: always}"),
     "firms[0].cancel_on_disconnect", 5, "expected true or false, got a string"),
    ("cancel_on_disconnect a number",
     BASE + "  - username: ALGO2\n    password: secret2\n    cancel_on_disconnect: 1\n",
     "firms[1].cancel_on_disconnect", 8, "expected true or false, got an integer"),
    ("cancel_on_disconnect null", BASE.replace("secret1}", "secret1, cancel_on_disconnect: null}"),
     "firms[0].cancel_on_disconnect", 5, "expected true or false, got null"),
    ("cancel_on_disconnect misspelt", BASE.replace("secret1}", "secret1, cancel_on_disconect: true}"),
     "firms[0].cancel_on_disconect", 5, "unknown key (allowed: cancel_on_disconnect, mpid, password, username)"),
]


@pytest.mark.parametrize("text, key_path, line, fragment", [case[1:] for case in BAD_DOCUMENTS],
                         ids=[case[0] for case in BAD_DOCUMENTS])
def test_a_bad_document_names_the_key_the_line_and_the_reason(text, key_path, line, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "exchange.yaml")
    error = info.value
    assert (error.file, error.key_path, error.line) == ("exchange.yaml", key_path, line), str(error)
    assert fragment in error.reason
    assert str(error) == f"exchange.yaml:{line}: {key_path or '<top>'}: {error.reason}"


def test_the_error_reads_file_line_path_reason():
    text = BASE + 'market_data:\n  subscribers: ["127.0.0.1"]\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "exchange.yaml")
    assert str(info.value) == 'exchange.yaml:7: market_data.subscribers[0]: not host:port ("127.0.0.1")'
    assert isinstance(info.value, ValueError)


def test_the_control_socket_may_be_exactly_107_bytes():
    path = "/tmp/" + "s" * 102
    assert parse_config(BASE + f"control: {{socket: {path}}}\n").control.socket == path


@pytest.mark.parametrize("text, reason", [("", "empty document"), ("# only a comment\n", "empty document")])
def test_an_empty_document_is_an_error(text, reason):
    with pytest.raises(ConfigError, match=reason) as info:
        parse_config(text, "e.yaml")
    assert info.value.key_path == ""


def test_bytes_must_be_utf8():
    assert parse_config(BASE.encode()) == parse_config(BASE)
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_config(BASE.encode() + b"# \xff\n")


# --------------------------------------------------------------------------
# Files and overrides
# --------------------------------------------------------------------------

def test_load_config_of_a_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.line is None
    assert "cannot read" in info.value.reason and "No such file" in info.value.reason
    assert str(path) in str(info.value)


def test_load_config_of_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_load_config_reads_a_file_and_names_it_in_errors(tmp_path):
    good = tmp_path / "exchange.yaml"
    good.write_text(FULL)
    assert load_config(good) == parse_config(FULL)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE + "faults: {drop: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert str(info.value).startswith(f"{bad}:6: faults.drop: ")


def test_with_overrides_replaces_fields_and_sections():
    config = default_config()
    changed = config.with_overrides(duration_s=5, order_entry={"port": 0},
                                    records=RecordsConfig("/tmp/records"))
    assert changed.duration_s == 5.0
    assert changed.order_entry == dataclasses.replace(config.order_entry, port=0)
    assert changed.records.directory == "/tmp/records"
    assert changed.market_data == config.market_data and config.duration_s is None
    assert config.replace_section("faults", drop=0.5).faults == FaultConfig(0.5, 0.0, 0.0, 1)
    subscribers = config.replace_section("market_data", subscribers=(("127.0.0.1", 9),)).market_data.subscribers
    assert subscribers == (("127.0.0.1", 9),)
    assert isinstance(changed, ExchangeConfig)


@pytest.mark.parametrize("changes, key_path", [
    ({"duration_s": 0}, "duration_s"),
    ({"faults": {"drop": 1.5}}, "faults.drop"),
    ({"background": {"firm": "ALGO2"}}, "background.firm"),
    ({"max_shares": 0}, "limits.max_shares"),
    ({"bogus": 1}, "bogus"),
    ({"order_entry": {"prot": 1}}, "order_entry.prot"),
])
def test_overrides_are_validated(changes, key_path):
    with pytest.raises(ConfigError) as info:
        default_config().with_overrides(**changes)
    assert info.value.key_path == key_path
    assert info.value.file == "<overrides>"


def test_replace_section_refuses_a_non_section():
    with pytest.raises(ConfigError):
        default_config().replace_section("duration_s", value=1)


def test_the_module_imports_nothing_of_the_appliance_but_the_leaves():
    code = ("import sys, appliance.exchange.config; "
            "print(sorted(m for m in sys.modules if m.startswith('appliance.') "
            "and not m.startswith(('appliance.wire', 'appliance.config', 'appliance.exchange'))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    assert config_check.MIN_PAYLOAD == 64
