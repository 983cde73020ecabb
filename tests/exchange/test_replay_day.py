"""The exchange's replay mode without sockets (appliance/exchange/replay.py): the recorded day on the
feed unchanged and paced by event time, orders answered exactly as the backtest's venue model answers
them, the day's end, snapshots of the recorded book, a damaged day file."""
from __future__ import annotations

import pytest

from appliance.exchange.replay import ReplayDay
from appliance.replay.latency import Latency
from appliance.replay.venue import ReplayVenue
from appliance.wire import glimpse, itch, moldudp64, ouch
from recorded_day import MS, OPEN_NS, P, quiet_day, write_day

FIRMS = {"ALGO1": "ALGO", "ALGO2": "ALG2"}


class Clock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


def make_day(tmp_path, messages=None, speed=1.0, **kw):
    path = tmp_path / "day.bin"
    recorded = write_day(path, quiet_day() if messages is None else messages)
    packets, clock = [], Clock()
    day = ReplayDay(str(path), ["AAPL", "MSFT"], FIRMS, session="TEST000001", send_packet=packets.append,
                    speed=speed, wall_clock=clock, **kw)
    day.open()
    return day, packets, clock, recorded


def feed_messages(packets) -> list[bytes]:
    out = []
    for data in packets:
        packet = moldudp64.decode_packet(data)
        out.extend(bytes(m) for m in packet.messages)
    return out


def enter(token, side, shares, price, stock="AAPL", tif=99998):
    return ouch.encode_inbound({"type": "O", "order_token": token, "buy_sell_indicator": side, "shares": shares,
                                "stock": stock, "price": price, "time_in_force": tif, "firm": "ALGO",
                                "display": "Y", "capacity": "P", "intermarket_sweep_eligibility": "N",
                                "minimum_quantity": 0, "cross_type": "N", "customer_type": "R"})


def cancel(token, shares=0):
    return ouch.encode_inbound({"type": "X", "order_token": token, "shares": shares})


def replace(existing, replacement, shares, price):
    return ouch.encode_inbound({"type": "U", "existing_order_token": existing, "replacement_order_token": replacement,
                                "shares": shares, "price": price, "time_in_force": 99998, "display": "Y",
                                "intermarket_sweep_eligibility": "N", "minimum_quantity": 0})


def answers(day, firm="ALGO1"):
    return [ouch.decode_outbound(m) for m in day.stores[firm].messages]


def run_to_end(day, clock, step_ns=MS):
    while day.advance() is not None:
        clock.now += step_ns


def test_the_feed_carries_the_recorded_day_unchanged(tmp_path):
    day, packets, clock, recorded = make_day(tmp_path, speed=None)
    day.start()
    run_to_end(day, clock)
    assert feed_messages(packets) == recorded
    assert moldudp64.decode_packet(packets[-1]).is_end_of_session
    assert day.state == "closed" and day.error is None
    assert [(m["type"], m["event_code"]) for m in answers(day)] == [("S", "S"), ("S", "E")]
    assert answers(day)[0]["timestamp"] == OPEN_NS and answers(day)[-1]["timestamp"] == OPEN_NS + 110 * MS


def test_only_the_preamble_flows_before_start_and_the_clock_starts_after_it(tmp_path):
    """Held: the System Events and the Stock Directory go out (the feed can get ready), no order; the
    event clock starts at the first message after them, however long the hold was."""
    messages = quiet_day()
    messages[3:3] = [messages[0][:3] + (OPEN_NS - 3_600 * 10**9,) + messages[0][4:]]   # a pre-open event an hour early
    messages.sort(key=lambda m: m[3])
    day, packets, clock, recorded = make_day(tmp_path, messages=messages)
    clock.now = 10**12
    assert day.advance() is not None and day.advance() is not None
    assert feed_messages(packets) == recorded[:4] and not day.started
    assert len(packets) == 2                           # a packet per timestamp
    clock.now += 10**12
    day.start()
    assert day.advance() == clock.now + 10 * MS       # the first add is out at once, the next 10 ms later
    assert feed_messages(packets) == recorded[:5]


