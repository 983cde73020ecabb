"""Every wire decoder fed mutated bytes: ``WireFormatError`` (counted and dropped) or nothing, never another.

Decoders alone: ITCH (dict decode, the block scanner in C and in Python, which must agree),
MoldUDP64 (packets, requests, the feed's packet scanner, the re-request server), SoupBinTCP
(packets, the stream reader, the client and server session state machines), OUCH (both
directions, the venue's ``parse_inbound``), the ITCH day-file reader, the exchange's OUCH log
reader. And the paths behind them, fed whole streams of valid-but-hostile messages with
byte-level damage on top: the feed (sequencer, scanner, books, the BookUpdate and market-state
records it writes), the venue (``client_message``), the OMS's order book (``apply_ouch``, and
the ExecutionReport record it makes of each event).

Inputs are valid messages mutated at the byte level (so the fuzz gets past the first length
check) plus some noise. Supersedes tests/wire/test_wire_fuzz.py (its checks are kept here).
"""
from __future__ import annotations

import io
import mmap
import random

import pytest

from appliance.exchange.order_entry import parse_inbound
from appliance.exchange.records import read_ouch_log
from appliance.exchange.market_data import MessageStore, RerequestServer
from appliance.exchange.venue import Venue
from appliance.feed.books import BookSet
from appliance.feed.outputs import BookOutputs
from appliance.feed.sequencer import MoldSequencer
from appliance.messages.catalog import BOOK_UPDATE, EXECUTION_REPORT
from appliance.oms.orders import OrderRegistry
from appliance.runtime.layout import parse_layout
from appliance.runtime.market_state import MarketStateWriter
from appliance.wire import itch, moldudp64 as mold, ouch, soupbintcp as soup, soupbintcp_session as soup_session
from appliance.wire.dayfile import DayFileReader
from appliance.wire.errors import WireFormatError

import fuzzkit

THIS = "tests/fuzz/test_fuzz_wire.py"
BACKENDS = [False, True] if itch._itch_fast is not None else [False]
U64 = 1 << 64


def _check_wire_error(exc: WireFormatError, data) -> None:
    size = len(data) if isinstance(data, (bytes, bytearray)) else 1 << 30
    assert isinstance(exc.offset, int) and 0 <= exc.offset <= size + 1 and exc.reason, (exc.offset, exc.reason)


# ------------------------------------------------------------------------------------ valid seeds

SYMBOLS = ["AAPL", "MSFT"]
ORDER_REFS = [1, 2, 3, 4, 5, 1 << 40, U64 - 1]
PRICES = [0, 1, 100, 1_900_000, 0x7FFFFFFE, 0x7FFFFFFF, 0xFFFFFFFF]
SHARES = [0, 1, 100, 1000, 0xFFFFFFFF]


def _alpha(rng, *options):
    return rng.choice(options)


