"""Issue 22: shmtop and the exporter say which books are bad and why, and mark positions only
from good books (the last good mark, flagged old, while a book is bad)."""
from __future__ import annotations

from appliance.messages.catalog import BOOK_FLAG_CROSSED, BOOK_FLAG_INCONSISTENT, BOOK_FLAG_STALE
from appliance.messages.codes import FeedStaleReason, GateReason
from appliance.ops import metrics, shmtop
from appliance.ops.snapshot import Observer
from appliance.runtime.control import pack_gate
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from conftest import layout_document


def samples(families, name: str) -> dict:
    return {tuple(sorted(s.labels.items())): s.value for f in families for s in f.samples if s.name == name}


def test_shmtop_and_the_exporter_name_the_bad_books_the_reason_and_the_old_marks(write_layout, unique_name):
    doc = layout_document(unique_name, processes=[{"name": "feed", "agent": "m:A", "idle": {"strategy": "yield"}}],
                          rings=[], slots_per_process=4, symbols=["AAPL", "MSFT", "SPY"])
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    layout = load_layout(write_layout(doc))
    with SharedMemory.create(layout) as memory:
        market, positions, control = memory.market_state_writer(), memory.positions_writer(), memory.control("*")
        for sid in range(3):
            market.publish(sid, 1_900_000, 100, 1_900_200, 100, 0, 0, 0, ord("T"), 1, 1, 1)
        positions.publish(0, 1000, 1000 * 1_900_000, 0, 1, 1, 1000, 0, 0)                 # long 1,000 at $190
        forged = BOOK_FLAG_STALE | BOOK_FLAG_CROSSED | BOOK_FLAG_INCONSISTENT
        market.publish(0, 9_999_900, 100, 1_900_200, 100, 0, 0, forged, ord("T"), 2, 2, 2)
        market.publish(1, 1_900_300, 100, 1_900_200, 100, 0, 0, BOOK_FLAG_CROSSED, ord("T"), 2, 2, 2)
        control.set("feed_stale_reason", FeedStaleReason.REBUILDING)
        control.set("gate", pack_gate(int(GateReason.MARKET_DATA), 3))
        observer = Observer(layout)
        try:
            snap = observer.snapshot()
            families = metrics.families(snap, observer.counter_infos)
        finally:
            observer.close()
        aapl, msft, spy = snap.symbols
        assert (aapl.problem, msft.problem, spy.problem) == ("rebuilding", "crossed", "")
        assert aapl.mark_old and aapl.mark == 190.01 and aapl.unrealized_pnl == 10.0
        assert not spy.mark_old
        trading = "\n".join(shmtop._render_trading(snap))
        assert "CLOSED: market_data" in trading and "MARKET   rebuilding: AAPL; crossed: MSFT" in trading, trading
        assert "FEED" in trading and "(rebuilding)" in trading, trading
        table = "\n".join(shmtop._render_symbols(snap, "name", ""))
        assert "stale,crossed,inconsistent (rebuilding), old mark 190.0100" in table, table
        assert next(line for line in table.splitlines() if line.startswith("MSFT")).endswith(" crossed"), table
        assert samples(families, "appliance_book_bad") == {
            (("reason", "rebuilding"), ("symbol", "AAPL")): 1, (("reason", "crossed"), ("symbol", "MSFT")): 1,
            (("reason", "none"), ("symbol", "SPY")): 0}
        assert samples(families, "appliance_mark_old") == {
            (("symbol", "AAPL"),): 1, (("symbol", "MSFT"),): 1, (("symbol", "SPY"),): 0}
        assert samples(families, "appliance_mark_price_dollars")[(("symbol", "AAPL"),)] == 190.01
        assert samples(families, "appliance_pnl_unrealized_dollars")[(("symbol", "AAPL"),)] == 10.0
        assert samples(families, "appliance_feed_stale_reason")[(("reason", "rebuilding"),)] == 1
        assert samples(families, "appliance_gate_closed_reason")[(("reason", "market_data"),)] == 1
        for handle in (market, positions, control):
            handle.close()
