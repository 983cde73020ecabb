"""The venue without sockets: exact ITCH and OUCH bytes for each request, the day's structure,
malformed client input, the ledger behind the report."""
from __future__ import annotations

import pytest

from appliance.wire import itch, moldudp64, ouch
from appliance.exchange.events import AddOrder, OrderCancel, OrderDelete, OrderExecuted, OrderReplace, Trade, TradingAction
from appliance.exchange.itch_encoder import ItchEncoder
from appliance.wire.venue_time import ns_since_midnight
from appliance.exchange.order_entry import parse_inbound
from appliance.exchange.venue import Venue
from appliance.wire.errors import WireFormatError

T0 = 1_764_000_000_123_456_789          # an epoch time; ITCH/OUCH carry it modulo one day
WIRE_T0 = ns_since_midnight(T0)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def make_venue(**kw):
    packets = []
    venue = Venue([("AAPL", 100), ("MSFT", 100)], {"ALGO1": "ALGO", "ALGO2": "ALG2"}, session="TEST000001",
                  send_packet=packets.append, clock=Clock(), **kw)
    return venue, packets


def enter(token, side, shares, stock, price, tif=99998, display="Y", capacity="P"):
    return ouch.encode_inbound({"type": "O", "order_token": token, "buy_sell_indicator": side, "shares": shares,
                                "stock": stock, "price": price, "time_in_force": tif, "firm": "ALGO",
                                "display": display, "capacity": capacity, "intermarket_sweep_eligibility": "N",
                                "minimum_quantity": 0, "cross_type": "N", "customer_type": "R"})


def cancel(token, shares=0):
    return ouch.encode_inbound({"type": "X", "order_token": token, "shares": shares})


def replace(existing, replacement, shares, price, tif=99998, display="Y"):
    return ouch.encode_inbound({"type": "U", "existing_order_token": existing, "replacement_order_token": replacement,
                                "shares": shares, "price": price, "time_in_force": tif, "display": display,
                                "intermarket_sweep_eligibility": "N", "minimum_quantity": 0})


def itch_since(venue, first):
    return [itch.decode(m) for m in venue.store.get(first, 10**9)]


def ouch_since(venue, firm, first):
    return [ouch.decode_outbound(m) for m in venue.stores[firm].messages[first - 1:]]


def strip(d, *names):
    return {k: v for k, v in d.items() if k not in ("timestamp", "stock_locate", "tracking_number") + names}


# ---------------------------------------------------------------- the ITCH encoder, message by message

@pytest.mark.parametrize("event, expected", [
    (AddOrder(7, "B", 300, "MSFT", 4_200_000, None),
     {"type": "A", "order_reference_number": 7, "buy_sell_indicator": "B", "shares": 300, "stock": "MSFT",
      "price": 4_200_000}),
    (AddOrder(8, "S", 100, "MSFT", 4_210_000, "ALGO1"),
     {"type": "F", "order_reference_number": 8, "buy_sell_indicator": "S", "shares": 100, "stock": "MSFT",
      "price": 4_210_000, "attribution": "ALGO"}),
    (OrderExecuted(7, 100, 55), {"type": "E", "order_reference_number": 7, "executed_shares": 100, "match_number": 55}),
    (OrderCancel(7, 50), {"type": "X", "order_reference_number": 7, "canceled_shares": 50}),
    (OrderDelete(7,), {"type": "D", "order_reference_number": 7}),
    (OrderReplace(7, 9, 400, 4_190_000), {"type": "U", "original_order_reference_number": 7,
                                          "new_order_reference_number": 9, "shares": 400, "price": 4_190_000}),
    (Trade("S", 200, "MSFT", 4_200_100, 56), {"type": "P", "order_reference_number": 0, "buy_sell_indicator": "S",
                                              "shares": 200, "stock": "MSFT", "price": 4_200_100, "match_number": 56}),
    (TradingAction("MSFT", "H"), {"type": "H", "stock": "MSFT", "trading_state": "H", "reserved": " ", "reason": ""}),
])
def test_each_market_data_event_encodes_to_its_itch_message(event, expected):
    encoder = ItchEncoder(["AAPL", "MSFT"], mpids={"ALGO1": "ALGO"})
    message = encoder.encode(event, encoder.locate["MSFT"], 34_200_000_000_123)
    decoded = itch.decode(message)
    assert len(message) == itch.SIZE_BY_BYTE[message[0]]
    assert decoded["stock_locate"] == 2 and decoded["tracking_number"] == 0
    assert decoded["timestamp"] == 34_200_000_000_123
    assert strip(decoded) == expected


