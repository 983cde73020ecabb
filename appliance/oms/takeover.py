"""Takeover: the hot standby (``standby.py``) becomes the primary OMS of its layout, on the same box or another.

When (``appliance oms-standby --takeover auto|signal|remote``, ``standby_cli.py``):

- ``auto``: the replication stream stopped (the primary closed it or went silent for
  ``replication.peer_timeout_ms``) and the process table's ``oms`` record names a process that is
  gone (no ``/proc/PID``, or a zombie: it can no longer send);
- ``signal``: SIGUSR1 from the supervisor, which has reaped the primary and closed the gate
  (TAKEOVER) instead of restarting it (``supervisor/agent.py``);
- ``remote``: the primary is on another box (the standby runs as the ``oms`` of this box's own layout:
  its own shared memory, its own journal): nothing has been heard from it on the replication stream
  for ``replication.peer_timeout_ms`` (the connection is gone and no reconnect succeeded). The other
  box's pid means nothing here: no process-table fence on the old primary.

The rule of the other box: two primaries never both send, because the venue holds one session per
firm. The new primary logs in only when the venue has ended the old primary's session: while that
session is live the venue refuses the login ('S'; ``session.py`` logs each refusal) and the OMS
tries again with its reconnect backoff, so it is logged in only after the venue's own peer timeout
ended a silent old primary (or the old primary logged out). An old primary that comes back (its
network restored) finds its session ended and the new one live: its login is refused in turn, and
without a session it sends nothing. A cut between the boxes alone (the old primary alive and logged in)
makes the standby try just the same: it is refused for as long as that session lives and never sends,
and the old primary trades on without a standby as ``without_standby`` says; the standby's box needs
a new standby (``--fresh``) once the boxes see each other again. The new primary listens for a standby on
``replication.primary``'s port on every address of its box (``0.0.0.0``: the layout's address is
the other box's).

Fencing on this box (``auto``, ``signal``, ``now``): the new primary logs in only once the old one is
known dead: the pid the process table names is checked gone here (``fence``), whatever said so
(``remote`` checks this box's own layout the same way: no live OMS of its own). A primary that is
still alive is never taken over (the standby refuses, exit status 3). The venue is the second fence:
it refuses a second login of a firm whose session is live (the simulated exchange answers 'S',
``exchange/server.py``), and the OMS's session then retries with its reconnect backoff.

How: the standby reads what is left on the stream (the kernel delivers a dead primary's last
bytes before the close), closes its journal and hands its journal and the order state it replayed
from it (``recovery.Replay``: orders, positions, token counter, the next SoupBinTCP sequence) to an
``OmsAgent`` run in this process as the layout's ``oms`` process (``runtime.agent.build_runner``):
the same agent, the same start-up as a restart (``OmsAgent.on_start``: a new token prefix journaled,
positions published), except that the journal is not read again. From there the OMS's own
recovery does the rest, one code path with a restart: login with the next sequence number, the
venue's replay through ``venue_events``, orders journaled as sent but never acknowledged cancelled by
token after ``unacked_timeout_ms`` (``restart.RecoveryProgress``), then ``oms_ready = 1``. The new
primary attaches as the consumer of ``approved_orders`` as a restarted OMS does (the ring's read
position is in shared memory; an order the dead primary had read but not released comes again and
is refused as a duplicate client order id if it was journaled).

On this box (``auto``, ``signal``, ``now``) either transport: TCP, or the box's rings (``transport:
shm``; ``remote`` is TCP only, ``oms-standby`` refuses it over shm), which keep their roles by name
(the new primary produces ``replication_records`` as the layout's ``oms``, the next standby is the
peer ``oms_standby``); before the new primary listens, the slots this standby left in
``replication_acks`` are retired so that none is taken for a new standby (the rule:
``replication_shm``'s docstring).

Roles swap: the new primary's journal is the standby's file, and its ``replication.standby_journal``
is the dead primary's journal file: a new standby started there (``--journal PATH --fresh``) archives
that file first (the dead primary's bytes past the last record the standby acknowledged are kept,
never continued) and copies the new primary's journal from its first record.
``--takeover now`` takes over at once from the standby's journal without a stream: the supervisor's
restart of an OMS that is itself a former standby (its journal is that file, not the layout's).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

from appliance.oms.journal import archive_name
from appliance.oms.journal_format import journal_day

log = logging.getLogger("appliance.oms.takeover")

EXIT_PRIMARY_ALIVE = 3


def process_gone(pid: int) -> bool:
    """True when ``pid`` can no longer send: no such process, or a zombie (dead, not yet reaped)."""
    if pid <= 0:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]   # after "pid (comm) "
    return state in (b"Z", b"X")


def fence(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to be gone; True once it is (the old primary cannot send)."""
    deadline = time.monotonic() + timeout_s
    while not process_gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def takeover_config(config, standby_journal: str, old_primary_journal: str, remote: bool = False):
    """The OMS settings of the new primary: the standby's journal is its journal, and the old
    primary's journal path is where its own standby will write. ``remote``: it listens for its
    standby on every address of this box (the layout's ``primary`` host is the other box's)."""
    listen = {"primary_host": "0.0.0.0"} if remote else {}
    replication = dataclasses.replace(config.replication, standby_journal_path=old_primary_journal, **listen)
    return dataclasses.replace(config, journal_path=standby_journal, replication=replication)


