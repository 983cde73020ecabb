"""The fee schedule: what one fill costs (or earns), the one place it is computed.

``FeeSchedule.fee(symbol, liquidity, shares, price)`` is a plain function of the fill: the strategy
host calls it for every execution report, and the backtest (issue 17) calls the same thing.

The file (``config/fees.yaml``, read by ``loader.load_fee_schedule`` before the agent starts;
``parse_fee_schedule`` checks a parsed document)::

    default:              # every symbol without an entry of its own
      A: -0.0020          # per share, dollars, by OUCH liquidity flag: a rebate is negative
      R: 0.0030
      other: 0.0030       # every flag not listed (crosses, midpoint, retail, no flag at all)
    symbols:              # optional, per symbol: the flags listed override default's, flag by flag
      SPY: {A: -0.0025}

Units: a rate is dollars per share with at most 6 decimals (NASDAQ's tiers have 5, e.g. 0.00295),
held as integer millionths of a dollar; a fee is in price units x shares, i.e. 1e-4 dollars, the
units of the P&L (``realized_pnl``): ``shares x rate / 100``, rounded to the nearest unit, halves
up (a half-unit charge is charged, a half-unit rebate is not paid). ``price`` does not change a
per-share rate; it is part of the signature so a schedule with notional-based rates changes no
caller.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from appliance.config.checker import Checker, shown, type_name
from appliance.config.errors import join, line_of

from .fills import LIQUIDITY_FLAGS

RATE_SCALE = 1_000_000          # a rate's units: millionths of a dollar per share
_PER_PRICE_UNIT = RATE_SCALE // 10_000   # millionths of a dollar in one price unit (1e-4 dollar)
MAX_RATE = RATE_SCALE           # |rate| <= $1.00 a share: anything above is a typo
OTHER = "other"
_FLAG_KEYS = (*LIQUIDITY_FLAGS, OTHER)


class FeeSchedule:
    """Per-share rates by symbol and liquidity flag (integer millionths of a dollar per share)."""

    __slots__ = ("_default", "_by_symbol", "source")

    def __init__(self, default: dict[str, int], other: int, symbols: dict[str, dict[str, int]] | None = None,
                 source: str = ""):
        """``default``: flag -> rate; ``other``: the rate of every flag not listed; ``symbols``: per symbol,
        flag -> rate overriding ``default``'s."""
        base = {flag: default.get(flag, other) for flag in LIQUIDITY_FLAGS}
        self._default = (base, other)
        self._by_symbol = {symbol: ({**base, **rates}, other) for symbol, rates in (symbols or {}).items()}
        self.source = source

    def rate(self, symbol: str, liquidity: str) -> int:
        """Millionths of a dollar per share for one symbol and flag ('' or an unknown flag: ``other``)."""
        rates, other = self._by_symbol.get(symbol, self._default)
        return rates.get(liquidity, other)

    def fee(self, symbol: str, liquidity: str, shares: int, price: int) -> int:
        """The fee of one fill in price units x shares (1e-4 dollars); negative: a rebate."""
        rates, other = self._by_symbol.get(symbol, self._default)
        return (shares * rates.get(liquidity, other) + _PER_PRICE_UNIT // 2) // _PER_PRICE_UNIT

    def __repr__(self) -> str:
        return f"FeeSchedule({self.source or 'inline'}, {len(self._by_symbol)} symbol overrides)"


NO_FEES = FeeSchedule({}, 0, source="no fee schedule")


def rate_from_decimal(value, checker: Checker, path: str, line: int | None) -> int:
    """Dollars per share (a YAML number or a quoted decimal) -> millionths, checked."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        checker.expected("a number of dollars per share", value, path, line)
    try:
        scaled = Decimal(str(value).strip()) * RATE_SCALE
    except InvalidOperation:
        checker.fail(path, f"{shown(value)} is not a decimal number of dollars per share", line)
    if not scaled.is_finite():
        checker.fail(path, f"{shown(value)} is not a finite number", line)
    if scaled != scaled.to_integral_value():
        checker.fail(path, f"{shown(value)} has more than 6 decimals", line)
    if abs(scaled) > MAX_RATE:
        checker.fail(path, f"must be -1..1 dollars per share, got {shown(value)}", line)
    return int(scaled)


def _rates(value, checker: Checker, path: str, line: int | None, required: tuple[str, ...]) -> dict[str, int]:
    if not isinstance(value, dict):
        checker.expected("a mapping of liquidity flag to dollars per share", value, path, line)
    for key in value:
        if not isinstance(key, str):
            checker.fail(join(path, key), f"the flag {shown(key)} is read by YAML as {type_name(key)}: quote it "
                                          f"('{key}')", line_of(value, key) or line)
    section = checker.section(value, path, line, _FLAG_KEYS, required)
    return {flag: rate_from_decimal(section.get(flag), checker, section.key_path(flag), section.line_of(flag))
            for flag in value}


def parse_fee_schedule(document, checker: Checker, symbols: tuple[str, ...] = (), source: str = "") -> FeeSchedule:
    """A ``FeeSchedule`` from a parsed fees document; every problem is ``checker``'s error with the key
    path (and line). ``symbols``: when given, the only symbols a ``symbols`` entry may name."""
    top = checker.section(document, "", 1, ("default", "symbols"), ("default",),
                          hints={"default": "the rates of every symbol: A, R and other, dollars per share"})
    default = _rates(top.get("default"), checker, "default", top.line_of("default"), ("A", "R", OTHER))
    other = default.pop(OTHER)
    overrides: dict[str, dict[str, int]] = {}
    if top.get("symbols", None) is not None:
        listed = top.get("symbols")
        if not isinstance(listed, dict):
            checker.expected("a mapping of symbol to rates", listed, "symbols", top.line_of("symbols"))
        for symbol, rates in listed.items():
            path, line = join("symbols", symbol), line_of(listed, symbol) or top.line_of("symbols")
            if not isinstance(symbol, str):
                checker.fail(path, f"expected a symbol, got {type_name(symbol)}", line)
            if symbols and symbol not in symbols:
                checker.fail(path, f"{symbol!r} is not a layout symbol ({', '.join(symbols)})", line)
            rates = _rates(rates, checker, path, line, ())
            if OTHER in rates:
                checker.fail(join(path, OTHER), "'other' is the schedule's (default.other), not a symbol's",
                             line_of(listed[symbol], OTHER) or line)
            overrides[symbol] = rates
    return FeeSchedule(default, other, overrides, source)