def test_event_time_paces_the_messages(tmp_path):
    """Speed 2: the messages 10 ms of event time apart go out 5 ms of wall time apart."""
    day, packets, clock, recorded = make_day(tmp_path, speed=2.0)
    clock.now = 1_000
    day.start()
    assert day.advance() == 1_000 + 5 * MS                 # the three of 09:30:00.000 out; the next due in 5 ms
    assert len(feed_messages(packets)) == 3
    clock.now = 1_000 + 5 * MS - 1
    day.advance()
    assert len(feed_messages(packets)) == 3
    clock.now = 1_000 + 5 * MS
    assert day.advance() == 1_000 + 10 * MS
    assert feed_messages(packets) == recorded[:4]


def drive(day, clock, script):
    """Publish the day message by message (speed 1, 10 ms apart); after the message of index i, send
    the OUCH messages of script[i]."""
    clock.now, step = 0, 10 * MS
    day.start()
    published = 0
    while True:
        due = day.advance()
        now_published = day.counters.recorded_messages
        for index in range(published, now_published):
            for firm, message in script.get(index, ()):
                assert day.client_message(firm, message) is None
        published = now_published
        if due is None:
            return
        clock.now = max(due, clock.now + 1) if due > clock.now else clock.now + step


SCRIPT = {
    2: [("ALGO1", enter("T1", "B", 100, P))],              # before the recorded bid at P: first in its queue
    4: [("ALGO1", enter("T2", "S", 100, P + 100)),         # behind the recorded 200 at P + 100
        ("ALGO1", enter("T3", "B", 50, P + 100)),          # marketable: takes 50 of the recorded ask
        ("ALGO2", enter("T1", "S", 100, P + 300))],        # another firm, the same token: its own
    6: [("ALGO1", cancel("T2")),
        ("ALGO1", enter("T1", "B", 100, P)),               # a token used before today: rejected 'O'
        ("ALGO1", cancel("NEVER"))],                       # never entered: Cancel Reject
    9: [("ALGO2", replace("T1", "T1b", 100, P + 200))],
}


def summary(m: dict) -> tuple:
    """(type, token, shares, price, liquidity or reason) of a decoded OUCH answer; None where it has none."""
    kind = m["type"]
    token = m.get("replacement_order_token") or m["order_token"]
    shares = {"A": m.get("shares"), "U": m.get("shares"), "E": m.get("executed_shares"),
              "C": m.get("decrement_shares")}.get(kind)
    price = {"A": m.get("price"), "U": m.get("price"), "E": m.get("execution_price")}.get(kind)
    return kind, token, shares, price, m.get("liquidity_flag") or m.get("reason") or None


MODEL_KINDS = {"accepted": "A", "replaced": "U", "executed": "E", "canceled": "C", "rejected": "J",
               "cancel_reject": "I"}


