"""The feed agent in this process against the simulated exchange's venue in this process: what stays
stale (a lost gap, the end of the session), what proves the session alive, and venue restarts and
new sessions detected, the books cleared and rebuilt from the new session by re-request.

The feed here has ``stale_after_ms`` 200 (also the silence after which a new session is adopted),
re-request timeout 20 ms and 2 retries; the venue heartbeats every 50 ms while pumped.
"""
from __future__ import annotations

import logging
import time

import pytest

from appliance.feed.books import BookSet
from appliance.messages.catalog import BOOK_DEPTH, BOOK_FLAG_STALE
from appliance.sim.ports import free_port
from appliance.wire import itch, moldudp64
from feed_rig import SUBSCRIBED, InProcessFeed, InProcessVenue, feed_layout

STALE_AFTER_MS = 200


@pytest.fixture
def rig(write_layout, unique_name, caplog):
    caplog.set_level(logging.INFO, logger="appliance.feed")
    made = []

    def start(session: str | None = None, **params):
        feed_port = free_port()
        venue = InProcessVenue(feed_port)
        made.append(venue)
        if session is not None:
            params["session"] = session
        document = feed_layout(unique_name, feed_port, venue.rerequest_port, source_port=venue.source_port, control=True,
                               stale_after_ms=STALE_AFTER_MS, rerequest_timeout_ms=20, rerequest_retries=2, **params)
        feed = InProcessFeed(write_layout, document)
        made.append(feed)
        return venue, feed
    yield start
    for thing in reversed(made):
        thing.close()


def live_and_caught_up(feed: InProcessFeed, venue: InProcessVenue) -> bool:
    return feed.caught_up(venue) and feed.feed_ready() == 1 and feed.none_stale()


def assert_books_equal(feed: InProcessFeed, venue: InProcessVenue, min_orders: int = 10) -> None:
    for symbol in SUBSCRIBED:
        book = feed.book(symbol)
        assert book.orders() == venue.orders(symbol), symbol
        engine = venue.venue.engine.book(symbol)
        assert book.levels(True) == engine.bids(displayed_only=True), symbol
        assert book.levels(False) == engine.asks(displayed_only=True), symbol
        assert not book.inconsistent and book.trading_state == b"T", symbol
    assert sum(feed.book(s).order_count for s in SUBSCRIBED) >= min_orders     # not two empty books


def not_stale(updates: list[dict]) -> list[dict]:
    return [u for u in updates if not u["flags"] & BOOK_FLAG_STALE]


def cleared_and_stale_since(feed: InProcessFeed, seen: int) -> bool:
    """Every book was published empty and stale after update ``seen``."""
    cleared = {u["symbol_id"] for u in feed.updates[seen:]
               if u["flags"] & BOOK_FLAG_STALE and u["bid_levels"] == u["ask_levels"] == 0}
    return cleared == set(range(len(SUBSCRIBED)))


def messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def start_live(rig, operations: int = 300, **kwargs):
    venue, feed = rig(**kwargs)
    venue.trade(operations)
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="live and caught up")
    assert_books_equal(feed, venue)
    return venue, feed


# ------------------------------------------------------------------ behaviour 3: a stale latch stays latched

def test_after_a_lost_gap_no_packet_makes_the_books_live_until_they_are_rebuilt(rig, caplog):
    venue, feed = start_live(rig)
    venue.answering = False                      # the re-request server is gone for now
    venue.venue.publisher.drop_next = 1
    venue.trade(30)
    feed.pump(lambda: feed.sequencer.gaps_abandoned >= 1, venue=venue, message="the gap abandoned")
    assert feed.all_stale() and feed.feed_ready() == 0
    seen = len(feed.updates)
    for _ in range(5):                           # good packets after the loss
        venue.trade(20)
        feed.pump(venue=venue, at_least=0.01)
    assert not_stale(feed.updates[seen:]) == []
    assert feed.all_stale() and feed.feed_ready() == 0
    # The feed rebuilds every book from sequence 1 (at once, then after a backoff while that fails).
    venue.answering = True
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, timeout=5, message="the books rebuilt")
    assert_books_equal(feed, venue)
    feed.pump(venue=venue, at_least=0.05)        # the counters are refreshed every 10 ms
    counters = feed.counters()
    assert counters["feed.rebuilds"] >= 1 and counters["feed.lost"] == 0 and counters["feed.rebuilding"] == 0
    assert counters["feed.session_restarts"] == 0 and counters["feed.gaps_abandoned"] >= 1
    assert messages(caplog, "rebuilding every book from sequence 1 of session TEST000001")