def itch_message(rng: random.Random, locate: int | None = None) -> bytes:
    """One valid ITCH message with hostile values: refs that exist and do not, prices and share
    counts at their limits, locates the directory gave and did not give."""
    locate = rng.choice((1, 2, 2, 3, 0, 65535)) if locate is None else locate
    ts = rng.choice((0, 1, 34_200_000_000_000, (1 << 48) - 1))
    head = {"stock_locate": locate, "tracking_number": rng.randrange(3), "timestamp": ts}
    stock = _alpha(rng, "AAPL", "MSFT", "ZZZZ", "", "AAPL    ")
    kind = rng.choice("AAAFEECXDUPQHRSBLY")
    side = _alpha(rng, "B", "S", "B", "S", " ", "X")
    ref, price, shares = rng.choice(ORDER_REFS), rng.choice(PRICES), rng.choice(SHARES)
    if kind in "AF":
        fields = {"order_reference_number": ref, "buy_sell_indicator": side, "shares": shares, "stock": stock,
                  "price": price}
        if kind == "F":
            fields["attribution"] = "MPID"
    elif kind == "E":
        fields = {"order_reference_number": ref, "executed_shares": shares, "match_number": rng.choice(ORDER_REFS)}
    elif kind == "C":
        fields = {"order_reference_number": ref, "executed_shares": shares, "match_number": 7,
                  "printable": _alpha(rng, "Y", "N", "?"), "execution_price": price}
    elif kind == "X":
        fields = {"order_reference_number": ref, "canceled_shares": shares}
    elif kind == "D":
        fields = {"order_reference_number": ref}
    elif kind == "U":
        fields = {"original_order_reference_number": ref, "new_order_reference_number": rng.choice(ORDER_REFS),
                  "shares": shares, "price": price}
    elif kind == "P":
        fields = {"order_reference_number": ref, "buy_sell_indicator": side, "shares": shares, "stock": stock,
                  "price": price, "match_number": 9}
    elif kind == "Q":
        fields = {"shares": rng.choice((0, 1, 100, 0xFFFFFFFF, 1 << 32, U64 - 1)), "stock": stock,
                  "cross_price": price, "match_number": 9, "cross_type": _alpha(rng, "O", "C", "H", "I")}
    elif kind == "H":
        fields = {"stock": stock, "trading_state": _alpha(rng, "T", "H", "P", "Q", " ", "\x7f"), "reserved": " ",
                  "reason": "X"}
    elif kind == "R":
        fields = {"stock": stock, "market_category": "Q", "financial_status_indicator": "N",
                  "round_lot_size": rng.choice((0, 1, 100, 0xFFFFFFFF)), "round_lots_only": "N",
                  "issue_classification": "C", "issue_sub_type": "Z", "authenticity": "P",
                  "short_sale_threshold_indicator": "N", "ipo_flag": " ", "luld_reference_price_tier": "1",
                  "etp_flag": "N", "etp_leverage_factor": 0, "inverse_indicator": "N"}
    elif kind == "S":
        fields = {"event_code": _alpha(rng, "O", "S", "Q", "M", "E", "C", "?")}
    elif kind == "B":
        fields = {"match_number": 9}
    elif kind == "L":
        fields = {"mpid": "MPID", "stock": stock, "primary_market_maker": "Y", "market_maker_mode": "N",
                  "market_participant_state": "A"}
    else:
        fields = {"stock": stock, "reg_sho_action": "0"}
    return itch.encode({"type": kind, **head, **fields})


def itch_seeds(rng: random.Random) -> list[bytes]:
    seeds = [itch_message(rng) for _ in range(60)]
    for layout in itch.MESSAGES:                       # every type, random contents
        seeds.append(layout.type_byte + rng.randbytes(layout.size - 1))
    return seeds


def directory(symbol: str, locate: int) -> bytes:
    return itch.encode({"type": "R", "stock_locate": locate, "tracking_number": 0, "timestamp": 1, "stock": symbol,
                        "market_category": "Q", "financial_status_indicator": "N", "round_lot_size": 100,
                        "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "Z",
                        "authenticity": "P", "short_sale_threshold_indicator": "N", "ipo_flag": " ",
                        "luld_reference_price_tier": "1", "etp_flag": "N", "etp_leverage_factor": 0,
                        "inverse_indicator": "N"})


def frame(*messages: bytes) -> bytes:
    out = bytearray()
    for m in messages:
        out += len(m).to_bytes(2, "big") + m
    return bytes(out)


_RNG = random.Random(7)
ITCH_SEEDS = itch_seeds(_RNG)
BLOCK_SEEDS = [frame(*_RNG.sample(ITCH_SEEDS, 4)) for _ in range(40)]
MOLD_SEEDS = [p for _ in range(20) for p in mold.pack_messages("S1", _RNG.choice((1, 5, 1 << 40, U64 - 100)),
                                                                  _RNG.sample(ITCH_SEEDS, 5), 120)]
MOLD_SEEDS += [mold.heartbeat("S1", 9), mold.end_of_session("S1", 9), mold.request("S1", 3, 4),
               mold.request("S1", U64 - 1, 0xFFFE)]


