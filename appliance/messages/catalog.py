"""Every internal message, defined once. Rings in ``shm_layout.yaml`` name these.

Conventions (DESIGN.md section 4): prices are integers with 4 implied
decimals; times are int ns since the Unix epoch (CLOCK_REALTIME); a message
carries the timestamp of every hop it passed (``t_*_ns``) so tick-to-trade is
measured per hop. Components extend these records in their own issues; the
layout hash covers their shapes, so a mismatch is refused at attach time.
"""
from __future__ import annotations

from appliance.messages.schema import HEADER_COUNT, Record

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

# Feed -> strategy: the top BOOK_DEPTH levels of one symbol after the ITCH messages of one packet
# changed them (or its trading state, or its last trade): one update per symbol per packet, with its
# state after the packet, except that an update carries one trade print (a second print of the symbol
# in the packet starts a new update: feed/outputs.py). Levels are best first, zero padded.
BOOK_DEPTH = 5
BOOK_UPDATE = Record("BookUpdate", type_id=10, version=4, fields=[
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
    ("mold_sequence", "u64"),      # MoldUDP64 sequence number of the packet's last message
    ("t_exchange_ns", "u64"),      # ITCH timestamp, as epoch ns
    ("t_rx_ns", "u64"),            # kernel receive time of the packet
    ("t_feed_out_ns", "u64"),      # feed handler published
    ("message_count", "u32"),      # ITCH messages that changed this state since the symbol's last update
                                   # (0: an update not made by messages: start, stale, rebuilt)
    # The last trade's facts (version 4): ``trade_sequence`` counts the symbol's prints (E, printable C, P,
    # Q) since the feed started, never reset by a new session, so two identical prints in a row are two
    # numbers and a reader sees a print as new when the number moves (a jump: updates dropped on a full ring).
    ("trade_sequence", "u64"),
    ("last_trade_t_exchange_ns", "u64"),   # the last print's ITCH timestamp, as epoch ns
    *[(f"bid_orders_{i}", "u16") for i in range(BOOK_DEPTH)],   # orders resting at each level (saturates)
    *[(f"ask_orders_{i}", "u16") for i in range(BOOK_DEPTH)],
    ("last_trade_aggressor", "u8"),    # codes.Side byte of the side that took liquidity, 0 unknown: E and C
])                                     # against a resting order: its opposite; P: the opposite of its
                                       # buy/sell indicator (the resting non-displayed order's side); Q: 0

# Flags shared by BookUpdate.flags and MarketState.flags.
BOOK_FLAG_STALE = 1            # no feed traffic within the limit, an unrecovered gap, or an inconsistent book
BOOK_FLAG_CROSSED = 2          # best bid > best ask
BOOK_FLAG_LOCKED = 4           # best bid == best ask
BOOK_FLAG_HALTED = 8           # trading state is not T
BOOK_FLAG_INCONSISTENT = 16    # an execution or cancel named an unknown order: the book cannot be trusted
# A book with any of these is not market data to act on: no mark from it, and the supervisor's
# MARKET_DATA gate reason when one lasts (halted and locked books are real data and do not count).
BOOK_FLAGS_BAD = BOOK_FLAG_STALE | BOOK_FLAG_INCONSISTENT | BOOK_FLAG_CROSSED

# Feed -> everyone (risk's price checks, shmtop): one slot per symbol in the market-state
# table, written by the feed alone under a seqlock (``seqlock`` odd while a write is in progress).
MARKET_STATE = Record("MarketState", type_id=40, version=2, fields=[
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
    ("mark_price", "u32"),         # the last good mark (market_state.good_mark), kept while the book is bad
    ("update_sequence", "u64"),
    ("t_exchange_ns", "u64"),
    ("t_update_ns", "u64"),        # when the feed wrote this slot (epoch ns)
])

# Strategy -> risk: what the strategy wants to do.
# The OUCH 4.2 flags ride along as the venue's own bytes (codes.Display, codes.Capacity); a 0 there is
# the default (VISIBLE, AGENCY), so a record written without flags is a plain order.
ORDER_INTENT = Record("OrderIntent", type_id=20, version=2, fields=[
    ("client_order_id", "u64"),
    ("orig_client_order_id", "u64"),   # for replace and cancel
    ("strategy_id", "u32"),
    ("symbol_id", "u32"),
    ("action", "u8"),                  # new, replace, cancel, cancel_all
    ("side", "u8"),                    # codes.Side: SELL_SHORT is a sell for every position count
    ("display", "u8"),                 # codes.Display (0: VISIBLE)
    ("capacity", "u8"),                # codes.Capacity (0: AGENCY)
    ("shares", "u32"),
    ("price", "u32"),                  # codes.MARKET_PRICE: a market order
    ("time_in_force", "u32"),
    ("minimum_quantity", "u32"),       # 0: none; else executes only if that many can trade at entry
    ("intermarket_sweep", "u8"),       # 1: an intermarket sweep order (ISO), 0: not
    ("pad0", "u8"),
    ("pad1", "u16"),
    ("t_rx_ns", "u64"),
    ("t_feed_out_ns", "u64"),
    ("t_strategy_out_ns", "u64"),
])

