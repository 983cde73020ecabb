"""Every check of the risk engine at its exact boundary: the last value that passes and the first that is denied.

The engine runs in process on a paper market-state table (same record and seqlock as the shared one), through
the risk tests' harness (tests/support/risk_harness.py). AAPL is quoted 189.99 / 190.01, so its reference
price (the mid) is 190.0000 (1,900,000 in price units).
"""
from __future__ import annotations

import datetime

import pytest

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_STALE
from appliance.messages.codes import TIF_DAY, TIF_IOC, ExecEvent, RiskReason
from appliance.risk.checks import CHECK_ORDER, MARKET_PRICE
from appliance.risk.paper_market import limits_document
from risk_harness import (
    AAPL, CANCEL_ALL, DOLLAR, MSFT, NOW, REF, SPY, SYMBOLS, B, Harness, S, T, with_global, with_symbol,
)


# ---------------------------------------------------------------------------- the order of the checks

def test_every_reason_code_has_a_place_in_the_check_order():
    assert sorted(CHECK_ORDER) == sorted(RiskReason)
    assert CHECK_ORDER[0] is RiskReason.BAD_ORDER


def test_a_plain_order_passes_and_cancels_always_pass():
    h = Harness()
    assert h.new() == 0
    assert h.cancel(h.last_id) == 0
    assert h.engine.decide(CANCEL_ALL, 9, 0, 0xFFFFFFFF, 0, 0, 0, 0, 7, NOW) == 0


# ---------------------------------------------------------------------------- well-formed

@pytest.mark.parametrize("change", [
    {"shares": 0}, {"price": 0}, {"side": ord("X")}, {"tif": 5}, {"action": 9}, {"cid": 0},
])
def test_malformed_intents_are_bad_orders(change):
    h = Harness()
    assert h.new(**change) == RiskReason.BAD_ORDER


@pytest.mark.parametrize("side", [B, S, T])
@pytest.mark.parametrize("tif", [TIF_DAY, TIF_IOC])
def test_every_side_and_time_in_force_of_the_contract_passes(side, tif):
    assert Harness(with_symbol(allow_short_sell=True)).new(side=side, tif=tif) == 0


def test_unknown_symbol_outside_the_layout_or_without_limits():
    h = Harness()
    assert h.new(symbol=3) == RiskReason.UNKNOWN_SYMBOL
    assert h.new(symbol=0xFFFFFFFF) == RiskReason.UNKNOWN_SYMBOL
    document = limits_document(SYMBOLS)
    del document["symbols"]["SPY"]
    h = Harness(document)
    assert h.new(symbol=SPY, price=5_600_000) == RiskReason.UNKNOWN_SYMBOL
    assert h.new(symbol=MSFT, price=4_200_000) == 0


# ---------------------------------------------------------------------------- gateway state

def test_nothing_but_cancels_before_the_state_is_rebuilt():
    h = Harness(ready=False)
    assert h.new() == RiskReason.NOT_READY
    assert h.cancel(5) == 0
    h.engine.mark_ready(NOW)
    assert h.new() == 0


