"""The reference feed path (BlockScanner + BookSet + BookOutputs) and the compiled one (feed.fast.FastFeed)
side by side on the same packets, each writing its own fake ring and its own market-state table, compared
after every packet: the BookUpdate bytes, the market-state slots, every counter, each book's state and levels."""
from __future__ import annotations

import mmap
import random

from appliance.feed.books import BookSet
from appliance.feed.fast import FastFeed
from appliance.feed.outputs import BookOutputs
from appliance.messages.catalog import BOOK_DEPTH, BOOK_UPDATE, MARKET_STATE
from appliance.runtime.layout import parse_layout
from appliance.runtime.market_state import MarketStateWriter, _slot_offsets
from appliance.wire import itch, moldudp64

MIDNIGHT_NS = 1_700_000_000_000_000_000
_T_OUT = BOOK_UPDATE.offset_of["t_feed_out_ns"]
_T_UPDATE = MARKET_STATE.offset_of["t_update_ns"]


class RecordingRing:
    """A ring that keeps every committed record (bytes, ``t_feed_out_ns`` zeroed: a clock, not state, unless
    ``keep_clock``: the outputs' ``event_clock`` makes it the packet's rx); ``full`` makes claim() fail as a
    ring the strategy fell behind on."""

    def __init__(self) -> None:
        self.buffer = bytearray(BOOK_UPDATE.size)
        self.records: list[bytes] = []
        self.full = False
        self.keep_clock = False

    def claim(self) -> int:
        return -1 if self.full else 0

    def commit(self) -> None:
        record = bytearray(self.buffer)
        if not self.keep_clock:
            record[_T_OUT:_T_OUT + 8] = bytes(8)
        self.records.append(bytes(record))

    def take(self) -> list[bytes]:
        records, self.records = self.records, []
        return records


def feed_layout(symbols):
    return parse_layout(f"""\
version: 1
name: fastpair
symbols: [{", ".join(symbols)}]
segments: [{{name: main, backing: 4k}}]
tables:
  - {{name: counters, kind: counters, segment: main, slots_per_process: 1}}
  - {{name: processes, kind: processes, segment: main}}
  - {{name: market_state, kind: market_state, segment: main}}
rings: []
processes: [{{name: feed, agent: "a.b:C", idle: {{strategy: sleep}}}}]
""", "fastpair.yaml", available_cpus={0})


def _state(book) -> tuple:
    return (book.locate, book.crossed, book.locked, book.inconsistent, book.last_error, book.trading_state,
            book.last_trade_price, book.last_trade_shares, book.trades, book.last_timestamp, book.update_sequence,
            book.order_count, book.last_trade_aggressor, book.last_trade_timestamp)