# ------------------------------------------------------------------------------------ ITCH

def test_fuzz_itch_decode():
    fuzzkit.run_cases("itch-decode", 5000, lambda rng: fuzzkit.byte_inputs(rng, ITCH_SEEDS), itch.decode,
                      expected=(WireFormatError,), on_error=_check_wire_error, test_file=THIS,
                      soak_share=0.12)


def _scan_all(scanner, data, final, use_c):
    walk = scanner.scan(data, final=final)
    out = list(walk)
    return out, walk.offset


def test_fuzz_itch_block_scanner_c_and_python_agree():
    """Lenient scans never raise, walk to the end (or the start of an incomplete block) and count the
    same in C and Python; strict scans raise WireFormatError at the same offset in both."""
    maps = [None, itch.BlockScanner.locate_map(range(0, 65536, 3)), itch.BlockScanner.locate_map([1, 2])]

    def make(rng):
        return fuzzkit.byte_inputs(rng, BLOCK_SEEDS, max_random=300), rng.randrange(len(maps)), rng.random() < 0.5

    def check(case):
        data, which, final = case
        results, strict_errors = [], []
        for use_c in BACKENDS:
            lenient = itch.BlockScanner(maps[which], use_c=use_c)
            messages, offset = _scan_all(lenient, data, final, use_c)
            assert offset <= len(data) and (offset == len(data) or (not final and len(data) - offset < 2 + 0xFFFF))
            results.append((messages, offset, list(lenient.counters)))
            strict = itch.BlockScanner(maps[which], strict=True, use_c=use_c)
            try:
                _scan_all(strict, data, final, use_c)
                strict_errors.append(None)
            except WireFormatError as exc:
                _check_wire_error(exc, data)
                strict_errors.append(exc.offset)
        assert all(r == results[0] for r in results), results
        assert all(e == strict_errors[0] for e in strict_errors), strict_errors
        return "malformed" if results[0][2][itch.MALFORMED] else "clean"

    fuzzkit.run_cases("itch-scan", 3000, make, check, test_file=THIS, soak_share=0.1)


@pytest.mark.parametrize("use_c", BACKENDS)
def test_fuzz_itch_day_file(use_c, tmp_path):
    """Strict: raw tuples or WireFormatError with a file offset; lenient: never raises; dicts:
    WireFormatError for text that is not ASCII."""
    seeds = [frame(*_RNG.sample(ITCH_SEEDS, 6)) for _ in range(30)]

    def make(rng):
        return fuzzkit.byte_inputs(rng, seeds, max_random=300), rng.choice((1, 2, 17, 64, 1 << 20))

    def check(case):
        data, chunk = case
        strict = DayFileReader(io.BytesIO(data), chunk_size=chunk, use_c=use_c)
        lenient = DayFileReader(io.BytesIO(data), chunk_size=chunk, strict=False, use_c=use_c)
        try:
            list(lenient.iter_raw())
        except WireFormatError as exc:      # only a file that ends mid-message
            assert "ends mid-message" in exc.reason, exc
        try:
            list(strict)                    # dicts
        except WireFormatError as exc:
            _check_wire_error(exc, data)
            return "error"

    fuzzkit.run_cases(f"itch-dayfile-{'c' if use_c else 'py'}", 1000, make, check, test_file=THIS, soak_share=0.03)


# ------------------------------------------------------------------------------------ MoldUDP64

