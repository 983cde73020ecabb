"""The simulated exchange honours the OUCH 4.2 flags it receives: minimum quantity at entry, the
display values it supports, capacity and intermarket sweep accepted and echoed, a short sale as a
sell, market and immediate-or-cancel orders never resting; each refusal with its OUCH reason."""
from __future__ import annotations

import pytest

from appliance.exchange.events import Accepted, AddOrder, Canceled, Executed, OrderExecuted, Rejected, Replaced, Trade
from appliance.exchange.matching import DAY, IOC, MARKET, MatchingEngine
from appliance.exchange.venue import Venue
from appliance.wire import itch, ouch

SYM = "AAPL"
P100, P101, P102 = 1_000_000, 1_010_000, 1_020_000


@pytest.fixture
def eng() -> MatchingEngine:
    engine = MatchingEngine([SYM])
    engine.enter("MM", "a1", SYM, "S", 100, P101)          # ref 1
    engine.enter("MM", "a2", SYM, "S", 100, P102)          # ref 2
    return engine


def test_minimum_quantity_met_executes_as_usual(eng):
    events = eng.enter("F1", "b1", SYM, "B", 300, P102, IOC, minimum_quantity=200)
    assert events[0] == Accepted("F1", "b1", "B", 300, SYM, P102, IOC, "Y", 3, "D")
    assert [e for e in events if type(e) is Executed and e.firm == "F1"] == [
        Executed("F1", "b1", 100, P101, "R", 1), Executed("F1", "b1", 100, P102, "R", 2)]
    assert events[-1] == Canceled("F1", "b1", 100, "I")


def test_minimum_quantity_not_met_executes_nothing_and_cancels_the_whole_order(eng):
    # 200 offered up to P102 but only 100 up to P101: a minimum of 150 at P101 cannot be met
    assert eng.enter("F1", "b1", SYM, "B", 300, P101, IOC, minimum_quantity=150) == [
        Accepted("F1", "b1", "B", 300, SYM, P101, IOC, "Y", 3, "D"), Canceled("F1", "b1", 300, "I")]
    assert eng.book(SYM).asks() == [(P101, 100), (P102, 100)]           # nothing traded
    assert eng.enter("F1", "m1", SYM, "B", 300, MARKET, DAY, minimum_quantity=201) == [
        Accepted("F1", "m1", "B", 300, SYM, MARKET, DAY, "Y", 4, "D"), Canceled("F1", "m1", 300, "I")]
    events = eng.enter("F1", "m2", SYM, "B", 300, MARKET, DAY, minimum_quantity=200)      # a market order is IOC
    assert sum(e.shares for e in events if type(e) is Executed and e.firm == "F1") == 200


@pytest.mark.parametrize("tif, minimum, display", [(DAY, 100, "Y"), (DAY, 100, "N"), (IOC, 301, "Y")])
def test_a_minimum_quantity_on_an_order_that_may_rest_or_above_the_shares_is_rejected_n(eng, tif, minimum, display):
    assert eng.enter("F1", "b1", SYM, "B", 300, P101, tif, display, minimum_quantity=minimum) == [
        Rejected("F1", "b1", "N")]


@pytest.mark.parametrize("kw, reason", [({"display": "P"}, "D"), ({"display": "M"}, "D"), ({"display": " "}, "D"),
                                        ({"capacity": "X"}, "O"), ({"iso": "1"}, "O")])
def test_flag_values_the_venue_does_not_support_are_rejected(eng, kw, reason):
    display = kw.pop("display", "Y")
    assert eng.enter("F1", "b1", SYM, "B", 100, P100, DAY, display, **kw) == [Rejected("F1", "b1", reason)]


