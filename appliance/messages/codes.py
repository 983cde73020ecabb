"""The numeric codes inside internal messages and control words, defined once.

Every process that writes or reads a field with a code imports it from here; shmtop, the
exporter and the audit trail turn the numbers back into these names.
"""
from __future__ import annotations

import enum

from appliance.wire import ouch

# Prices are integers with 4 implied decimals, OUCH's and ITCH's as well as every internal message's;
# the OMS sends an intent's price and time in force to the venue as they are.
PRICE_SCALE = 10_000
MARKET_PRICE = ouch.MARKET_PRICE                # the price of a market order


class Side(enum.IntEnum):
    """OrderIntent/ApprovedOrder/ExecutionReport.side: the OUCH side byte itself."""
    BUY = ord("B")
    SELL = ord("S")
    SELL_SHORT = ord("T")


class Action(enum.IntEnum):
    """OrderIntent/ApprovedOrder.action."""
    NEW = 1
    REPLACE = 2             # orig_client_order_id -> client_order_id (a new id, new priority)
    CANCEL = 3              # orig_client_order_id; shares = the size to leave (0 cancels all)
    CANCEL_ALL = 4          # every open order of the strategy (symbol_id 0xFFFFFFFF: all symbols)
    SNAPSHOT = 5            # the strategy (re)started: risk passes it on, the OMS answers on exec_to_strategy with
                            # RiskSnapshot records for that strategy_id (END's client_order_id = this request's)
    REDUCE = 6              # the strategy asks risk to put it in REDUCING (risk's own: never reaches the OMS)


ALL_SYMBOLS = 0xFFFFFFFF

# Client order ids from this base up are the OMS's for orphans: orders the venue reports that the
# OMS's journal never sent (a lost journal tail). Each gets its own id so risk can count it as an
# open order; strategies issue ids from the wall clock in microseconds (~1.8e15), far below.
ORPHAN_CLIENT_ID_BASE = 1 << 63

# OUCH time in force, u32 seconds.
TIF_IOC = ouch.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL
TIF_DAY = ouch.TIME_IN_FORCE_MARKET_HOURS
TIF_SYSTEM_HOURS = ouch.TIME_IN_FORCE_SYSTEM_HOURS


class Display(enum.IntEnum):
    """OrderIntent/ApprovedOrder.display: the OUCH 4.2 display byte itself (0 in a record: VISIBLE).
    The values a strategy may send; OUCH's others (mid-point peg, imbalance-only, retail) need
    venue features the appliance does not model."""
    VISIBLE = ord("Y")          # displayed, anonymous ("anonymous-price to comply")
    ATTRIBUTABLE = ord("A")     # displayed with the firm's MPID (ITCH 'F')
    HIDDEN = ord("N")           # non-displayed: rests without an ITCH add; its executions print as 'P'


class Capacity(enum.IntEnum):
    """OrderIntent/ApprovedOrder.capacity: the OUCH 4.2 capacity byte itself (0 in a record: AGENCY)."""
    AGENCY = ord("A")
    PRINCIPAL = ord("P")
    RISKLESS = ord("R")         # riskless principal
    OTHER = ord("O")


# What a 0 in OrderIntent.display / .capacity means: a record written without flags is a plain order.
DEFAULT_DISPLAY = Display.VISIBLE
DEFAULT_CAPACITY = Capacity.AGENCY


class ExecEvent(enum.IntEnum):
    """ExecutionReport.event: what the venue (or the OMS, for local events) said about an order."""
    ACCEPTED = 1
    REPLACED = 2            # client_order_id is the replacement, orig_client_order_id the old one
    CANCELED = 3            # shares = canceled now; leaves_shares what stays open
    EXECUTED = 4            # shares, price = this fill; leaves_shares what stays open
    REJECTED = 5            # by the venue; reason = the OUCH reason byte
    BROKEN = 6              # a fill broken by the venue (match_number)
    CANCEL_REJECTED = 7     # the venue refused a cancel (order already gone)
    PENDING_TIMEOUT = 8     # no answer within the OMS's in-flight limit: queried by cancel
    # 9..11 were risk's state rebuild, now RiskSnapshot records (SnapshotKind): not reused
    REJECTED_LOCALLY = 12   # refused by the OMS before the wire (source OMS, reason an OmsReason)


# The events about an order at the venue (ACCEPTED..PENDING_TIMEOUT): their reports carry the OMS's
# position after the event. REJECTED_LOCALLY is not one: an OMS that has not recovered yet (one of
# its reasons) cannot vouch for a position.
VENUE_EVENTS = range(ExecEvent.ACCEPTED, ExecEvent.PENDING_TIMEOUT + 1)


