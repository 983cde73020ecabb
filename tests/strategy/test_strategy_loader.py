"""Loading strategies: a user's file outside the package, the reference config, and clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.messages.codes import Action, Side
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import Strategy
from appliance.strategy import price_from_decimal as P
from appliance.strategy.config import StrategyConfig, StrategyConfigError, parse_strategy_params
from appliance.strategy.loader import load_strategy, load_strategy_class
from appliance.strategy.market_maker import MarketMaker, MarketMakerParameters
from strategy_harness import Harness, instruments, strategy_layout

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/strategies/join_the_touch.py:JoinTheTouch"
LAYOUT = str(ROOT / "shm_layout.yaml")
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ", "TSLA")


def load(strategy=EXAMPLE, layout_path=LAYOUT, **kw):
    kw.setdefault("parameters", {"lot": 100})
    return load_strategy(StrategyConfig(strategy=strategy, strategy_id=1, **kw), layout_path=layout_path,
                         layout_symbols=SYMBOLS)


def test_a_user_strategy_loads_from_a_file_outside_the_package_and_trades(write_layout, unique_name, tmp_path):
    loaded = load(parameters={"lot": 200, "max_position": 400})
    cls = loaded.strategy_class
    assert cls.__name__ == "JoinTheTouch" and issubclass(cls, Strategy)
    assert not cls.__module__.startswith("appliance.")                 # lives outside the package
    assert (loaded.parameters.lot, loaded.parameters.max_position, loaded.parameters.min_spread_ticks) == \
        (200, 400, 2)
    # the same file by absolute path, from a layout somewhere else
    again = load(strategy=f"{ROOT}/{EXAMPLE}", layout_path=str(tmp_path / "layout.yaml"))
    assert again.strategy_class.__name__ == "JoinTheTouch"
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as memory:
        h = Harness(memory, cls, loaded.parameters, traded=("AAPL",), instruments=instruments())
        h.intents()
        h.book("AAPL", [(P("190.00"), 500)], [(P("190.03"), 500)])
        intents = h.intents()
        assert [(i["action"], i["side"], i["shares"], i["price"]) for i in intents] == \
            [(Action.NEW, Side.BUY, 200, P("190.00")), (Action.NEW, Side.SELL, 200, P("190.03"))]
        h.book("AAPL", [(P("190.00"), 500)], [(P("190.01"), 500)])      # too tight: pull
        assert [i["action"] for i in h.intents()] == [Action.CANCEL, Action.CANCEL]
        assert h.host.stats.errors == 0


def test_the_reference_parameters_file_loads_for_the_layout_symbols():
    layout = load_layout(LAYOUT)
    loaded = load_strategy(StrategyConfig(strategy="appliance.strategy.market_maker:MarketMaker", strategy_id=1,
                                          parameters_file="config/strategy.yaml"),
                           layout_path=LAYOUT, layout_symbols=layout.symbols, instruments=layout.instruments)
    assert loaded.strategy_class is MarketMaker and isinstance(loaded.parameters, MarketMakerParameters)
    assert set(loaded.parameters.symbols) == set(layout.symbols)
    assert loaded.parameters.tick is None and loaded.parameters.lot is None    # from the instruments
    for symbol in layout.symbols:
        p = loaded.parameters.for_symbol(symbol, layout.instruments[symbol])
        assert p.tick == 100 and p.lot == 100 and p.size <= 100 and p.max_position <= 1000
    assert loaded.parameters_source == str(ROOT / "config" / "strategy.yaml")


@pytest.mark.parametrize("strategy, message", [
    ("no.such.module:Thing", "cannot import 'no.such.module'"),
    ("appliance.strategy.market_maker:Nope", "has no 'Nope' (Strategy subclasses there: MarketMaker)"),
    ("collections:OrderedDict", "OrderedDict in collections is not a subclass of appliance.strategy.Strategy"),
    ("appliance.strategy.api:Strategy", "names the Strategy base class itself"),
    ("examples/strategies/missing.py:X", "no such file: examples/strategies/missing.py"),
    ("examples/strategies/join_the_touch.py:Nope", "has no 'Nope' (Strategy subclasses there: JoinTheTouch)"),
    ("MarketMaker", "is not 'module.path:ClassName'"),
])
def test_a_strategy_that_cannot_be_loaded_says_why(strategy, message):
    with pytest.raises(StrategyConfigError) as info:
        load_strategy_class(strategy, key_path="processes.strategy.params.strategy", base_dirs=[str(ROOT)])
    assert info.value.key_path == "processes.strategy.params.strategy"
    assert message in info.value.reason


def test_user_files_that_do_not_import_say_where(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from appliance.strategy import Strategy\nclass S(Strategy)\n    pass\n")
    with pytest.raises(StrategyConfigError, match=rf"{broken}:2: syntax error"):
        load_strategy_class(f"{broken}:S")
    raising = tmp_path / "raising.py"
    raising.write_text("x = 1\nraise ValueError('bad module')\n")
    with pytest.raises(StrategyConfigError, match=rf"raised ValueError: bad module at {raising}:2"):
        load_strategy_class(f"{raising}:S")


@pytest.mark.parametrize("parameters, key_path, reason", [
    ({}, "p.lot", "missing required key"),
    ({"lot": "x"}, "p.lot", "expected an integer, got a string"),
    ({"lot": True}, "p.lot", "expected an integer, got a boolean"),
    ({"lot": 100, "colour": 1}, "p.colour", "unknown key (allowed: lot, max_position, min_spread_ticks)"),
    ({"lot": 100, "tick": 100}, "p.tick", "unknown key (allowed: lot, max_position, min_spread_ticks)"),
    ({"lot": 100, "max_position": 50}, "p", "max_position 50 is below one lot (100)"),
])
def test_bad_parameters_name_the_key_and_the_reason(parameters, key_path, reason):
    with pytest.raises(StrategyConfigError) as info:
        load_strategy(StrategyConfig(strategy=EXAMPLE, strategy_id=1, parameters=parameters), key_path="x",
                      layout_path=LAYOUT)
    assert info.value.key_path == key_path.replace("p", "x.parameters", 1)
    assert info.value.reason == reason


def test_a_parameters_file_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "mm.yaml"
    path.write_text("size: 100\nsymbols:\n  AAPL:\n    spread_ticks: two\n")
    with pytest.raises(StrategyConfigError) as info:
        load(strategy="appliance.strategy.market_maker:MarketMaker", parameters=None, parameters_file=str(path))
    assert (info.value.file, info.value.line, info.value.key_path) == (str(path), 4, "symbols.AAPL.spread_ticks")
    assert str(info.value) == f"{path}:4: symbols.AAPL.spread_ticks: expected an integer, got a string"
    path.write_text("size: 100\nsize: 200\n")
    with pytest.raises(StrategyConfigError, match=r"mm.yaml:2: size: duplicate key"):
        load(strategy="appliance.strategy.market_maker:MarketMaker", parameters=None, parameters_file=str(path))
    path.write_text("symbols: {XYZ: {}}\n")
    with pytest.raises(StrategyConfigError, match=r"mm.yaml: <top>: symbols.XYZ: not a layout symbol"):
        load(strategy="appliance.strategy.market_maker:MarketMaker", parameters=None, parameters_file=str(path))
    with pytest.raises(StrategyConfigError, match=r"parameters_file: no such file: nowhere.yaml"):
        load(strategy="appliance.strategy.market_maker:MarketMaker", parameters=None, parameters_file="nowhere.yaml")


@pytest.mark.parametrize("params, key_path, reason", [
    ({"strategy_id": 1}, "p.strategy", "missing required key"),
    ({"strategy": "a:B"}, "p.strategy_id", "missing required key"),
    ({"strategy": "a:B", "strategy_id": 0}, "p.strategy_id", "must be 1..4294967295, got 0"),
    ({"strategy": "a:B", "strategy_id": 2**32}, "p.strategy_id", "must be 1..4294967295"),
    ({"strategy": "a:B", "strategy_id": "1"}, "p.strategy_id", "expected an integer, got a string"),
    ({"strategy": "a:B", "strategy_id": 1, "parameters": {}, "parameters_file": "f"}, "p.parameters_file",
     "give either parameters (inline) or parameters_file, not both"),
    ({"strategy": "a:B", "strategy_id": 1, "symbols": ["AAPL", "NOPE"]}, "p.symbols[1]", "'NOPE' is not a layout"),
    ({"strategy": "a:B", "strategy_id": 1, "symbols": []}, "p.symbols", "must name at least one symbol"),
    ({"strategy": "a:B", "strategy_id": 1, "timer_interval_ms": True}, "p.timer_interval_ms", "got a boolean"),
    ({"strategy": "a:B", "strategy_id": 1, "colour": "red"}, "p.colour", "unknown key"),
    ("text", "p", "expected a mapping, got a string"),
])
def test_bad_process_params_name_the_key_and_the_reason(params, key_path, reason):
    with pytest.raises(StrategyConfigError) as info:
        parse_strategy_params(params, "p", SYMBOLS)
    assert info.value.key_path == key_path and reason in info.value.reason


def test_process_params_defaults_and_symbol_order():
    config = parse_strategy_params({"strategy": "a:B", "strategy_id": 9, "symbols": ["TSLA", "AAPL"]}, "p", SYMBOLS)
    assert (config.timer_interval_ms, config.symbols, config.max_pending_intents) == (100, ("AAPL", "TSLA"), 1024)
