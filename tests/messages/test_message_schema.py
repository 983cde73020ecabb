"""What a Record generates for readers: a view with named fields and tuple indices, from the one
list of fields (so no reader restates a record positionally)."""
from __future__ import annotations

import pytest

from appliance.messages.catalog import (ALSO_CARRIED, APPROVED_ORDER, BOOK_UPDATE, EXECUTION_REPORT, MESSAGES,
                                        ORDER_INTENT, RISK_SNAPSHOT, records_on)
from appliance.messages.schema import HEADER_COUNT


def test_read_gives_every_field_by_name_and_equals_the_unpacked_tuple():
    buffer = bytearray(256)
    body = (11, 12, 3, 4, 2, ord("B"), ord("N"), ord("P"), 100, 1_900_000, 0, 50, 1, 0, 0, 5, 6, 7, 8)
    APPROVED_ORDER.pack_into(buffer, 64, *body)
    order = APPROVED_ORDER.read(buffer, 64)
    assert order == APPROVED_ORDER.unpack_from(buffer, 64)
    assert (order.type_id, order.schema_version, order.size) == (APPROVED_ORDER.type_id, APPROVED_ORDER.version,
                                                                   APPROVED_ORDER.size)
    assert (order.client_order_id, order.orig_client_order_id, order.symbol_id, order.price, order.t_risk_out_ns) \
        == (11, 12, 4, 1_900_000, 8)
    assert (order.display, order.capacity, order.minimum_quantity, order.intermarket_sweep) == (ord("N"), ord("P"), 50, 1)
    assert order[HEADER_COUNT:] == body                      # the body is what pack_into takes back
    assert type(order).__name__ == "ApprovedOrder" and order._fields == APPROVED_ORDER.field_names


def test_index_of_and_at_name_each_field_s_place_in_the_tuple():
    for record in MESSAGES.values():
        assert [record.index_of[name] for name in record.field_names] == list(range(len(record.fields)))
        assert [getattr(record.at, name) for name in record.field_names] == list(range(len(record.fields)))
    with pytest.raises(AttributeError, match="read-only"):
        APPROVED_ORDER.at.price = 0
    with pytest.raises(AttributeError):
        APPROVED_ORDER.at.no_such_field
    levels = BOOK_UPDATE.index_of
    assert levels["bid_price_4"] - levels["bid_price_0"] == 4      # the level arrays the strategy's Book walks


def test_an_approved_order_is_the_intent_one_hop_later():
    """Risk passes an intent's body on as the approved order's, with its own time appended."""
    assert APPROVED_ORDER.field_names[HEADER_COUNT:] == (*ORDER_INTENT.field_names[HEADER_COUNT:], "t_risk_out_ns")


def test_exec_to_risk_rings_carry_the_risk_snapshot_beside_the_reports():
    assert records_on(EXECUTION_REPORT.name) == (EXECUTION_REPORT, RISK_SNAPSHOT)
    assert records_on(ORDER_INTENT.name) == (ORDER_INTENT,)
    for message, extra in ALSO_CARRIED.items():
        assert len({r.type_id for r in records_on(message)}) == 1 + len(extra)     # told apart by type id


def test_fields_struct_unpacks_only_the_named_fields_at_the_record_s_types():
    from appliance.messages.catalog import MARKET_STATE
    buffer = bytearray(MARKET_STATE.size)
    MARKET_STATE.pack_into(buffer, 0, 7, b"AAPL    ", 1_899_900, 300, 1_900_100, 200, 1_900_000, 50, 2, ord("T"), 0,
                           1_900_000, 99, 1, 2)
    names = ("bid_price", "ask_price", "last_trade_price", "flags", "trading_state", "mark_price")
    seqlock = MARKET_STATE.offset_of["seqlock"]
    assert MARKET_STATE.fields_struct(names, start="seqlock").unpack_from(buffer, seqlock) == \
        (1_899_900, 1_900_100, 1_900_000, 2, ord("T"), 1_900_000)
    assert MARKET_STATE.fields_struct(("type_id", "symbol")).unpack_from(buffer) == (MARKET_STATE.type_id,
                                                                                    b"AAPL    ")
    with pytest.raises(ValueError, match="out of record order"):
        MARKET_STATE.fields_struct(("ask_price", "bid_price"))
    with pytest.raises(ValueError, match="before 'seqlock'"):
        MARKET_STATE.fields_struct(("type_id",), start="seqlock")


def test_body_names_the_fields_pack_into_takes_and_refuses_the_header_and_unknown_names():
    from appliance.messages.catalog import BOOK_UPDATE
    from appliance.messages.schema import HEADER_COUNT
    body = BOOK_UPDATE.body(symbol_id=7, message_count=3, t_feed_out_ns=99)
    buffer = bytearray(BOOK_UPDATE.size)
    BOOK_UPDATE.pack_into(buffer, 0, *body)
    read = BOOK_UPDATE.read(buffer, 0)
    assert (read.symbol_id, read.message_count, read.t_feed_out_ns, read.bid_price_0) == (7, 3, 99, 0)
    assert len(body) == len(BOOK_UPDATE.fields) - HEADER_COUNT
    for bad in ("size", "no_such_field"):
        with pytest.raises(KeyError):
            BOOK_UPDATE.body(**{bad: 1})
