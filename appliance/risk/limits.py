"""The risk limits file: global limits, sectors and per-symbol limits, validated before anything trades.

A wrong limit must stop risk from starting (or keep the old limits on a reload) and say where
the mistake is: every problem is a ``LimitsError`` naming the file, the line, the key path
(``symbols.AAPL.max_long``) and the reason. Duplicate keys are refused. Symbols must be symbols
of the layout; a layout symbol without limits gets no new orders (UNKNOWN_SYMBOL).

Units, as a person writes them: shares are integers; money (notional, capital, loss, ticks,
absolute collars) is in dollars, integer or decimal; percentages are numbers (5 = 5 %). Inside,
money becomes price units (4 implied decimals) so every check is integer arithmetic::

    version: 1
    global:
      capital: 10000000               # dollars; leverage = gross notional / capital
      max_gross_notional: 5000000     # sum over symbols of |worst-case position| x reference price
      max_net_notional: 5000000       # |sum of signed worst-case positions x reference price|
      max_leverage: 1.0
      max_daily_loss: 50000           # realized + unrealized below -this: kill switch
      max_drawdown: 75000             # from the day's peak P&L: kill switch
      max_messages_per_second: 2000   # new + replace + cancel, sliding window of rate_window_ms
      rate_window_ms: 1000            # optional, default 1000
      max_open_orders: 200
      max_identical_orders: 50        # identical NEW orders inside duplicate_window_ms
      duplicate_window_ms: 1000       # optional, default 1000
      throttle_kill: {trips: 100, window_ms: 10000}   # optional: MESSAGE_RATE denials that latch the kill switch
      allow_market_orders: false      # optional, default false (a market order has no price to collar)
      prevent_self_match: true        # optional, default false: refuse an order that would trade with one of
                                      # our own open orders (SELF_MATCH; a wash trade)
      market_hours: null             # optional: {open: "09:30", close: "16:00", timezone: America/New_York,
                                      #            weekdays: [Mon, Tue, Wed, Thu, Fri]}
    sectors:
      TECH: {max_gross_notional: 3000000}
    symbol_defaults:                  # optional: keys every symbol gets unless it sets its own
      tick: 0.01
    symbols:
      AAPL: {sector: TECH, max_shares: 1000, max_notional: 250000, min_shares: 1, round_lot: 100,
             tick: 0.01, collar_pct: 5, max_long: 2000, max_short: 2000}     # or collar_abs: 1.50
"""
from __future__ import annotations

import datetime
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from appliance.messages.codes import MARKET_PRICE, PRICE_SCALE
from appliance.config.errors import ConfigFileError
from appliance.config.yaml_lines import MarkedDict, parse_yaml

MAX_PRICE = MARKET_PRICE - 1          # u32 prices; MARKET_PRICE asks for a market order
MAX_SHARES = 0xFFFFFFFF
MAX_MONEY = 10**13                    # dollars: any larger limit is a typo
LIMITS_VERSION = 1
MAX_WINDOW_EVENTS = 1_000_000         # a sliding window holds this many times (8 bytes each)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class LimitsError(ConfigFileError):
    """A limits file that cannot be used: file, line, key path and reason."""


# --------------------------------------------------------------------------
# The validated limits (YAML read with lines: appliance/config/yaml_lines.py)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class SymbolLimits:
    """One symbol's limits; money in price units (dollars x 10,000)."""
    symbol: str
    sector: str
    max_shares: int
    max_notional: int
    min_shares: int
    round_lot: int              # 0: not checked
    tick: int
    collar_ppm: int             # percent band in parts per million of the reference price (0: absolute band)
    collar_abs: int             # absolute band in price units (0: percent band)
    max_long: int
    max_short: int

    def collar_band(self, reference_price: int) -> int:
        """The allowed distance from the reference price, in price units."""
        return reference_price * self.collar_ppm // 1_000_000 if self.collar_ppm else self.collar_abs