def test_market_hours_boundaries():
    h = Harness(with_global(market_hours={"open": "09:30", "close": "16:00", "timezone": "UTC",
                                          "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]}))
    day = datetime.datetime(2024, 3, 12, tzinfo=datetime.timezone.utc)

    def at(hour, minute, ns=0):
        return int(day.replace(hour=hour, minute=minute).timestamp()) * 1_000_000_000 + ns

    assert h.new(now=at(9, 29, 59_999_999_999)) == RiskReason.MARKET_CLOSED
    assert h.new(now=at(9, 30)) == 0
    assert h.new(now=at(15, 59, 59_999_999_999)) == 0
    assert h.new(now=at(16, 0)) == RiskReason.MARKET_CLOSED
    assert h.new(now=at(12, 0)) == 0                       # the clock going back is answered afresh
    assert h.cancel(5, now=at(20, 0)) == 0


def test_market_hours_weekdays_and_time_zone():
    h = Harness(with_global(market_hours={"open": "09:30", "close": "16:00", "timezone": "America/New_York"}))
    saturday_noon_ny = int(datetime.datetime(2024, 3, 16, 16, 0, tzinfo=datetime.timezone.utc).timestamp()) * 10**9
    monday_0930_ny = int(datetime.datetime(2024, 3, 18, 13, 30, tzinfo=datetime.timezone.utc).timestamp()) * 10**9
    assert h.new(now=saturday_noon_ny) == RiskReason.MARKET_CLOSED
    assert h.new(now=monday_0930_ny - 1) == RiskReason.MARKET_CLOSED
    assert h.new(now=monday_0930_ny) == 0


# ---------------------------------------------------------------------------- duplicates

def test_a_client_order_id_is_approved_once():
    h = Harness()
    assert h.new(cid=5) == 0
    assert h.new(cid=5) == RiskReason.DUPLICATE_CLIENT_ID
    assert h.replace(5, 100, cid=5) == RiskReason.DUPLICATE_CLIENT_ID
    assert h.new(cid=6) == 0


def test_repeated_identical_orders_inside_the_window():
    h = Harness(with_global(max_identical_orders=3, duplicate_window_ms=1000))
    for i in range(3):
        assert h.new(now=NOW + i) == 0
    assert h.new(now=NOW + 3) == RiskReason.REPEATED_ORDER
    assert h.new(shares=200, now=NOW + 3) == 0              # another size is another order
    assert h.new(price=REF + 100, now=NOW + 3) == 0
    assert h.new(side=S, now=NOW + 3) == 0
    assert h.new(now=NOW + 1_000_000_000 - 1) == RiskReason.REPEATED_ORDER
    assert h.new(now=NOW + 1_000_000_000) == 0              # the first of the three left the window


def test_replace_of_an_order_that_is_not_open():
    h = Harness()
    assert h.replace(999, 100) == RiskReason.UNKNOWN_ORDER
    assert h.new(cid=10) == 0
    assert h.replace(10, 200, symbol=MSFT, price=4_200_000) == RiskReason.BAD_ORDER
    assert h.replace(10, 200, side=S) == RiskReason.BAD_ORDER
    assert h.replace(10, 200, cid=11) == 0
    assert h.replace(10, 300, cid=12) == RiskReason.UNKNOWN_ORDER          # already being replaced
    assert h.replace(11, 300, cid=13) == RiskReason.UNKNOWN_ORDER          # not open until REPLACED


# ---------------------------------------------------------------------------- size and price format

def test_min_size():
    h = Harness(with_symbol(min_shares=10))
    assert h.new(shares=10) == 0
    assert h.new(shares=9) == RiskReason.MIN_SIZE


def test_max_shares():
    h = Harness(with_symbol(max_shares=1000))
    assert h.new(shares=1000) == 0
    assert h.new(shares=1001) == RiskReason.MAX_SHARES


def test_round_lot_only_where_configured():
    assert Harness().new(shares=150) == 0
    h = Harness(with_symbol(round_lot=100))
    assert h.new(shares=200) == 0
    assert h.new(shares=150) == RiskReason.ROUND_LOT


def test_tick():
    h = Harness()
    assert h.new(price=REF + 100) == 0
    assert h.new(price=REF + 99) == RiskReason.TICK
    h = Harness(with_symbol(tick=0.05))
    assert h.new(price=REF + 500) == 0
    assert h.new(price=REF + 100) == RiskReason.TICK


# ---------------------------------------------------------------------------- counts

def test_max_open_orders_and_a_closed_order_frees_its_place():
    h = Harness(with_global(max_open_orders=3))
    for cid in (1, 2, 3):
        assert h.new(cid=cid) == 0
    assert h.new(cid=4) == RiskReason.MAX_OPEN_ORDERS
    assert h.replace(1, 200, cid=5) == 0                    # a replace is not another open order
    h.report(ExecEvent.CANCELED, 2, shares=100, leaves=0)
    assert h.new(cid=6) == 0


# ---------------------------------------------------------------------------- the book

@pytest.mark.parametrize("flags, state, reason", [
    (BOOK_FLAG_STALE, ord("T"), RiskReason.BOOK_STALE),
    (0, 0, RiskReason.BOOK_STALE),                               # never written by the feed
    (BOOK_FLAG_HALTED, ord("H"), RiskReason.SYMBOL_HALTED),
    (0, ord("P"), RiskReason.SYMBOL_HALTED),
    (BOOK_FLAG_CROSSED, ord("T"), RiskReason.BOOK_CROSSED),
    (BOOK_FLAG_STALE | BOOK_FLAG_CROSSED, ord("T"), RiskReason.BOOK_STALE),
])
def test_no_order_on_a_stale_halted_or_crossed_book(flags, state, reason):
    h = Harness()
    h.market.quote(AAPL, REF - 100, REF + 100, flags=flags, trading_state=state)
    assert h.new() == reason
    assert h.cancel(1) == 0
    h.market.quote(AAPL, REF - 100, REF + 100)
    assert h.new() == 0


def test_crossed_prices_without_the_flag_are_still_crossed():
    h = Harness()
    h.market.quote(AAPL, REF + 100, REF - 100)
    assert h.new() == RiskReason.BOOK_CROSSED
    h.market.quote(AAPL, REF, REF)                          # locked is not crossed
    assert h.new() == 0


def test_reference_price_is_the_mid_else_the_last_trade():
    h = Harness(with_symbol(collar_abs=1.00, collar_pct=None))
    h.market.quote(AAPL, 0, 0, last=0)
    assert h.new() == RiskReason.NO_REFERENCE_PRICE
    h.market.quote(AAPL, REF - 100, 0, last=0)               # one side only, no trade: still nothing to collar to
    assert h.new() == RiskReason.NO_REFERENCE_PRICE
    h.market.quote(AAPL, REF - 100, 0, last=2_000_000)      # last trade $200
    assert h.new(price=2_010_000) == 0
    assert h.new(price=2_010_100) == RiskReason.PRICE_COLLAR


def test_percent_collar_both_sides():
    h = Harness()                                            # 5 % of $190 = $9.50
    assert h.new(price=1_995_000) == 0
    assert h.new(price=1_995_100) == RiskReason.PRICE_COLLAR
    assert h.new(price=1_805_000, side=S) == 0
    assert h.new(price=1_804_900, side=S) == RiskReason.PRICE_COLLAR


def test_absolute_collar():
    h = Harness(with_symbol(collar_abs=0.50, collar_pct=None))
    assert h.new(price=REF + 5_000) == 0
    assert h.new(price=REF + 5_100) == RiskReason.PRICE_COLLAR
    assert h.new(price=REF - 5_000) == 0
    assert h.new(price=REF - 5_100) == RiskReason.PRICE_COLLAR


def test_market_orders_only_when_allowed_and_priced_at_the_collar_edge():
    assert Harness().new(price=MARKET_PRICE) == RiskReason.MARKET_ORDER
    # allowed: a buy's notional is priced at ref + 5 % = $199.50 (100 shares: $19,950), a sell's at ref - 5 %
    document = with_symbol(max_notional=19_950)
    document["global"]["allow_market_orders"] = True
    h = Harness(document)
    assert h.new(price=MARKET_PRICE) == 0
    assert h.new(price=MARKET_PRICE, shares=101) == RiskReason.MAX_NOTIONAL
    assert h.new(price=MARKET_PRICE, shares=110, side=S) == 0            # 110 x $180.50 = $19,855
    assert h.new(price=MARKET_PRICE, shares=111, side=S) == RiskReason.MAX_NOTIONAL


def test_max_notional():
    h = Harness(with_symbol(max_notional=95_000))            # 500 shares at $190.00
    assert h.new(shares=500, price=REF) == 0
    assert h.new(shares=500, price=REF + 100) == RiskReason.MAX_NOTIONAL


# ---------------------------------------------------------------------------- loss

def test_daily_loss_on_realized_pnl_latches_the_kill_switch():
    h = Harness(with_global(max_daily_loss=5_000))
    h.fill_position(0, realized=-5_000 * DOLLAR)
    assert h.new() == 0
    h.fill_position(0, realized=-5_000 * DOLLAR - 1)
    assert h.new() == RiskReason.DAILY_LOSS
    assert h.engine.control.latched and h.engine.control.kill_reason == "DAILY_LOSS"
    assert h.new() == RiskReason.TRADING_HALTED


def test_daily_loss_counts_unrealized_pnl_marked_to_the_reference_price():
    h = Harness(with_global(max_daily_loss=5_000))
    h.fill_position(1000, price=REF)
    h.market.quote(AAPL, 1_849_900, 1_850_100)               # mid $185: 1,000 x -$5 = -$5,000
    h.engine.refresh_marks()                                 # what housekeeping does every 10 ms
    assert h.new(price=1_850_000) == 0
    h.market.quote(AAPL, 1_849_898, 1_850_100)               # mid 184.9999: -$5,000.10
    assert h.new(price=1_850_000) == 0                       # not re-marked yet
    h.engine.refresh_marks()
    assert h.new(price=1_850_000) == RiskReason.DAILY_LOSS
    assert h.engine.control.latched


def test_drawdown_from_the_days_peak():
    h = Harness(with_global(max_drawdown=2_000, max_daily_loss=50_000))
    h.fill_position(0, realized=10_000 * DOLLAR)
    assert h.new() == 0                                      # the peak: +$10,000
    h.fill_position(0, realized=8_000 * DOLLAR)
    assert h.new() == 0                                      # exactly $2,000 below it
    h.fill_position(0, realized=8_000 * DOLLAR - 1)
    assert h.new() == RiskReason.DRAWDOWN
    assert h.engine.control.kill_reason == "DRAWDOWN"


def test_loss_limits_are_enforced_without_an_order():
    h = Harness(with_global(max_daily_loss=5_000))
    h.fill_position(1000, price=REF)
    h.market.quote(AAPL, 1_800_000, 1_800_200)
    assert h.engine.housekeeping(NOW) == RiskReason.DAILY_LOSS
    assert h.engine.control.latched
    assert [e[0] for e in h.engine.control.take_events()][-1] == 1        # ControlEventKind.KILL


# ---------------------------------------------------------------------------- position

def test_max_long_counts_the_position_and_every_open_buy():
    h = Harness(with_symbol(max_long=2000))
    h.fill_position(1500)
    assert h.new(shares=400) == 0
    assert h.new(shares=100) == 0                            # 1,500 + 400 + 100 = 2,000
    assert h.new(shares=1) == RiskReason.MAX_LONG
    assert h.new(shares=1, side=S) == 0                      # a sell never grows the long side


def test_max_short_counts_the_position_and_every_open_sell():
    h = Harness(with_symbol(max_short=1000, allow_short_sell=True))
    h.fill_position(-500)
    assert h.new(shares=300, side=S) == 0
    assert h.new(shares=200, side=T) == 0                    # -500 - 300 - 200 = -1,000
    assert h.new(shares=1, side=S) == RiskReason.MAX_SHORT
    assert h.new(shares=1, side=B) == 0


def test_replace_counts_the_larger_of_old_and_new_until_replaced():
    h = Harness(with_symbol(max_long=1000))
    assert h.new(shares=600, cid=1) == 0
    assert h.replace(1, 1000, cid=2) == 0                    # worst case 1,000 while the replace is in flight
    assert h.new(shares=1) == RiskReason.MAX_LONG
    h.report(ExecEvent.REPLACED, 2, orig=1, shares=1000, leaves=1000)
    assert h.new(shares=1) == RiskReason.MAX_LONG
    assert h.replace(2, 400, cid=3) == 0                     # shrinking: still 1,000 until REPLACED
    assert h.new(shares=1) == RiskReason.MAX_LONG
    h.report(ExecEvent.REPLACED, 3, orig=2, shares=400, leaves=400)
    assert h.new(shares=600) == 0


# ---------------------------------------------------------------------------- exposure

def test_gross_exposure():
    h = Harness(with_global(max_gross_notional=190_000))      # 1,000 AAPL at the $190 reference
    assert h.new(shares=1000) == 0
    assert h.new(shares=1) == RiskReason.GROSS_EXPOSURE
    assert h.new(shares=1, side=S) == 0                       # the short side's worst case is still flat
    assert h.new(shares=1, symbol=MSFT, price=4_200_000) == RiskReason.GROSS_EXPOSURE


def test_gross_exposure_counts_the_larger_worst_case_side():
    h = Harness(with_global(max_gross_notional=190_000))
    assert h.new(shares=1000, side=S) == 0
    assert h.new(shares=1000, side=B) == 0                    # worst cases +1,000 / -1,000: gross 190,000
    assert h.new(shares=1, side=B) == RiskReason.GROSS_EXPOSURE


def test_net_exposure():
    h = Harness(with_global(max_net_notional=190_000))
    assert h.new(shares=1000) == 0
    assert h.new(shares=1) == RiskReason.NET_EXPOSURE
    assert h.new(shares=1, symbol=MSFT, price=4_200_000) == RiskReason.NET_EXPOSURE
    assert h.new(shares=1000, side=S) == 0                    # the short side nets to -190,000 at worst
    assert h.new(shares=1, side=S) == RiskReason.NET_EXPOSURE


def test_sector_concentration():
    document = limits_document(SYMBOLS)
    document["sectors"] = {"TECH": {"max_gross_notional": 190_000}, "ETF": {"max_gross_notional": 5_000_000}}
    document["symbols"] = {"AAPL": {"sector": "TECH"}, "MSFT": {"sector": "TECH"}, "SPY": {"sector": "ETF"}}
    h = Harness(document)
    assert h.new(shares=1000) == 0
    assert h.new(shares=1) == RiskReason.SECTOR_CONCENTRATION
    assert h.new(shares=1, symbol=MSFT, price=4_200_000) == RiskReason.SECTOR_CONCENTRATION
    assert h.new(shares=100, symbol=SPY, price=5_600_000) == 0


def test_leverage():
    h = Harness(with_global(capital=95_000, max_leverage=2.0))   # gross up to $190,000
    assert h.new(shares=1000) == 0
    assert h.new(shares=1) == RiskReason.LEVERAGE


def test_exposure_is_recomputed_when_the_reference_price_moves():
    h = Harness(with_global(max_gross_notional=190_000))
    assert h.new(shares=1000) == 0
    h.market.quote(AAPL, 1_709_900, 1_710_100)                  # $171: 1,000 shares are $171,000 now
    assert h.new(shares=111, price=1_710_000) == 0              # $189,981
    assert h.new(shares=1, price=1_710_000) == RiskReason.GROSS_EXPOSURE     # 1,112 x $171 = $190,152


def test_an_order_that_reduces_exposure_passes_even_over_the_limit():
    h = Harness(with_global(max_gross_notional=190_000, max_net_notional=190_000))
    h.fill_position(1000)                                       # $190,000: at both limits
    h.market.quote(AAPL, 1_999_900, 2_000_100)                  # $200: $200,000 now, over them
    assert h.new(shares=1, price=2_000_000) == RiskReason.GROSS_EXPOSURE
    assert h.new(shares=100, side=S, price=2_000_000) == 0     # selling shrinks the long side
    h.engine.refresh_marks()
    assert h.new(shares=1, price=2_000_000) == RiskReason.GROSS_EXPOSURE
    assert h.new(shares=100, side=S, price=2_000_000) == 0
    assert h.new(shares=800, side=S, price=2_000_000) == 0     # 1,000 - 200 - 800 = 0 at worst


# ---------------------------------------------------------------------------- self-match (wash trades)

def test_an_order_crossing_our_own_open_order_is_a_self_match():
    h = Harness(with_global(prevent_self_match=True))
    assert h.new(side=B, price=REF) == 0
    bid = h.last_id
    assert h.new(side=S, price=REF) == RiskReason.SELF_MATCH                 # at our bid: would trade with it
    assert h.new(side=S, price=REF - 100) == RiskReason.SELF_MATCH
    assert h.new(side=S, price=REF + 100) == 0                               # one tick above: no trade
    ask = h.last_id
    assert h.new(side=B, price=REF + 100) == RiskReason.SELF_MATCH           # a buy at our ask
    assert h.new(side=B, price=REF) == 0                                     # same side as our bid: fine
    assert h.replace(bid, 100, price=REF + 100) == RiskReason.SELF_MATCH     # moving the bid onto the ask
    assert h.replace(bid, 100, price=REF + 100 - 100) == 0                   # the bid itself is not a match
    h.report(ExecEvent.CANCELED, ask, side=S, leaves=0)
    assert h.new(side=B, price=REF + 100) == 0                               # the ask is gone


def test_a_pending_replace_keeps_both_prices_until_it_is_answered():
    h = Harness(with_global(prevent_self_match=True))
    assert h.new(side=S, price=REF + 200) == 0
    ask = h.last_id
    assert h.replace(ask, 100, side=S, price=REF + 300) == 0
    replacement = h.last_id
    assert h.new(side=B, price=REF + 200) == RiskReason.SELF_MATCH           # the old price may still rest
    h.report(ExecEvent.REPLACED, replacement, side=S, orig=ask, price=REF + 300, leaves=100)
    assert h.new(side=B, price=REF + 200) == 0
    assert h.new(side=B, price=REF + 300) == RiskReason.SELF_MATCH


def test_a_market_order_matches_any_own_order_on_the_other_side():
    h = Harness(with_global(prevent_self_match=True, allow_market_orders=True))
    assert h.new(side=S, price=REF + 500) == 0
    assert h.new(side=B, price=MARKET_PRICE) == RiskReason.SELF_MATCH


def test_self_match_prevention_is_off_unless_the_limits_ask_for_it():
    h = Harness()
    assert h.new(side=B, price=REF) == 0
    assert h.new(side=S, price=REF) == 0
