"""The risk gateway as a process: the test owns the shared memory and plays its peers.

It is the strategy (writes order_intents, reads risk_rejects), the OMS (reads approved_orders and
risk_events, writes ExecutionReports on exec_to_risk and answers SNAPSHOT_REQUEST from what it has
seen) and the supervisor (writes risk_commands), and the feed (writes the market-state table).
"""
from __future__ import annotations

import signal
import time

import pytest
import yaml

from appliance.messages.catalog import (APPROVED_ORDER, CONTROL_EVENT, EXECUTION_REPORT, ORDER_INTENT, ORDER_REJECT,
                                        RISK_COMMAND, RISK_SNAPSHOT)
from appliance.messages.codes import (TIF_DAY, Action, ControlCommand, ControlEventKind, ExecEvent, RejectSource,
                                      RiskReason, RiskState, Side, SnapshotKind)
from appliance.risk import agent as risk_agent
from appliance.risk.paper_market import limits_document
from appliance.runtime.counters import ProcessState
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document, output_of, wait_until

SYMBOLS = ["AAPL", "MSFT"]
AAPL, MSFT = 0, 1
PRICES = {AAPL: 1_900_000, MSFT: 4_200_000}
B, S = int(Side.BUY), int(Side.SELL)
TIMEOUT = 20


def risk_layout(name: str, limits_path, **params) -> dict:
    sleeper = {"strategy": "sleep", "sleep_ns": 1_000_000}
    rings = [("order_intents", "strategy", "risk", "OrderIntent", 128), ("risk_rejects", "risk", "strategy",
                                                                          "OrderReject", 64),
             ("approved_orders", "risk", "oms", "ApprovedOrder", 128), ("exec_to_risk", "oms", "risk",
                                                                         "ExecutionReport", 128),
             ("risk_commands", "supervisor", "risk", "RiskCommand", 64), ("risk_events", "risk", "oms",
                                                                           "ControlEvent", 64)]
    doc = layout_document(
        name,
        processes=[{"name": "supervisor", "agent": "appliance.supervisor.agent:SupervisorAgent", "idle": sleeper},
                   {"name": "strategy", "agent": "appliance.strategy.agent:StrategyAgent", "idle": sleeper},
                   {"name": "risk", "agent": "appliance.risk.agent:RiskAgent",
                    "idle": {"strategy": "doorbell", "spins": 100, "park_timeout_ns": 2_000_000},
                    "params": {"limits": str(limits_path), **params}},
                   {"name": "oms", "agent": "appliance.oms.agent:OmsAgent", "idle": sleeper}],
        rings=[{"name": n, "segment": "main", "producer": p, "consumer": c, "message": m, "slot_size": size,
                "capacity": 256} for n, p, c, m, size in rings],
        slots_per_process=128, symbols=SYMBOLS)
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    return doc


