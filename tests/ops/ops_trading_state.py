"""A running appliance with trading state for the ops tests: the probe pair streams through a ring
while the test itself plays the supervisor, risk, OMS and feed by writing the control words, the
positions and market-state tables and their counters (reject reasons, restarts, tick-to-trade
histograms). The supervisor, risk and OMS are declared in the layout but never started: their
counter blocks and control words are written from here, one writer each, as in production."""
from __future__ import annotations

import bisect
import contextlib
import time
from dataclasses import dataclass

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_STALE
from appliance.messages.codes import ClockState, GateReason, RiskState
from appliance.oms.latency import BOUNDS_NS, HOPS, bucket_labels, count_label, max_label, sum_label
from appliance.runtime.counters import CounterKind
from appliance.runtime.control import pack_gate
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import wait_until
from probe_pair import pair_document

SYMBOLS = ["AAPL", "MSFT"]
IDLE = {"strategy": "sleep", "sleep_ns": 1_000_000}
# Per hop: observations chosen so that most fall in the middle bucket (an unambiguous histogram).
SAMPLES_NS = {hop: [500] * 2 + [5_000 * (i + 1)] * 6 + [50_000] * 2 for i, hop in enumerate(HOPS)}


def trading_document(name: str) -> dict:
    doc = pair_document(name)
    doc["symbols"] = list(SYMBOLS)
    doc["tables"][0]["slots_per_process"] = 256          # the OMS block holds 5 hops x 34 histogram counters
    doc["tables"] += [{"name": "market_state", "kind": "market_state", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"},
                      {"name": "control", "kind": "control", "segment": "main"}]
    doc["processes"] += [{"name": name, "agent": "simple_agents:IdleAgent", "idle": IDLE}
                         for name in ("supervisor", "risk", "oms")]
    return doc


@dataclass
class TradingState:
    """The test's pen: one writer per table or word, as the real processes would be."""
    memory: SharedMemory

    def __post_init__(self):
        self.control = self.memory.control("*")
        self.positions = self.memory.positions_writer()
        self.market = self.memory.market_state_writer()
        self.risk_counters = self.memory.counters_writer("risk")
        self.oms_counters = self.memory.counters_writer("oms")
        self.supervisor_counters = self.memory.counters_writer("supervisor")
        self.sequence = 0

    def gate(self, open_: bool, reasons: GateReason = GateReason(0), epoch: int | None = None) -> None:
        reasons = 0 if open_ else int(reasons or GateReason.OPERATOR)
        self.control.set("gate", pack_gate(reasons, epoch if epoch is not None else self.control.gate().epoch + 1))
        self.control.set("gate_changed_ns", time.time_ns())

    def clock(self, state: ClockState, offset_ns: int, maxerror_ns: int) -> None:
        self.control.set("clock_state", int(state))
        self.control.set("clock_offset_ns", offset_ns)
        self.control.set("clock_maxerror_ns", maxerror_ns)
        self.control.set("clock_checked_ns", time.time_ns())

    def readiness(self, *, risk_state=RiskState.ACTIVE, kill_latched=False, open_orders=3) -> None:
        for word in ("feed_ready", "strategy_ready", "risk_ready", "oms_ready", "oms_session_up"):
            self.control.set(word, 1)
        self.control.set("risk_state", int(risk_state))
        self.control.set("risk_kill_latched", 1 if kill_latched else 0)
        self.control.set("oms_open_orders", open_orders)

    def book(self, symbol_id: int, bid: int, bid_shares: int, ask: int, ask_shares: int, last: int = 0,
             flags: int = 0) -> None:
        self.sequence += 1
        self.market.publish(symbol_id, bid, bid_shares, ask, ask_shares, last, 100 if last else 0, flags, ord("T"),
                            self.sequence, time.time_ns(), time.time_ns())

    def position(self, symbol_id: int, position: int, cost_basis: int, realized_pnl: int, orders_sent: int,
                 fills: int, rejects: int = 0, open_orders: int = 0) -> None:
        self.positions.publish(symbol_id, position, cost_basis, realized_pnl, orders_sent, fills, abs(position),
                               rejects, open_orders)

    def reject(self, source: str, reason: str, count: int) -> None:
        writer = self.risk_counters if source == "risk" else self.oms_counters
        writer.allocate(f"{source}.rejects.{reason}").set(count)

    def restarts(self, process: str, count: int) -> None:
        self.supervisor_counters.allocate(f"supervisor.restarts.{process}").set(count)

    def latency(self, samples_ns: dict[str, list[int]] = SAMPLES_NS) -> None:
        """The OMS's histogram counters for these observations, stored the way the OMS stores them."""
        for hop, samples in samples_ns.items():
            per_bucket = [0] * (len(BOUNDS_NS) + 1)             # the last one: above every bound
            for sample in samples:
                per_bucket[bisect.bisect_left(BOUNDS_NS, sample)] += 1
            for label, in_bucket in zip(bucket_labels(hop), per_bucket):
                self.oms_counters.allocate(label).set(in_bucket)
            self.oms_counters.allocate(sum_label(hop)).set(sum(samples))
            self.oms_counters.allocate(count_label(hop)).set(len(samples))
            self.oms_counters.allocate(max_label(hop), CounterKind.GAUGE).set(max(samples))

    def everything(self) -> None:
        """A complete, plausible picture: the gate closed by the kill switch, two symbols traded."""
        self.readiness(risk_state=RiskState.HALTED, kill_latched=True)
        self.gate(False, GateReason.KILL_SWITCH | GateReason.FEED_NOT_READY, epoch=4)
        self.clock(ClockState.HEALTHY, -1_500, 25_000)
        self.book(0, 1_500_000, 300, 1_500_200, 400, last=1_500_100)          # AAPL 150.00 / 150.02
        self.book(1, 3_000_000, 100, 2_999_900, 100, flags=BOOK_FLAG_CROSSED | BOOK_FLAG_STALE)
        self.position(0, 100, 149_000_000, 25_000, orders_sent=7, fills=3, rejects=2, open_orders=1)
        self.position(1, -50, -150_000_000, -10_000, orders_sent=2, fills=1)
        self.reject("risk", "MAX_SHARES", 2)
        self.reject("oms", "GATE_CLOSED", 5)
        self.restarts("producer", 1)
        self.latency()

    def close(self) -> None:
        for handle in (self.risk_counters, self.oms_counters, self.supervisor_counters, self.control,
                       self.positions, self.market):
            handle.close()


@contextlib.contextmanager
def running_trading(write_layout, name: str, spawner):
    """The probe pair streaming in a layout with every table; yields (layout path, processes, state)."""
    path = write_layout(trading_document(name))
    with SharedMemory.create(load_layout(path)) as memory:
        state = TradingState(memory)
        try:
            state.everything()
            procs = {process: spawner.start(path, process) for process in ("consumer", "producer")}
            wait_until(lambda: memory.counters_reader().by_label().get("probe.received", 0) > 10_000, 60,
                       message="the pair streaming")
            yield path, procs, state
        finally:
            spawner.cleanup()            # nothing may hold the segment when it is removed
            state.close()
