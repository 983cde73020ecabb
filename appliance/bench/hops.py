"""``appliance bench hops``: each hop of the order path alone, as on a machine with a core per process.

Every hop runs the real agent in its own process through the real runner (``python -m
appliance.bench.hops worker``: ``runtime.agent.build_runner`` on a private layout, the agent
pinned by the layout's ``cpu`` to one CPU with the ``busy_spin`` idle strategy); this process is
the driver, pinned to the other CPU, spinning too: it plays every neighbour of the measured
agent (writes its input ring, reads its output ring, answers what it must to keep the agent
working) and nothing else spins. The latency of one sample is read from the messages' own
timestamps (``time.time_ns``, one clock for every process): the driver stamps its input the
instant before it commits it, the agent stamps its output the instant before it commits it.

- ``feed``: one MoldUDP64 datagram with one top-changing ITCH message (an Add Order improving
  the bid, then its Delete), and a datagram of 20 messages over 5 symbols (20 Adds improving
  both sides, then the 20 Deletes), sent from the publisher's address: from the driver's
  ``sendto`` (stamped before the call) and from the kernel receive timestamp (``t_rx_ns``) to
  the BookUpdate committed (``t_feed_out_ns``; of the packet's last symbol, final state);
- ``strategy``: BookUpdate committed (``t_feed_out_ns``, stamped by the driver) to the first
  OrderIntent committed (``t_strategy_out_ns``): the reference market maker requoting its bid
  and ask (the mid moves 3 ticks each sample; the driver acknowledges every intent as the OMS
  would, untimed, and waits until the strategy read the acknowledgements);
- ``risk``: OrderIntent committed (``t_strategy_out_ns``) to ApprovedOrder committed
  (``t_risk_out_ns``), every check configured and reached (``bench/risk.py``'s limits); the
  driver answers risk's snapshot request and cancels each approved order afterwards, untimed;
- ``oms``: ApprovedOrder read from the ring to the bytes handed to the socket (the OMS's own
  ``sample_ring_to_wire`` span, journal ``group``) and ApprovedOrder committed (``t_risk_out_ns``)
  to the bytes read by the peer: the driver is a byte-for-byte TCP relay between the OMS and
  the simulated exchange (``sim/exchange_process.py``) and stamps the Enter Order when its
  ``recv`` returns it;
- ``ring``: one crossing of the shared-memory ring, half the round trip of ``bench/ring.py``'s
  pinned ping-pong.

Percentiles are nearest rank (``bench/timing.percentile``); ``--warmup`` samples of every hop
are dropped. ``sum`` adds the hops' percentiles (feed from the kernel receive, OMS to the
bytes handed to the socket): an upper bound of a path's percentile, not a measured path.
"""
from __future__ import annotations

import argparse
import gc
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array

from appliance.command_io.arguments import bounded, positive_int

# The co-located C++ market maker's budget (issue 16), microseconds per stage.
BUDGET_US = (("decode", 1), ("book", 1), ("signal", 3), ("risk", 2), ("encode+send", 2), ("NIC", 1))
# The targets, p50 in ns (feed including the kernel receive); p99 of each at most 3x its p50.
TARGET_P50_NS = {"feed": 4_000, "strategy": 3_000, "risk": 1_500, "oms": 3_000}
TARGET_SUM_P50_NS = 12_000
GOAL_SUM_P50_NS = 10_000
TAIL_RATIO = 3
HOPS = ("feed", "strategy", "risk", "oms", "ring")
SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ", "TSLA"]
TICK = 100
LAYOUT_PREFIX = "hops"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=positive_int, default=10_000,
                        help="measured samples per hop and case (default 10000: the whole bench in about a minute "
                             "on a 2-core box)")
    parser.add_argument("--warmup", type=bounded(int, 0, 1_000_000), default=1_000,
                        help="samples per hop before measuring (default 1000)")
    parser.add_argument("--ring-round-trips", type=positive_int, default=50_000,
                        help="ring ping-pong round trips (default 50000)")
    parser.add_argument("--hops", default=",".join(HOPS),
                        help=f"hops to measure, comma separated (default {','.join(HOPS)})")
    parser.add_argument("--timeout", type=bounded(float, 1, 600, " s"), default=30.0,
                        help="seconds allowed for an agent to start and for any one sample (default 30)")


def _hop_names(text: str) -> list[str]:
    from appliance.command_io.arguments import UsageError
    names = [h.strip() for h in text.split(",") if h.strip()]
    if not names or any(h not in HOPS for h in names):
        raise UsageError(f"--hops: choose from {', '.join(HOPS)} (got {text!r})")
    return names


