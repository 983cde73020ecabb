"""The supervisor's side of the OMS's hot standby on this box (``params.replication.takeover: standby``).

The supervisor runs ``appliance oms-standby --takeover signal`` beside the OMS (not a process of
the layout: it has no record in the process table and never holds the gate). When the OMS exits
(reaped: ``children.ManagedProcess.poll_exit``, so it is known dead) and the standby is alive, the
supervisor does not restart the OMS: it closes the gate (TAKEOVER), signals the standby (SIGUSR1),
and the standby's process becomes the ``oms`` child (``oms/takeover.py``: fenced on the dead pid,
login with the next sequence, the venue's replay, unacknowledged orders cancelled by token). The
new primary attaches to the shared memory as the layout's ``oms`` process, so it is the consumer of
``approved_orders`` from where the dead one stopped, like a restarted OMS; nothing else is re-pointed.
Once it runs, a new standby starts where the dead primary's journal was (``--fresh``: that file
archived, the new primary's journal copied from its first record). TAKEOVER holds until the new
primary says ``oms_ready`` (in sync mode with ``without_standby: close_gate`` that includes the new
standby having caught up). A takeover is also how ``appliance failover --operator NAME`` switches on
purpose: the OMS is stopped (SIGTERM: it logs out) and the standby takes over the same way.

Without a live standby at the OMS's exit, or with one the OMS last saw unsubscribed (it would take
over from a stale copy, or from nothing), the restart policy applies as before. A former standby that
became the primary restarts as ``oms-standby --takeover now`` on its own journal (the layout's
``journal`` is the other file by then).
"""
from __future__ import annotations

import logging
import signal
import sys
import time

from appliance.runtime.counters import CounterKind, ProcessState

from . import takeover_status as labels
from .children import ManagedProcess

log = logging.getLogger("appliance.supervisor")

STANDBY_NAME = "oms-standby"
RESTART_AFTER_NS = 1_000_000_000     # a standby that exited is started again this much later


class TakeoverRecord:
    """The takeovers in the supervisor's own counters, their only store: ``appliance status``, shmtop and
    the exporter read them there (``takeover_status.py``), the control socket's status through
    ``OmsStandby.summary``. The supervisor is their one writer."""

    def __init__(self, counters):
        self.count = counters.allocate(labels.TAKEOVERS)
        self.unix_ns = counters.allocate(labels.LAST_UNIX_NS, CounterKind.GAUGE)
        self.gate_closed_ns = counters.allocate(labels.LAST_GATE_CLOSED_NS, CounterKind.GAUGE)
        self.old_pid = counters.allocate(labels.LAST_OLD_PID, CounterKind.INFO)
        self.new_pid = counters.allocate(labels.LAST_NEW_PID, CounterKind.INFO)
        self.planned = counters.allocate(labels.LAST_PLANNED, CounterKind.INFO)
        self.remote = counters.allocate(labels.LAST_REMOTE, CounterKind.INFO)

    def begun(self, unix_ns: int, old_pid: int, new_pid: int, planned: bool, remote: bool = False) -> None:
        self.gate_closed_ns.set(0)           # first: a reader sees "under way", never the previous duration
        self.unix_ns.set(unix_ns)
        self.old_pid.set(old_pid)
        self.new_pid.set(new_pid)
        self.planned.set(int(planned))
        self.remote.set(int(remote))
        self.count.inc()

    def done(self, gate_closed_ns: int) -> None:
        self.gate_closed_ns.set(max(1, gate_closed_ns))     # never 0: that says under way


def takeover_counts(record: TakeoverRecord | None) -> dict:
    """The takeover counters of a standby's summary (``appliance status``): how many, the last one's gate-closed
    time and when it began."""
    return {"takeovers": record.count.get() if record else 0,
            "last_takeover_ms": record.gate_closed_ns.get() / 1e6 if record else 0.0,
            "last_takeover_ns": record.unix_ns.get() if record else 0}


def takeover_done(holder, now_ns: int, what: str) -> None:
    """The new primary is ready: the gate's closed time counted and logged, the takeover over (one place for
    this box's standby and another box's, ``remote_standby.py``)."""
    if holder.record is not None:
        holder.record.done(now_ns - holder.since_ns)
    log.warning("%s done in %.1f ms: the new primary (pid %d) is ready", what, (now_ns - holder.since_ns) / 1e6,
                holder.new_primary.pid)
    holder.since_ns = None
    holder.new_primary = None


