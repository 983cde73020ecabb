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
from appliance.oms.orders import OrderRegistry
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


# ------------------------------------------------------------------------------------ OMS

AAPL, TOKEN = b"AAPL    ", b"AB0000000001  "


def _report_packer(book_ref: list):
    """The values OmsAgent._report packs into an ExecutionReport, in its order."""
    scratch = bytearray(EXECUTION_REPORT.size)

    def report(event, order, shares, price, match=0, reason=0, source=0, t_exchange_ns=0, liquidity=0):
        p = book_ref[0].positions
        sid = order.symbol_id
        EXECUTION_REPORT.pack_into(scratch, 0, order.client_order_id, order.orig_client_order_id, order.order_ref,
                                   match, order.strategy_id, sid, event, order.side, reason, source, shares, price,
                                   max(0, order.leaves), p.position[sid], p.cost_basis[sid], p.realized_pnl[sid],
                                   t_exchange_ns, 1, liquidity)
    return report


def _book() -> OrderRegistry:
    holder: list = []
    book = OrderRegistry(["AAPL"], report=_report_packer(holder))
    holder.append(book)
    book.add_new(TOKEN, 1, 7, 0, AAPL, ord("B"), 300, 1_900_000, 99998)
    return book


def _accepted(shares: int = 300, timestamp: int = 5) -> bytes:
    return ouch.encode_outbound({"type": "A", "timestamp": timestamp, "order_token": TOKEN.decode(),
                                 "buy_sell_indicator": "B", "shares": shares, "stock": "AAPL", "price": 1_900_000,
                                 "time_in_force": 99998, "firm": "ALGO", "display": "Y", "order_reference_number": 9,
                                 "capacity": "P", "intermarket_sweep_eligibility": "N", "minimum_quantity": 0,
                                 "cross_type": "N", "order_state": "L", "bbo_weight_indicator": " "})


def _executed(shares: int, price: int, match: int = 1) -> bytes:
    return ouch.encode_outbound({"type": "E", "timestamp": 6, "order_token": TOKEN.decode(), "executed_shares": shares,
                                 "execution_price": price, "liquidity_flag": "A", "match_number": match})


def _canceled(shares: int) -> bytes:
    return ouch.encode_outbound({"type": "C", "timestamp": 7, "order_token": TOKEN.decode(), "decrement_shares": shares,
                                 "reason": "U"})


@pytest.mark.parametrize("messages", [
    [_accepted(timestamp=U64 - 1)],                                   # t_exchange_ns = midnight + 2**64 - 1
    [_accepted(), _executed(U32_MAX, 0x7FFFFFFF), _executed(U32_MAX, 0x7FFFFFFF, 2)],   # cost basis past i64
    [_executed(400, 1_900_000), _accepted(300), _canceled(100)],      # fills before the ack: leaves -100
], ids=["timestamp-past-a-day", "cost-basis-past-i64", "fill-before-accepted"])
def test_regression_oms_execution_reports_fit_their_record(messages):
    """Each made OmsAgent._report raise struct.error (the OMS stopped) on one venue message."""
    book = _book()
    for message in messages:
        assert book.apply_ouch(message, 1_764_000_000_000_000_000) == 1


# ------------------------------------------------------------------------------------ exchange records

@pytest.mark.parametrize("direction", [b"\xff", b"\x00", b"X"])
def test_regression_ouch_log_direction_must_be_i_or_o(tmp_path, direction):
    """A damaged direction byte: UnicodeDecodeError (0xff), or a record of neither direction."""
    path = tmp_path / "ouch-F.log"
    path.write_bytes((9 + 3).to_bytes(2, "big") + direction + (1).to_bytes(8, "big") + b"abc")
    with pytest.raises(WireFormatError, match="direction") as caught:
        list(read_ouch_log(path))
    assert caught.value.offset == 2
