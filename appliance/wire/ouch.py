"""OUCH 4.2 order entry: inbound (client to venue) and outbound (venue to client) messages.

OUCH messages travel inside SoupBinTCP packets: inbound in Unsequenced Data (U),
outbound in Sequenced Data (S). The two directions are two tables, because
inbound Replace Order and outbound Order Replaced share the type ``U``: the
direction, never the byte, decides which layout applies.

Tokens are Alpha 14 and must be unique for the whole trading day. Prices are
u32 with 4 implied decimals; ``MARKET_PRICE`` (0x7FFFFFFF) asks for a market order.
Every outbound message carries a u64 timestamp (ns since midnight) at offset 1.
"""
from __future__ import annotations

from typing import Any

from appliance.wire.schema import Field, MessageLayout, Protocol, alpha, char, u32, u64
from appliance.wire.soupbintcp import UNSEQUENCED_DATA, DataFrame

MARKET_PRICE = 0x7FFFFFFF
TIME_IN_FORCE_IMMEDIATE_OR_CANCEL = 0
TIME_IN_FORCE_MARKET_HOURS = 99998
TIME_IN_FORCE_SYSTEM_HOURS = 99999
TOKEN_SIZE = 14

# Enter Order's flag bytes this codec's users send and the simulated venue honours (OUCH 4.2 defines
# more display values, e.g. post-only and mid-point peg, which need venue features not modelled here).
DISPLAY_VISIBLE, DISPLAY_ATTRIBUTABLE, DISPLAY_HIDDEN = b"Y", b"A", b"N"
DISPLAYS = frozenset((DISPLAY_VISIBLE, DISPLAY_ATTRIBUTABLE, DISPLAY_HIDDEN))
CAPACITIES = frozenset((b"A", b"P", b"R", b"O"))       # agency, principal, riskless principal, other
ISO_YES, ISO_NO = b"Y", b"N"


def minimum_quantity_problem(shares: int, minimum_quantity: int, time_in_force: int, price: int) -> str | None:
    """Why a minimum quantity is not valid for this order, or None: the one rule the strategy, risk,
    the OMS and the simulated venue (Rejected 'N') all apply. A minimum quantity is a condition on
    the executions at entry, so it needs an order that does not rest: immediate-or-cancel (or a
    market order, which never rests); it must not exceed the shares."""
    if not minimum_quantity:
        return None
    if minimum_quantity > shares:
        return f"minimum quantity {minimum_quantity} is more than the order's {shares} shares"
    if time_in_force != TIME_IN_FORCE_IMMEDIATE_OR_CANCEL and price != MARKET_PRICE:
        return ("a minimum quantity applies at entry only: the order must be immediate-or-cancel "
                "(or a market order)")
    return None


def token(name: str) -> Field:
    return alpha(name, TOKEN_SIZE)


def _inbound(code: str, name: str, size: int, *fields) -> MessageLayout:
    return MessageLayout(code, name, (char("type"),) + fields, expected_size=size)


# What every outbound message starts with: a reader that needs only the venue's timestamp unpacks this.
OUTBOUND_HEADER = MessageLayout(None, "OUCH 4.2 outbound header", (char("type"), u64("timestamp")), type_field=None)


def _outbound(code: str, name: str, size: int, *fields) -> MessageLayout:
    return MessageLayout(code, name, OUTBOUND_HEADER.fields + fields, expected_size=size)


ENTER_ORDER = _inbound(
    "O", "Enter Order", 49,
    token("order_token"), char("buy_sell_indicator"), u32("shares"), alpha("stock", 8), u32("price"),
    u32("time_in_force"), alpha("firm", 4), char("display"), char("capacity"),
    char("intermarket_sweep_eligibility"), u32("minimum_quantity"), char("cross_type"), char("customer_type"))
REPLACE_ORDER = _inbound(
    "U", "Replace Order", 47,
    token("existing_order_token"), token("replacement_order_token"), u32("shares"), u32("price"),
    u32("time_in_force"), char("display"), char("intermarket_sweep_eligibility"), u32("minimum_quantity"))
