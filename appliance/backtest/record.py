"""What one backtest run produced: the facts the report computes every number from.

The engine (``engine.py``) fills a ``BacktestRecord`` as it replays a day; the report
(``report.py``) reads nothing else, so a report can be recomputed, tested on a hand-made day and
compared between runs. Units as on the order path: prices in price units (4 implied decimals,
1900100 is $190.01), fees in price units x shares (1e-4 dollars, positive a charge, negative a
rebate), times in ns since midnight of the day (the ITCH timestamp), event time, never wall time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MARKOUT_HORIZONS_S = (1, 10, 60)        # the markouts the report shows, seconds after a fill
EQUITY_INTERVAL_NS = 60_000_000_000     # the equity curve's step (Sharpe uses per-minute returns)


@dataclass(frozen=True)
class BacktestFill:
    """One execution of one of our orders at the simulated venue."""
    time_ns: int                         # event time the fill happened at the venue
    symbol: str
    side: str                            # "B" buy or "S" sell (a short sale sells too)
    shares: int
    price: int                           # price units
    liquidity: str                       # OUCH flag: "A" we added (maker), "R" we removed (taker)
    fee: int                             # FeeSchedule.fee of this fill: charge > 0, rebate < 0
    client_order_id: int
    # The symbol's mid (float, price units) MARKOUT_HORIZONS_S seconds after time_ns, by horizon in
    # seconds; None where the day (or the symbol's two-sided book) ended first.
    mid_after: dict[int, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class EquityPoint:
    """The marks at one step of the equity curve (every EQUITY_INTERVAL_NS of event time and at the end)."""
    time_ns: int
    mids: dict[str, float]               # each symbol's mid (price units) at time_ns; a symbol without
                                         # a two-sided book keeps its last known mid, absent if never


@dataclass
class BacktestRecord:
    """Everything a run saw and did; the report is a pure function of it."""
    day_file: str                        # the input's file name (not its path: reports compare across hosts)
    symbols: tuple[str, ...]             # the symbols traded, in the order given
    strategy: str                        # "module:Class" as given
    seed: int
    start_ns: int = 0                    # first and last event time replayed
    end_ns: int = 0
    messages: int = 0                    # ITCH messages read (all symbols, before the filter)
    seconds: float = 0.0                 # wall time of the replay (the only non-deterministic field:
                                         # the report's deterministic part leaves it out)
    intents: int = 0                     # order intents the strategy emitted (new, replace, cancel)
    orders: int = 0                      # new orders that passed risk and reached the venue
    refusals: dict[str, int] = field(default_factory=dict)          # RiskReason name -> count
    refusals_by_symbol: dict[str, dict[str, int]] = field(default_factory=dict)
    fills: list[BacktestFill] = field(default_factory=list)
    equity: list[EquityPoint] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)                # e.g. "file ends mid-message at offset N"
    orders_by_symbol: dict[str, int] = field(default_factory=dict)   # ``orders`` per symbol (fill ratio per symbol)
