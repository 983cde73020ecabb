"""The simulated exchange as a process, over loopback: sessions, the live feed with gap recovery,
book reconstruction from the feed and from the day file, the control interface, the records."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from appliance.wire import itch, ouch, soupbintcp
from appliance.wire.dayfile import DayFileReader
from appliance.exchange.records import read_ouch_log
from exchange_process import MoldConsumer, OrderClient, RunningExchange, base_config
from itch_books import ItchBooks
from conftest import ROOT, wait_until


@pytest.fixture
def exchange():
    running = []

    def start(document=None, **kw):
        ex = RunningExchange(document or base_config(), **kw)
        running.append(ex)
        return ex
    yield start
    for ex in running:
        ex.close()


def compare_with_exchange(books: ItchBooks, ex: RunningExchange, symbols) -> None:
    for symbol in symbols:
        truth = ex.ctl("book", symbol=symbol)
        assert truth["ok"], truth
        expected = {int(ref): tuple(v) for ref, v in truth["orders"].items()}
        assert books.resting(symbol) == expected, symbol
        assert books.levels(symbol, "B") == [tuple(level) for level in truth["bids"]]
        assert books.levels(symbol, "S") == [tuple(level) for level in truth["asks"]]
        assert books.halted[symbol] == truth["halted"]


# ---------------------------------------------------------------- order entry sessions

def test_login_bad_login_duplicate_token_and_replay_after_disconnect(exchange):
    ex = exchange()
    host, port = ex.order_entry
    bad = OrderClient((host, port), "ALGO1", "wrong")
    assert bad.login == {"packet_type": "J", "reject_reason_code": "A"}
    assert bad.next_packet() is None                    # and the connection is closed
    unknown = OrderClient((host, port), "NOBODY", "x")
    assert unknown.login["reject_reason_code"] == "A"

    client = OrderClient((host, port), "ALGO1", "secret1")
    assert client.login["packet_type"] == "A" and client.login["sequence_number"] == 1
    second = OrderClient((host, port), "ALGO1", "secret1")   # one live session per firm
    assert second.login == {"packet_type": "J", "reject_reason_code": "S"}
    assert client.next_message()["event_code"] == "S"        # start of day
    client.enter("T1", "B", 100, "AAPL", 1_890_000)
    accepted = client.next_message()
    assert (accepted["type"], accepted["order_token"], accepted["order_state"]) == ("A", "T1", "L")
    client.enter("T1", "B", 100, "AAPL", 1_890_000)
    assert (lambda m: (m["type"], m["reason"]))(client.next_message()) == ("J", "O")

    # the exchange drops the connection; messages meanwhile are kept for the firm
    assert ex.ctl("disconnect", firm="ALGO1") == {"ok": True, "disconnected": True}
    assert client.next_packet() is None
    client.close()
    other = OrderClient((host, port), "ALGO2", "secret2")
    other.next_message()
    other.enter("S1", "S", 60, "AAPL", 1_890_000)            # fills 60 of T1 while ALGO1 is away
    assert [other.next_message()["type"] for _ in range(2)] == ["A", "E"]
    assert ex.ctl("halt", symbol="AAPL")["changed"] is True

    # re-login asking for sequence 4: exactly the messages after the two it saw, nothing repeated
    again = OrderClient((host, port), "ALGO1", "secret1", sequence=4)
    assert again.login["sequence_number"] == 4
    replayed = again.next_message()
    assert (replayed["type"], replayed["order_token"], replayed["executed_shares"]) == ("E", "T1", 60)
    again.enter("T2", "B", 100, "AAPL", 1_890_000)            # halted
    assert (lambda m: (m["type"], m["order_token"], m["reason"]))(again.next_message()) == ("J", "T2", "H")
    # from sequence 1: the whole day again, in order
    again.close()
    wait_until(lambda: not ex.ctl("status")["sessions"]["ALGO1"]["connected"], 10, message="ALGO1 disconnected")
    full = OrderClient((host, port), "ALGO1", "secret1", sequence=1)
    types = [full.next_message()["type"] for _ in range(5)]
    assert types == ["S", "A", "J", "E", "J"]
    full.close()
    other.close()
    assert ex.stop() == 0
    # the OUCH log has both directions for the firm, in order
    log = list(read_ouch_log(ex.records / "ouch-ALGO1.log"))
    assert [(r.direction, chr(r.message[0])) for r in log] == [
        ("O", "S"), ("I", "O"), ("O", "A"), ("I", "O"), ("O", "J"), ("O", "E"), ("I", "O"), ("O", "J"),
        ("O", "C"), ("O", "S")]
    report = json.loads((ex.records / "report.json").read_text())
    ledger = report["firms"]["ALGO1"]["ledger"]
    assert ledger["positions"] == {"AAPL": 60} and ledger["fills"] == 1
    assert report["firms"]["ALGO1"]["engine"]["positions"] == {"AAPL": 60}


def test_a_silent_client_times_out_and_a_talking_one_does_not(exchange):
    ex = exchange()                                     # peer timeout 1 s, heartbeat 100 ms
    raw = socket.create_connection(ex.order_entry, timeout=10)
    raw.sendall(soupbintcp.login_request("ALGO2", "secret2", "", 0))
    started = time.monotonic()
    data = b""
    while True:                                         # the server heartbeats, then gives up on us
        chunk = raw.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"\x00\x1fA")                # Login Accepted first
    assert data.count(soupbintcp.SERVER_HEARTBEAT_BYTES) >= 3
    assert time.monotonic() - started >= 0.9
    raw.close()
    client = OrderClient(ex.order_entry, "ALGO1", "secret1")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:                  # a client that heartbeats stays connected
        client.sock.sendall(soupbintcp.CLIENT_HEARTBEAT_BYTES)
        time.sleep(0.1)
    assert ex.ctl("status")["sessions"]["ALGO1"]["connected"]
    client.close()
    assert "timed out" in ex.output()


def test_malformed_ouch_is_dropped_with_a_debug_packet_and_the_session_lives(exchange):
    ex = exchange()
    client = OrderClient(ex.order_entry, "ALGO1", "secret1")
    client.next_message()
    client.send_raw(b"Q" + bytes(10))
    debug = client.next_packet()
    assert debug["packet_type"] == "+" and "unknown OUCH inbound type" in debug["text"]
    client.enter("OK1", "S", 100, "MSFT", 4_300_000)
    assert client.next_message()["order_token"] == "OK1"
    # garbage at the SoupBinTCP level ends the connection, not the exchange
    client.sock.sendall(b"\x00\x05Zjunk")
    assert client.next_packet() is None
    assert ex.ctl("status")["counters"]["malformed"] == 1
    assert ex.stop() == 0


# ---------------------------------------------------------------- the feed

def test_live_feed_with_drops_rebuilds_every_book_and_the_day_file_matches(exchange):
    """At least 100,000 ITCH messages with packet drops, duplicates and reordering on the wire: a
    consumer using the re-request server gets every message in order and rebuilds, order by order,
    exactly the book the exchange holds; the BinaryFILE holds the same bytes."""
    ex = exchange(base_config(faults={"drop": 0.02, "duplicate": 0.02, "reorder": 0.02, "seed": 5},
                              background={"enabled": True, "rate": 0, "seed": 3, "max_resting_per_symbol": 300}))
    consumer = MoldConsumer(ex.feed, ex.rerequest)
    books = ItchBooks()
    applied = 0
    try:
        while True:
            status = ex.ctl("status")
            if status["feed"]["messages"] >= 100_000:
                break
            assert ex.ctl("burst", count=20_000)["ok"]
            consumer.pump(0.01)
        assert ex.ctl("halt", symbol="SPY")["changed"]
        total = ex.ctl("status")["feed"]["messages"]
        messages = consumer.receive_until(total, timeout=120)
        for message in messages[applied:]:
            books.apply(message)
        applied = len(messages)
        assert books.errors == []
        compare_with_exchange(books, ex, ["AAPL", "MSFT", "SPY"])
        assert consumer.requests > 0 and consumer.duplicates > 0
        assert sorted(books.counts) == sorted("SRAFEXDUPH"), dict(books.counts)
        # the rest of the day: the close expires every order
        assert ex.stop() == 0
        wait_until(lambda: (consumer.pump(0.05), consumer.ended)[1], 30, message="end of session on the feed")
        with open(ex.records / "itch.bin", "rb") as f:
            day = f.read()
        stored = [bytes(day[o + 2:o + 2 + n]) for o, n in _blocks(day)]
        assert stored[:total] == messages[:total]
        final = ItchBooks()
        for message in stored:
            final.apply(message)
        assert final.errors == [] and final.orders == {}
        assert final.system_events == ["O", "S", "Q", "M", "E", "C"]
        report = json.loads((ex.records / "report.json").read_text())
        assert report["feed"]["messages"] == len(stored) and report["feed"]["dropped_packets"] > 0
    finally:
        consumer.close()


def _blocks(day: bytes):
    offset = 0
    while offset < len(day):
        n = int.from_bytes(day[offset:offset + 2], "big")
        yield offset, n
        offset += 2 + n


def test_dropped_packets_on_demand_are_recovered_in_order(exchange):
    ex = exchange(base_config(background={"enabled": True, "rate": 0, "seed": 9}))
    consumer = MoldConsumer(ex.feed, ex.rerequest)
    try:
        start = ex.ctl("status")["feed"]["messages"]
        consumer.receive_until(start, timeout=20)
        assert ex.ctl("drop-next", count=3) == {"ok": True, "drop_next": 3}
        ex.ctl("burst", count=500)
        total = ex.ctl("status")["feed"]["messages"]
        assert ex.ctl("status")["feed"]["dropped"] == 3
        messages = consumer.receive_until(total, timeout=20)
        assert consumer.requests >= 1 and consumer.next_sequence == total + 1
        assert [itch.decode(m)["type"] for m in messages[:2]] == ["S", "S"]
        assert ex.stop() == 0
        stored = DayFileReader(ex.records / "itch.bin")
        assert [itch.encode(m) for m in list(stored)[:total]] == messages
    finally:
        consumer.close()


# ---------------------------------------------------------------- control and configuration

def test_control_commands_and_bad_requests(exchange):
    ex = exchange()
    client = OrderClient(ex.order_entry, "ALGO1", "secret1")
    client.next_message()
    client.enter("K1", "B", 100, "MSFT", 4_100_000)
    client.next_message()
    assert ex.ctl("cancel-all", firm="ALGO1") == {"ok": True, "canceled": 1}
    canceled = client.next_message()
    assert (canceled["type"], canceled["reason"], canceled["decrement_shares"]) == ("C", "S", 100)
    for request, fragment in [({"command": "halt", "symbol": "NOPE"}, "unknown symbol"),
                              ({"command": "faults", "drop": 2}, "probability"),
                              ({"command": "faults", "drop": True}, "probability"),
                              ({"command": "burst", "count": -1}, "integer"),
                              ({"command": "fly"}, "unknown command"),
                              ({"command": "halt", "symbol": "AAPL", "x": 1}, "unknown argument"),
                              ({"command": "disconnect", "firm": "ZZZ"}, "unknown firm")]:
        answer = ex.ctl(**request)
        assert answer["ok"] is False and fragment in answer["error"], (request, answer)
    from appliance.exchange.control import MAX_LINE
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(10)
        raw.connect(ex.control_path)
        raw.sendall(b"not json\n[1]\n")
        answers = raw.recv(65536).decode()
        while answers.count("\n") < 2:
            answers += raw.recv(65536).decode()
        assert [json.loads(line)["ok"] for line in answers.splitlines()] == [False, False]
        raw.sendall(b"x" * (MAX_LINE + 10) + b"\n")
        assert b"too long" in raw.recv(65536)
    assert ex.ctl("faults", drop=0.5)["faults"]["drop"] == 0.5
    assert ex.ctl("background", rate=100)["rate"] == 100
    # the CLI front end
    env_cmd = [sys.executable, "-m", "appliance", "exchange", "ctl", "--socket", ex.control_path]
    out = subprocess.run(env_cmd + ["halt", "MSFT"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout) == {"ok": True, "changed": True}
    out = subprocess.run(env_cmd + ["halt", "NOPE"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 1 and "unknown symbol" in out.stdout
    out = subprocess.run(env_cmd + ["fly"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 2 and "unknown command" in out.stderr
    assert ex.ctl("end") == {"ok": True, "ending": True}
    assert ex.proc.wait(30) == 0
    assert "ending the session (control command end)" in ex.output()
    client.close()


def test_the_embedded_default_starts_prints_ports_and_ends_cleanly_on_sigterm(tmp_path):
    ctl = str(tmp_path / "ctl.sock")          # a private directory: a /tmp name is refused
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "exchange", "--order-port", "0", "--rerequest-port", "0",
                             "--source-port", "0", "--snapshot-port", "0",
                             "--control", ctl, "--records", str(tmp_path / "rec"), "--linger", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        while line and not line.startswith("exchange ready"):
            line = proc.stdout.readline()
        assert "order_entry=127.0.0.1:" in line and "feed=127.0.0.1:15001" in line, line
        wait_until(lambda: (tmp_path / "rec" / "itch.bin").stat().st_size > 2000, 20,
                   message="background flow reaching the day file")
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert report["firms"]["BGND"]["engine"]["accepted"] > 0
    assert not (tmp_path / "ctl.sock").exists()          # removed at the close


@pytest.mark.parametrize("text, fragment", [
    ("version: 1\nsymbols: []\nfirms: []\n", "symbols"),
    ("version: 1\nsymbols:\n  - {symbol: AAPL, reference_price: 1}\nfirms:\n  - {username: A, password: b}\n"
     "order_entry: {port: 99999}\n", "order_entry.port"),
])
def test_bad_config_stops_with_file_key_and_reason(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "appliance", "exchange", "--config", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 2
    assert str(path) in out.stderr and fragment in out.stderr, out.stderr