@dataclass(frozen=True)
class MarketHours:
    """Trading allowed from ``open_s`` (inclusive) to ``close_s`` (exclusive), seconds after local midnight."""
    open_s: int
    close_s: int
    timezone: str
    weekdays: frozenset          # 0 = Monday

    def state_at(self, now_ns: int) -> tuple[bool, int]:
        """(open now, epoch ns until which that answer holds): the engine asks again only after it."""
        import zoneinfo
        zone = zoneinfo.ZoneInfo(self.timezone)
        seconds, fraction_ns = divmod(now_ns, 1_000_000_000)       # integers: floats lose the last nanoseconds
        local = datetime.datetime.fromtimestamp(seconds, zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        of_day_ns = (local.hour * 3600 + local.minute * 60 + local.second) * 1_000_000_000 + fraction_ns

        def at(second_of_day: int) -> int:
            wall = midnight + datetime.timedelta(seconds=second_of_day)
            return int(wall.replace(tzinfo=zone).timestamp()) * 1_000_000_000

        next_midnight = at(86_400)
        if local.weekday() in self.weekdays:
            if self.open_s * 1_000_000_000 <= of_day_ns < self.close_s * 1_000_000_000:
                return True, min(at(self.close_s), next_midnight)
            if of_day_ns < self.open_s * 1_000_000_000:
                return False, at(self.open_s)
        return False, next_midnight


@dataclass(frozen=True)
class Limits:
    """Every limit the checks use. ``symbols[symbol_id]`` is None for a layout symbol without limits."""
    file: str
    capital: int
    max_gross_notional: int
    max_net_notional: int
    max_leverage: float
    leverage_notional: int        # capital x max_leverage: the gross notional leverage allows
    max_daily_loss: int
    max_drawdown: int
    max_messages: int
    rate_window_ns: int
    max_open_orders: int
    max_identical_orders: int
    duplicate_window_ns: int
    throttle_kill_trips: int      # 0: the throttle never latches the kill switch
    throttle_kill_window_ns: int
    allow_market_orders: bool
    market_hours: MarketHours | None
    prevent_self_match: bool
    sectors: dict                 # sector name -> max gross notional (price units)
    sector_names: tuple           # sector id = index
    symbols: tuple                # by symbol id: SymbolLimits or None
    digest: int = 0               # CRC-32 of the file's bytes (journaled with LIMITS_CHANGED)
    summary: dict = field(default_factory=dict, compare=False)

    def sector_id_of(self, symbol_id: int) -> int:
        limits = self.symbols[symbol_id]
        return -1 if limits is None else self.sector_names.index(limits.sector)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

def _type_name(value) -> str:
    for kind, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"),
                        (int, "an integer"), (float, "a number"), (type(None), "null")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


class _Checker:
    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, reason: str, line: int | None = None):
        raise LimitsError(self.file, path, reason, line)

    @staticmethod
    def line_of(container, key) -> int | None:
        lines = getattr(container, "lines", None)
        if lines is None:
            return None
        try:
            return lines[key]
        except (KeyError, IndexError, TypeError):
            return None

    def mapping(self, value, path: str, line: int | None, required: tuple, optional: tuple) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_type_name(value)}", line)
        for key in value:
            if key not in required and key not in optional:
                allowed = ", ".join(sorted([*required, *optional]))
                self.fail(f"{path}.{key}" if path else str(key), f"unknown key (allowed: {allowed})",
                          self.line_of(value, key))
        for key in required:
            if key not in value:
                self.fail(f"{path}.{key}" if path else key, "missing required key", line)
        return value

    def integer(self, container, key, path: str, low: int, high: int) -> int:
        value, line = container[key], self.line_of(container, key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {_type_name(value)}", line)
        if value < 0 and low >= 0:
            self.fail(path, f"must not be negative, got {value}", line)
        if not low <= value <= high:
            self.fail(path, f"must be {low}..{high}, got {value}", line)
        return value

    def number(self, container, key, path: str, low: float, high: float, *, positive: bool = False) -> float:
        value, line = container[key], self.line_of(container, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            self.fail(path, f"expected a number, got {_type_name(value)}", line)
        if value < 0:
            self.fail(path, f"must not be negative, got {value}", line)
        if positive and value == 0:
            self.fail(path, "must be greater than 0", line)
        if not low <= value <= high:
            self.fail(path, f"must be {low}..{high}, got {value}", line)
        return value

    def money(self, container, key, path: str, *, positive: bool = False) -> int:
        """Dollars (integer or decimal) -> price units; at most 4 decimals."""
        dollars = self.number(container, key, path, 0, MAX_MONEY, positive=positive)
        units = round(dollars * PRICE_SCALE)
        if abs(units - dollars * PRICE_SCALE) > 1e-6 * max(1.0, abs(dollars)):
            self.fail(path, f"{dollars} has more than 4 decimals", self.line_of(container, key))
        if positive and units == 0:
            self.fail(path, f"{dollars} rounds to 0 at 4 decimals", self.line_of(container, key))
        return units

    def boolean(self, container, key, path: str) -> bool:
        value = container[key]
        if not isinstance(value, bool):
            self.fail(path, f"expected a boolean, got {_type_name(value)}", self.line_of(container, key))
        return value


_GLOBAL_REQUIRED = ("capital", "max_gross_notional", "max_net_notional", "max_leverage", "max_daily_loss",
                    "max_drawdown", "max_messages_per_second", "max_open_orders", "max_identical_orders")
_GLOBAL_OPTIONAL = ("rate_window_ms", "duplicate_window_ms", "throttle_kill", "allow_market_orders", "market_hours",
                    "prevent_self_match")
_SYMBOL_REQUIRED = ("sector", "max_shares", "max_notional", "tick", "max_long", "max_short")
_SYMBOL_OPTIONAL = ("min_shares", "round_lot", "collar_pct", "collar_abs")


def _time_of_day(c: _Checker, container, key, path: str) -> int:
    value, line = container[key], c.line_of(container, key)
    if not isinstance(value, str):
        c.fail(path, f"expected a quoted time like \"09:30\", got {_type_name(value)} "
               f"(YAML reads an unquoted 9:30 as a number)", line)
    try:
        parsed = datetime.time.fromisoformat(value)
    except ValueError:
        c.fail(path, f"{value!r} is not a time like \"09:30\" or \"16:00:00\"", line)
    return parsed.hour * 3600 + parsed.minute * 60 + parsed.second


def _market_hours(c: _Checker, section, path: str, line) -> MarketHours | None:
    if section is None:
        return None
    c.mapping(section, path, line, ("open", "close", "timezone"), ("weekdays",))
    open_s = _time_of_day(c, section, "open", f"{path}.open")
    close_s = _time_of_day(c, section, "close", f"{path}.close")
    if close_s <= open_s:
        c.fail(f"{path}.close", "must be after open", c.line_of(section, "close"))
    zone = section["timezone"]
    if not isinstance(zone, str):
        c.fail(f"{path}.timezone", f"expected a string, got {_type_name(zone)}", c.line_of(section, "timezone"))
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        c.fail(f"{path}.timezone", f"unknown time zone {zone!r}", c.line_of(section, "timezone"))
    days = section.get("weekdays", list(WEEKDAYS[:5]))
    if not isinstance(days, list) or not days:
        c.fail(f"{path}.weekdays", "expected a non-empty list of Mon..Sun", c.line_of(section, "weekdays"))
    weekdays = set()
    for i, day in enumerate(days):
        if day not in WEEKDAYS:
            c.fail(f"{path}.weekdays[{i}]", f"{day!r} is not one of {', '.join(WEEKDAYS)}", c.line_of(days, i))
        weekdays.add(WEEKDAYS.index(day))
    return MarketHours(open_s, close_s, zone, frozenset(weekdays))


def _symbol_limits(c: _Checker, symbol: str, merged: dict, path: str, line, sectors: dict) -> SymbolLimits:
    c.mapping(merged, path, line, _SYMBOL_REQUIRED, _SYMBOL_OPTIONAL)
    sector = merged["sector"]
    if not isinstance(sector, str):
        c.fail(f"{path}.sector", f"expected a string, got {_type_name(sector)}", c.line_of(merged, "sector"))
    if sector not in sectors:
        c.fail(f"{path}.sector", f"sector {sector!r} is not declared under sectors "
               f"(declared: {', '.join(sectors) or 'none'})", c.line_of(merged, "sector"))
    max_shares = c.integer(merged, "max_shares", f"{path}.max_shares", 0, MAX_SHARES)
    min_shares = c.integer(merged, "min_shares", f"{path}.min_shares", 1, MAX_SHARES) if "min_shares" in merged else 1
    if min_shares > max_shares:
        c.fail(f"{path}.min_shares", f"{min_shares} is more than max_shares {max_shares}",
               c.line_of(merged, "min_shares"))
    round_lot = 0
    if merged.get("round_lot") is not None:
        round_lot = c.integer(merged, "round_lot", f"{path}.round_lot", 1, MAX_SHARES)
    tick = c.money(merged, "tick", f"{path}.tick", positive=True)
    if tick > MAX_PRICE:
        c.fail(f"{path}.tick", "larger than any price", c.line_of(merged, "tick"))
    has_pct = merged.get("collar_pct") is not None
    has_abs = merged.get("collar_abs") is not None
    if has_pct == has_abs:
        c.fail(f"{path}.collar_pct", "give exactly one of collar_pct (percent of the reference price) and "
               "collar_abs (dollars)", c.line_of(merged, "collar_pct" if has_pct else "collar_abs") or line)
    collar_ppm = collar_abs = 0
    if has_pct:
        pct = c.number(merged, "collar_pct", f"{path}.collar_pct", 0, 100, positive=True)
        collar_ppm = round(pct * 10_000)
    else:
        collar_abs = c.money(merged, "collar_abs", f"{path}.collar_abs", positive=True)
    return SymbolLimits(
        symbol=symbol, sector=sector, max_shares=max_shares,
        max_notional=c.money(merged, "max_notional", f"{path}.max_notional"),
        min_shares=min_shares, round_lot=round_lot, tick=tick, collar_ppm=collar_ppm, collar_abs=collar_abs,
        max_long=c.integer(merged, "max_long", f"{path}.max_long", 0, 2**53),
        max_short=c.integer(merged, "max_short", f"{path}.max_short", 0, 2**53))


def parse_limits(text: bytes | str, layout_symbols, file: str = "<string>") -> Limits:
    """Validate a limits document against the layout's symbols; raises LimitsError."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    data = parse_yaml(raw, lambda path, reason, line: LimitsError(file, path, reason, line))
    c = _Checker(file)
    if data is None:
        c.fail("", "empty file")
    c.mapping(data, "", 1, ("version", "global", "sectors", "symbols"), ("symbol_defaults",))
    version = data["version"]
    if version != LIMITS_VERSION:
        c.fail("version", f"must be {LIMITS_VERSION}, got {version!r}", c.line_of(data, "version"))

    g = c.mapping(data["global"], "global", c.line_of(data, "global"), _GLOBAL_REQUIRED, _GLOBAL_OPTIONAL)
    capital = c.money(g, "capital", "global.capital", positive=True)
    max_leverage = c.number(g, "max_leverage", "global.max_leverage", 0, 1000, positive=True)
    throttle_trips, throttle_window_ms = 0, 10_000
    if g.get("throttle_kill") is not None:
        t = c.mapping(g["throttle_kill"], "global.throttle_kill", c.line_of(g, "throttle_kill"),
                      ("trips", "window_ms"), ())
        throttle_trips = c.integer(t, "trips", "global.throttle_kill.trips", 1, 1_000_000)
        throttle_window_ms = c.integer(t, "window_ms", "global.throttle_kill.window_ms", 1, 86_400_000)
    rate_window_ms = c.integer(g, "rate_window_ms", "global.rate_window_ms", 1, 3_600_000) \
        if "rate_window_ms" in g else 1000
    duplicate_window_ms = c.integer(g, "duplicate_window_ms", "global.duplicate_window_ms", 1, 3_600_000) \
        if "duplicate_window_ms" in g else 1000
    allow_market = c.boolean(g, "allow_market_orders", "global.allow_market_orders") \
        if "allow_market_orders" in g else False
    prevent_self_match = c.boolean(g, "prevent_self_match", "global.prevent_self_match") \
        if "prevent_self_match" in g else False
    hours = _market_hours(c, g.get("market_hours"), "global.market_hours", c.line_of(g, "market_hours"))

    sectors_raw = data["sectors"]
    if not isinstance(sectors_raw, dict) or not sectors_raw:
        c.fail("sectors", "expected a non-empty mapping of sector name -> {max_gross_notional}",
               c.line_of(data, "sectors"))
    sectors: dict[str, int] = {}
    for name, section in sectors_raw.items():
        path = f"sectors.{name}"
        if not isinstance(name, str) or not name:
            c.fail(path, "a sector name must be a non-empty string", c.line_of(sectors_raw, name))
        c.mapping(section, path, c.line_of(sectors_raw, name), ("max_gross_notional",), ())
        sectors[name] = c.money(section, "max_gross_notional", f"{path}.max_gross_notional")

    defaults = data.get("symbol_defaults") or {}
    if not isinstance(defaults, dict):
        c.fail("symbol_defaults", f"expected a mapping, got {_type_name(defaults)}", c.line_of(data, "symbol_defaults"))
    for key in defaults:
        if key not in _SYMBOL_REQUIRED and key not in _SYMBOL_OPTIONAL:
            c.fail(f"symbol_defaults.{key}", "unknown key (allowed: "
                   f"{', '.join(sorted(_SYMBOL_REQUIRED + _SYMBOL_OPTIONAL))})", c.line_of(defaults, key))

    symbols_raw = data["symbols"]
    if not isinstance(symbols_raw, dict) or not symbols_raw:
        c.fail("symbols", "expected a non-empty mapping of symbol -> limits", c.line_of(data, "symbols"))
    layout_symbols = tuple(layout_symbols)
    by_id: list[SymbolLimits | None] = [None] * len(layout_symbols)
    for symbol, section in symbols_raw.items():
        path, line = f"symbols.{symbol}", c.line_of(symbols_raw, symbol)
        if symbol not in layout_symbols:
            c.fail(path, f"unknown symbol {symbol!r}: not in the layout's symbols "
                   f"({', '.join(layout_symbols) or 'none declared'})", line)
        if section is None:
            section = {}                     # "AAPL:" alone: everything from symbol_defaults
        if not isinstance(section, dict):
            c.fail(path, f"expected a mapping, got {_type_name(section)}", line)
        merged = MarkedDict({**defaults, **section})
        merged.lines = {**getattr(defaults, "lines", {}), **getattr(section, "lines", {})}
        by_id[layout_symbols.index(symbol)] = _symbol_limits(c, symbol, merged, path, line, sectors)

    limits = Limits(
        file=file, capital=capital,
        max_gross_notional=c.money(g, "max_gross_notional", "global.max_gross_notional"),
        max_net_notional=c.money(g, "max_net_notional", "global.max_net_notional"),
        max_leverage=max_leverage, leverage_notional=int(capital * max_leverage),
        max_daily_loss=c.money(g, "max_daily_loss", "global.max_daily_loss"),
        max_drawdown=c.money(g, "max_drawdown", "global.max_drawdown"),
        max_messages=c.integer(g, "max_messages_per_second", "global.max_messages_per_second", 1, MAX_WINDOW_EVENTS),
        rate_window_ns=rate_window_ms * 1_000_000,
        max_open_orders=c.integer(g, "max_open_orders", "global.max_open_orders", 0, 1_000_000),
        max_identical_orders=c.integer(g, "max_identical_orders", "global.max_identical_orders", 1, 10_000),
        duplicate_window_ns=duplicate_window_ms * 1_000_000,
        throttle_kill_trips=throttle_trips, throttle_kill_window_ns=throttle_window_ms * 1_000_000,
        allow_market_orders=allow_market, market_hours=hours, prevent_self_match=prevent_self_match, sectors=sectors, sector_names=tuple(sectors),
        symbols=tuple(by_id), digest=zlib.crc32(raw))
    object.__setattr__(limits, "summary", _summary(limits))
    return limits


def load_limits(path: str | os.PathLike, layout_symbols) -> Limits:
    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            text = fh.read()
    except (OSError, ValueError) as exc:          # ValueError: a NUL in the path
        raise LimitsError(file, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_limits(text, layout_symbols, file)


def _summary(limits: Limits) -> dict:
    """Flat key -> value of every limit, for the journal line of a reload (what changed)."""
    out: dict[str, Any] = {}
    for name in ("capital", "max_gross_notional", "max_net_notional", "max_leverage", "max_daily_loss",
                 "max_drawdown", "max_messages", "rate_window_ns", "max_open_orders", "max_identical_orders",
                 "duplicate_window_ns", "throttle_kill_trips", "throttle_kill_window_ns", "allow_market_orders",
                 "market_hours", "prevent_self_match"):
        out[f"global.{name}"] = getattr(limits, name)
    for name, value in limits.sectors.items():
        out[f"sectors.{name}"] = value
    for symbol_limits in limits.symbols:
        if symbol_limits is None:
            continue
        for name, value in symbol_limits.__dict__.items():
            if name != "symbol":
                out[f"symbols.{symbol_limits.symbol}.{name}"] = value
    return out


def describe_changes(old: Limits, new: Limits) -> list[str]:
    """Human-readable differences, one per changed limit ("global.max_open_orders 200 -> 100")."""
    changes = []
    for key in sorted(set(old.summary) | set(new.summary)):
        before, after = old.summary.get(key), new.summary.get(key)
        if before != after:
            changes.append(f"{key} {before} -> {after}")
    return changes