def test_fuzz_moldudp64_packets_requests_and_the_feed_scanner():
    store = MessageStore()
    for m in ITCH_SEEDS[:50]:
        store.append(m)
    answers = []
    server = RerequestServer("S1", store, lambda packet, address: answers.append(packet))
    tracker = mold.SequenceTracker()
    subscribed = itch.BlockScanner.locate_map([1, 2, 5])
    feeds = [mold.FeedPacketScanner(subscribed, use_c=use_c) for use_c in BACKENDS]

    def check(data):
        results = []
        for feed in feeds:
            skip = len(data) % 4
            messages = list(feed.scan(data, len(data), skip))      # never raises
            results.append((messages, feed.message_count, feed.bad_packets))
        assert all(r == results[0] for r in results), results
        server.handle(data, ("127.0.0.1", 1))                         # counts and drops a bad request
        for answer in answers:
            mold.decode_packet(answer)
        answers.clear()
        try:
            mold.decode_request(data)
        except WireFormatError as exc:
            _check_wire_error(exc, data)
        session, sequence, count = mold.decode_header(data)
        tracker.accept(sequence, count)
        mold.decode_packet(data)

    fuzzkit.run_cases("moldudp64", 5000, lambda rng: fuzzkit.byte_inputs(rng, MOLD_SEEDS), check,
                      expected=(WireFormatError,), on_error=_check_wire_error, test_file=THIS,
                      soak_share=0.12)


# ------------------------------------------------------------------------------------ the feed path

class _Ring:
    """The BookUpdate ring as the feed uses it: claim a slot, pack into the segment, commit."""

    def __init__(self):
        self.buffer = bytearray(BOOK_UPDATE.size)

    def claim(self):
        return 0

    def commit(self):
        pass


FEED_LAYOUT = parse_layout("""\
version: 1
name: fzfeed
symbols: [AAPL, MSFT]
segments: [{name: main, backing: 4k}]
tables:
  - {name: counters, kind: counters, segment: main, slots_per_process: 1}
  - {name: processes, kind: processes, segment: main}
  - {name: market_state, kind: market_state, segment: main}
rings: []
processes: [{name: feed, agent: "a.b:C", idle: {strategy: sleep}}]
""", "feed.yaml", available_cpus={0})


def _day_packets(rng: random.Random) -> list[bytes]:
    """A session: the directory, then valid-but-hostile order flow, packed by the exchange's packer."""
    messages = [directory("AAPL", 1), directory("MSFT", 2)] + [itch_message(rng) for _ in range(rng.randint(5, 40))]
    first = rng.choice((1, 1, 1, 1 << 32, U64 - 200))
    packets = mold.pack_messages("SESSION1", first, messages, rng.choice((60, 200, 1400)))
    packets.append(mold.heartbeat("SESSION1", first + len(messages)))
    return packets


def _damage(rng: random.Random, packets: list[bytes]) -> list[bytes]:
    """Loss, duplication, reordering, foreign and hostile headers, byte damage: what a network
    and a broken (or malicious) sender can do."""
    out = list(packets)
    for _ in range(rng.randint(0, 6)):
        if not out:
            break
        i = rng.randrange(len(out))
        roll = rng.randrange(8)
        if roll == 0:
            del out[i]
        elif roll == 1:
            out.insert(rng.randrange(len(out) + 1), out[i])
        elif roll == 2:
            j = rng.randrange(len(out))
            out[i], out[j] = out[j], out[i]
        elif roll == 3:
            out[i] = fuzzkit.mutate_bytes(rng, out[i], out)
        elif roll == 4:                 # a header from elsewhere: sequence numbers at the edge of u64
            seq = rng.choice((0, 1, 2, 1 << 63, U64 - 1, U64 - 2))
            out[i] = mold.session_bytes(rng.choice(("SESSION1", "OTHER"))) + seq.to_bytes(8, "big") + out[i][18:]
        elif roll == 5:
            out.insert(i, rng.choice((mold.heartbeat("SESSION1", rng.choice((1, 10**6, U64 - 1))),
                                      mold.end_of_session("SESSION1", rng.choice((1, 50, U64 - 1))))))
        elif roll == 6:                 # count field damage
            count = rng.choice((0, 1, 0xFFFE, 0xFFFF))
            out[i] = out[i][:18] + count.to_bytes(2, "big") + out[i][20:]
        else:
            out[i] = fuzzkit.byte_inputs(rng, packets)
    return out


