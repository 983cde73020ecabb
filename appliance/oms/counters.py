"""Every counter the OMS publishes, allocated once at start (the names shmtop and the exporter show).

The agent's parts bind the counters they count with when they are built (no lookup per message);
``publish`` copies the tallies the order registry, the venue session and the journal keep
themselves into their counters, from the slow path.
"""
from __future__ import annotations

from appliance.messages.codes import OmsReason
from appliance.runtime.counters import CounterKind


class OmsCounters:
    def __init__(self, allocate):
        self.orders_sent = allocate("oms.orders_sent")
        self.replaces_sent = allocate("oms.replaces_sent")
        self.cancels_sent = allocate("oms.cancels_sent")
        self.cancel_all = allocate("oms.cancel_all")
        self.cancel_all_orders = allocate("oms.cancel_all_orders")
        self.rejects = {reason: allocate(f"oms.rejects.{reason.name}") for reason in OmsReason}
        self.bad_orders = allocate("oms.bad_orders")
        self.redelivered = allocate("oms.redelivered")
        self.fills = allocate("oms.fills")
        self.reports = allocate("oms.exec_reports")
        self.dropped_strategy = allocate("oms.reports_dropped.strategy")
        self.dropped_risk = allocate("oms.reports_dropped.risk")
        self.timeouts = allocate("oms.in_flight_timeouts")
        self.venue_messages = allocate("oms.venue_messages")
        self.venue_bad = allocate("oms.venue_bad_messages")
        self.unknown_tokens = allocate("oms.unknown_tokens")
        self.illegal = allocate("oms.illegal_transitions")
        self.duplicate_fills = allocate("oms.duplicate_fills")
        self.connects = allocate("oms.session.connects")
        self.logins = allocate("oms.session.logins")
        self.login_rejects = allocate("oms.session.login_rejects")
        self.disconnects = allocate("oms.session.disconnects")
        self.protocol_errors = allocate("oms.session.protocol_errors")
        self.debug = allocate("oms.session.debug_messages")
        self.sequence_resets = allocate("oms.session.sequence_resets")
        self.sequence_gaps = allocate("oms.session.sequence_gaps")
        self.not_sent = allocate("oms.not_sent")
        self.cancel_errors = allocate("oms.cancel_errors")
        self.session_up = allocate("oms.session.up", CounterKind.GAUGE)
        self.journal_records = allocate("oms.journal.records")
        self.journal_bytes = allocate("oms.journal.bytes", CounterKind.GAUGE)
        self.journal_syncs = allocate("oms.journal.syncs")
        self.journal_sync_errors = allocate("oms.journal.sync_errors")
        self.journal_failed = allocate("oms.journal.failed", CounterKind.GAUGE)
        self.journal_truncated = allocate("oms.journal.truncated_bytes", CounterKind.INFO)
        self.unjournaled = allocate("oms.journal.unjournaled")
        self.recovery_records = allocate("oms.recovery.records", CounterKind.INFO)
        self.recovery_ns = allocate("oms.recovery.ns", CounterKind.INFO)
        self.unknown_symbols = allocate("oms.recovery.unknown_symbols", CounterKind.INFO)
        self.open_orders = allocate("oms.open_orders", CounterKind.GAUGE)
        self.control_events = allocate("oms.control_events")
        self.snapshots = allocate("oms.snapshots")
        self.bad_ring_records = allocate("oms.bad_ring_records")
        self.journal_failed.set(0)

    def publish(self, orders, session, journal) -> None:
        """The tallies the registry, the session and the journal keep, into their counters."""
        self.venue_bad.set(orders.bad_messages)
        self.unknown_tokens.set(orders.unknown_tokens)
        self.illegal.set(orders.illegal_transitions)
        self.duplicate_fills.set(orders.duplicate_fills)
        self.connects.set(session.connects)
        self.logins.set(session.logins)
        self.login_rejects.set(session.login_rejects)
        self.disconnects.set(session.disconnects)
        self.protocol_errors.set(session.protocol_errors)
        self.session_up.set(1 if session.logged_in else 0)
        self.journal_records.set(journal.next_sequence - 1)
        self.journal_bytes.set(journal.used_bytes)
        self.journal_syncs.set(journal.syncs)
        self.journal_sync_errors.set(journal.sync_errors)
