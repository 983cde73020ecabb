"""The firm's book without NATS: events summed per symbol through the OMS's own position
arithmetic, marks, breaks, days, the named breaches, and nothing from the network believed."""
from __future__ import annotations

import json
import random

import pytest

from appliance.oms.positions import PositionLedger
from appliance.riskhub.book import (
    FIRM_DAILY_LOSS, FIRM_DRAWDOWN, FIRM_GROSS_EXPOSURE, FIRM_MAX_POSITION, FIRM_NET_EXPOSURE, EventError, FirmBook,
)
from appliance.riskhub.config import FirmLimits

D = 10_000
DAY = 20260102


def event(appliance, sequence, kind="SENT_NEW", day=DAY, **fields):
    return {"appliance": appliance, "trading_day": day, "sequence": sequence, "event": kind,
            "time_ns": 1_700_000_000_000_000_000 + sequence * 1_000_000, **fields}


def fill(appliance, sequence, symbol, side, shares, dollars, match=None, day=DAY):
    return event(appliance, sequence, "EXECUTED", day, symbol=symbol, side=side, shares=shares,
                 price=f"{dollars:.4f}", match_number=sequence if match is None else match)


def test_fills_of_several_appliances_sum_per_symbol_with_the_omss_arithmetic():
    book = FirmBook()
    fills = [("v1", "AAPL", "B", 100, 190.0), ("v2", "AAPL", "S", 30, 191.5), ("v1", "AAPL", "S", 150, 192.0),
             ("v2", "MSFT", "T", 10, 420.0), ("v1", "MSFT", "B", 5, 419.0)]
    ledgers = {"v1": PositionLedger(2), "v2": PositionLedger(2)}
    for n, (app, symbol, side, shares, dollars) in enumerate(fills, 1):
        assert book.apply(app, fill(app, n, symbol, side, shares, dollars))
        ledgers[app].fill(["AAPL", "MSFT"].index(symbol), shares if side == "B" else -shares, round(dollars * D))
    f = book.figures()
    assert {s: v["position"] for s, v in f["symbols"].items()} == {"AAPL": -80, "MSFT": -5}
    assert f["symbols"]["AAPL"]["by_appliance"] == {"v1": -50, "v2": -30}
    assert f["realized_pnl"] == sum(sum(ledger.realized_pnl) for ledger in ledgers.values()) == 200 * D
    # marked at the last fill price until a mark comes: AAPL 192, MSFT 419
    cost = sum(sum(ledger.cost_basis) for ledger in ledgers.values())
    assert f["unrealized_pnl"] == -80 * 192 * D - 5 * 419 * D - cost
    book.apply_marks("v2", {"appliance": "v2", "time_ns": 1, "marks": {"AAPL": 200 * D, "MSFT": 0}})
    f = book.figures()
    assert f["symbols"]["AAPL"]["mark"] == 200 * D and f["symbols"]["MSFT"]["mark"] == 419 * D
    assert (f["gross_exposure"], f["net_exposure"]) == (80 * 200 * D + 5 * 419 * D, -80 * 200 * D - 5 * 419 * D)


def test_a_broken_trade_undoes_its_fill_and_duplicates_and_old_days_change_nothing():
    book = FirmBook()
    book.apply("v1", fill("v1", 1, "AAPL", "B", 100, 190.0, match=77))
    assert not book.apply("v1", fill("v1", 1, "AAPL", "B", 100, 190.0, match=77))     # the same sequence again
    assert book.apply("v1", event("v1", 2, "BROKEN", match_number=77))
    assert book.figures()["symbols"]["AAPL"]["position"] == 0
    with pytest.raises(EventError, match="broken trade 77"):
        book.apply("v1", event("v1", 3, "BROKEN", match_number=77))                  # broken twice
    book.apply("v1", fill("v1", 1, "AAPL", "B", 7, 190.0, day=DAY + 1))              # a new day starts flat
    assert not book.apply("v1", fill("v1", 9, "AAPL", "B", 100, 190.0, day=DAY))      # yesterday's, late
    f = book.figures()
    assert f["symbols"]["AAPL"]["position"] == 7 and f["appliances"]["v1"]["trading_day"] == DAY + 1
    assert (book.duplicates, book.old_days) == (1, 1)


