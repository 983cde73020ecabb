"""Fail closed on the journal: a record the journal cannot take (full, sync error) stops every
new order (JOURNAL_FAILED in the gate, ``oms_ready = 0``, ``oms.journal.failed = 1``); cancels
are still sent.

Every record the agent journals off the hot path goes through ``record``; the hot path appends
to the journal itself and calls ``fail`` on an error.
"""
from __future__ import annotations

import logging

from appliance.oms.journal_format import JournalError

log = logging.getLogger("appliance.oms")


class JournalGuard:
    def __init__(self, journal, gate, status, counters):
        self.journal = journal
        self.gate = gate
        self.status = status
        self._unjournaled = counters.unjournaled
        self._failed = counters.journal_failed

    def record(self, record_type: int, payload: bytes, now_ns: int, reserve: bool = False,
               count_failure: bool = True) -> bool:
        """Append one record; False (and, unless ``count_failure`` is False, fail closed) if it could not be."""
        try:
            self.journal.append(record_type, payload, now_ns, reserve)
            return True
        except JournalError as exc:
            self._unjournaled.inc()
            if count_failure:
                self.fail(str(exc))
            return False

    def fail(self, reason: str) -> None:
        """Fail closed: no new order leaves from now on (cancels still do)."""
        if self.gate.journal_ok:
            log.error("journal failed (%s): refusing new orders; cancels are still sent", reason)
        self.journal.fail(reason)
        self.gate.journal_ok = False
        self._failed.set(1)
        self.status.publish_ready(self.gate)
