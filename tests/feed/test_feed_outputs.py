"""BookOutputs.publish_packet: one BookUpdate per changed symbol per packet, with the symbol's final
state and the count of messages it covers, its market-state slot written once, and no trade print
coalesced away (the strategy's ``on_trade`` sees both prints of one symbol in one packet)."""
from __future__ import annotations

import pytest

from appliance.feed.books import BookSet
from appliance.feed.outputs import BookOutputs
from appliance.messages.catalog import BOOK_DEPTH, BOOK_UPDATE
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import Strategy
from strategy_harness import SYMBOLS, Harness, strategy_layout
from itch_raw import add, directory, raw

LOCATES = {"AAPL": 7, "MSFT": 9, "SPY": 11}


class Recorder(Strategy):
    def on_start(self):
        self.events = []

    def on_trade(self, trade):
        self.events.append(("trade", trade.symbol, trade.price, trade.shares))


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


class Outputs:
    """BookOutputs on the layout's ring and market-state table, counting slot writes per symbol."""

    def __init__(self, memory: SharedMemory) -> None:
        self.ring = memory.ring("book_updates", "consumer")
        self.buffer = memory.ring_buffer("book_updates")
        self.market_state = memory.market_state_writer()
        self.slot_writes = [0] * len(SYMBOLS)
        write = self.market_state.publish

        def counting(symbol_id, *fields):
            self.slot_writes[symbol_id] += 1
            write(symbol_id, *fields)
        self.market_state.publish = counting
        self.outputs = BookOutputs(memory.ring("book_updates", "producer"), self.buffer, self.market_state)
        self.outputs.feed_stale = False
        self.books = BookSet(SYMBOLS, BOOK_DEPTH)
        for symbol, locate in LOCATES.items():
            self.books.apply(directory(symbol, locate))

    def packet(self, messages, mold_sequence: int = 1, rx_ns: int = 5) -> list[dict]:
        """Apply one packet; the BookUpdates it put on the ring, in order."""
        self.slot_writes[:] = [0] * len(SYMBOLS)
        self.outputs.publish_packet(iter(messages), self.books, mold_sequence, rx_ns)
        updates = []
        while (offset := self.ring.peek()) >= 0:
            updates.append(BOOK_UPDATE.as_dict(self.buffer, offset))
            self.ring.release()
        return updates

    def close(self) -> None:
        self.market_state.close()


def state_of(book) -> dict:
    """The fields of a BookUpdate that the book's state decides."""
    levels = [0] * (4 * BOOK_DEPTH)
    book.snapshot_into(levels, 0)
    names = [f"{side}_{what}_{i}" for side in ("bid", "ask") for what in ("price", "shares") for i in range(BOOK_DEPTH)]
    return {**dict(zip(names, levels)), "last_trade_price": book.last_trade_price,
            "last_trade_shares": book.last_trade_shares, "update_sequence": book.update_sequence}


def per_message_changes(messages) -> list[int]:
    """The symbol ids a BookUpdate went out for when every message had its own (before coalescing)."""
    books = BookSet(SYMBOLS, BOOK_DEPTH)
    for symbol, locate in LOCATES.items():
        books.apply(directory(symbol, locate))
    return [sid for sid in map(books.apply, messages) if sid >= 0]


def execute(locate, ref, shares, ts=4):
    return raw("E", locate, ts, order_reference_number=ref, executed_shares=shares, match_number=ref)


def cancel(locate, ref, shares, ts=4):
    return raw("X", locate, ts, order_reference_number=ref, canceled_shares=shares)


