"""The simulated exchange lists its symbols from the appliance's instruments file (``instruments:``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appliance.exchange.config import DEFAULT_CONFIG_YAML, ConfigError, default_config, load_config, parse_config
from appliance.exchange.config_model import SymbolConfig

ROOT = Path(__file__).resolve().parents[2]
FIRMS = "firms:\n  - {username: ALGO1, password: secret1}\n"


def write(tmp_path, instruments: str, config: str) -> Path:
    (tmp_path / "instruments.yaml").write_text("version: 1\ninstruments:\n" + instruments)
    path = tmp_path / "exchange.yaml"
    path.write_text("version: 1\n" + config + FIRMS)
    return path


def test_the_symbols_come_from_the_instruments_file_beside_the_config(tmp_path):
    path = write(tmp_path, "  - {symbol: AAPL, tick: 0.01, round_lot: 100, reference_price: 190}\n"
                           "  - {symbol: BRK.B, tick: 0.01, round_lot: 10, reference_price: 410.5}\n",
                 "instruments: instruments.yaml\n")
    config = load_config(path)
    assert config.symbols == (SymbolConfig("AAPL", 1_900_000, 100), SymbolConfig("BRK.B", 4_105_000, 10))
    assert parse_config(config.to_yaml()) == config             # the document form lists them


def test_the_repository_instruments_list_what_the_embedded_default_lists():
    document = yaml.safe_load(DEFAULT_CONFIG_YAML)
    del document["symbols"]
    document["instruments"] = str(ROOT / "config" / "instruments.yaml")
    assert parse_config(yaml.safe_dump(document)).symbols == default_config().symbols


@pytest.mark.parametrize("instruments,config,key_path,fragment", [
    ("  - {symbol: AAPL, tick: 0.01, round_lot: 100, reference_price: 190}\n",
     "instruments: instruments.yaml\nsymbols: [{symbol: AAPL, reference_price: 1}]\n", "instruments",
     "give either symbols or instruments"),
    ("  - {symbol: AAPL, tick: 0.01, round_lot: 100, reference_price: 190}\n", "", "symbols",
     "missing required key (or instruments: the instruments file"),
    ("  - {symbol: AAPL, tick: 0.01, round_lot: 100}\n", "instruments: instruments.yaml\n", "instruments",
     "instruments.yaml:3: AAPL has no reference_price"),
    ("  - {symbol: AA_PL, tick: 0.01, round_lot: 100, reference_price: 1}\n", "instruments: instruments.yaml\n",
     "instruments", "'AA_PL' cannot be listed here"),
    ("  - {symbol: AAPL, tick: 0, round_lot: 100}\n", "instruments: instruments.yaml\n", "instruments",
     "instruments[0].tick: must be greater than 0"),
    ("  - {symbol: AAPL, tick: 0.01, round_lot: 100, reference_price: 190}\n", "instruments: nowhere.yaml\n",
     "instruments", "nowhere.yaml: "),
    ("  - {symbol: AAPL, tick: 0.05, round_lot: 100, reference_price: 190}\n",
     "instruments: instruments.yaml\nbackground: {tick: 100}\n", "background.tick",
     "100 is not a multiple of AAPL's tick 500"),
])
def test_a_bad_listing_names_the_key_and_the_reason(tmp_path, instruments, config, key_path, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, instruments, config))
    assert info.value.key_path == key_path and fragment in info.value.reason, str(info.value)
    assert info.value.file == str(tmp_path / "exchange.yaml")
