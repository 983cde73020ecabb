"""Every configuration loader fed mutated documents: the loader's own named error, never another.

Targets: the layout (and, reached through it, every process's params parser: feed, OMS, risk,
strategy, supervisor with its clock section), the risk limits file, the strategy parameters
file, the exchange configuration; and each params parser alone on structure-level damage
(cheap, so the soak reaches far more shapes). YAML inputs are text-level damage of the valid
files (``fuzzkit.mutate_yaml_text``) and structure-level damage dumped back in a random style,
with anchors and aliases, tags, huge and deep values, duplicate keys, non-UTF-8 bytes.

A named error must also say where: a file error starts with its file name, a params error
names a key path under ``processes.``.

``FUZZ_CASES=1000000 python -m pytest tests/fuzz -s`` is the soak (see fuzzkit.py).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from appliance.exchange.config import DEFAULT_CONFIG_YAML, ConfigError, parse_config
from appliance.feed.config import FeedConfigError, parse_feed_params
from appliance.oms.config import OmsConfigError, parse_oms_params
from appliance.risk.agent import parse_params as parse_risk_params
from appliance.risk.limits import LimitsError, describe_changes, load_limits, parse_limits
from appliance.config.errors import ConfigFileError, ParamsError
from appliance.config.instruments import InstrumentsError, load_instruments, parse_instruments
from appliance.runtime.layout import LayoutError, parse_layout
from appliance.config.yaml_lines import plain
from appliance.strategy.config import StrategyConfig, StrategyConfigError, parse_strategy_params
from appliance.strategy.loader import load_strategy
from appliance.strategy.market_maker import BookTop, desired_quotes
from appliance.supervisor.config import SupervisorConfigError, parse_supervisor_params

import fuzzkit

ROOT = Path(__file__).resolve().parents[2]
THIS = "tests/fuzz/test_fuzz_config.py"
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ", "TSLA")
MARKET_MAKER = "appliance.strategy.market_maker:MarketMaker"
MAX_MESSAGE = 1 << 20          # an error message longer than this is itself a problem (an expanded input?)

# ------------------------------------------------------------------------------------ seeds

SMALL_LAYOUT = """\
version: 1
name: fz
symbols: [AAPL, MSFT]
segments:
  - {name: main, backing: 4k, mode: "0600"}
tables:
  - {name: counters, kind: counters, segment: main, slots_per_process: 8}
  - {name: processes, kind: processes, segment: main}
  - {name: market_state, kind: market_state, segment: main}
  - {name: control, kind: control, segment: main}
rings:
  - {name: intents, segment: main, producer: strategy, consumer: risk, message: OrderIntent, slot_size: 128, capacity: 64}
processes:
  - name: supervisor
    agent: appliance.supervisor.agent:SupervisorAgent
    idle: {strategy: sleep, sleep_ns: 1000000}
    params: {clock: {require_sync: false, ptp: {uds: /run/ptp, max_ingress_age_ms: 100}}, start_order: [risk]}
  - name: feed
    agent: appliance.feed.agent:FeedAgent
    idle: {strategy: backoff, min_park_ns: 10, max_park_ns: 20}
    params: {multicast: {group: 239.1.1.1}, session: S1, book_dump: run/books.json}
  - name: strategy
    agent: appliance.strategy.agent:StrategyAgent
    cpu: 1
    idle: {strategy: doorbell}
    params: {strategy: "appliance.strategy.market_maker:MarketMaker", strategy_id: 7, symbols: [AAPL],
             parameters: {tick: 100, symbols: {AAPL: {spread_ticks: 3}}}}
  - name: risk
    agent: appliance.risk.agent:RiskAgent
    idle: {strategy: yield}
    scheduling: {policy: fifo, priority: 10}
    params: {limits: config/risk_limits.yaml, order_capacity: 64}
  - name: oms
    agent: appliance.oms.agent:OmsAgent
    idle: {strategy: busy_spin}
    params: {venue: {host: 127.0.0.1, port: 15000}, durability: per_event, reconnect_max_ms: 100}
"""

SMALL_LIMITS = """\
version: 1
global: {capital: 1000000.5, max_gross_notional: 100, max_net_notional: 100, max_leverage: 2.5,
         max_daily_loss: 10, max_drawdown: 10, max_messages_per_second: 5, max_open_orders: 0,
         max_identical_orders: 1, throttle_kill: {trips: 3, window_ms: 100},
         market_hours: {open: "09:30", close: "16:00:30", timezone: America/New_York, weekdays: [Mon, Sun]}}
