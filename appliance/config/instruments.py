"""``config/instruments.yaml``: the one definition of what is traded, read by everyone who needs it.

Tick size, round lot, price band and reference price of each symbol live here and nowhere else:
the layout derives its ``symbols`` (symbol id = position in this file) from it, the risk limits
take tick and round lot from it, the simulated exchange lists its symbols from it, and a strategy
asks ``self.instrument("AAPL")`` instead of repeating a tick in its parameters (a mismatch used
to show up only as TICK refusals at run time)::

    version: 1
    instruments:
      - {symbol: AAPL, tick: 0.01, round_lot: 100, reference_price: 190.00}
      - {symbol: BRK.A, tick: 1, round_lot: 1, reference_price: 600000, min_price: 1, max_price: 200000}

Prices are written in dollars (integer or decimal, at most 4 decimals), as in the risk limits;
the ``Instrument`` holds them in price units (4 implied decimals, 100 = $0.01) like the whole
order path. The price band is the static range of limit prices the venue accepts for the
instrument, ``min_price`` .. ``max_price`` (default: one tick .. the venue's largest price,
``MAX_PRICE``), both on the tick: a property of the instrument, unlike the risk collar, which
moves with the market and stays a risk limit (``risk_limits.yaml``). Risk refuses a limit price
outside the band (PRICE_BAND).

A leaf like the rest of ``appliance.config``: the simulated exchange may import it. Parsed before
any agent starts; every problem is an ``InstrumentsError`` naming the file, line, key path
(``instruments[2].tick``) and reason.
"""
from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Iterator

from .checker import Checker, Section, shown
from .errors import ConfigFileError
from .yaml_lines import read_yaml_file, parse_yaml

INSTRUMENTS_VERSION = 1
PRICE_SCALE = 10_000                 # 4 implied decimals (messages.codes.PRICE_SCALE)
MAX_PRICE = 2_000_000_000            # $200,000.0000: the largest limit price the venue takes (exchange.matching)
MAX_ROUND_LOT = 0xFFFFFFFF           # u32 shares on the wire
SYMBOL_MAX = 8                       # an ITCH/OUCH stock field
SYMBOL_RULE = f"1..{SYMBOL_MAX} upper-case letters, digits, '.', '_' or '-'"
_SYMBOL_RE = re.compile(r"[A-Z0-9._\-]{1,%d}" % SYMBOL_MAX)
_KEYS = ("symbol", "tick", "round_lot", "reference_price", "min_price", "max_price")
_REQUIRED = ("symbol", "tick", "round_lot")
_BUY, _SELL, _SELL_SHORT = ord("B"), ord("S"), ord("T")      # the OUCH side byte (messages.codes.Side)


class InstrumentsError(ConfigFileError):
    """An instruments file that cannot be used: file, line, key path and reason."""


