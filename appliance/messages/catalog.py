"""Every internal message, defined once. Rings in ``shm_layout.yaml`` name these.

Conventions (DESIGN.md section 4): prices are integers with 4 implied
decimals; times are int ns since the Unix epoch (CLOCK_REALTIME); a message
carries the timestamp of every hop it passed (``t_*_ns``) so tick-to-trade is
measured per hop. Components extend these records in their own issues; the
layout hash covers their shapes, so a mismatch is refused at attach time.
"""
from __future__ import annotations

from appliance.messages.schema import Record

# A test and benchmark record: sequence, send time, payload words and a checksum
# over them, so a reader can prove nothing was lost, reordered or torn.
PROBE = Record("Probe", type_id=1, version=1, fields=[
    ("sequence", "u64"),
    ("t_send_ns", "u64"),
    ("payload0", "u64"),
    ("payload1", "u64"),
    ("payload2", "u64"),
    ("payload3", "u64"),
    ("checksum", "u64"),
])

# Feed -> strategy: the top BOOK_DEPTH levels of one symbol after an ITCH message changed
# them (or its trading state, or its last trade). Levels are best first, zero padded.
BOOK_DEPTH = 5
BOOK_UPDATE = Record("BookUpdate", type_id=10, version=2, fields=[
    ("symbol_id", "u32"),
    ("flags", "u8"),               # BOOK_FLAG_* below
    ("trading_state", "u8"),       # ITCH trading state byte: T, H, P, Q (0 before the directory)
    ("bid_levels", "u8"),          # how many of the bid levels below are filled
    ("ask_levels", "u8"),
    *[(f"bid_price_{i}", "u32") for i in range(BOOK_DEPTH)],
    *[(f"bid_shares_{i}", "u32") for i in range(BOOK_DEPTH)],
    *[(f"ask_price_{i}", "u32") for i in range(BOOK_DEPTH)],
    *[(f"ask_shares_{i}", "u32") for i in range(BOOK_DEPTH)],
    ("last_trade_price", "u32"),
    ("last_trade_shares", "u32"),
    ("update_sequence", "u64"),    # per symbol, the same number as the market-state table's
    ("mold_sequence", "u64"),      # MoldUDP64 sequence number of the ITCH message
    ("t_exchange_ns", "u64"),      # ITCH timestamp, as epoch ns
    ("t_rx_ns", "u64"),            # kernel receive time of the packet
    ("t_feed_out_ns", "u64"),      # feed handler published
])

# Flags shared by BookUpdate.flags and MarketState.flags.
BOOK_FLAG_STALE = 1            # no feed traffic within the limit, an unrecovered gap, or an inconsistent book
BOOK_FLAG_CROSSED = 2          # best bid > best ask
BOOK_FLAG_LOCKED = 4           # best bid == best ask
BOOK_FLAG_HALTED = 8           # trading state is not T
BOOK_FLAG_INCONSISTENT = 16    # an execution or cancel named an unknown order: the book cannot be trusted

# Feed -> everyone (risk's price checks, shmtop): one slot per symbol in the market-state
# table, written by the feed alone under a seqlock (``seqlock`` odd while a write is in progress).
MARKET_STATE = Record("MarketState", type_id=40, version=1, fields=[
    ("seqlock", "u64"),
    ("symbol", "char8"),
    ("bid_price", "u32"),
    ("bid_shares", "u32"),
    ("ask_price", "u32"),
    ("ask_shares", "u32"),
    ("last_trade_price", "u32"),
    ("last_trade_shares", "u32"),
    ("flags", "u8"),
    ("trading_state", "u8"),
    ("pad0", "u16"),
    ("pad1", "u32"),
    ("update_sequence", "u64"),
    ("t_exchange_ns", "u64"),
    ("t_update_ns", "u64"),        # when the feed wrote this slot (epoch ns)
])

# Strategy -> risk: what the strategy wants to do.
ORDER_INTENT = Record("OrderIntent", type_id=20, version=1, fields=[
    ("client_order_id", "u64"),
    ("orig_client_order_id", "u64"),   # for replace and cancel
    ("strategy_id", "u32"),
    ("symbol_id", "u32"),
    ("action", "u8"),                  # new, replace, cancel, cancel_all
    ("side", "u8"),
    ("pad0", "u16"),
    ("shares", "u32"),
    ("price", "u32"),
    ("time_in_force", "u32"),
    ("t_rx_ns", "u64"),
    ("t_feed_out_ns", "u64"),
    ("t_strategy_out_ns", "u64"),
])

# Risk -> OMS: an intent that passed every check (same fields, one more hop).
APPROVED_ORDER = Record("ApprovedOrder", type_id=21, version=1, fields=[
    *[(f.name, f.type) for f in ORDER_INTENT.fields[3:]],
    ("t_risk_out_ns", "u64"),
])

# Risk -> strategy, OMS -> strategy: an order refused before the wire, with a reason code.
ORDER_REJECT = Record("OrderReject", type_id=22, version=1, fields=[
    ("client_order_id", "u64"),
    ("strategy_id", "u32"),
    ("symbol_id", "u32"),
    ("source", "u32"),          # 1 risk, 2 oms, 3 exchange
    ("reason", "u32"),
    ("t_ns", "u64"),
])

# OMS -> strategy and OMS -> risk: what the venue said about an order.
EXECUTION_REPORT = Record("ExecutionReport", type_id=30, version=1, fields=[
    ("client_order_id", "u64"),
    ("exchange_order_ref", "u64"),
    ("match_number", "u64"),
    ("strategy_id", "u32"),
    ("symbol_id", "u32"),
    ("event", "u8"),            # accepted, replaced, canceled, executed, rejected, broken
    ("side", "u8"),
    ("reason", "u8"),
    ("pad0", "u8"),
    ("shares", "u32"),          # executed or remaining, by event
    ("price", "u32"),
    ("leaves_shares", "u32"),
    ("t_exchange_ns", "u64"),
    ("t_oms_rx_ns", "u64"),
])

MESSAGES: dict[str, Record] = {r.name: r for r in
                               (PROBE, BOOK_UPDATE, ORDER_INTENT, APPROVED_ORDER, ORDER_REJECT, EXECUTION_REPORT,
                                 MARKET_STATE)}

assert len({r.type_id for r in MESSAGES.values()}) == len(MESSAGES), "type ids must be unique"
