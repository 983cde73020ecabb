"""The limits file: the repository's file is valid, and every mistake stops start-up with file:line, key path and reason."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from appliance.exchange.config import DEFAULT_CONFIG_YAML
from appliance.risk.limits import PRICE_SCALE, LimitsError, describe_changes, load_limits, parse_limits
from appliance.runtime.layout import load_layout

ROOT = Path(__file__).resolve().parents[2]
LAYOUT_SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ", "TSLA")

GOOD = textwrap.dedent("""\
    version: 1
    global:
      capital: 1000000
      max_gross_notional: 500000
      max_net_notional: 400000
      max_leverage: 1.5
      max_daily_loss: 10000
      max_drawdown: 15000
      max_messages_per_second: 100
      max_open_orders: 50
      max_identical_orders: 5
    sectors:
      TECH: {max_gross_notional: 300000}
    symbols:
      AAPL:
        sector: TECH
        max_shares: 500
        max_notional: 100000
        tick: 0.01
        collar_pct: 2.5
        max_long: 1000
        max_short: 800
    """)


def error_of(text: str, symbols=LAYOUT_SYMBOLS) -> LimitsError:
    with pytest.raises(LimitsError) as caught:
        parse_limits(text, symbols, "limits.yaml")
    return caught.value


def test_the_repository_limits_file_is_valid_for_the_repository_layout():
    layout = load_layout(ROOT / "shm_layout.yaml")
    limits = load_limits(ROOT / "config" / "risk_limits.yaml", layout.symbols, instruments=layout.instruments)
    assert all(s is not None for s in limits.symbols), "every layout symbol has limits"
    assert limits.market_hours is None                      # never blocks a test run
    assert limits.allow_market_orders is False


def test_the_repository_limits_let_the_reference_market_maker_trade_at_the_exchanges_prices():
    import yaml
    exchange = {s["symbol"]: s["reference_price"] for s in yaml.safe_load(DEFAULT_CONFIG_YAML)["symbols"]}
    instruments = load_layout(ROOT / "shm_layout.yaml").instruments
    assert {i.symbol: i.reference_price for i in instruments} == exchange     # what `up --sim` lists (sim/)
    limits = load_limits(ROOT / "config" / "risk_limits.yaml", LAYOUT_SYMBOLS, instruments=instruments)
    quote, max_position = 100, 1000
    worst = max_position + 2 * quote                          # a full position, a quote and a replace in flight
    gross = 0
    by_sector: dict[str, int] = {}
    for sid, symbol in enumerate(LAYOUT_SYMBOLS):
        sl = limits.symbols[sid]
        price = exchange[symbol]
        assert sl.max_shares >= quote and sl.min_shares <= quote and (not sl.round_lot or quote % sl.round_lot == 0)
        assert sl.max_notional >= quote * price * 12 // 10, symbol          # room for a 20 % move
        assert sl.max_long >= worst and sl.max_short >= worst, symbol
        assert price % sl.tick == 0
        gross += worst * price
        by_sector[sl.sector] = by_sector.get(sl.sector, 0) + worst * price
    assert gross * 12 // 10 <= min(limits.max_gross_notional, limits.max_net_notional, limits.leverage_notional)
    for sector, notional in by_sector.items():
        assert notional * 12 // 10 <= limits.sectors[sector], sector
    assert limits.max_messages >= 500 and limits.max_open_orders >= 20


def test_units_become_price_units():
    limits = parse_limits(GOOD, LAYOUT_SYMBOLS, "limits.yaml")
    aapl = limits.symbols[0]
    assert aapl.tick == 100 and aapl.max_notional == 100_000 * PRICE_SCALE
    assert aapl.collar_ppm == 25_000 and aapl.collar_band(1_000_000) == 25_000
    assert limits.leverage_notional == 1_500_000 * PRICE_SCALE
    assert limits.symbols[1] is None                          # MSFT: no limits, no new orders
    assert limits.rate_window_ns == 1_000_000_000 and limits.throttle_kill_trips == 0


@pytest.mark.parametrize("old, new, line, key_path, reason", [
    ("  AAPL:\n", "  NOPE:\n", 15, "symbols.NOPE", "unknown symbol 'NOPE'"),
    ("max_long: 1000", "max_long: -5", 21, "symbols.AAPL.max_long", "must not be negative"),
    ("max_daily_loss: 10000", "max_daily_loss: -1", 7, "global.max_daily_loss", "must not be negative"),
    ("    max_short: 800\n", "", 15, "symbols.AAPL.max_short", "missing required key"),
    ("  max_open_orders: 50\n", "", 2, "global.max_open_orders", "missing required key"),
    ("max_shares: 500", "max_shares: lots", 17, "symbols.AAPL.max_shares", "expected an integer, got a string"),
    ("max_shares: 500", "max_shares: 2.5", 17, "symbols.AAPL.max_shares", "expected an integer, got a number"),
    ("max_leverage: 1.5", "max_leverage: yes", 6, "global.max_leverage", "expected a number, got a boolean"),
    ("sector: TECH", "sector: ENERGY", 16, "symbols.AAPL.sector", "not declared under sectors"),
    ("collar_pct: 2.5", "collar_pct: 2.5\n    collar_abs: 1", 20, "symbols.AAPL.collar_pct", "exactly one"),
    ("tick: 0.01", "tick: 0.00001", 19, "symbols.AAPL.tick", "more than 4 decimals"),
    ("tick: 0.01", "tick: 0", 19, "symbols.AAPL.tick", "greater than 0"),
    ("  max_identical_orders: 5\n", "  max_identical_orders: 5\n  surprise: 1\n", 12, "global.surprise",
     "unknown key"),
    ("version: 1", "version: 2", 1, "version", "must be 1"),
])
def test_mistakes_name_the_file_line_key_path_and_reason(old, new, line, key_path, reason):
    assert old in GOOD
    error = error_of(GOOD.replace(old, new))
    assert error.key_path == key_path
    assert reason in error.reason
    assert error.line == line
    assert str(error).startswith(f"limits.yaml:{line}: {key_path}: ")


def test_bad_yaml_duplicate_keys_and_empty_files():
    error = error_of(GOOD.replace("capital: 1000000", "capital: [1000000"))
    assert "not valid YAML" in error.reason and error.line is not None
    error = error_of(GOOD.replace("  max_open_orders: 50\n", "  max_open_orders: 50\n  max_open_orders: 60\n"))
    assert error.key_path == "global.max_open_orders" and error.reason == "duplicate key (first at line 10)" \
        and error.line == 11
    assert error_of("").reason == "empty file"
    assert "expected a mapping" in error_of("- 1\n- 2\n").reason


def test_market_hours_need_quoted_times_and_a_known_zone():
    base = GOOD.replace("  max_identical_orders: 5\n", "  max_identical_orders: 5\n  market_hours: {HOURS}\n")
    good = parse_limits(base.replace("{HOURS}", '{open: "09:30", close: "16:00", timezone: America/New_York}'),
                        LAYOUT_SYMBOLS, "limits.yaml")
    assert good.market_hours.open_s == 9 * 3600 + 1800 and good.market_hours.weekdays == frozenset(range(5))
    error = error_of(base.replace("{HOURS}", '{open: 9:30, close: "16:00", timezone: UTC}'))
    assert error.key_path == "global.market_hours.open" and "quoted" in error.reason
    error = error_of(base.replace("{HOURS}", '{open: "09:30", close: "16:00", timezone: Mars/Olympus}'))
    assert error.key_path == "global.market_hours.timezone"
    error = error_of(base.replace("{HOURS}", '{open: "16:00", close: "09:30", timezone: UTC}'))
    assert error.key_path == "global.market_hours.close"
    error = error_of(base.replace("{HOURS}", '{open: "09:30", close: "16:00", timezone: UTC, weekdays: [Funday]}'))
    assert error.key_path == "global.market_hours.weekdays[0]"


def test_missing_file():
    with pytest.raises(LimitsError) as caught:
        load_limits("/nonexistent/limits.yaml", LAYOUT_SYMBOLS)
    assert "cannot read" in str(caught.value)


def test_symbol_defaults_fill_in_and_a_symbol_overrides_them():
    text = GOOD.replace("symbols:\n", "symbol_defaults: {sector: TECH, tick: 0.05, max_long: 10}\nsymbols:\n"
                        "  MSFT: {max_shares: 1, max_notional: 1, collar_abs: 0.1, max_short: 1}\n")
    limits = parse_limits(text, LAYOUT_SYMBOLS, "limits.yaml")
    assert limits.symbols[1].tick == 500 and limits.symbols[1].max_long == 10
    assert limits.symbols[0].tick == 100 and limits.symbols[0].max_long == 1000


def test_describe_changes_lists_what_a_reload_changed():
    old = parse_limits(GOOD, LAYOUT_SYMBOLS, "limits.yaml")
    new = parse_limits(GOOD.replace("max_open_orders: 50", "max_open_orders: 40").replace("max_long: 1000",
                                                                                          "max_long: 900"),
                       LAYOUT_SYMBOLS, "limits.yaml")
    assert describe_changes(old, new) == ["global.max_open_orders 50 -> 40", "symbols.AAPL.max_long 1000 -> 900"]
    assert old.digest != new.digest