def _feed_pipeline(packets: list[bytes], outputs: BookOutputs) -> str:
    """What FeedAgent._on_packet/_apply/_slow_checks/_publish_counters do, without the sockets."""
    books = BookSet(SYMBOLS, 5)
    scanner = itch.BlockScanner(books.subscribed_locates, strict=False)
    requests = []
    sequencer = MoldSequencer(session=None, send_request=requests.append, max_buffered_packets=8,
                              request_timeout_ns=1000, max_retries=2)

    def publish(buffer, start, nbytes, last_sequence, rx_ns):
        outputs.publish_packet(scanner.scan(buffer, start, nbytes, True), books, last_sequence, rx_ns)

    def apply(buffer, nbytes, skip, rx_ns):
        _session, sequence, count = mold.HEADER.struct.unpack_from(buffer, 0)
        publish(buffer, mold.block_offset(buffer, nbytes, skip), nbytes, sequence + count - 1, rx_ns)

    now = 1_000_000
    for packet in packets:
        now += 700
        skip = sequencer.accept(packet, len(packet), now, now)
        if skip >= 0:
            publish(packet, sequencer.payload_offset, len(packet), sequencer.next_expected - 1, now)
            if sequencer.pending:
                for held, size, skipped, rx in sequencer.drain():
                    apply(held, size, skipped, rx)
        if sequencer.gap_open and sequencer.poll(now):
            for held, size, skipped, rx in sequencer.drain():
                apply(held, size, skipped, rx)
    for request in requests:                       # 20 bytes: the session adopted, first sequence, count
        assert len(request) == mold.REQUEST.size and 0 < int.from_bytes(request[18:], "big") <= mold.MAX_BLOCKS
    for value in sequencer.counter_values():      # what the agent stores in u64 shared-memory counters
        assert 0 <= value < U64, sequencer.counter_values()
    for book in books.books:
        outputs.publish(book, sequencer.next_expected - 1, 0)
    return "lost" if sequencer.lost else "gap" if sequencer.gap_open else "ok"


def test_fuzz_feed_path():
    """Streams of packets through the sequencer, the scanner, the books and the records the feed
    writes: nothing may raise (bad input is counted, gaps are re-requested or given up)."""
    mm = mmap.mmap(-1, FEED_LAYOUT.segments["main"].size)
    ring = _Ring()
    outputs = BookOutputs(ring, ring.buffer, MarketStateWriter(mm, FEED_LAYOUT))
    outputs.feed_stale = False
    fuzzkit.run_cases("feed-path", 150, lambda rng: _damage(rng, _day_packets(rng)),
                      lambda packets: _feed_pipeline(packets, outputs), test_file=THIS, soak_share=0.02)


# ------------------------------------------------------------------------------------ SoupBinTCP

LOGIN_BYTES = soup.login_request("ALICE", "secret", "SESS1", 5)
ACCEPTED_BYTES = soup.login_accepted("SESS1", 17)
SOUP_SEEDS = [LOGIN_BYTES, ACCEPTED_BYTES, soup.login_rejected("A"), soup.sequenced_data(b"hello"),
              soup.unsequenced_data(b"abc"), soup.debug("hi"), soup.SERVER_HEARTBEAT_BYTES,
              soup.CLIENT_HEARTBEAT_BYTES, soup.END_OF_SESSION_BYTES, soup.LOGOUT_REQUEST_BYTES,
              soup.login_request("ALICE", "secret", "", 0), soup.login_request("BOB", "x", "SESS1", 10**19),
              LOGIN_BYTES + soup.unsequenced_data(b"x" * 40) * 3, ACCEPTED_BYTES + soup.sequenced_data(b"m") * 3]


def test_fuzz_soupbintcp_packets():
    fuzzkit.run_cases("soupbintcp-packet", 5000, lambda rng: fuzzkit.byte_inputs(rng, SOUP_SEEDS),
                      soup.decode_packet, expected=(WireFormatError,), on_error=_check_wire_error, test_file=THIS,
                      soak_share=0.12)


