"""The venue's answers in: every event of the SoupBinTCP session, journaled, then applied.

Every sequenced OUCH message is journaled (EXCHANGE_MESSAGE, with its SoupBinTCP sequence
number) and then applied to the order registry, which reports to strategy and risk
(``reports.py``) and marks the positions changed.

The venue's session: the OMS logs in with the journaled session name and the next sequence
number it has not seen. A LoginAccepted from a lower number, or under another name (after the
venue refused the journaled one), means the venue lost the old session: journaled NEW_SESSION,
every open order CANCELED (the venue no longer has it). One from a higher number means messages
were skipped that the OMS never saw: SEQUENCE_GAP keeps new orders out until a person looks.
"""
from __future__ import annotations

import logging
import time

from appliance.oms import journal_records as jr
from appliance.oms.journal_format import JournalError
from appliance.oms.journal_records import RecordType, SessionEvent
from appliance.wire.soupbintcp_session import DebugText, EndOfSession, LoginAccepted, LoginRejected, SequencedMessage

log = logging.getLogger("appliance.oms")


class VenueEvents:
    def __init__(self, session, orders, gate, journal, guard, reports, status, counters, journal_session: str,
                 next_sequence_number: int):
        self.session = session
        self.orders = orders
        self.gate = gate
        self.journal = journal
        self.guard = guard
        self.reports = reports
        self.status = status
        self.session_up = False
        self._requested_sequence = next_sequence_number
        self._journal_session = journal_session
        self.c_venue_messages = counters.venue_messages
        self.c_unjournaled = counters.unjournaled
        self.c_debug = counters.debug
        self.c_sequence_gaps = counters.sequence_gaps
        self.c_sequence_resets = counters.sequence_resets

    def apply(self, events: list, now_mono: int) -> int:
        """The session's events of one read, in order; how many."""
        now_ns = time.time_ns()
        self.reports.t_rx_ns = now_ns
        orders = self.orders
        journal_append = self.journal.append
        session = self.session
        for event in events:
            kind = type(event)
            if kind is SequencedMessage:
                message = event.message
                try:
                    journal_append(RecordType.EXCHANGE_MESSAGE,
                                   jr.EXCHANGE_MESSAGE.pack(event.sequence_number, message), now_ns, True)
                except JournalError as exc:
                    self.c_unjournaled.inc()
                    self.guard.fail(str(exc))
                self.c_venue_messages.inc()
                orders.apply_ouch(message, now_ns)
            elif kind is LoginAccepted:
                self.guard.record(RecordType.SESSION, jr.SESSION.pack(SessionEvent.LOGIN_ACCEPTED,
                                                                      session=event.session.encode(),
                                                                      sequence=event.sequence_number),
                                  now_ns, reserve=True)
                self._login_accepted(event, now_ns)
                self._set_session_up(True)
            elif kind is LoginRejected:
                self.guard.record(RecordType.SESSION,
                                  jr.SESSION.pack(SessionEvent.LOGIN_REJECTED, session=event.reason.encode()),
                                  now_ns, reserve=True)
            elif kind is EndOfSession:
                self.guard.record(RecordType.SESSION, jr.SESSION.pack(SessionEvent.END_OF_SESSION,
                                                                      session=session.client.session.encode(),
                                                                      sequence=session.client.next_sequence_number),
                                  now_ns, reserve=True)
            elif kind is DebugText:
                self.c_debug.inc()
                if self.c_debug.get() <= 20:
                    log.warning("venue debug message: %s", event.text)
        if not session.logged_in and self.session_up:
            self.session_lost(now_ns)
        return len(events)

    def _login_accepted(self, event: LoginAccepted, now_ns: int) -> None:
        """Is this the session the journal knows, from the number it asked for?"""
        requested, known = self._requested_sequence, self._journal_session
        if event.sequence_number > requested:
            self.c_sequence_gaps.inc()
            self.gate.sequence_gap = True
            log.error("the venue accepted the login from sequence %d, but the journal asked for %d: messages %d..%d "
                      "were skipped and never seen; no new order leaves until a person looks (cancels still do)",
                      event.sequence_number, requested, requested, event.sequence_number - 1)
        elif event.sequence_number < requested or (known and event.session.strip() != known.strip()):
            self.c_sequence_resets.inc()
            gone = self.orders.venue_session_lost()
            self.guard.record(RecordType.SESSION, jr.SESSION.pack(SessionEvent.NEW_SESSION,
                                                                  session=event.session.encode(),
                                                                  sequence=event.sequence_number), now_ns, reserve=True)
            log.error("the venue lost session %r (it now sends %r from sequence %d; the journal had seen up to %d): "
                      "%d open orders are gone at the venue and reported CANCELED", known, event.session,
                      event.sequence_number, requested - 1, len(gone))
        self._journal_session = event.session
        self._requested_sequence = event.sequence_number

    def _set_session_up(self, up: bool) -> None:
        self.session_up = up
        self.status.set_session_up(up)

    def session_lost(self, now_ns: int) -> None:
        """The session went down (disconnect or End of Session): no new order until it is back."""
        self._set_session_up(False)
        self.gate.session_ready = False
        session = self.session
        event = SessionEvent.END_OF_SESSION if session.ended else SessionEvent.DISCONNECTED
        if event == SessionEvent.DISCONNECTED:
            self.guard.record(RecordType.SESSION, jr.SESSION.pack(event, session=session.client.session.encode(),
                                                                  sequence=session.client.next_sequence_number),
                              now_ns, reserve=True)
        self._requested_sequence = session.client.next_sequence_number