def test_orders_are_answered_as_the_backtests_venue_model_answers_them(tmp_path):
    day, _, clock, _ = make_day(tmp_path)
    drive(day, clock, SCRIPT)
    got = {firm: [summary(m) for m in answers(day, firm) if m["type"] != "S"] for firm in FIRMS}
    # The same actions straight into the venue model at the same event times, with int tokens.
    model = ReplayVenue(["AAPL", "MSFT"], "risk-averse", Latency.zero())
    tokens: dict[tuple, int] = {}
    number = lambda firm, token: tokens.setdefault((firm, token), len(tokens) + 1)    # noqa: E731
    for index, message in enumerate(quiet_day()):
        model.on_itch(message)
        now = message[3]
        for firm, raw in SCRIPT.get(index, ()):
            v = ouch.decode_inbound(raw)
            if v["type"] == "O":
                model.submit(number(firm, v["order_token"]), v["stock"], v["buy_sell_indicator"], v["shares"],
                             v["price"], v["time_in_force"], now)
            elif v["type"] == "X":
                model.cancel(number(firm, v["order_token"]), now, v["shares"])
            else:
                model.replace(number(firm, v["existing_order_token"]), number(firm, v["replacement_order_token"]),
                              v["shares"], v["price"], now)
    model.advance(10**15)
    names = {n: key for key, n in tokens.items()}
    expected = {firm: [] for firm in FIRMS}
    for e in model.poll(10**15):
        firm, token = names[e.token]
        kind = MODEL_KINDS[e.kind]
        expected[firm].append((kind, token, e.shares if kind in "AUEC" else None, e.price if kind in "AUE" else None,
                               e.liquidity or e.reason or None))
    for firm in FIRMS:                                 # then the close expired what was still open: 'T'
        expired = [a for a in got[firm] if a[0] == "C" and a[4] == "T"]
        assert got[firm][:len(got[firm]) - len(expired)] == expected[firm]
    # and the model's rules did happen here:
    assert ("E", "T1", 100, P, "A") in got["ALGO1"]     # first in its queue: the recorded execution at P met it
    assert ("E", "T3", 50, P + 100, "R") in got["ALGO1"]     # marketable: the recorded ask's shares
    assert ("J", "T1", None, None, "O") in got["ALGO1"] and ("I", "NEVER", None, None, None) in got["ALGO1"]
    assert ("C", "T2", 100, None, "U") in got["ALGO1"]
    assert got["ALGO2"] == [("A", "T1", 100, P + 300, None), ("U", "T1b", 100, P + 200, None),
                            ("C", "T1b", 100, None, "T")]


def test_ouch_answers_carry_the_event_time(tmp_path):
    day, _, clock, _ = make_day(tmp_path)
    drive(day, clock, {2: [("ALGO1", enter("T1", "B", 100, P))]})
    stamps = {m["type"]: m["timestamp"] for m in answers(day) if m["type"] in "AE"}
    assert stamps == {"A": OPEN_NS, "E": OPEN_NS + 40 * MS}     # accepted at once, filled by the 4th body message


def test_cancel_on_disconnect_cancels_Z_and_otherwise_orders_stay(tmp_path):
    day, _, clock, _ = make_day(tmp_path, cancel_on_disconnect=["ALGO2"])
    day.start()
    day.advance()
    assert day.client_message("ALGO1", enter("K1", "B", 100, P - 500)) is None
    assert day.client_message("ALGO2", enter("K2", "B", 100, P - 500)) is None
    assert day.session_lost("ALGO1") is None and day.live_count("ALGO1") == 1
    assert day.session_lost("ALGO2") == 1 and day.live_count("ALGO2") == 0
    assert [(m["type"], m.get("reason")) for m in answers(day, "ALGO2")][-1] == ("C", "Z")


def test_modify_is_refused_and_malformed_input_is_counted(tmp_path):
    day, _, _, _ = make_day(tmp_path)
    day.start()
    day.advance()
    modify = ouch.encode_inbound({"type": "M", "order_token": "T1", "buy_sell_indicator": "B", "shares": 10})
    assert day.client_message("ALGO1", modify) is None
    assert answers(day)[-1]["type"] == "I" and day.counters.modify_unsupported == 1
    assert "unknown OUCH inbound type" in day.client_message("ALGO1", b"Z" + bytes(10))
    assert day.client_message("ALGO1", enter("T1", "B", 100, P)[:-1]) is not None
    assert day.counters.malformed == 2