def test_after_the_end_of_session_no_packet_makes_the_books_live_and_a_new_session_rebuilds_them(rig, caplog):
    venue, feed = start_live(rig)
    venue.answering = False
    venue.venue.publisher.drop_next = 1          # the last data packet is lost: the end of session reveals it
    venue.venue.close()
    feed.pump(lambda: feed.sequencer.ended and feed.feed_ready() == 0 and feed.all_stale(), venue=venue,
              message="stale after the end of session")
    seen = len(feed.updates)
    venue.answering = True
    feed.pump(lambda: not feed.sequencer.gap_open, venue=venue, message="the lost tail recovered")
    feed.pump(venue=venue, at_least=0.05)
    assert not_stale(feed.updates[seen:]) == []
    assert feed.all_stale() and feed.feed_ready() == 0
    assert all(feed.book(s).order_count == 0 for s in SUBSCRIBED)      # every order expired at the close
    # The next session (another name) is adopted at once: the old one ended.
    venue.restart("TEST000002", seed=2)
    venue.trade(200)
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="the new session's books")
    assert_books_equal(feed, venue)
    assert feed.sequencer.session == b"TEST000002" and feed.sequencer.session_restarts == 1
    assert messages(caplog, "session restart: session TEST000001")


# ------------------------------------------------------------------ behaviour 4: restarts and new sessions

@pytest.mark.parametrize("configured,new_session", [
    (None, "TEST000001"),                # restarted with the same configuration: the same name, from 1
    (None, "TEST000002"),                # a new session name
    ("TEST000001", "TEST000001"),        # a configured session: its restart is detected as well
])
def test_a_venue_restart_is_detected_and_the_books_are_rebuilt_from_the_new_session(rig, caplog, configured,
                                                                                       new_session):
    venue, feed = start_live(rig, session=configured)
    old_next = feed.sequencer.next_expected
    seen = len(feed.updates)
    venue.restart(new_session, seed=7)           # order references restart at 1 too
    venue.trade(40)
    assert venue.published < old_next - 1        # the new session is behind what the feed saw
    feed.pump(lambda: cleared_and_stale_since(feed, seen), venue=venue, message="every book cleared and stale")
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="rebuilt from the new session")
    assert_books_equal(feed, venue, min_orders=1)
    assert feed.sequencer.session == moldudp64.session_bytes(new_session)
    venue.trade(100)                             # and the live stream goes on
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="caught up")
    assert_books_equal(feed, venue)
    feed.pump(venue=venue, at_least=0.05)
    counters = feed.counters()
    assert counters["feed.session_restarts"] == 1 and counters["feed.rebuilds"] == 1
    assert counters["feed.book.unknown_order"] == 0 and counters["feed.book.duplicate_add"] == 0   # nothing merged
    stale, restart = messages(caplog, "feed stale: no packet of session TEST000001"), messages(caplog,
                                                                                               "session restart")
    assert len(restart) == 1 and stale                 # the silence first, then the restart
    assert f"session TEST000001 at next sequence {old_next} -> session {new_session}" in restart[0]
    texts = [r.getMessage() for r in caplog.records]
    assert texts.index(stale[0]) < texts.index(restart[0])


def test_a_configured_session_never_follows_another_name(rig, caplog):
    venue, feed = start_live(rig, session="TEST000001")
    venue.restart("TEST000002", seed=7)
    venue.trade(40)
    feed.pump(lambda: feed.feed_ready() == 0 and feed.all_stale(), venue=venue, message="stale")
    feed.pump(venue=venue, at_least=3 * STALE_AFTER_MS / 1000)
    assert feed.sequencer.session_restarts == 0 and feed.sequencer.wrong_session > 5
    assert feed.all_stale() and feed.book("AAPL").order_count > 0      # stale, not thrown away