def test_fuzz_soupbintcp_sessions():
    """A byte stream cut anywhere, into both state machines, with time passing: they turn any of it
    into events (ProtocolError included) and never raise."""
    store = soup_session.SequencedStore("SESS1")
    for i in range(5):
        store.append(b"m%d" % i)

    def make(rng):
        stream = b"".join(fuzzkit.byte_inputs(rng, SOUP_SEEDS, random_share=0.05) for _ in range(rng.randint(1, 4)))
        return fuzzkit.chunks(rng, stream)

    def check(pieces):
        server = soup_session.ServerSession(lambda user: store if user != "NOBODY" else None, lambda u, p: u != "MALLORY")
        client = soup_session.ClientSession("ALICE", "secret", "SESS1", 3)
        server.connection_made(0)
        client.connect(0)
        client.take_outbound()
        events = 0
        for t, piece in enumerate(pieces, 1):
            events += len(server.receive(piece, t * 10**8)) + len(server.tick(t * 10**8))
            events += len(client.receive(piece, t * 10**8)) + len(client.tick(t * 10**8))
            server.take_outbound()
            client.take_outbound()
        return client.state

    fuzzkit.run_cases("soupbintcp-sessions", 1500, make, check, test_file=THIS, soak_share=0.08)


def test_fuzz_soupbintcp_stream_reader():
    def make(rng):
        return fuzzkit.chunks(rng, b"".join(fuzzkit.byte_inputs(rng, SOUP_SEEDS) for _ in range(rng.randint(1, 5))))

    def check(pieces):
        reader = soup.PacketReader()
        for piece in pieces:
            reader.feed(piece)
            while (packet := reader.next_packet()) is not None:
                layout, offset, length = packet
                assert offset + 2 + length <= len(reader.buffer)

    fuzzkit.run_cases("soupbintcp-reader", 3000, make, check, expected=(WireFormatError,), test_file=THIS,
                      soak_share=0.1)


# ------------------------------------------------------------------------------------ OUCH

def _ouch_seeds(rng: random.Random) -> list[bytes]:
    seeds = [ouch.encode_inbound({"type": "O", "order_token": "T1", "buy_sell_indicator": "B", "shares": 300,
                                  "stock": "AAPL", "price": 0x7FFFFFFF, "time_in_force": 99998, "firm": "ALGO",
                                  "display": "Y", "capacity": "P", "intermarket_sweep_eligibility": "N",
                                  "minimum_quantity": 0, "cross_type": "N", "customer_type": "R"}),
             ouch.encode_inbound({"type": "X", "order_token": "T1", "shares": 0}),
             ouch.encode_inbound({"type": "U", "existing_order_token": "T1", "replacement_order_token": "T2",
                                  "shares": 100, "price": 1_000_000, "time_in_force": 0, "display": "Y",
                                  "intermarket_sweep_eligibility": "N", "minimum_quantity": 0}),
             ouch.encode_inbound({"type": "M", "order_token": "T1", "buy_sell_indicator": "S", "shares": 1})]
    seeds += [lay.type_byte + rng.randbytes(lay.size - 1) for lay in ouch.OUTBOUND.layouts + ouch.INBOUND.layouts]
    return seeds


OUCH_SEEDS = _ouch_seeds(_RNG)


def test_fuzz_ouch_both_directions_and_the_venue_parser():
    def check(data):
        outcomes = []
        for decode in (ouch.decode_inbound, ouch.decode_outbound, parse_inbound):
            try:
                decode(data)
                outcomes.append("ok")
            except WireFormatError as exc:
                _check_wire_error(exc, data)
                outcomes.append("error")
        return "/".join(outcomes)

    fuzzkit.run_cases("ouch", 5000, lambda rng: fuzzkit.byte_inputs(rng, OUCH_SEEDS), check, test_file=THIS,
                      soak_share=0.12)