class RiskUnderTest:
    """Shared memory, the risk process, and the test's strategy, OMS and supervisor sides."""

    def __init__(self, write_layout, spawner, tmp_path, name, limits: dict | None = None, **params):
        self.spawner = spawner
        self.limits_path = tmp_path / "risk_limits.yaml"
        self.write_limits(limits or limits_document(SYMBOLS))
        self.layout = load_layout(write_layout(risk_layout(name, self.limits_path.name, **params)))
        self.state_file = tmp_path / params.get("state_file", "run/risk-state.json")
        self.memory = None
        self.mids = dict(PRICES)
        self._create_memory()
        self.proc = None
        self.next_id = 1
        self.decisions: dict[int, int] = {}         # client order id -> 0 approved / RiskReason
        self.approved_orders: list[dict] = []
        self.events: list[dict] = []
        # the OMS's view, from which it answers snapshot requests
        self.positions = {sid: [0, 0, 0] for sid in PRICES}      # position, cost basis, realized
        self.open_orders: dict[int, list] = {}                   # cid -> [symbol, side, leaves, price]
        self.snapshots_sent = 0
        self.answer_snapshots = True

    def _create_memory(self) -> None:
        self.memory = SharedMemory.create(self.layout)
        self.market = self.memory.market_state_writer()
        self.sequence = 0
        for sid, price in self.mids.items():
            self.quote(sid, price)
        peer = self.memory.channel        # this test plays the strategy, the OMS and the supervisor
        self.intents = peer(risk_agent.INTENTS.other_side(), "strategy")
        self.rejects = peer(risk_agent.REJECTS.other_side(), "strategy")
        self.approved = peer(risk_agent.APPROVED.other_side(), "oms")
        self.reports = peer(risk_agent.REPORTS.other_side(), "oms")
        self.commands = peer(risk_agent.COMMANDS.other_side(), "supervisor")
        self.events_ring = peer(risk_agent.EVENTS.other_side(), "oms")
        self.words = self.memory.control()

    def down_and_up(self, *, stop=signal.SIGTERM) -> str:
        """``appliance down`` (SIGTERM) or a crash of the box (SIGKILL), then ``up``: risk stopped, the segment
        and every control word gone, a new segment; the OMS (this test) keeps its journal. Risk's output."""
        self.proc.send_signal(stop)
        self.proc.wait(TIMEOUT)
        out = output_of(self.proc)
        self.memory.close()
        self.memory.unlink()
        self.memory = None
        self._create_memory()
        self.events = []
        self.start()
        return out

    def state(self) -> dict:
        import json
        return json.loads(self.state_file.read_text())

    def write_limits(self, document: dict) -> None:
        self.limits_path.write_text(yaml.safe_dump(document, sort_keys=False))

    def quote(self, sid: int, mid: int, flags: int = 0) -> None:
        self.mids[sid] = mid
        self.sequence += 1
        self.market.publish(sid, mid - 100, 100, mid + 100, 100, mid, 10, flags, ord("T"), self.sequence,
                            self.sequence, time.time_ns())

    # -- the process
    def start(self) -> None:
        self.proc = self.spawner.start(self.layout.path, "risk")
        table = self.memory.process_table()
        wait_until(lambda: table.read("risk").state is ProcessState.RUNNING and table.read("risk").pid == self.proc.pid
                   or self.proc.poll() is not None, TIMEOUT, message="the risk agent running")
        assert self.proc.poll() is None, output_of(self.proc)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)

    def counters(self) -> dict[str, int]:
        return self.memory.counters_reader().by_label()

    # -- pumping every ring the test reads
    def pump(self) -> None:
        while (offset := self.rejects.peek()) >= 0:
            reject = ORDER_REJECT.as_dict(self.rejects.buffer, offset)
            self.rejects.release()
            assert reject["source"] == RejectSource.RISK
            self.decisions[reject["client_order_id"]] = reject["reason"]
        while (offset := self.approved.peek()) >= 0:
            order = APPROVED_ORDER.as_dict(self.approved.buffer, offset)
            self.approved.release()
            self.approved_orders.append(order)
            self.decisions[order["client_order_id"]] = 0
            self._oms_accept(order)
        while (offset := self.events_ring.peek()) >= 0:
            event = CONTROL_EVENT.as_dict(self.events_ring.buffer, offset)
            self.events_ring.release()
            self.events.append(event)
            if event["kind"] == ControlEventKind.SNAPSHOT_REQUEST and self.answer_snapshots:
                self.send_snapshot()

    def _oms_accept(self, order: dict) -> None:
        cid, sid = order["client_order_id"], order["symbol_id"]
        if order["action"] == Action.NEW:
            self.open_orders[cid] = [sid, order["side"], order["shares"], order["price"]]
            self.report(ExecEvent.ACCEPTED, cid, sid, order["side"], shares=order["shares"], leaves=order["shares"])
        elif order["action"] == Action.CANCEL and order["orig_client_order_id"] in self.open_orders:
            orig = order["orig_client_order_id"]
            sid, side, leaves, _price = self.open_orders.pop(orig)
            self.report(ExecEvent.CANCELED, orig, sid, side, shares=leaves, leaves=0)

    def report(self, event, cid, sid, side, *, shares=0, leaves=0, price=0, orig=0) -> None:
        position, cost, realized = self.positions[sid]
        slot = self.reports.claim()
        assert slot >= 0, "exec_to_risk full"
        EXECUTION_REPORT.pack_into(self.reports.buffer, slot, cid, orig, 0, 0, 7, sid, int(event), side, 0, 0, shares,
                                   price, leaves, position, cost, realized, 0, time.time_ns(), 0)
        self.reports.commit()

    def fill(self, cid: int, shares: int) -> None:
        """The venue executes ``shares`` of an open order at its price."""
        sid, side, leaves, price = self.open_orders[cid]
        signed = shares if side == B else -shares
        self.positions[sid][0] += signed
        self.positions[sid][1] += signed * price
        leaves -= shares
        if leaves:
            self.open_orders[cid][2] = leaves
        else:
            del self.open_orders[cid]
        self.report(ExecEvent.EXECUTED, cid, sid, side, shares=shares, leaves=leaves, price=price)

    def snapshot(self, kind, cid, sid, side, *, leaves=0, price=0, orig=0) -> None:
        """One RiskSnapshot record on exec_to_risk (a POSITION carries the book's position in ``sid``)."""
        position, cost, realized = self.positions[sid] if kind == SnapshotKind.POSITION else (0, 0, 0)
        slot = self.reports.claim()
        assert slot >= 0, "exec_to_risk full"
        RISK_SNAPSHOT.pack_into(self.reports.buffer, slot, cid, orig, 7, sid, int(kind), side, 0, leaves, price, position,
                                cost, realized, time.time_ns())
        self.reports.commit()

    def send_snapshot(self) -> None:
        for sid in self.positions:
            self.snapshot(SnapshotKind.POSITION, 0, sid, 0)
        for cid, (sid, side, leaves, price) in self.open_orders.items():
            self.snapshot(SnapshotKind.ORDER, cid, sid, side, leaves=leaves, price=price)
        self.snapshot(SnapshotKind.END, 0, 0xFFFFFFFF, 0)
        self.snapshots_sent += 1

    # -- the strategy
    def intent(self, action, symbol, side, shares, price, *, orig=0, cid=None, **flags) -> int:
        if cid is None:
            cid = self.next_id
            self.next_id += 1
        slot = self.intents.claim()
        assert slot >= 0
        ORDER_INTENT.pack_into(self.intents.buffer, slot, *ORDER_INTENT.body(
            client_order_id=cid, orig_client_order_id=orig, strategy_id=7, symbol_id=symbol, action=int(action),
            side=side, shares=shares, price=price, time_in_force=TIF_DAY, t_strategy_out_ns=time.time_ns(), **flags))
        self.intents.commit()
        return cid

    def decide(self, action, symbol, side, shares, price=None, *, orig=0, **flags) -> int:
        """Send one intent and wait for risk's answer: 0 (approved) or the RiskReason of the reject."""
        cid = self.intent(action, symbol, side, shares, PRICES[symbol] if price is None else price, orig=orig,
                          **flags)
        wait_until(lambda: self.pump() or cid in self.decisions, TIMEOUT, message=f"risk's decision on {cid}")
        return self.decisions[cid]

    def new(self, symbol, side, shares, price=None) -> int:
        return self.decide(Action.NEW, symbol, side, shares, price)

    # -- the supervisor
    def command(self, command, operator: str = "", argument: int = 0) -> None:
        slot = self.commands.claim()
        assert slot >= 0
        RISK_COMMAND.pack_into(self.commands.buffer, slot, int(command), 0, argument, operator.encode(), time.time_ns())
        self.commands.commit()

    def wait_event(self, kind, after: int = 0) -> dict:
        def found():
            self.pump()
            return next((e for e in self.events[after:] if e["kind"] == kind), None)
        return wait_until(found, TIMEOUT, message=f"a {ControlEventKind(kind).name} event")

    def wait_ready(self) -> None:
        wait_until(lambda: self.pump() or self.words.get("risk_ready") == 1, TIMEOUT, message="risk_ready")

    def gauges(self) -> tuple:
        c = self.counters()
        return c["risk.open_orders"], c["risk.position.AAPL"], c["risk.position.MSFT"]

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory.unlink()