class Pair:
    def __init__(self, symbols) -> None:
        symbols = list(symbols)
        layout = feed_layout(symbols)
        size = layout.segments["main"].size
        self.symbols = symbols
        self.mm = (mmap.mmap(-1, size), mmap.mmap(-1, size))
        self.slots = _slot_offsets(layout)
        self.py_ring, self.c_ring = RecordingRing(), RecordingRing()
        self.books = BookSet(symbols, BOOK_DEPTH)
        self.scanner = itch.BlockScanner(self.books.subscribed_locates, strict=False)
        self.outputs = BookOutputs(self.py_ring, self.py_ring.buffer, MarketStateWriter(self.mm[0], layout))
        self.fast = FastFeed(symbols, self.c_ring, self.c_ring.buffer, MarketStateWriter(self.mm[1], layout))
        self.outputs.midnight_ns = self.fast.midnight_ns = MIDNIGHT_NS
        self.outputs.feed_stale = self.fast.feed_stale = False
        self.packets = 0

    def packet(self, payload: bytes, mold_sequence: int = 7, rx_ns: int = 11, *, compare: bool = True) -> list[bytes]:
        """Both paths over one payload of blocks; the BookUpdates (identical, or AssertionError)."""
        self.packets += 1
        self.outputs.publish_packet(self.scanner.scan(payload, 0, len(payload), True), self.books, mold_sequence,
                                    rx_ns)
        self.fast.apply_packet(payload, 0, len(payload), mold_sequence, rx_ns)
        py, c = self.py_ring.take(), self.c_ring.take()
        if compare:
            where = f"packet {self.packets} {payload[:40].hex()}"
            assert c == py, f"{where}: BookUpdates differ\nC  {[BOOK_UPDATE.as_dict(r) for r in c]}\n" \
                            f"py {[BOOK_UPDATE.as_dict(r) for r in py]}"
            self.check(where)
        return py

    def publish_all(self, mold_sequence: int = 3) -> None:
        """Both paths' ``publish`` of every book (the agent's start, staleness changes), compared."""
        for sid in range(len(self.symbols)):
            self.outputs.publish(self.books.books[sid], mold_sequence, 0)
            self.fast.publish(self.fast.books[sid], mold_sequence, 0)
        assert self.c_ring.take() == self.py_ring.take()
        self.check("publish_all")

    def check(self, where: str = "", orders: bool = False) -> None:
        assert list(self.fast.counters) == list(self.books.counters), \
            f"{where}: counters C {self.fast.counter_values()} py {self.books.counter_values()}"
        assert list(self.fast.scan_counters) == list(self.scanner.counters), where
        assert (self.fast.published, self.fast.dropped, self.fast.messages) == \
            (self.outputs.published, self.outputs.dropped, self.outputs.messages), where
        for sid, (pb, cb) in enumerate(zip(self.books.books, self.fast.books)):
            assert _state(cb) == _state(pb), f"{where}: {pb.symbol} state C {_state(cb)} py {_state(pb)}"
            for side in (True, False):
                assert cb.levels(side) == pb.levels(side), f"{where}: {pb.symbol} levels side {side}"
                assert cb.order_counts(side) == pb.order_counts(side), f"{where}: {pb.symbol} order counts side {side}"
            if orders:
                assert cb.orders() == pb.orders(), f"{where}: {pb.symbol} orders"
                snapshots = []
                for b in (cb, pb):
                    top, counts = [-1] * (4 * BOOK_DEPTH), [-1] * (2 * BOOK_DEPTH)
                    b.snapshot_into(top, 0, counts)
                    snapshots.append((top, counts))
                assert snapshots[0] == snapshots[1], f"{where}: {pb.symbol} snapshot"
            slot = self.slots[sid]
            a = bytearray(self.mm[0][slot:slot + MARKET_STATE.size])
            b = bytearray(self.mm[1][slot:slot + MARKET_STATE.size])
            a[_T_UPDATE:_T_UPDATE + 8] = b[_T_UPDATE:_T_UPDATE + 8] = bytes(8)
            assert a == b, f"{where}: {pb.symbol} market-state slot differs"
        assert self.fast.system_event == self.books.system_event, where

    def close(self) -> None:
        self.outputs.market_state.close()
        self.fast.market_state.close()
        self.fast = None
        for m in self.mm:
            m.close()


VENUE_PRICES = {"AAPL": 1_900_000, "MSFT": 4_200_000, "SPY": 5_600_000, "QQQ": 4_800_000, "TSLA": 2_500_000,
                "IBM": 1_400_000, "AMD": 1_100_000, "NVDA": 9_000_000}


def venue_day(seed: int, operations: int = 6000) -> list[bytes]:
    """A day of the simulated exchange (``venue_packets``) as the MoldUDP64 payloads it sent, headers cut off."""
    return [p[moldudp64.HEADER_SIZE:] for p in venue_packets(seed, operations) if len(p) > moldudp64.HEADER_SIZE]


