"""Configuration inputs the fuzz (test_fuzz_config.py) found: each failed before its fix.

Each gives the loader's named error with the file and line (or the key path), quickly, and
without expanding, printing or copying anything huge.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.exchange.config import DEFAULT_CONFIG_YAML, ConfigError, load_config, parse_config
from appliance.feed.config import FeedConfigError, parse_feed_params
from appliance.oms.config import OmsConfigError, parse_oms_params
from appliance.risk.agent import parse_params as parse_risk_params
from appliance.risk.limits import LimitsError, load_limits, parse_limits
from appliance.runtime.layout import LayoutError, load_layout, parse_layout
from appliance.strategy.config import StrategyConfig, StrategyConfigError, parse_strategy_params
from appliance.strategy.loader import load_parameters_file, load_strategy

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ", "TSLA")
MARKET_MAKER = "appliance.strategy.market_maker:MarketMaker"
_LAYOUT = (ROOT / "shm_layout.yaml").read_text()
_LIMITS = (ROOT / "config/risk_limits.yaml").read_text()
_INSTRUMENTS = load_layout(ROOT / "shm_layout.yaml").instruments


def _laughs_flow(levels: int) -> str:
    """[&a0 [x x10], &a1 [*a0 x10], ...]: 10**levels leaves in a few hundred bytes."""
    chain = ", ".join(f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels))
    return f"[&a0 [{', '.join(['x'] * 10)}], {chain}]"


YAML_REGRESSIONS = {
    # a scalar its tag cannot read: ValueError from PyYAML's constructor, not the loader's error
    "impossible-date": ("version: 1", "version: 2001-02-30", "cannot read '2001-02-30' as !!timestamp"),
    "float-tag": ("version: 1", "version: !!float abc", "cannot read 'abc' as !!float"),
    "int-tag": ("version: 1", "version: !!int xyz", "cannot read 'xyz' as !!int"),
    # ints Python will not print (over 4300 digits) or not even parse
    "hex-int": ("version: 1", "version: 0x" + "f" * 600, "an integer of more than 100 digits"),
    "decimal-int": ("version: 1", "version: " + "9" * 5000, "as !!int"),
    # billion laughs: 10**7 elements formatted into an error message (limits) or copied (layout params)
    "laughs": ("version: 1", "version: " + _laughs_flow(7), "aliases expand the document by more than"),
    # [[[[...: seconds in PyYAML's scanner, then a RecursionError
    "deep-flow": ("version: 1", "version: " + "[" * 60000, "nested more than 64 levels deep"),
    "deep-block": ("version: 1", "version:\n" + "".join(" " * i + "-\n" for i in range(1, 400)),
                   "nested more than 64 levels deep"),
}


@pytest.mark.parametrize("name", list(YAML_REGRESSIONS))
def test_regression_yaml_layout_and_limits(name):
    old, new, fragment = YAML_REGRESSIONS[name]
    for parse, text, error in ((lambda t: parse_layout(t, "fz.yaml", available_cpus={0}), _LAYOUT, LayoutError),
                               (lambda t: parse_limits(t, SYMBOLS, "fz.yaml", instruments=_INSTRUMENTS), _LIMITS,
                                LimitsError)):
        started = time.monotonic()
        with pytest.raises(error) as caught:
            parse(text.replace(old, new, 1))
        assert fragment in str(caught.value) and str(caught.value).startswith("fz.yaml:"), str(caught.value)[:300]
        assert len(str(caught.value)) < 10_000 and time.monotonic() - started < 2.0


def test_regression_laughs_in_layout_params_are_not_expanded():
    """plain() copied params: 10**7 list elements in seconds, 10**9 in hours and gigabytes."""
    text = _LAYOUT.replace("      stale_after_ms: 3000", "      stale_after_ms: 3000\n      x: " + _laughs_flow(7))
    started = time.monotonic()
    with pytest.raises(LayoutError, match="aliases expand the document"):
        parse_layout(text, "fz.yaml", available_cpus={0})
    assert time.monotonic() - started < 2.0


EXCHANGE_REGRESSIONS = {
    "control-character": ("duration_s: null", "duration_s: null # \x04", "special characters are not allowed"),
    "impossible-date": ("seed: 7", "seed: 2001-02-30", "as !!timestamp"),
    "int-tag-key": ("seed: 7", "!!int zz: 7", "cannot read 'zz' as !!int"),
    "huge-number": ("drop: 0.0", "drop: 1" + "0" * 400, "an integer of more than 100 digits"),
    "huge-port": ('["127.0.0.1:15001"]', '["127.0.0.1:' + "9" * 5000 + '"]', "outside 1..65535"),
    "surrogate-socket": ("socket: null", 'socket: "\\uD800"', "not a valid file name"),
    "nul-socket": ("socket: null", 'socket: "/tmp/a\\0b"', "not a valid file name (a NUL"),
    "nul-directory": ("directory: null", 'directory: "run\\0"', "not a valid file name (a NUL"),
    "deep-flow": ("duration_s: null", "duration_s: " + "[" * 60000, "nested more than 64 levels deep"),
}


@pytest.mark.parametrize("name", list(EXCHANGE_REGRESSIONS))
def test_regression_exchange_config(name):
    old, new, fragment = EXCHANGE_REGRESSIONS[name]
    assert old in DEFAULT_CONFIG_YAML
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_config(DEFAULT_CONFIG_YAML.replace(old, new, 1), "fz.yaml")
    assert fragment in str(caught.value) and str(caught.value).startswith("fz.yaml"), str(caught.value)[:300]
    assert time.monotonic() - started < 2.0


def test_regression_yaml_errors_of_the_strategy_parameters_file(tmp_path):
    path = tmp_path / "p.yaml"
    for text, fragment in (("tick: " + "[" * 5000, "nested more than 64"),            # was a RecursionError
                           ("tick: 2001-02-30", "as !!timestamp"), ("a: [", "not valid YAML")):
        path.write_text(text)
        with pytest.raises(StrategyConfigError) as caught:
            load_strategy(StrategyConfig(MARKET_MAKER, 1, parameters_file=str(path)))
        message = str(caught.value)
        assert fragment in message and f"{path}:1: <top>: " in message, message      # was "p.yaml:1: : ..."


@pytest.mark.parametrize("parameters", [{"spread_bp": float("nan")}, {"skew_ticks": float("inf")},
                                        {"widen_ticks": 1e300}, {"tick": 10**40}, {"spread_ticks": 10**40}])
def test_regression_market_maker_refuses_parameters_it_cannot_quote_with(parameters):
    """Accepted before: NaN and infinities failed the first quote (int(nan), int(inf)), and so did huge
    values (the float arithmetic overflows); now the largest sensible value is the limit."""
    params = {"strategy": MARKET_MAKER, "strategy_id": 1, "parameters": parameters}
    with pytest.raises(StrategyConfigError):
        load_strategy(parse_strategy_params(params), layout_symbols=SYMBOLS)


@pytest.mark.parametrize("params, parse, error", [
    ({"listen": {1: "x", "a": "y"}}, parse_feed_params, FeedConfigError),           # sorted() of int and str
    ({"multicast": {"group": "239.1.1.1", None: 1, "b": 2}}, parse_feed_params, FeedConfigError),
    ({"venue": {1.5: "x", "a": "y"}}, lambda p: parse_oms_params(p), OmsConfigError),
])
def test_regression_params_with_keys_of_mixed_types(params, parse, error):
    with pytest.raises(error, match="unknown key"):
        parse(params)


def test_regression_a_nul_in_a_config_path_is_the_named_error(tmp_path):
    """open() raises ValueError, not OSError, for a path with a NUL (e.g. risk params limits: "a\\0b")."""
    bad = str(tmp_path / "a\0b.yaml")
    with pytest.raises(LayoutError, match="cannot read"):
        load_layout(bad)
    with pytest.raises(LimitsError, match="cannot read"):
        load_limits(parse_risk_params({"limits": bad}, "", "processes.risk.params")["limits"], SYMBOLS)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(bad)
    with pytest.raises(StrategyConfigError, match="cannot read"):
        load_parameters_file(bad)
