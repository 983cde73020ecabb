"""The order management system: OUCH 4.2 over SoupBinTCP, order state, a write-ahead journal, recovery.

The last process on the critical path, and the one that must never lie about an order.
``agent.OmsAgent`` runs it, a thin composition of ``sender`` (approved orders out as OUCH),
``venue_events`` (the venue's answers in), ``reports`` (ExecutionReports and risk snapshots
out), ``controls`` (kills, the gate word, cancels owed), ``restart`` (journal open, the way to
``oms_ready``), ``journal_guard`` (fail closed), ``status`` (positions table and control words)
and ``counters``; the other modules hold one idea each: ``config`` (the process's params), ``journal`` (the write-ahead journal's appender) with ``journal_format`` (its bytes:
headers, scan, reading back), ``journal_records`` (its records, declared as ``journal_schema``
schemas) and ``crc32c``, ``orders`` (the order state machine and the registry of orders by
token and client id), ``positions`` (positions and tallies per symbol), ``tokens`` (day-unique OUCH
tokens), ``session`` (the SoupBinTCP client socket), ``gate`` (the per-order check),
``recovery`` (rebuild from the journal), ``latency`` (per-hop histograms in counters) and
``audit`` / ``audit_cli`` (the audit-trail export).

It imports nothing from ``feed``, ``strategy`` or ``risk``, and never ``appliance.exchange``.
"""
