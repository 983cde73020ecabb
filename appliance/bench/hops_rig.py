"""``bench hops``: the measured agent in its own process (the real runner, pinned, spinning) and
the driver's tools every hop shares (spin-reading a ring, summaries, pinning, scratch directories)."""
from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from array import array

from appliance.bench.agent_process import AgentProcess, agent_tables



SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ", "TSLA"]
TICK = 100
LAYOUT_PREFIX = "hops"


# ---------------------------------------------------------------------------
# the measured agent: its own process, the real runner, pinned and spinning
# ---------------------------------------------------------------------------

def layout_document(name: str, measured: str, cpu: int, params: dict) -> dict:
    """A private layout of the production shape (its rings and tables), ``measured`` pinned to ``cpu``
    and busy-spinning; the others are declared (ring ends) but never started."""
    quiet = {"strategy": "sleep", "sleep_ns": 1_000_000}
    processes = []
    for process, agent in (("supervisor", "appliance.supervisor.agent:SupervisorAgent"),
                           ("feed", "appliance.feed.agent:FeedAgent"),
                           ("strategy", "appliance.strategy.agent:StrategyAgent"),
                           ("risk", "appliance.risk.agent:RiskAgent"), ("oms", "appliance.oms.agent:OmsAgent")):
        entry = {"name": process, "agent": agent, "idle": quiet}
        if process == measured:
            entry.update(cpu=cpu, idle={"strategy": "busy_spin"}, params=params)
        processes.append(entry)

    def ring(name, producer, consumer, message, slot, capacity):
        return {"name": name, "segment": "main", "producer": producer, "consumer": consumer, "message": message,
                "slot_size": slot, "capacity": capacity}
    return {
        "version": 1, "name": name, "symbols": list(SYMBOLS),
        "segments": [{"name": "main", "backing": "4k", "mode": "0600"}],
        "tables": agent_tables(),
        "rings": [ring("book_updates", "feed", "strategy", "BookUpdate", 192, 65536),
                  ring("order_intents", "strategy", "risk", "OrderIntent", 128, 4096),
                  ring("risk_rejects", "risk", "strategy", "OrderReject", 64, 4096),
                  ring("approved_orders", "risk", "oms", "ApprovedOrder", 128, 4096),
                  ring("exec_to_strategy", "oms", "strategy", "ExecutionReport", 128, 8192),
                  ring("exec_to_risk", "oms", "risk", "ExecutionReport", 128, 8192),
                  ring("risk_commands", "supervisor", "risk", "RiskCommand", 64, 256),
                  ring("risk_events", "risk", "oms", "ControlEvent", 64, 1024)],
        "processes": processes,
    }


class MeasuredAgent(AgentProcess):
    """The shared memory (owned here) and the measured agent's process (``worker`` below)."""

    def __init__(self, measured: str, params: dict, agent_cpu: int, timeout: float, workdir: str,
                 samples_path: str | None = None) -> None:
        import yaml

        self.measured = measured
        self.workdir = workdir
        self.samples_path = samples_path
        layout_path = os.path.join(workdir, "layout.yaml")
        name = f"{LAYOUT_PREFIX}{measured[:4]}{secrets.token_hex(3)}"
        with open(layout_path, "w") as fh:
            yaml.safe_dump(layout_document(name, measured, agent_cpu, params), fh, sort_keys=False)
        command = [sys.executable, "-m", "appliance.bench.hops", "worker", layout_path, measured]
        if samples_path:
            command.append(samples_path)
        super().__init__(layout_path, measured, command, os.path.join(workdir, f"{measured}.log"), timeout,
                         cwd=workdir)

    def stop(self, timeout: float = 10.0) -> array:
        """SIGTERM (the runner ends its loop and closes the agent); the samples the worker wrote, if any."""
        self.terminate(timeout)
        samples = array("q")
        if self.samples_path and os.path.exists(self.samples_path):
            with open(self.samples_path, "rb") as fh:
                samples.frombytes(fh.read())
        return samples


def worker(layout_path: str, process: str, samples_path: str | None) -> int:
    """The measured agent under the real runner (the layout pins it and makes it spin); the OMS also
    records each order's ring-read-to-socket span, written to ``samples_path`` when it stops."""
    import logging

    from appliance.runtime.agent import build_runner
    from appliance.runtime.layout import load_layout
    from appliance.runtime.memory import SharedMemory

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {process}[%(process)d] %(levelname)s %(message)s")
    layout = load_layout(layout_path)
    memory = SharedMemory.attach(layout)
    runner = build_runner(layout, memory, process)
    samples = array("q") if samples_path else None
    if samples is not None:
        agent, on_start = runner.agent, runner.agent.on_start

        def start_sampling() -> None:             # the session the hook stamps exists once started
            on_start()
            agent.sample_ring_to_wire(samples)
        agent.on_start = start_sampling
    status = runner.run()
    if samples is not None:
        with open(samples_path + ".part", "wb") as fh:
            fh.write(samples.tobytes())
        os.replace(samples_path + ".part", samples_path)
    memory.close()
    return status


# ---------------------------------------------------------------------------
# the driver's tools
# ---------------------------------------------------------------------------

class Timeout(RuntimeError):
    pass


def spin_peek(ring, agent: MeasuredAgent, timeout: float, other=None) -> int:
    """Spin until ``ring`` has a slot: its offset (-1: ``other`` had one first, left for the caller to
    release). Checks the clock and the agent every 4096 spins."""
    peek = ring.peek
    other_peek = (lambda: -1) if other is None else other.peek
    spins = 0
    deadline = None
    while True:
        offset = peek()
        if offset >= 0:
            return offset
        if other_peek() >= 0:
            return -1
        spins += 1
        if spins & 4095 == 0:
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now > deadline:
                agent.check_alive()
                raise Timeout(f"no answer from the {agent.measured} agent within {timeout:g} s:\n" + agent.log_tail())


def summary(latencies) -> dict:
    """count, p50/p99/p99.9/max (ns, nearest rank) of a sequence of latencies."""
    from appliance.bench.timing import percentile
    ordered = sorted(latencies)
    if not ordered:
        raise RuntimeError("no samples")
    return {"samples": len(ordered), "p50_ns": percentile(ordered, 0.50), "p99_ns": percentile(ordered, 0.99),
            "p999_ns": percentile(ordered, 0.999), "max_ns": int(ordered[-1])}


def pinned(cpu: int, run):
    """``run()`` with this process pinned to ``cpu`` and the collector paused (restored after)."""
    from appliance.bench.timing import gc_paused
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return gc_paused(run)
    finally:
        os.sched_setaffinity(0, allowed)


def scratch_directory(hop: str) -> str:
    return tempfile.mkdtemp(prefix=f"bench-hops-{hop}-", dir="/tmp")
