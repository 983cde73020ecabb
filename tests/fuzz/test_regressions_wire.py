"""Wire inputs the fuzz (test_fuzz_wire.py) found: each failed before its fix.

The feed and the OMS must count and drop (or absorb) whatever the network brings; before these
fixes one packet or one venue message made them raise while writing their fixed-size records.
"""
from __future__ import annotations

import mmap

import pytest

from appliance.exchange.records import read_ouch_log
from appliance.feed.books import BookSet
from appliance.feed.outputs import BookOutputs
from appliance.feed.sequencer import DROP, MoldSequencer
from appliance.messages.catalog import BOOK_UPDATE, EXECUTION_REPORT
from appliance.oms.orders import OrderBook
from appliance.runtime.layout import parse_layout
from appliance.runtime.market_state import MarketStateReader, MarketStateWriter
from appliance.wire import itch, moldudp64 as mold, ouch
from appliance.wire.errors import WireFormatError

U64 = 1 << 64
U32_MAX = 0xFFFFFFFF

# ------------------------------------------------------------------------------------ feed

LAYOUT = parse_layout("""\
version: 1
name: fzreg
symbols: [AAPL]
segments: [{name: main, backing: 4k}]
tables:
  - {name: counters, kind: counters, segment: main, slots_per_process: 1}
  - {name: processes, kind: processes, segment: main}
  - {name: market_state, kind: market_state, segment: main}
rings: []
processes: [{name: feed, agent: "a.b:C", idle: {strategy: sleep}}]
""", "reg.yaml", available_cpus={0})


class _Ring:
    def __init__(self):
        self.buffer = bytearray(BOOK_UPDATE.size)

    def claim(self):
        return 0

    def commit(self):
        pass


def _directory() -> bytes:
    return itch.encode({"type": "R", "stock_locate": 1, "tracking_number": 0, "timestamp": 1, "stock": "AAPL",
                        "market_category": "Q", "financial_status_indicator": "N", "round_lot_size": 100,
                        "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "Z",
                        "authenticity": "P", "short_sale_threshold_indicator": "N", "ipo_flag": " ",
                        "luld_reference_price_tier": "1", "etp_flag": "N", "etp_leverage_factor": 0,
                        "inverse_indicator": "N"})


def _add(ref: int, shares: int) -> bytes:
    return itch.encode({"type": "A", "stock_locate": 1, "tracking_number": 0, "timestamp": 2,
                        "order_reference_number": ref, "buy_sell_indicator": "B", "shares": shares, "stock": "AAPL",
                        "price": 1_000_000})


CROSS_TRADE = itch.encode({"type": "Q", "stock_locate": 1, "tracking_number": 0, "timestamp": 3, "shares": 1 << 40,
                           "stock": "AAPL", "cross_price": 1_000_000, "match_number": 1, "cross_type": "O"})


@pytest.mark.parametrize("messages", [[CROSS_TRADE], [_add(1, U32_MAX), _add(2, U32_MAX)]],
                         ids=["cross-trade-of-2**40-shares", "a-level-of-2**33-shares"])
def test_regression_feed_records_saturate_share_counts(messages):
    """ITCH's cross trade shares are u64 and a level sums its orders; the BookUpdate and market-state
    share fields are u32: struct.error in BookOutputs.publish stopped the feed."""
    mm = mmap.mmap(-1, LAYOUT.segments["main"].size)
    ring = _Ring()
    outputs = BookOutputs(ring, ring.buffer, MarketStateWriter(mm, LAYOUT))
    books = BookSet(["AAPL"], 5)
    for message in [_directory()] + messages:
        raw = itch.LAYOUT_BY_BYTE[message[0]].unpack_from(message, 0)
        sid = books.apply(raw)
        if sid >= 0:
            outputs.publish(books.books[sid], 1, 0)
    view = MarketStateReader(mm, LAYOUT).read(0)
    assert U32_MAX in (view.last_trade_shares, view.bid_shares)


@pytest.mark.parametrize("sequence, count", [(U64 - 1, 1), (U64 - 2, 5), (U64 - 1, 0xFFFE)])
def test_regression_feed_sequencer_refuses_sequence_numbers_past_u64(sequence, count):
    """next_expected = sequence + count reached 2**64: the next re-request could not be packed
    (struct.error) and the u64 shared-memory counter of next_expected could not hold it."""
    requests = []
    sequencer = MoldSequencer(session=None, send_request=requests.append)
    packet = mold.session_bytes("S1") + sequence.to_bytes(8, "big") + count.to_bytes(2, "big")
    packet += (len(_directory()).to_bytes(2, "big") + _directory()) * count
    assert sequencer.accept(packet, len(packet), 1, 1) == DROP
    assert sequencer.bad_packets == 1 and all(0 <= v < U64 for v in sequencer.counter_values())
    heartbeat = mold.heartbeat("S1", 5)
    sequencer.accept(heartbeat, len(heartbeat), 2, 2)           # a gap: requests still pack
    assert requests and all(len(r) == mold.REQUEST.size for r in requests)
