"""``appliance bench oms``: the OMS's internal latency, from the ring read to the bytes handed to the socket.

The real ``OmsAgent`` runs in this process on a private shared-memory layout, logged in over
SoupBinTCP to the simulated exchange as a child process (``appliance exchange``, background
flow off). The bench plays risk: it beats risk's heartbeat, opens the supervisor's gate word,
writes one ApprovedOrder (an immediate-or-cancel buy of 100 AAPL far below the market: the
venue answers Accepted and Canceled, nothing rests), then drives the agent's duty cycle.

Measured per order (``time.perf_counter_ns``): from just after ``peek()`` returned the order's
slot to just before the ``send`` system call that carries its Enter Order - the gate check, a
new token, the ORDER_SENT journal append (the configured durability; ``group`` by default, as
the OMS runs), the order book, the OUCH encoding and the SoupBinTCP framing. The venue's answers
are read in later duty cycles, outside the measured span. ``--warmup`` orders are not counted.

``--json`` prints ``{"results": {"oms": {"ring_to_wire_p50_ns": ..., "ring_to_wire_p99_ns": ...}}}``
plus the details. Target: p50 at most 10 us.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import tempfile
import time
from array import array

from appliance.bench.agent_process import agent_tables
from appliance.command_io.arguments import bounded, positive_int

TARGET_P50_NS = 10_000
DURABILITIES = ("per_event", "group", "page_cache")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=positive_int, default=20_000, help="measured orders (default 20000)")
    parser.add_argument("--warmup", type=bounded(int, 0, 1_000_000), default=1_000,
                        help="orders sent before measuring (default 1000)")
    parser.add_argument("--durability", choices=DURABILITIES, default="group",
                        help="the journal's durability policy (default group, the OMS's default)")
    parser.add_argument("--timeout", type=bounded(float, 1, 600, " s"), default=30.0,
                        help="seconds allowed for the exchange to start and the OMS to log in (default 30)")


def _layout_document(name: str, journal: str, port: int, durability: str) -> dict:
    quiet = {"strategy": "sleep", "sleep_ns": 1_000_000}
    return {
        "version": 1, "name": name, "symbols": ["AAPL", "MSFT", "SPY"],
        "segments": [{"name": "main", "backing": "4k", "mode": "0600"}],
        "tables": agent_tables(),
        "rings": [
            {"name": "approved_orders", "segment": "main", "producer": "risk", "consumer": "oms",
             "message": "ApprovedOrder", "slot_size": 128, "capacity": 4096},
            {"name": "exec_to_strategy", "segment": "main", "producer": "oms", "consumer": "strategy",
             "message": "ExecutionReport", "slot_size": 128, "capacity": 65536},
            {"name": "exec_to_risk", "segment": "main", "producer": "oms", "consumer": "risk",
             "message": "ExecutionReport", "slot_size": 128, "capacity": 65536},
            {"name": "risk_events", "segment": "main", "producer": "risk", "consumer": "oms",
             "message": "ControlEvent", "slot_size": 64, "capacity": 1024},
        ],
        "processes": [
            {"name": "supervisor", "agent": "appliance.supervisor.agent:SupervisorAgent", "idle": quiet},
            {"name": "strategy", "agent": "appliance.strategy.agent:StrategyAgent", "idle": quiet},
            {"name": "risk", "agent": "appliance.risk.agent:RiskAgent", "idle": quiet},
            {"name": "oms", "agent": "appliance.oms.agent:OmsAgent", "idle": quiet,
             "params": {"venue": {"host": "127.0.0.1", "port": port}, "journal": journal, "journal_size_mb": 256,
                        "credentials": "venue.credentials",
                        "durability": durability, "risk_heartbeat_limit_ms": 60_000, "heartbeat_ms": 1000,
                        "in_flight_timeout_ms": 60_000}},
        ],
    }


def measure(orders: int, warmup: int, durability: str, timeout: float) -> dict:
    """Run the OMS against the exchange process and time ``orders`` orders (after ``warmup``)."""
    import yaml

    from appliance.bench.exchange_load import exchange_args
    from appliance.bench.timing import percentile
    from appliance.exchange.config import default_config
    from appliance.oms.config import OmsConfig
    from appliance.sim.credentials import write_sim_login
    from appliance.messages.catalog import APPROVED_ORDER
    from appliance.messages.codes import TIF_IOC, Action, Side
    from appliance.oms.agent import OmsAgent
    from appliance.oms.crc32c import IMPLEMENTATION
    from appliance.runtime.agent import AgentContext
    from appliance.runtime.layout import load_layout
    from appliance.runtime.memory import SharedMemory
    from appliance.sim.exchange_process import ExchangeProcess

    directory = tempfile.mkdtemp(prefix="bench-oms-", dir="/tmp")
    feed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    feed.bind(("127.0.0.1", 0))
    exchange = ExchangeProcess(exchange_args(feed.getsockname()[1], os.path.join(directory, "ctl.sock"), 0))
    memory = agent = None
    allowed = os.sched_getaffinity(0)
    try:
        ports = exchange.wait_ready(timeout)
        # the OMS pinned to one CPU (as the layout pins it), the exchange kept off it when there is another
        cpu = max(allowed)
        os.sched_setaffinity(0, {cpu})
        if len(allowed) > 1:
            try:
                os.sched_setaffinity(exchange.proc.pid, allowed - {cpu})
            except OSError:
                pass
        layout_path = os.path.join(directory, "layout.yaml")
        write_sim_login(os.path.join(directory, "venue.credentials"), default_config(), OmsConfig().firm)
        with open(layout_path, "w") as fh:
            yaml.safe_dump(_layout_document(f"bench-oms-{os.getpid()}", "journal.bin", ports["order_entry"][1],
                                            durability), fh, sort_keys=False)
        layout = load_layout(layout_path)
        memory = SharedMemory.create(layout)
        control = memory.control("*")
        control.write_gate(0)
        heartbeat = memory.heartbeat("risk")
        heartbeat.begin()
        heartbeat.end(0)
        agent = OmsAgent(AgentContext(layout, layout.processes["oms"], memory, memory.counters_writer("oms")))
        agent.on_start()
        buffer = memory.ring_buffer("approved_orders")
        approved = memory.ring("approved_orders", "producer")
        drains = [memory.ring("exec_to_strategy", "consumer"), memory.ring("exec_to_risk", "consumer")]
        deadline = time.monotonic() + timeout
        while control.get("oms_ready") != 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the OMS did not become ready (login to the exchange) in time")
            if agent.do_work() == 0:
                time.sleep(0.0005)
        samples = array("q")
        agent.sample_ring_to_wire(samples)
        pack = APPROVED_ORDER.pack_into
        do_work = agent.do_work
        total = warmup + orders
        reports = 0
        gc.collect()
        gc.disable()
        try:
            for i in range(total):
                heartbeat.begin()
                heartbeat.end(0)
                offset = approved.claim()
                now = time.time_ns()
                pack(buffer, offset, i + 1, 0, 1, 0, Action.NEW, Side.BUY, 0, 0, 100, 1_000_000, TIF_IOC, 0, 0, 0, 0,
                     now - 30_000, now - 20_000, now - 10_000, now)
                approved.commit()
                before = len(samples)
                while len(samples) == before:
                    do_work()
                if i == warmup - 1:
                    del samples[:]
                for _ in range(3):          # read the venue's answers, outside the measured span
                    do_work()
                for ring in drains:
                    while ring.peek() >= 0:
                        ring.release()
                        reports += 1
        finally:
            gc.enable()
        measured = sorted(samples)

        def at(q: float) -> int:            # nearest rank, like every benchmark's percentile
            return percentile(measured, q) if measured else 0
        counters = memory.counters_reader().by_label()
        result = {
            "orders": len(measured), "warmup": warmup, "durability": durability, "cpu": cpu,
            "ring_to_wire_p50_ns": at(0.50), "ring_to_wire_p90_ns": at(0.90),
            "ring_to_wire_p99_ns": at(0.99), "ring_to_wire_p999_ns": at(0.999),
            "ring_to_wire_max_ns": int(measured[-1]) if measured else 0,
            "ring_to_wire_mean_ns": (sum(measured) / len(measured)) if measured else 0.0,
            "target_p50_ns": TARGET_P50_NS,
            "meets_target": bool(measured) and at(0.50) <= TARGET_P50_NS,
            "crc32c": IMPLEMENTATION,
            "orders_sent": counters.get("oms.orders_sent", 0),
            "execution_reports": counters.get("oms.exec_reports", 0),
            "rejects": sum(v for k, v in counters.items() if k.startswith("oms.rejects.")),
        }
        return result
    finally:
        os.sched_setaffinity(0, allowed)
        if agent is not None:
            try:
                agent.on_close()
            except Exception:        # noqa: BLE001 - clean up the rest regardless
                pass
        if memory is not None:
            memory.remove()
        exchange.terminate()
        exchange.close()
        feed.close()
        shutil.rmtree(directory, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from appliance.bench.timing import publish
    errors: dict[str, str] = {}
    results: dict = {}
    try:
        results["oms"] = measure(args.orders, args.warmup, args.durability, args.timeout)
    except Exception as exc:            # noqa: BLE001 - reported, exit status 1
        errors["oms"] = f"{type(exc).__name__}: {exc}"
    return publish("oms", results, errors, getattr(args, "json", False), _print_table)


def _print_table(report: dict) -> None:
    oms = report["results"].get("oms")
    if oms is None:
        print(f"oms: FAILED: {report['errors'].get('oms')}")
        return
    print(f"OMS ring read -> bytes handed to the socket, {oms['orders']:,} orders after {oms['warmup']:,} warm-up, "
          f"journal durability {oms['durability']}, CRC-32C by {oms['crc32c']}; Python "
          f"{report['machine']['python']} on {report['machine']['cpu_model'] or 'unknown CPU'}")
    header = f"{'p50 ns':>9} {'p90 ns':>9} {'p99 ns':>9} {'p99.9 ns':>9} {'max ns':>10} {'mean ns':>9} {'target p50':>11}"
    print(header)
    print("-" * len(header))
    print(f"{oms['ring_to_wire_p50_ns']:>9,} {oms['ring_to_wire_p90_ns']:>9,} {oms['ring_to_wire_p99_ns']:>9,} "
          f"{oms['ring_to_wire_p999_ns']:>9,} {oms['ring_to_wire_max_ns']:>10,} {oms['ring_to_wire_mean_ns']:>9,.0f} "
          f"{'<= ' + format(TARGET_P50_NS, ','):>11} {'met' if oms['meets_target'] else 'NOT met'}")
