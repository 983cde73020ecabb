"""``appliance up``: the whole appliance from one command, and its orderly stop.

Start: validate the layout and every process's config (bad config stops here, exit 2), create
the segments, start the venue when one is given (``appliance up --sim``: the simulated exchange,
from ``appliance.sim.up``; the supervisor itself knows no exchange), start the exporter and the
processes in ``start_order``, each only once the previous reports RUNNING. A process that dies
or does not come up in time fails the start: it is named with the tail of its log, everything
started is stopped, the segments are removed, exit 1. Then the supervisor's duty cycle runs
until SIGTERM/SIGINT, ``appliance down`` or a fatal restart policy. With the OMS's
``replication.takeover: remote`` the OMS is not started: its place is the standby of the other box's
primary (``remote_standby.py``), adopted as the OMS when it takes over.

Stop: the gate closes (STOPPING), the strategy stops first (its cancels go out through risk and
the OMS), the OMS gets until the open orders are gone (bounded), then the OMS (logout), risk,
feed and exporter stop (then the venue, if one was started), the segments are removed.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from appliance.runtime.polling import poll_until

log = logging.getLogger("appliance.supervisor")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default="shm_layout.yaml", help="the layout (default ./shm_layout.yaml)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop by itself after this many seconds (0: run until stopped)")
    parser.add_argument("--status-line", choices=("auto", "on", "off"), default="auto",
                        help="the one-line status every second (auto: with --sim or on a terminal)")


class StartFailed(RuntimeError):
    pass


def wait_for(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passed; whether it held (checked once more at the end)."""
    return bool(poll_until(predicate, timeout_s, interval_s))


