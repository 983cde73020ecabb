"""Books rebuilt from the exchange's GLIMPSE snapshots: the feed handler as a process against the
simulated exchange as a process, one test per trigger (late join, session restart, lost gap,
inconsistent book, crossed book), books compared order by order with the exchange's own.

The inconsistent and crossed books stand for a venue that sent something wrong (or a forger the
source filter did not stop): a packet with the live session name and the feed's next sequence
number, carrying one ITCH message for AAPL, from the test's own socket (these feeds accept any port
of 127.0.0.1; the source filter itself is tested in test_feed_agent.py). The exchange is quiet
then, and its next message is a halt of MSFT (a symbol the feed does not subscribe to), so the real
message the forged one displaces changes no book.
"""
from __future__ import annotations

import json
import signal
import socket

import pytest

from appliance.exchange.events import AddOrder, OrderDelete
from appliance.exchange.itch_encoder import ItchEncoder
from appliance.sim.ports import free_port
from appliance.wire import moldudp64
from conftest import output_of, wait_until
from exchange_process import RunningExchange
from feed_rig import (  # noqa: F401 (fixtures)
    SUBSCRIBED, FeedUnderTest, exchange_factory, feed_factory, feed_layout,
)


def snapshot_feed(feed_factory, unique_name, feed_port, ex, tmp_path, *, any_source_port: bool = False,
                  **params) -> FeedUnderTest:
    return feed_factory(feed_layout(unique_name, feed_port, params.pop("rerequest_port", ex.rerequest[1]),
                                    source_port=None if any_source_port else ex.source[1],
                                    book_dump=str(tmp_path / "books.json"),
                                    snapshot={"host": "127.0.0.1", "port": ex.snapshot[1],
                                              **params.pop("snapshot", {})}, **params))


def live_and_caught_up(feed: FeedUnderTest, ex: RunningExchange) -> bool:
    published = ex.ctl("book", symbol="AAPL")["messages"]
    feed.drain()
    return feed.counters().get("feed.next_expected", 0) == published + 1 and \
        feed.counters().get("feed.snapshot_in_progress", 1) == 0 and \
        not any(feed.market.read(i).stale for i in range(len(SUBSCRIBED)))


def stop_and_compare_orders(feed: FeedUnderTest, ex: RunningExchange, tmp_path, min_orders: int = 10) -> str:
    """Stop the feed (it dumps its books) and compare them order by order with the exchange's; its log."""
    feed.proc.send_signal(signal.SIGTERM)
    assert feed.proc.wait(30) == 0
    log = output_of(feed.proc)
    dump = json.loads((tmp_path / "books.json").read_text())
    for symbol in SUBSCRIBED:
        truth = ex.ctl("book", symbol=symbol)
        mine = dump["books"][symbol]
        assert mine["orders"] == truth["orders"], symbol
        assert (mine["bids"], mine["asks"]) == (truth["bids"], truth["asks"]), symbol
        assert mine["trading_state"] == ("H" if truth["halted"] else "T"), symbol
    assert sum(len(dump["books"][s]["orders"]) for s in SUBSCRIBED) >= min_orders    # not two empty books
    return log


def wait_live(feed, ex, timeout: float = 30, message: str = "the books rebuilt, live and caught up") -> None:
    wait_until(lambda: live_and_caught_up(feed, ex), timeout, interval=0.02, message=message)


# ------------------------------------------------------------------ late join

