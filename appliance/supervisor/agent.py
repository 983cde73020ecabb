"""The supervisor's duty cycle: watch the children, guard the clock, decide the gate, serve commands.

It runs as an agent (heartbeat, process record) in the supervisor's own process; ``up.py``
starts the children in order before the first cycle and stops them in order after the last.
Every decision is a log line: a child exiting or going silent, a restart and its backoff, a
gate change with its reasons, a clock verdict change, an operator command.
"""
from __future__ import annotations

import gc
import logging
import threading
import time

from appliance.clock.guard import ClockGuard, ClockVerdict
from appliance.messages.catalog import RISK_COMMAND
from appliance.messages.codes import ClockState, ControlCommand, GateReason, RiskState, name_of
from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.channels import PRODUCER, RingUse
from appliance.runtime.counters import ProcessState
from appliance.runtime.market_state import describe_problems, symbol_problems

from .children import ManagedProcess
from .config import SupervisorConfig
from .gate import GateInputs, MarketDataWatch, ProcessHealth, describe, gate_reasons

log = logging.getLogger("appliance.supervisor")

SUPERVISE_PERIOD_NS = 5_000_000
RISK_COMMANDS = RingUse("risk_commands", PRODUCER, RISK_COMMAND)
MARKET_DATA_PERIOD_NS = 50_000_000    # the books are looked at this often (a table of thousands costs ms)
COMMANDS = ("status", "kill", "resume", "reduce", "activate", "close-gate", "open-gate", "reload-limits", "failover",
            "down")
# Start-up is complete when every process is up and ready, whatever else holds the gate (a kill
# switch latched the day before, an operator's hold, the clock): those are said by their own names.
NOT_READY = GateReason.PROCESS_DOWN | GateReason.RISK_UNHEALTHY | GateReason.OMS_NOT_READY | GateReason.FEED_NOT_READY
NEEDS_OPERATOR = frozenset(("resume", "reduce", "activate", "close-gate", "open-gate", "failover"))
MAX_REASON = 200                      # the risk hub's reason for a firm command (logged)
MAX_OPERATOR = 64                     # a name, not a message: printable (a newline would forge log lines)
HUNG_FACTOR = 5                       # silent this many heartbeat timeouts: killed, then the restart policy


def _firm_source(request: dict) -> tuple[bool, str, str]:
    """(from the firm, its reason, error) of a request's optional ``source`` ("FIRM") and ``reason``."""
    source, reason = request.get("source"), request.get("reason", "")
    if source not in (None, "FIRM"):
        return False, "", f"source must be FIRM when given, got {str(source)[:20]!r}"
    if not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.isprintable():
        return False, "", f"reason must be at most {MAX_REASON} printable characters"
    return source == "FIRM", reason, ""


