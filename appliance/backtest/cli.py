"""``appliance backtest DAYFILE``: a recorded ITCH day through the strategy, risk and the replay venue.

The symbols with books, risk limits and a place in the strategy's world are the instruments file's
(``--instruments``, default config/instruments.yaml, as the layout takes them); ``--symbols`` picks the
ones the strategy trades (default: all). The limits file, the strategy's parameters file and the fee
schedule are read by the same loaders as live, and their errors read the same (file, line, key,
reason). Exit status: 0 done, 1 the day file is bad, 2 a bad argument or configuration file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from appliance.command_io.arguments import UsageError, bounded

DEFAULT_STRATEGY = "appliance.strategy.market_maker:MarketMaker"
DEFAULT_LIMITS = "config/risk_limits.yaml"
DEFAULT_INSTRUMENTS = "config/instruments.yaml"
DEFAULT_FEES = "config/fees.yaml"


def _time_of_day(text: str) -> int:
    """HH:MM or HH:MM:SS -> ns since midnight (the day file's clock)."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        hours, minutes = int(parts[0]), int(parts[1])
        seconds = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HH:MM or HH:MM:SS") from None
    if not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 60):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time of day")
    return ((hours * 60 + minutes) * 60 + seconds) * 1_000_000_000


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from appliance.replay.queue import MODELS
    parser.add_argument("day_file", metavar="DAYFILE", help="ITCH 5.0 BinaryFILE, plain or gzip (the simulated "
                        "exchange's --records DIR writes DIR/itch.bin)")
    parser.add_argument("--strategy", default=DEFAULT_STRATEGY, metavar="module:Class | path.py:Class",
                        help=f"the Strategy class (default {DEFAULT_STRATEGY})")
    parser.add_argument("--params", metavar="F", help="the strategy's parameters file (YAML; default: the class's "
                        "defaults)")
    parser.add_argument("--limits", default=DEFAULT_LIMITS, metavar="F", help=f"risk limits (default {DEFAULT_LIMITS})")
    parser.add_argument("--instruments", default=DEFAULT_INSTRUMENTS, metavar="F",
                        help=f"the symbols with their tick and round lot (default {DEFAULT_INSTRUMENTS})")
    parser.add_argument("--symbols", metavar="A,B", help="the symbols traded (default: every instrument)")
    parser.add_argument("--from", dest="start", type=_time_of_day, metavar="HH:MM",
                        help="the strategy starts here (the day file's clock; books are built from the start)")
    parser.add_argument("--to", dest="end", type=_time_of_day, metavar="HH:MM", help="the day ends here")
    parser.add_argument("--fees", default=DEFAULT_FEES, metavar="F",
                        help=f"fee schedule (default {DEFAULT_FEES}; 'none' for no fees)")
    parser.add_argument("--latency", default=None, metavar="SPEC",
                        help="feed=NS,entry=NS,ack=NS (defaults 20000,30000,30000), 'zero', or a run's JSON "
                             "(bench e2e --json, status --json) optionally followed by ,ack=NS")
    parser.add_argument("--queue-model", default="risk-averse", metavar="NAME",
                        help=f"queue position model: {', '.join(MODELS)} (default risk-averse)")
    parser.add_argument("--seed", type=bounded(int, 0, 2**63 - 1), default=0, help="seed of the queue model's draws")
    parser.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD",
                        help="the day's date for the strategy's and risk's clocks (default 2026-01-05)")
    parser.add_argument("--report", metavar="DIR", help="write report.json and report.html into DIR")
    parser.add_argument("--json", action="store_true", help='print {"results": ...} as one JSON object')