@pytest.fixture
def risk_factory(write_layout, spawner, tmp_path, unique_name):
    made = []

    def make(limits: dict | None = None, **params) -> RiskUnderTest:
        r = RiskUnderTest(write_layout, spawner, tmp_path, unique_name, limits, **params)
        made.append(r)
        return r
    yield make
    spawner.cleanup()
    for r in made:
        r.close()


def aapl_limits(max_long=1000) -> dict:
    document = limits_document(SYMBOLS)
    document["symbol_defaults"]["max_long"] = max_long
    document["symbol_defaults"]["max_short"] = max_long
    return document


def test_restart_rebuilds_positions_and_open_orders_from_the_oms(risk_factory):
    risk = risk_factory(aapl_limits(1000))
    risk.start()
    risk.wait_ready()
    assert risk.words.get("risk_state") == RiskState.ACTIVE and risk.snapshots_sent >= 1
    # build a book: AAPL bought 300 + 100 of 200, MSFT a resting sell of 100
    a = risk.decide(Action.NEW, AAPL, B, 300)
    b = risk.decide(Action.NEW, AAPL, B, 200)
    c = risk.decide(Action.NEW, MSFT, S, 100)
    assert (a, b, c) == (0, 0, 0)
    ids = [o["client_order_id"] for o in risk.approved_orders]
    risk.fill(ids[0], 300)
    risk.fill(ids[1], 100)
    wait_until(lambda: risk.gauges() == (2, 400, 0), TIMEOUT, message="open orders and positions published")
    before = risk.gauges()
    assert risk.new(AAPL, B, 501) == RiskReason.MAX_LONG          # 400 + 100 open + 501 > 1,000
    assert risk.new(MSFT, S, 901) == RiskReason.MAX_SHORT         # 0 - 100 open - 901 < -1,000

    risk.kill()
    risk.answer_snapshots = False
    events_before = len(risk.events)
    risk.start()
    risk.wait_event(ControlEventKind.SNAPSHOT_REQUEST, events_before)
    assert risk.words.get("risk_ready") == 0
    assert risk.new(AAPL, B, 1) == RiskReason.NOT_READY             # nothing approved before the rebuild
    wait_until(lambda: risk.gauges() == (0, 0, 0), TIMEOUT, message="the new process knows nothing yet")
    applied = risk.counters()["risk.snapshots_applied"]
    risk.answer_snapshots = True
    risk.send_snapshot()
    risk.wait_ready()
    wait_until(lambda: risk.gauges() == before, TIMEOUT, message=f"gauges {before} after the rebuild")
    assert risk.new(AAPL, B, 501) == RiskReason.MAX_LONG
    assert risk.new(MSFT, S, 901) == RiskReason.MAX_SHORT
    assert risk.new(AAPL, B, 500) == 0                              # exactly at the limit
    assert risk.new(MSFT, S, 900) == 0
    counters = risk.counters()
    assert counters["risk.snapshots_applied"] == applied + 1 and counters["risk.rejects.NOT_READY"] == 1
    assert risk.proc.poll() is None


def test_snapshot_request_is_repeated_until_answered(risk_factory):
    risk = risk_factory(snapshot_retry_ms=50)
    risk.answer_snapshots = False
    risk.start()
    wait_until(lambda: risk.pump() or sum(e["kind"] == ControlEventKind.SNAPSHOT_REQUEST for e in risk.events) >= 3,
               TIMEOUT, message="three snapshot requests")
    assert risk.words.get("risk_ready") == 0 and risk.words.get("risk_state") == RiskState.STARTING
    risk.send_snapshot()
    risk.wait_ready()
    count = sum(e["kind"] == ControlEventKind.SNAPSHOT_REQUEST for e in risk.events)
    risk.pump()
    assert risk.new(AAPL, B, 100) == 0
    assert sum(e["kind"] == ControlEventKind.SNAPSHOT_REQUEST for e in risk.events) <= count + 1