def run(args: argparse.Namespace, venue=None) -> int:
    """``venue``: started before the children and stopped after them (``prepare(layout)`` once the
    layout is read, ``start(layout, base)`` raising StartFailed, ``children_started(gate_open)`` once every child
    is up, with a callable saying whether the trading gate is open, ``stop()``, ``close()``); None: none."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s")
    from appliance.runtime.layout import LayoutError, load_layout
    from .config import SupervisorConfigError, control_socket_path, parse_supervisor_params
    from .preflight_config import check_process_configs

    try:
        layout = load_layout(args.layout)
        for warning in layout.warnings:
            log.warning("%s", warning)
        if "supervisor" not in layout.processes:
            raise LayoutError(layout.path, "processes", "no process named 'supervisor' (the supervisor runs it)")
        config = parse_supervisor_params(layout.processes["supervisor"].params,
                                         [p for p in layout.processes if p != "supervisor"])
        if venue is not None:
            venue.prepare(layout)
        off = check_process_configs(layout)
        if off:
            log.info("not started, off in their settings: %s", ", ".join(sorted(off)))
            config = replace(config, start_order=tuple(p for p in config.start_order if p not in off))
    except (LayoutError, SupervisorConfigError, OSError, ValueError) as exc:
        print(f"appliance up: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    base = Path(layout.path).resolve().parent
    control_path = control_socket_path(config, layout.path)
    log_dir = Path(config.log_dir) if os.path.isabs(config.log_dir) else base / config.log_dir
    up = Up(layout, config, base, log_dir, control_path, args, venue)
    try:
        return up.run()
    finally:
        up.cleanup()


class Up:
    def __init__(self, layout, config, base: Path, log_dir: Path, control_path: str, args, venue=None):
        self.layout = layout
        self.config = config
        self.base = base
        self.log_dir = log_dir
        self.control_path = control_path
        self.args = args
        self.memory = None
        self.children: dict = {}
        self.standby = None                   # standby.OmsStandby: the OMS's hot standby on this box
        self.exporter = None
        self.venue = venue
        self.server = None
        self.agent = None

    # ------------------------------------------------------------------ start

    def run(self) -> int:
        from appliance.runtime.memory import SharedMemory
        from appliance.runtime.segment import SegmentError
        from .control_server import ControlServer

        try:
            self.server = ControlServer(self.control_path, self._handle)
        except OSError as exc:
            print(f"appliance up: {exc} (is the appliance already up? try: appliance status)", file=sys.stderr)
            return EXIT_FAILED
        try:
            self.memory = SharedMemory.create(self.layout)
        except SegmentError as exc:
            print(f"appliance up: {exc}", file=sys.stderr)
            return EXIT_FAILED
        control = self.memory.control("supervisor")
        control.set("supervisor_pid", os.getpid())
        from appliance.messages.codes import GateReason
        control.write_gate(int(GateReason.STARTING))   # says why it is closed while the children start
        try:
            if self.venue is not None:
                self.venue.start(self.layout, self.base)
            self._start_children()
            if self.venue is not None:
                self.venue.children_started(lambda: control.get("gate_open") == 1)
        except StartFailed as exc:
            print(f"appliance up: start failed: {exc}", file=sys.stderr)
            self._stop_everything()
            return EXIT_FAILED
        return self._supervise()

    def _start_children(self) -> None:
        from appliance.runtime.counters import ProcessState
        from .children import ManagedProcess, agent_argv

        table = self.memory.process_table()
        exporter = self.config.exporter
        if exporter.enabled:
            self.exporter = ManagedProcess("exporter", [
                sys.executable, "-m", "appliance", "exporter", "--layout", str(self.layout.path),
                *exporter.argv()], self.log_dir, cwd=str(self.base))
            self.exporter.start()
        remote = self._remote_standby()
        for name in self.config.start_order:
            if remote is not None and name == "oms":        # this box's OMS is another box's standby
                self.standby = remote
                remote.start()
                continue
            child = ManagedProcess(name, agent_argv(str(self.layout.path), name), self.log_dir, cwd=str(self.base))
            self.children[name] = child
            child.start()
            log.info("started %s (pid %d)", name, child.pid)
            ok = wait_for(lambda: not child.alive() or (table.read(name).pid == child.pid
                                                      and table.read(name).state is ProcessState.RUNNING),
                       self.config.start_timeout_s)
            if not child.alive():
                code = child.poll_exit()
                raise StartFailed(f"{name} exited with status {code} during start-up; {child.log_path}:\n"
                                  f"{child.log_tail()}")
            if not ok:
                raise StartFailed(f"{name} did not report RUNNING within {self.config.start_timeout_s:g} s; "
                                  f"{child.log_path}:\n{child.log_tail()}")
        self._start_standby()
        if self.exporter is not None and not self.exporter.alive():
            raise StartFailed(f"the exporter exited with status {self.exporter.poll_exit()}:\n"
                              f"{self.exporter.log_tail()}")

    def _remote_standby(self):
        """A ``remote_standby.RemoteStandby`` in the OMS's place when its params say ``replication.takeover:
        remote`` (this box's OMS the standby of a primary on another box), else None."""
        from appliance.oms.config import parse_oms_params
        from .remote_standby import RemoteStandby
        process = self.layout.processes.get("oms")
        if process is None or "oms" not in self.config.start_order:
            return None
        replication = parse_oms_params(process.params, str(self.layout.path), "processes.oms.params").replication
        if replication.takeover != "remote":
            return None
        return RemoteStandby(str(self.layout.path), "oms", f"{replication.primary_host}:{replication.primary_port}",
                             self.children, self.log_dir, cwd=str(self.base))

    def _start_standby(self) -> None:
        """The OMS's hot standby beside it, when its params say ``replication.takeover: standby`` (a remote one
        started in the OMS's place: ``_remote_standby``)."""
        from appliance.oms.config import parse_oms_params
        from .standby import OmsStandby
        process = self.layout.processes.get("oms")
        if process is None or "oms" not in self.children:
            return
        config = parse_oms_params(process.params, str(self.layout.path), "processes.oms.params")
        if config.replication.takeover != "standby":
            return
        self.standby = OmsStandby(str(self.layout.path), "oms",
                                  (config.journal_path, config.replication.standby_journal_path), self.log_dir,
                                  cwd=str(self.base))
        self.standby.start()

    # ------------------------------------------------------------------ run

    def _supervise(self) -> int:
        from appliance.runtime.agent import AgentContext, AgentRunner
        from appliance.runtime.counters import process_record_offset
        from appliance.runtime.idle import make_idle_strategy
        from .agent import SupervisorAgent
        from .status_line import StatusLine

        layout, memory = self.layout, self.memory
        process = layout.processes["supervisor"]
        show = self.args.status_line == "on" or (self.args.status_line == "auto"
                                                 and (self.venue is not None or sys.stdout.isatty()))
        status_line = StatusLine(layout, memory) if show else None
        self.agent = agent = SupervisorAgent(
            AgentContext(layout, process, memory, memory.counters_writer("supervisor")), self.config,
            self.children, on_status=(lambda _agent: status_line.print()) if status_line else None,
            standby=self.standby)
        agent.control_server = self.server
        runner = AgentRunner(agent, make_idle_strategy(process.idle, waiter=agent), memory.heartbeat("supervisor"),
                             memory.process_table_atomics(), process_record_offset(layout, process), process)
        agent.runner = runner
        if self.args.duration:
            deadline = time.monotonic() + self.args.duration
            original = agent.do_work

            def timed_work():
                if time.monotonic() >= deadline:
                    agent.request_stop(f"--duration {self.args.duration:g} s reached")
                return original()
            agent.do_work = timed_work
        log.info("appliance up: layout %s, control socket %s", layout.path, self.control_path)
        status = runner.run()
        if agent.stop_requested is None:
            agent.request_stop("signal")
        self._stop_everything()
        return status or agent.exit_status

    def _handle(self, request: dict, caller=None) -> dict:
        if self.agent is None:
            return {"ok": False, "error": "the appliance is still starting"}
        return self.agent.handle(request, caller)

    # ------------------------------------------------------------------ stop

    def _stop_everything(self) -> None:
        timeout = self.config.stop_timeout_s
        control = None
        if self.memory is not None:
            from appliance.messages.codes import GateReason
            control = self.memory.control("supervisor")
            control.write_gate(control.gate().reasons | int(GateReason.STOPPING))
        strategy = self.children.get("strategy")
        if strategy is not None and strategy.alive():
            log.info("stopping strategy (it cancels its orders)")
            strategy.stop(timeout)
        oms = self.children.get("oms")
        if control is not None and oms is not None and oms.alive():
            if not wait_for(lambda: control.get("oms_open_orders") == 0 or not oms.alive(), timeout / 2, 0.05):
                log.warning("%d orders still open at the venue after %.1f s; stopping the OMS anyway",
                            control.get("oms_open_orders"), timeout / 2)
        if self.standby is not None:
            self.standby.stop(timeout)
        for name in ("oms", "risk", "feed"):
            child = self.children.get(name)
            if child is not None and child.alive():
                log.info("stopping %s", name)
                child.stop(timeout)
        for name, child in self.children.items():
            if child.alive():
                child.stop(timeout)
        if self.exporter is not None:
            self.exporter.stop(timeout)
        if self.venue is not None:
            self.venue.stop()

    def cleanup(self) -> None:
        standby = [self.standby.child] if self.standby is not None and self.standby.child is not None else []
        for child in list(self.children.values()) + ([self.exporter] if self.exporter else []) + standby:
            if child.alive():
                child.signal(signal.SIGKILL)
                child.stop(5)
        if self.venue is not None:
            self.venue.close()
        if self.server is not None:
            self.server.close()
        if self.memory is not None:
            self.memory.remove()
            log.info("segments removed")
