"""The OMS's takeovers by its hot standby as operators see them: the supervisor's ``supervisor.takeover*``
counters (written by ``standby.TakeoverRecord``, the only store) read into one summary for
``appliance status``, shmtop and the Prometheus exporter alike (as ``oms/replication_status.py`` is for
the replication). The labels are defined here, once, for the writer and the readers."""
from __future__ import annotations

import time

TAKEOVERS = "supervisor.takeovers"                               # counter: takeovers begun
LAST_UNIX_NS = "supervisor.takeover.last_unix_ns"                # when the last one began (wall clock, ns)
LAST_GATE_CLOSED_NS = "supervisor.takeover.last_gate_closed_ns"  # its TAKEOVER: begun -> new primary ready; 0 under way
LAST_OLD_PID = "supervisor.takeover.last_old_pid"                # the OMS that died (or was stopped)
LAST_NEW_PID = "supervisor.takeover.last_new_pid"                # the standby that became the OMS
LAST_PLANNED = "supervisor.takeover.last_planned"                # 1: ``appliance failover``; 0: the OMS died
LAST_REMOTE = "supervisor.takeover.last_remote"                  # 1: the primary on another box went silent
                                                                 # (``remote_standby.py``; its pid unknown here: 0)


def summary(counters: dict[str, int]) -> dict | None:
    """The takeover counters (``counters``: label -> value) as a dict; None when this supervisor has no
    hot standby for its OMS (the counters are allocated only with one). The ``last_*`` fields are None
    before the first takeover; ``last_gate_closed_ms`` is None while the last one is under way."""
    if LAST_UNIX_NS not in counters:
        return None
    count = counters.get(TAKEOVERS, 0)
    if not count:
        return {"count": 0, "under_way": False, "last_unix_ns": None, "last_gate_closed_ms": None,
                "last_old_pid": None, "last_new_pid": None, "last_planned": None, "last_remote": None}
    closed_ns = counters.get(LAST_GATE_CLOSED_NS, 0)
    return {"count": count, "under_way": closed_ns == 0, "last_unix_ns": counters[LAST_UNIX_NS],
            "last_gate_closed_ms": round(closed_ns / 1e6, 3) if closed_ns else None,
            "last_old_pid": counters.get(LAST_OLD_PID, 0), "last_new_pid": counters.get(LAST_NEW_PID, 0),
            "last_planned": bool(counters.get(LAST_PLANNED, 0)), "last_remote": bool(counters.get(LAST_REMOTE, 0))}


def one_line(takeover: dict) -> str:
    """``takeovers 2, last 21:50:03 failover pid 123 -> 456, gate closed 181.0 ms`` (from another box:
    ``remote -> pid 456``): the status line's and shmtop's words."""
    if not takeover["count"]:
        return "takeovers 0"
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(takeover["last_unix_ns"] / 1e9))
    how = "failover" if takeover["last_planned"] else "crash"
    closed = "under way" if takeover["under_way"] else f"gate closed {takeover['last_gate_closed_ms']:,.1f} ms"
    if takeover.get("last_remote"):
        return f"takeovers {takeover['count']}, last {at} remote -> pid {takeover['last_new_pid']}, {closed}"
    return (f"takeovers {takeover['count']}, last {at} {how} pid {takeover['last_old_pid']} -> "
            f"{takeover['last_new_pid']}, {closed}")