class OmsStandby:
    def __init__(self, layout_path: str, process: str, journals: tuple[str, str], log_dir, cwd: str | None = None):
        self.layout_path = layout_path
        self.process = process
        self.journals = list(journals)       # [the primary's journal, the standby's]
        self.log_dir = log_dir
        self.cwd = cwd
        self.child: ManagedProcess | None = None
        self.since_ns: int | None = None     # monotonic: a takeover under way since
        self.switching = False               # ``appliance failover``: the OMS asked to stop, the standby next
        self.switch_ns = 0                   # monotonic: when the failover was asked (the gate closed for it)
        self.new_primary: ManagedProcess | None = None
        self.record: TakeoverRecord | None = None    # the supervisor's counters: ``attach``
        self._restart_at = 0

    def attach(self, counters) -> None:
        """Count the takeovers in the supervisor's counters (``counters``: its CountersWriter)."""
        self.record = TakeoverRecord(counters)

    def begin_switch(self, now_ns: int) -> None:
        """``appliance failover``: the OMS is asked to stop; TAKEOVER holds the gate from now."""
        self.switching = True
        self.switch_ns = now_ns

    def argv(self, journal: str, takeover: str, fresh: bool) -> list[str]:
        return [sys.executable, "-m", "appliance", "oms-standby", "--layout", self.layout_path, "--process",
                self.process, "--journal", journal, "--takeover", takeover, "--status-every", "60",
                *(["--fresh"] if fresh else [])]

    def start(self, fresh: bool = False) -> None:
        self.child = ManagedProcess(STANDBY_NAME, self.argv(self.journals[1], "signal", fresh), self.log_dir,
                                    cwd=self.cwd)
        self.child.start()
        log.info("started the OMS's standby (pid %d, journal %s)", self.child.pid, self.journals[1])

    @property
    def taking_over(self) -> bool:
        return self.since_ns is not None or self.switching

    def ready(self) -> bool:
        """A standby that can take over now."""
        return self.child is not None and self.child.alive() and self.since_ns is None

    def take_over(self, now_ns: int, old_pid: int) -> ManagedProcess:
        """The OMS (``old_pid``) is reaped: the standby becomes the ``oms`` child (returned). The takeover
        counts from the failover's request when planned (the gate closed then), else from now."""
        child = self.child
        planned = self.switching
        self.switching = False
        child.signal(signal.SIGUSR1)
        child.name = self.process
        child.started_ns = now_ns             # its start as the OMS: the start-up grace counts from here
        child.argv = self.argv(self.journals[1], "now", False)   # restarted: it takes over from its own journal
        self.journals.reverse()
        self.child = None
        self.new_primary = child
        self.since_ns = self.switch_ns if planned and self.switch_ns else now_ns
        if self.record is not None:
            self.record.begun(time.time_ns() - (now_ns - self.since_ns), old_pid, child.pid, planned)
        log.error("TAKEOVER: the OMS is gone; its standby (pid %d) becomes the primary; the gate stays closed "
                  "until it is ready", child.pid)
        return child

    def poll(self, now_ns: int, record, oms_ready: bool) -> int:
        """From the duty cycle: the takeover's progress, and a standby that exited started again."""
        work = 0
        if self.since_ns is not None:
            primary = self.new_primary
            running = primary is not None and record.pid == primary.pid and record.state is ProcessState.RUNNING
            if self.child is None and running:
                self.start(fresh=True)        # where the dead primary's journal was
                work += 1
            if oms_ready and running:
                takeover_done(self, now_ns, "takeover")
                work += 1
            return work
        child = self.child
        if child is not None and child.poll_exit() is not None:
            log.error("the OMS's standby exited with status %s; starting it again in 1 s; last lines:\n%s",
                      child.last_exit, child.log_tail(8))
            self._restart_at = now_ns + RESTART_AFTER_NS
        if child is not None and child.proc is None and child.wanted and self._restart_at and now_ns >= self._restart_at:
            self._restart_at = 0
            child.start()
            work += 1
        return work

    def summary(self) -> dict:
        child, record = self.child, self.record
        return {"pid": child.pid if child else None, "alive": bool(child and child.alive()),
                "journal": self.journals[1], "taking_over": self.taking_over, **takeover_counts(record)}

    def stop(self, timeout_s: float) -> None:
        if self.child is not None:
            self.child.stop(timeout_s)
