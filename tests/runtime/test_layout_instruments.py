"""The layout's ``instruments``: its symbols come from the instruments file, a ``symbols`` list beside it
must say the same, and the hash covers what the order path uses of each instrument."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.runtime.layout import LayoutError, load_layout, parse_layout
from conftest import layout_document

ROOT = Path(__file__).resolve().parents[2]

INSTRUMENTS = """\
version: 1
instruments:
  - {symbol: AAPL, tick: 0.01, round_lot: 100}
  - {symbol: MSFT, tick: 0.01, round_lot: 100}
"""


def document(**extra) -> dict:
    doc = layout_document("tinstr", processes=[{"name": "a", "agent": "m:A", "idle": {"strategy": "sleep"}},
                                               {"name": "b", "agent": "m:B", "idle": {"strategy": "sleep"}}],
                          rings=[], symbols=["X"])
    del doc["symbols"]
    doc.update(extra)
    return doc


@pytest.fixture
def instruments_file(tmp_path):
    path = tmp_path / "config" / "instruments.yaml"
    path.parent.mkdir()
    path.write_text(INSTRUMENTS)
    return path


def test_the_symbols_come_from_the_instruments_file_named_beside_the_layout(write_layout, instruments_file):
    layout = load_layout(write_layout(document(instruments="config/instruments.yaml")))
    assert layout.symbols == ("AAPL", "MSFT")
    assert layout.instruments["MSFT"].symbol_id == 1 == layout.symbol_id("MSFT")
    assert layout.instruments.file == str(instruments_file)
    assert layout.table_of_kind("market_state").slots == 2


def test_a_symbols_list_beside_it_must_say_the_same_in_the_same_order(write_layout, instruments_file):
    same = load_layout(write_layout(document(instruments="config/instruments.yaml", symbols=["AAPL", "MSFT"])))
    derived = load_layout(write_layout(document(instruments="config/instruments.yaml")))
    assert same.symbols == derived.symbols and same.hash == derived.hash
    for symbols, reason in ((["AAPL"], "MSFT of the instruments file missing here"),
                            (["AAPL", "MSFT", "SPY"], "SPY not in the instruments file"),
                            (["MSFT", "AAPL"], "not in the instruments file's order")):
        with pytest.raises(LayoutError) as info:
            load_layout(write_layout(document(instruments="config/instruments.yaml", symbols=symbols)))
        assert info.value.key_path == "symbols" and reason in info.value.reason
        assert info.value.line is not None


def test_a_bad_or_missing_instruments_file_is_a_layout_error_that_names_both_files(write_layout, tmp_path):
    with pytest.raises(LayoutError) as info:
        load_layout(write_layout(document(instruments="nowhere.yaml")))
    assert info.value.key_path == "instruments" and "nowhere.yaml" in info.value.reason
    assert "cannot read" in info.value.reason
    (tmp_path / "bad.yaml").write_text("version: 1\ninstruments:\n  - {symbol: AAPL, tick: 0, round_lot: 100}\n")
    with pytest.raises(LayoutError) as info:
        load_layout(write_layout(document(instruments="bad.yaml")))
    assert f"{tmp_path / 'bad.yaml'}:3: instruments[0].tick: must be greater than 0" in str(info.value)
    with pytest.raises(LayoutError, match="instruments: expected a string, got an integer"):
        load_layout(write_layout(document(instruments=7)))


def test_the_hash_covers_tick_lot_and_band_but_not_the_reference_price(write_layout, instruments_file):
    path = write_layout(document(instruments="config/instruments.yaml"))
    before = load_layout(path)
    instruments_file.write_text(INSTRUMENTS.replace("round_lot: 100}", "round_lot: 100, reference_price: 190}", 1))
    assert load_layout(path).hash == before.hash          # only the simulated exchange's starting price
    instruments_file.write_text(INSTRUMENTS.replace("tick: 0.01", "tick: 0.05", 1))
    assert load_layout(path).hash != before.hash          # a process with another tick must refuse to attach
    instruments_file.write_text(INSTRUMENTS.replace("round_lot: 100}", "round_lot: 100, max_price: 1000}", 1))
    assert load_layout(path).hash != before.hash


def test_a_layout_without_instruments_keeps_its_symbols_and_its_hash(write_layout):
    layout = load_layout(write_layout(document(symbols=["AAPL", "MSFT"])))
    assert layout.instruments is None and layout.symbols == ("AAPL", "MSFT")
    assert b"instruments" not in layout.canonical


def test_a_layout_read_from_text_finds_a_relative_file_in_the_working_directory(monkeypatch, instruments_file):
    import yaml
    monkeypatch.chdir(instruments_file.parent.parent)
    layout = parse_layout(yaml.safe_dump(document(instruments="config/instruments.yaml")))
    assert layout.symbols == ("AAPL", "MSFT") and os.path.isabs(layout.instruments.file)


def test_the_repository_layout_takes_its_symbols_from_config_instruments():
    layout = load_layout(ROOT / "shm_layout.yaml")
    assert layout.instruments.file == str(ROOT / "config" / "instruments.yaml")
    assert layout.symbols == ("AAPL", "MSFT", "SPY", "QQQ", "TSLA")
