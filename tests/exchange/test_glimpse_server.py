"""The exchange's GLIMPSE snapshot server, as a process: what a snapshot holds (the exchange's books
order by order, and the ITCH sequence to continue from), and clients that misbehave (garbage,
oversized, silent, a wrong session) dropped without the venue stalling."""
from __future__ import annotations

import socket
import time

import pytest

from appliance.feed.books import BookSet
from appliance.feed.snapshot import SnapshotClient
from appliance.wire import itch, soupbintcp
from conftest import wait_until
from exchange_process import RunningExchange, base_config

SYMBOLS = ["AAPL", "MSFT", "SPY"]


@pytest.fixture
def ex():
    with RunningExchange(base_config(background={"enabled": False, "seed": 5, "max_resting_per_symbol": 200}),
                         records=False) as running:
        yield running


def take_snapshot(address, timeout: float = 10.0) -> SnapshotClient:
    client = SnapshotClient(*address, timeout_ns=int(timeout * 1e9))
    client.start(time.monotonic_ns())
    wait_until(lambda: client.poll(time.monotonic_ns()) not in ("connecting", "receiving"), timeout + 1,
               interval=0.001, message="the snapshot")
    return client


def test_a_snapshot_is_the_exchanges_book_and_the_sequence_to_continue_from(ex):
    ex.ctl("burst", count=500)
    ex.ctl("halt", symbol="SPY")
    client = take_snapshot(ex.snapshot)
    assert client.state == "done", client.error
    assert client.session == "TEST000001"
    assert client.next_sequence == ex.ctl("book", symbol="AAPL")["messages"] + 1
    kinds = [chr(m[0]) for m in client.messages]
    assert kinds[0] == "S" and kinds.count("R") == kinds.count("H") == 3
    books = BookSet(SYMBOLS)
    for message in client.messages:
        books.apply(itch.LAYOUT_BY_BYTE[message[0]].unpack_from(message, 0))
    for symbol in SYMBOLS:
        truth = ex.ctl("book", symbol=symbol)
        mine = books.book(symbol)
        assert {str(ref): [side.decode(), price, shares] for ref, (side, price, shares) in mine.orders().items()} \
            == truth["orders"], symbol
        assert [list(level) for level in mine.levels(True)] == truth["bids"], symbol
        assert mine.trading_state == (b"H" if symbol == "SPY" else b"T")
        assert not mine.inconsistent and not mine.crossed
    assert sum(books.book(s).order_count for s in SYMBOLS) > 20
    status = ex.ctl("status")
    assert status["snapshots"]["snapshots"] == 1 and status["ports"]["snapshot"][1] == ex.snapshot[1]


def _closed_by_server(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sent until it closed the connection (fails after ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("case", ["garbage", "oversized", "silent", "wrong session", "unknown packet"])
def test_bad_clients_are_dropped_and_the_venue_keeps_serving(ex, case):
    with socket.create_connection(ex.snapshot, timeout=5) as sock:
        if case == "garbage":
            sock.sendall(b"\x00\x05Qhello" * 10)
        elif case == "oversized":
            try:
                sock.sendall(b"\x00" * 10_000)           # a partial packet that would never end
            except OSError:
                pass
        elif case == "wrong session":
            sock.sendall(soupbintcp.login_request("X", "", "OTHER00001", 1))
        elif case == "unknown packet":
            sock.sendall(soupbintcp.unsequenced_data(b"hello"))
        start = time.monotonic()
        data = _closed_by_server(sock, 10)
        assert time.monotonic() - start < 8
    if case == "wrong session":
        assert data == soupbintcp.login_rejected("S")
    ex.ctl("burst", count=50)                            # the venue is not stalled
    client = take_snapshot(ex.snapshot)
    assert client.state == "done" and client.next_sequence == ex.ctl("book", symbol="AAPL")["messages"] + 1
    counters = ex.ctl("status")["snapshots"]
    expected = {"garbage": "protocol_errors", "oversized": "oversized", "silent": "timeouts",
                "wrong session": "refused", "unknown packet": "protocol_errors"}[case]
    assert counters[expected] == 1, counters
    assert "snapshot client dropped" in ex.output() or "snapshot login refused" in ex.output()


def test_many_silent_clients_at_once_are_capped_and_do_not_stop_a_snapshot(ex):
    socks = [socket.create_connection(ex.snapshot, timeout=5) for _ in range(20)]
    try:
        wait_until(lambda: ex.ctl("status")["snapshots"]["over_limit"] >= 4, 10, message="the extra clients refused")
        for sock in socks:                               # the server closes them: the ones over the cap at once,
            _closed_by_server(sock, 10)                  # the others after the login timeout
        client = take_snapshot(ex.snapshot)
        assert client.state == "done", client.error
    finally:
        for sock in socks:
            sock.close()