def test_stock_directory_and_system_events():
    encoder = ItchEncoder(["AAPL", "MSFT"], round_lots={"MSFT": 10})
    r = itch.decode(encoder.stock_directory("MSFT", 5))
    assert (r["type"], r["stock_locate"], r["stock"], r["round_lot_size"], r["timestamp"]) == ("R", 2, "MSFT", 10, 5)
    s = itch.decode(encoder.system_event("Q", 6))
    assert (s["type"], s["stock_locate"], s["event_code"]) == ("S", 0, "Q")


# ---------------------------------------------------------------- the day

def test_open_announces_the_day_and_close_ends_it_on_both_protocols():
    venue, packets = make_venue()
    venue.open()
    opening = itch_since(venue, 1)
    assert [(m["type"], m.get("event_code") or m.get("stock")) for m in opening] == [
        ("S", "O"), ("S", "S"), ("R", "AAPL"), ("R", "MSFT"), ("S", "Q")]
    assert all(m["timestamp"] == WIRE_T0 for m in opening)
    assert [m["event_code"] for m in ouch_since(venue, "ALGO1", 1)] == ["S"]
    assert venue.client_message("ALGO1", enter("B1", "B", 100, "AAPL", 1_000_000)) is None
    venue.clock.now += 1000
    venue.close()
    closing = itch_since(venue, 7)
    assert [(m["type"], m.get("event_code")) for m in closing] == [("S", "M"), ("D", None), ("S", "E"), ("S", "C")]
    assert ouch_since(venue, "ALGO1", 3) == [
        {"type": "C", "timestamp": WIRE_T0 + 1000, "order_token": "B1", "decrement_shares": 100, "reason": "T"},
        {"type": "S", "timestamp": WIRE_T0 + 1000, "event_code": "E"}]
    assert venue.stores["ALGO1"].ended
    assert moldudp64.decode_packet(packets[-1]).is_end_of_session
    # every message went out in order, in packets with consecutive sequence numbers
    sequence = 1
    for packet in packets[:-1]:
        header = moldudp64.decode_packet(packet)
        assert header.sequence_number == sequence
        sequence += header.message_count
    assert sequence == len(venue.store) + 1
    # after the close the sessions have ended: a late message is refused, nothing is sent
    assert "ended" in venue.client_message("ALGO1", enter("B2", "B", 100, "AAPL", 1_000_000))
    assert not venue.halt("AAPL") and venue.cancel_all() == 0
    assert len(venue.stores["ALGO1"].messages) == 4 and len(venue.store) == sequence - 1