def test_kill_switch_commands_and_the_named_reset(risk_factory):
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    assert risk.new(AAPL, B, 100) == 0
    open_id = risk.approved_orders[-1]["client_order_id"]
    risk.command(ControlCommand.KILL, "alice")
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["operator"].rstrip(b"\0") == b"alice" and kill["state"] == RiskState.HALTED
    assert kill["detail"].rstrip(b"\0") == b"MANUAL"
    wait_until(lambda: risk.words.get("risk_kill_latched") == 1, TIMEOUT, message="latched word")
    assert risk.words.get("risk_state") == RiskState.HALTED
    assert risk.new(AAPL, B, 100) == RiskReason.TRADING_HALTED
    assert risk.decide(Action.CANCEL, AAPL, B, 0, 0, orig=open_id) == 0
    risk.command(ControlCommand.SET_ACTIVE, "mallory")            # cannot leave HALTED that way
    risk.command(ControlCommand.RESET, "")                         # nor without a name
    wait_until(lambda: risk.counters().get("risk.resets_refused") == 1, TIMEOUT, message="reset refused")
    assert risk.words.get("risk_kill_latched") == 1 and risk.new(AAPL, B, 100) == RiskReason.TRADING_HALTED

    # a latched kill switch survives a crash of risk
    risk.kill()
    risk.start()
    risk.wait_ready()
    assert risk.words.get("risk_kill_latched") == 1 and risk.words.get("risk_state") == RiskState.HALTED
    assert risk.new(AAPL, B, 100) == RiskReason.TRADING_HALTED

    events_before = len(risk.events)
    risk.command(ControlCommand.RESET, "dave")
    reset = risk.wait_event(ControlEventKind.RESET, events_before)
    assert reset["operator"].rstrip(b"\0") == b"dave" and reset["state"] == RiskState.ACTIVE
    wait_until(lambda: risk.words.get("risk_kill_latched") == 0, TIMEOUT, message="unlatched")
    assert risk.words.get("risk_state") == RiskState.ACTIVE
    assert risk.new(AAPL, B, 100) == 0

    risk.command(ControlCommand.SET_REDUCING, "erin")
    wait_until(lambda: risk.words.get("risk_state") == RiskState.REDUCING, TIMEOUT, message="REDUCING")
    assert risk.new(AAPL, B, 100) == RiskReason.TRADING_REDUCING
    risk.command(ControlCommand.SET_ACTIVE, "erin")
    wait_until(lambda: risk.words.get("risk_state") == RiskState.ACTIVE, TIMEOUT, message="ACTIVE")


def test_a_firm_kill_latches_with_reason_firm_and_a_firm_reset_unlatches_only_that(risk_factory):
    """The risk hub's kill (issue 19): latched as FIRM; the hub's reset cannot undo a local kill."""
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    risk.command(ControlCommand.FIRM_KILL, "risk-hub")
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["detail"].rstrip(b"\0") == b"FIRM" and kill["operator"].rstrip(b"\0") == b"risk-hub"
    wait_until(lambda: risk.words.get("risk_kill_latched") == 1, TIMEOUT, message="latched")
    events_before = len(risk.events)
    risk.command(ControlCommand.FIRM_RESET, "alice")
    reset = risk.wait_event(ControlEventKind.RESET, events_before)
    assert reset["operator"].rstrip(b"\0") == b"alice"
    wait_until(lambda: risk.words.get("risk_kill_latched") == 0, TIMEOUT, message="unlatched by the firm")

    risk.command(ControlCommand.KILL, "bob")                           # a local kill
    risk.wait_event(ControlEventKind.KILL, events_before + 1)
    wait_until(lambda: risk.words.get("risk_kill_latched") == 1, TIMEOUT, message="latched locally")
    commands = risk.counters().get("risk.commands")
    risk.command(ControlCommand.FIRM_RESET, "alice")
    wait_until(lambda: risk.counters().get("risk.commands") == commands + 1, TIMEOUT, message="the firm reset read")
    assert risk.words.get("risk_kill_latched") == 1 and risk.new(AAPL, B, 100) == RiskReason.TRADING_HALTED
    risk.command(ControlCommand.RESET, "bob")
    wait_until(lambda: risk.words.get("risk_kill_latched") == 0, TIMEOUT, message="reset locally by name")


def test_limits_reload_bad_file_keeps_the_old_limits_good_file_is_announced(risk_factory):
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    assert risk.new(AAPL, B, 500) == 0
    good = risk.limits_path.read_text()
    risk.limits_path.write_text(good.replace("max_shares: 1000", "max_shares: -3"))
    risk.command(ControlCommand.RELOAD_LIMITS, "frank")
    wait_until(lambda: risk.counters().get("risk.limits_reload_failed") == 1, TIMEOUT, message="reload refused")
    assert risk.new(AAPL, B, 500) == 0                              # the old limits stay
    risk.limits_path.write_text(good.replace("max_shares: 1000", "max_shares: 400"))
    risk.command(ControlCommand.RELOAD_LIMITS, "frank")
    event = risk.wait_event(ControlEventKind.LIMITS_CHANGED)
    assert event["operator"].rstrip(b"\0") == b"frank" and event["value"] != 0
    assert risk.new(AAPL, B, 401) == RiskReason.MAX_SHARES
    assert risk.new(AAPL, B, 400) == 0
    assert risk.counters()["risk.limits_reloaded"] == 1
    assert risk.proc.poll() is None
    risk.proc.send_signal(signal.SIGTERM)
    assert risk.proc.wait(TIMEOUT) == 0
    out = output_of(risk.proc)
    assert "limits reload (by frank) refused" in out and "max_shares: must not be negative" in out
    assert "symbols.AAPL.max_shares 1000 -> 400" in out


@pytest.mark.parametrize("compiled", [1, 0])
def test_rejects_are_counted_by_reason_and_bad_books_are_refused(risk_factory, compiled):
    """With the compiled check set (the default) and with ``checks.py`` alone (``compiled_checks: 0``)."""
    from appliance.messages.catalog import BOOK_FLAG_STALE
    risk = risk_factory(compiled_checks=compiled)
    risk.start()
    risk.wait_ready()
    risk.quote(AAPL, PRICES[AAPL], BOOK_FLAG_STALE)
    assert risk.new(AAPL, B, 100) == RiskReason.BOOK_STALE
    risk.quote(AAPL, PRICES[AAPL])
    assert risk.new(AAPL, B, 100) == 0
    assert risk.new(AAPL, B, 100, PRICES[AAPL] + 1) == RiskReason.TICK
    wait_until(lambda: risk.counters().get("risk.rejects.TICK") == 1, TIMEOUT, message="counted")
    counters = risk.counters()
    assert counters["risk.rejects.BOOK_STALE"] == 1 and counters["risk.rejected"] == 2
    assert counters["risk.approved"] == 1
    approved = risk.approved_orders[-1]
    assert approved["t_risk_out_ns"] >= approved["t_strategy_out_ns"] > 0


