"""The report's four plots as PNG bytes: equity curve, inventory per symbol, drawdown, fill markouts.

matplotlib on its Agg canvas (no pyplot: no global figure state, no display), imported here only,
so a backtest that writes no report never loads it. PNG metadata carries no software version or
date, so the same record gives the same bytes (with the same matplotlib and its bundled font).
"""
from __future__ import annotations

import io
from fractions import Fraction

from appliance.messages.codes import PRICE_SCALE
from appliance.wire.venue_time import NS_PER_HOUR

from .metrics import Curve, drawdowns, markout_key, ordered_fills
from .record import MARKOUT_HORIZONS_S, BacktestRecord

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 3.6, 100
PNG_METADATA = {"Software": None}           # matplotlib writes its version here otherwise


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def _hours(time_ns: int) -> float:
    return time_ns / NS_PER_HOUR


SECONDS_BELOW_HOURS = 1 / 6                   # a day shorter than 10 minutes: ticks say the seconds too


def clock(seconds: int, with_seconds: bool) -> str:
    """HH:MM (or HH:MM:SS) of seconds since midnight."""
    text = f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}"
    return f"{text}:{seconds % 60:02d}" if with_seconds else text


def _clock_axis(axes) -> None:
    """Event time on the x axis as HH:MM, HH:MM:SS for a short day (the axis holds hours since midnight)."""
    from matplotlib.ticker import FuncFormatter
    low, high = axes.get_xlim()
    with_seconds = high - low < SECONDS_BELOW_HOURS
    axes.xaxis.set_major_formatter(FuncFormatter(lambda hours, _: clock(round(hours * 3600), with_seconds)))
    axes.set_xlabel("event time (UTC)")
    axes.grid(True, alpha=0.3)


def _dollars(values: list[Fraction]) -> list[float]:
    return [float(v / PRICE_SCALE) for v in values]


def equity_png(total: Curve) -> bytes:
    figure = _figure()
    axes = figure.add_subplot()
    hours = [_hours(t) for t in total.times]
    # marked only at the equity points: points joined by lines, never steps (a step drawn at the next
    # point showed a minute's loss as if it happened at that point's instant)
    marker = "o" if len(hours) <= 60 else None
    axes.plot(hours, _dollars(total.gross), label="gross P&L", color="#1f77b4", marker=marker, markersize=3)
    axes.plot(hours, _dollars(total.net), label="net P&L (after fees)", color="#2ca02c", marker=marker, markersize=3)
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_title("Equity curve (at the equity points)")
    axes.set_ylabel("dollars")
    axes.legend(loc="best")
    _clock_axis(axes)
    return _png(figure)


def drawdown_png(total: Curve) -> bytes:
    figure = _figure()
    axes = figure.add_subplot()
    hours = [_hours(t) for t in total.times]
    under = [-v for v in _dollars(drawdowns(total.net))]
    axes.fill_between(hours, under, 0, color="#d62728", alpha=0.4)
    axes.plot(hours, under, color="#d62728", marker="o" if len(hours) <= 60 else None, markersize=3)
    axes.set_title("Drawdown of net P&L from its running peak")
    axes.set_ylabel("dollars")
    _clock_axis(axes)
    return _png(figure)


def inventory_png(record: BacktestRecord, symbols: list[str]) -> bytes:
    figure = _figure()
    axes = figure.add_subplot()
    start, end = _hours(record.start_ns), _hours(max(record.end_ns, record.start_ns))
    positions = dict.fromkeys(symbols, 0)
    series = {s: ([start], [0]) for s in symbols}
    for fill in ordered_fills(record):
        positions[fill.symbol] += fill.shares if fill.side == "B" else -fill.shares
        hours, held = series[fill.symbol]
        hours.append(_hours(fill.time_ns))
        held.append(positions[fill.symbol])
    for symbol in symbols:
        hours, held = series[symbol]
        axes.plot(hours + [end], held + [held[-1]], label=symbol, drawstyle="steps-post")
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_title("Inventory per symbol")
    axes.set_ylabel("shares")
    if symbols:
        axes.legend(loc="best", ncol=min(len(symbols), 5), fontsize="small")
    _clock_axis(axes)
    return _png(figure)


def markouts_png(total: dict, per_symbol: dict[str, dict]) -> bytes:
    """Grouped bars: per horizon, the total's average markout and each symbol's (missing: no bar)."""
    figure = _figure()
    axes = figure.add_subplot()
    groups = [("all", total)] + list(per_symbol.items())
    width = 0.8 / len(groups)
    for i, (name, numbers) in enumerate(groups):
        xs, ys = [], []
        for h, horizon in enumerate(MARKOUT_HORIZONS_S):
            value = numbers["markouts"][markout_key(horizon)]
            if value is not None:
                xs.append(h - 0.4 + width * (i + 0.5))
                ys.append(value)
        axes.bar(xs, ys, width=width, label=name, color="black" if name == "all" else None)
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_xticks(range(len(MARKOUT_HORIZONS_S)), [f"{h} s after the fill" for h in MARKOUT_HORIZONS_S])
    axes.set_title("Fill markouts (share-weighted; positive = the market moved our way)")
    axes.set_ylabel("dollars per share")
    axes.legend(loc="best", ncol=min(len(groups), 6), fontsize="small")
    axes.grid(True, axis="y", alpha=0.3)
    return _png(figure)
