"""The feed handler as a process against the simulated exchange as a process.

The test owns the shared memory and plays the strategy: it drains the book_updates ring and
reads the market-state table and the feed's counters, and compares them with the exchange's
own books (through its control socket).
"""
from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from appliance.messages.catalog import BOOK_DEPTH, BOOK_FLAG_CROSSED, BOOK_FLAG_HALTED, BOOK_FLAG_STALE
from appliance.sim.ports import free_port
from appliance.wire import itch, moldudp64
from conftest import output_of, wait_until
from feed_rig import (  # noqa: F401 (fixtures)
    SUBSCRIBED, exchange_factory, feed_factory, feed_layout,
)


def test_books_match_the_exchange_after_100k_messages_with_drops_duplicates_and_reordering(
        exchange_factory, feed_factory, unique_name, tmp_path):
    feed_port = free_port()
    ex = exchange_factory(
        market_data={"subscribers": [], "heartbeat_interval_ms": 100},
        faults={"drop": 0.01, "duplicate": 0.01, "reorder": 0.01, "seed": 5},
        background={"enabled": True, "rate": 25_000, "seed": 21, "max_resting_per_symbol": 300},
        extra_feed_ports=[feed_port])
    dump_path = tmp_path / "books.json"
    # Patient re-requests: a busy 2-core box can starve the exchange's re-request server for a while;
    # giving a gap up is right then, but this test is about books that match, not about giving up.
    feed = feed_factory(feed_layout(unique_name, feed_port, ex.rerequest[1], source_port=ex.source[1], book_dump=str(dump_path),
                                    rerequest_timeout_ms=200, rerequest_retries=50))
    # The feed joined late: the day's first messages (S, R) come back through re-requests.
    wait_until(lambda: (feed.drain(), feed.counters().get("feed.messages_delivered", 0))[1] >= 100_000, 120,
               interval=0.05, message="100,000 messages through the feed")
    ex.ctl("halt", symbol="SPY")
    ex.ctl("background", rate=0)
    ex.ctl("faults", drop=0, duplicate=0, reorder=0)
    published = ex.ctl("book", symbol="AAPL")["messages"]
    wait_until(lambda: feed.caught_up_with(published), 60, interval=0.02, message="the feed caught up")
    feed.drain()
    counters = feed.counters()
    # Nothing lost, so nothing rebuilt (under heavy load on 2 cores a gap can be given up: this says so).
    assert (counters["feed.messages_lost"], counters["feed.gaps_abandoned"], counters["feed.rebuilds"],
            counters["feed.session_restarts"]) == (0, 0, 0, 0), counters
    for symbol in SUBSCRIBED:
        truth = ex.ctl("book", symbol=symbol)
        bids, asks = feed.levels(symbol)
        assert bids == truth["bids"][:BOOK_DEPTH], symbol
        assert asks == truth["asks"][:BOOK_DEPTH], symbol
        state = feed.market.read(feed.layout.symbol_id(symbol))
        best_bid = truth["bids"][0] if truth["bids"] else [0, 0]
        best_ask = truth["asks"][0] if truth["asks"] else [0, 0]
        assert [state.bid_price, state.bid_shares] == best_bid and [state.ask_price, state.ask_shares] == best_ask
        assert not state.stale, state
        assert state.trading_state == ("H" if symbol == "SPY" else "T")
        assert bool(state.flags & BOOK_FLAG_HALTED) == (symbol == "SPY")
    assert counters["feed.gaps"] > 0 and counters["feed.messages_recovered"] > 0, counters
    assert counters["feed.duplicate_packets"] > 0
    assert counters["feed.book.unknown_order"] == 0 and counters["feed.book.over_execution"] == 0
    assert counters["feed.messages_filtered"] > 0          # MSFT never decoded
    assert counters["feed.book_updates_dropped"] == 0 and feed.out_of_order == 0
    # The whole books, order by order: the feed writes them on a clean stop.
    feed.proc.send_signal(signal.SIGTERM)
    assert feed.proc.wait(30) == 0, output_of(feed.proc)
    dump = json.loads(dump_path.read_text())
    assert dump["next_expected"] == published + 1
    for symbol in SUBSCRIBED:
        truth = ex.ctl("book", symbol=symbol)
        mine = dump["books"][symbol]
        assert mine["orders"] == truth["orders"], symbol
        assert (mine["bids"], mine["asks"]) == (truth["bids"], truth["asks"]), symbol
    assert len(dump["books"]["AAPL"]["orders"]) > 10     # a live book, not two empty ones (SPY is halted)
    assert ex.stop() == 0