def build_setup(args):
    """The ``BacktestSetup`` from the options: every file loaded and checked (UsageError otherwise)."""
    import dataclasses

    from appliance.backtest.engine import DEFAULT_DATE, BacktestSetup
    from appliance.config.instruments import Instruments, load_instruments
    from appliance.replay import queue
    from appliance.replay.latency import Latency
    from appliance.risk.limits import load_limits
    from appliance.strategy.config import StrategyConfig
    from appliance.strategy.fees import NO_FEES
    from appliance.strategy.loader import load_strategy

    if not os.path.isfile(args.day_file):
        raise UsageError(f"{args.day_file}: no such file")
    try:
        instruments = load_instruments(args.instruments)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    universe = instruments.symbols
    if args.symbols is not None:
        traded = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
        if not traded:
            raise UsageError("--symbols names no symbol")
        unknown = [s for s in traded if s not in universe]
        if unknown:
            raise UsageError(f"--symbols: {', '.join(unknown)} not in {args.instruments} ({', '.join(universe)})")
        if len(set(traded)) != len(traded):
            raise UsageError("--symbols names a symbol twice")
        universe = tuple(s for s in instruments.symbols if s in traded)   # books only for the traded symbols
        instruments = Instruments(tuple(dataclasses.replace(instruments[s], symbol_id=i)
                                        for i, s in enumerate(universe)), instruments.file)
    else:
        traded = universe
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError("--to must be after --from")
    try:
        latency = Latency.parse(args.latency) if args.latency is not None else Latency()
        queue.make(args.queue_model, args.seed)
        limits = load_limits(args.limits, universe, instruments=instruments)
        config = StrategyConfig(strategy=args.strategy, strategy_id=1, parameters=None if args.params else {},
                                parameters_file=args.params, symbols=traded)
        loaded = load_strategy(config, key_path="backtest", layout_symbols=universe, instruments=instruments)
        fees = NO_FEES
        if args.fees != "none":
            from appliance.strategy.loader import load_fee_schedule
            if not os.path.isfile(args.fees):
                raise UsageError(f"--fees {args.fees}: no such file")
            fees = load_fee_schedule(args.fees, universe)
    except UsageError:
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return BacktestSetup(day_file=args.day_file, strategy_spec=args.strategy, strategy_class=loaded.strategy_class,
                         parameters=loaded.parameters, limits=limits, instruments=instruments, symbols=universe,
                         traded=traded, fees=fees, latency=latency, queue_model=args.queue_model, seed=args.seed,
                         start_ns=args.start, end_ns=args.end, date=args.date or DEFAULT_DATE)


class ProgressLine:
    """One line on a terminal, rewritten in place: messages, share of the file, msgs/s, ETA, fills, P&L."""

    def __init__(self, stream):
        self.stream = stream
        self.shown = False

    def __call__(self, p: dict) -> None:
        eta = f"{p['eta_s']:.0f} s" if p["eta_s"] is not None else "?"
        line = (f"{p['messages']:,} msgs  {100 * p['share']:5.1f}%  {p['msgs_per_s'] / 1e6:.2f} M msg/s  "
                f"ETA {eta}  fills {p['fills']:,}  realized P&L ${p['realized_pnl'] / 1e4:,.2f}")
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run(args) -> int:
    from appliance.backtest import report
    from appliance.backtest.engine import Backtest, BacktestError

    setup = build_setup(args)
    progress = ProgressLine(sys.stderr) if not args.json and sys.stderr.isatty() else None
    try:
        record = Backtest(setup).run(progress)
    except BacktestError as exc:
        if progress is not None:
            progress.done()
        print(f"appliance backtest: {exc}", file=sys.stderr)
        return 1
    if progress is not None:
        progress.done()
    for warning in record.warnings:
        print(f"appliance backtest: warning: {warning}", file=sys.stderr)
    results = report.results(record)
    if args.report:
        try:
            report.write_report(record, args.report)
        except OSError as exc:
            print(f"appliance backtest: cannot write the report into {args.report}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"results": results}, sort_keys=False))
    else:
        _print_summary(record, results, args.report)
    return 0


def _print_summary(record, results: dict, directory: str | None) -> None:
    rate = results.get("msgs_per_s")
    print(f"{record.day_file}: {record.messages:,} ITCH messages in {record.seconds:.2f} s"
          f"{f' ({rate / 1e6:.2f} M msg/s)' if rate else ''}")
    print(f"strategy {record.strategy} on {', '.join(record.symbols)}, seed {record.seed}")
    print(f"orders {results['orders']}, fills {results['fills']}, P&L gross {results['pnl_gross']} "
          f"net {results['pnl_net']}, fees {results['fees']}, Sharpe {results['sharpe']}, "
          f"max drawdown {results['max_drawdown']}")
    print(f"markouts {results['markouts']}")
    if results["refusals"]:
        print(f"risk refusals {results['refusals']}")
    if directory:
        print(f"report: {os.path.join(directory, 'report.html')}")
