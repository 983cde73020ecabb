"""Risk on the OUCH 4.2 order flags: each refusal a limit asks for has its named reason, the limits
file's keys and defaults, malformed flag values, and a short sale counting as a sell."""
from __future__ import annotations

import pytest

from appliance.messages.codes import MARKET_PRICE, TIF_DAY, TIF_IOC, RiskReason
from appliance.risk.limits import LimitsError, parse_limits
from risk_harness import AAPL, MSFT, REF, SYMBOLS, B, Harness, S, T, with_global, with_symbol

Y, A, N = ord("Y"), ord("A"), ord("N")


def test_defaults_refuse_short_sales_iso_and_market_orders_and_allow_hidden():
    h = Harness()
    assert h.new(side=T) == RiskReason.SHORT_SALE
    assert h.new(intermarket_sweep=1) == RiskReason.ISO_ORDER
    assert h.new(price=MARKET_PRICE, tif=TIF_IOC) == RiskReason.MARKET_ORDER
    assert h.new(display=N) == 0
    assert h.new(display=A, capacity=ord("P")) == 0
    assert h.new(shares=200, tif=TIF_IOC, minimum_quantity=100) == 0


def test_short_sales_per_symbol_the_short_list():
    document = with_symbol()
    document["symbols"]["MSFT"] = {"allow_short_sell": True}
    h = Harness(document)
    assert h.new(side=T, symbol=AAPL) == RiskReason.SHORT_SALE
    assert h.new(side=T, symbol=MSFT, price=4_200_000) == 0
    assert Harness(with_symbol(allow_short_sell=True)).new(side=T) == 0       # symbol_defaults: every symbol


def test_hidden_and_iso_refused_when_the_limits_say_so():
    assert Harness(with_global(allow_hidden=False)).new(display=N) == RiskReason.HIDDEN_ORDER
    assert Harness(with_global(allow_hidden=False)).new(display=A) == 0        # displayed, attributable
    assert Harness(with_global(allow_iso=True)).new(intermarket_sweep=1) == 0


def test_minimum_quantity_is_refused_where_the_venue_would_refuse_it():
    h = Harness(with_global(allow_market_orders=True))
    assert h.new(shares=100, tif=TIF_IOC, minimum_quantity=101) == RiskReason.MIN_QUANTITY
    assert h.new(shares=100, tif=TIF_DAY, minimum_quantity=50) == RiskReason.MIN_QUANTITY     # may rest
    assert h.new(shares=100, tif=TIF_DAY, minimum_quantity=50, display=N) == RiskReason.MIN_QUANTITY
    assert h.new(shares=100, tif=TIF_IOC, minimum_quantity=100) == 0
    assert h.new(shares=100, price=MARKET_PRICE, tif=TIF_IOC, minimum_quantity=50, side=S) == 0


@pytest.mark.parametrize("flags", [{"display": ord("P")}, {"display": 1}, {"capacity": ord("X")},
                                   {"intermarket_sweep": 2}, {"intermarket_sweep": ord("Y")}])
def test_a_flag_value_ouch_does_not_know_is_a_bad_order(flags):
    assert Harness(with_global(allow_iso=True)).new(**flags) == RiskReason.BAD_ORDER


def test_a_replace_is_checked_for_its_flags_too():
    h = Harness(with_global(allow_hidden=False))
    assert h.new() == 0
    orig = h.last_id
    assert h.replace(orig, 100, REF + 100, display=N) == RiskReason.HIDDEN_ORDER
    assert h.replace(orig, 100, REF + 100, intermarket_sweep=1) == RiskReason.ISO_ORDER
    assert h.replace(orig, 100, REF + 100) == 0


def test_a_short_sale_counts_as_a_sell_for_max_short_and_self_match():
    h = Harness(with_symbol(max_short=300, allow_short_sell=True))
    assert h.new(shares=200, side=T) == 0
    assert h.new(shares=100, side=S) == 0                       # 0 - 200 - 100 = -300: at the limit
    assert h.new(shares=1, side=T) == RiskReason.MAX_SHORT
    document = with_symbol(allow_short_sell=True)
    document["global"]["prevent_self_match"] = True
    h = Harness(document)
    assert h.new(shares=100, side=B, price=REF) == 0
    assert h.new(shares=100, side=T, price=REF) == RiskReason.SELF_MATCH       # would sell into our own bid


def test_the_limits_file_keys_are_checked():
    document = with_symbol()
    document["global"]["allow_iso"] = "yes"
    import yaml
    with pytest.raises(LimitsError, match="global.allow_iso: expected true or false"):
        parse_limits(yaml.safe_dump(document), SYMBOLS, "limits.yaml")
    document = with_symbol(allow_short_sell=1)
    with pytest.raises(LimitsError, match="allow_short_sell: expected true or false"):
        parse_limits(yaml.safe_dump(document), SYMBOLS, "limits.yaml")
    limits = parse_limits(yaml.safe_dump(with_global(allow_hidden=False, allow_iso=True)), SYMBOLS, "limits.yaml")
    assert (limits.allow_hidden, limits.allow_iso, limits.symbols[AAPL].allow_short_sell) == (False, True, False)
    assert limits.summary["global.allow_iso"] is True and limits.summary["symbols.AAPL.allow_short_sell"] is False


def test_a_limit_price_outside_the_instruments_band_is_refused_price_band():
    """The band in config/instruments.yaml was read by the strategy's Instrument only: risk passed a price
    the venue's band refuses. Now it is PRICE_BAND, after TICK; a market order has no limit price."""
    from appliance.config.instruments import parse_instruments
    listed = "".join(f"  - {{symbol: {s}, tick: 0.01, round_lot: 100, min_price: 100, max_price: 190}}\n"
                     for s in SYMBOLS)
    h = Harness(with_global(allow_market_orders=True), instruments=parse_instruments(
        "version: 1\ninstruments:\n" + listed, "instruments.yaml"))
    assert h.new(price=REF) == 0                                        # $190.00: the top of the band
    assert h.new(price=REF + 100) == RiskReason.PRICE_BAND              # $190.01
    assert h.new(price=REF + 150) == RiskReason.TICK                    # off the tick is said first
    assert h.new(price=MARKET_PRICE, tif=TIF_IOC, side=S) == 0          # no limit price, no band
    assert Harness().new(price=REF + 100) == 0                          # no instruments file: no band
