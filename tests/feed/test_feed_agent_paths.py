"""The feed agent's two book paths: the compiled one (feed/fast.py) when built and not switched off by
``params.compiled_books: false``, else the Python reference with a warning when the extension is missing;
both give the same BookUpdates, counters and books on the same venue day."""
from __future__ import annotations

import logging

import pytest

from appliance.feed import fast
from appliance.feed.books import BookSet
from appliance.sim.ports import free_port
from feed_rig import SUBSCRIBED, InProcessFeed, InProcessVenue, feed_layout

CLOCKS = ("t_rx_ns", "t_feed_out_ns", "t_exchange_ns", "last_trade_t_exchange_ns")  # the two venues run at different times


def _run(write_layout, name: str, operations: int, **params):
    """One venue day (same seed) through an in-process feed agent: (updates, book counters, books, agent books,
    the compiled path's memory counters)."""
    venue = InProcessVenue(free_port(), seed=7)
    document = feed_layout(name, venue.feed_address[1], venue.rerequest_port, source_port=venue.source_port,
                           control=True, stale_after_ms=600_000, **params)
    feed = InProcessFeed(write_layout, document)
    try:
        venue.trade(operations)
        feed.pump(lambda: feed.caught_up(venue) and feed.none_stale(), venue=venue, timeout=30,
                  message="caught up and live")
        feed.agent._publish_counters()
        counters = {k: v for k, v in feed.counters().items() if k.startswith("feed.book") or
                    k.startswith("feed.messages_")}
        updates = [{k: v for k, v in u.items() if k not in CLOCKS} for u in feed.updates]
        books = {s: (feed.book(s).levels(True), feed.book(s).levels(False), feed.book(s).orders()) for s in SUBSCRIBED}
        memory = {k: v for k, v in feed.counters().items() if k.startswith("feed.compiled_")}
        return updates, counters, books, type(feed.agent.books), memory
    finally:
        feed.close()
        venue.close()


@pytest.mark.skipif(not fast.AVAILABLE, reason="appliance.feed._book_fast is not built")
def test_compiled_and_python_agents_publish_the_same_updates(write_layout, unique_name, caplog):
    caplog.set_level(logging.INFO, logger="appliance.feed")
    compiled = _run(write_layout, unique_name, 600)
    python = _run(write_layout, unique_name, 600, compiled_books=False)
    assert compiled[3] is fast.FastFeed and python[3] is BookSet
    assert len(compiled[0]) > 100 and compiled[0] == python[0]
    assert compiled[1] == python[1] and compiled[1]["feed.book.messages"] > 100
    # the live orders the books hold, one gauge on both paths; the compiled path's bytes and refusals
    assert compiled[1]["feed.book_orders"] == sum(len(orders) for _, _, orders in compiled[2].values()) > 0
    assert compiled[4]["feed.compiled_memory_bytes"] > 0 and compiled[4]["feed.compiled_alloc_failures"] == 0
    assert python[4] == {}
    assert compiled[2] == python[2]
    started = [r.getMessage() for r in caplog.records if "feed listening" in r.getMessage()]
    assert [line.endswith("books compiled") for line in started] == [True, False]
    assert not any("is not built" in r.getMessage() for r in caplog.records)


def test_without_the_extension_the_agent_warns_and_runs_python(write_layout, unique_name, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="appliance.feed")
    monkeypatch.setattr(fast, "AVAILABLE", False)
    updates, counters, books, kind, _ = _run(write_layout, unique_name, 100)
    assert kind is BookSet and updates and counters["feed.book.messages"] > 0
    warnings = [r for r in caplog.records if "appliance.feed._book_fast is not built" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