def test_order_flags_pass_through_to_the_approved_order_or_are_refused_by_name(risk_factory):
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    short = int(Side.SELL_SHORT)
    assert risk.decide(Action.NEW, AAPL, short, 100) == RiskReason.SHORT_SALE
    assert risk.decide(Action.NEW, AAPL, B, 100, intermarket_sweep=1) == RiskReason.ISO_ORDER
    wait_until(lambda: risk.counters().get("risk.rejects.ISO_ORDER") == 1, TIMEOUT, message="counted by name")
    assert risk.decide(Action.NEW, AAPL, B, 100, display=ord("N"), capacity=ord("P")) == 0
    approved = risk.approved_orders[-1]
    assert (approved["display"], approved["capacity"], approved["minimum_quantity"],
            approved["intermarket_sweep"]) == (ord("N"), ord("P"), 0, 0)
    assert risk.counters()["risk.rejects.SHORT_SALE"] == 1


def test_the_loss_limit_latches_the_kill_switch_without_an_order(risk_factory):
    document = limits_document(SYMBOLS, max_daily_loss=1_000)
    risk = risk_factory(document)
    risk.start()
    risk.wait_ready()
    assert risk.new(AAPL, B, 100) == 0
    risk.fill(risk.approved_orders[-1]["client_order_id"], 100)       # long 100 at $190
    risk.quote(AAPL, PRICES[AAPL] - 100_000)                          # $180: -$1,000, at the limit
    wait_until(lambda: risk.counters()["risk.pnl"] == -1_000 * 10_000, TIMEOUT, message="re-marked at $180")
    risk.pump()
    assert not any(e["kind"] == ControlEventKind.KILL for e in risk.events)
    risk.quote(AAPL, PRICES[AAPL] - 100_100)                          # one more cent: -$1,001
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["detail"].rstrip(b"\0") == b"DAILY_LOSS" and kill["value"] == -1_001 * 10_000
    wait_until(lambda: risk.words.get("risk_kill_latched") == 1, TIMEOUT, message="latched")
    assert risk.new(AAPL, S, 100) == RiskReason.TRADING_HALTED


@pytest.mark.parametrize("old, new, expected", [
    ("  AAPL: {}", "  AAPL:\n    max_long: -1", "risk_limits.yaml:{line}: symbols.AAPL.max_long: must not be negative"),
    ("  AAPL: {}", "  AAPL: {}\n  NOPE: {}", "risk_limits.yaml:{line}: symbols.NOPE: unknown symbol 'NOPE'"),
    ("  max_drawdown: 75000\n", "", "risk_limits.yaml:{line}: global.max_drawdown: missing required key"),
    ("  AAPL: {}", "  AAPL: {max_shares: many}", "risk_limits.yaml:{line}: symbols.AAPL.max_shares: expected an integer"),
    ("  AAPL: {}", "  AAPL: {max_shares: [1}", "risk_limits.yaml:{line}: <top>: not valid YAML"),
])
def test_a_bad_limits_file_stops_start_up_with_file_line_key_and_reason(risk_factory, old, new, expected):
    risk = risk_factory()
    text = risk.limits_path.read_text()
    assert old in text
    broken = text.replace(old, new)
    risk.limits_path.write_text(broken)
    if new:
        marker = new.splitlines()[-1].strip()
        line = next(i for i, content in enumerate(broken.splitlines(), 1) if marker in content)
    else:
        line = next(i for i, content in enumerate(broken.splitlines(), 1) if content == "global:")
    proc = risk.spawner.start(risk.layout.path, "risk")
    assert proc.wait(TIMEOUT) == 2
    out = output_of(proc)
    if "YAML" in expected:                                     # the parser names the line it stopped at
        assert "risk_limits.yaml:" in out and "<top>: not valid YAML" in out, out
    else:
        assert expected.format(line=line) in out, out
    assert risk.counters().get("risk.approved") is None          # it never started


def test_unknown_params_stop_start_up(risk_factory):
    risk = risk_factory(snapshot_retry_ms=0)
    proc = risk.spawner.start(risk.layout.path, "risk")
    assert proc.wait(TIMEOUT) == 2
    assert "processes.risk.params.snapshot_retry_ms: must be 10..600000" in output_of(proc)


