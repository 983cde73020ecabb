"""The report's numbers, computed from a ``BacktestRecord`` alone (the engine's facts, ``record.py``).

Units (one rule, everywhere in the report): money (P&L, fees, rebates, turnover, drawdown) in
dollars rounded half-even to cents; markouts in dollars per share rounded to millionths (the fee
file's precision); shares as integers, average inventory to 1/100 share; shares of volume and
ratios as fractions in [0, 1] to 6 decimals; Sharpe to 4 decimals. Everything is computed exactly
(integers and fractions of the record's price units and float mids) and rounded once, at the end,
so the same record gives the same numbers on every machine.

P&L: gross = realized + marked = cash of our fills + position x mark, where the mark of a symbol
is its mid in the equity point (the last one for the totals) or, for a symbol that never had a
two-sided book there, the last price we traded it at; net = gross - fees (rebates are negative
fees, so they add to net).

Sharpe (``SHARPE_FORMULA``): the net equity curve is sampled at the record's equity points
(every minute of event time and at the end; 0 at the start of the day); r_i = E_i - E_(i-1) in
dollars over each interval of exactly one minute (a shorter last one is left out: its P&L is in
the totals, not in a per-minute statistic); Sharpe = mean(r) / stdev(r) x sqrt(252 x 390), stdev
the sample standard deviation (n - 1), None with fewer than two returns or no variation. The
returns are dollar P&L per minute, not percentages of a capital the backtest does not know, so the
number compares runs of one strategy, not strategies of different sizes.

Max drawdown: the largest fall of net equity from its running peak (the peak starts at 0), at
the equity points, dollars, >= 0.

Inventory: the average is time-weighted over [start, end] of the day replayed, of |position|
per symbol (of the sum of |position| over symbols in the total); the max is the largest
|position| (sum) after any fill.

Markouts: for a fill of ``shares`` at ``price`` and the symbol's mid h seconds later,
side x (mid - price), side +1 for a buy and -1 for a sell: positive when the market moved our way
after the fill (a market maker's adverse selection shows as negative markouts). Averaged over
shares, of the fills whose later mid is known; None when no fill has one.

Fill ratio: orders with at least one fill / orders that reached the venue. Maker (taker) share:
shares filled adding (removing) liquidity / shares filled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from appliance.messages.codes import PRICE_SCALE

from .record import EQUITY_INTERVAL_NS, MARKOUT_HORIZONS_S, BacktestFill, BacktestRecord

TRADING_MINUTES_PER_YEAR = 252 * 390          # NASDAQ regular session: 6.5 h, 252 days a year
SHARPE_FORMULA = ("Sharpe = mean(r) / stdev(r) x sqrt(252 x 390), r = per-minute changes of net P&L "
                  "(dollars) between equity points one minute apart, stdev with n - 1")
MAKER, TAKER = "A", "R"                       # the OUCH liquidity flags of an add and a remove


def dollars(units) -> float:
    """Price units x shares (1e-4 dollars; int or Fraction) -> dollars, half-even to cents."""
    return float(round(Fraction(units) / PRICE_SCALE, 2))


def per_share(units) -> float:
    """Price units per share -> dollars per share, half-even to millionths."""
    return float(round(Fraction(units) / PRICE_SCALE, 6))


def ratio(part, whole) -> float | None:
    return float(round(Fraction(part, whole), 6)) if whole else None


def markout_key(horizon_s: int) -> str:
    return f"{horizon_s}s"


@dataclass
class Ledger:
    """One symbol's (or the book's) running state as the fills are applied in order."""
    position: int = 0
    cash: int = 0                      # -(signed shares x price) summed: price units x shares
    fees: int = 0                      # charges > 0, rebates < 0
    last_price: int = 0                # the last fill's price: the mark when no mid is known

    def apply(self, fill: BacktestFill) -> None:
        signed = fill.shares if fill.side == "B" else -fill.shares
        self.position += signed
        self.cash -= signed * fill.price
        self.fees += fill.fee
        self.last_price = fill.price

    def gross(self, mid: float | None) -> Fraction:
        mark = Fraction(mid) if mid is not None else Fraction(self.last_price)
        return self.cash + self.position * mark


@dataclass
class Curve:
    """A P&L curve at the equity points: times (ns), gross and net equity (price units x shares)."""
    times: list[int] = field(default_factory=list)
    gross: list[Fraction] = field(default_factory=list)
    net: list[Fraction] = field(default_factory=list)

    def add(self, time_ns: int, gross: Fraction, fees: int) -> None:
        self.times.append(time_ns)
        self.gross.append(gross)
        self.net.append(gross - fees)


def symbols_of(record: BacktestRecord) -> list[str]:
    """The symbols given, then any other a fill or refusal names (in order of appearance)."""
    seen = dict.fromkeys(record.symbols)
    seen.update(dict.fromkeys(f.symbol for f in record.fills))
    seen.update(dict.fromkeys(record.refusals_by_symbol))
    return list(seen)


def ordered_fills(record: BacktestRecord) -> list[BacktestFill]:
    """The fills in event-time order (stable: the engine's order among equal times)."""
    return sorted(record.fills, key=lambda f: f.time_ns)


def curves(record: BacktestRecord) -> tuple[Curve, dict[str, Curve]]:
    """The whole book's curve and each symbol's, with 0 at the start of the day when the first
    equity point comes later."""
    symbols = symbols_of(record)
    ledgers = {s: Ledger() for s in symbols}
    total, per_symbol = Curve(), {s: Curve() for s in symbols}
    if not record.equity or record.equity[0].time_ns > record.start_ns:
        for curve in (total, *per_symbol.values()):
            curve.add(record.start_ns, Fraction(0), 0)
    fills = ordered_fills(record)
    i = 0
    for point in record.equity:
        while i < len(fills) and fills[i].time_ns <= point.time_ns:
            ledgers[fills[i].symbol].apply(fills[i])
            i += 1
        gross_sum, fees_sum = Fraction(0), 0
        for symbol, ledger in ledgers.items():
            gross = ledger.gross(point.mids.get(symbol))
            per_symbol[symbol].add(point.time_ns, gross, ledger.fees)
            gross_sum += gross
            fees_sum += ledger.fees
        total.add(point.time_ns, gross_sum, fees_sum)
    return total, per_symbol


def sharpe(curve: Curve) -> float | None:
    """``SHARPE_FORMULA`` over a net equity curve (price units x shares)."""
    times, net = curve.times, curve.net
    returns = [Fraction(net[i] - net[i - 1], PRICE_SCALE) for i in range(1, len(net))
               if times[i] - times[i - 1] == EQUITY_INTERVAL_NS]
    if len(returns) < 2:
        return None
    mean = sum(returns, Fraction(0)) / len(returns)
    variance = sum(((r - mean) ** 2 for r in returns), Fraction(0)) / (len(returns) - 1)
    if variance == 0:
        return None
    return round(float(mean) / math.sqrt(variance) * math.sqrt(TRADING_MINUTES_PER_YEAR), 4)


def drawdowns(net: list[Fraction]) -> list[Fraction]:
    """Peak-to-here falls of net equity at each point (the peak starts at 0)."""
    peak, falls = Fraction(0), []
    for value in net:
        peak = max(peak, value)
        falls.append(peak - value)
    return falls


def inventory_steps(fills: list[BacktestFill], symbols: list[str]) -> list[tuple[int, int]]:
    """(time, sum of |position| over ``symbols``) after each fill of theirs, in order."""
    wanted, positions, steps = set(symbols), dict.fromkeys(symbols, 0), []
    for fill in fills:
        if fill.symbol in wanted:
            positions[fill.symbol] += fill.shares if fill.side == "B" else -fill.shares
            steps.append((fill.time_ns, sum(abs(p) for p in positions.values())))
    return steps


def average_inventory(steps: list[tuple[int, int]], start_ns: int, end_ns: int) -> float:
    """Time-weighted |position| over [start_ns, end_ns] (the last step's when the day has no length)."""
    if not steps:
        return 0.0
    if end_ns <= start_ns:
        return float(steps[-1][1])
    area, held, since = 0, 0, start_ns
    for time_ns, inventory in steps:
        time_ns = min(max(time_ns, start_ns), end_ns)
        area += held * (time_ns - since)
        held, since = inventory, time_ns
    area += held * (end_ns - since)
    return float(round(Fraction(area, end_ns - start_ns), 2))


def markouts(fills: list[BacktestFill]) -> dict[str, float | None]:
    """Share-weighted average markout per horizon, dollars per share (see the module's docstring)."""
    result = {}
    for horizon in MARKOUT_HORIZONS_S:
        moved, shares = Fraction(0), 0
        for fill in fills:
            mid = fill.mid_after.get(horizon)
            if mid is not None:
                side = 1 if fill.side == "B" else -1
                moved += side * (Fraction(mid) - fill.price) * fill.shares
                shares += fill.shares
        result[markout_key(horizon)] = per_share(moved / shares) if shares else None
    return result


def summary(record: BacktestRecord, symbols: list[str], curve: Curve, orders: int | None,
            refusals: dict[str, int]) -> dict:
    """Every number of the report over the fills of ``symbols`` (one symbol, or all for the total)."""
    wanted = set(symbols)
    fills = [f for f in ordered_fills(record) if f.symbol in wanted]
    shares = sum(f.shares for f in fills)
    bought = sum(f.shares for f in fills if f.side == "B")
    fees = sum(f.fee for f in fills)
    gross = marked_gross(fills, record.equity[-1].mids if record.equity else {})
    falls = drawdowns(curve.net)
    steps = inventory_steps(fills, symbols)
    filled_orders = len({f.client_order_id for f in fills})
    return {
        "orders": orders,
        "fills": len(fills),
        "filled_orders": filled_orders,
        "fill_ratio": ratio(filled_orders, orders) if orders is not None else None,
        "shares_bought": bought,
        "shares_sold": shares - bought,
        "maker_share": ratio(sum(f.shares for f in fills if f.liquidity == MAKER), shares),
        "taker_share": ratio(sum(f.shares for f in fills if f.liquidity == TAKER), shares),
        "turnover": dollars(sum(f.shares * f.price for f in fills)),
        "pnl_gross": dollars(gross),
        "fees": dollars(fees),
        "fees_paid": dollars(sum(f.fee for f in fills if f.fee > 0)),
        "rebates": dollars(-sum(f.fee for f in fills if f.fee < 0)),
        "pnl_net": dollars(gross - fees),
        "sharpe": sharpe(curve),
        "max_drawdown": dollars(max(falls, default=0)),
        "avg_inventory": average_inventory(steps, record.start_ns, record.end_ns),
        "max_inventory": max((inventory for _, inventory in steps), default=0),
        "markouts": markouts(fills),
        "refusals": dict(sorted(refusals.items())),
    }


def marked_gross(fills: list[BacktestFill], mids: dict[str, float]) -> Fraction:
    """Realized + marked P&L of ``fills``: each open position at its symbol's mid in ``mids`` (the last
    equity point's), or at its last fill's price when the point has none."""
    ledgers: dict[str, Ledger] = {}
    for fill in fills:
        ledgers.setdefault(fill.symbol, Ledger()).apply(fill)
    return sum((ledger.gross(mids.get(symbol)) for symbol, ledger in ledgers.items()), Fraction(0))


def all_numbers(record: BacktestRecord) -> tuple[dict, dict[str, dict]]:
    """The total's numbers and each symbol's (symbols in ``symbols_of`` order)."""
    total_curve, symbol_curves = curves(record)
    symbols = symbols_of(record)
    total = summary(record, symbols, total_curve, record.orders, record.refusals)
    per_symbol = {}
    for symbol in symbols:
        numbers = summary(record, [symbol], symbol_curves[symbol], record.orders_by_symbol.get(symbol, 0),
                          record.refusals_by_symbol.get(symbol, {}))
        fills = [f for f in record.fills if f.symbol == symbol]
        numbers["position"] = sum(f.shares if f.side == "B" else -f.shares for f in fills)
        per_symbol[symbol] = numbers
    return total, per_symbol