def test_garbage_datagrams_are_counted_and_dropped(exchange_factory, feed_factory, unique_name):
    feed_port = free_port()
    ex = exchange_factory(background={"enabled": True, "rate": 500, "seed": 3}, extra_feed_ports=[feed_port])
    # Any port of 127.0.0.1 may feed us here: the garbage comes from the test's own socket and must
    # reach the parser (datagrams from a source that is not the publisher are never parsed).
    feed = feed_factory(feed_layout(unique_name, feed_port, ex.rerequest[1], source_port=None, session="TEST000001"))
    wait_until(lambda: (feed.drain(), feed.counters().get("feed.messages_delivered", 0))[1] > 50, 30,
               message="live feed")
    ex.ctl("background", rate=0)
    published = ex.ctl("book", symbol="AAPL")["messages"]
    wait_until(lambda: feed.caught_up_with(published), 30, message="caught up")
    before = {s: feed.levels(s) for s in SUBSCRIBED}
    bad = [b"", b"x", b"garbage" * 10, moldudp64.heartbeat("TEST000001", 1)[:15],
           moldudp64.pack_messages("OTHER00001", 10**9, [b"A" * 36])[0],                 # another session
           moldudp64.pack_messages("TEST000001", published + 1, [b"\xff" * 36])[0][:-3],  # truncated block
           bytes(range(256)) * 4]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in bad * 20:
            s.sendto(datagram, ("127.0.0.1", feed_port))
    wait_until(lambda: feed.counters()["feed.bad_packets"] + feed.counters()["feed.wrong_session"] >= 20, 10,
               message="bad packets counted")
    feed.drain()
    assert {s: feed.levels(s) for s in SUBSCRIBED} == before
    assert feed.counters()["feed.messages_delivered"] == published
    ex.ctl("burst", count=50)
    published = ex.ctl("book", symbol="AAPL")["messages"]
    wait_until(lambda: feed.caught_up_with(published), 30, message="caught up after garbage")
    assert feed.proc.poll() is None
    for symbol in SUBSCRIBED:
        truth = ex.ctl("book", symbol=symbol)
        assert list(feed.levels(symbol)) == [truth["bids"][:BOOK_DEPTH], truth["asks"][:BOOK_DEPTH]]
        assert not feed.market.read(feed.layout.symbol_id(symbol)).stale
    # End of the day: every order expires, End of Session arrives, the books go stale and empty.
    ex.ctl("end")
    wait_until(lambda: feed.drain() >= 0 and all(feed.market.read(i).stale for i in range(len(SUBSCRIBED))), 30,
               message="stale after end of session")
    for symbol in SUBSCRIBED:
        assert feed.levels(symbol) == ([], [])
    wait_until(lambda: feed.counters()["feed.ended"] == 1, 5, message="end of session counted")  # every 10 ms
    assert ex.stop() == 0
    assert feed.proc.poll() is None


def test_an_unrecoverable_gap_and_silence_make_every_book_stale(exchange_factory, feed_factory, unique_name):
    feed_port = free_port()
    dead_port = free_port()           # nobody answers re-requests there
    ex = exchange_factory(background={"enabled": True, "rate": 1000, "seed": 4}, extra_feed_ports=[feed_port])
    feed = feed_factory(feed_layout(unique_name, feed_port, dead_port, source_port=ex.source[1], rerequest_timeout_ms=20,
                                    rerequest_retries=2, stale_after_ms=400))
    # Joined late with nobody answering: the start of the day is lost for good.
    wait_until(lambda: feed.counters().get("feed.gaps_abandoned", 0) >= 1, 30, message="gap abandoned")
    wait_until(lambda: all(feed.market.read(i).stale for i in range(len(SUBSCRIBED))), 10,
               message="books stale after the lost gap")
    counters = feed.counters()
    assert counters["feed.messages_lost"] > 0 and counters["feed.retries"] >= 2
    feed.drain()
    assert all(u["flags"] & BOOK_FLAG_STALE for u in feed.latest.values())
    assert feed.proc.poll() is None
    assert ex.stop() == 0


