"""``appliance status`` from shared memory: what it says when a table's writer died mid-write."""
from __future__ import annotations

from appliance.runtime.layout import load_layout
from appliance.runtime.market_state import SEQLOCK_OFFSET
from appliance.runtime.memory import SharedMemory
from appliance.supervisor.commands import render
from appliance.supervisor.status import build_status, one_line
from conftest import layout_document


def test_a_slot_left_mid_write_by_a_killed_feed_is_reported_not_raised(write_layout, unique_name):
    doc = layout_document(unique_name, processes=[{"name": "feed", "agent": "m:A", "idle": {"strategy": "yield"}}],
                          rings=[], slots_per_process=4, symbols=["AAPL", "MSFT"])
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    layout = load_layout(write_layout(doc))
    with SharedMemory.create(layout) as memory:
        reader = memory.market_state_reader()
        reader.atomics.store(reader.offsets[1] + SEQLOCK_OFFSET, 1)       # SIGKILL between the two stores
        status = build_status(layout, memory)
        assert status["symbols"]["MSFT"]["unreadable"] == ["market_state"]
        assert "died mid-write" in status["symbols"]["MSFT"]["book"]
        assert "unreadable" not in status["symbols"]["AAPL"]
        assert "MSFT" in render(status, None) and one_line(status)
