"""``appliance status`` from shared memory: what it says when a table's writer died mid-write."""
from __future__ import annotations

from appliance.runtime.layout import load_layout
from appliance.runtime.market_state import SEQLOCK_OFFSET
from appliance.runtime.memory import SharedMemory
from appliance.supervisor.commands import render
from appliance.supervisor.status import build_status, one_line
from conftest import layout_document


def feed_layout_with_control_and_positions(write_layout, name: str):
    """A feed, AAPL and MSFT, and the control and positions tables status reads."""
    doc = layout_document(name, processes=[{"name": "feed", "agent": "m:A", "idle": {"strategy": "yield"}}],
                          rings=[], slots_per_process=4, symbols=["AAPL", "MSFT"])
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    return load_layout(write_layout(doc))


def test_a_slot_left_mid_write_by_a_killed_feed_is_reported_not_raised(write_layout, unique_name):
    layout = feed_layout_with_control_and_positions(write_layout, unique_name)
    with SharedMemory.create(layout) as memory:
        reader = memory.market_state_reader()
        reader.atomics.store(reader.offsets[1] + SEQLOCK_OFFSET, 1)       # SIGKILL between the two stores
        status = build_status(layout, memory)
        assert status["symbols"]["MSFT"]["unreadable"] == ["market_state"]
        assert "died mid-write" in status["symbols"]["MSFT"]["book"]
        assert "unreadable" not in status["symbols"]["AAPL"]
        assert "MSFT" in render(status, None) and one_line(status)


def test_status_marks_only_from_good_books_and_names_the_bad_ones_and_why(write_layout, unique_name):
    """Issue 22: forged data made every book stale, crossed and inconsistent, and status showed the
    P&L swung by the forged mark with no reason given."""
    from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_STALE
    from appliance.messages.codes import FeedStaleReason, GateReason
    from appliance.runtime.control import pack_gate
    layout = feed_layout_with_control_and_positions(write_layout, unique_name)
    with SharedMemory.create(layout) as memory:
        market, positions, control = memory.market_state_writer(), memory.positions_writer(), memory.control("*")
        market.publish(0, 1_900_000, 100, 1_900_200, 100, 0, 0, 0, ord("T"), 1, 1, 1)        # AAPL $190.01
        market.publish(1, 4_200_000, 100, 4_200_200, 100, 0, 0, 0, ord("T"), 1, 1, 1)
        positions.publish(0, 1000, 1000 * 1_900_000, 0, 1, 1, 1000, 0, 0)                    # long 1,000 at $190
        before = build_status(layout, memory)
        assert before["totals"]["unrealized_pnl"] == 10.0 and not before["symbols"]["AAPL"]["mark_old"]
        assert before["market_data"]["summary"] == "" and "market data" not in one_line(before)
        forged = BOOK_FLAG_STALE | BOOK_FLAG_CROSSED | BOOK_FLAG_INCONSISTENT
        market.publish(0, 9_999_900, 100, 1_900_200, 100, 0, 0, forged, ord("T"), 2, 2, 2)
        market.publish(1, 4_200_000, 100, 4_200_200, 100, 0, 0, BOOK_FLAG_STALE, ord("T"), 2, 2, 2)
        control.set("feed_stale_reason", FeedStaleReason.GAP_LOST)
        control.set("gate", pack_gate(int(GateReason.MARKET_DATA), 5))
        status = build_status(layout, memory)
        assert status["totals"]["unrealized_pnl"] == 10.0                 # not +$405,005 at the forged mid
        assert status["symbols"]["AAPL"]["mark_old"] and status["symbols"]["AAPL"]["mark"] == 190.01
        assert status["market_data"]["problems"] == {"AAPL": "gap lost", "MSFT": "gap lost"}
        line = one_line(status)
        assert line.startswith("gate CLOSED(market_data)") and "(old mark AAPL)" in line, line
        assert "market data gap lost: AAPL MSFT" in line, line
        text = render(status, None)
        assert "market data: gap lost: AAPL MSFT" in text and "old mark 190.01" in text, text
        assert "feed: live (gap lost)" in text or "feed: not ready (gap lost)" in text, text
        for handle in (market, positions, control):
            handle.close()


def test_the_line_says_when_the_firms_risk_hub_is_silent():
    status = {"gate": {"open": False, "reasons": ["FIRM"]}, "symbols": {},
              "totals": {"orders_sent": 3, "fills": 1, "rejects": 0, "pnl": 0.0},
              "dropcopy": {"connected": 1, "lag_records": 0, "lag_us": 0, "hub_silent": 0}}
    assert one_line(status).endswith(" | drop copy up lag 0 rec 0.0 ms")
    status["dropcopy"]["hub_silent"] = 1
    assert one_line(status).endswith(" | drop copy up lag 0 rec 0.0 ms | RISK HUB SILENT")