def test_strays_replays_and_garbage_neither_keep_the_session_alive_nor_throw_the_books_away(rig):
    venue, feed = start_live(rig)
    before = {s: feed.book(s).orders() for s in SUBSCRIBED}
    stray = moldudp64.pack_messages("STRAY00001", 1, venue.venue.store.get(1, 6))[0]
    replay = moldudp64.pack_messages(venue.session, 1, venue.venue.store.get(1, 6))[0]
    garbage = replay[:-1]                        # the header of the followed session, a block cut short
    # While the followed session is alive, any number of strays changes nothing.
    for _ in range(20):
        venue.send_raw(stray)
        venue.send_raw(replay)
    feed.pump(venue=venue, at_least=2 * STALE_AFTER_MS / 1000)
    assert feed.feed_ready() == 1 and feed.none_stale()
    assert {s: feed.book(s).orders() for s in SUBSCRIBED} == before
    # The followed session goes silent: garbage does not keep it alive.
    venue.silent = True
    venue.send_raw(stray)
    for _ in range(100):
        venue.send_raw(garbage)
        feed.pump(venue=venue, at_least=0.01)
        if feed.feed_ready() == 0:
            break
    assert feed.feed_ready() == 0 and feed.all_stale()
    assert feed.sequencer.session_restarts == 0
    # One replayed packet while silent is no restart either: the books are stale, not thrown away.
    venue.send_raw(replay)
    feed.pump(venue=venue, at_least=0.05)
    assert feed.sequencer.session_restarts == 0
    assert {s: feed.book(s).orders() for s in SUBSCRIBED} == before
    # The session speaks again: live, same books.
    venue.silent = False
    venue.trade(20)
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="live again")
    assert_books_equal(feed, venue)
    assert feed.sequencer.session_restarts == 0 and feed.sequencer.rebuilds == 0


def test_a_stray_session_adopted_during_a_silence_gives_way_when_the_venue_speaks_again(rig, caplog):
    venue, feed = start_live(rig)
    stray = moldudp64.pack_messages("STRAY00001", 1, venue.venue.store.get(1, 6))[0]
    venue.silent = True
    feed.pump(lambda: feed.feed_ready() == 0, venue=venue, message="stale after the silence")
    seen = len(feed.updates)
    venue.send_raw(stray)
    venue.send_raw(stray)                        # two packets while the followed session is silent: adopted
    feed.pump(lambda: cleared_and_stale_since(feed, seen), venue=venue, message="the stray adopted")
    assert feed.sequencer.session == b"STRAY00001" and feed.all_stale()
    venue.silent = False                         # the venue speaks again; the stray stays silent
    venue.trade(20)
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="the venue's session again")
    assert feed.sequencer.session == b"TEST000001" and feed.sequencer.session_restarts == 2
    assert_books_equal(feed, venue)


# ------------------------------------------------------------------ issue 22: why the feed is stale

def test_the_feed_says_why_every_book_is_stale_in_its_control_word(rig):
    from appliance.messages.codes import FeedStaleReason as Why
    venue, feed = rig()
    word = lambda: feed.control.get("feed_stale_reason")     # noqa: E731
    assert word() == Why.SILENT                               # nothing heard yet
    venue.trade(300)
    feed.pump(lambda: live_and_caught_up(feed, venue) and word() == Why.LIVE, venue=venue, message="live")
    venue.answering = False
    venue.venue.publisher.drop_next = 1
    venue.trade(30)
    feed.pump(lambda: feed.sequencer.gaps_abandoned >= 1 and word() in (Why.GAP_LOST, Why.REBUILDING),
              venue=venue, message="stale for the lost gap (then rebuilding)")
    venue.answering = True
    feed.pump(lambda: live_and_caught_up(feed, venue) and word() == Why.LIVE, venue=venue, timeout=5,
              message="live again")
    venue.venue.close()
    feed.pump(lambda: feed.sequencer.ended and word() == Why.SESSION_ENDED, venue=venue, message="session ended")


# ------------------------------------------------------------------ one BookUpdate per symbol per packet