def test_orders_per_second_count_the_last_second_of_order_events():
    book = FirmBook()
    for n in range(1, 1501):                    # one every ms: 1000 in any second
        book.apply("v1", event("v1", n, ("SENT_NEW", "SENT_REPLACE", "SENT_CANCEL")[n % 3]))
    book.apply("v1", event("v1", 1501, "ACCEPTED"))
    assert book.figures()["orders_per_s"] == 1000


def test_every_firm_limit_has_its_named_reason():
    book = FirmBook()
    book.apply("v1", fill("v1", 1, "AAPL", "B", 100, 200.0))
    book.apply("v2", fill("v2", 1, "MSFT", "S", 50, 400.0))
    book.apply_marks("v1", {"appliance": "v1", "time_ns": 1, "marks": {"AAPL": 210 * D}})
    peak = book.figures()                                        # +$1,000 on AAPL
    assert peak["pnl"] == 1000 * D
    book.apply_marks("v1", {"appliance": "v1", "time_ns": 2, "marks": {"AAPL": 150 * D}})
    f = book.figures()                                           # -$5,000: $6,000 below the peak
    limits = FirmLimits(max_position_default=1000, max_position={"AAPL": 99}, max_gross_exposure=30_000 * D,
                        max_net_exposure=-1 + 5000 * D, max_daily_loss=4_999 * D, max_drawdown=5_999 * D)
    found = FirmBook.breaches(f, limits)
    assert set(found) == {(FIRM_MAX_POSITION, "AAPL"), (FIRM_GROSS_EXPOSURE, ""), (FIRM_NET_EXPOSURE, ""),
                          (FIRM_DAILY_LOSS, ""), (FIRM_DRAWDOWN, "")}
    assert found[(FIRM_MAX_POSITION, "AAPL")] == "firm position in AAPL +100 beyond 99 shares"
    assert found[(FIRM_DRAWDOWN, "")] == "firm drawdown $6,000.00 beyond $5,999.00"
    assert FirmBook.breaches(f, FirmLimits()) == {}


def test_the_peak_is_a_function_of_the_stream_not_of_when_the_figures_were_looked_at():
    """The peak moves at marks only: a book rebuilt from the same events and marks (a restarted
    hub reading the stream) has the same peak and drawdown as the one that looked all along."""
    stream = [("e", fill("v1", 1, "AAPL", "B", 100, 200.0)),
              ("m", {"appliance": "v1", "time_ns": 1, "marks": {"AAPL": 210 * D}}),     # +$1,000: the peak
              ("e", fill("v1", 2, "AAPL", "S", 100, 215.0)),                            # flat, +$1,500 realized
              ("e", fill("v1", 3, "AAPL", "B", 100, 205.0)),
              ("e", fill("v2", 1, "MSFT", "B", 10, 400.0)),
              ("m", {"appliance": "v2", "time_ns": 2, "marks": {"AAPL": 190 * D}})]     # $1,500 - $1,500
    looked, rebuilt = FirmBook(), FirmBook()
    for kind, message in stream:
        for book in (looked, rebuilt):
            (book.apply if kind == "e" else book.apply_marks)(message["appliance"], message)
        looked.figures()                      # between marks the P&L touched +$1,500: not a peak
    f = looked.figures()
    assert (f["pnl"], f["peak_pnl"], f["drawdown"]) == (0, 1000 * D, 1000 * D)
    assert (rebuilt.figures()["peak_pnl"], rebuilt.pnl()) == (f["peak_pnl"], f["pnl"])
    rebuilt.apply_marks("v1", {"appliance": "v1", "time_ns": 3, "marks": {"AAPL": 180 * D, "MSFT": 390 * D}})
    assert rebuilt.figures()["drawdown"] == 2100 * D


GOOD = fill("v1", 1, "AAPL", "B", 100, 190.0)


