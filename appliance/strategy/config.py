"""The strategy process's settings: the ``params`` of its entry in ``shm_layout.yaml``.

    params:
      strategy: appliance.strategy.market_maker:MarketMaker   # or path/to/file.py:ClassName
      parameters_file: config/strategy.yaml                   # or parameters: {...} inline
      strategy_id: 1                                          # 1..2^32-1, on every intent (audit trail)
      timer_interval_ms: 100                                  # on_timer period (default 100)
      symbols: [AAPL, SPY]                                    # optional subset of the layout's symbols
      max_pending_intents: 1024                               # optional: the back-pressure queue bound
      fees_file: config/fees.yaml                             # optional: the fee schedule (none: no fees)

Parsed and checked once, before the agent starts; every problem names the key path and reason.
Relative paths (a strategy file, a parameters file) are resolved against the layout file's
directory first, then the working directory.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.config.checker import Checker


class StrategyConfigError(ValueError):
    """A setting that cannot be used: key path, reason, and the file (and line) when it is not the layout
    (either shape of ``appliance.config.errors``, so it is neither subclass)."""

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
    fees_file: str | None = None


_KEYS = {"strategy": str, "strategy_id": int, "parameters": dict, "parameters_file": str, "timer_interval_ms": int,
         "symbols": list, "max_pending_intents": int, "fees_file": str}
_HINTS = {"strategy": "e.g. appliance.strategy.market_maker:MarketMaker or path/to/file.py:ClassName",
          "strategy_id": "an integer 1..4294967295 that tags every intent"}


def parse_strategy_params(params, path: str = "processes.strategy.params",
                          layout_symbols: tuple[str, ...] = ()) -> StrategyConfig:
    s = Checker.for_params(StrategyConfigError).section(params, path, None, _KEYS, required=("strategy", "strategy_id"),
                                                        optional=True, hints=_HINTS)
    values: dict = {"strategy": s.string("strategy", empty=True), "strategy_id": s.integer("strategy_id", 1, 2**32 - 1),
                    "timer_interval_ms": s.integer("timer_interval_ms", 1, 3_600_000, 100),
                    "max_pending_intents": s.integer("max_pending_intents", 1, 1 << 20, 1024)}
    if not values["strategy"].strip() or ":" not in values["strategy"]:
        s.fail("strategy", f"{values['strategy']!r} is not 'module.path:ClassName' or 'path/to/file.py:ClassName'")
    if "parameters" in s and "parameters_file" in s:
        s.fail("parameters_file", "give either parameters (inline) or parameters_file, not both")
    if "parameters" in s:
        values["parameters"] = s.get("parameters")
    if "parameters_file" in s:
        values["parameters_file"] = s.string("parameters_file", empty=True)
        if not values["parameters_file"].strip():
            s.fail("parameters_file", "must be a file path")
    if "fees_file" in s:
        values["fees_file"] = s.string("fees_file", empty=True)
        if not values["fees_file"].strip():
            s.fail("fees_file", "must be a file path")
    if "symbols" in s:
        if not s.listing("symbols"):
            s.fail("symbols", "must name at least one symbol (leave it out for all)")
        seen: list[str] = []
        for _, symbol, item, _line in s.items("symbols"):
            s.checker.string(symbol, item, empty=True)
            if layout_symbols and symbol not in layout_symbols:
                s.checker.fail(item, f"{symbol!r} is not a layout symbol ({', '.join(layout_symbols)})")
            if symbol in seen:
                s.checker.fail(item, f"{symbol!r} is listed twice")
            seen.append(symbol)
        # Layout order, so symbol ids and iteration agree everywhere.
        values["symbols"] = tuple(sym for sym in layout_symbols if sym in seen) if layout_symbols else tuple(seen)
    return StrategyConfig(**values)