class ClockWatcher:
    """Runs the clock guard every interval on a thread (pmc can take milliseconds); the duty
    cycle only reads the latest verdict."""

    def __init__(self, guard: ClockGuard, interval_s: float):
        self.guard = guard
        self.interval_s = interval_s
        self.verdict: ClockVerdict = guard.check()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock-guard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.verdict = self.guard.check()
            except Exception as exc:           # the guard must never die silently: unhealthy instead
                self.verdict = ClockVerdict(ClockState.UNHEALTHY, f"clock guard failed: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class SupervisorAgent(Agent):
    name = "supervisor"

    def __init__(self, context: AgentContext, config: SupervisorConfig, children: dict[str, ManagedProcess],
                 on_status=None, guard: ClockGuard | None = None, standby=None):
        super().__init__(context)
        self.standby = standby                # standby.OmsStandby when the OMS has a hot standby here
        self.config = config
        self.children = children
        self.on_status = on_status            # called about once a second with the supervisor (status line)
        self.guard = guard or ClockGuard(config.clock)
        self.stop_requested: str | None = None
        self.exit_status = 0
        self.operator_closed = False
        self.starting = True
        self.reasons = GateReason.STARTING
        self.runner = None                    # set by up.py: runner.stop() ends the duty loop
        self.control_server = None            # set by up.py: polled every cycle

    # ------------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        memory = self.context.memory
        self.control = memory.control("supervisor")
        self.process_table = memory.process_table()
        self.commands = memory.channel(RISK_COMMANDS, self.context.process.name)
        # A process parked on its doorbell learns of a gate change when it wakes: ring it, so a closed gate
        # (a kill: the OMS's cancels) is acted on now, not a park timeout later (10 ms in the small profile).
        self._gate_doorbells = [memory.doorbell(name) for name, spec in self.context.layout.processes.items()
                                if spec.idle.strategy == "doorbell" and name != self.context.process.name]
        self.clock = ClockWatcher(self.guard, self.config.clock.check_interval_ms / 1000)
        self._clock_state = None
        self._next_supervise = 0
        self._next_status = time.monotonic_ns() + 1_000_000_000
        self._next_gc = 0
        counters = self.context.counters
        self.c_restarts = counters.allocate("supervisor.restarts")
        self.c_gate_changes = counters.allocate("supervisor.gate_changes")
        self.c_commands = counters.allocate("supervisor.commands")
        self.c_hung_kills = counters.allocate("supervisor.hung_kills")
        if self.standby is not None:
            self.standby.attach(counters)        # the takeovers, counted where status and the exporter read them
        # a remote standby becomes the ``oms`` child when it takes over: its restarts are counted from then
        names = dict.fromkeys([*self.children, *([self.standby.process] if self.standby is not None else [])])
        self._restart_counters = {name: counters.allocate(f"supervisor.restarts.{name}") for name in names}
        self._hung_killed: dict[str, int] = {}
        # the books are watched when a feed writes them (a layout without one has no market data to judge)
        watched = "feed" in self.children and any(t.kind == "market_state" for t in self.context.layout.tables.values())
        self.market = memory.market_state_reader() if watched else None
        self.market_watch = MarketDataWatch(self.config.market_data_stale_ms * 1_000_000)
        self.market_problems: dict[str, str] = {}
        self._market_said = ""
        self._next_market = 0
        self._write_gate(GateReason.STARTING, force=True)
        self._apply_clock(self.clock.verdict)

    def on_close(self) -> None:
        self.clock.close()
        if self.market is not None:
            self.market.close()

    # ------------------------------------------------------------------ duty cycle

    def wait_fds(self) -> tuple:
        """The control socket and its clients: a request (a kill) ends the nap instead of waiting it out."""
        return self.control_server.fds() if self.control_server is not None else ()

    def do_work(self) -> int:
        now = time.monotonic_ns()
        work = self.control_server.poll() if self.control_server is not None else 0
        if now >= self._next_supervise:
            self._next_supervise = now + SUPERVISE_PERIOD_NS
            work += self._supervise(now)
        if self.on_status is not None and now >= self._next_status:
            self._next_status = now + 1_000_000_000
            self.on_status(self)
        if now >= self._next_gc:              # the runner disabled the collector: the supervisor allocates
            self._next_gc = now + 5_000_000_000
            gc.collect(0)
        return work

    def _supervise(self, now: int) -> int:
        work = 0
        if self.stop_requested is not None and self.runner is not None:
            self.runner.stop()
            return 1
        for name, child in self.children.items():
            code = child.poll_exit()
            if code is not None:
                work += 1
                self._child_exited(child, code, now)
            if child.proc is None and child.wanted and child.next_start_ns and now >= child.next_start_ns:
                child.next_start_ns = 0
                log.info("restarting %s (restart %d)", name, child.restarts)
                child.start()
                work += 1
        if self.standby is not None and self.stop_requested is None:
            work += self.standby.poll(now, self.process_table.read("oms"), bool(self.control.get("oms_ready")))
        health = self._health(now)
        self._kill_hung(health, now)
        self._apply_clock(self.clock.verdict)
        if self.market is not None and now >= self._next_market:
            self._next_market = now + MARKET_DATA_PERIOD_NS
            self._watch_market(now)
        reasons = self._gate_inputs(health)
        if self.starting and not (reasons & NOT_READY):
            self.starting = False
            reasons &= ~GateReason.STARTING
            log.info("every process is ready: start-up complete")
        self._write_gate(reasons)
        return work

    def _health(self, now: int) -> dict[str, ProcessHealth]:
        health = {}
        for name, child in self.children.items():
            record = self.process_table.read(name)
            same = child.alive() and record.pid == child.pid
            health[name] = ProcessHealth(alive=child.alive(),
                                         heartbeat_age_ns=record.heartbeat_age_ns() if same else None,
                                         running=same and record.state is ProcessState.RUNNING)
        return health

    def _kill_hung(self, health: dict[str, ProcessHealth], now: int) -> None:
        limit = self.config.heartbeat_timeout_ms * 1_000_000 * HUNG_FACTOR
        for name, h in health.items():
            child = self.children[name]
            silent = h.heartbeat_age_ns if h.heartbeat_age_ns is not None else (
                now - child.started_ns if h.alive and not h.running else 0)
            grace = self.config.start_timeout_s * 1e9 if h.heartbeat_age_ns is None else limit
            if h.alive and silent > grace and self._hung_killed.get(name) != child.pid:
                log.error("%s (pid %s) silent for %.1f s: killing it", name, child.pid, silent / 1e9)
                self._hung_killed[name] = child.pid        # once: it is dying, not silent again
                self.c_hung_kills.inc()
                child.signal(9)

    def _child_exited(self, child: ManagedProcess, code: int, now: int) -> None:
        if not child.wanted or self.stop_requested is not None:
            log.info("%s exited with status %d", child.name, code)
            return
        policy = self.config.restart
        log.error("%s exited with status %d; last lines of %s:\n%s", child.name, code, child.log_path,
                  child.log_tail(8))
        if child.name == "oms" and self.standby is not None and self.standby.ready() and (
                self.standby.switching or self._standby_connected()):      # a failover checked it when asked
            # reaped, so known dead: the standby takes over; the old OMS is not restarted into a second primary
            self.children["oms"] = self.standby.take_over(now, child.last_pid)
            self._write_gate(self.reasons | GateReason.TAKEOVER)
            return
        if child.name == "oms" and self.standby is not None:
            self.standby.switching = False           # a failover that found no standby at the exit: a restart
        window_ns = policy.window_s * 1_000_000_000
        recent = child.recent_restarts = [t for t in child.recent_restarts if now - t < window_ns]
        if policy.policy == "stop" or len(recent) >= policy.max_restarts:
            why = "restart policy is stop" if policy.policy == "stop" else \
                f"{len(recent)} restarts in {policy.window_s} s reached the limit of {policy.max_restarts}"
            self.request_stop(f"{child.name} exited ({why})", exit_status=1)
            return
        # the backoff doubles with each restart inside the window: a crash loop slows down, a process
        # that died once after hours of work comes back at once
        backoff_ms = min(policy.backoff_max_ms, policy.backoff_initial_ms * (2 ** min(len(recent), 20)))
        recent.append(now)
        child.restarts += 1
        child.next_start_ns = now + backoff_ms * 1_000_000
        self.c_restarts.inc()
        self._restart_counters[child.name].inc()
        log.warning("%s will restart in %d ms (restart %d; %d of at most %d in %d s)", child.name, backoff_ms,
                    child.restarts, len(recent), policy.max_restarts, policy.window_s)

    def _watch_market(self, now: int) -> None:
        """Which books are bad and why; one log line each time what a tripped watch says changes."""
        self.market_problems = symbol_problems(self.market, self.control.get("feed_stale_reason"))
        tripped = self.market_watch.update(now, self.market_problems)
        said = describe_problems(self.market_problems) if tripped else ""
        if said != self._market_said:
            if said:
                log.warning("market data bad for over %d ms: %s", self.config.market_data_stale_ms, said)
            else:
                log.info("market data good again: every book live")
            self._market_said = said

    def _gate_inputs(self, health: dict[str, ProcessHealth]) -> GateReason:
        c = self.control
        return gate_reasons(GateInputs(
            processes=health,
            heartbeat_timeout_ns=self.config.heartbeat_timeout_ms * 1_000_000,
            risk_heartbeat_timeout_ns=self.config.risk_heartbeat_timeout_ms * 1_000_000,
            risk_ready=bool(c.get("risk_ready")), risk_state=c.get("risk_state"),
            risk_kill_latched=bool(c.get("risk_kill_latched")), oms_ready=bool(c.get("oms_ready")),
            feed_ready=bool(c.get("feed_ready")), clock_blocks=self.clock.verdict.blocks_trading,
            starting=self.starting, operator_closed=self.operator_closed,
            stopping=self.stop_requested is not None, market_data_bad=self.market_watch.tripped,
            takeover=self.standby is not None and self.standby.taking_over,
            standby=getattr(self.standby, "standing_by", False)))        # remote_standby.RemoteStandby

    def _write_gate(self, reasons: GateReason, force: bool = False) -> None:
        if reasons == self.reasons and not force:
            return
        c = self.control
        previous = self.reasons
        self.reasons = reasons
        c.write_gate(int(reasons))            # open flag, reasons and epoch in one store
        c.set("gate_changed_ns", time.time_ns())
        for doorbell in self._gate_doorbells:
            doorbell.ring()
        self.c_gate_changes.inc()
        if not force:
            log.warning("gate %s (was %s)", describe(reasons), describe(previous)) if reasons else \
                log.info("gate open (was %s)", describe(previous))

    def _apply_clock(self, verdict: ClockVerdict) -> None:
        c = self.control
        c.set("clock_offset_ns", verdict.offset_ns)
        c.set("clock_maxerror_ns", verdict.maxerror_ns)
        c.set("clock_checked_ns", verdict.checked_ns)
        if verdict.state != self._clock_state:
            c.set("clock_state", int(verdict.state))
            if self._clock_state is not None or verdict.blocks_trading:
                (log.warning if verdict.blocks_trading else log.info)(
                    "clock %s%s", verdict.state.name.lower(), f": {verdict.reason}" if verdict.reason else "")
            self._clock_state = verdict.state

    # ------------------------------------------------------------------ commands

    def request_stop(self, why: str, exit_status: int = 0) -> None:
        if self.stop_requested is None:
            log.warning("stopping: %s", why)
            self.stop_requested = why
            self.exit_status = exit_status
            self._write_gate(self.reasons | GateReason.STOPPING)

    def send_risk_command(self, command: ControlCommand, operator: str = "", argument: int = 0) -> bool:
        offset = self.commands.claim()
        if offset < 0:
            return False
        RISK_COMMAND.pack_into(self.commands.buffer, offset, int(command), 0, argument,
                               operator.encode("utf-8")[:16].ljust(16), time.time_ns())
        self.commands.commit()
        return True

    def handle(self, request: dict, caller=None) -> dict:
        """One control-socket request (see control_server.py). Every command that changes trading
        is logged with the operator who asked and the caller's uid and pid (``SO_PEERCRED``: the
        kernel's word, where the operator name is the caller's); the ones that loosen it need a name."""
        self.c_commands.inc()
        command = request.get("command")
        operator = request.get("operator", "")
        if not isinstance(operator, str):
            return {"ok": False, "error": "operator must be a string"}
        operator = operator.strip()
        if len(operator) > MAX_OPERATOR or not operator.isprintable():
            return {"ok": False, "error": f"operator must be at most {MAX_OPERATOR} printable characters"}
        symbol_id, error = self._symbol_of(request)
        if error:
            return {"ok": False, "error": error}
        firm, reason, error = _firm_source(request)
        if error:
            return {"ok": False, "error": error}
        if command == "status":
            return {"ok": True, "supervisor": self.summary()}
        if command in NEEDS_OPERATOR and not operator:
            return {"ok": False, "error": f"{command} needs --operator NAME (it is recorded)"}
        via = f"({caller or 'caller unknown'})"          # "uid 1000 pid 4242"
        if firm:
            return self._firm_command(command, operator, reason, symbol_id, via)
        if command == "kill":
            who = operator or "operator"
            if symbol_id is None:
                log.warning("kill switch requested by %s %s", who, via)
                return {"ok": self.send_risk_command(ControlCommand.KILL, who), "sent": "kill"}
            log.warning("kill switch for %s requested by %s %s", request["symbol"], who, via)
            return {"ok": self.send_risk_command(ControlCommand.KILL_SYMBOL, who, symbol_id), "sent": "kill-symbol"}
        if command == "resume":
            if symbol_id is None:
                log.warning("kill switch reset requested by %s %s", operator, via)
                return {"ok": self.send_risk_command(ControlCommand.RESET, operator), "sent": "reset"}
            log.warning("kill switch reset for %s requested by %s %s", request["symbol"], operator, via)
            return {"ok": self.send_risk_command(ControlCommand.RESET_SYMBOL, operator, symbol_id),
                    "sent": "reset-symbol"}
        if command in ("reduce", "activate"):
            log.warning("trading state %s requested by %s %s", "REDUCING" if command == "reduce" else "ACTIVE",
                        operator, via)
            risk_command = ControlCommand.SET_REDUCING if command == "reduce" else ControlCommand.SET_ACTIVE
            return {"ok": self.send_risk_command(risk_command, operator), "sent": command}
        if command == "close-gate":
            self.operator_closed = True
            log.warning("gate closed by operator %s %s", operator, via)
            return {"ok": True}
        if command == "open-gate":
            self.operator_closed = False
            log.warning("gate reopened by operator %s %s (it opens when nothing else holds it)", operator, via)
            return {"ok": True}
        if command == "reload-limits":
            log.warning("limits reload requested by %s %s", operator or "(no name)", via)
            return {"ok": self.send_risk_command(ControlCommand.RELOAD_LIMITS, operator), "sent": "reload-limits"}
        if command == "failover":
            return self._failover(operator, via)
        if command == "down":
            self.request_stop(f"down requested by {operator or '(no name)'} {via}")
            return {"ok": True, "stopping": True}
        return {"ok": False, "error": f"unknown command {command!r} ({', '.join(COMMANDS)})"}

    def _standby_connected(self) -> bool:
        """The dead OMS's last word on its standby: subscribed (a standby that never copied the journal would
        take over from nothing; then the restart policy applies, and says why)."""
        connected = self.context.memory.counters_reader().by_label().get("oms.replication.connected", 0) == 1
        if not connected:
            log.error("the OMS's standby was not connected to it: no takeover, the restart policy applies")
        return connected

    def _failover(self, operator: str, via: str) -> dict:
        """A planned switch: the OMS stopped (it logs out), its standby takes over as after a crash."""
        oms = self.children.get("oms")
        if self.standby is None:
            return {"ok": False, "error": "the OMS has no standby here (params.replication.takeover is not standby)"}
        if getattr(self.standby, "remote", False):
            return {"ok": False, "error": "this box's OMS is (or was) the standby of a primary on another box: a "
                                          "planned switch stops that primary there, and this box takes over when "
                                          "its stream goes silent"}
        if not self.standby.ready():
            return {"ok": False, "error": "the standby is not running" if not self.standby.taking_over
                    else "a takeover is already under way"}
        if oms is None or not oms.alive():
            return {"ok": False, "error": "the OMS is not running"}
        if not self._standby_connected():
            return {"ok": False, "error": "the standby is not connected to the OMS (not caught up)"}
        log.warning("failover requested by %s %s: stopping the OMS (pid %d); its standby takes over", operator, via,
                    oms.pid)
        self.standby.begin_switch(time.monotonic_ns())             # TAKEOVER from now until the new primary is ready
        self._write_gate(self.reasons | GateReason.TAKEOVER)
        oms.signal(15)
        return {"ok": True, "stopping": oms.pid, "standby": self.standby.child.pid}

    def _firm_command(self, command: str, operator: str, reason: str, symbol_id, via: str) -> dict:
        """A command of the firm's risk hub, handed on by the drop copy: a kill latched with reason
        FIRM, a reset that unlatches only such a kill, REDUCING, ACTIVE; each logged with the hub's
        reason."""
        commands = {"kill": ControlCommand.FIRM_KILL, "resume": ControlCommand.FIRM_RESET,
                    "reduce": ControlCommand.SET_REDUCING, "activate": ControlCommand.SET_ACTIVE}
        if command not in commands or symbol_id is not None:
            return {"ok": False, "error": f"source FIRM takes kill, resume, reduce or activate for the whole "
                                          f"appliance, not {command!r}{' with a symbol' if symbol_id is not None else ''}"}
        log.warning("FIRM %s from the risk hub, operator %s %s: %s", command, operator, via, reason or "(no reason)")
        return {"ok": self.send_risk_command(commands[command], operator), "sent": f"firm-{command}"}

    def _symbol_of(self, request: dict) -> tuple[int | None, str]:
        """(symbol id or None, error) of the request's optional ``symbol``."""
        symbol = request.get("symbol")
        if symbol is None:
            return None, ""
        symbols = list(self.context.layout.symbols)
        if not isinstance(symbol, str) or symbol not in symbols:
            return None, f"unknown symbol {symbol!r} (the layout's symbols: {', '.join(symbols)})"
        if request.get("command") not in ("kill", "resume"):
            return None, f"{request.get('command')} takes no symbol"
        return symbols.index(symbol), ""

    def summary(self) -> dict:
        c = self.control
        return {
            "gate_open": bool(c.get("gate_open")), "gate": describe(self.reasons),
            "gate_reasons": [r.name for r in GateReason if self.reasons & r],
            "clock": {"state": self.clock.verdict.state.name, "reason": self.clock.verdict.reason,
                      "offset_ns": self.clock.verdict.offset_ns},
            "risk_state": name_of(RiskState, c.get("risk_state")),
            "market_data": describe_problems(self.market_problems),
            "children": {name: {"pid": ch.pid, "alive": ch.alive(), "starts": ch.starts, "restarts": ch.restarts,
                                "last_exit": ch.last_exit, "log": str(ch.log_path)}
                         for name, ch in self.children.items()},
            "stopping": self.stop_requested,
            "standby": self.standby.summary() if self.standby is not None else None,
        }
