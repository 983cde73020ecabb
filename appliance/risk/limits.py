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
      allow_market_orders: false      # optional, default false (a market order has no price to collar): MARKET_ORDER
      allow_hidden: true              # optional, default true: non-displayed orders (else HIDDEN_ORDER)
      allow_iso: false                # optional, default false: intermarket sweep orders, which make the firm
                                      # responsible for the Reg NMS sweep of better prices elsewhere (ISO_ORDER)
      prevent_self_match: true        # optional, default false: refuse an order that would trade with one of
                                      # our own open orders (SELF_MATCH; a wash trade)
      market_hours: null             # optional: {open: "09:30", close: "16:00", timezone: America/New_York,
                                      #            weekdays: [Mon, Tue, Wed, Thu, Fri]}
    sectors:
      TECH: {max_gross_notional: 3000000}
    symbol_defaults:                  # optional: keys every symbol gets unless it sets its own
      collar_pct: 5
    symbols:
      AAPL: {sector: TECH, max_shares: 1000, max_notional: 250000, min_shares: 1, whole_lots: true,
             collar_pct: 5, max_long: 2000, max_short: 2000}     # or collar_abs: 1.50
             # optional allow_short_sell: true (default false): short sales (side T) in this symbol, for a
             # symbol with a locate or on the easy-to-borrow list (else SHORT_SALE); symbol_defaults may set it