class SnapshotKind(enum.IntEnum):
    """RiskSnapshot.kind (OMS -> risk on exec_to_risk, answering ControlEventKind.SNAPSHOT_REQUEST; OMS ->
    strategy on exec_to_strategy, answering Action.SNAPSHOT: every record carries the strategy_id)."""
    POSITION = 1            # one symbol's position, cost_basis, realized_pnl
    ORDER = 2               # one open order: leaves_shares, price, side (orig: the order it replaces)
    END = 3                 # state rebuild complete


class RejectSource(enum.IntEnum):
    """OrderReject.source."""
    RISK = 1
    OMS = 2
    EXCHANGE = 3


# The reason byte of an EXCHANGE reject the OMS reports itself: the venue answered a replace (or a cancel)
# with a Cancel Reject (OUCH 'I'), so the order or its replacement is no longer there. Not one of OUCH's
# Rejected reasons; the OMS sends it, the strategy API names it (NO_SUCH_ORDER).
REJECT_REASON_NO_SUCH_ORDER = ord("I")


class RiskReason(enum.IntEnum):
    """OrderReject.reason when source is RISK: every denial has a name."""
    MAX_SHARES = 1
    MAX_NOTIONAL = 2
    MIN_SIZE = 3
    ROUND_LOT = 4
    TICK = 5
    PRICE_COLLAR = 6
    NO_REFERENCE_PRICE = 7
    BOOK_STALE = 8
    BOOK_CROSSED = 9
    SYMBOL_HALTED = 10
    MAX_LONG = 11
    MAX_SHORT = 12
    GROSS_EXPOSURE = 13
    NET_EXPOSURE = 14
    SECTOR_CONCENTRATION = 15
    LEVERAGE = 16
    DAILY_LOSS = 17
    DRAWDOWN = 18
    MESSAGE_RATE = 19
    MAX_OPEN_ORDERS = 20
    DUPLICATE_CLIENT_ID = 21
    REPEATED_ORDER = 22
    TRADING_HALTED = 23      # risk state HALTED (kill switch latched): only cancels pass
    TRADING_REDUCING = 24    # risk state REDUCING: the order would grow the position
    MARKET_CLOSED = 25       # outside the configured market hours
    UNKNOWN_SYMBOL = 26
    UNKNOWN_ORDER = 27       # replace of a client order id risk does not know as open
    NOT_READY = 28           # risk has not rebuilt its state yet
    BAD_ORDER = 29           # malformed intent: zero shares, bad side, bad action
    SELF_MATCH = 30          # would trade against one of our own open orders (a wash trade)
    SYMBOL_KILLED = 31       # the symbol's kill switch is latched (appliance kill --symbol): only cancels pass
    SHORT_SALE = 32          # sell short in a symbol whose limits do not allow it (allow_short_sell: no locate)
    MARKET_ORDER = 33        # a market order while the limits do not allow them (allow_market_orders)
    HIDDEN_ORDER = 34        # a non-displayed order while the limits do not allow them (allow_hidden)
    ISO_ORDER = 35           # an intermarket sweep order while the limits do not allow them (allow_iso)
    MIN_QUANTITY = 36        # minimum quantity above the shares, or on a displayed order that may rest
    PRICE_BAND = 37          # a limit price outside the instrument's band (config/instruments.yaml min/max_price)


class OmsReason(enum.IntEnum):
    """OrderReject.reason when source is OMS."""
    GATE_CLOSED = 1
    RISK_STALE = 2           # risk heartbeat older than the limit
    NOT_RECOVERED = 3        # journal replay / exchange replay not finished
    JOURNAL_FAILED = 4
    SESSION_DOWN = 5         # not logged in to the venue
    UNKNOWN_ORDER = 6        # replace/cancel of an order the OMS does not know
    NOT_FROM_RISK = 7        # arrived on a ring other than approved_orders (never happens by layout)
    DUPLICATE_CLIENT_ID = 8
    BAD_ORDER = 9            # malformed approved order: symbol, side, shares, price, TIF or client id out of range
    UNKNOWN_ACTION = 10      # an approved record with an action the OMS does not know
    NOT_SENT = 11            # journaled, but the session could not take the bytes (connection lost): never left
    SEQUENCE_GAP = 12        # the venue's login skipped messages the OMS never saw: closed until a person looks
    KILLED = 13              # approved before a kill the OMS read first: never sent (the kill cancels, not adds)
    NO_STANDBY = 14          # sync replication: no standby acknowledgement within the limit (without_standby: close_gate)