def test_packets_recovered_by_re_request_and_released_from_hold_give_one_update_per_symbol_per_packet(rig):
    """Live packets, then a gap: the packets after it held, the missing ones re-requested, the held ones
    released. Every packet's changes reach the ring as one update per symbol (the counts they carry
    add up to the changes of the day's messages applied one by one) and the last update of each
    symbol is its book."""
    venue, feed = start_live(rig)
    venue.venue.publisher.drop_next = 3
    venue.trade(300)
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="the gap recovered")
    assert_books_equal(feed, venue)
    feed.pump(venue=venue, at_least=0.05)        # the counters are refreshed every 10 ms
    counters = feed.counters()
    assert counters["feed.gaps"] >= 1 and counters["feed.messages_recovered"] >= 1 and counters["feed.lost"] == 0
    assert counters["feed.book_updates_dropped"] == 0

    reference = BookSet(SUBSCRIBED, BOOK_DEPTH)  # the day's messages, one by one: what changed which symbol
    changes = [0] * len(SUBSCRIBED)
    for message in venue.venue.store.get(1, venue.published):
        sid = reference.apply(itch.LAYOUT_BY_BYTE[message[0]].unpack_from(message, 0))
        if sid >= 0:
            changes[sid] += 1
    counted = [0] * len(SUBSCRIBED)
    last = {}
    for update in feed.updates:
        counted[update["symbol_id"]] += update["message_count"]
        last[update["symbol_id"]] = update
    assert counted == changes and min(changes) > 50
    made_by_messages = [u for u in feed.updates if u["message_count"]]
    assert len(made_by_messages) < sum(changes)      # coalesced: fewer updates than changes
    for sid, symbol in enumerate(SUBSCRIBED):
        book = feed.book(symbol)
        levels = [0] * (4 * BOOK_DEPTH)
        book.snapshot_into(levels, 0)
        update = last[sid]
        assert [update[f"{side}_{what}_{i}"] for side in ("bid", "ask") for what in ("price", "shares")
                for i in range(BOOK_DEPTH)] == levels
        assert update["update_sequence"] == book.update_sequence and not update["flags"] & BOOK_FLAG_STALE


def test_bad_packets_from_the_publisher_are_counted_in_feed_bad_packets(rig):
    """The sequencer counts packets whose blocks do not fill them; the agent stored its count under
    feed.bad_packets and then the scanner's (always 0: the sequencer drops them before any scan)
    under the same label, so the counter read 0."""
    venue, feed = start_live(rig)
    good = moldudp64.pack_messages(venue.session, venue.published + 1, [b"A" * 36])[0]
    for _ in range(5):
        venue.send_raw(good[:-3])                # the publisher's address, its session, a block cut short
    feed.pump(lambda: feed.sequencer.bad_packets >= 5, venue=venue, message="bad packets counted")
    feed.pump(lambda: feed.counters()["feed.bad_packets"] >= 5, venue=venue, message="feed.bad_packets stored")
    assert feed.counters()["feed.bad_packets"] == feed.sequencer.bad_packets


def test_the_rerequest_socket_is_read_while_a_gap_is_open_and_every_slow_tick_otherwise(rig):
    """An idle duty cycle costs one empty receive (the feed socket), not two: the re-request socket carries only
    answers to our requests, so it is read every cycle while a gap is open (a request outstanding) and once per
    slow tick (every millisecond) otherwise; a late answer is still read, at the next tick."""
    venue, feed = rig()
    venue.trade(200)
    feed.pump(lambda: live_and_caught_up(feed, venue), venue=venue, message="live")
    agent, channel = feed.agent, feed.agent.rerequest
    reads = []
    receive = channel.receive
    channel.receive = lambda: reads.append(1) or receive()
    far = 3_600 * 1_000_000_000

    agent._next_slow_ns = time.monotonic_ns() + far      # no slow tick during these cycles
    for _ in range(50):
        agent.do_work()
    assert reads == []

    duplicates = feed.sequencer.duplicate_packets        # a late answer to an old request: waits for the tick
    venue.rerequests.handle(moldudp64.request(venue.session, 1, 5), channel.address)
    for _ in range(50):
        agent.do_work()
    assert reads == [] and feed.sequencer.duplicate_packets == duplicates
    agent._next_slow_ns = 0
    agent.do_work()
    assert feed.sequencer.duplicate_packets == duplicates + 1 and len(reads) == 2      # read, then empty

    venue.silent = True                                  # lost on the way: a gap, recovered without a slow tick
    venue.trade(100)
    venue.silent = False
    venue.trade(100)
    agent._next_slow_ns = time.monotonic_ns() + far
    feed.pump(lambda: feed.sequencer.gaps > 0 and feed.caught_up(venue), venue=venue, message="gap recovered")
    assert feed.sequencer.messages_recovered > 0 and len(reads) > 2
    assert agent._next_slow_ns > time.monotonic_ns() + far // 2    # no slow tick ran meanwhile