def cpus() -> tuple[int, int]:
    """(driver CPU, agent CPU): two different CPUs when this process may use two."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[-1])


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


def _workdir(hop: str) -> str:
    return tempfile.mkdtemp(prefix=f"bench-hops-{hop}-", dir="/tmp")


# ---------------------------------------------------------------------------
# risk: OrderIntent -> ApprovedOrder
# ---------------------------------------------------------------------------

def measure_risk(args, driver_cpu: int, agent_cpu: int) -> dict:
    import random

    import yaml

    from appliance.bench.risk import limits_document
    from appliance.messages.catalog import APPROVED_ORDER, EXECUTION_REPORT, ORDER_INTENT, RISK_SNAPSHOT
    from appliance.messages.codes import Action, ExecEvent, SnapshotKind

    workdir = _workdir("risk")
    agent = None
    try:
        now = time.time_ns()
        limits = limits_document(SYMBOLS, now)
        # every check configured and reached; the flow repeats prices, so the identical-order filter
        # (still checked) gets room for the driver's rate
        limits["global"].update(max_identical_orders=10_000)
        limits_path = os.path.join(workdir, "limits.yaml")
        with open(limits_path, "w") as fh:
            yaml.safe_dump(limits, fh, sort_keys=False)
        agent = MeasuredAgent("risk", {"limits": limits_path, "state_file": os.path.join(workdir, "state.json")},
                              agent_cpu, args.timeout, workdir)
        memory = agent.memory
        market = memory.market_state_writer()
        rng = random.Random(42)
        refs = [rng.randrange(2_000, 50_000) * TICK for _ in SYMBOLS]
        for sid, ref in enumerate(refs):
            market.publish(sid, ref - TICK, 500, ref + TICK, 500, ref, 100, 0, ord("T"), 1, now, now)
        intents = memory.ring("order_intents", "producer")
        intents_buffer = memory.ring_buffer("order_intents")
        approved = memory.ring("approved_orders", "consumer")
        approved_buffer = memory.ring_buffer("approved_orders")
        rejects = memory.ring("risk_rejects", "consumer")
        events = memory.ring("risk_events", "consumer")
        reports = memory.ring("exec_to_risk", "producer")
        reports_buffer = memory.ring_buffer("exec_to_risk")
        control = memory.control("*")
        # the OMS's answer to risk's snapshot request: no positions, no open orders
        offset = reports.claim()
        RISK_SNAPSHOT.pack_into(reports_buffer, offset, 0, 0, 0, 0xFFFFFFFF, int(SnapshotKind.END), 0, 0, 0, 0, 0, 0,
                                0, time.time_ns())
        reports.commit()
        deadline = time.monotonic() + args.timeout
        while control.get("risk_ready") != 1:
            agent.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("risk did not become ready (the snapshot's END) in time:\n" + agent.log_tail())
            time.sleep(0.005)
        flow = []
        for i in range(args.warmup + args.samples):
            sid = rng.randrange(len(SYMBOLS))
            buy = rng.random() < 0.5
            away = rng.randrange(1, 6) * TICK
            flow.append((10_000 + i, sid, 66 if buy else 83, refs[sid] - away if buy else refs[sid] + away))
        t_out = APPROVED_ORDER.offset_of["t_risk_out_ns"]
        t_in = APPROVED_ORDER.offset_of["t_strategy_out_ns"]
        import struct
        u64 = struct.Struct("<Q").unpack_from
        latencies = array("q", bytes(8 * len(flow)))
        pack_intent, pack_report = ORDER_INTENT.pack_into, EXECUTION_REPORT.pack_into
        new, canceled = int(Action.NEW), int(ExecEvent.CANCELED)
        refused = 0

        def drive() -> None:
            nonlocal refused
            tns = time.time_ns
            for i, (cid, sid, side, price) in enumerate(flow):
                offset = intents.claim()
                pack_intent(intents_buffer, offset, cid, 0, 1, sid, new, side, 0, 100, price, 99998, 0, 0, tns())
                intents.commit()
                offset = spin_peek(approved, agent, args.timeout, rejects)
                if offset < 0:
                    refused += 1
                    rejects.release()
                    continue
                latencies[i] = u64(approved_buffer, offset + t_out)[0] - u64(approved_buffer, offset + t_in)[0]
                approved.release()
                # the venue's answer, untimed: the order is gone (risk's open orders stay as they were)
                offset = reports.claim()
                pack_report(reports_buffer, offset, cid, 0, 0, 0, 1, sid, canceled, side, 0, 0, 100, price, 0, 0, 0,
                            0, 0, 0)
                reports.commit()
                while events.peek() >= 0:
                    events.release()
        pinned(driver_cpu, drive)
        if refused:
            raise RuntimeError(f"risk refused {refused} of {len(flow)} orders: not every check was reached")
        return {**summary(latencies[args.warmup:]), "warmup": args.warmup, "label": "intent->approved",
                "what": "OrderIntent committed -> "
                "ApprovedOrder committed, every check configured and reached"}
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# feed: MoldUDP64 datagram -> BookUpdate
# ---------------------------------------------------------------------------

SESSION = "HOPS000001"
BASE_BID, BASE_ASK = 1_000_000, 1_001_000          # $100.00 / $100.10 on every symbol


class ItchDay:
    """The driver's exchange: ITCH messages in MoldUDP64 datagrams with consecutive sequence numbers."""

    def __init__(self) -> None:
        self.sequence = 1
        self.reference = 0

    def packet(self, messages: list[dict]) -> bytes:
        from appliance.wire import itch, moldudp64
        encoded = [itch.encode({"tracking_number": 0, "timestamp": 34_200_000_000_000, **m}) for m in messages]
        packets = moldudp64.pack_messages(SESSION, self.sequence, encoded)
        if len(packets) != 1:
            raise RuntimeError("the bench's messages do not fit one datagram")
        self.sequence += len(messages)
        return packets[0]

    def add(self, locate: int, buy: bool, price: int) -> tuple[dict, int]:
        self.reference += 1
        return {"type": "A", "stock_locate": locate, "order_reference_number": self.reference,
                "buy_sell_indicator": "B" if buy else "S", "shares": 100, "stock": SYMBOLS[locate - 1],
                "price": price}, self.reference

    @staticmethod
    def delete(locate: int, reference: int) -> dict:
        return {"type": "D", "stock_locate": locate, "order_reference_number": reference}