Tick and round lot come from the instruments file the layout names (``config/instruments.yaml``,
``appliance.config.instruments``): the limits do not repeat them. ``whole_lots: true`` refuses an
order that is not a whole number of the instrument's round lots (ROUND_LOT; default false: odd lots
pass). A limits file written before the instruments file keeps loading: its ``tick`` and
``round_lot`` must then equal the instrument's (``round_lot: N`` is ``whole_lots: true``), and one
that contradicts the instruments file is refused, naming both. With a layout that names no
instruments file, ``tick`` is required here and ``round_lot: N`` (optional) sets the whole-lot check.
"""
from __future__ import annotations

import datetime
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from appliance.messages.codes import MARKET_PRICE, PRICE_SCALE
from appliance.config.checker import Checker, Section, type_name
from appliance.config.errors import ConfigFileError, line_of
from appliance.config.instruments import Instrument, Instruments
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
    allow_short_sell: bool = False     # short sales (a locate, or on the easy-to-borrow list)
    min_price: int = 1                 # the instrument's price band (PRICE_BAND outside it; no instruments
    max_price: int = MAX_PRICE         # file: any price)

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
    allow_hidden: bool = True     # non-displayed orders
    allow_iso: bool = False       # intermarket sweep orders
    digest: int = 0               # CRC-32 of the file's bytes (journaled with LIMITS_CHANGED)
    summary: dict = field(default_factory=dict, compare=False)

    def sector_id_of(self, symbol_id: int) -> int:
        limits = self.symbols[symbol_id]
        return -1 if limits is None else self.sector_names.index(limits.sector)


# --------------------------------------------------------------------------
# Validation (on the one checker: appliance/config/checker.py)
# --------------------------------------------------------------------------

_GLOBAL_REQUIRED = ("capital", "max_gross_notional", "max_net_notional", "max_leverage", "max_daily_loss",
                    "max_drawdown", "max_messages_per_second", "max_open_orders", "max_identical_orders")
_GLOBAL_OPTIONAL = ("rate_window_ms", "duplicate_window_ms", "throttle_kill", "allow_market_orders", "market_hours",
                    "prevent_self_match", "allow_hidden", "allow_iso")
_SYMBOL_REQUIRED = ("sector", "max_shares", "max_notional", "max_long", "max_short")
_SYMBOL_OPTIONAL = ("min_shares", "round_lot", "whole_lots", "tick", "collar_pct", "collar_abs", "allow_short_sell")


def _money(s: Section, key: str, *, positive: bool = False) -> int:
    """Dollars (integer or decimal) -> price units; at most 4 decimals."""
    dollars = s.number(key, 0, MAX_MONEY, above=0 if positive else None)
    units = round(dollars * PRICE_SCALE)
    if abs(units - dollars * PRICE_SCALE) > 1e-6 * max(1.0, abs(dollars)):
        s.fail(key, f"{dollars} has more than 4 decimals")
    if positive and units == 0:
        s.fail(key, f"{dollars} rounds to 0 at 4 decimals")
    return units


def _time_of_day(s: Section, key: str) -> int:
    value = s.get(key)
    if not isinstance(value, str):
        s.fail(key, f"expected a quoted time like \"09:30\", got {type_name(value)} "
               f"(YAML reads an unquoted 9:30 as a number)")
    try:
        parsed = datetime.time.fromisoformat(value)
    except ValueError:
        s.fail(key, f"{value!r} is not a time like \"09:30\" or \"16:00:00\"")
    return parsed.hour * 3600 + parsed.minute * 60 + parsed.second


def _market_hours(g: Section) -> MarketHours | None:
    if g.value.get("market_hours") is None:
        return None
    s = g.section("market_hours", ("open", "close", "timezone", "weekdays"), required=("open", "close", "timezone"))
    open_s, close_s = _time_of_day(s, "open"), _time_of_day(s, "close")
    if close_s <= open_s:
        s.fail("close", "must be after open")
    zone = s.string("timezone")
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        s.fail("timezone", f"unknown time zone {zone!r}")
    days = s.get("weekdays", list(WEEKDAYS[:5]))
    if not isinstance(days, list) or not days:
        s.fail("weekdays", "expected a non-empty list of Mon..Sun")
    weekdays = {WEEKDAYS.index(s.checker.choice(day, path, line, WEEKDAYS))
                for _, day, path, line in s.checker.items(days, s.key_path("weekdays"), s.line_of("weekdays"))}
    return MarketHours(open_s, close_s, zone, frozenset(weekdays))


def _tick_and_lot(s: Section, instrument: Instrument | None, instruments: Instruments | None) -> tuple[int, int]:
    """(tick, round lot to check or 0) from the instrument; keys here that repeat it must agree with it."""
    whole_lots = s.boolean("whole_lots", False)
    round_lot = 0 if s.value.get("round_lot") is None else s.integer("round_lot", 1, MAX_SHARES)
    if instrument is None:
        if "tick" not in s.value:
            s.fail("tick", "missing required key (or name an instruments file in the layout: "
                           "config/instruments.yaml)")
        if whole_lots and not round_lot:
            s.fail("whole_lots", "needs the instrument's round lot: name an instruments file in the layout "
                                 "(or give round_lot here)")
        tick = _money(s, "tick", positive=True)
        if tick > MAX_PRICE:
            s.fail("tick", "larger than any price")
        return tick, round_lot
    where = instruments.where(instrument)
    if "tick" in s.value:
        tick = _money(s, "tick", positive=True)
        if tick != instrument.tick:
            s.fail("tick", f"{s.value['tick']} contradicts the instruments file ({where}: tick "
                           f"{instrument.tick / PRICE_SCALE:g}); remove it here: the tick comes from there")
    if round_lot and round_lot != instrument.round_lot:
        s.fail("round_lot", f"{round_lot} contradicts the instruments file ({where}: round_lot "
                            f"{instrument.round_lot}); use whole_lots: true to check the instrument's round lot")
    return instrument.tick, instrument.round_lot if whole_lots or round_lot else 0


def _symbol_limits(s: Section, symbol: str, sectors: dict, instrument: Instrument | None = None,
                   instruments: Instruments | None = None) -> SymbolLimits:
    sector = s.string("sector", empty=True)
    if sector not in sectors:
        s.fail("sector", f"sector {sector!r} is not declared under sectors (declared: {', '.join(sectors) or 'none'})")
    max_shares = s.integer("max_shares", 0, MAX_SHARES)
    min_shares = s.integer("min_shares", 1, MAX_SHARES, 1)
    if min_shares > max_shares:
        s.fail("min_shares", f"{min_shares} is more than max_shares {max_shares}")
    tick, round_lot = _tick_and_lot(s, instrument, instruments)
    has_pct = s.value.get("collar_pct") is not None
    has_abs = s.value.get("collar_abs") is not None
    if has_pct == has_abs:
        s.checker.fail(s.key_path("collar_pct"), "give exactly one of collar_pct (percent of the reference price) "
                       "and collar_abs (dollars)", line_of(s.value, "collar_pct" if has_pct else "collar_abs") or s.line)
    collar_ppm = round(s.number("collar_pct", 0, 100, above=0) * 10_000) if has_pct else 0
    collar_abs = 0 if has_pct else _money(s, "collar_abs", positive=True)
    return SymbolLimits(
        symbol=symbol, sector=sector, max_shares=max_shares, max_notional=_money(s, "max_notional"),
        min_shares=min_shares, round_lot=round_lot, tick=tick, collar_ppm=collar_ppm, collar_abs=collar_abs,
        max_long=s.integer("max_long", 0, 2**53), max_short=s.integer("max_short", 0, 2**53),
        allow_short_sell=s.boolean("allow_short_sell", False),
        min_price=instrument.min_price if instrument else 1, max_price=instrument.max_price if instrument else MAX_PRICE)


def _sectors(top: Section) -> dict[str, int]:
    """``sectors``: name -> max gross notional (price units); sector id = position."""
    sectors_raw = top.get("sectors")
    if not isinstance(sectors_raw, dict) or not sectors_raw:
        top.fail("sectors", "expected a non-empty mapping of sector name -> {max_gross_notional}")
    sectors: dict[str, int] = {}
    for name, section in sectors_raw.items():
        if not isinstance(name, str) or not name:
            top.checker.fail(f"sectors.{name}", "a sector name must be a non-empty string", line_of(sectors_raw, name))
        sector = top.checker.section(section, f"sectors.{name}", line_of(sectors_raw, name), ("max_gross_notional",),
                                     required=("max_gross_notional",))
        sectors[name] = _money(sector, "max_gross_notional")
    return sectors


def _symbols(top: Section, layout_symbols: tuple, sectors: dict,
             instruments: Instruments | None = None) -> list[SymbolLimits | None]:
    """``symbols`` (each over ``symbol_defaults``), by layout symbol id; None: no limits, no orders."""
    c, symbol_keys = top.checker, _SYMBOL_REQUIRED + _SYMBOL_OPTIONAL
    defaults = top.section("symbol_defaults", symbol_keys).value
    symbols_raw = top.get("symbols")
    if not isinstance(symbols_raw, dict) or not symbols_raw:
        top.fail("symbols", "expected a non-empty mapping of symbol -> limits")
    by_id: list[SymbolLimits | None] = [None] * len(layout_symbols)
    for symbol, section in symbols_raw.items():
        path, line = f"symbols.{symbol}", line_of(symbols_raw, symbol)
        if symbol not in layout_symbols:
            c.fail(path, f"unknown symbol {symbol!r}: not in the layout's symbols "
                   f"({', '.join(layout_symbols) or 'none declared'})", line)
        if section is None:
            section = {}                     # "AAPL:" alone: everything from symbol_defaults
        if not isinstance(section, dict):
            c.expected("a mapping", section, path, line)
        merged = MarkedDict({**defaults, **section})
        merged.lines = {**getattr(defaults, "lines", {}), **getattr(section, "lines", {})}
        limits_of = c.section(merged, path, line, symbol_keys, required=_SYMBOL_REQUIRED)
        instrument = instruments[symbol] if instruments is not None else None
        by_id[layout_symbols.index(symbol)] = _symbol_limits(limits_of, symbol, sectors, instrument, instruments)
    return by_id


def parse_limits(text: bytes | str, layout_symbols, file: str = "<string>", *,
                 instruments: Instruments | None = None) -> Limits:
    """Validate a limits document against the layout's symbols and, when the layout names one, its
    instruments file (tick and round lot); raises LimitsError."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    data = parse_yaml(raw, lambda path, reason, line: LimitsError(file, path, reason, line))
    c = Checker.for_file(LimitsError, file)
    if data is None:
        c.fail("", "empty file")
    top = c.section(data, "", 1, ("version", "global", "sectors", "symbols", "symbol_defaults"),
                    required=("version", "global", "sectors", "symbols"))
    if top.get("version") != LIMITS_VERSION:
        top.fail("version", f"must be {LIMITS_VERSION}, got {top.get('version')!r}")

    g = top.section("global", _GLOBAL_REQUIRED + _GLOBAL_OPTIONAL, required=_GLOBAL_REQUIRED, optional=False)
    capital = _money(g, "capital", positive=True)
    max_leverage = g.number("max_leverage", 0, 1000, above=0)
    throttle_trips, throttle_window_ms = 0, 10_000
    if g.value.get("throttle_kill") is not None:
        t = g.section("throttle_kill", ("trips", "window_ms"), required=("trips", "window_ms"))
        throttle_trips, throttle_window_ms = t.integer("trips", 1, 1_000_000), t.integer("window_ms", 1, 86_400_000)

    sectors = _sectors(top)
    if instruments is not None and tuple(layout_symbols) != instruments.symbols:
        raise ValueError(f"the layout's symbols {tuple(layout_symbols)} are not those of {instruments.file}")
    by_id = _symbols(top, tuple(layout_symbols), sectors, instruments)

    limits = Limits(
        file=file, capital=capital,
        max_gross_notional=_money(g, "max_gross_notional"), max_net_notional=_money(g, "max_net_notional"),
        max_leverage=max_leverage, leverage_notional=int(capital * max_leverage),
        max_daily_loss=_money(g, "max_daily_loss"), max_drawdown=_money(g, "max_drawdown"),
        max_messages=g.integer("max_messages_per_second", 1, MAX_WINDOW_EVENTS),
        rate_window_ns=g.integer("rate_window_ms", 1, 3_600_000, 1000) * 1_000_000,
        max_open_orders=g.integer("max_open_orders", 0, 1_000_000),
        max_identical_orders=g.integer("max_identical_orders", 1, 10_000),
        duplicate_window_ns=g.integer("duplicate_window_ms", 1, 3_600_000, 1000) * 1_000_000,
        throttle_kill_trips=throttle_trips, throttle_kill_window_ns=throttle_window_ms * 1_000_000,
        allow_market_orders=g.boolean("allow_market_orders", False), market_hours=_market_hours(g),
        prevent_self_match=g.boolean("prevent_self_match", False), sectors=sectors, sector_names=tuple(sectors),
        symbols=tuple(by_id), allow_hidden=g.boolean("allow_hidden", True), allow_iso=g.boolean("allow_iso", False),
        digest=zlib.crc32(raw))
    object.__setattr__(limits, "summary", _summary(limits))
    return limits


def load_limits(path: str | os.PathLike, layout_symbols, *, instruments: Instruments | None = None) -> Limits:
    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            text = fh.read()               # the bytes themselves: their CRC is journaled with a reload
    except (OSError, ValueError) as exc:          # ValueError: a NUL in the path
        raise LimitsError(file, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_limits(text, layout_symbols, file, instruments=instruments)


def _summary(limits: Limits) -> dict:
    """Flat key -> value of every limit, for the journal line of a reload (what changed)."""
    out: dict[str, Any] = {}
    for name in ("capital", "max_gross_notional", "max_net_notional", "max_leverage", "max_daily_loss",
                 "max_drawdown", "max_messages", "rate_window_ns", "max_open_orders", "max_identical_orders",
                 "duplicate_window_ns", "throttle_kill_trips", "throttle_kill_window_ns", "allow_market_orders",
                 "market_hours", "prevent_self_match", "allow_hidden", "allow_iso"):
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
