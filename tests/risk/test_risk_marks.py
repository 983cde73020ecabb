"""Issue 22, item 4: the loss and drawdown checks mark positions only at prices from live,
uncrossed books. The incident: forged market data made every book stale, crossed and
inconsistent, and the P&L swung by $125,000 because marks came from the forged book."""
from __future__ import annotations

import pytest
import yaml

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_STALE
from appliance.messages.codes import ExecEvent, RiskReason, Side
from appliance.risk.checks import RiskEngine
from appliance.risk.limits import parse_limits
from appliance.risk.paper_market import PaperMarket, limits_document

SYMBOLS = ["AAPL", "MSFT"]
AAPL = 0
REF = 1_900_000                      # $190.0000
NOW = 1_700_000_000_000_000_000
DOLLAR = 10_000
FORGED_BID = 9_999_900               # $999.99


def engine(**global_overrides) -> tuple[RiskEngine, PaperMarket]:
    market = PaperMarket(SYMBOLS)
    market.quote(AAPL, REF - 100, REF + 100)
    market.quote(1, 4_199_900, 4_200_100)
    limits = parse_limits(yaml.safe_dump(limits_document(SYMBOLS, **global_overrides)), SYMBOLS, "limits.yaml")
    e = RiskEngine(limits, SYMBOLS, market.reader)
    e.control.start(NOW)
    e.mark_ready(NOW)
    # the OMS says: long 1,000 AAPL bought at $190
    e.on_report(int(ExecEvent.BROKEN), 1, 0, AAPL, int(Side.BUY), 0, REF, 0, 1000, 1000 * REF, 0, 7, NOW)
    e.refresh_marks()
    return e, market


@pytest.mark.parametrize("flags,bid,ask", [
    (BOOK_FLAG_STALE | BOOK_FLAG_CROSSED | BOOK_FLAG_INCONSISTENT, FORGED_BID, REF + 100),   # the incident
    (BOOK_FLAG_STALE, FORGED_BID - 100, FORGED_BID + 100),          # stale, not crossed: a high forged quote
    (BOOK_FLAG_STALE | BOOK_FLAG_INCONSISTENT, 100, 300),           # stale, a low forged quote
    (BOOK_FLAG_CROSSED, FORGED_BID, REF + 100),
])
def test_a_forged_book_moves_neither_the_pnl_nor_the_days_peak(flags, bid, ask):
    e, market = engine(max_daily_loss=5_000, max_drawdown=5_000)
    pnl, peak = e.portfolio.pnl(), e.peak_pnl
    market.quote(AAPL, bid, ask, flags=flags)
    assert e.housekeeping(NOW) == 0                   # no loss limit tripped by a forged low price
    assert e.portfolio.pnl() == pnl and e.peak_pnl == peak       # nor a peak raised by a forged high one
    assert e.marks_old == 1 and not e.control.latched
    # the real book comes back a dollar lower: marked at once, no drawdown from a forged peak
    market.quote(AAPL, REF - 10_100, REF - 9_900)
    assert e.housekeeping(NOW) == 0 and e.marks_old == 0
    assert e.portfolio.pnl() == pnl - 1000 * DOLLAR


def test_a_restarted_risk_marks_at_the_last_good_price_the_feed_kept():
    e, market = engine()
    market.quote(AAPL, FORGED_BID, REF + 100, flags=BOOK_FLAG_STALE | BOOK_FLAG_CROSSED)
    limits = e.limits
    fresh = RiskEngine(limits, SYMBOLS, market.reader)           # risk restarted while the book is bad
    fresh.control.start(NOW)
    fresh.on_report(int(ExecEvent.BROKEN), 1, 0, AAPL, int(Side.BUY), 0, REF, 0, 1000, 1000 * REF, 0, 7, NOW)
    fresh.mark_ready(NOW)
    assert fresh.portfolio.mark[AAPL] == REF and fresh.marks_old == 1
    assert fresh.portfolio.pnl() == 0


def test_orders_on_a_bad_book_are_still_refused_with_the_books_reason():
    e, market = engine()
    market.quote(AAPL, REF - 100, REF + 100, flags=BOOK_FLAG_INCONSISTENT)       # inconsistent without stale
    assert e.decide(1, 5001, 0, AAPL, int(Side.BUY), 100, REF, 99998, 7, NOW) == RiskReason.BOOK_STALE