def feed_cases(day: ItchDay, total: int):
    """The two cases' datagrams, each with the symbol id and the (bid, ask) its last BookUpdate must show:
    ``single``: an Add improving symbol 0's bid, then its Delete; ``packet20``: 20 Adds over the 5
    symbols (bid +1, ask -1, bid +2, ask -2 ticks each, interleaved), then the 20 Deletes."""
    single, packet20 = [], []
    for i in range(total):
        if i % 2 == 0:
            message, reference = day.add(1, True, BASE_BID + TICK)
            single.append((day.packet([message]), 0, BASE_BID + TICK, BASE_ASK))
        else:
            single.append((day.packet([day.delete(1, reference)]), 0, BASE_BID, BASE_ASK))
    for i in range(total):
        if i % 2 == 0:
            adds, references = [], []
            for buy, ticks in ((True, 1), (False, 1), (True, 2), (False, 2)):
                for locate in range(1, len(SYMBOLS) + 1):
                    message, reference = day.add(locate, buy, BASE_BID + ticks * TICK if buy else BASE_ASK - ticks * TICK)
                    adds.append(message)
                    references.append((locate, reference))
            packet20.append((day.packet(adds), len(SYMBOLS) - 1, BASE_BID + 2 * TICK, BASE_ASK - 2 * TICK))
        else:
            packet20.append((day.packet([day.delete(locate, ref) for locate, ref in references]), len(SYMBOLS) - 1,
                             BASE_BID, BASE_ASK))
    return single, packet20


def decode_peers(single, packet20, warmup: int) -> dict:
    """The feed's decode step, compiled and its pure-Python reference, in this process on the same
    datagrams: ``FeedPacketScanner(use_c=...)`` walking each datagram's subscribed messages, each
    datagram timed alone (the timer's own cost subtracted)."""
    from appliance.bench.timing import timer_overhead_ns
    from appliance.wire.moldudp64 import FeedPacketScanner

    overhead = timer_overhead_ns(50_000)
    subscribed = bytearray(65536)
    for locate in range(1, len(SYMBOLS) + 1):
        subscribed[locate] = 1
    out = {}
    for case, datagrams in (("single", single), ("packet20", packet20)):
        for use_c in (True, False):
            scanner = FeedPacketScanner(subscribed, use_c=use_c)
            scan = scanner.scan
            latencies = array("q", bytes(8 * len(datagrams)))

            def walk() -> None:
                pc = time.perf_counter_ns
                for i, (datagram, *_rest) in enumerate(datagrams):
                    t0 = pc()
                    for _raw in scan(datagram, len(datagram)):
                        pass
                    latencies[i] = pc() - t0 - overhead
            from appliance.bench.timing import gc_paused
            gc_paused(walk)
            out[f"decode_{case}_{'c' if use_c else 'python'}"] = summary(latencies[warmup:])
    return out


