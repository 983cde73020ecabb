"""Shared pieces of the OMS tests: a layout, the OMS as a process or in-process, a stand-in for risk
and the strategy, and a scripted SoupBinTCP venue (its own test: tests/oms/test_oms_rig.py).
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from appliance.messages.catalog import APPROVED_ORDER, CONTROL_EVENT, EXECUTION_REPORT, RISK_SNAPSHOT
from appliance.messages.codes import TIF_DAY, TIF_IOC, Action, GateReason, Side
from appliance.oms import agent as oms_agent
from appliance.runtime.agent import AgentContext
from appliance.runtime.counters import ProcessState
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.wire import ouch, soupbintcp, soupbintcp_session
from conftest import layout_document, output_of, wait_until

SYMBOLS = ["AAPL", "MSFT", "SPY"]
SIDE = {"B": Side.BUY, "S": Side.SELL, "T": Side.SELL_SHORT}


def oms_layout(name: str, venue_port: int, journal: str, ring_segments: dict[str, str] | None = None,
               **params) -> dict:
    """A layout with the OMS and the rings and tables it needs; the test plays risk and the strategy.
    ``ring_segments``: ring name -> a second segment to put it in (made here), instead of ``main``.
    The venue login (ALGO1/secret1) goes to a 0600 credentials file beside an absolute journal
    unless ``credentials`` names one (a relative journal is relative to the layout's directory,
    unknown here: its credentials file is named beside it but not written)."""
    quiet = {"strategy": "sleep", "sleep_ns": 1_000_000}
    if "credentials" not in params:
        params["credentials"] = str(Path(journal).parent / "venue.credentials")
        if Path(journal).is_absolute() and not Path(params["credentials"]).exists():
            from appliance.oms.credentials import write_venue_credentials
            write_venue_credentials(params["credentials"], "ALGO1", "secret1")
    doc = layout_document(
        name,
        processes=[
            {"name": "supervisor", "agent": "appliance.supervisor.agent:SupervisorAgent", "idle": quiet},
            {"name": "strategy", "agent": "appliance.strategy.agent:StrategyAgent", "idle": quiet},
            {"name": "risk", "agent": "appliance.risk.agent:RiskAgent", "idle": quiet},
            {"name": "oms", "agent": "appliance.oms.agent:OmsAgent",
             "idle": {"strategy": "backoff", "spins": 10, "yields": 5, "min_park_ns": 20_000, "max_park_ns": 200_000},
             "params": {"venue": {"host": "127.0.0.1", "port": venue_port}, "journal": journal,
                        "journal_size_mb": 4, "durability": "page_cache", "risk_heartbeat_limit_ms": 2000,
                        "heartbeat_ms": 100, "peer_timeout_ms": 3000, "reconnect_min_ms": 20,
                        "reconnect_max_ms": 200, "in_flight_timeout_ms": 1000, "unacked_timeout_ms": 300,
                        **params}},
        ],
        rings=[
            {"name": "approved_orders", "segment": "main", "producer": "risk", "consumer": "oms",
             "message": "ApprovedOrder", "slot_size": 128, "capacity": 4096},
            {"name": "exec_to_strategy", "segment": "main", "producer": "oms", "consumer": "strategy",
             "message": "ExecutionReport", "slot_size": 128, "capacity": 8192},
            {"name": "exec_to_risk", "segment": "main", "producer": "oms", "consumer": "risk",
             "message": "ExecutionReport", "slot_size": 128, "capacity": 8192},
            {"name": "risk_events", "segment": "main", "producer": "risk", "consumer": "oms",
             "message": "ControlEvent", "slot_size": 64, "capacity": 1024},
        ],
        slots_per_process=256, symbols=SYMBOLS)
    doc["tables"] += [{"name": "positions", "kind": "positions", "segment": "main"},
                      {"name": "control", "kind": "control", "segment": "main"}]
    if (params.get("replication") or {}).get("transport") == "shm":     # the same-box standby's rings
        from appliance.oms.replication_shm import add_to_layout
        add_to_layout(doc)
    for ring in doc["rings"]:
        segment = (ring_segments or {}).get(ring["name"])
        if segment is not None:
            ring["segment"] = segment
            if segment not in [s["name"] for s in doc["segments"]]:
                doc["segments"].append({**doc["segments"][0], "name": segment})
    return doc


class RiskHeartbeat:
    """Beats risk's heartbeat in the process table from a thread, until paused or stopped."""

    def __init__(self, memory: SharedMemory, period_s: float = 0.005):
        self._heartbeat = memory.heartbeat("risk")
        self.period_s = period_s
        self.beating = threading.Event()
        self.beating.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            if self.beating.is_set():
                self._heartbeat.begin()
                self._heartbeat.end(0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Rig:
    """The test's side of the OMS: shared memory, the rings of risk and the strategy, the control words."""

    def __init__(self, layout_path: Path):
        self.layout = load_layout(layout_path)
        self.memory = SharedMemory.create(self.layout)
        try:
            self._attach()
        except BaseException:
            self.memory.close()
            self.memory.unlink()
            raise

    def _attach(self) -> None:
        peer = self.memory.channel        # this test plays risk and the strategy
        self.approved = peer(oms_agent.ORDERS_RING.other_side(), "risk")
        self.risk_events = peer(oms_agent.EVENTS_RING.other_side(), "risk")
        self.to_strategy = peer(oms_agent.TO_STRATEGY.other_side(), "strategy")
        self.to_risk = peer(oms_agent.TO_RISK.other_side(), "risk")
        self.control = self.memory.control("*")
        self.positions = self.memory.positions_reader()
        self.heartbeat = RiskHeartbeat(self.memory)
        self.strategy_reports: list[dict] = []
        self.risk_reports: list[dict] = []
        self.risk_snapshots: list[dict] = []
        self.strategy_snapshots: list[dict] = []     # answers to a strategy's Action.SNAPSHOT (exec_to_strategy)
        self.proc = None
        self.gate(True)

    # ---- playing the supervisor and risk

    def gate(self, open_: bool, reasons: int = 0) -> None:
        self.control.write_gate(0 if open_ else int(reasons or GateReason.OPERATOR))

    def approve(self, client_order_id: int, action: int = Action.NEW, symbol: str = "AAPL", side: str = "B",
                shares: int = 100, price: int = 1_900_000, tif: int = TIF_DAY, orig: int = 0, strategy: int = 1,
                t_rx_ns: int = 0, **flags) -> None:
        """One ApprovedOrder on the ring; ``flags``: its display, capacity, minimum_quantity, intermarket_sweep."""
        sid = 0xFFFFFFFF if symbol is None else SYMBOLS.index(symbol)
        now = time.time_ns()
        deadline = time.monotonic() + 10
        while (offset := self.approved.claim()) < 0:
            assert time.monotonic() < deadline, "approved_orders ring stayed full"
            time.sleep(0.001)
        t_rx = t_rx_ns or now - 30_000
        APPROVED_ORDER.pack_into(self.approved.buffer, offset, *APPROVED_ORDER.body(
            client_order_id=client_order_id, orig_client_order_id=orig, strategy_id=strategy, symbol_id=sid,
            action=action, side=SIDE[side] if side else 0, shares=shares, price=price, time_in_force=tif,
            t_rx_ns=t_rx, t_feed_out_ns=t_rx + 10_000, t_strategy_out_ns=t_rx + 20_000, t_risk_out_ns=now, **flags))
        self.approved.commit()

    def new(self, client_order_id: int, symbol: str = "AAPL", side: str = "B", shares: int = 100,
            price: int = 1_900_000, **kw) -> None:
        self.approve(client_order_id, Action.NEW, symbol, side, shares, price, **kw)

    def cancel(self, client_order_id: int, orig: int, shares: int = 0, symbol: str = "AAPL", side: str = "B") -> None:
        self.approve(client_order_id, Action.CANCEL, symbol, side, shares, 0, orig=orig)

    def replace(self, client_order_id: int, orig: int, shares: int, price: int, symbol: str = "AAPL",
                side: str = "B", **flags) -> None:
        self.approve(client_order_id, Action.REPLACE, symbol, side, shares, price, orig=orig, **flags)

    def control_event(self, kind: int, state: int = 0, value: int = 0, operator: bytes = b"test") -> None:
        offset = self.risk_events.claim()
        assert offset >= 0
        CONTROL_EVENT.pack_into(self.risk_events.buffer, offset, kind, state, value, operator, b"", time.time_ns())
        self.risk_events.commit()

    # ---- reading what the OMS says

    def drain(self) -> None:
        """Reports into ``strategy_reports`` and ``risk_reports``; RiskSnapshot records (on the same
        rings, in order with the reports) into ``strategy_snapshots`` and ``risk_snapshots``."""
        for ring, into, snapshots in ((self.to_strategy, self.strategy_reports, self.strategy_snapshots),
                                      (self.to_risk, self.risk_reports, self.risk_snapshots)):
            while (offset := ring.peek()) >= 0:
                if RISK_SNAPSHOT.read(ring.buffer, offset).type_id == RISK_SNAPSHOT.type_id:
                    snapshots.append(RISK_SNAPSHOT.as_dict(ring.buffer, offset))
                else:
                    into.append(EXECUTION_REPORT.as_dict(ring.buffer, offset))
                ring.release()

    def snapshot_kinds(self) -> list[int]:
        self.drain()
        return [r["kind"] for r in self.risk_snapshots]

    def events(self, client_order_id: int | None = None, ring: str = "strategy") -> list[int]:
        self.drain()
        reports = self.strategy_reports if ring == "strategy" else self.risk_reports
        return [r["event"] for r in reports if client_order_id is None or r["client_order_id"] == client_order_id]

    def reports_of(self, client_order_id: int) -> list[dict]:
        self.drain()
        return [r for r in self.strategy_reports if r["client_order_id"] == client_order_id]

    def counters(self) -> dict[str, int]:
        return self.memory.counters_reader().by_label()

    def counter(self, label: str) -> int:
        return self.counters().get(label, 0)

    def position(self, symbol: str):
        return self.positions.read(SYMBOLS.index(symbol))

    # ---- the OMS as a process

    def start(self, spawner, prefix: tuple = ()) -> None:
        """The OMS as a process (``prefix``: ``ip netns exec NAME``, in a network namespace)."""
        self.proc = spawner.start(self.layout.path, "oms", prefix)
        table = self.memory.process_table()
        pid = self.proc.pid                 # a restart: the table still shows the last one until this one starts
        wait_until(lambda: (table.read("oms").pid == pid and table.read("oms").state is ProcessState.RUNNING)
                   or self.proc.poll() is not None, 30, message="the OMS running")
        assert self.proc.poll() is None, output_of(self.proc)

    def wait_ready(self, timeout: float = 20) -> None:
        wait_until(lambda: self.control.get("oms_ready") == 1 or (self.proc is not None and self.proc.poll() is not None),
                   timeout, message="oms_ready")
        if self.proc is not None:
            assert self.proc.poll() is None, output_of(self.proc)

    def close(self) -> None:
        self.heartbeat.stop()
        self.memory.close()
        self.memory.unlink()


def in_process_agent(rig: Rig):
    """An OmsAgent in this process on the rig's memory (started; drive it with ``pump``)."""
    from appliance.oms.agent import OmsAgent
    layout = rig.layout
    context = AgentContext(layout, layout.processes["oms"], rig.memory, rig.memory.counters_writer("oms"))
    agent = OmsAgent(context)
    agent.on_start()
    return agent


def pump(agent, until=None, timeout: float = 10.0, message: str = "condition") -> None:
    """Run the agent's duty cycle until ``until()`` holds (or once when None)."""
    deadline = time.monotonic() + timeout
    while True:
        if agent.do_work() == 0:
            time.sleep(0.0005)
        if until is None or until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")


# ------------------------------------------------------------------ a scripted venue

class ScriptedVenue:
    """A SoupBinTCP server on a thread that logs the OMS in and answers only what ``policy`` says.

    ``policy(message_dict) -> list of outbound OUCH dicts`` (default: answer nothing). It keeps a
    store, so a reconnecting client is replayed from its requested sequence number.
    """

    def __init__(self, policy=None, session: str = "SCRIPT0001", port: int = 0, replay_delay_s: float = 0.0,
                 login_hook=None):
        """``port``: listen there (a venue restarted on the same port); ``replay_delay_s``: the
        LoginAccepted goes out at once, the replay this much later (a slow venue); ``login_hook``:
        rewrites the client's login fields before the session sees them."""
        self.store = soupbintcp_session.SequencedStore(session)
        self.replay_delay_s = replay_delay_s
        self.login_hook = login_hook
        self.policy = policy or (lambda message: [])
        self.received: list[dict] = []
        self.logouts = 0
        self.logins = 0
        self.accepting = threading.Event()      # clear it: new connections are closed at once (venue down)
        self.accepting.set()
        self._drop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self.accepting.is_set():
                conn.close()
                continue
            self._connection(conn)

    def _connection(self, conn: socket.socket) -> None:
        session = soupbintcp_session.ServerSession(self.store, lambda u, p: True, heartbeat_interval_ns=100_000_000,
                                           peer_timeout_ns=5_000_000_000)
        if self.login_hook is not None:
            login = session._login
            session._login = lambda fields, now, events: login(self.login_hook(dict(fields)), now, events)
        session.connection_made(time.monotonic_ns())
        conn.settimeout(0.02)
        try:
            while not self._stop.is_set() and session.state not in ("closed",):
                if self._drop.is_set():
                    self._drop.clear()
                    break
                try:
                    data = conn.recv(65536)
                    if not data:
                        break
                except socket.timeout:
                    data = b""
                now = time.monotonic_ns()
                events = session.receive(data, now) if data else session.tick(now)
                for event in events:
                    if type(event) is soupbintcp_session.LoggedOut:
                        self.logouts += 1
                    if type(event) is soupbintcp_session.ClientLoggedIn:
                        self.logins += 1
                    if type(event) is soupbintcp_session.UnsequencedMessage:
                        decoded = ouch.decode_inbound(event.message)
                        with self._lock:
                            self.received.append(decoded)
                        for answer in self.policy(decoded):
                            session.send_sequenced(ouch.encode_outbound({"timestamp": 0, **answer}), now)
                out = session.take_outbound()
                if out and self.replay_delay_s and any(type(e) is soupbintcp_session.ClientLoggedIn for e in events):
                    conn.sendall(out[:LOGIN_ACCEPTED_SIZE])
                    time.sleep(self.replay_delay_s)          # the venue is slow to send the replay
                    out = out[LOGIN_ACCEPTED_SIZE:]
                if out:
                    conn.sendall(out)
        except OSError:
            pass
        finally:
            conn.close()

    def messages(self, kind: str | None = None) -> list[dict]:
        with self._lock:
            return [m for m in self.received if kind is None or m["type"] == kind]

    def drop(self) -> None:
        """Close the current connection (as a venue that fails would)."""
        self._drop.set()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)