def test_iso_and_capacity_are_accepted_and_a_short_sale_trades_as_a_sell(eng):
    eng.enter("F2", "bid", SYM, "B", 100, P100)                             # ref 3
    events = eng.enter("F1", "t1", SYM, "T", 100, P100, DAY, "Y", capacity="P", iso="Y")
    assert events[0] == Accepted("F1", "t1", "T", 100, SYM, P100, DAY, "Y", 4, "D")
    assert events[1:] == [OrderExecuted(3, 100, 1), Executed("F2", "bid", 100, P100, "A", 1),
                          Executed("F1", "t1", 100, P100, "R", 1)]
    assert eng.firm_report("F1").sold == 100 and eng.firm_report("F1").positions == {SYM: -100}
    rests = eng.enter("F1", "t2", SYM, "T", 100, P102 + 10_000)
    assert rests[1] == AddOrder(5, "S", 100, SYM, P102 + 10_000, None)        # on the ask side, as a sell


def test_a_hidden_order_rests_unseen_and_prints_its_executions_as_trades(eng):
    assert eng.enter("F1", "h1", SYM, "B", 100, P100, DAY, "N") == [
        Accepted("F1", "h1", "B", 100, SYM, P100, DAY, "N", 3, "L")]        # no AddOrder
    events = eng.enter("F2", "s1", SYM, "S", 100, P100, IOC)
    assert events[1:] == [Trade("B", 100, SYM, P100, 1), Executed("F1", "h1", 100, P100, "A", 1),
                          Executed("F2", "s1", 100, P100, "R", 1)]


def test_a_replace_is_checked_for_its_flags(eng):
    eng.enter("F1", "b1", SYM, "B", 100, P100)
    assert eng.replace("F1", "b1", "b2", 100, P100, minimum_quantity=50) == [Rejected("F1", "b2", "N")]
    assert eng.replace("F1", "b1", "b3", 100, P100, display="Q") == [Rejected("F1", "b3", "D")]
    assert eng.replace("F1", "b1", "b4", 100, P100, iso="Y", display="N")[0] == \
        Replaced("F1", "b4", "b1", "B", 100, SYM, P100, DAY, "N", 4, "L")


def enter(token, side, shares, price, tif, display, capacity, iso, minimum):
    return ouch.encode_inbound({"type": "O", "order_token": token, "buy_sell_indicator": side, "shares": shares,
                                "stock": SYM, "price": price, "time_in_force": tif, "firm": "ALGO",
                                "display": display, "capacity": capacity, "intermarket_sweep_eligibility": iso,
                                "minimum_quantity": minimum, "cross_type": "N", "customer_type": "R"})


def test_the_venue_passes_the_wire_flags_to_the_engine_and_echoes_them():
    packets = []
    venue = Venue([(SYM, 100)], {"ALGO1": "ALGO"}, session="TEST000001", send_packet=packets.append,
                  clock=lambda: 1_764_000_000_123_456_789)
    venue.open()
    first_itch = venue.store.next_sequence
    venue.client_message("ALGO1", enter("H1", "T", 200, P100, DAY, "N", "R", "Y", 0))
    venue.client_message("ALGO1", enter("B1", "B", 300, P101, IOC, "Y", "P", "N", 300))   # cannot meet 300
    venue.client_message("ALGO1", enter("B2", "B", 300, P101, DAY, "Y", "P", "N", 100))   # may rest: 'N'
    answers = [ouch.decode_outbound(m) for m in venue.stores["ALGO1"].messages]
    accepted = [a for a in answers if a["type"] == "A"]
    assert [(a["order_token"], a["buy_sell_indicator"], a["display"], a["capacity"],
             a["intermarket_sweep_eligibility"], a["minimum_quantity"]) for a in accepted] == [
        ("H1", "T", "N", "R", "Y", 0), ("B1", "B", "Y", "P", "N", 300)]
    assert [(a["type"], a["order_token"], a.get("reason")) for a in answers if a["type"] in "CJ"] == [
        ("C", "B1", "I"), ("J", "B2", "N")]
    published = [itch.decode(m)["type"] for m in venue.store.get(first_itch, 10**9)]
    assert "A" not in published and "F" not in published                  # the hidden short sale rests unseen