def measure_feed(args, driver_cpu: int, agent_cpu: int) -> dict:
    import socket
    import struct

    from appliance.messages.catalog import BOOK_UPDATE
    from appliance.sim.ports import free_ports

    workdir = _workdir("feed")
    agent = sender = None
    try:
        listen_port, source_port, rerequest_port = free_ports(3)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", source_port))
        params = {"listen": {"host": "127.0.0.1", "port": listen_port},
                  "source": {"host": "127.0.0.1", "port": source_port},
                  "rerequest": {"host": "127.0.0.1", "port": rerequest_port}, "session": SESSION,
                  "stale_after_ms": 3_600_000}
        agent = MeasuredAgent("feed", params, agent_cpu, args.timeout, workdir)
        memory = agent.memory
        books = memory.ring("book_updates", "consumer")
        buffer = memory.ring_buffer("book_updates")
        fields = BOOK_UPDATE.fields_struct(["symbol_id", "bid_price_0", "ask_price_0", "t_rx_ns", "t_feed_out_ns"])
        read = fields.unpack_from
        destination = ("127.0.0.1", listen_port)
        day = ItchDay()
        opening = [{"type": "R", "stock_locate": locate, "stock": symbol, "market_category": "Q",
                    "financial_status_indicator": "N", "round_lot_size": 100, "round_lots_only": "N",
                    "issue_classification": "C", "issue_sub_type": "Z", "authenticity": "P",
                    "short_sale_threshold_indicator": "N", "ipo_flag": "N", "luld_reference_price_tier": "1",
                    "etp_flag": "N", "etp_leverage_factor": 0, "inverse_indicator": "N"}
                   for locate, symbol in enumerate(SYMBOLS, 1)]
        opening += [{"type": "H", "stock_locate": locate, "stock": symbol, "trading_state": "T", "reserved": " ",
                     "reason": ""} for locate, symbol in enumerate(SYMBOLS, 1)]
        book = []
        for locate in range(1, len(SYMBOLS) + 1):
            book += [day.add(locate, True, BASE_BID)[0], day.add(locate, False, BASE_ASK)[0]]
        total = args.warmup + args.samples
        first = day.packet(opening)
        second = day.packet(book)
        single, packet20 = feed_cases(day, total)
        sender.sendto(first, destination)
        sender.sendto(second, destination)
        while True:                                   # the opening book, every symbol two-sided
            offset = spin_peek(books, agent, args.timeout)
            symbol, bid, ask, _rx, _out = read(buffer, offset)
            books.release()
            if symbol == len(SYMBOLS) - 1 and bid == BASE_BID and ask == BASE_ASK:
                break

        def run_case(datagrams) -> tuple[array, array]:
            from_send = array("q", bytes(8 * total))
            from_rx = array("q", bytes(8 * total))

            def drive() -> None:
                tns = time.time_ns
                sendto = sender.sendto
                for i, (datagram, symbol, bid, ask) in enumerate(datagrams):
                    t_send = tns()
                    sendto(datagram, destination)
                    while True:
                        offset = spin_peek(books, agent, args.timeout)
                        got = read(buffer, offset)
                        books.release()
                        if got[0] == symbol and got[1] == bid and got[2] == ask and got[3]:
                            from_send[i] = got[4] - t_send
                            from_rx[i] = got[4] - got[3]
                            break
            pinned(driver_cpu, drive)
            return from_send[args.warmup:], from_rx[args.warmup:]

        single_send, single_rx = run_case(single)
        packet_send, packet_rx = run_case(packet20)
        counters = memory.counters_reader().by_label()
        peers = decode_peers(single, packet20, args.warmup)
        result = {**summary(single_rx), "warmup": args.warmup, "label": "rx->BookUpdate, 1 msg",
                  "from_sendto": summary(single_send),
                  "packet20": {"from_rx": summary(packet_rx), "from_sendto": summary(packet_send)},
                  "cases": {"sendto -> BookUpdate, 1 msg": summary(single_send),
                            "rx -> last BookUpdate, 20 msgs/5 sym": summary(packet_rx),
                            "sendto -> last BookUpdate, 20/5": summary(packet_send)},
                  "gaps": counters.get("feed.gaps", 0), "book_updates": counters.get("feed.book_updates", 0),
                  "what": "kernel receive (t_rx_ns) -> BookUpdate committed (t_feed_out_ns), one MoldUDP64 "
                          "datagram with one top-changing ITCH message; also from the driver's sendto, and the "
                          "20-messages-over-5-symbols datagram to its last symbol's BookUpdate"}
        result["peers"] = peers
        if result["gaps"]:
            raise RuntimeError(f"the feed saw {result['gaps']} gaps in the bench's own sequence")
        return result
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        if sender is not None:
            sender.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# strategy: BookUpdate -> OrderIntent
# ---------------------------------------------------------------------------

# The reference market maker, one symbol quoted 10 ticks wide: a 2-tick move of the mid (more than
# its 1-tick requote threshold, less than half its width, so no side waits for the other) replaces both.
MARKET_MAKER_PARAMETERS = {"tick": TICK, "spread_ticks": 10, "size": 100, "lot": 100, "max_position": 1000,
                           "requote_threshold_ticks": 1, "fair_value": "mid"}