def test_a_packet_over_several_symbols_gives_one_update_per_changed_symbol_with_its_final_state(memory):
    out = Outputs(memory)
    try:
        aapl, msft, spy = (LOCATES[s] for s in SYMBOLS)
        messages = [add(aapl, 1, "B", 100, "AAPL", 1_000_000), add(msft, 2, "S", 50, "MSFT", 4_200_000),
                    add(aapl, 3, "S", 70, "AAPL", 1_010_000), add(99, 4, "B", 10, "ZZZZ", 10_000),   # not subscribed
                    add(aapl, 5, "B", 30, "AAPL", 1_000_000), cancel(aapl, 1, 40),
                    add(msft, 6, "B", 20, "MSFT", 4_190_000), add(aapl, 7, "B", 10, "AAPL", 1_000_500)]
        for i in range(BOOK_DEPTH + 2):         # MSFT has one bid: the last three land below the top five
            messages.append(add(msft, 100 + i, "B", 5, "MSFT", 4_100_000 - i * 100))
        before = per_message_changes(messages)
        assert len(before) == 11                # what used to be 11 BookUpdates
        updates = out.packet(messages, mold_sequence=41, rx_ns=123)
        assert [u["symbol_id"] for u in updates] == [0, 1]                 # AAPL, MSFT: in order of first change
        for update in updates:
            book = out.books.books[update["symbol_id"]]
            assert {k: update[k] for k in state_of(book)} == state_of(book)
            assert update["message_count"] == before.count(update["symbol_id"])
            assert (update["mold_sequence"], update["t_rx_ns"], update["flags"]) == (41, 123, 0)
        assert updates[0]["bid_levels"] == 2 and updates[0]["bid_price_0"] == 1_000_500
        assert updates[1]["bid_levels"] == BOOK_DEPTH and updates[1]["ask_price_0"] == 4_200_000
        assert out.slot_writes == [1, 1, 0]     # each changed symbol's market-state slot once, SPY's not at all
        view = memory.market_state_reader().read(0)
        assert (view.bid_price, view.bid_shares, view.ask_price) == (1_000_500, 10, 1_010_000)
        assert out.outputs.messages == 11 and out.outputs.published == 2

        assert out.packet([]) == [] and out.slot_writes == [0, 0, 0]
        deeper = add(msft, 200, "B", 5, "MSFT", 1_000)                      # below the top five: nothing changes
        assert out.packet([deeper]) == [] and out.slot_writes == [0, 0, 0]
        assert [u["message_count"] for u in out.packet([deeper[:4] + (201,) + deeper[5:], add(spy, 8, "B", 1, "SPY",
                                                                                            10_000)])] == [1]
    finally:
        out.close()


def test_two_prints_of_one_symbol_in_one_packet_both_reach_on_trade(memory):
    """A BookUpdate carries one last trade: a second print of the symbol in the packet ends its update
    first. Both prints reach the strategy's on_trade, each with the book as it stood after it; the
    market-state slot is still written once."""
    out = Outputs(memory)
    harness = Harness(memory, Recorder)
    try:
        aapl, msft = LOCATES["AAPL"], LOCATES["MSFT"]
        out.packet([add(aapl, 1, "B", 100, "AAPL", 1_000_000), add(aapl, 2, "B", 100, "AAPL", 999_000),
                    add(aapl, 3, "S", 100, "AAPL", 1_001_000)])
        printed = raw("P", aapl, 6, order_reference_number=0, buy_sell_indicator="B", shares=5, stock="AAPL",
                      price=1_000_500, match_number=9)
        messages = [execute(aapl, 1, 40), add(msft, 4, "B", 10, "MSFT", 4_000_000), cancel(aapl, 2, 10),
                    execute(aapl, 1, 60), add(aapl, 5, "S", 10, "AAPL", 1_002_000), printed]
        before = per_message_changes(
            [add(aapl, 1, "B", 100, "AAPL", 1_000_000), add(aapl, 2, "B", 100, "AAPL", 999_000),
             add(aapl, 3, "S", 100, "AAPL", 1_001_000)] + messages)[3:]
        updates = out.packet(messages)
        aapl_updates = [u for u in updates if u["symbol_id"] == 0]
        assert [(u["last_trade_price"], u["last_trade_shares"], u["message_count"]) for u in aapl_updates] == [
            (1_000_000, 40, 2), (1_000_000, 60, 2), (1_000_500, 5, 1)]          # one print each
        assert sum(u["message_count"] for u in updates) == len(before) == 6
        assert aapl_updates[0]["bid_shares_0"] == 60 and aapl_updates[0]["bid_shares_1"] == 90   # after the cancel
        assert aapl_updates[1]["bid_price_0"] == 999_000                         # order 1 filled and gone
        assert out.slot_writes == [1, 1, 0]
        assert memory.market_state_reader().read(0).last_trade_price == 1_000_500

        for update in updates:                  # the strategy's side: the same records, as the host reads them
            offset = harness.feed.claim()
            BOOK_UPDATE.pack_into(harness.buffer, offset, *(update[f.name] for f in BOOK_UPDATE.fields[3:]))
            harness.feed.commit()
        harness.step()
        trades = [e for e in harness.strategy.events if e[0] == "trade"]
        assert trades == [("trade", "AAPL", 1_000_000, 40), ("trade", "AAPL", 1_000_000, 60),
                          ("trade", "AAPL", 1_000_500, 5)]
    finally:
        out.close()