def test_requests_give_exact_ouch_and_itch():
    venue, _ = make_venue()
    venue.open()
    first_itch = len(venue.store) + 1
    venue.clock.now += 10
    venue.client_message("ALGO1", enter("S1", "S", 300, "MSFT", 4_200_000, display="A", capacity="P"))
    venue.client_message("ALGO2", enter("B1", "B", 100, "MSFT", 4_200_000, tif=0))
    venue.client_message("ALGO1", cancel("S1", 150))
    venue.client_message("ALGO1", replace("S1", "S2", 500, 4_210_000))
    venue.client_message("ALGO1", cancel("S2"))
    ts = WIRE_T0 + 10
    assert [strip(m) for m in itch_since(venue, first_itch)] == [
        {"type": "F", "order_reference_number": 1, "buy_sell_indicator": "S", "shares": 300, "stock": "MSFT",
         "price": 4_200_000, "attribution": "ALGO"},
        {"type": "E", "order_reference_number": 1, "executed_shares": 100, "match_number": 1},
        {"type": "X", "order_reference_number": 1, "canceled_shares": 50},
        {"type": "U", "original_order_reference_number": 1, "new_order_reference_number": 3, "shares": 500,
         "price": 4_210_000},
        {"type": "D", "order_reference_number": 3},
    ]
    assert all(m["stock_locate"] == 2 for m in itch_since(venue, first_itch))
    algo1 = ouch_since(venue, "ALGO1", 2)
    assert [m["type"] for m in algo1] == ["A", "E", "C", "U", "C"]
    accepted = algo1[0]
    assert accepted == {"type": "A", "timestamp": ts, "order_token": "S1", "buy_sell_indicator": "S", "shares": 300,
                        "stock": "MSFT", "price": 4_200_000, "time_in_force": 99998, "firm": "ALGO", "display": "A",
                        "order_reference_number": 1, "capacity": "P", "intermarket_sweep_eligibility": "N",
                        "minimum_quantity": 0, "cross_type": "N", "order_state": "L", "bbo_weight_indicator": " "}
    assert strip(algo1[1]) == {"type": "E", "order_token": "S1", "executed_shares": 100, "execution_price": 4_200_000,
                               "liquidity_flag": "A", "match_number": 1}
    assert strip(algo1[2]) == {"type": "C", "order_token": "S1", "decrement_shares": 50, "reason": "U"}
    assert (algo1[3]["replacement_order_token"], algo1[3]["previous_order_token"], algo1[3]["shares"],
            algo1[3]["capacity"], algo1[3]["order_reference_number"]) == ("S2", "S1", 500, "P", 3)
    assert strip(algo1[4]) == {"type": "C", "order_token": "S2", "decrement_shares": 500, "reason": "U"}
    algo2 = ouch_since(venue, "ALGO2", 2)
    assert [(m["type"], m.get("order_state"), m.get("liquidity_flag")) for m in algo2] == [
        ("A", "D", None), ("E", None, "R")]
    # the ledger agrees with the engine
    report = venue.report()
    assert report["firms"]["ALGO1"]["ledger"]["positions"] == {"MSFT": -100}
    assert report["firms"]["ALGO2"]["ledger"]["positions"] == {"MSFT": 100}
    assert report["firms"]["ALGO1"]["engine"]["positions"] == {"MSFT": -100}
    orders = {o["token"]: o for o in report["firms"]["ALGO1"]["ledger"]["order_list"]}
    assert (orders["S1"]["executed"], orders["S1"]["canceled"], orders["S1"]["replaced"], orders["S1"]["leaves"]) == \
        (100, 50, 150, 0)
    assert orders["S2"]["canceled"] == 500 and orders["S2"]["leaves"] == 0


def test_rejects_halts_and_unknown_tokens_answer_in_ouch():
    venue, _ = make_venue()
    venue.open()
    venue.client_message("ALGO1", enter("X1", "B", 100, "NOPE", 1_000_000))
    venue.client_message("ALGO1", enter("X1", "B", 100, "AAPL", 1_000_000))
    assert venue.halt("AAPL") and not venue.halt("AAPL")
    venue.client_message("ALGO1", enter("X2", "B", 100, "AAPL", 1_000_000))
    venue.client_message("ALGO1", cancel("NEVER"))
    assert venue.resume("AAPL")
    answers = [(m["type"], m.get("order_token"), m.get("reason")) for m in ouch_since(venue, "ALGO1", 2)]
    assert answers == [("J", "X1", "S"), ("J", "X1", "O"), ("J", "X2", "H"), ("I", "NEVER", None)]
    halts = [(m["stock"], m["trading_state"]) for m in itch_since(venue, 6) if m["type"] == "H"]
    assert halts == [("AAPL", "H"), ("AAPL", "T")]