CANCEL_ORDER = _inbound("X", "Cancel Order", 19, token("order_token"), u32("shares"))
MODIFY_ORDER = _inbound("M", "Modify Order", 20, token("order_token"), char("buy_sell_indicator"), u32("shares"))

SYSTEM_EVENT = _outbound("S", "System Event", 10, char("event_code"))
ACCEPTED = _outbound(
    "A", "Accepted", 66,
    token("order_token"), char("buy_sell_indicator"), u32("shares"), alpha("stock", 8), u32("price"),
    u32("time_in_force"), alpha("firm", 4), char("display"), u64("order_reference_number"), char("capacity"),
    char("intermarket_sweep_eligibility"), u32("minimum_quantity"), char("cross_type"), char("order_state"),
    char("bbo_weight_indicator"))
REPLACED = _outbound(
    "U", "Replaced", 80,
    token("replacement_order_token"), char("buy_sell_indicator"), u32("shares"), alpha("stock", 8), u32("price"),
    u32("time_in_force"), alpha("firm", 4), char("display"), u64("order_reference_number"), char("capacity"),
    char("intermarket_sweep_eligibility"), u32("minimum_quantity"), char("cross_type"), char("order_state"),
    token("previous_order_token"), char("bbo_weight_indicator"))
CANCELED = _outbound("C", "Canceled", 28, token("order_token"), u32("decrement_shares"), char("reason"))
EXECUTED = _outbound("E", "Executed", 40, token("order_token"), u32("executed_shares"), u32("execution_price"),
                     char("liquidity_flag"), u64("match_number"))
REJECTED = _outbound("J", "Rejected", 24, token("order_token"), char("reason"))
BROKEN_TRADE = _outbound("B", "Broken Trade", 32, token("order_token"), u64("match_number"), char("reason"))
CANCEL_PENDING = _outbound("P", "Cancel Pending", 23, token("order_token"))
CANCEL_REJECT = _outbound("I", "Cancel Reject", 23, token("order_token"))

INBOUND = Protocol("OUCH 4.2 inbound", (ENTER_ORDER, REPLACE_ORDER, CANCEL_ORDER, MODIFY_ORDER))
# Each inbound message with its Unsequenced Data packet as one layout: ``ENTER_ORDER_FRAME.pack(token, ...)``
# returns the bytes a client writes to the socket (the OMS's send path).
ENTER_ORDER_FRAME = DataFrame(UNSEQUENCED_DATA, ENTER_ORDER)
REPLACE_ORDER_FRAME = DataFrame(UNSEQUENCED_DATA, REPLACE_ORDER)
CANCEL_ORDER_FRAME = DataFrame(UNSEQUENCED_DATA, CANCEL_ORDER)
MODIFY_ORDER_FRAME = DataFrame(UNSEQUENCED_DATA, MODIFY_ORDER)
OUTBOUND = Protocol("OUCH 4.2 outbound", (SYSTEM_EVENT, ACCEPTED, REPLACED, CANCELED, EXECUTED, REJECTED,
                                          BROKEN_TRADE, CANCEL_PENDING, CANCEL_REJECT))


def decode_inbound(buffer, offset: int = 0, length: int | None = None) -> dict[str, Any]:
    """Decode a client-to-venue message (the payload of a SoupBinTCP U packet)."""
    return INBOUND.decode(buffer, offset, length)


def decode_outbound(buffer, offset: int = 0, length: int | None = None) -> dict[str, Any]:
    """Decode a venue-to-client message (the payload of a SoupBinTCP S packet)."""
    return OUTBOUND.decode(buffer, offset, length)


def encode_inbound(fields: dict[str, Any]) -> bytes:
    return INBOUND.encode(fields)


def encode_outbound(fields: dict[str, Any]) -> bytes:
    return OUTBOUND.encode(fields)