class _Clock:
    def __init__(self):
        self.now = 1_764_000_000_123_456_789

    def __call__(self):
        self.now += 1000
        return self.now


def _inbound(rng: random.Random) -> bytes:
    token = rng.choice(("T1", "T2", "T3", "", "T1 ", "X" * 14, " T1"))
    kind = rng.choice("OOOUXM")
    shares, price = rng.choice(SHARES), rng.choice(PRICES)
    tif = rng.choice((0, 1, 99998, 99999, 0xFFFFFFFF))
    if kind == "O":
        return ouch.encode_inbound({"type": "O", "order_token": token, "buy_sell_indicator": rng.choice("BSST "),
                                    "shares": shares, "stock": rng.choice(("AAPL", "MSFT", "ZZZ", "")), "price": price,
                                    "time_in_force": tif, "firm": "ALGO", "display": rng.choice("YNAI "),
                                    "capacity": "P", "intermarket_sweep_eligibility": rng.choice("NY"),
                                    "minimum_quantity": rng.choice((0, 1, 0xFFFFFFFF)), "cross_type": "N",
                                    "customer_type": "R"})
    if kind == "U":
        return ouch.encode_inbound({"type": "U", "existing_order_token": token,
                                    "replacement_order_token": rng.choice(("T2", "T3", "T1", "T4")), "shares": shares,
                                    "price": price, "time_in_force": tif, "display": rng.choice("YN?"),
                                    "intermarket_sweep_eligibility": "N", "minimum_quantity": 0})
    if kind == "X":
        return ouch.encode_inbound({"type": "X", "order_token": token, "shares": shares})
    return ouch.encode_inbound({"type": "M", "order_token": token, "buy_sell_indicator": "S", "shares": shares})


def test_fuzz_venue_client_messages():
    """A firm's OUCH stream into an open venue (orders, replaces, cancels of any shape, damaged
    bytes): each message is applied or dropped with a reason; the venue never raises."""
    def make(rng):
        messages = [_inbound(rng) for _ in range(rng.randint(1, 12))]
        return [fuzzkit.mutate_bytes(rng, m, messages) if rng.random() < 0.3 else m for m in messages]

    def check(messages):
        packets = []
        venue = Venue([("AAPL", 100), ("MSFT", 1)], {"ALGO1": "ALGO", "ALGO2": "ALG2"}, session="FUZZ000001",
                      send_packet=packets.append, clock=_Clock(), max_shares=1_000_000)
        venue.open()
        dropped = 0
        for i, message in enumerate(messages):
            dropped += venue.client_message(("ALGO1", "ALGO2")[i % 2], message) is not None
        venue.cancel_all(firm="ALGO1")
        venue.close()
        for packet in packets:                              # what it sent is framed as it should be (text
            for _, offset, length in mold.iter_messages(packet):          # fields echo what firms sent)
                assert itch.SIZE_BY_BYTE[packet[offset]] == length
        for store in venue.stores.values():
            for message in store.messages:
                assert ouch.OUTBOUND.layout_at(message, 0).size == len(message)
        return "dropped" if dropped else "applied"

    fuzzkit.run_cases("venue", 500, make, check, test_file=THIS, soak_share=0.04)