def measure_strategy(args, driver_cpu: int, agent_cpu: int) -> dict:
    import struct

    from appliance.messages.catalog import BOOK_UPDATE, EXECUTION_REPORT, ORDER_INTENT
    from appliance.messages.codes import Action, ExecEvent

    workdir = _workdir("strategy")
    agent = None
    try:
        params = {"strategy": "appliance.strategy.market_maker:MarketMaker", "strategy_id": 1,
                  "parameters": dict(MARKET_MAKER_PARAMETERS), "timer_interval_ms": 3_600_000}
        agent = MeasuredAgent("strategy", params, agent_cpu, args.timeout, workdir)
        memory = agent.memory
        control = memory.control("*")
        control.set("feed_ready", 1)
        control.write_gate(0)
        books = memory.ring("book_updates", "producer")
        books_buffer = memory.ring_buffer("book_updates")
        intents = memory.ring("order_intents", "consumer")
        intents_buffer = memory.ring_buffer("order_intents")
        reports = memory.ring("exec_to_strategy", "producer")
        reports_buffer = memory.ring_buffer("exec_to_strategy")
        read_intent = ORDER_INTENT.read
        pack_book, pack_report = BOOK_UPDATE.pack_into, EXECUTION_REPORT.pack_into
        new, replace, cancel = int(Action.NEW), int(Action.REPLACE), int(Action.CANCEL)
        accepted, replaced, canceled = int(ExecEvent.ACCEPTED), int(ExecEvent.REPLACED), int(ExecEvent.CANCELED)
        total = args.warmup + args.samples
        latencies = array("q", bytes(8 * total))
        base = 1_900_000
        empty = (0,) * 4
        counts = {"intents": 0, "stray_intents": 0, "updates_without_second_intent": 0}
        second_wait_s = min(args.timeout, 0.05)
        u64 = struct.Struct("<Q").unpack_from
        t_out_at = ORDER_INTENT.offset_of["t_strategy_out_ns"]
        t_in_at = ORDER_INTENT.offset_of["t_feed_out_ns"]

        def acknowledge(intent) -> None:
            """The OMS's answer to an intent, as the venue accepted it."""
            event = {new: accepted, replace: replaced, cancel: canceled}.get(intent.action)
            if event is None:
                return
            shares = 0 if event == canceled else intent.shares
            offset = reports.claim()
            pack_report(reports_buffer, offset, intent.client_order_id, intent.orig_client_order_id, 0, 0,
                        intent.strategy_id, intent.symbol_id, event, intent.side, 0, 0, intent.shares, intent.price,
                        shares, 0, 0, 0, 0, time.time_ns())
            reports.commit()

        def drive() -> None:
            tns = time.time_ns
            for i in range(total):
                mid = base + (2 * TICK if i & 1 else 0)
                offset = books.claim()
                t_feed_out = tns()
                pack_book(books_buffer, offset, 0, 0, ord("T"), 1, 1, mid - TICK, *empty, 500, *empty,
                          mid + TICK, *empty, 500, *empty, mid, 100, i + 1, i + 1, t_feed_out - 2_000,
                          t_feed_out - 1_000, t_feed_out)
                books.commit()
                seen = []
                first = True
                while len(seen) < 2:
                    if first:
                        offset = spin_peek(intents, agent, args.timeout)
                    else:                     # the other side's replace, usually in the same duty cycle
                        deadline = time.monotonic() + second_wait_s
                        while (offset := intents.peek()) < 0 and time.monotonic() < deadline:
                            pass
                        if offset < 0:
                            counts["updates_without_second_intent"] += 1
                            break
                    if u64(intents_buffer, offset + t_in_at)[0] != t_feed_out:
                        counts["stray_intents"] += 1
                    elif first:
                        latencies[i] = u64(intents_buffer, offset + t_out_at)[0] - t_feed_out
                        first = False
                    seen.append(read_intent(intents_buffer, offset))
                    intents.release()
                counts["intents"] += len(seen)
                for intent in seen:
                    acknowledge(intent)
                while reports.depth():        # the strategy has read every acknowledgement
                    pass
        pinned(driver_cpu, drive)
        return {**summary(latencies[args.warmup:]), "warmup": args.warmup, **counts, "label": "BookUpdate->intent",
                "what": "BookUpdate committed -> first OrderIntent committed, the reference market maker "
                        "replacing its bid and ask"}
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# OMS: ApprovedOrder -> bytes handed to the socket, and -> bytes read by the peer
# ---------------------------------------------------------------------------

class Relay:
    """A byte-for-byte TCP relay between the OMS and the exchange's order entry, run by the driver's
    loop: the peer that stamps when the OMS's bytes are read (``recv`` returned)."""

    def __init__(self, exchange_address: tuple[str, int]) -> None:
        import socket
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.exchange_address = exchange_address
        self.oms = self.exchange = None
        self.buffer = bytearray(65536)

    def pump(self) -> None:
        """Accept the OMS, forward whatever waits in either direction (never blocks)."""
        import socket
        if self.oms is None:
            try:
                self.oms, _ = self.listener.accept()
            except BlockingIOError:
                return
            self.oms.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.exchange = socket.create_connection(self.exchange_address, timeout=10)
            self.exchange.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.oms.setblocking(False)
            self.exchange.setblocking(False)
        self.forward(self.oms, self.exchange)
        self.forward(self.exchange, self.oms)

    def forward(self, source, sink) -> int:
        try:
            n = source.recv_into(self.buffer)
        except (BlockingIOError, InterruptedError):
            return 0
        if n == 0:
            raise RuntimeError("the relay's peer closed its connection")
        sink.sendall(memoryview(self.buffer)[:n])
        return n

    def close(self) -> None:
        for sock in (self.oms, self.exchange, self.listener):
            if sock is not None:
                sock.close()


