"""The instruments file (appliance/config/instruments.py): strict loading, errors that say where, and the
helpers a strategy reaches for."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config.instruments import (
    MAX_PRICE, Instrument, InstrumentsError, load_instruments, parse_instruments,
)
from appliance.messages.codes import Side

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
version: 1
instruments:
  - {symbol: AAPL, tick: 0.01, round_lot: 100, reference_price: 190.00}
  - {symbol: BRK.A, tick: 1, round_lot: 1, min_price: 1, max_price: 150000, reference_price: 100000}
"""


def error_of(text: str) -> InstrumentsError:
    with pytest.raises(InstrumentsError) as info:
        parse_instruments(text, "i.yaml")
    return info.value


def test_a_good_file_in_price_units_with_symbol_ids_in_file_order():
    instruments = parse_instruments(GOOD, "i.yaml")
    assert instruments.symbols == ("AAPL", "BRK.A") and len(instruments) == 2
    aapl, brk = instruments["AAPL"], instruments.by_id(1)
    assert aapl == Instrument("AAPL", 0, tick=100, round_lot=100, min_price=100, max_price=MAX_PRICE,
                              reference_price=1_900_000, line=3)
    assert (brk.symbol, brk.symbol_id, brk.tick, brk.round_lot, brk.min_price, brk.max_price) == \
        ("BRK.A", 1, 10_000, 1, 10_000, 1_500_000_000)
    assert instruments.where(aapl) == "i.yaml:3"


def test_the_default_band_is_one_tick_to_the_venues_largest_price_on_the_tick():
    instruments = parse_instruments("version: 1\ninstruments:\n  - {symbol: X, tick: 0.03, round_lot: 10}\n")
    x = instruments["X"]
    assert x.min_price == 300 and x.max_price == MAX_PRICE // 300 * 300 and x.reference_price == 0


def test_the_repository_file_loads():
    instruments = load_instruments(ROOT / "config" / "instruments.yaml")
    assert instruments.symbols == ("AAPL", "MSFT", "SPY", "QQQ", "TSLA")
    assert all(i.tick == 100 and i.round_lot == 100 for i in instruments)


def test_the_venues_largest_price_is_the_simulated_exchanges():
    from appliance.exchange.matching import MAX_PRICE as EXCHANGE_MAX_PRICE
    assert MAX_PRICE == EXCHANGE_MAX_PRICE


@pytest.mark.parametrize("item,key_path,reason", [
    ("{symbol: AAPL, tick: 0.01}", "instruments[0].round_lot", "missing required key"),
    ("{symbol: AAPL, tick: 0.01, round_lot: 100, lot: 100}", "instruments[0].lot", "unknown key (allowed: "),
    ("{symbol: AAPL, tick: '0.01', round_lot: 100}", "instruments[0].tick", "expected a number, got a string"),
    ("{symbol: AAPL, tick: true, round_lot: 100}", "instruments[0].tick", "expected a number, got a boolean"),
    ("{symbol: AAPL, tick: 0.01, round_lot: 1.5}", "instruments[0].round_lot", "expected an integer, got a number"),
    ("{symbol: 7, tick: 0.01, round_lot: 100}", "instruments[0].symbol", "expected a string, got an integer"),
    ("{symbol: aapl, tick: 0.01, round_lot: 100}", "instruments[0].symbol", "'aapl' must be 1..8 upper-case"),
    ("{symbol: TOOLONGSYM, tick: 0.01, round_lot: 100}", "instruments[0].symbol", "must be 1..8"),
    ("{symbol: AAPL, tick: 0, round_lot: 100}", "instruments[0].tick", "must be greater than 0, got 0"),
    ("{symbol: AAPL, tick: -0.01, round_lot: 100}", "instruments[0].tick", "must be greater than 0"),
    ("{symbol: AAPL, tick: .nan, round_lot: 100}", "instruments[0].tick", "nan is not a finite number"),
    ("{symbol: AAPL, tick: 0.00001, round_lot: 100}", "instruments[0].tick", "has more than 4 decimals"),
    ("{symbol: AAPL, tick: 0.01, round_lot: 0}", "instruments[0].round_lot", "must be 1..4294967295, got 0"),
    ("{symbol: AAPL, tick: 0.01, round_lot: 100, min_price: 5, max_price: 4}", "instruments[0].max_price",
     "4.0000 is below min_price 5.0000"),
    ("{symbol: AAPL, tick: 0.05, round_lot: 100, min_price: 1.01}", "instruments[0].min_price",
     "1.0100 is not on the tick (0.0500)"),
    ("{symbol: AAPL, tick: 0.01, round_lot: 100, max_price: 300000}", "instruments[0].max_price",
     "above the venue's largest price 200000.0000"),
    ("{symbol: AAPL, tick: 0.01, round_lot: 100, reference_price: 190.00005}", "instruments[0].reference_price",
     "has more than 4 decimals"),
    ("{symbol: AAPL, tick: 0.05, round_lot: 100, reference_price: 190.01}", "instruments[0].reference_price",
     "190.0100 is not on the tick"),
    ("{symbol: AAPL, tick: 0.01, round_lot: 100, max_price: 100, reference_price: 190}",
     "instruments[0].reference_price", "190.0000 is outside the price band 0.0100..100.0000"),
    ("[AAPL, 0.01]", "instruments[0]", "expected a mapping, got a list"),
])
def test_a_bad_instrument_names_file_line_key_path_and_reason(item, key_path, reason):
    error = error_of(f"version: 1\ninstruments:\n  - {item}\n")
    assert error.key_path == key_path and reason in error.reason and error.line == 3
    assert str(error).startswith(f"i.yaml:3: {key_path}: ")


