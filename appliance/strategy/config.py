"""The strategy process's settings: the ``params`` of its entry in ``shm_layout.yaml``.

    params:
      strategy: appliance.strategy.market_maker:MarketMaker   # or path/to/file.py:ClassName
      parameters_file: config/strategy.yaml                   # or parameters: {...} inline
      strategy_id: 1                                          # 1..2^32-1, on every intent (audit trail)
      timer_interval_ms: 100                                  # on_timer period (default 100)
      symbols: [AAPL, SPY]                                    # optional subset of the layout's symbols
      max_pending_intents: 1024                               # optional: the back-pressure queue bound

Parsed and checked once, before the agent starts; every problem names the key path and reason.
Relative paths (a strategy file, a parameters file) are resolved against the layout file's
directory first, then the working directory.
"""
from __future__ import annotations

from dataclasses import dataclass


class StrategyConfigError(ValueError):
    """A setting that cannot be used: key path, reason, and the file (and line) when it is not the layout."""

    def __init__(self, key_path: str, reason: str, file: str | None = None, line: int | None = None):
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(f"{where}{key_path or '<top>'}: {reason}")
        self.key_path = key_path
        self.reason = reason
        self.file = file
        self.line = line


@dataclass(frozen=True)
class StrategyConfig:
    strategy: str
    strategy_id: int
    parameters: dict | None = None
    parameters_file: str | None = None
    timer_interval_ms: int = 100
    symbols: tuple[str, ...] | None = None
    max_pending_intents: int = 1024


_REQUIRED = {"strategy": str, "strategy_id": int}
_OPTIONAL = {"parameters": dict, "parameters_file": str, "timer_interval_ms": int, "symbols": list,
             "max_pending_intents": int}
_RANGES = {"strategy_id": (1, 2**32 - 1), "timer_interval_ms": (1, 3_600_000), "max_pending_intents": (1, 1 << 20)}


def type_name(value) -> str:
    for kind, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"),
                        (int, "an integer"), (float, "a number"), (type(None), "null")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


def _expect(value, expected: type, path: str):
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise StrategyConfigError(path, f"expected {type_name(expected())}, got {type_name(value)}")
    return value


def parse_strategy_params(params, path: str = "processes.strategy.params",
                          layout_symbols: tuple[str, ...] = ()) -> StrategyConfig:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise StrategyConfigError(path, f"expected a mapping, got {type_name(params)}")
    for key in params:
        if key not in _REQUIRED and key not in _OPTIONAL:
            raise StrategyConfigError(f"{path}.{key}",
                                      f"unknown key (allowed: {', '.join(sorted([*_REQUIRED, *_OPTIONAL]))})")
    for key, expected in _REQUIRED.items():
        if key not in params:
            hint = (" (e.g. appliance.strategy.market_maker:MarketMaker or path/to/file.py:ClassName)"
                    if key == "strategy" else " (an integer 1..4294967295 that tags every intent)")
            raise StrategyConfigError(f"{path}.{key}", f"missing required key{hint}")
    values: dict = {}
    for key, expected in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in params:
            continue
        value = _expect(params[key], expected, f"{path}.{key}")
        if key in _RANGES:
            low, high = _RANGES[key]
            if not low <= value <= high:
                raise StrategyConfigError(f"{path}.{key}", f"must be {low}..{high}, got {value}")
        values[key] = value
    if not values["strategy"].strip() or ":" not in values["strategy"]:
        raise StrategyConfigError(f"{path}.strategy", f"{values['strategy']!r} is not 'module.path:ClassName' "
                                                      f"or 'path/to/file.py:ClassName'")
    if "parameters" in values and "parameters_file" in values:
        raise StrategyConfigError(f"{path}.parameters_file", "give either parameters (inline) or parameters_file, "
                                                             "not both")
    if "parameters_file" in values and not values["parameters_file"].strip():
        raise StrategyConfigError(f"{path}.parameters_file", "must be a file path")
    if "symbols" in values:
        symbols = values["symbols"]
        if not symbols:
            raise StrategyConfigError(f"{path}.symbols", "must name at least one symbol (leave it out for all)")
        seen: list[str] = []
        for i, symbol in enumerate(symbols):
            item = f"{path}.symbols[{i}]"
            _expect(symbol, str, item)
            if layout_symbols and symbol not in layout_symbols:
                raise StrategyConfigError(item, f"{symbol!r} is not a layout symbol ({', '.join(layout_symbols)})")
            if symbol in seen:
                raise StrategyConfigError(item, f"{symbol!r} is listed twice")
            seen.append(symbol)
        # Layout order, so symbol ids and iteration agree everywhere.
        values["symbols"] = tuple(s for s in layout_symbols if s in seen) if layout_symbols else tuple(seen)
    return StrategyConfig(**values)