def carries_enter_order(data, n: int) -> bool:
    """Whether the first ``n`` bytes read from the OMS hold an OUCH Enter Order: SoupBinTCP packets
    (a big-endian u16 length, then the type) walked from the start, one of them Unsequenced Data
    (b"U") carrying OUCH type b"O" (a heartbeat may come first in the same read)."""
    position = 0
    while position + 4 <= n:
        if data[position + 2] == 0x55 and data[position + 3] == 0x4F:
            return True
        position += 2 + ((data[position] << 8) | data[position + 1])
    return False


def measure_oms(args, driver_cpu: int, agent_cpu: int) -> dict:
    import socket

    from appliance.bench.exchange_load import exchange_args
    from appliance.exchange.config import default_config
    from appliance.messages.catalog import APPROVED_ORDER
    from appliance.messages.codes import TIF_IOC, Action, Side
    from appliance.oms.config import OmsConfig
    from appliance.sim.credentials import write_sim_login
    from appliance.sim.exchange_process import ExchangeProcess

    workdir = _workdir("oms")
    feed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    feed.bind(("127.0.0.1", 0))
    exchange = ExchangeProcess(exchange_args(feed.getsockname()[1], os.path.join(workdir, "ctl.sock"), 0))
    agent = relay = None
    try:
        ports = exchange.wait_ready(args.timeout)
        try:
            os.sched_setaffinity(exchange.proc.pid, {driver_cpu})      # off the measured agent's CPU
        except OSError:
            pass
        relay = Relay(ports["order_entry"])
        credentials = os.path.join(workdir, "venue.credentials")
        write_sim_login(credentials, default_config(), OmsConfig().firm)
        params = {"venue": {"host": "127.0.0.1", "port": relay.port}, "journal": os.path.join(workdir, "journal.bin"),
                  "journal_size_mb": 256, "credentials": credentials, "durability": "group",
                  "risk_heartbeat_limit_ms": 60_000, "heartbeat_ms": 1000, "in_flight_timeout_ms": 60_000}
        samples_path = os.path.join(workdir, "ring_to_wire.bin")
        memory = None
        agent = MeasuredAgent("oms", params, agent_cpu, args.timeout, workdir, samples_path)
        memory = agent.memory
        control = memory.control("*")
        control.write_gate(0)
        heartbeat = memory.heartbeat("risk")
        heartbeat.begin()
        heartbeat.end(0)
        deadline = time.monotonic() + args.timeout
        while control.get("oms_ready") != 1:
            relay.pump()
            agent.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the OMS did not log in through the relay in time:\n" + agent.log_tail())
        approved = memory.ring("approved_orders", "producer")
        buffer = memory.ring_buffer("approved_orders")
        drains = [memory.ring("exec_to_strategy", "consumer"), memory.ring("exec_to_risk", "consumer")]
        pack = APPROVED_ORDER.pack_into
        total = args.warmup + args.samples
        to_peer = array("q", bytes(8 * total))

        def drive() -> None:
            tns = time.time_ns
            oms_sock, exchange_sock, data = relay.oms, relay.exchange, relay.buffer
            recv_into, send = oms_sock.recv_into, exchange_sock.sendall
            view = memoryview(data)
            for i in range(total):
                heartbeat.begin()
                heartbeat.end(0)
                offset = approved.claim()
                now = tns()
                pack(buffer, offset, i + 1, 0, 1, 0, Action.NEW, Side.BUY, 0, 100, 1_000_000, TIF_IOC,
                     now - 30_000, now - 20_000, now - 10_000, now)
                approved.commit()
                spins = 0
                while True:
                    try:
                        n = recv_into(data)
                    except BlockingIOError:
                        spins += 1
                        if spins & 4095 == 0 and tns() - now > args.timeout * 1e9:
                            agent.check_alive()
                            rejects = {k: v for k, v in memory.counters_reader().by_label().items()
                                       if k.startswith("oms.rejects.") and v}
                            raise Timeout(f"the OMS sent no Enter Order in time (its rejects: {rejects}):\n"
                                          + agent.log_tail())
                        continue
                    t_read = tns()
                    if n == 0:
                        raise RuntimeError("the OMS closed its connection:\n" + agent.log_tail())
                    send(view[:n])
                    if carries_enter_order(data, n):
                        to_peer[i] = t_read - now
                        break
                # the venue's answers (accepted, canceled: IOC far below the market) back to the OMS, untimed
                reports = 0
                deadline = time.monotonic() + args.timeout
                while reports < 4:
                    relay.pump()
                    for ring in drains:
                        while ring.peek() >= 0:
                            ring.release()
                            reports += 1
                    if time.monotonic() > deadline:
                        raise Timeout("the OMS reported no Accepted and Canceled in time:\n" + agent.log_tail())
        pinned(driver_cpu, drive)
        agent.proc.send_signal(signal.SIGTERM)          # the OMS logs out through the relay, then writes its samples
        deadline = time.monotonic() + args.timeout
        while agent.proc.poll() is None and time.monotonic() < deadline:
            try:
                relay.pump()
            except (RuntimeError, OSError):
                break
            time.sleep(0.001)
        ring_to_wire = agent.stop()
        if len(ring_to_wire) != total:
            raise RuntimeError(f"the OMS recorded {len(ring_to_wire)} ring-to-socket spans of {total} orders")
        peer = summary(to_peer[args.warmup:])
        return {**summary(ring_to_wire[args.warmup:]), "warmup": args.warmup, "durability": "group",
                "label": "ring read->socket", "cases": {"approved -> bytes read by peer": peer},
                "approved_to_peer": peer,
                "what": "ApprovedOrder read from the ring -> bytes handed to the socket (journal group); and "
                        "ApprovedOrder committed -> the Enter Order read by the peer (a TCP relay to the exchange)"}
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        if relay is not None:
            relay.close()
        exchange.terminate()
        exchange.close()
        feed.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# ring: one crossing
