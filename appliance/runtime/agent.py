"""Agents and the runner that drives them (after Agrona's Agent and AgentRunner).

An ``Agent`` does a bounded amount of non-blocking work per ``do_work()`` call
and returns how much it did (0 when idle). The ``AgentRunner`` owns the
process around it: CPU pinning, optional SCHED_FIFO and mlockall (a clear
error when not permitted), a frozen and disabled garbage collector, a
heartbeat and the longest duty cycle in the process table, the idle strategy
from the layout, and a clean stop on SIGTERM or SIGINT.

``python -m appliance.runtime.agent --layout FILE --process NAME`` runs the
agent a layout declares for that process against memory the supervisor made.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

from appliance.runtime import _shm
from appliance.runtime.counters import CountersWriter, ProcessState, process_record_offset
from appliance.runtime.idle import IdleStrategy, lower_timer_slack, make_idle_strategy, wake_address
from appliance.runtime.layout import Layout, LayoutError, ProcessSpec, load_layout
from appliance.runtime.memory import SharedMemory
from appliance.runtime.segment import SegmentError

log = logging.getLogger(__name__)

MCL_CURRENT = 1
MCL_FUTURE = 2

EXIT_OK = 0
EXIT_CONFIG = 2          # bad layout, unknown process, agent cannot be loaded
EXIT_PRIVILEGE = 3       # scheduling or memory locking refused
EXIT_AGENT_FAILED = 4    # the agent raised


class SchedulingError(RuntimeError):
    """The layout asks for a scheduling feature this process may not use."""


@dataclass
class AgentContext:
    """What an agent gets: the layout, its own process entry, the memory and its counter block."""
    layout: Layout
    process: ProcessSpec
    memory: SharedMemory
    counters: CountersWriter

    @property
    def params(self) -> dict:
        return self.process.params


class Agent:
    """Subclass and implement ``do_work``. Never block inside it."""

    name = "agent"

    def __init__(self, context: AgentContext):
        self.context = context

    def on_start(self) -> None:
        """Open rings, sockets and counters; called once on the pinned CPU before the first duty cycle."""

    def do_work(self) -> int:
        raise NotImplementedError

    def on_close(self) -> None:
        """Release what on_start acquired; called once after the last duty cycle."""

    def wait_fds(self) -> tuple:
        """The sockets ``do_work`` reads (file descriptors), asked before each park: a process that
        parks on its doorbell waits on these and its input rings at once, so neither waits for a nap."""
        return ()

    def next_deadline_ns(self) -> int | None:
        """When (``time.monotonic_ns``) ``do_work`` must next run with no input (its next timer); None:
        nothing sooner than the layout's park timeout."""
        return None


class AgentRunner:
    """Runs one agent in the current process until stop() or a signal."""

    def __init__(self, agent: Agent, idle: IdleStrategy, heartbeat: _shm.Heartbeat, record: _shm.AtomicView,
                 record_offset: int, process: ProcessSpec):
        self.agent = agent
        self.idle_strategy = idle
        self.heartbeat = heartbeat
        self.record = record
        self.record_offset = record_offset
        self.process = process
        self.running = False
        self.pinned_cpu: int | None = None

    # -- process record (this process is its only writer)
    def _publish(self, field_offset: int, value: int) -> None:
        self.record.store(self.record_offset + field_offset, value)

    def _set_state(self, state: ProcessState) -> None:
        self._publish(_shm.PROC_STATE_OFFSET, int(state))

    def stop(self, *_signal_args) -> None:
        self.running = False

    def prepare(self) -> None:
        """Everything that must hold before the first duty cycle; raises on a refused privilege.

        The record may still hold the last heartbeat and the RUNNING state of the process this one
        replaces: both are cleared before the new pid is published, so a reader of the record under
        the new pid sees "starting, not beating yet" (start-up grace), never a dead predecessor's
        age or state (a restarted agent looked RUNNING before its ``on_start``)."""
        self._publish(_shm.PROC_LAST_BEAT_MONO_NS_OFFSET, 0)
        self._publish(_shm.PROC_BEATS_OFFSET, 0)
        self._set_state(ProcessState.STARTING)
        self._publish(_shm.PROC_PID_OFFSET, os.getpid())
        self._publish(_shm.PROC_STARTED_NS_OFFSET, time.time_ns())
        self._publish(_shm.PROC_IDLE_STRATEGY_OFFSET, int(self.idle_strategy.id))
        self.pinned_cpu = pin_cpu(self.process)
        self._publish(_shm.PROC_CPU_OFFSET, -1 if self.pinned_cpu is None else self.pinned_cpu)
        apply_scheduling(self.process)
        if self.idle_strategy.parks:
            lower_timer_slack()

    def run(self) -> int:
        """The duty-cycle loop. Returns a process exit status."""
        previous = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        status = EXIT_OK
        try:
            self.prepare()
            self.agent.on_start()
            gc.collect()
            gc.freeze()           # everything allocated so far is permanent: never scanned again
            gc.disable()
            self._set_state(ProcessState.RUNNING)
            self.running = True
            do_work = self.agent.do_work
            begin = self.heartbeat.begin
            end = self.heartbeat.end
            idle = self.idle_strategy.idle
            while self.running:
                begin()
                work = do_work()
                end(work)
                idle(work)
            self._set_state(ProcessState.STOPPING)
        except SchedulingError as exc:
            log.error("process %s: %s", self.process.name, exc)
            status = EXIT_PRIVILEGE
        except Exception:
            log.exception("process %s: agent %s failed", self.process.name, self.process.agent)
            status = EXIT_AGENT_FAILED
        finally:
            gc.enable()
            try:
                self.agent.on_close()
            except Exception:
                log.exception("process %s: on_close failed", self.process.name)
                status = status or EXIT_AGENT_FAILED
            self._set_state(ProcessState.STOPPED if status == EXIT_OK else ProcessState.FAILED)
            self.idle_strategy.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status