@pytest.mark.parametrize("message, fragment", [
    (b"", "empty"),
    (b"Q" + bytes(48), "unknown OUCH inbound type"),
    (enter("T1", "B", 100, "AAPL", 1)[:-1], "Enter Order is 49 bytes, got 48"),
    (cancel("T1") + b"x", "Cancel Order is 19 bytes, got 20"),
    (b"X" + b"\xff" * 14 + bytes(4), "order token"),
    (enter("T1", "B", 100, "AAPL", 1).replace(b"AAPL", b"AA\x00L"), "stock"),
])
def test_malformed_client_messages_are_counted_and_dropped(message, fragment):
    venue, _ = make_venue()
    venue.open()
    before = (len(venue.store), len(venue.stores["ALGO1"].messages))
    error = venue.client_message("ALGO1", message)
    assert error is not None and fragment in error
    assert venue.counters.malformed == 1
    assert (len(venue.store), len(venue.stores["ALGO1"].messages)) == before


def test_modify_order_is_answered_with_cancel_reject():
    venue, _ = make_venue()
    venue.open()
    venue.client_message("ALGO1", enter("M1", "S", 100, "AAPL", 1_000_000))
    venue.client_message("ALGO1", ouch.encode_inbound({"type": "M", "order_token": "M1", "buy_sell_indicator": "S",
                                                       "shares": 50}))
    assert ouch_since(venue, "ALGO1", 3)[0]["type"] == "I"
    assert venue.counters.modify_unsupported == 1


def test_parse_inbound_keeps_the_fields_the_engine_needs():
    kind, values = parse_inbound(enter("ABC", "T", 200, "MSFT", 123_400))
    assert kind == "O" and values[:6] == ("ABC", "T", 200, "MSFT", 123_400, 99998)
    with pytest.raises(WireFormatError):
        parse_inbound(b"O")


def test_session_lost_cancels_the_firms_open_orders_only_with_cancel_on_disconnect():
    venue, _ = make_venue(cancel_on_disconnect=["ALGO1"])
    venue.open()
    venue.client_message("ALGO1", enter("K1", "B", 300, "AAPL", 1_890_000))
    venue.client_message("ALGO1", enter("K2", "S", 100, "MSFT", 4_300_000, display="N"))
    venue.client_message("ALGO2", enter("R1", "S", 100, "AAPL", 1_900_000))
    ouch_first, itch_first = venue.stores["ALGO1"].next_sequence_number, venue.store.next_sequence
    assert venue.session_lost("ALGO2") is None                    # off: nothing happens
    assert len(venue.engine.firms["ALGO2"].live) == 1 and venue.stores["ALGO2"].next_sequence_number == 3
    assert venue.session_lost("ALGO1") == 2
    assert [strip(m, "order_token") | {"token": m["order_token"]} for m in ouch_since(venue, "ALGO1", ouch_first)] \
        == [{"type": "C", "token": "K1", "decrement_shares": 300, "reason": "Z"},
            {"type": "C", "token": "K2", "decrement_shares": 100, "reason": "Z"}]
    assert [m["type"] for m in itch_since(venue, itch_first)] == ["D"]          # K2 was never on the feed
    assert venue.engine.firms["ALGO1"].live == {} and venue.canceled_on_disconnect == {"ALGO1": 2, "ALGO2": 0}
    assert (venue.counters.cancel_on_disconnect_sessions, venue.counters.cancel_on_disconnect_orders) == (1, 2)
    assert venue.ledgers["ALGO1"].canceled_by_reason == {"Z": 400}
    assert venue.session_lost("ALGO1") == 0                       # a second loss finds nothing open
    venue.close()
    assert venue.session_lost("ALGO1") == 0 and venue.counters.cancel_on_disconnect_sessions == 2
    with pytest.raises(ValueError, match="unknown firm"):
        make_venue(cancel_on_disconnect=["NOBODY"])