# ---------------------------------------------------------------------------

def measure_ring_crossing(args, driver_cpu: int, agent_cpu: int) -> dict:
    """Half the round trip of ``bench/ring.py``'s ping-pong: two processes on the two CPUs, both spinning."""
    from appliance.bench.ring import measure_ring
    rtt = measure_ring(args.ring_round_trips, 1000, args.timeout)
    return {"samples": rtt["round_trips"], "p50_ns": rtt["rtt_p50_ns"] // 2, "p99_ns": rtt["rtt_p99_ns"] // 2,
            "p999_ns": rtt["rtt_p999_ns"] // 2, "round_trip": rtt, "label": "one crossing",
            "what": "one crossing of the shared-memory ring: half a ping-pong round trip (bench/ring.py)"}


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

MEASURE = {"feed": measure_feed, "strategy": measure_strategy, "risk": measure_risk, "oms": measure_oms, "ring": measure_ring_crossing}


def run(args: argparse.Namespace) -> int:
    from appliance.bench.timing import publish
    names = _hop_names(args.hops)
    driver_cpu, agent_cpu = cpus()
    hops: dict[str, dict] = {}
    errors: dict[str, str] = {}
    peers: dict[str, dict] = {}
    for name in names:
        try:
            hops[name] = MEASURE[name](args, driver_cpu, agent_cpu)
        except Exception as exc:            # noqa: BLE001 - reported, the other hops still run
            errors[name] = f"{type(exc).__name__}: {exc}"
    decode = hops.get("feed", {}).pop("peers", None)
    if decode:
        for case in ("single", "packet20"):
            ours = decode[f"decode_{case}_c"]
            peers[f"itch_decode_{case}_python"] = {
                **decode[f"decode_{case}_python"], "ours": ours, "ours_p50_ns": ours["p50_ns"],
                "what": f"the feed's decode of the {case} datagram: FeedPacketScanner(use_c=False), the pure-Python "
                        f"reference of wire/_itch_fast.c (ours: use_c=True), in the driver's process"}
    peers["not_available"] = {
        "what": "no pure-Python reference exists for the other hops: the strategy, risk and OMS paths are "
                "Python already (today's implementation is the reference), and the ring has only its C "
                "implementation (bench ring compares it with multiprocessing, posix_ipc, zmq, faster-fifo)"}
    results = {"hops": hops, **sums(hops), "driver_cpu": driver_cpu, "agent_cpu": agent_cpu,
               "targets": {"p50_ns": TARGET_P50_NS, "sum_p50_ns": TARGET_SUM_P50_NS, "p99_over_p50": TAIL_RATIO},
               "budget_ns": {stage: us * 1000 for stage, us in BUDGET_US}, "verdicts": verdicts(hops)}
    return publish("hops", results, errors, getattr(args, "json", False), _print_table, peers=peers,
                   ratios=ratios(hops, peers))


def sums(hops: dict) -> dict:
    """The hops' percentiles added (feed, strategy, risk, oms): None unless all four were measured."""
    path = [hops.get(h) for h in ("feed", "strategy", "risk", "oms")]
    if any(p is None for p in path):
        return {"sum_p50_ns": None, "sum_p99_ns": None, "sum_p999_ns": None}
    return {f"sum_{key}_ns": sum(p[f"{key}_ns"] for p in path) for key in ("p50", "p99", "p999")}