def test_kill_symbol_latches_one_symbol_and_its_reset_needs_a_name(risk_factory):
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    assert risk.new(AAPL, B, 100) == 0
    open_id = risk.approved_orders[-1]["client_order_id"]
    risk.command(ControlCommand.KILL_SYMBOL, "alice", AAPL)
    kill = risk.wait_event(ControlEventKind.KILL_SYMBOL)
    assert (kill["value"], kill["operator"].rstrip(b"\0"), kill["detail"].rstrip(b"\0")) == (AAPL, b"alice", b"AAPL")
    assert kill["state"] == RiskState.ACTIVE
    wait_until(lambda: risk.counters()["risk.symbol_killed.AAPL"] == 1, TIMEOUT, message="AAPL published latched")
    counters = risk.counters()
    assert counters["risk.symbol_killed.MSFT"] == 0 and counters["risk.symbols_killed"] == 1
    assert risk.words.get("risk_kill_latched") == 0 and risk.words.get("risk_state") == RiskState.ACTIVE
    assert risk.new(AAPL, B, 100) == RiskReason.SYMBOL_KILLED
    assert risk.decide(Action.REPLACE, AAPL, B, 200, orig=open_id) == RiskReason.SYMBOL_KILLED
    assert risk.decide(Action.CANCEL, AAPL, B, 0, 0, orig=open_id) == 0
    assert risk.new(MSFT, S, 100) == 0
    risk.command(ControlCommand.KILL_SYMBOL, "mallory", 7)                      # no such symbol
    risk.command(ControlCommand.RESET_SYMBOL, "", AAPL)                         # a reset needs a name
    wait_until(lambda: risk.counters()["risk.resets_refused"] == 1 and risk.counters()["risk.bad_commands"] == 1,
               TIMEOUT, message="the nameless reset and the unknown symbol refused")
    assert risk.new(AAPL, B, 100) == RiskReason.SYMBOL_KILLED
    risk.command(ControlCommand.KILL, "alice")
    risk.command(ControlCommand.RESET, "bob")                                   # the whole book's reset
    risk.wait_event(ControlEventKind.RESET)
    assert risk.new(AAPL, B, 100) == RiskReason.SYMBOL_KILLED                  # leaves the symbol latched
    events_before = len(risk.events)
    risk.command(ControlCommand.RESET_SYMBOL, "bob", AAPL)
    reset = risk.wait_event(ControlEventKind.RESET_SYMBOL, events_before)
    assert (reset["value"], reset["operator"].rstrip(b"\0")) == (AAPL, b"bob")
    assert risk.new(AAPL, B, 100) == 0
    wait_until(lambda: risk.counters()["risk.symbol_killed.AAPL"] == 0, TIMEOUT, message="AAPL published free")
    counters = risk.counters()
    assert counters["risk.symbol_kills"] == 1 and counters["risk.symbol_resets"] == 1
    risk.proc.send_signal(signal.SIGTERM)
    assert risk.proc.wait(TIMEOUT) == 0
    out = output_of(risk.proc)
    assert "SYMBOL KILL SWITCH latched for AAPL: MANUAL by alice" in out
    assert "symbol kill switch for AAPL reset by bob" in out and "symbol id 7 is not in the layout" in out


# ---------------------------------------------------------------------------- issue 15: the risk state file

def test_issue_15_a_latched_kill_switch_survives_down_and_up(risk_factory):
    """Measured before: `appliance kill`, `down`, `up --sim`: the gate was open and risk ACTIVE again."""
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    risk.command(ControlCommand.KILL, "alice")
    risk.wait_event(ControlEventKind.KILL)
    out = risk.down_and_up()
    risk.wait_ready()
    assert risk.words.get("risk_kill_latched") == 1 and risk.words.get("risk_state") == RiskState.HALTED
    assert risk.new(AAPL, B, 100) == RiskReason.TRADING_HALTED
    risk.command(ControlCommand.RESET, "dave")
    risk.wait_event(ControlEventKind.RESET)
    out += risk.down_and_up(stop=signal.SIGKILL)                 # a reset by name survives as well
    risk.wait_ready()
    assert risk.words.get("risk_kill_latched") == 0 and risk.words.get("risk_state") == RiskState.ACTIVE
    assert risk.new(AAPL, B, 100) == 0
    risk.proc.send_signal(signal.SIGTERM)
    assert risk.proc.wait(TIMEOUT) == 0
    out += output_of(risk.proc)
    assert "kill switch restored from the state file: latched for MANUAL by alice" in out, out


def test_symbol_latches_and_reducing_survive_down_and_up_with_their_operators(risk_factory):
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    risk.command(ControlCommand.KILL_SYMBOL, "carol", MSFT)
    risk.command(ControlCommand.SET_REDUCING, "erin")
    wait_until(lambda: risk.words.get("risk_state") == RiskState.REDUCING, TIMEOUT, message="REDUCING")
    out = risk.down_and_up()
    restored = risk.wait_event(ControlEventKind.KILL_SYMBOL)    # the OMS cancels what it may hold in MSFT
    assert restored["value"] == MSFT and restored["operator"].rstrip(b"\0") == b"carol"
    risk.wait_ready()
    assert risk.words.get("risk_state") == RiskState.REDUCING and risk.words.get("risk_kill_latched") == 0
    assert risk.new(MSFT, S, 100) == RiskReason.SYMBOL_KILLED
    assert risk.new(AAPL, B, 100) == RiskReason.TRADING_REDUCING
    wait_until(lambda: risk.counters()["risk.symbol_killed.MSFT"] == 1, TIMEOUT, message="MSFT published")
    risk.command(ControlCommand.SET_ACTIVE, "erin")
    risk.command(ControlCommand.RESET_SYMBOL, "carol", MSFT)
    risk.wait_event(ControlEventKind.RESET_SYMBOL)
    risk.proc.send_signal(signal.SIGTERM)
    assert risk.proc.wait(TIMEOUT) == 0
    out += output_of(risk.proc)
    assert "trading state REDUCING (by erin)" in out and "trading state ACTIVE (by erin)" in out
    assert "symbol kill switch for MSFT restored from the state file: latched for MANUAL by carol" in out
    assert "REDUCING restored from the state file (set by erin" in out


def test_every_latch_reset_and_state_change_is_on_disk_before_it_is_announced(risk_factory):
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    assert risk.state()["kill"] is None and risk.state()["peak_pnl"] == 0
    for command, operator, argument, kind, check in [
            (ControlCommand.KILL_SYMBOL, "carol", MSFT, ControlEventKind.KILL_SYMBOL,
             lambda st: st["symbols_killed"]["MSFT"]["operator"] == "carol"),
            (ControlCommand.SET_REDUCING, "erin", 0, ControlEventKind.STATE_CHANGED,
             lambda st: st["reducing"]["operator"] == "erin"),
            (ControlCommand.KILL, "alice", 0, ControlEventKind.KILL,
             lambda st: (st["kill"]["reason"], st["kill"]["operator"], st["reducing"]) == ("MANUAL", "alice", None)),
            (ControlCommand.RESET, "dave", 0, ControlEventKind.RESET, lambda st: st["kill"] is None),
            (ControlCommand.RESET_SYMBOL, "carol", MSFT, ControlEventKind.RESET_SYMBOL,
             lambda st: st["symbols_killed"] == {})]:
        events_before = len(risk.events)
        risk.command(command, operator, argument)
        risk.wait_event(kind, events_before)
        assert check(risk.state()), (command, risk.state())       # read the moment the OMS could have heard
    assert risk.counters()["risk.state_file_writes"] >= 6