LOGIN_ACCEPTED_SIZE = len(soupbintcp.login_accepted("SCRIPT0001", 1))


def accepted(order: dict, ref: int = 1) -> dict:
    """The venue's Accepted for an Enter Order dict (live)."""
    return {"type": "A", "order_token": order["order_token"], "buy_sell_indicator": order["buy_sell_indicator"],
            "shares": order["shares"], "stock": order["stock"], "price": order["price"],
            "time_in_force": order["time_in_force"], "firm": order["firm"], "display": "Y",
            "order_reference_number": ref, "capacity": "A", "intermarket_sweep_eligibility": "N",
            "minimum_quantity": 0, "cross_type": "N", "order_state": "L", "bbo_weight_indicator": " "}


def journal_path(tmp_path: Path) -> str:
    return str(tmp_path / "oms" / "journal.bin")


# ------------------------------------------------------------------ the OMS in-process against a scripted venue

def accept_all(message: dict) -> list[dict]:
    """A venue that accepts every order, cancels every cancel in full, and knows nothing else."""
    if message["type"] == "O":
        return [accepted(message)]
    if message["type"] == "X":
        return [{"type": "C", "order_token": message["order_token"], "decrement_shares": 100, "reason": "U"}]
    return []


class Setup:
    """A scripted venue, a rig and OMS agents in this process (``start``, ``crash``)."""

    def __init__(self, write_layout, unique_name, tmp_path, policy=None, **params):
        self.venue = ScriptedVenue(policy)
        self.journal = journal_path(tmp_path)
        doc = oms_layout(unique_name, self.venue.port, self.journal, **params)
        self.rig = Rig(write_layout(doc))
        self.agents = []

    def start(self):
        agent = in_process_agent(self.rig)
        self.agents.append(agent)
        return agent

    def crash(self, agent) -> None:
        """What a SIGKILL leaves: no logout, no final sync; the socket and the file closed by the kernel."""
        agent.session.close()
        if agent.journal._committer is not None:
            agent.journal._committer.stop()
        agent.journal._mm.flush()
        agent.journal._anchor = None
        agent.journal._mm.close()
        import os
        os.close(agent.journal._fd)
        agent.journal._closed = True
        self.agents.remove(agent)

    def restart_venue(self, **kwargs) -> "ScriptedVenue":
        """The venue process restarted on the same port: a new, empty store (``session`` may differ)."""
        port, policy = self.venue.port, self.venue.policy
        self.venue.close()
        self.venue = ScriptedVenue(policy, port=port, **kwargs)
        return self.venue

    def close(self):
        for agent in self.agents:
            try:
                agent.on_close()
            except Exception:
                pass
        self.rig.close()
        self.venue.close()


