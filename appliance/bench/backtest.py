"""``appliance bench backtest``: the backtest's throughput on a generated day, beside the feed's replay of it.

The day is ``bench feed``'s (``feed_replay.day_file``: ``--symbols`` stocks, default 100, ``--messages``
order messages, cached), and the traded symbols are the ``--subscribed`` ones ``bench feed`` subscribes
(every tenth locate). In one run, on the same bytes:

* ``backtest`` (ours, the headline): ``appliance backtest`` with the reference market maker on those
  symbols (instruments, limits and parameters written for them), the venue model, risk, the host:
  messages of the whole file per second of wall time; target ``TARGET_MSGS_PER_S`` (issue 17);
* ``backtest_idle``: the same with a strategy that does nothing (the engine, feed books and venue alone);
* (every pass also reports this process's CPU seconds for the whole pass, its setup included: on a shared
  machine wall time includes waiting; the ``seconds`` are the timed part only; the backtest passes also
  the CPU seconds of ``Backtest.run`` alone, ``run_cpu_seconds``: the steadiest figure on a busy machine);
* the peers from ``bench feed``'s replay: ``feed_replay`` (scanner + locate filter + ``BookSet`` books) and
  ``feed_compiled`` (``FastFeed.apply_packet`` per MoldUDP64-sized packet), books only.

The generator's books are never crossed (bids below a reference price per symbol, asks above it), so the
market maker quotes them; risk's refusals show in the results (``refusals``).
"""
from __future__ import annotations

import argparse
import time
import tempfile
from pathlib import Path

from appliance.bench.table import fmt
from appliance.command_io.arguments import bounded, positive_int

TARGET_MSGS_PER_S = 2_000_000
DEFAULT_MESSAGES = 2_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from appliance.bench.feed_replay import SEED, SUBSCRIBED, SYMBOLS
    parser.add_argument("--messages", type=positive_int, default=DEFAULT_MESSAGES,
                        help=f"order messages in the generated day (default {DEFAULT_MESSAGES})")
    parser.add_argument("--symbols", type=bounded(int, 1, 9999), default=SYMBOLS, help=f"stocks (default {SYMBOLS})")
    parser.add_argument("--subscribed", type=bounded(int, 1, 9999), default=SUBSCRIBED,
                        help=f"of those, the ones traded (default {SUBSCRIBED})")
    parser.add_argument("--seed", type=bounded(int, 0, 2**63), default=SEED, help=f"generator seed (default {SEED})")
    parser.add_argument("--cache-dir", metavar="DIR", default=None, help="where generated days are kept (as bench feed)")
    parser.add_argument("--queue-model", default="risk-averse", help="the venue's queue model (default risk-averse)")


def _settings(directory: Path, symbols: list[str]) -> dict:
    """Instruments, limits and market-maker parameters for ``symbols`` (files, as the command reads them)."""
    (directory / "instruments.yaml").write_text("version: 1\ninstruments:\n" + "".join(
        f"  - {{symbol: {s}, tick: 0.01, round_lot: 100}}\n" for s in symbols))
    (directory / "limits.yaml").write_text(
        "version: 1\nglobal: {capital: 100000000, max_gross_notional: 50000000, max_net_notional: 50000000, "
        "max_leverage: 1.0, max_daily_loss: 10000000, max_drawdown: 10000000, max_messages_per_second: 100000, "
        "max_open_orders: 1000, max_identical_orders: 1000}\nsectors: {ALL: {max_gross_notional: 50000000}}\n"
        "symbol_defaults: {sector: ALL, max_shares: 1000, max_notional: 1000000, collar_pct: 50, max_long: 5000, "
        "max_short: 5000}\nsymbols:\n" + "".join(f"  {s}: {{}}\n" for s in symbols))
    (directory / "params.yaml").write_text("spread_ticks: 2\nsize: 100\nmax_position: 1000\n")
    return {name: str(directory / f"{name}.yaml") for name in ("instruments", "limits", "params")}


def _idle_class():
    """A strategy that does nothing: what the engine, the books and the venue cost alone."""
    from appliance.strategy.api import Strategy

    class IdleStrategy(Strategy):
        pass
    IdleStrategy.__name__ = "Idle"
    return IdleStrategy