def is_symbol(text) -> bool:
    """Whether ``text`` is a symbol every component accepts (``SYMBOL_RULE``)."""
    return isinstance(text, str) and _SYMBOL_RE.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Instrument:
    """One traded symbol: immutable, prices in price units (4 implied decimals).

    ``symbol_id`` is its position in the instruments file, which is the layout's symbol list."""

    symbol: str
    symbol_id: int
    tick: int                    # price increment, > 0
    round_lot: int               # shares in a round lot, > 0
    min_price: int               # the price band: the lowest limit price the venue accepts (on the tick)
    max_price: int               # and the highest
    reference_price: int = 0     # a starting price (the simulated exchange's flow); 0: none given
    line: int | None = field(default=None, compare=False, repr=False)   # where it is defined (for errors)

    def is_valid_price(self, price: int) -> bool:
        """On the tick and inside the band: a limit price the venue accepts."""
        price = _price_argument(price)
        return self.min_price <= price <= self.max_price and price % self.tick == 0

    def round_price(self, price: int, side) -> int:
        """``price`` to the tick, passively: a buy rounds down, a sell (or sell short) up, so rounding
        never makes an order more aggressive; then clamped into the band. ``side``: the OUCH side
        (``Side.BUY``/``SELL``/``SELL_SHORT``, or ``"B"``/``"S"``/``"T"``)."""
        price = _price_argument(price)
        side = ord(side) if isinstance(side, str) and len(side) == 1 else side
        if side == _BUY:
            price = price // self.tick * self.tick
        elif side == _SELL or side == _SELL_SHORT:
            price = -(-price // self.tick) * self.tick
        else:
            raise ValueError(f"side must be BUY, SELL or SELL_SHORT, got {side!r}")
        return min(max(price, self.min_price), self.max_price)

    def ticks(self, count: int | float) -> int:
        """``count`` ticks in price units (``instrument.ticks(2)`` is two cents at a $0.01 tick)."""
        return round(count * self.tick)

    def round_shares(self, shares: int) -> int:
        """``shares`` down to whole round lots (0 when less than one lot)."""
        return shares // self.round_lot * self.round_lot

    def is_round_lot(self, shares: int) -> bool:
        return shares > 0 and shares % self.round_lot == 0


def _price_argument(price) -> int:
    """A strategy's price argument: an integer in price units, never a float that would pass unnoticed."""
    try:
        return operator.index(price)
    except TypeError:
        raise TypeError(f"price must be an integer with 4 implied decimals (1900100 is $190.01), got "
                        f"{type(price).__name__}") from None


class Instruments:
    """Every instrument of one file, by symbol and by symbol id (read-only)."""

    __slots__ = ("file", "_by_id", "_by_symbol")

    def __init__(self, instruments: tuple[Instrument, ...], file: str = "<instruments>"):
        self.file = file
        self._by_id = tuple(instruments)
        self._by_symbol = {i.symbol: i for i in self._by_id}

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(i.symbol for i in self._by_id)

    def __getitem__(self, symbol: str) -> Instrument:
        try:
            return self._by_symbol[symbol]
        except (KeyError, TypeError):
            raise KeyError(f"no instrument {symbol!r} in {self.file} "
                           f"(defined: {', '.join(self._by_symbol) or 'none'})") from None

    def get(self, symbol: str, default=None) -> Instrument | None:
        return self._by_symbol.get(symbol, default)

    def by_id(self, symbol_id: int) -> Instrument:
        return self._by_id[symbol_id]

    def __contains__(self, symbol) -> bool:
        return symbol in self._by_symbol

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def where(self, instrument: Instrument) -> str:
        """``file:line`` of an instrument's definition, for the errors of files that contradict it."""
        return f"{self.file}:{instrument.line}" if instrument.line else self.file

    def canonical(self) -> list[dict]:
        """What processes sharing memory must agree on (the layout hashes it): every field the order
        path uses. The reference price only seeds the simulated exchange and is left out."""
        return [{"symbol": i.symbol, "tick": i.tick, "round_lot": i.round_lot, "min_price": i.min_price,
                 "max_price": i.max_price} for i in self._by_id]

    def __repr__(self) -> str:
        return f"Instruments({self.file}: {', '.join(self._by_symbol)})"


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def _price(s: Section, key: str, default=None) -> int:
    """Dollars (integer or decimal, at most 4 decimals) -> price units, 1..MAX_PRICE."""
    if default is not None and key not in s:
        return default
    dollars = s.number(key, above=0)
    try:
        exact = Decimal(repr(dollars)) if isinstance(dollars, float) else Decimal(dollars)
    except InvalidOperation:                      # pragma: no cover - number() admits finite values only
        s.fail(key, f"{shown(dollars)} is not a decimal price")
    units = exact * PRICE_SCALE
    if units != units.to_integral_value():
        s.fail(key, f"{shown(dollars)} has more than 4 decimals")
    units = int(units)
    if units > MAX_PRICE:
        s.fail(key, f"{shown(dollars)} is above the venue's largest price {MAX_PRICE / PRICE_SCALE:.4f}")
    return units


def _dollars(units: int) -> str:
    return f"{units // PRICE_SCALE}.{units % PRICE_SCALE:04d}"


def _instrument(s: Section, symbol_id: int, line: int | None) -> Instrument:
    symbol = s.string("symbol", pattern=_SYMBOL_RE, rule=SYMBOL_RULE)
    tick = _price(s, "tick")
    round_lot = s.integer("round_lot", 1, MAX_ROUND_LOT)
    min_price = _price(s, "min_price", tick)
    max_price = _price(s, "max_price", MAX_PRICE // tick * tick)
    for key, value in (("min_price", min_price), ("max_price", max_price)):
        if value % tick:
            s.fail(key, f"{_dollars(value)} is not on the tick ({_dollars(tick)})")
    if min_price > max_price:
        s.fail("max_price", f"{_dollars(max_price)} is below min_price {_dollars(min_price)}")
    reference_price = 0
    if "reference_price" in s:
        reference_price = _price(s, "reference_price")
        if reference_price % tick:
            s.fail("reference_price", f"{_dollars(reference_price)} is not on the tick ({_dollars(tick)})")
        if not min_price <= reference_price <= max_price:
            s.fail("reference_price", f"{_dollars(reference_price)} is outside the price band "
                                      f"{_dollars(min_price)}..{_dollars(max_price)}")
    return Instrument(symbol=symbol, symbol_id=symbol_id, tick=tick, round_lot=round_lot, min_price=min_price,
                      max_price=max_price, reference_price=reference_price, line=line)


def build_instruments(data, file: str, root_line: int | None = 1) -> Instruments:
    """The instruments a parsed document describes; raises InstrumentsError."""
    c = Checker.for_file(InstrumentsError, file)
    if data is None:
        c.fail("", "empty file")
    top = c.section(data, "", root_line, ("version", "instruments"), required=("version", "instruments"))
    version = top.integer("version")
    if version != INSTRUMENTS_VERSION:
        top.fail("version", f"must be {INSTRUMENTS_VERSION}, got {version}")
    if not top.listing("instruments"):
        top.fail("instruments", "must list at least one instrument")
    result: list[Instrument] = []
    seen: dict[str, int] = {}
    for i, item, path, line in top.items("instruments"):
        instrument = _instrument(c.section(item, path, line, _KEYS, required=_REQUIRED), i, line)
        if instrument.symbol in seen:
            c.fail(f"{path}.symbol", f"{instrument.symbol!r} is defined twice (first at instruments"
                                     f"[{seen[instrument.symbol]}])", line)
        seen[instrument.symbol] = i
        result.append(instrument)
    return Instruments(tuple(result), file)


def _errors(file: str):
    return lambda key_path, reason, line: InstrumentsError(file, key_path, reason, line)


def parse_instruments(text: str | bytes, file: str = "<string>") -> Instruments:
    """Validate one instruments document; raises InstrumentsError."""
    data, line = parse_yaml(text, _errors(file), with_line=True)
    return build_instruments(data, file, line)


def load_instruments(path: str | os.PathLike) -> Instruments:
    """Read and validate an instruments file; a missing or unreadable one is an InstrumentsError."""
    file = os.fspath(path)
    data, line = read_yaml_file(file, _errors(file), with_line=True)
    return build_instruments(data, file, line)


def resolve_beside(path: str, relative_to: str) -> str:
    """A path named in a configuration file: a relative one against that file's directory (the working
    directory for a document that is not a file, ``<string>``)."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    base = os.getcwd() if relative_to.startswith("<") else os.path.dirname(os.path.abspath(relative_to))
    return os.path.normpath(os.path.join(base, path))