def verdicts(hops: dict) -> dict:
    """met / not met per target line (None: not measured)."""
    out: dict[str, bool | None] = {}
    for hop, target in TARGET_P50_NS.items():
        h = hops.get(hop)
        out[f"{hop}_p50"] = None if h is None else h["p50_ns"] <= target
        out[f"{hop}_p99"] = None if h is None else h["p99_ns"] <= TAIL_RATIO * h["p50_ns"]
    total = sums(hops)
    out["sum_p50"] = None if total["sum_p50_ns"] is None else total["sum_p50_ns"] <= TARGET_SUM_P50_NS
    out["sum_p50_goal"] = None if total["sum_p50_ns"] is None else total["sum_p50_ns"] <= GOAL_SUM_P50_NS
    return out


def ratios(hops: dict, peers: dict) -> dict:
    """Each hop's p50 over its target; each peer's p50 over ours where both exist."""
    out = {f"{hop}_p50_vs_target": hops[hop]["p50_ns"] / target
           for hop, target in TARGET_P50_NS.items() if hop in hops}
    for name, peer in peers.items():
        ours = peer.get("ours_p50_ns")
        if peer.get("p50_ns") and ours:
            out[f"{name}_vs_ours_p50"] = peer["p50_ns"] / ours
    return out


def _print_table(report: dict) -> None:
    from appliance.bench.table import fmt, one_line
    r, m = report["results"], report["machine"]
    hops, verdict = r["hops"], r["verdicts"]
    print(f"hops: each agent alone in its own process on CPU {r['agent_cpu']} (busy spin), the driver on CPU "
          f"{r['driver_cpu']}; Python {m['python']} on {m['cpu_model'] or 'unknown CPU'}")
    header = f"{'hop':<38} {'samples':>8} {'p50 ns':>9} {'p99 ns':>9} {'p99.9 ns':>9} {'target p50':>11} " \
             f"{'p50':>8} {'p99<=3x':>8}   budget (C++ market maker)"
    print(header)
    print("-" * len(header))
    budget = [f"{stage} {us} us" for stage, us in BUDGET_US]

    def mark(v):
        return "-" if v is None else ("met" if v else "NOT met")
    lines = []
    for hop in HOPS:
        h = hops.get(hop)
        target = TARGET_P50_NS.get(hop)
        if h is None:
            if hop in report["errors"]:
                lines.append(f"{hop:<38} FAILED: {one_line(report['errors'][hop])}")
            continue
        lines.append(f"{hop + ' (' + h.get('label', h['what'])[:28] + ')':<38} {h['samples']:>8,} {h['p50_ns']:>9,} "
                     f"{h['p99_ns']:>9,} {h['p999_ns']:>9,} {fmt(target, ','):>11} "
                     f"{mark(verdict.get(hop + '_p50')):>8} {mark(verdict.get(hop + '_p99')):>8}")
        for extra_name, extra in h.get("cases", {}).items():
            lines.append(f"{'  ' + extra_name:<38} {extra['samples']:>8,} {extra['p50_ns']:>9,} {extra['p99_ns']:>9,} "
                         f"{extra['p999_ns']:>9,}")
    lines.append(f"{'sum (feed+strategy+risk+oms)':<38} {'':>8} {fmt(r['sum_p50_ns'], ','):>9} "
                 f"{fmt(r['sum_p99_ns'], ','):>9} {fmt(r['sum_p999_ns'], ','):>9} {TARGET_SUM_P50_NS:>11,} "
                 f"{mark(verdict.get('sum_p50')):>8} {'':>8}")
    lines.append(f"{'  goal beyond':<38} {'':>8} {'':>9} {'':>9} {'':>9} {GOAL_SUM_P50_NS:>11,} "
                 f"{mark(verdict.get('sum_p50_goal')):>8}")
    budget_width = max(len(line) for line in lines if "FAILED" not in line)
    for i, line in enumerate(lines):
        print(line.ljust(budget_width) + ("   " + budget[i] if i < len(budget) and "FAILED" not in line else ""))
    rest = budget[len(lines):] + ["total 10 us"]
    for item in rest:
        print(" " * budget_width + "   " + item)
    for name, peer in report["peers"].items():
        if "p50_ns" not in peer:
            print(f"peers: {peer['what']}")
            continue
        print(f"peer {name}: p50 {peer['p50_ns']:,} ns, p99 {peer['p99_ns']:,} ns; ours p50 {peer['ours_p50_ns']:,} ns; "
              f"{report['ratios'][name + '_vs_ours_p50']:.1f}x ours ({peer['what']})")
    for name, error in report["errors"].items():
        print(f"error ({name}): {one_line(error)}")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "worker":
        return worker(argv[1], argv[2], argv[3] if len(argv) > 3 else None)
    print("usage: python -m appliance.bench.hops worker LAYOUT PROCESS [SAMPLES]  (run by appliance bench hops)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