@pytest.mark.parametrize("bad", [
    None, 5, "x", [], {}, {**GOOD, "appliance": "v2"}, {**GOOD, "appliance": ["v1"]}, {**GOOD, "trading_day": "1"},
    {**GOOD, "trading_day": True}, {**GOOD, "sequence": 0}, {**GOOD, "sequence": 2**80}, {**GOOD, "event": None},
    {**GOOD, "time_ns": -1}, {**GOOD, "symbol": ""}, {**GOOD, "symbol": "TOOLONGSYM"}, {**GOOD, "side": ""},
    {**GOOD, "side": "X"}, {**GOOD, "shares": 0}, {**GOOD, "shares": 10**12}, {**GOOD, "shares": 1.5},
    {**GOOD, "price": "MKT"}, {**GOOD, "price": "190"}, {**GOOD, "price": 1900000}, {**GOOD, "price": "1e9.0000"},
    {**GOOD, "match_number": -1}, {k: v for k, v in GOOD.items() if k != "match_number"},
])
def test_an_event_without_its_shape_is_an_event_error_and_changes_nothing(bad):
    book = FirmBook()
    with pytest.raises(EventError):
        book.apply("v1", bad)
    assert book.figures()["symbols"] == {} and book.appliances == {} and book.applied == 0


@pytest.mark.parametrize("bad", [None, [], {"appliance": "v2", "time_ns": 1, "marks": {}},
                                 {"appliance": "v1", "time_ns": 1, "marks": []},
                                 {"appliance": "v1", "time_ns": 1, "marks": {"AAPL": "1"}},
                                 {"appliance": "v1", "time_ns": 1, "marks": {"AAPL": -1}},
                                 {"appliance": "v1", "time_ns": 1, "marks": {"": 1}},
                                 {"appliance": "v1", "marks": {"AAPL": 1}}])
def test_marks_without_their_shape_are_an_event_error(bad):
    book = FirmBook()
    with pytest.raises(EventError):
        book.apply_marks("v1", bad)
    assert book.marks == {}


def test_mutated_events_raise_nothing_but_event_error():
    """Every field of real events replaced by values of every JSON type, seeded: the hub's only
    outcomes are applied, ignored, or EventError (counted and dropped)."""
    rng = random.Random(19)
    values = [None, True, -1, 0, 2**64, 1.5, "", "B", "190.0000", "MKT", [], {}, "x" * 300, [1], {"a": 1}]
    book = FirmBook()
    for n in range(3000):
        mutated = dict(rng.choice([GOOD, event("v1", 2, "BROKEN", match_number=1), event("v1", 3)]))
        for _ in range(rng.randint(1, 3)):
            mutated[rng.choice(list(mutated))] = rng.choice(values)
        mutated = json.loads(json.dumps(mutated))
        try:
            book.apply("v1", mutated)
        except EventError:
            pass
    book.figures()


def test_the_inline_check_of_an_events_header_refuses_what_the_field_by_field_check_refuses():
    """FirmBook.apply checks the usual event inline and anything else field by field (``_header_of``):
    over events mutated at random (types, ranges, lengths, missing keys, another appliance), apply
    refuses with the field-by-field message exactly when that check refuses."""
    import random
    from appliance.riskhub.book import EventError, FirmBook, _header_of

    class Text(str):
        pass
    good = {"appliance": "v1", "trading_day": 20260102, "sequence": 5, "event": "SENT_NEW", "time_ns": 10**18,
            "symbol": "AAPL", "side": "B", "shares": 10, "price": "190.0000", "match_number": 7}
    bad_values = [None, True, 1.5, "7", -1, 0, 2**63, 2**63 - 1, 19_700_100, 99_991_232, "x" * 65, "v2", Text("v1"),
                  Text("EXECUTED"), [], {}, "EXECUTED", "BROKEN", 20260102, 1]
    rng = random.Random(19)
    refused = 0
    for _ in range(3000):
        event = dict(good)
        for key in rng.sample(["appliance", "trading_day", "sequence", "event", "time_ns"], rng.randrange(0, 3)):
            if rng.random() < 0.15:
                del event[key]
            else:
                event[key] = rng.choice(bad_values)
        try:
            _header_of(event, "v1")
            said = None
        except EventError as exc:
            said = str(exc)
        try:
            FirmBook().apply("v1", event)
            got = None
        except EventError as exc:
            got = str(exc)
        if said is not None:
            refused += 1
            assert got == said, event
        else:
            assert got is None or got.startswith(("execution", "broken", "symbol", "side", "shares", "match_number",
                                                  "an execution", "'")) or "price" in got, (event, got)
    assert 500 < refused < 3000