def test_the_days_peak_survives_down_and_up_and_the_drawdown_is_not_forgiven(risk_factory):
    risk = risk_factory(limits_document(SYMBOLS, max_drawdown=1_000))
    risk.start()
    risk.wait_ready()
    assert risk.new(AAPL, B, 100) == 0
    risk.fill(risk.approved_orders[-1]["client_order_id"], 100)        # long 100 at $190
    risk.quote(AAPL, 2_000_000)                                        # $200: +$1,000, the day's peak
    wait_until(lambda: risk.counters()["risk.peak_pnl"] == 1_000 * 10_000, TIMEOUT, message="the peak")
    risk.mids[AAPL] = 1_899_000                                        # while down: $189.90, -$10, $1,010 under it
    risk.down_and_up()
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["detail"].rstrip(b"\0") == b"DRAWDOWN" and kill["value"] == -1_010 * 10_000
    assert risk.counters()["risk.peak_pnl"] == 1_000 * 10_000


def test_the_peak_reaches_the_disk_within_a_second_and_survives_a_crash(risk_factory):
    risk = risk_factory(limits_document(SYMBOLS, max_drawdown=1_000))
    risk.start()
    risk.wait_ready()
    assert risk.new(AAPL, B, 100) == 0
    risk.fill(risk.approved_orders[-1]["client_order_id"], 100)
    risk.quote(AAPL, 2_000_000)
    wait_until(lambda: risk.state()["peak_pnl"] == 1_000 * 10_000, TIMEOUT, message="the peak written")
    risk.mids[AAPL] = 1_899_000
    risk.down_and_up(stop=signal.SIGKILL)                              # no on_close: only the periodic write
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["detail"].rstrip(b"\0") == b"DRAWDOWN"


def test_the_days_realized_loss_rebuilt_from_the_oms_trips_the_daily_loss_after_a_restart(risk_factory):
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    risk.positions[AAPL][2] = -50_001 * 10_000                          # the OMS's journal: the day's realized P&L
    risk.down_and_up()
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["detail"].rstrip(b"\0") == b"DAILY_LOSS" and kill["value"] == -50_001 * 10_000
    assert risk.new(AAPL, S, 100) == RiskReason.TRADING_HALTED


@pytest.mark.parametrize("content", [b"{\"version\": 1, \"trading_d", b"",
                                     b'{"version": 2, "trading_day": 1}', b'{"version": 1}'])