def archive_journal(path: str) -> str | None:
    """A journal moved aside before a new standby starts there (``--fresh``): a dead primary's file is
    never continued (its bytes past the standby's last acknowledged record differ from the new one's)."""
    if not os.path.exists(path):
        return None
    target = archive_name(path, journal_day(path) or 0)
    os.replace(path, target)
    return target


def primary_unheard(replica, now_ns: int) -> bool:
    """``remote``'s trigger: the stream was up once, is down, and nothing came from the primary for
    its peer timeout (a primary restarted on its box reconnects before that and is not taken over)."""
    return bool(replica.connections) and replica.sock is None and \
        now_ns - replica.last_received_ns >= replica.peer_timeout_ns


class Takeover:
    """The standby's side of a takeover: this box's layout's shared memory, the primary's pid on this box
    (``remote``: the primary is on another box, fenced by the venue)."""

    def __init__(self, layout, process_name: str, replica, old_primary_journal: str, remote: bool = False):
        self.layout = layout
        self.remote = remote
        self.process_name = process_name
        self.replica = replica
        self.old_primary_journal = old_primary_journal
        self.memory = None
        from appliance.runtime.agent import load_agent_class
        load_agent_class(layout.processes[process_name])      # imported now, not in the takeover's time

    def attach(self) -> bool:
        """The layout's shared memory (False while it does not exist yet)."""
        if self.memory is None:
            from appliance.runtime.memory import SharedMemory
            from appliance.runtime.segment import SegmentError
            try:
                self.memory = SharedMemory.attach(self.layout)
            except (SegmentError, OSError):
                return False
        return True

    def primary_pid(self) -> int:
        return self.memory.process_table().read(self.process_name).pid if self.attach() else 0

    def primary_gone(self) -> bool:
        """The process table's primary is dead (``auto``'s test, with the stream stopped)."""
        return self.attach() and process_gone(self.primary_pid())

    def drain(self, timeout_s: float) -> None:
        """What the dead primary's stream still holds, read until its close (or ``timeout_s``). A
        connection no primary answered holds nothing (over shm a reconnection to a dead primary
        succeeds and would only wait out the peer timeout)."""
        replica = self.replica
        deadline = time.monotonic() + timeout_s
        while replica.answered and time.monotonic() < deadline:
            replica.poll(0.005)

    def run(self, fence_timeout_s: float, stopping=lambda: False) -> int:
        """Fence, then run as the primary until stopped: the agent runner's exit status. ``stopping``:
        the standby was told to stop (SIGTERM) meanwhile, which the runner, whose own signal handlers
        come with its start, would never hear: then no takeover (status 0)."""
        from appliance.runtime.agent import build_runner
        started = time.monotonic_ns()
        if not self.attach():
            log.error("takeover refused: the layout's shared memory is not there (no supervisor?)")
            return EXIT_PRIMARY_ALIVE
        pid = self.primary_pid()        # remote: this box's own layout, which must name no live OMS either
        if not fence(pid, fence_timeout_s):
            log.error("takeover refused: the primary (pid %d) is still alive after %.1f s: two primaries must "
                      "never both send", pid, fence_timeout_s)
            return EXIT_PRIMARY_ALIVE
        replica = self.replica
        self.drain(replica.peer_timeout_ns / 1e9)
        if stopping():
            log.warning("takeover abandoned: told to stop while fencing the primary (pid %d); no login", pid)
            return 0
        replica.close()
        if replica.shm_epoch:                 # the same box's rings: this standby's own slots never read as a standby's
            from appliance.oms.replication_shm import retire_standby_slots
            log.info("takeover: %d slots of this standby's connections retired from the acknowledgements ring",
                     retire_standby_slots(self.memory, replica.shm_epoch))
        state = replica.replay.state
        config = takeover_config(replica.config, replica.path, self.old_primary_journal, self.remote)
        if self.remote:
            log.warning("TAKEOVER (remote): the primary at %s:%d unheard for %.3f s; this standby (pid %d) becomes "
                        "the primary with journal %s (%d records, %d open orders, next venue sequence %d); the fence "
                        "is the venue: the login is refused while the old primary's session is live there",
                        replica.replication.primary_host, replica.replication.primary_port,
                        (time.monotonic_ns() - replica.last_received_ns) / 1e9, os.getpid(), replica.path,
                        state.records, state.orders.open_orders, state.next_sequence_number)
        else:
            log.warning("TAKEOVER: primary pid %d is gone; this standby (pid %d) becomes the primary with journal %s "
                        "(%d records, %d open orders, next venue sequence %d)", pid, os.getpid(), replica.path,
                        state.records, state.orders.open_orders, state.next_sequence_number)

        def prepare(agent):
            agent.config = config
            agent.prepared = state
        runner = build_runner(self.layout, self.memory, self.process_name, prepare)
        if stopping():
            log.warning("takeover abandoned: told to stop while handing over; no login")
            return 0
        log.info("takeover: fenced and handed over in %.1f ms; logging in", (time.monotonic_ns() - started) / 1e6)
        return runner.run()

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None
