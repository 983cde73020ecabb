"""The recovery glue: the journal opened for today, and the way from the rebuilt state to ``oms_ready``.

At start the journal is opened (a journal from another trading day is archived and a new one
starts; a torn tail is truncated with a warning; a corrupt middle stops the start) and
``recovery.rebuild`` rebuilds orders, positions, the token counter and the session from it.
The session then logs in asking for the next sequence number the journal has not seen; once the
venue's replay is known to be drained (see ``session.py``) and every order journaled as sent but
unacknowledged is resolved (by the replay, or cancelled by token after ``unacked_timeout_ms``),
the OMS is recovered (journaled SESSION RECOVERED) and new orders may pass.
"""
from __future__ import annotations

import logging
import os
import time

from appliance.oms import journal_records as jr
from appliance.oms.journal import Journal, archive_name
from appliance.oms.journal_format import journal_day
from appliance.oms.journal_records import RecordType, SessionEvent
from appliance.oms.orders import OPEN_STATES
from appliance.runtime.trading_day import trading_day_of

log = logging.getLogger("appliance.oms")


def open_journal(config, truncated_counter, now_ns: int) -> Journal:
    """Today's journal (yesterday's archived beside it), its torn tail counted in ``truncated_counter``."""
    path = config.journal_path
    day = journal_day(path)
    today = trading_day_of(now_ns)
    if day is not None and day != today:
        archived = archive_name(path, day)
        log.warning("journal %s is from trading day %d: archived as %s, a new journal starts for %d",
                    path, day, archived, today)
        os.replace(path, archived)
    journal = Journal.open(path, config.journal_size_mb << 20, config.durability, config.group_commit_us,
                           now_ns=now_ns)
    if journal.truncated_bytes:
        truncated_counter.set(journal.truncated_bytes)
    return journal


class RecoveryProgress:
    """From the rebuilt state to recovered: the venue's replay applied, the unacknowledged resolved."""

    def __init__(self, orders, gate, guard, session, counters, unacked_timeout_ms: int, started_mono: int):
        self.orders = orders
        self.gate = gate
        self.guard = guard
        self.session = session
        self.unacked_timeout_ms = unacked_timeout_ms
        self.started_mono = started_mono
        self.ready = False
        self._unacked_clock_started = False
        self._recovery_ns = counters.recovery_ns

    def progress(self, now_mono: int, session_ready: bool) -> int:
        """One look from the slow path; 1 when the OMS has just become recovered."""
        if not session_ready or self.guard.journal.failed or self.gate.sequence_gap:
            return 0
        orders = self.orders
        if not self._unacked_clock_started:
            self._unacked_clock_started = True
            deadline = now_mono + self.unacked_timeout_ms * 1_000_000
            for order in orders.in_flight:
                order.deadline_ns = deadline
            if orders.in_flight:
                log.warning("%d orders journaled as sent are unacknowledged after the replay: cancelled by token "
                            "unless answered within %d ms", len(orders.in_flight), self.unacked_timeout_ms)
        if any(o.state in OPEN_STATES and (not o.acked or o.requests) for o in orders.in_flight):
            return 0
        self.ready = True
        self.gate.recovered = True
        elapsed = now_mono - self.started_mono
        self._recovery_ns.set(elapsed)
        client = self.session.client
        self.guard.record(RecordType.SESSION, jr.SESSION.pack(SessionEvent.RECOVERED, session=client.session.encode(),
                                                              sequence=client.next_sequence_number),
                          time.time_ns(), reserve=True)
        log.info("recovered in %.3f s: %d open orders, ready for new orders", elapsed / 1e9, orders.open_orders)
        return 1
