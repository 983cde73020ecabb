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

from appliance.runtime.counters import ProcessState

from .children import ManagedProcess

log = logging.getLogger("appliance.supervisor")

STANDBY_NAME = "oms-standby"
RESTART_AFTER_NS = 1_000_000_000     # a standby that exited is started again this much later


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
        self.new_primary: ManagedProcess | None = None
        self.takeovers = 0
        self.last_takeover_ms = 0.0
        self.last_takeover_wall_ns = 0
        self._restart_at = 0

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

    def take_over(self, now_ns: int) -> ManagedProcess:
        """The OMS is reaped: the standby becomes the ``oms`` child (returned)."""
        child = self.child
        self.switching = False
        child.signal(signal.SIGUSR1)
        child.name = self.process
        child.started_ns = now_ns             # its start as the OMS: the start-up grace counts from here
        child.argv = self.argv(self.journals[1], "now", False)   # restarted: it takes over from its own journal
        self.journals.reverse()
        self.child = None
        self.new_primary = child
        self.since_ns = now_ns
        self.last_takeover_wall_ns = time.time_ns()
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
                self.last_takeover_ms = (now_ns - self.since_ns) / 1e6
                self.takeovers += 1
                log.warning("takeover done in %.1f ms: the new primary (pid %d) is ready", self.last_takeover_ms,
                            primary.pid)
                self.since_ns = None
                self.new_primary = None
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
        child = self.child
        return {"pid": child.pid if child else None, "alive": bool(child and child.alive()),
                "journal": self.journals[1], "taking_over": self.taking_over, "takeovers": self.takeovers,
                "last_takeover_ms": self.last_takeover_ms, "last_takeover_ns": self.last_takeover_wall_ns}

    def stop(self, timeout_s: float) -> None:
        if self.child is not None:
            self.child.stop(timeout_s)