sectors: {S: {max_gross_notional: 1.25}}
symbol_defaults: {sector: S, tick: 0.0001}
symbols:
  AAPL: {max_shares: 10, max_notional: 5, max_long: 1, max_short: 0, collar_abs: 1.5, round_lot: 100}
  MSFT:
"""

SMALL_STRATEGY = """\
tick: 1
size: 200
lot: 100
fair_value: microprice
symbols:
  AAPL: {}
  SPY: {fair_value: mid, lot: 200, spread_bp: 1.5}
"""

SMALL_EXCHANGE = """\
version: 1
symbols: [{symbol: AAPL, reference_price: 1}, {symbol: B.C-D, reference_price: 2000000000, round_lot: 1}]
firms: [{username: A1, password: "!~"}]
market_data: {multicast: {group: 239.1.1.1, port: 1, ttl: 255}, subscribers: [], max_payload: 65000}
control: {socket: /tmp/x.sock}
records: {directory: run/records}
faults: {drop: 1, duplicate: 0.5, reorder: 0, seed: 18446744073709551615}
duration_s: 0.001
"""


def _read(path: str) -> str:
    return (ROOT / path).read_text()


def _seeds(*texts: str) -> tuple[list[str], list]:
    return list(texts), [yaml.safe_load(t) for t in texts]


# ------------------------------------------------------------------------------------ checks

def _check_named(exc: Exception, data) -> None:
    """A named error says where: file (and line) for a file, a key path for params."""
    message = str(exc)
    assert len(message) < MAX_MESSAGE, f"a {len(message)}-character error message"
    if isinstance(exc, ConfigFileError):
        assert exc.file and message.startswith(exc.file), message[:300]
    elif isinstance(exc, (ConfigError,)):
        assert message.startswith(exc.file), message[:300]
    elif isinstance(exc, ParamsError):
        assert exc.key_path.startswith("processes.") and exc.reason, message[:300]
    elif isinstance(exc, StrategyConfigError):
        assert exc.reason and ": : " not in message, message[:300]


PARAMS_ERRORS = (FeedConfigError, OmsConfigError, SupervisorConfigError, StrategyConfigError, LayoutError,
                 LimitsError)


def _check_process_params(layout, process) -> None:
    """What each agent does with its params before it starts (the agents themselves need shared memory)."""
    path = f"processes.{process.name}.params"
    agent = process.agent
    if agent.startswith("appliance.feed."):
        parse_feed_params(process.params, path)
    elif agent.startswith("appliance.oms."):
        parse_oms_params(process.params, layout.path, path)
    elif agent.startswith("appliance.risk."):
        config = parse_risk_params(process.params, layout.path, path)
        if not os.path.isfile(config["limits"]):      # reading the real file is the limits target's job
            load_limits(config["limits"], layout.symbols)
    elif agent.startswith("appliance.supervisor."):
        parse_supervisor_params(process.params, list(layout.processes))
    elif agent.startswith("appliance.strategy."):
        config = parse_strategy_params(process.params, path, layout.symbols)
        # only the reference strategy's class is imported: a fuzzed module name must not import anything
        if config.strategy == MARKET_MAKER and config.parameters_file is None:
            load_strategy(config, key_path=path, layout_path=layout.path, layout_symbols=layout.symbols)


def check_layout(data):
    layout = parse_layout(data, "fuzz.yaml", available_cpus={0, 1})
    for process in layout.processes.values():
        _check_process_params(layout, process)


def test_fuzz_layout_and_the_params_behind_it():
    texts, docs = _seeds(_read("shm_layout.yaml"), SMALL_LAYOUT, SMALL_LAYOUT, SMALL_LAYOUT)
    fuzzkit.run_cases("layout", 120, lambda rng: fuzzkit.yaml_inputs(rng, texts, docs), check_layout,
                      expected=PARAMS_ERRORS, on_error=_check_named, test_file=THIS, soak_share=0.06)


INSTRUMENTS = load_instruments(ROOT / "config" / "instruments.yaml")
BASE_LIMITS = parse_limits(_read("config/risk_limits.yaml"), SYMBOLS, "base.yaml", instruments=INSTRUMENTS)


def check_limits(data):
    limits = parse_limits(data, SYMBOLS, "fuzz.yaml", instruments=INSTRUMENTS)
    if limits.market_hours is not None:           # what the engine asks of it, at several times of day
        for now_ns in (0, 1_764_000_000_000_000_000, 1_764_050_000_123_456_789, 4_102_444_800_000_000_000):
            is_open, until_ns = limits.market_hours.state_at(now_ns)
            assert until_ns > now_ns - 86_400_000_000_000, (is_open, until_ns, now_ns)
    describe_changes(BASE_LIMITS, limits)         # a reload's log line


def test_fuzz_risk_limits():
    texts, docs = _seeds(_read("config/risk_limits.yaml"), SMALL_LIMITS, SMALL_LIMITS)
    fuzzkit.run_cases("limits", 120, lambda rng: fuzzkit.yaml_inputs(rng, texts, docs), check_limits,
                      expected=(LimitsError,), on_error=_check_named, test_file=THIS, soak_share=0.06)


# Book tops and positions the market maker quotes from: what its validated parameters must survive.
QUOTING = [(BookTop(1_899_900, 300, 1_900_100, 200), 0), (BookTop(1_899_900, 300, 1_900_100, 200), 700),
           (BookTop(100, 1, 200, 1), -1000), (BookTop(4_294_967_200, 10**6, 4_294_967_294, 1), 123)]


def _quote_with(loaded) -> None:
    if loaded.strategy_class.__name__ != "MarketMaker":
        return
    for symbol in SYMBOLS:
        params = loaded.parameters.for_symbol(symbol, INSTRUMENTS[symbol])
        for top, position in QUOTING:
            desired_quotes(top, position, [], params)


def test_fuzz_strategy_parameters_file(tmp_path):
    texts, docs = _seeds(_read("config/strategy.yaml"), SMALL_STRATEGY, SMALL_STRATEGY)
    path = tmp_path / "strategy.yaml"

    def check(data):
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        config = StrategyConfig(strategy=MARKET_MAKER, strategy_id=1, parameters_file=str(path))
        _quote_with(load_strategy(config, layout_symbols=SYMBOLS, instruments=INSTRUMENTS))

    fuzzkit.run_cases("strategy-file", 120, lambda rng: fuzzkit.yaml_inputs(rng, texts, docs), check,
                      expected=(StrategyConfigError,), on_error=_check_named, test_file=THIS, soak_share=0.06)


def check_exchange(data):
    config = parse_config(data, "fuzz.yaml")
    again = parse_config(config.to_yaml(), "roundtrip.yaml")       # what `default-config` / to_yaml writes reads back
    assert again == config, (config, again)


SMALL_INSTRUMENTS = "version: 1\ninstruments:\n  - {symbol: A, tick: 0.05, round_lot: 10, min_price: 1, max_price: 9}\n"


def check_instruments(data):
    for instrument in parse_instruments(data, "fuzz.yaml"):       # what a strategy asks of each one
        for price in (0, 1, instrument.min_price, instrument.max_price, 1_900_123):
            instrument.is_valid_price(price)
            assert instrument.is_valid_price(instrument.round_price(price, "B"))
            assert instrument.is_valid_price(instrument.round_price(price, "S"))


def test_fuzz_instruments():
    texts, docs = _seeds(_read("config/instruments.yaml"), SMALL_INSTRUMENTS, SMALL_INSTRUMENTS)
    fuzzkit.run_cases("instruments", 120, lambda rng: fuzzkit.yaml_inputs(rng, texts, docs), check_instruments,
                      expected=(InstrumentsError,), on_error=_check_named, test_file=THIS, soak_share=0.06)


def test_fuzz_exchange_config():
    texts, docs = _seeds(DEFAULT_CONFIG_YAML, SMALL_EXCHANGE, SMALL_EXCHANGE)
    fuzzkit.run_cases("exchange-config", 120, lambda rng: fuzzkit.yaml_inputs(rng, texts, docs), check_exchange,
                      expected=(ConfigError,), on_error=_check_named, test_file=THIS, soak_share=0.06)


# ------------------------------------------------------------------------------------ params alone

def _layout_params() -> dict[str, list]:
    out: dict[str, list] = {}
    for text in (_read("shm_layout.yaml"), SMALL_LAYOUT):
        for process in yaml.safe_load(text)["processes"]:
            out.setdefault(process["name"], []).append(process.get("params") or {})
    return out


PARAMS_SEEDS = _layout_params()
PARAMS_SEEDS["feed"].append({"listen": {"host": "0.0.0.0", "port": 0}, "rerequest": {"host": "10.0.0.1", "port": 1},
                             "multicast": {"group": "239.1.1.1", "interface": "127.0.0.1"}, "session": "ABCDEFGHIJ",
                             "stale_after_ms": 1, "rerequest_timeout_ms": 60000, "rerequest_retries": 0,
                             "max_buffered_packets": 1, "max_packets_per_cycle": 100000, "rcvbuf_bytes": 65536,
                             "counters_interval_ms": 10000, "book_dump": "x.json"})
PARAMS_SEEDS["oms"].append({"venue": {"host": "10.1.2.3", "port": 65535}, "credentials": "/etc/v.credentials",
                            "firm": "AB12", "journal": "/tmp/j.bin", "journal_size_mb": 65536,
                            "durability": "page_cache", "group_commit_us": 10, "risk_heartbeat_limit_ms": 1,
                            "in_flight_timeout_ms": 1, "unacked_timeout_ms": 1, "reconnect_min_ms": 5,
                            "reconnect_max_ms": 5, "heartbeat_ms": 10, "peer_timeout_ms": 100, "replay_quiet_ms": 1})
PARAMS_SEEDS["supervisor"].append({"clock": {"require_sync": True, "source": "ptp", "max_offset_ns": 1,
                                             "check_interval_ms": 10,
                                             "ptp": {"pmc": "pmc", "accept_uncalibrated": True}},
                                   "restart": {"policy": "stop"}, "exporter": {"enabled": False, "port": 0},
                                   "start_order": ["oms", "feed"], "start_timeout_s": 0.1, "stop_timeout_s": 3600,
                                   "control_socket": "/tmp/s.sock"})
PARAMS_SEEDS["risk"].append({"limits": "/abs/limits.yaml", "order_capacity": 1, "snapshot_retry_ms": 600000,
                             "housekeeping_ms": 1, "max_intents_per_cycle": 100000, "max_reports_per_cycle": 1})
PARAMS_SEEDS["strategy"].append({"strategy": MARKET_MAKER, "strategy_id": 4294967295, "timer_interval_ms": 3600000,
                                 "max_pending_intents": 1, "symbols": ["TSLA", "AAPL"],
                                 "parameters": {"spread_bp": 2.5, "skew_ticks": 0, "size": 300, "lot": 100,
                                                "max_position": 300, "pull_when_feed_down": False,
                                                "symbols": {"TSLA": {"tick": 1, "fair_value": "microprice"}}}})
PROCESSES = ["supervisor", "feed", "strategy", "risk", "oms"]


def _params_check(name: str):
    path = f"processes.{name}.params"

    def check(params):
        if name == "feed":
            parse_feed_params(params, path)
        elif name == "oms":
            parse_oms_params(params, "/work/layout.yaml", path)
        elif name == "supervisor":
            parse_supervisor_params(params, PROCESSES)
        elif name == "risk":
            config = parse_risk_params(params, "/work/layout.yaml", path)
            load_limits(config["limits"], SYMBOLS)        # no such file (or a bad path): LimitsError
        elif name == "strategy":
            config = parse_strategy_params(params, path, SYMBOLS)
            if config.strategy == MARKET_MAKER and config.parameters_file is None:
                _quote_with(load_strategy(config, key_path=path, layout_symbols=SYMBOLS, instruments=INSTRUMENTS))
    return check


@pytest.mark.parametrize("process", ["feed", "oms", "supervisor", "risk", "strategy"])
def test_fuzz_process_params(process):
    seeds = PARAMS_SEEDS[process] + [{}]

    def make(rng):
        return plain(fuzzkit.as_loaded(fuzzkit.mutate_tree(rng, rng.choice(seeds), donors=seeds)))

    fuzzkit.run_cases(f"params-{process}", 1000, make, _params_check(process), expected=PARAMS_ERRORS,
                      on_error=_check_named, test_file=THIS, soak_share=0.152)
