"""``bench hops``: the measured agent in its own process (the real runner, pinned, spinning) and
the driver's tools every hop shares (spin-reading a ring, summaries, pinning, scratch directories)."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from array import array



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
        "tables": [{"name": "counters", "kind": "counters", "segment": "main", "slots_per_process": 256},
                   {"name": "processes", "kind": "processes", "segment": "main"},
                   {"name": "market_state", "kind": "market_state", "segment": "main"},
                   {"name": "positions", "kind": "positions", "segment": "main"},
                   {"name": "control", "kind": "control", "segment": "main"}],
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


class MeasuredAgent:
    """The shared memory (owned here) and the measured agent's process (``worker`` below)."""

    def __init__(self, measured: str, params: dict, agent_cpu: int, timeout: float, workdir: str,
                 samples_path: str | None = None) -> None:
        import yaml

        from appliance.runtime.counters import ProcessState
        from appliance.runtime.layout import load_layout
        from appliance.runtime.memory import SharedMemory
        from appliance.sim.exchange_process import appliance_env

        self.memory = self.proc = self._log = None
        self.measured = measured
        self.workdir = workdir
        self.samples_path = samples_path
        self.layout_path = os.path.join(workdir, "layout.yaml")
        name = f"{LAYOUT_PREFIX}{measured[:4]}{secrets.token_hex(3)}"
        with open(self.layout_path, "w") as fh:
            yaml.safe_dump(layout_document(name, measured, agent_cpu, params), fh, sort_keys=False)
        self.log_path = os.path.join(workdir, f"{measured}.log")
        try:
            self.layout = load_layout(self.layout_path)
            self.memory = SharedMemory.create(self.layout)
            self._log = open(self.log_path, "wb")
            command = [sys.executable, "-m", "appliance.bench.hops", "worker", self.layout_path, measured]
            if samples_path:
                command.append(samples_path)
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=appliance_env(), cwd=workdir)
            table = self.memory.process_table()
            deadline = time.monotonic() + timeout
            while table.read(measured).state is not ProcessState.RUNNING:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the {measured} agent exited {self.proc.returncode} before running:\n"
                                       + self.log_tail())
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {measured} agent was not running within {timeout:g} s:\n"
                                       + self.log_tail())
                time.sleep(0.01)
        except BaseException:
            self.close()
            raise

    def log_tail(self, lines: int = 10) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.measured} agent exited {self.proc.returncode}:\n" + self.log_tail())

    def stop(self, timeout: float = 10.0) -> array:
        """SIGTERM (the runner ends its loop and closes the agent); the samples the worker wrote, if any."""
        samples = array("q")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.samples_path and os.path.exists(self.samples_path):
            with open(self.samples_path, "rb") as fh:
                samples.frombytes(fh.read())
        return samples

    def close(self) -> None:
        """Kill the agent if it still runs, reap it, remove the shared memory (every path ends here)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.memory is not None:
            memory, self.memory = self.memory, None
            memory.remove()


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