@pytest.fixture
def setup(write_layout, unique_name, tmp_path):
    """``setup(policy, **oms_params)`` -> a Setup; every one made is closed after the test."""
    made = []

    def make(policy=None, **params) -> Setup:
        s = Setup(write_layout, unique_name, tmp_path, policy, **params)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def ready(agent, rig: Rig) -> None:
    pump(agent, lambda: rig.control.get("oms_ready") == 1, message="oms_ready")


__all__ = ["SYMBOLS", "Rig", "RiskHeartbeat", "ScriptedVenue", "Setup", "accept_all", "accepted",
           "in_process_agent", "journal_path", "oms_layout", "pump", "ready", "setup"]


def recover(path: str, size: int = 1 << 20, symbols=SYMBOLS):
    """The OMS's state rebuilt from the journal at ``path`` (opened and closed here)."""
    from appliance.oms.journal import Journal
    from appliance.oms.recovery import rebuild
    journal = Journal.open(path, size, "page_cache")
    try:
        return rebuild(journal.records(), symbols)
    finally:
        journal.close()


def drive(agent, until, standby=None, timeout: float = 10.0, message: str = "condition") -> None:
    """The agent's duty cycle and (replication) the standby's poll, in turn, until ``until()``."""
    deadline = time.monotonic() + timeout
    while not until():
        if agent.do_work() == 0:
            time.sleep(0.0002)
        if standby is not None:
            standby.poll(0)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def send_mixed(rig, i: int) -> bool:
    """Order ``i`` of the burst mix against the simulated exchange's book (AAPL IOC and MSFT filled at
    once, SPY resting, every fourth a cancel of the SPY order before it); True for a new order."""
    kind = i % 4
    if kind == 0:
        rig.new(i, "AAPL", "B", 10, 1_900_000, tif=TIF_IOC)          # filled at once
    elif kind == 1:
        rig.new(i, "MSFT", "S", 10, 4_190_000)                       # filled at once
    elif kind == 2:
        rig.new(i, "SPY", "B", 100, 4_000_000 + i)                   # rests
    else:
        rig.cancel(i, orig=i - 1, symbol="SPY")                      # cancels the one before
    return kind != 3
