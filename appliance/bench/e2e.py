"""``appliance bench e2e``: tick-to-trade of the whole appliance against the simulated exchange.

Runs the repository's layout (renamed, on free ports, in a scratch directory: the sandbox)
with the reference market maker trading against the exchange's background flow until the OMS
has recorded ``--orders`` orders caused by book updates (or ``--seconds`` passed), then reads
the OMS's per-hop histograms (kernel receive -> feed out -> strategy out -> risk out -> bytes
handed to the socket) from shared memory.

The peers compared in the same run are placements of the same appliance: the layout as this
machine resolves it (``layout``: its ``profile: auto`` picks ``small`` on a machine with fewer
CPUs than the production placement pins), the production placement forced (``full``), the small
profile forced (``small``) and the production placement with a gentler backoff that parks sooner
(``gentle``; what the tests use on 2 cores). Each reports CPU per process at the end of its run
(``--background-rate 0``: while the market is quiet) and the bucket holding the largest
tick-to-trade (``max_le_ns``: its upper bound; None when above 100 ms). Percentiles come from the OMS's log-bucketed histograms (six bounds
per decade from 1 us to 100 ms, linear interpolation inside a bucket; beyond 100 ms reads as
100 ms): they are as precise as those buckets, no more.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

from appliance.bench.timing import machine_info
from appliance.command_io.arguments import bounded

TARGET_P50_NS = 20_000
TARGET_P99_NS = 50_000
CONFIGS = ("layout", "full", "small", "gentle")
DEFAULT_CONFIGS = ("layout", "gentle")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=bounded(int, 1, 10_000_000), default=300,
                        help="stop once this many book-driven orders were measured (default 300)")
    parser.add_argument("--seconds", type=bounded(float, 1, 3600), default=40.0,
                        help="at most this long per configuration (default 40)")
    parser.add_argument("--background-rate", type=bounded(float, 0, 200_000), default=3000,
                        help="the exchange's background operations per second (default 3000)")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help=f"placements to run, comma separated, of {','.join(CONFIGS)} "
                             f"(default {','.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--seed", type=bounded(int, 0, 2**31), default=7)


def _configs(text: str) -> list[str]:
    from appliance.command_io.arguments import UsageError
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names or any(c not in CONFIGS for c in names):
        raise UsageError(f"--configs: choose from {', '.join(CONFIGS)} (got {text!r})")
    return names


def _idle_of(layout) -> dict:
    return {name: p.idle.strategy + (f"(spins {p.idle.spins}, park {p.idle.min_park_ns}-{p.idle.max_park_ns} ns)"
                                     if p.idle.strategy == "backoff" else "")
            for name, p in layout.processes.items()}


def measure(config: str, args) -> dict:
    from appliance.oms import latency
    from appliance.sim.sandbox import Sandbox

    workdir = tempfile.mkdtemp(prefix="bench-e2e-", dir="/tmp")
    sandbox = Sandbox(workdir, background_rate=args.background_rate, seed=args.seed,
                      gentle_idle=(config == "gentle"), profile=config if config in ("full", "small") else None)
    started = time.monotonic()
    try:
        sandbox.start(timeout_s=120)
        deadline = started + args.seconds
        count = 0
        while time.monotonic() < deadline:
            count = sandbox.counters().get(latency.count_label("tick_to_trade"), 0)
            if count >= args.orders:
                break
            time.sleep(0.25)
        counters = sandbox.counters()
        status = sandbox.status()
        hists = latency.histograms(counters)
        hops = {}
        for hop, h in hists.items():
            hops[hop] = {"count": h.count, "p50_ns": h.percentile(50), "p99_ns": h.percentile(99),
                         "p999_ns": h.percentile(99.9), "mean_ns": h.mean_ns if h.count else None}
        t2t = hops.pop("tick_to_trade")
        t2t_buckets = hists["tick_to_trade"].buckets
        top = max((i for i, n in enumerate(t2t_buckets) if n), default=None)
        max_le_ns = latency.BOUNDS_NS[top] if top is not None and top < len(latency.BOUNDS_NS) else None
        cpu = {}
        try:
            import psutil
            for name in ("feed", "strategy", "risk", "oms"):
                pid = sandbox.pid_of(name)
                cpu[name] = round(psutil.Process(pid).cpu_percent(interval=0.2), 1)
        except Exception:
            pass
        result = {"config": config, "orders": t2t["count"], "p50_ns": t2t["p50_ns"], "p99_ns": t2t["p99_ns"],
                  "p999_ns": t2t["p999_ns"], "max_le_ns": max_le_ns, "mean_ns": t2t["mean_ns"], "hops": hops,
                  "idle": _idle_of(sandbox.layout), "fills": status["totals"]["fills"],
                  "orders_sent": status["totals"]["orders_sent"], "seconds": round(time.monotonic() - started, 1),
                  "cpu_percent": cpu}
        sandbox.down()
        return result
    finally:
        sandbox.close()
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    configs = _configs(args.configs)
    runs = [measure(config, args) for config in configs]
    main = runs[0]
    dominant = max(main["hops"].items(), key=lambda kv: kv[1]["p50_ns"] or 0)[0] if main["hops"] else None
    report = {
        "results": {"tick_to_trade": {"p50_ns": main["p50_ns"], "p99_ns": main["p99_ns"], "p999_ns": main["p999_ns"],
                                      "orders": main["orders"],
                                      "hops": {h: {"p50_ns": v["p50_ns"], "p99_ns": v["p99_ns"]}
                                               for h, v in main["hops"].items()},
                                      "idle": main["idle"], "dominant_hop": dominant}},
        "runs": runs,
        "ratios": {f"{r['config']}_vs_{main['config']}_p50": (r["p50_ns"] / main["p50_ns"])
                   if r["p50_ns"] and main["p50_ns"] else None for r in runs[1:]},
        "targets": {"p50_ns": TARGET_P50_NS, "p99_ns": TARGET_P99_NS,
                    "note": "on >= 6 cores with busy-spinning pinned processes; this run's machine is below"},
        "machine": {**machine_info(), "cores": os.cpu_count()},
    }
    if getattr(args, "json", False):
        print(json.dumps(report, indent=1))
        return 0
    _print(report)
    return 0


def _us(value) -> str:
    return "-" if value is None else f"{value / 1000:,.1f}"


def _print(report: dict) -> None:
    print(f"tick-to-trade: the whole appliance vs the simulated exchange, {report['machine']['cores']} cores, "
          f"Python {report['machine']['python']}; percentiles from the OMS's log buckets, six per decade up to 100 ms (us)")
    print(f"{'config':<8}{'orders':>8}{'p50':>10}{'p99':>10}{'p99.9':>10}{'max<=':>10}  per hop p50 / p99"
          f"{'':<26}{'vs target p50':>14}")
    print("-" * 110)
    for r in report["runs"]:
        hops = "  ".join(f"{h} {_us(v['p50_ns'])}/{_us(v['p99_ns'])}" for h, v in r["hops"].items())
        ratio = f"{r['p50_ns'] / TARGET_P50_NS:.1f}x" if r["p50_ns"] else "-"
        top = _us(r["max_le_ns"]) if r["max_le_ns"] or not r["orders"] else ">100,000"
        print(f"{r['config']:<8}{r['orders']:>8}{_us(r['p50_ns']):>10}{_us(r['p99_ns']):>10}{_us(r['p999_ns']):>10}"
              f"{top:>10}  "
              f"{hops}  {ratio:>10}")
    for r in report["runs"]:
        print(f"{r['config']}: idle {r['idle']}; CPU % {r['cpu_percent']}; {r['orders_sent']} orders sent, "
              f"{r['fills']} fills in {r['seconds']} s")
    for name, value in report["ratios"].items():
        if value:
            print(f"{name}: {value:.2f}x")
    t = report["results"]["tick_to_trade"]
    print(f"dominant hop (largest p50): {t['dominant_hop']}; targets p50 <= {TARGET_P50_NS / 1000:.0f} us, "
          f"p99 <= {TARGET_P99_NS / 1000:.0f} us apply to >= 6 cores with busy-spinning pinned processes")