def _outbound(rng: random.Random, tokens: list[bytes]) -> bytes:
    token = rng.choice(tokens).decode()
    kind = rng.choice("AAUCEEEJBPIS")
    ts = rng.choice((0, 1, 86_400 * 10**9 - 1, U64 - 1))
    shares, price = rng.choice(SHARES), rng.choice(PRICES)
    common = {"timestamp": ts}
    if kind in "AU":
        fields = {"buy_sell_indicator": rng.choice("BSX"), "shares": shares, "stock": rng.choice(("AAPL", "ZZZ")),
                  "price": price, "time_in_force": 99998, "firm": "ALGO", "display": "Y",
                  "order_reference_number": rng.choice(ORDER_REFS), "capacity": "P",
                  "intermarket_sweep_eligibility": "N", "minimum_quantity": 0, "cross_type": "N",
                  "order_state": rng.choice("LD?"), "bbo_weight_indicator": " "}
        if kind == "A":
            fields["order_token"] = token
        else:
            fields["replacement_order_token"] = rng.choice(tokens).decode()
            fields["previous_order_token"] = token
    elif kind == "C":
        fields = {"order_token": token, "decrement_shares": shares, "reason": rng.choice("UIST?")}
    elif kind == "E":
        fields = {"order_token": token, "executed_shares": shares, "execution_price": price,
                  "liquidity_flag": rng.choice("ARX"), "match_number": rng.choice(ORDER_REFS)}
    elif kind == "J":
        fields = {"order_token": token, "reason": rng.choice("TH?")}
    elif kind == "B":
        fields = {"order_token": token, "match_number": rng.choice(ORDER_REFS), "reason": "E"}
    elif kind in "PI":
        fields = {"order_token": token}
    else:
        fields = {"event_code": rng.choice("SE?")}
    return ouch.encode_outbound({"type": kind, **common, **fields})


def test_fuzz_oms_order_book_applies_venue_messages():
    """What the OMS does with each sequenced message from the venue: applied or counted as bad, never
    an exception; and every execution report it makes fits the ExecutionReport record."""
    tokens = [b"AB0000000001  ", b"AB0000000002  ", b"AB0000000003  ", b"UNKNOWN000001 "]
    scratch = bytearray(EXECUTION_REPORT.size)

    def report(event, order, shares, price, match=0, reason=0, source=0, t_exchange_ns=0, liquidity=0):
        positions = book.positions
        sid = order.symbol_id
        position, cost, realized = ((positions.position[sid], positions.cost_basis[sid], positions.realized_pnl[sid])
                                    if sid >= 0 else (0, 0, 0))
        # the same values, in the same order, as OmsAgent._report packs
        EXECUTION_REPORT.pack_into(scratch, 0, order.client_order_id, order.orig_client_order_id, order.order_ref,
                                   match, order.strategy_id, sid if sid >= 0 else 0xFFFFFFFF, event, order.side,
                                   reason, source, shares, price, max(0, order.leaves), position, cost, realized,
                                   t_exchange_ns, 1, liquidity)

    book = None

    def make(rng):
        messages = [_outbound(rng, tokens) for _ in range(rng.randint(1, 15))]
        return [fuzzkit.mutate_bytes(rng, m, messages) if rng.random() < 0.2 else m for m in messages]

    def check(messages):
        nonlocal book
        book = OrderRegistry(SYMBOLS, report=report)
        book.add_new(tokens[0], 1, 7, 0, b"AAPL    ", ord("B"), 300, 1_900_000, 99998)
        book.add_new(tokens[1], 2, 7, 1, b"MSFT    ", ord("S"), 0xFFFFFFFF, 0x7FFFFFFE, 0)
        applied = sum(book.apply_ouch(m, 1_764_000_000_000_000_000) for m in messages)
        return "applied" if applied == len(messages) else "some bad"

    fuzzkit.run_cases("oms-book", 1000, make, check, test_file=THIS, soak_share=0.08)


# ------------------------------------------------------------------------------------ exchange records

def test_fuzz_ouch_log_reader(tmp_path):
    path = tmp_path / "ouch-ALGO1.log"
    record = (9 + len(OUCH_SEEDS[0])).to_bytes(2, "big") + b"I" + (12345).to_bytes(8, "big") + OUCH_SEEDS[0]
    seeds = [record * 3, record, record + b"\x00\x0bO" + bytes(10)]

    def check(data):
        path.write_bytes(data)
        for entry in read_ouch_log(path):
            assert entry.direction in ("I", "O")

    fuzzkit.run_cases("ouch-log", 1000, lambda rng: fuzzkit.byte_inputs(rng, seeds), check,
                      expected=(WireFormatError,), test_file=THIS, soak_share=0.04)