@pytest.mark.parametrize("new_session", ["TEST000001", "TEST000002"])
def test_an_exchange_killed_and_restarted_on_the_same_ports_is_detected_and_the_books_rebuilt(
        exchange_factory, feed_factory, unique_name, tmp_path, new_session):
    """The same configuration (the same session name, sequences and order references from 1 again) or
    a new session name: the feed says so, clears and rebuilds every book from the new exchange."""
    feed_port = free_port()
    old = exchange_factory(extra_feed_ports=[feed_port], background={"seed": 31})
    dump_path = tmp_path / "books.json"
    feed = feed_factory(feed_layout(unique_name, feed_port, old.rerequest[1], source_port=old.source[1], stale_after_ms=500,
                                    book_dump=str(dump_path)))
    old.ctl("burst", count=300)
    published = old.ctl("book", symbol="AAPL")["messages"]
    wait_until(lambda: feed.caught_up_with(published), 30, interval=0.02, message="caught up with the first exchange")
    old.proc.kill()
    assert old.proc.wait(10) == -signal.SIGKILL
    new = exchange_factory(extra_feed_ports=[feed_port], background={"seed": 32},
                           market_data={"session": new_session, "rerequest_port": old.rerequest[1],
                                        "source_port": old.source[1]})
    new.ctl("burst", count=40)                  # behind what the feed saw: no merge by sequence numbers
    assert new.ctl("book", symbol="AAPL")["messages"] < published
    wait_until(lambda: feed.counters().get("feed.session_restarts") == 1, 20, interval=0.02,
               message="the restart detected")
    new.ctl("burst", count=200)
    now_published = new.ctl("book", symbol="AAPL")["messages"]

    def rebuilt() -> bool:
        feed.drain()
        return feed.counters()["feed.next_expected"] == now_published + 1 and \
            not any(feed.market.read(i).stale for i in range(len(SUBSCRIBED)))
    wait_until(rebuilt, 30, interval=0.02, message="the books rebuilt from the new exchange and live")
    for symbol in SUBSCRIBED:
        truth = new.ctl("book", symbol=symbol)
        assert list(feed.levels(symbol)) == [truth["bids"][:BOOK_DEPTH], truth["asks"][:BOOK_DEPTH]], symbol
    counters = feed.counters()
    assert counters["feed.rebuilds"] == 1 and counters["feed.book.unknown_order"] == 0
    assert counters["feed.book.duplicate_add"] == 0 and counters["feed.book_updates_dropped"] == 0
    feed.proc.send_signal(signal.SIGTERM)
    assert feed.proc.wait(30) == 0
    log = output_of(feed.proc)
    assert "feed stale: no packet of session TEST000001" in log
    assert f"session restart: session TEST000001 at next sequence {published + 1} -> session {new_session}" in log
    dump = json.loads(dump_path.read_text())
    for symbol in SUBSCRIBED:
        truth = new.ctl("book", symbol=symbol)
        mine = dump["books"][symbol]
        assert mine["orders"] == truth["orders"], symbol
        assert (mine["bids"], mine["asks"]) == (truth["bids"], truth["asks"]), symbol
    assert sum(len(dump["books"][s]["orders"]) for s in SUBSCRIBED) > 10
    assert new.stop() == 0


def test_forged_packets_from_another_socket_change_no_book(exchange_factory, feed_factory, unique_name):
    """Issue 22's attack: while the exchange trades, any local process sends the feed packets with the
    live session name and sequence numbers around the feed's next expected one, each one Add Order for
    AAPL at $999.99, for 0.2 s. Only the publisher's datagrams are parsed: no book changes, nothing is
    lost, every forged datagram is counted foreign."""
    feed_port = free_port()
    ex = exchange_factory(background={"enabled": True, "rate": 2000, "seed": 9}, extra_feed_ports=[feed_port])
    feed = feed_factory(feed_layout(unique_name, feed_port, ex.rerequest[1], source_port=ex.source[1],
                                    session="TEST000001"))
    wait_until(lambda: feed.drain() >= 0 and feed.counters().get("feed.messages_delivered", 0) > 200
               and not any(feed.market.read(i).stale for i in range(len(SUBSCRIBED))), 30, message="live feed")
    forged_price = 9_999_900
    sent = 0
    ref = 1 << 40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            next_expected = feed.counters().get("feed.next_expected", 1)
            for sequence in range(next_expected - 2, next_expected + 3):
                ref += 1
                add = itch.encode({"type": "A", "stock_locate": 1, "tracking_number": 0, "timestamp": 1,
                                   "order_reference_number": ref, "buy_sell_indicator": "B", "shares": 100,
                                   "stock": "AAPL", "price": forged_price})
                attacker.sendto(moldudp64.pack_messages("TEST000001", max(sequence, 1), [add])[0],
                                ("127.0.0.1", feed_port))
                sent += 1
    wait_until(lambda: feed.counters().get("feed.rx_foreign", 0) == sent, 10, message="every forgery counted foreign")
    ex.ctl("background", rate=0)
    published = ex.ctl("book", symbol="AAPL")["messages"]
    wait_until(lambda: feed.caught_up_with(published), 30, interval=0.02, message="caught up")
    for symbol in SUBSCRIBED:
        truth = ex.ctl("book", symbol=symbol)
        assert list(feed.levels(symbol)) == [truth["bids"][:BOOK_DEPTH], truth["asks"][:BOOK_DEPTH]], symbol
        state = feed.market.read(feed.layout.symbol_id(symbol))
        assert not state.stale and not state.flags & BOOK_FLAG_CROSSED, symbol
    assert feed.levels("AAPL")[0][0][0] != forged_price
    counters = feed.counters()
    assert counters["feed.messages_lost"] == 0 and counters["feed.wrong_session"] == 0
    assert counters["feed.bad_packets"] == 0 and counters["feed.book.unknown_order"] == 0
    assert feed.proc.poll() is None
    assert ex.stop() == 0
    feed.proc.send_signal(signal.SIGTERM)
    assert f"not from the publisher 127.0.0.1:{ex.source[1]}" in output_of(feed.proc)
