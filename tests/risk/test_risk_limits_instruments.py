"""Risk limits take tick and round lot from the instruments file; a limits file that repeats them must agree,
one that contradicts them is refused naming both files."""
from __future__ import annotations

import textwrap

import pytest

from appliance.config.instruments import parse_instruments
from appliance.risk.limits import LimitsError, parse_limits

INSTRUMENTS = parse_instruments(textwrap.dedent("""\
    version: 1
    instruments:
      - {symbol: AAPL, tick: 0.01, round_lot: 100}
      - {symbol: BRK, tick: 0.05, round_lot: 10}
    """), "instruments.yaml")
SYMBOLS = INSTRUMENTS.symbols

LIMITS = textwrap.dedent("""\
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
    symbol_defaults: {sector: TECH, max_shares: 500, max_notional: 100000, collar_pct: 2, max_long: 900, max_short: 900}
    symbols:
      AAPL: {}
      BRK: {EXTRA}
    """)


def limits(extra: str = "", defaults: str = ""):
    text = LIMITS.replace("{EXTRA}", "{" + extra + "}").replace("max_short: 900}", "max_short: 900" + defaults + "}")
    return parse_limits(text, SYMBOLS, "limits.yaml", instruments=INSTRUMENTS)


def error_of(extra: str = "", defaults: str = "") -> LimitsError:
    with pytest.raises(LimitsError) as info:
        limits(extra, defaults)
    return info.value


def test_tick_and_round_lot_come_from_the_instruments_and_odd_lots_pass_unless_asked():
    aapl, brk = limits().symbols
    assert (aapl.tick, brk.tick) == (100, 500)
    assert (aapl.round_lot, brk.round_lot) == (0, 0)                 # no whole-lot check unless asked
    _, brk = limits("whole_lots: true").symbols
    assert brk.round_lot == 10                                        # the instrument's round lot, checked
    aapl, brk = limits(defaults=", whole_lots: true").symbols
    assert (aapl.round_lot, brk.round_lot) == (100, 10)


def test_an_old_file_that_repeats_them_loads_when_it_agrees():
    _, brk = limits("tick: 0.05, round_lot: 10").symbols
    assert (brk.tick, brk.round_lot) == (500, 10)


def test_a_tick_that_contradicts_the_instruments_is_refused_naming_both_files():
    error = error_of("tick: 0.01")
    assert error.key_path == "symbols.BRK.tick" and error.line == 17
    assert "0.01 contradicts the instruments file (instruments.yaml:4: tick 0.05)" in error.reason
    error = error_of(defaults=", tick: 0.01")                        # from symbol_defaults: AAPL agrees, BRK not
    assert error.key_path == "symbols.BRK.tick" and error.line == 14


def test_a_round_lot_that_contradicts_the_instruments_is_refused():
    error = error_of("round_lot: 100")
    assert error.key_path == "symbols.BRK.round_lot"
    assert "100 contradicts the instruments file (instruments.yaml:4: round_lot 10)" in error.reason


def test_without_an_instruments_file_the_tick_is_required_here_and_whole_lots_needs_a_round_lot():
    text = LIMITS.replace("{EXTRA}", "{}")
    with pytest.raises(LimitsError) as info:
        parse_limits(text, SYMBOLS, "limits.yaml")
    assert info.value.key_path == "symbols.AAPL.tick" and "missing required key" in info.value.reason
    assert "instruments file" in info.value.reason
    with pytest.raises(LimitsError, match="symbols.BRK.whole_lots: needs the instrument's round lot"):
        parse_limits(LIMITS.replace("{EXTRA}", "{whole_lots: true}").replace("collar_pct: 2,", "collar_pct: 2, "
                                                                             "tick: 0.01,"), SYMBOLS, "limits.yaml")
    old = parse_limits(LIMITS.replace("{EXTRA}", "{round_lot: 10, tick: 0.05}").replace(
        "collar_pct: 2,", "collar_pct: 2, tick: 0.01,"), SYMBOLS, "limits.yaml")
    assert (old.symbols[1].tick, old.symbols[1].round_lot) == (500, 10)


def test_a_bad_whole_lots_value_is_a_clear_error():
    error = error_of("whole_lots: 1")
    assert error.key_path == "symbols.BRK.whole_lots" and "expected true or false, got an integer" in error.reason