def _backtest(day: str, files: dict, strategy: str, queue_model: str, strategy_class=None) -> dict:
    from appliance.backtest import report
    from appliance.backtest.cli import add_arguments as cli_arguments, build_setup
    from appliance.backtest.engine import Backtest
    from appliance.bench.timing import gc_paused

    parser = argparse.ArgumentParser()
    cli_arguments(parser)
    args = parser.parse_args([day, "--strategy", strategy, "--instruments", files["instruments"], "--limits",
                              files["limits"], "--fees", "none", "--queue-model", queue_model] +
                             (["--params", files["params"]] if strategy_class is None else []))
    setup = build_setup(args)
    if strategy_class is not None:
        from dataclasses import replace
        setup = replace(setup, strategy_class=strategy_class, parameters={})
    backtest = Backtest(setup)
    cpu = time.process_time()
    record = gc_paused(backtest.run)
    run_cpu = time.process_time() - cpu
    results = report.results(record)
    return {"messages": record.messages, "seconds": record.seconds, "msgs_per_s": record.messages / record.seconds,
            "run_cpu_seconds": run_cpu, "run_cpu_msgs_per_s": record.messages / run_cpu if run_cpu else None,
            "orders": record.orders, "intents": record.intents, "fills": len(record.fills),
            "refusals": record.refusals, "pnl_net": results["pnl_net"]}


def run(args: argparse.Namespace) -> int:
    from appliance.bench import feed_replay
    from appliance.bench.timing import publish

    cache = Path(args.cache_dir) if args.cache_dir else feed_replay.default_cache_dir()
    errors: dict = {}
    results: dict = {}
    day = feed_replay.day_file(args.messages, args.seed, args.symbols, cache)
    data = Path(day["path"]).read_bytes()
    names = feed_replay.directory_symbols(data, args.symbols)
    step = max(args.symbols // args.subscribed, 1)
    traded = [names[i * step] for i in range(min(args.subscribed, len(names)))]
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        files = _settings(Path(tmp), traded)
        for name, run_one in (
                ("backtest", lambda: _backtest(day["path"], files, "appliance.strategy.market_maker:MarketMaker",
                                               args.queue_model)),
                ("backtest_idle", lambda: _backtest(day["path"], files, "appliance.strategy.market_maker:MarketMaker",
                                                    args.queue_model, _idle_class())),
                ("feed_replay", lambda: feed_replay._books_pass(data, len(data), traded)[0]),
                ("feed_compiled", lambda: feed_replay._publish_pass(data, len(data), traded, compiled=True))):
            try:
                cpu = time.process_time()
                results[name] = result = run_one()
                result["cpu_seconds"] = time.process_time() - cpu       # this process's CPU: the machine is shared
                result["cpu_msgs_per_s"] = result["messages"] / result["cpu_seconds"] if result["cpu_seconds"] else None
            except Exception as exc:  # noqa: BLE001 - one failed pass is reported, the others still run
                errors[name] = f"{type(exc).__name__}: {exc}"
    headline = results.get("backtest")
    ratios = {}
    if headline:
        for peer in ("backtest_idle", "feed_replay", "feed_compiled"):
            if peer in results:
                ratios[f"backtest_vs_{peer}"] = headline["msgs_per_s"] / results[peer]["msgs_per_s"]
    return publish("backtest", results, errors, args.json, _print_table, day=day, traded=traded, ratios=ratios,
                   target={"msgs_per_s": TARGET_MSGS_PER_S,
                           "met": bool(headline and headline["msgs_per_s"] >= TARGET_MSGS_PER_S)})


def _print_table(report: dict) -> None:
    day = report["day"]
    print(f"day: {day['path']} ({day['messages']:,} messages, {day['bytes']:,} bytes); traded: "
          f"{', '.join(report['traded'])}")
    print(f"{'pass':<16}{'messages':>12}{'seconds':>10}{'M msg/s':>10}{'CPU s':>8}{'M msg/CPU s':>13}"
          f"{'M msg/run CPU s':>17}{'orders':>10}{'fills':>8}")
    for name, r in report["results"].items():
        print(f"{name:<16}{fmt(r.get('messages')):>12}{fmt(r.get('seconds'), '.2f'):>10}"
              f"{fmt(r.get('msgs_per_s') / 1e6 if r.get('msgs_per_s') else None, '.2f'):>10}"
              f"{fmt(r.get('cpu_seconds'), '.2f'):>8}"
              f"{fmt(r.get('cpu_msgs_per_s') / 1e6 if r.get('cpu_msgs_per_s') else None, '.2f'):>13}"
              f"{fmt(r.get('run_cpu_msgs_per_s') / 1e6 if r.get('run_cpu_msgs_per_s') else None, '.2f'):>17}"
              f"{fmt(r.get('orders')):>10}{fmt(r.get('fills')):>8}")
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio:.2f}x")
    refusals = report["results"].get("backtest", {}).get("refusals")
    if refusals:
        print(f"backtest risk refusals: {refusals}")
    target = report["target"]
    print(f"target {target['msgs_per_s']:,} msg/s: {'met' if target['met'] else 'not met'}")
    for name, error in report["errors"].items():
        print(f"{name}: ERROR {error}")