def test_a_late_join_takes_a_snapshot_instead_of_re_requesting_the_day(exchange_factory, feed_factory,
                                                                       unique_name, tmp_path):
    feed_port = free_port()
    ex = exchange_factory(background={"enabled": True, "rate": 3000, "seed": 41, "max_resting_per_symbol": 200},
                          extra_feed_ports=[feed_port])
    wait_until(lambda: ex.ctl("book", symbol="AAPL")["messages"] > 3000, 30, message="a day under way")
    feed = snapshot_feed(feed_factory, unique_name, feed_port, ex, tmp_path)
    wait_until(lambda: feed.counters().get("feed.snapshot_rebuilds", 0) >= 1, 30, message="the snapshot rebuild")
    ex.ctl("background", rate=0)
    wait_live(feed, ex)
    counters = feed.counters()
    assert counters["feed.snapshot_trigger_late_join"] == 1 and counters["feed.snapshot_rebuilds"] == 1
    assert counters["feed.rebuilds"] == 0 and counters["feed.rebuilding"] == 0
    # the day's history came from the snapshot, not from re-requests from sequence 1
    assert counters["feed.messages_recovered"] < 1000, counters
    assert counters["feed.book.unknown_order"] == 0 and counters["feed.book.duplicate_add"] == 0
    log = stop_and_compare_orders(feed, ex, tmp_path)
    assert "snapshot rebuild (late join) of every book done" in log, log
    assert ex.stop() == 0


# ------------------------------------------------------------------ session restart

@pytest.mark.parametrize("new_session", ["TEST000001", "TEST000002"])
def test_a_restarted_exchange_is_rebuilt_from_its_snapshot(exchange_factory, feed_factory, unique_name, tmp_path,
                                                           new_session):
    feed_port = free_port()
    old = exchange_factory(extra_feed_ports=[feed_port], background={"seed": 31})
    feed = snapshot_feed(feed_factory, unique_name, feed_port, old, tmp_path, stale_after_ms=500)
    old.ctl("burst", count=300)
    wait_live(feed, old, message="live on the first exchange")
    published = old.ctl("book", symbol="AAPL")["messages"]
    old.proc.kill()
    assert old.proc.wait(10) == -signal.SIGKILL
    new = exchange_factory(extra_feed_ports=[feed_port], background={"seed": 32},
                           market_data={"session": new_session, "rerequest_port": old.rerequest[1],
                                        "snapshot_port": old.snapshot[1], "source_port": old.source[1]})
    new.ctl("burst", count=150)                  # behind what the feed saw: no merge by sequence numbers
    assert new.ctl("book", symbol="AAPL")["messages"] < published
    wait_until(lambda: feed.counters().get("feed.session_restarts") == 1, 20, interval=0.02,
               message="the restart detected")
    new.ctl("burst", count=100)
    wait_live(feed, new)
    counters = feed.counters()
    assert counters["feed.snapshot_trigger_session_restart"] == 1 and counters["feed.rebuilds"] == 1
    assert counters["feed.book.unknown_order"] == 0 and counters["feed.book.duplicate_add"] == 0
    log = stop_and_compare_orders(feed, new, tmp_path)
    assert f"session restart: session TEST000001 at next sequence {published + 1} -> session {new_session}" in log
    assert "rebuilding from a snapshot" in log and "snapshot rebuild (session restart) of every book done" in log
    assert new.stop() == 0


# ------------------------------------------------------------------ lost gap

def test_gaps_nobody_can_fill_are_healed_by_a_snapshot(exchange_factory, feed_factory, unique_name, tmp_path):
    feed_port = free_port()
    dead_port = free_port()                  # nobody answers re-requests there
    ex = exchange_factory(background={"enabled": True, "rate": 2000, "seed": 43, "max_resting_per_symbol": 200},
                          faults={"drop": 0.05, "seed": 3}, extra_feed_ports=[feed_port])
    feed = snapshot_feed(feed_factory, unique_name, feed_port, ex, tmp_path, rerequest_port=dead_port,
                         rerequest_timeout_ms=20, rerequest_retries=2)
    wait_until(lambda: feed.counters().get("feed.snapshot_trigger_gap_lost", 0) >= 2 and
               feed.counters().get("feed.snapshot_rebuilds", 0) >= 2, 60, interval=0.05,
               message="lost gaps rebuilt from snapshots")
    ex.ctl("faults", drop=0)
    ex.ctl("background", rate=0)
    ex.ctl("burst", count=100)                   # after the last loss: one more lost gap is healed too
    wait_live(feed, ex)
    counters = feed.counters()
    assert counters["feed.gaps_abandoned"] >= 2 and counters["feed.messages_lost"] > 0
    assert counters["feed.lost"] == 0 and counters["feed.rebuilds"] == 0      # no re-request from sequence 1
    log = stop_and_compare_orders(feed, ex, tmp_path)
    assert "snapshot rebuild (gap lost) of every book done" in log
    assert ex.stop() == 0