# Risk -> OMS: an intent that passed every check (same fields, one more hop).
APPROVED_ORDER = Record("ApprovedOrder", type_id=21, version=2, fields=[
    *[(f.name, f.type) for f in ORDER_INTENT.fields[HEADER_COUNT:]],
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

# OMS -> strategy and OMS -> risk: what the venue said about an order (codes.ExecEvent).
EXECUTION_REPORT = Record("ExecutionReport", type_id=30, version=3, fields=[
    ("client_order_id", "u64"),
    ("orig_client_order_id", "u64"),   # REPLACED: the order it replaced
    ("exchange_order_ref", "u64"),
    ("match_number", "u64"),
    ("strategy_id", "u32"),
    ("symbol_id", "u32"),
    ("event", "u8"),
    ("side", "u8"),
    ("reason", "u8"),           # REJECTED / CANCELED: the OUCH reason byte, or an OmsReason
    ("source", "u8"),           # codes.RejectSource of a REJECTED (EXCHANGE or OMS)
    ("shares", "u32"),          # executed or canceled now (EXECUTED, CANCELED), or the order's size
    ("price", "u32"),
    ("leaves_shares", "u32"),   # what stays open after this event
    ("position", "i64"),        # the OMS's position in the symbol after this event
    ("cost_basis", "i64"),      # of that position (price units x shares, signed)
    ("realized_pnl", "i64"),    # the symbol's realized P&L for the day after this event
    ("t_exchange_ns", "u64"),
    ("t_oms_rx_ns", "u64"),
    ("liquidity_flag", "u8"),   # EXECUTED, and BROKEN (of the fill it undoes): OUCH Executed's liquidity flag
])                              # byte ('A' added, 'R' removed, ...: strategy/fills.py), else 0

# OMS -> risk: risk's state rebuilt from the OMS's when risk (re)starts (codes.SnapshotKind): a
# POSITION per symbol, an ORDER per open order, then END. Carried on exec_to_risk, in order with the
# ExecutionReports (see ALSO_CARRIED).
RISK_SNAPSHOT = Record("RiskSnapshot", type_id=31, version=1, fields=[
    ("client_order_id", "u64"),        # ORDER
    ("orig_client_order_id", "u64"),   # ORDER: the order this one replaces (pending replace), or 0
    ("strategy_id", "u32"),            # ORDER
    ("symbol_id", "u32"),              # POSITION, ORDER (0xFFFFFFFF on END)
    ("kind", "u8"),
    ("side", "u8"),                    # ORDER
    ("pad0", "u16"),
    ("leaves_shares", "u32"),          # ORDER: what is open
    ("price", "u32"),                  # ORDER
    ("position", "i64"),               # POSITION: shares, signed
    ("cost_basis", "i64"),             # POSITION
    ("realized_pnl", "i64"),           # POSITION: the day's
    ("t_ns", "u64"),                   # when the OMS wrote it
])

# Supervisor -> risk: an operator's command (codes.ControlCommand).
RISK_COMMAND = Record("RiskCommand", type_id=50, version=1, fields=[
    ("command", "u32"),
    ("pad0", "u32"),
    ("argument", "u64"),
    ("operator", "char16"),     # who asked (recorded; required for RESET)
    ("t_ns", "u64"),
])

# Risk -> OMS: a control event the OMS journals next to the orders (codes.ControlEventKind).
CONTROL_EVENT = Record("ControlEvent", type_id=51, version=1, fields=[
    ("kind", "u32"),
    ("state", "u32"),           # the risk state after the event
    ("value", "i64"),           # kind-specific (e.g. the P&L that tripped the loss limit)
    ("operator", "char16"),
    ("detail", "char16"),       # e.g. the reason name, truncated
    ("t_ns", "u64"),
])

# One slot per symbol in the positions table, written by the OMS alone under a seqlock.
POSITION = Record("Position", type_id=41, version=1, fields=[
    ("seqlock", "u64"),
    ("symbol", "char8"),
    ("position", "i64"),        # shares, signed
    ("cost_basis", "i64"),      # sum of signed fill notional of the open position (price units x shares)
    ("realized_pnl", "i64"),    # price units (4 implied decimals) x shares
    ("orders_sent", "u64"),
    ("fills", "u64"),
    ("filled_shares", "u64"),
    ("rejects", "u64"),
    ("open_orders", "u64"),
    ("t_update_ns", "u64"),
])

# Primary OMS <-> same-box standby (oms/replication_shm.py): one slot of the replication byte stream
# (oms/replication_wire.py's frames, the journal's own bytes inside), ``length`` bytes after this
# header; ``epoch`` names the connection (a slot of another is skipped), ``pid`` the sender.
REPLICATION_CHUNK = Record("ReplicationChunk", type_id=60, version=1, fields=[
    ("epoch", "u64"),
    ("pid", "u32"),
    ("length", "u32"),          # stream bytes after the header; CLOSE_CHUNK: the sender closed the connection
])

MESSAGES: dict[str, Record] = {r.name: r for r in
                               (PROBE, BOOK_UPDATE, ORDER_INTENT, APPROVED_ORDER, ORDER_REJECT, EXECUTION_REPORT,
                                 RISK_SNAPSHOT, MARKET_STATE, RISK_COMMAND, CONTROL_EVENT, POSITION,
                                 REPLICATION_CHUNK)}

# Records a ring carries besides the ``message`` the layout names for it (told apart by type_id):
# the layout sizes the slots for all of them and its hash covers their shapes.
ALSO_CARRIED: dict[str, tuple[Record, ...]] = {EXECUTION_REPORT.name: (RISK_SNAPSHOT,)}


def records_on(message: str) -> tuple[Record, ...]:
    """Every record a ring whose layout ``message`` is this may carry, that message first."""
    return (MESSAGES[message], *ALSO_CARRIED.get(message, ()))


assert len({r.type_id for r in MESSAGES.values()}) == len(MESSAGES), "type ids must be unique"
