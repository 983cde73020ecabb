"""``appliance up``: the whole appliance from one command, and its orderly stop.

Start: validate the layout and every process's config (bad config stops here, exit 2), create
the segments, (with ``--sim``) start the simulated exchange, start the exporter and the
processes in ``start_order``, each only once the previous reports RUNNING. A process that dies
or does not come up in time fails the start: it is named with the tail of its log, everything
started is stopped, the segments are removed, exit 1. Then the supervisor's duty cycle runs
until SIGTERM/SIGINT, ``appliance down`` or a fatal restart policy.

Stop: the gate closes (STOPPING), the strategy stops first (its cancels go out through risk and
the OMS), the OMS gets until the open orders are gone (bounded), then the OMS (logout), risk,
feed and exporter stop, the segments are removed.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("appliance.supervisor")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default="shm_layout.yaml", help="the layout (default ./shm_layout.yaml)")
    parser.add_argument("--sim", action="store_true",
                        help="also run the simulated exchange on its embedded default (a fresh trading day)")
    parser.add_argument("--sim-config", help="the simulated exchange's config instead of the embedded default")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop by itself after this many seconds (0: run until stopped)")
    parser.add_argument("--status-line", choices=("auto", "on", "off"), default="auto",
                        help="the one-line status every second (auto: with --sim or on a terminal)")


class StartFailed(RuntimeError):
    pass


def wait_for(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passed; whether it held (checked once more at the end)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def run(args: argparse.Namespace) -> int:
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
        if args.sim:
            sim_credentials(layout, args.sim_config)
        check_process_configs(layout)
    except (LayoutError, SupervisorConfigError, OSError, ValueError) as exc:
        print(f"appliance up: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    base = Path(layout.path).resolve().parent
    control_path = control_socket_path(config, layout.path)
    log_dir = Path(config.log_dir) if os.path.isabs(config.log_dir) else base / config.log_dir
    up = Up(layout, config, base, log_dir, control_path, args)
    try:
        return up.run()
    finally:
        up.cleanup()


def sim_control_socket(base: Path) -> str:
    """The simulated exchange's control socket beside the supervisor's, in the private ``run/control``
    (what ``appliance exchange ctl`` finds by default when run from the layout's directory)."""
    from appliance.exchange.cli import default_control_socket
    return default_control_socket(str(base))


def sim_credentials(layout, sim_config: str | None) -> None:
    """``--sim``: when the OMS's credentials file is missing, create it (0600) with the login of the
    simulated exchange's firm whose MPID is the OMS's ``firm``; an existing file is the operator's
    and is left alone (a wrong login there is refused by the venue and says so)."""
    from appliance.exchange.config import default_config, load_config
    from appliance.oms.config import OmsConfigError, parse_oms_params
    from appliance.oms.credentials import credentials_location, write_venue_credentials
    from appliance.runtime.layout import LayoutError
    oms = layout.processes.get("oms")
    if oms is None:
        return
    try:
        params = parse_oms_params(oms.params, layout.path)
    except OmsConfigError as exc:
        raise LayoutError(layout.path, exc.key_path, exc.reason) from None
    path = params.credentials_path
    if os.path.lexists(credentials_location(path)[0]):
        return
    exchange = load_config(sim_config) if sim_config else default_config()
    firm = next((f for f in exchange.firms if f.mpid == params.firm), None)
    if firm is None:
        raise LayoutError(layout.path, "processes.oms.params.firm", f"no firm of the simulated exchange has MPID "
                          f"{params.firm!r} (its firms: {', '.join(f.mpid for f in exchange.firms)})")
    write_venue_credentials(path, firm.username, firm.password)
    log.info("simulated venue login for %s written to %s (mode 0600)", firm.username, path)


class Up:
    def __init__(self, layout, config, base: Path, log_dir: Path, control_path: str, args):
        self.layout = layout
        self.config = config
        self.base = base
        self.log_dir = log_dir
        self.control_path = control_path
        self.args = args
        self.memory = None
        self.children: dict = {}
        self.exporter = None
        self.exchange: subprocess.Popen | None = None
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
            if self.args.sim:
                self._start_exchange()
            self._start_children()
        except StartFailed as exc:
            print(f"appliance up: start failed: {exc}", file=sys.stderr)
            self._stop_everything()
            return EXIT_FAILED
        return self._supervise()

    def _start_exchange(self) -> None:
        day = self.base / "run" / f"sim-{time.strftime('%Y%m%d-%H%M%S')}"
        day.mkdir(parents=True, exist_ok=True)
        self._rotate_oms_journal(day)
        command = [sys.executable, "-m", "appliance", "exchange", "--records", str(day / "exchange"),
                   "--control", sim_control_socket(self.base)]
        if self.args.sim_config:
            command += ["--config", self.args.sim_config]
        self.exchange_log = day / "exchange.log"
        with open(self.exchange_log, "ab") as out:
            self.exchange = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=self.base)
        self.exchange_dir = day
        if not wait_for(lambda: "exchange ready" in self.exchange_log.read_text(errors="replace")
                     or self.exchange.poll() is not None, 30):
            raise StartFailed(f"the simulated exchange did not report ready in 30 s (see {self.exchange_log})")
        if self.exchange.poll() is not None:
            raise StartFailed(f"the simulated exchange exited with status {self.exchange.returncode}:\n"
                              + self.exchange_log.read_text(errors="replace")[-2000:])
        log.info("simulated exchange up (records in %s)", day / "exchange")

    def _rotate_oms_journal(self, day: Path) -> None:
        """A fresh simulated exchange is a fresh trading day: the OMS must not replay yesterday's journal."""
        oms = self.layout.processes.get("oms")
        journal = (oms.params or {}).get("journal") if oms is not None else None
        if not journal:
            return
        path = Path(journal) if os.path.isabs(journal) else self.base / journal
        if path.exists():
            path.rename(day / f"previous-{path.name}")
            log.info("previous OMS journal moved to %s (new simulated trading day)", day)

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
        for name in self.config.start_order:
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
        if self.exporter is not None and not self.exporter.alive():
            raise StartFailed(f"the exporter exited with status {self.exporter.poll_exit()}:\n"
                              f"{self.exporter.log_tail()}")

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
                                                 and (self.args.sim or sys.stdout.isatty()))
        status_line = StatusLine(layout, memory) if show else None
        self.agent = agent = SupervisorAgent(
            AgentContext(layout, process, memory, memory.counters_writer("supervisor")), self.config,
            self.children, on_status=(lambda _agent: status_line.print()) if status_line else None)
        agent.control_server = self.server
        runner = AgentRunner(agent, make_idle_strategy(process.idle), memory.heartbeat("supervisor"),
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
        if self.exchange is not None and self.exchange.poll() is None:
            self.exchange.send_signal(signal.SIGTERM)
            try:
                self.exchange.wait(30)
            except subprocess.TimeoutExpired:
                self.exchange.kill()
                self.exchange.wait(10)
            log.info("simulated exchange stopped; end-of-day report in %s", self.exchange_dir / "exchange")

    def cleanup(self) -> None:
        for child in list(self.children.values()) + ([self.exporter] if self.exporter else []):
            if child.alive():
                child.signal(signal.SIGKILL)
                child.stop(5)
        if self.exchange is not None and self.exchange.poll() is None:
            self.exchange.kill()
            self.exchange.wait(10)
        if self.server is not None:
            self.server.close()
        if self.memory is not None:
            self.memory.close()
            self.memory.unlink()
            log.info("segments removed")
