"""The supervisor of the box whose OMS is the hot standby of a primary on another box
(``params.replication.takeover: remote``).

``appliance up`` on that box starts every process of its layout but the OMS, and in the OMS's place runs
``appliance oms-standby --takeover remote`` (``oms/takeover.py``): it replicates from the other box's
primary (``replication.primary``) and takes over by itself when that primary's stream is silent for
``replication.peer_timeout_ms``. While it stands by, the gate stays closed with STANDBY (this box does not
trade; the other box does). The fence is the venue (one session per firm), never this supervisor: a
standby that exits without having taken over is started again as a standby, never as a primary OMS.

The supervisor sees the takeover in its process table: the layout's ``oms`` record names the standby's
pid once it runs as this box's ``oms``. It adopts that process as its ``oms`` child (as
``standby.OmsStandby`` does on one box), counts the takeover (``TakeoverRecord``, remote), and holds
TAKEOVER until the new primary says ``oms_ready``. From then on the box is a primary like any other:
the OMS's exit is the restart policy's (``--takeover now`` from its own journal, the layout's
``standby_journal``), and the other box attaches its new standby with ``oms-standby --primary`` (this
box's address) ``--journal`` (its old journal) ``--fresh``.
"""
from __future__ import annotations

import logging
import sys
import time

from appliance.runtime.counters import ProcessState

from .children import ManagedProcess
from .standby import RESTART_AFTER_NS, STANDBY_NAME, TakeoverRecord, takeover_counts, takeover_done

log = logging.getLogger("appliance.supervisor")


class RemoteStandby:
    """The standby of another box's primary, run in this box's OMS's place; the supervisor agent drives it
    through the same calls as ``standby.OmsStandby`` (``poll``, ``taking_over``, ``ready``, ``summary``)."""

    remote = True

    def __init__(self, layout_path: str, process: str, primary: str, children: dict, log_dir, cwd: str | None = None):
        self.layout_path = layout_path
        self.process = process
        self.primary = primary               # "host:port": the other box's replication address (status)
        self.children = children             # the supervisor's children: the adopted new primary goes there
        self.log_dir = log_dir
        self.cwd = cwd
        self.child: ManagedProcess | None = None
        self.since_ns: int | None = None     # monotonic: a takeover under way since (adopted, not yet ready)
        self.adopted = False                 # the standby took over: this box is the primary now
        self.switching = False               # the agent's interface; a planned switch is the other box's
        self.new_primary: ManagedProcess | None = None
        self.record: TakeoverRecord | None = None
        self._restart_at = 0

    def attach(self, counters) -> None:
        self.record = TakeoverRecord(counters)

    def argv(self, takeover: str) -> list[str]:
        return [sys.executable, "-m", "appliance", "oms-standby", "--layout", self.layout_path, "--process",
                self.process, "--takeover", takeover, "--status-every", "60"]

    def start(self) -> None:
        self.child = ManagedProcess(STANDBY_NAME, self.argv("remote"), self.log_dir, cwd=self.cwd)
        self.child.start()
        log.info("started this box's OMS as the standby of the primary at %s (pid %d): the gate stays closed "
                 "(STANDBY) until it takes over", self.primary, self.child.pid)

    @property
    def standing_by(self) -> bool:
        """This box's OMS is still the other box's standby: the gate's STANDBY."""
        return not self.adopted

    @property
    def taking_over(self) -> bool:
        return self.since_ns is not None

    def ready(self) -> bool:
        """Never a same-box takeover at the OMS's exit: the standby takes over by itself (``poll`` adopts it)."""
        return False

    def poll(self, now_ns: int, record, oms_ready: bool) -> int:
        """From the duty cycle: the standby seen running as the ``oms`` (adopted), the takeover's end, and a
        standby that exited without taking over started again, as a standby."""
        work = 0
        child = self.child
        if child is not None and child.pid is not None and record.pid == child.pid:
            self._adopt(now_ns, child)
            work += 1
        if self.since_ns is not None:
            primary = self.new_primary
            if oms_ready and record.pid == primary.pid and record.state is ProcessState.RUNNING:
                takeover_done(self, now_ns, "takeover from the other box")
                work += 1
            return work
        if child is not None and child.poll_exit() is not None:
            log.error("the standby of the primary at %s exited with status %s without taking over; starting it "
                      "again (as a standby) in 1 s; last lines:\n%s", self.primary, child.last_exit,
                      child.log_tail(8))
            self._restart_at = now_ns + RESTART_AFTER_NS
        due = self._restart_at and now_ns >= self._restart_at
        if child is not None and child.proc is None and child.wanted and due:
            self._restart_at = 0
            child.start()
            work += 1
        return work

    def _adopt(self, now_ns: int, child: ManagedProcess) -> None:
        """The standby runs as this box's ``oms``: it is the supervisor's OMS child from now on (its exit the
        restart policy's, from its own journal)."""
        child.name = self.process
        child.started_ns = now_ns            # its start as the OMS: the start-up grace counts from here
        child.argv = self.argv("now")        # restarted: the primary again from its own journal
        self.children[self.process] = child
        self.child = None
        self.adopted = True
        self.new_primary = child
        self.since_ns = now_ns
        if self.record is not None:
            self.record.begun(time.time_ns(), 0, child.pid, planned=False, remote=True)
        log.error("TAKEOVER (remote): the primary at %s went silent and this box's standby (pid %d) took over as "
                  "the OMS; the gate stays closed until it is ready", self.primary, child.pid)

    def summary(self) -> dict:
        child, record = self.child, self.record
        return {"pid": child.pid if child else None, "alive": bool(child and child.alive()), "remote": True,
                "primary": self.primary, "standing_by": self.standing_by, "taking_over": self.taking_over,
                **takeover_counts(record)}

    def stop(self, timeout_s: float) -> None:
        if self.child is not None:
            self.child.stop(timeout_s)