def test_an_unreadable_state_file_starts_halted_until_a_named_reset(risk_factory, content):
    risk = risk_factory()
    risk.state_file.parent.mkdir(parents=True, exist_ok=True)
    risk.state_file.write_bytes(content)
    risk.start()
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["detail"].rstrip(b"\0") == b"STATE_FILE"
    risk.wait_ready()
    assert risk.words.get("risk_kill_latched") == 1 and risk.new(AAPL, B, 100) == RiskReason.TRADING_HALTED
    assert risk.state()["kill"]["reason"] == "STATE_FILE"
    kept = list(risk.state_file.parent.glob("risk-state.json.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    risk.command(ControlCommand.RESET, "dave")
    risk.wait_event(ControlEventKind.RESET)
    assert risk.new(AAPL, B, 100) == 0 and risk.state()["kill"] is None
    assert risk.counters()["risk.state_file_unreadable"] == 1
    risk.proc.send_signal(signal.SIGTERM)
    assert risk.proc.wait(TIMEOUT) == 0
    assert "risk state file unreadable" in output_of(risk.proc)


def test_a_state_file_of_another_day_is_not_carried_over(risk_factory):
    risk = risk_factory()
    risk.state_file.parent.mkdir(parents=True, exist_ok=True)
    risk.state_file.write_text('{"version": 1, "trading_day": 19991231, "written_ns": 1, "kill": {"reason": "MANUAL",'
                               ' "operator": "alice", "t_ns": 1, "value": 0}, "symbols_killed": {}, "reducing": null,'
                               ' "peak_pnl": 5}')
    risk.start()
    risk.wait_ready()
    assert risk.words.get("risk_state") == RiskState.ACTIVE and risk.new(AAPL, B, 100) == 0
    assert risk.state()["trading_day"] != 19991231 and risk.state()["kill"] is None
    risk.proc.send_signal(signal.SIGTERM)
    assert risk.proc.wait(TIMEOUT) == 0
    assert "is from trading day 19991231" in output_of(risk.proc)


def test_a_state_file_that_cannot_be_written_latches_the_kill_switch(risk_factory):
    risk = risk_factory(state_file="state/risk.json")
    risk.start()
    risk.wait_ready()
    directory = risk.state_file.parent
    for f in directory.iterdir():
        f.unlink()
    directory.rmdir()
    directory.write_text("not a directory")                  # every write now fails (ENOTDIR), even as root
    risk.command(ControlCommand.SET_REDUCING, "erin")
    kill = risk.wait_event(ControlEventKind.KILL)
    assert kill["detail"].rstrip(b"\0") == b"STATE_WRITE"
    wait_until(lambda: risk.counters()["risk.state_file_write_failures"] >= 1, TIMEOUT, message="counted")
    assert risk.words.get("risk_kill_latched") == 1 and risk.new(AAPL, B, 100) == RiskReason.TRADING_HALTED
    directory.unlink()
    directory.mkdir()                                         # the disk is back: the retry writes the latch
    wait_until(lambda: risk.state_file.exists() and risk.state()["kill"]["reason"] == "STATE_WRITE", TIMEOUT,
               message="the latch written by the retry")
    risk.command(ControlCommand.RESET, "dave")
    risk.wait_event(ControlEventKind.RESET)
    assert risk.new(AAPL, B, 100) == 0


def test_an_approved_order_is_its_intent_field_for_field_and_a_foreign_record_is_refused(risk_factory):
    """The hot path re-packs the intent it read in one unpack: every field travels (the header is
    ApprovedOrder's, t_risk_out_ns is added); a record that is not an OrderIntent is BAD_ORDER, counted."""
    risk = risk_factory()
    risk.start()
    risk.wait_ready()
    slot = risk.intents.claim()
    ORDER_INTENT.pack_into(risk.intents.buffer, slot, *ORDER_INTENT.body(
        client_order_id=4242, strategy_id=7, symbol_id=MSFT, action=int(Action.NEW), side=S, shares=300,
        price=PRICES[MSFT], time_in_force=TIF_DAY, t_rx_ns=111, t_feed_out_ns=222, t_strategy_out_ns=333))
    risk.intents.commit()
    wait_until(lambda: risk.pump() or 4242 in risk.decisions, TIMEOUT, message="risk's decision")
    assert risk.decisions[4242] == 0
    order = risk.approved_orders[-1]
    assert (order["type_id"], order["schema_version"], order["size"]) == \
        (APPROVED_ORDER.type_id, APPROVED_ORDER.version, APPROVED_ORDER.size)
    assert {k: order[k] for k in ("client_order_id", "orig_client_order_id", "strategy_id", "symbol_id", "action",
                                  "side", "shares", "price", "time_in_force", "t_rx_ns", "t_feed_out_ns",
                                  "t_strategy_out_ns")} == {
        "client_order_id": 4242, "orig_client_order_id": 0, "strategy_id": 7, "symbol_id": MSFT,
        "action": int(Action.NEW), "side": S, "shares": 300, "price": PRICES[MSFT], "time_in_force": TIF_DAY,
        "t_rx_ns": 111, "t_feed_out_ns": 222, "t_strategy_out_ns": 333}
    assert order["t_risk_out_ns"] > 0
    slot = risk.intents.claim()
    ORDER_INTENT.struct.pack_into(risk.intents.buffer, slot, APPROVED_ORDER.type_id, ORDER_INTENT.version,
                                  ORDER_INTENT.size, *ORDER_INTENT.body(
                                      client_order_id=4243, strategy_id=7, symbol_id=MSFT, action=int(Action.NEW),
                                      side=S, shares=300, price=PRICES[MSFT], time_in_force=TIF_DAY,
                                      t_strategy_out_ns=time.time_ns()))
    risk.intents.commit()
    wait_until(lambda: risk.pump() or 4243 in risk.decisions, TIMEOUT, message="risk's decision on the foreign record")
    assert risk.decisions[4243] == RiskReason.BAD_ORDER
    wait_until(lambda: risk.counters().get("risk.bad_intents") == 1, TIMEOUT, message="counted")
    counters = risk.counters()
    assert counters["risk.rejects.BAD_ORDER"] == 1 and counters["risk.rejected"] == 1
    assert counters["risk.approved"] == 1 and counters["risk.intents"] == 2


def test_a_strategy_that_asks_for_reducing_is_held_there_until_an_operator_sets_active(risk_factory):
    risk = risk_factory(aapl_limits(1000))
    risk.start()
    risk.wait_ready()
    assert risk.new(AAPL, B, 300) == 0
    risk.fill(risk.approved_orders[-1]["client_order_id"], 300)
    wait_until(lambda: risk.gauges() == (0, 300, 0), TIMEOUT, message="the fill applied")
    risk.intent(Action.REDUCE, 0xFFFFFFFF, 0, 0, 0)                 # Strategy.request_reducing
    assert risk.new(AAPL, B, 100) == RiskReason.TRADING_REDUCING    # would grow the long
    assert risk.new(MSFT, S, 100) == RiskReason.TRADING_REDUCING    # flat: any order grows it
    assert risk.new(AAPL, S, 100) == 0                              # shrinks the long
    assert risk.words.get("risk_state") == RiskState.ACTIVE         # only that strategy reduces, not the firm
    wait_until(lambda: risk.counters()["risk.strategies_reducing"] == 1, TIMEOUT, message="published")
    counters = risk.counters()
    assert counters["risk.rejects.TRADING_REDUCING"] == 2 and counters["risk.rejected"] == 2   # REDUCE is no reject
    assert not any(o["action"] == Action.REDUCE for o in risk.approved_orders)     # risk's own: not the OMS's
    risk.command(ControlCommand.SET_ACTIVE, "erin")
    wait_until(lambda: risk.counters()["risk.strategies_reducing"] == 0, TIMEOUT, message="released")
    assert risk.new(AAPL, B, 100) == 0
    risk.proc.send_signal(signal.SIGTERM)
    assert risk.proc.wait(TIMEOUT) == 0
    out = output_of(risk.proc)
    assert "strategy 7 asked for REDUCING" in out and "released from REDUCING by erin" in out


def test_a_strategy_snapshot_request_passes_risk_to_the_oms_even_before_risk_is_ready(risk_factory):
    risk = risk_factory()
    risk.answer_snapshots = False
    risk.start()
    assert risk.decide(Action.SNAPSHOT, 0xFFFFFFFF, 0, 0, 0) == 0       # like a cancel: never NOT_READY
    assert risk.approved_orders[-1]["action"] == Action.SNAPSHOT
    assert risk.counters().get("risk.cancels", 0) == 0                  # not counted as a message to the venue