def pin_cpu(process: ProcessSpec) -> int | None:
    """Pin to the layout's CPU; a CPU this machine lacks was warned about at load, and we run unpinned."""
    if process.cpu is None:
        return None
    if process.cpu not in os.sched_getaffinity(0):
        log.warning("process %s: CPU %d not available (allowed %s); running unpinned", process.name, process.cpu,
                    sorted(os.sched_getaffinity(0)))
        return None
    os.sched_setaffinity(0, {process.cpu})
    return process.cpu


def apply_scheduling(process: ProcessSpec) -> None:
    sched = process.scheduling
    if sched.policy == "fifo":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(sched.priority))
        except PermissionError:
            raise SchedulingError(
                f"SCHED_FIFO priority {sched.priority} not permitted (EPERM): run as root, grant CAP_SYS_NICE, "
                f"or raise LimitRTPRIO; or set scheduling.policy: other in the layout") from None
        except OSError as exc:
            raise SchedulingError(f"SCHED_FIFO priority {sched.priority} refused: {exc.strerror} "
                                  f"(under systemd with RT group scheduling this is status 214)") from None
    if sched.mlockall:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            err = ctypes.get_errno()
            raise SchedulingError(f"mlockall refused: {os.strerror(err)}; raise the memlock limit "
                                  f"(LimitMEMLOCK=infinity for a service, ulimit -l for a shell) or set "
                                  f"scheduling.mlockall: false")


def load_agent_class(spec: ProcessSpec) -> type[Agent]:
    module_name, _, class_name = spec.agent.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LayoutError("", f"processes.{spec.name}.agent", f"cannot import {module_name!r}: {exc}") from None
    cls = module
    for part in class_name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise LayoutError("", f"processes.{spec.name}.agent", f"{module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise LayoutError("", f"processes.{spec.name}.agent", f"{spec.agent!r} is not an Agent subclass")
    return cls


def build_runner(layout: Layout, memory: SharedMemory, process_name: str, prepare=None) -> AgentRunner:
    """Wire an agent to its memory: context, heartbeat, idle strategy (with doorbell inputs).
    ``prepare(agent)``: called before anything else sees the agent (the OMS's takeover hands it state)."""
    process = layout.processes[process_name]
    agent_cls = load_agent_class(process)
    counters = memory.counters_writer(process_name)
    agent = agent_cls(AgentContext(layout, process, memory, counters))
    if prepare is not None:
        prepare(agent)
    doorbell = inputs = outputs = address = None
    if process.idle.strategy == "doorbell":
        doorbell = memory.doorbell(process_name)
        inputs = [memory.ring(r.name, "observer") for r in layout.rings_consumed_by(process_name)]
        outputs = [memory.ring(r.name, "observer") for r in layout.rings_produced_by(process_name)]
        address = wake_address(layout.name, process_name)
    idle = make_idle_strategy(process.idle, doorbell, inputs, outputs, waiter=agent, address=address)
    return AgentRunner(agent, idle, memory.heartbeat(process_name), memory.process_table_atomics(),
                       process_record_offset(layout, process), process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.runtime.agent",
                                     description="Run one process of a layout (normally started by the supervisor).")
    parser.add_argument("--layout", required=True, help="path to shm_layout.yaml")
    parser.add_argument("--process", required=True, help="process name in the layout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.process}[%(process)d] %(levelname)s %(message)s")
    try:
        layout = load_layout(args.layout)
        if args.process not in layout.processes:
            raise LayoutError(args.layout, "processes", f"no process named {args.process!r} "
                              f"(declared: {', '.join(layout.processes)})")
        memory = SharedMemory.attach(layout)
    except (LayoutError, SegmentError) as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        runner = build_runner(layout, memory, args.process)
    except LayoutError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    return runner.run()


if __name__ == "__main__":
    # Run through the imported module, not this __main__ copy, so that agents subclass the same Agent.
    from appliance.runtime import agent as _agent_module
    sys.exit(_agent_module.main())
