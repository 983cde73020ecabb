"""What every benchmark needs around its numbers: the timer's own cost, percentiles, the machine."""
from __future__ import annotations

import gc
import json
import math
import os
import platform
import time
from array import array


def timer_overhead_ns(samples: int = 200_000) -> int:
    """The median cost of one ``t0 = perf_counter_ns(); t1 = perf_counter_ns(); lat[i] = t1 - t0``."""
    pc = time.perf_counter_ns
    latencies = array("q", bytes(8 * samples))
    gc.collect()
    gc.disable()
    try:
        for i in range(samples):
            t0 = pc()
            t1 = pc()
            latencies[i] = t1 - t0
    finally:
        gc.enable()
    return sorted(latencies)[samples // 2]


def gc_paused(run):
    """``run()`` with the collector emptied first and off meanwhile: a timed pass is not charged for a
    collection that garbage from before it would have caused."""
    gc.collect()
    gc.disable()
    try:
        return run()
    finally:
        gc.enable()


def timed(run) -> tuple:
    """``(run(), seconds)`` of one pass, the collector paused (``gc_paused``)."""
    def clocked():
        started = time.perf_counter()
        value = run()
        return value, time.perf_counter() - started
    return gc_paused(clocked)


def percentile(ordered, q: float) -> int:
    """Nearest-rank percentile (``q`` in 0..1) of an already sorted, non-empty sequence."""
    n = len(ordered)
    return int(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))])


def machine_info() -> dict:
    """CPU model, the CPUs this process may use, kernel and Python: printed with every result."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu_model": model, "cpus_allowed": sorted(os.sched_getaffinity(0)), "kernel": platform.release(),
            "python": platform.python_version()}


def publish(name: str, results: dict, errors: dict, as_json: bool, print_table, **sections) -> int:
    """The one shape of every benchmark's report: ``{"benchmark", "machine", "results", <sections>,
    "errors"}`` as one JSON line (``--json``) or ``print_table(report)``; exit status 1 if anything failed."""
    report = {"benchmark": name, "machine": sections.pop("machine", None) or machine_info(), "results": results,
              **sections, "errors": errors}
    if as_json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 1 if errors else 0