def test_a_snapshot_is_the_recorded_book_now(tmp_path):
    day, _, clock, _ = make_day(tmp_path, speed=1.0)
    day.start()
    clock.now = 40 * MS                                # 09:30:00.040: adds 1, 2, 3 and the execution of 200 of 1
    day.advance()
    messages = day.snapshot()
    assert glimpse.decode_snapshot(messages[-1]) == day.store.next_sequence == 8
    decoded = [itch.decode(m) for m in messages[:-1]]
    assert [(m["type"], m.get("event_code")) for m in decoded[:1]] == [("S", "Q")]
    assert decoded[1]["type"] == "R" and decoded[1]["stock"] == "AAPL" and decoded[1]["stock_locate"] == 5
    assert decoded[2]["type"] == "H" and decoded[2]["trading_state"] == "T"
    assert [(m["order_reference_number"], m["buy_sell_indicator"], m["shares"], m["price"]) for m in decoded[3:]] == [
        (1, "B", 100, P), (3, "B", 100, P - 100), (2, "S", 200, P + 100)]     # bids best first, then asks


def test_a_day_file_cut_mid_message_ends_the_day_there(tmp_path):
    day, packets, clock, recorded = make_day(tmp_path)
    path = tmp_path / "day.bin"
    data = path.read_bytes()
    path.write_bytes(data[:-5])                        # the last message (System Event 'C') cut short
    day = ReplayDay(str(path), ["AAPL"], FIRMS, session="TEST000001", send_packet=packets.append, speed=None,
                    wall_clock=clock)
    packets.clear()
    day.open()
    day.start()
    run_to_end(day, clock)
    assert feed_messages(packets) == recorded[:-1]
    assert day.error == f"{path}: offset {len(data) - 14}: file ends mid-message: block says 12 bytes, only 7 present"
    assert day.state == "closed" and moldudp64.decode_packet(packets[-1]).is_end_of_session


def test_a_bad_speed_is_refused(tmp_path):
    with pytest.raises(ValueError, match="speed"):
        make_day(tmp_path, speed=0)


def test_each_timestamp_goes_out_in_packets_of_its_own(tmp_path):
    """At max speed everything is due at once; still no packet mixes two timestamps (the feed makes one
    BookUpdate per symbol and packet: the backtest's grouping by timestamp)."""
    day, packets, clock, recorded = make_day(tmp_path, speed=None)
    day.start()
    run_to_end(day, clock)
    stamps = [{itch.decode(m)["timestamp"] for m in moldudp64.decode_packet(p).messages} for p in packets[:-1]]
    assert all(len(s) == 1 for s in stamps)
    assert len(stamps) == len({m[3] for m in quiet_day()}) == 12


def test_the_answers_of_an_instant_go_out_before_its_market_data(tmp_path):
    """The recorded execution that fills us: our Executed is in the firm's store while the packet with
    that execution is still held, for ``answer_lead_ns`` (the backtest hands answers first at equal times)."""
    day, packets, clock, recorded = make_day(tmp_path, answer_lead_ns=5 * MS)
    day.start()
    assert day.advance() is not None                   # 09:30:00.000: the preamble
    assert day.client_message("ALGO1", enter("T1", "B", 100, P)) is None
    fill_ns = OPEN_NS + 40 * MS                        # the execution of 200 at P: we are first in the queue
    clock.now = 40 * MS
    held_until = day.advance()
    assert answers(day)[-1]["type"] == "E" and answers(day)[-1]["timestamp"] == fill_ns
    assert held_until == clock.now + 5 * MS
    assert feed_messages(packets) == recorded[:6]      # up to the 3rd add; the execution not yet on the feed
    clock.now += 5 * MS - 1
    assert day.advance() == held_until and feed_messages(packets) == recorded[:6]
    clock.now += 1
    day.advance()
    assert feed_messages(packets) == recorded[:7]


def test_a_snapshot_sends_a_held_packet_first(tmp_path):
    """The book a snapshot shows must be every message before its sequence: a held packet goes out."""
    day, packets, clock, recorded = make_day(tmp_path, answer_lead_ns=5 * MS)
    day.start()
    day.advance()
    day.client_message("ALGO1", enter("T1", "B", 100, P))
    clock.now = 40 * MS
    day.advance()
    assert feed_messages(packets) == recorded[:6]
    assert glimpse.decode_snapshot(day.snapshot()[-1]) == 8 and feed_messages(packets) == recorded[:7]