@pytest.mark.parametrize("text,key_path,reason,line", [
    ("", "", "empty file", None),
    ("[1, 2]\n", "", "expected a mapping, got a list", 1),
    ("version: 1\n", "instruments", "missing required key", 1),
    ("version: 2\ninstruments: [{symbol: A, tick: 1, round_lot: 1}]\n", "version", "must be 1, got 2", 1),
    ("version: 1\ninstruments: []\n", "instruments", "must list at least one instrument", 2),
    ("version: 1\ninstruments: {AAPL: {}}\n", "instruments", "expected a list, got a mapping", 2),
    ("version: 1\nsymbols: [AAPL]\ninstruments: []\n", "symbols", "unknown key (allowed: instruments, version)", 2),
    ("version: 1\nversion: 1\n", "version", "duplicate key (first at line 1)", 2),
    ("version: 1\ninstruments:\n  - {symbol: AAPL, tick: 0.01, round_lot: 100}\n"
     "  - {symbol: AAPL, tick: 0.02, round_lot: 100}\n", "instruments[1].symbol",
     "'AAPL' is defined twice (first at instruments[0])", 4),
    ("version: 1\ninstruments: [{symbol: A, tick: 1, round_lot: 1, tick: 2}]\n", "instruments[0].tick",
     "duplicate key", 2),
    ("version: 1\ninstruments: [\n", "", "not valid YAML", 3),
])
def test_a_bad_document_is_refused_with_where_and_why(text, key_path, reason, line):
    error = error_of(text)
    assert (error.key_path, error.line) == (key_path, line) and reason in error.reason


def test_a_missing_file_is_an_instruments_error(tmp_path):
    with pytest.raises(InstrumentsError, match="cannot read"):
        load_instruments(tmp_path / "nope.yaml")


def test_an_unknown_symbol_is_a_key_error_that_names_the_file_and_the_known_ones():
    instruments = parse_instruments(GOOD, "i.yaml")
    with pytest.raises(KeyError, match=r"no instrument 'MSFT' in i.yaml \(defined: AAPL, BRK.A\)"):
        instruments["MSFT"]
    assert instruments.get("MSFT") is None and "AAPL" in instruments and "MSFT" not in instruments


def test_an_instrument_is_immutable():
    aapl = parse_instruments(GOOD)["AAPL"]
    with pytest.raises(AttributeError):
        aapl.tick = 1


def test_round_price_is_passive_and_stays_in_the_band():
    aapl = parse_instruments("version: 1\ninstruments:\n"
                             "  - {symbol: AAPL, tick: 0.05, round_lot: 100, min_price: 1, max_price: 500}\n")["AAPL"]
    assert aapl.round_price(1_900_120, Side.BUY) == 1_900_000          # a buy rounds down
    assert aapl.round_price(1_900_120, Side.SELL) == 1_900_500         # a sell up
    assert aapl.round_price(1_900_120, Side.SELL_SHORT) == 1_900_500
    assert aapl.round_price(1_900_500, "B") == aapl.round_price(1_900_500, "S") == 1_900_500   # on the tick: kept
    assert aapl.round_price(10, Side.SELL) == 10_000                   # clamped into the band
    assert aapl.round_price(9_000_000, Side.BUY) == 5_000_000
    with pytest.raises(ValueError, match="side must be BUY, SELL or SELL_SHORT"):
        aapl.round_price(1_900_000, "X")
    with pytest.raises(TypeError, match="price must be an integer with 4 implied decimals"):
        aapl.round_price(190.01, Side.BUY)              # dollars by mistake: said, not rounded to 0
    with pytest.raises(TypeError, match="got float"):
        aapl.is_valid_price(1_900_000.0)


def test_is_valid_price_ticks_and_lots():
    aapl = parse_instruments(GOOD)["AAPL"]
    assert aapl.is_valid_price(1_900_100) and not aapl.is_valid_price(1_900_150)
    assert not aapl.is_valid_price(0) and not aapl.is_valid_price(MAX_PRICE + 100)
    assert aapl.ticks(2) == 200 and aapl.ticks(0.5) == 50
    assert aapl.round_shares(250) == 200 and aapl.round_shares(99) == 0
    assert aapl.is_round_lot(300) and not aapl.is_round_lot(150) and not aapl.is_round_lot(0)
