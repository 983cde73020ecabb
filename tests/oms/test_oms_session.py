"""The OMS's venue session telling the venue's replay from live traffic by the OUCH outbound timestamp."""
from __future__ import annotations

import pytest

from appliance.oms.session import VenueSession
from appliance.wire.venue_time import NS_PER_DAY
from appliance.wire import ouch

DAY = 20_000 * NS_PER_DAY              # some UTC midnight, as epoch ns
LIVE_AFTER = DAY + 10 * 3_600 * 10**9  # 10:00 UTC


def _executed(since_midnight_ns: int) -> bytes:
    return ouch.encode_outbound({"type": "E", "timestamp": since_midnight_ns, "order_token": "T1",
                                 "executed_shares": 1, "execution_price": 1, "liquidity_flag": "A",
                                 "match_number": 1})


@pytest.mark.parametrize("since_midnight,live", [
    (LIVE_AFTER - DAY + 1, True),                # stamped just after the login: live
    (LIVE_AFTER - DAY, False),                   # at the instant: still replay
    (LIVE_AFTER - DAY - 10**9, False),           # a second before: replay
])
def test_stamped_live_reads_the_timestamp_from_the_outbound_header(since_midnight, live):
    session = VenueSession("127.0.0.1", 1, "ALGO1", "secret1")
    session.live_after_ns = LIVE_AFTER
    assert session._stamped_live(_executed(since_midnight)) is live


def test_stamped_before_midnight_with_a_login_after_it_is_replay_and_a_short_message_is_not_live():
    session = VenueSession("127.0.0.1", 1, "ALGO1", "secret1")
    session.live_after_ns = DAY + 60 * 10**9                 # logged in a minute after midnight
    assert session._stamped_live(_executed(NS_PER_DAY - 10**9)) is False    # 23:59:59 the day before
    assert session._stamped_live(_executed(2 * 60 * 10**9)) is True         # 00:02 today
    assert session._stamped_live(b"E" + b"\x00" * 7) is False               # shorter than the header