# ------------------------------------------------------------------ inconsistent and crossed books

def forge_next_message(ex: RunningExchange, feed: FeedUnderTest, feed_port: int, message: bytes) -> int:
    """One forged packet with the live session and the feed's next sequence (the exchange is quiet);
    then the exchange's real message at that sequence is a halt of MSFT, which the feed filters out."""
    published = ex.ctl("book", symbol="AAPL")["messages"]
    wait_until(lambda: feed.counters().get("feed.next_expected") == published + 1, 20, message="caught up")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(moldudp64.pack_messages("TEST000001", published + 1, [message])[0], ("127.0.0.1", feed_port))
    wait_until(lambda: feed.counters().get("feed.next_expected") == published + 2, 10, message="the forged packet")
    ex.ctl("halt", symbol="MSFT")               # the real message at published + 1: for a book we do not hold
    return published + 1


def start_quiet_and_live(exchange_factory, feed_factory, unique_name, tmp_path, **params):
    feed_port = free_port()
    ex = exchange_factory(extra_feed_ports=[feed_port], background={"seed": 44, "max_resting_per_symbol": 200})
    feed = snapshot_feed(feed_factory, unique_name, feed_port, ex, tmp_path, any_source_port=True, **params)
    ex.ctl("burst", count=400)
    wait_live(feed, ex, message="live")
    return feed_port, ex, feed


def test_an_execution_of_an_unknown_order_rebuilds_that_book(exchange_factory, feed_factory, unique_name, tmp_path):
    feed_port, ex, feed = start_quiet_and_live(exchange_factory, feed_factory, unique_name, tmp_path)
    encoder = ItchEncoder(["AAPL", "MSFT", "SPY"])
    before = feed.counters()
    forge_next_message(ex, feed, feed_port, encoder.encode(OrderDelete(987_654_321), 1, 0))   # AAPL: locate 1
    wait_until(lambda: feed.counters().get("feed.snapshot_trigger_inconsistent_book") == 1, 10,
               message="the inconsistent book noticed")
    ex.ctl("burst", count=200)
    wait_live(feed, ex)
    counters = feed.counters()
    assert counters["feed.book.unknown_order"] == before["feed.book.unknown_order"] + 1
    assert counters["feed.snapshot_rebuilds"] == before["feed.snapshot_rebuilds"] + 1
    assert counters["feed.snapshot_trigger_inconsistent_book"] == 1
    log = stop_and_compare_orders(feed, ex, tmp_path)
    assert "book AAPL inconsistent (unknown_order)" in log
    assert "snapshot rebuild (inconsistent book) of AAPL done" in log
    assert ex.stop() == 0


def test_a_book_that_stays_crossed_is_rebuilt(exchange_factory, feed_factory, unique_name, tmp_path):
    feed_port, ex, feed = start_quiet_and_live(exchange_factory, feed_factory, unique_name, tmp_path,
                                               snapshot={"crossed_ms": 100})
    best_ask = ex.ctl("book", symbol="AAPL")["asks"][0][0]
    encoder = ItchEncoder(["AAPL", "MSFT", "SPY"])
    forged = encoder.encode(AddOrder(987_654_321, "B", 100, "AAPL", best_ask + 10_000, None), 1, 0)
    forge_next_message(ex, feed, feed_port, forged)
    wait_until(lambda: feed.counters().get("feed.book.crossed", 0) >= 1, 10, message="AAPL crossed")
    wait_until(lambda: feed.counters().get("feed.snapshot_trigger_crossed_book") == 1, 10,
               message="the crossed book rebuilt")
    ex.ctl("burst", count=200)
    wait_live(feed, ex)
    log = stop_and_compare_orders(feed, ex, tmp_path)
    assert "book AAPL crossed for" in log and "snapshot rebuild (crossed book) of AAPL done" in log
    assert ex.stop() == 0