class RiskState(enum.IntEnum):
    """Control word risk_state (written by risk)."""
    STARTING = 0
    ACTIVE = 1
    REDUCING = 2            # only orders that shrink the position pass
    HALTED = 3              # only cancels pass (kill switch latched)


class GateReason(enum.IntFlag):
    """Control word gate_reasons (written by the supervisor): why new orders may not leave."""
    STARTING = 1
    PROCESS_DOWN = 2
    RISK_UNHEALTHY = 4
    CLOCK_UNHEALTHY = 8
    KILL_SWITCH = 16
    OMS_NOT_READY = 32
    FEED_NOT_READY = 64
    OPERATOR = 128
    STOPPING = 256
    MARKET_DATA = 512       # a subscribed book stale, inconsistent or crossed past market_data_stale_ms (cancels all)
    TAKEOVER = 1024         # the OMS died and its hot standby is taking over (supervisor/standby.py) until it is ready
    STANDBY = 2048          # this box's OMS is the hot standby of a primary on another box, which trades
                            # (replication.takeover: remote, supervisor/remote_standby.py) until it takes over


class FeedStaleReason(enum.IntEnum):
    """Control word feed_stale_reason (written by the feed): why every book is stale (0: the feed
    is live). Add a reason here with its words in ``_FEED_STALE_WORDS``; readers show it by name."""
    LIVE = 0
    SILENT = 1              # nothing proved the session alive within stale_after_ms (or nothing yet)
    GAP_LOST = 2            # a gap the re-requests could not fill: books rebuilt from sequence 1
    SESSION_ENDED = 3       # end of session (latched until a new session is adopted)
    REBUILDING = 4          # joined late or session restarted: replaying the day up to where it stands
    NO_DIRECTORY = 5        # one book's own staleness: no stock directory for it yet (never in the word)
    SNAPSHOT = 6            # every book being rebuilt from the venue's GLIMPSE snapshot

    @staticmethod
    def describe(value: int) -> str:
        """The reason in words for status lines and metrics labels ("feed(7)" for a code not known here)."""
        return _FEED_STALE_WORDS.get(value, f"feed({value})")


_FEED_STALE_WORDS = {FeedStaleReason.LIVE: "live", FeedStaleReason.SILENT: "feed silent",
                     FeedStaleReason.GAP_LOST: "gap lost", FeedStaleReason.SESSION_ENDED: "session ended",
                     FeedStaleReason.REBUILDING: "rebuilding", FeedStaleReason.NO_DIRECTORY: "no directory yet",
                     FeedStaleReason.SNAPSHOT: "snapshot rebuild"}


class ClockState(enum.IntEnum):
    """Control word clock_state (written by the supervisor's clock guard)."""
    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2
    NOT_REQUIRED = 3        # clock: {require_sync: false} (the simulated setup)


class ControlCommand(enum.IntEnum):
    """RiskCommand.command (supervisor -> risk)."""
    KILL = 1                # latch HALTED and cancel everything
    RESET = 2               # unlatch: back to ACTIVE (operator recorded)
    RELOAD_LIMITS = 3       # re-read the limits file
    SET_REDUCING = 4
    SET_ACTIVE = 5
    KILL_SYMBOL = 6         # argument = symbol id: latch that symbol's kill switch and cancel its orders
    RESET_SYMBOL = 7        # argument = symbol id: unlatch it (operator recorded)
    FIRM_KILL = 8           # the firm's risk hub: latch HALTED with reason FIRM and cancel everything
    FIRM_RESET = 9          # unlatch a kill the firm latched (operator recorded); any other kill stays


class ControlEventKind(enum.IntEnum):
    """ControlEvent.kind (risk -> oms): journaled next to the orders."""
    KILL = 1
    RESET = 2
    LIMITS_CHANGED = 3
    STATE_CHANGED = 4
    CLOCK = 5
    SNAPSHOT_REQUEST = 6    # risk (re)started: the OMS answers on exec_to_risk with RiskSnapshot records
    KILL_SYMBOL = 7         # value = symbol id: the OMS cancels every open order in that symbol
    RESET_SYMBOL = 8        # value = symbol id


def name_of(enum_type: type[enum.IntEnum], value: int) -> str:
    try:
        return enum_type(value).name
    except ValueError:
        return f"{enum_type.__name__}({value})"