def venue_packets(seed: int, operations: int = 6000, session: str = "FASTDIFF01",
                  max_payload: int = moldudp64.DEFAULT_MAX_PAYLOAD) -> list[bytes]:
    """A day of the simulated exchange (its own matching engine and market-data packer: open, background
    flow with a halt and a resume, close) as the MoldUDP64 packets it sent (end of session included);
    ``max_payload``: its packer's limit (smaller: more, shorter packets)."""
    from appliance.exchange.participants import BackgroundFlow
    from appliance.exchange.venue import Venue

    packets: list[bytes] = []
    venue = Venue([(s, 100) for s in VENUE_PRICES], {}, session=session, send_packet=packets.append, max_payload=max_payload,
                  background=BackgroundFlow(VENUE_PRICES, rate=0, seed=seed))
    venue.open()
    venue.run_background(operations // 2)
    venue.halt("MSFT")
    venue.run_background(operations // 4)
    venue.resume("MSFT")
    venue.run_background(operations // 4)
    venue.close()
    venue.publisher.flush()
    return [bytes(p) for p in packets]


# ---------------------------------------------------------------- ITCH 5.0 messages by hand (the codec's table)

SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ"]
U32 = 0xFFFFFFFF


def message(kind: str, locate: int = 0, ts: int = 0, **fields) -> bytes:
    if kind == "R":
        fields = {"market_category": "Q", "financial_status_indicator": "N", "round_lot_size": 100,
                  "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "", "authenticity": "P",
                  "short_sale_threshold_indicator": "N", "ipo_flag": " ", "luld_reference_price_tier": "1",
                  "etp_flag": "N", "etp_leverage_factor": 0, "inverse_indicator": "N", **fields}
    return itch.encode({"type": kind, "stock_locate": locate, "tracking_number": 0, "timestamp": ts, **fields})


def blocks(*messages: bytes) -> bytes:
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def directory(stock: str, locate: int, ts: int = 1) -> bytes:
    return message("R", locate, ts, stock=stock)


def add(locate, ref, side, shares, price, stock="AAPL", ts=5, mpid=None) -> bytes:
    if mpid is not None:
        return message("F", locate, ts, order_reference_number=ref, buy_sell_indicator=side, shares=shares,
                       stock=stock, price=price, attribution=mpid)
    return message("A", locate, ts, order_reference_number=ref, buy_sell_indicator=side, shares=shares,
                   stock=stock, price=price)


def execute(locate, ref, shares, ts=6):
    return message("E", locate, ts, order_reference_number=ref, executed_shares=shares, match_number=1)


def execute_at(locate, ref, shares, price, printable="Y", ts=6):
    return message("C", locate, ts, order_reference_number=ref, executed_shares=shares, match_number=2,
                   printable=printable, execution_price=price)


def cancel(locate, ref, shares, ts=7):
    return message("X", locate, ts, order_reference_number=ref, canceled_shares=shares)


def delete(locate, ref, ts=7):
    return message("D", locate, ts, order_reference_number=ref)


def replace(locate, old, new, shares, price, ts=8):
    return message("U", locate, ts, original_order_reference_number=old, new_order_reference_number=new,
                   shares=shares, price=price)


def trade(locate, shares, price, stock="AAPL", ts=9, side="B"):
    return message("P", locate, ts, order_reference_number=0, buy_sell_indicator=side, shares=shares, stock=stock,
                   price=price, match_number=3)


def cross(locate, shares, price, stock="AAPL", ts=9):
    return message("Q", locate, ts, shares=shares, stock=stock, cross_price=price, match_number=4, cross_type="O")


def action(locate, state, stock="AAPL", ts=3):
    return message("H", locate, ts, stock=stock, trading_state=state, reserved=" ", reason="")


IGNORED = [message("Y", 1, 1, stock="AAPL", reg_sho_action="0"),
           message("L", 1, 1, mpid="ABCD", stock="AAPL", primary_market_maker="Y", market_maker_mode="N",
                   market_participant_state="A"),
           message("V", 0, 1, level_1=1, level_2=2, level_3=3), message("W", 0, 1, breached_level="1"),
           message("I", 1, 1, paired_shares=1, imbalance_shares=2, imbalance_direction="B", stock="AAPL",
                   far_price=1, near_price=2, current_reference_price=3, cross_type="O",
                   price_variation_indicator="L"),
           message("N", 1, 1, stock="AAPL", interest_flag="B")]


def random_message(rng: random.Random) -> bytes:
    kind = rng.choice("AAAAFEECXXDDUUPQRHSBYV")
    locate = rng.choice((1, 1, 2, 3, 65535, 0, 4))
    ref = rng.randrange(12)
    price = rng.choice((100, 101, 102, 99, 0, U32, rng.randrange(1, 200)))
    shares = rng.choice((0, 1, 5, 100, U32, rng.randrange(1, 300)))
    ts = rng.randrange(1 << 48)
    stock = rng.choice(SYMBOLS + ["ZZZ"])
    if kind in "AF":
        return add(locate, ref, rng.choice("BS"), shares, price, stock, ts, "MPID" if kind == "F" else None)
    if kind == "E":
        return execute(locate, ref, shares, ts)
    if kind == "C":
        return execute_at(locate, ref, shares, price, rng.choice("YN"), ts)
    if kind == "X":
        return cancel(locate, ref, shares, ts)
    if kind == "D":
        return delete(locate, ref, ts)
    if kind == "U":
        return replace(locate, ref, rng.randrange(12), shares, price, ts)
    if kind == "P":
        return trade(locate, shares, price, stock, ts, rng.choice("BBSS X"))
    if kind == "Q":
        return cross(locate, rng.choice((0, 1, 1 << 40, (1 << 64) - 1)), price, stock, ts)
    if kind == "R":
        return directory(stock, locate, ts)
    if kind == "H":
        return action(locate, rng.choice("THPQ "), stock, ts)
    if kind == "S":
        return message("S", 0, ts, event_code=rng.choice("OSQMEC"))
    if kind == "B":
        return message("B", locate, ts, match_number=1)
    return rng.choice(IGNORED)


def random_payload(rng: random.Random) -> bytes:
    payload = bytearray(blocks(*(random_message(rng) for _ in range(rng.randrange(1, 30)))))
    roll = rng.randrange(6)
    if roll == 0 and payload:
        del payload[rng.randrange(len(payload)):]
    elif roll == 1 and payload:
        for _ in range(rng.randrange(1, 4)):
            payload[rng.randrange(len(payload))] = rng.randrange(256)
    elif roll == 2:
        payload = bytearray(rng.randbytes(rng.randrange(64)))
    return bytes(payload)
