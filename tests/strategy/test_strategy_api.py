"""The strategy API and host in one process: hand-built records through real rings, a scripted strategy.

The test plays the feed (book_updates), risk (reads order_intents, writes risk_rejects) and the
OMS (exec_to_strategy); the host is driven the way the agent drives it, without the agent
(tests/support/strategy_harness.py).
"""
from __future__ import annotations

import pytest

from appliance.messages.catalog import BOOK_DEPTH, BOOK_FLAG_HALTED, BOOK_FLAG_STALE, BOOK_UPDATE
from appliance.messages.schema import HEADER_COUNT
from appliance.messages.codes import (
    ALL_SYMBOLS, TIF_DAY, TIF_IOC, Action, ExecEvent, OmsReason, RejectSource, RiskReason, Side,
)
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import (
    BackPressure, OrderState, Strategy, StrategyStopping, format_price, price_from_decimal, reject_reason_name,
)
from appliance.strategy.ids import ClientOrderIds
from strategy_harness import STRATEGY_ID, Harness, strategy_layout


class Scripted(Strategy):
    """Records every callback; ``parameters`` maps a callback name to an action run after recording."""

    def on_start(self):
        self.events = [("start",)]
        self._do("on_start")

    def _do(self, name, *args):
        action = (self.params or {}).get(name)
        if action is not None:
            action(self, *args)

    def on_book(self, book):
        self.events.append(("book", book.symbol, book.bid_price, book.ask_price))
        self._do("on_book", book)

    def on_trade(self, trade):
        self.events.append(("trade", trade.symbol, trade.price, trade.shares))

    def on_order_accepted(self, order):
        self.events.append(("accepted", order.client_order_id, order.state, order.replaces))

    def on_fill(self, order, fill):
        self.events.append(("fill", order.client_order_id, fill.shares, fill.price, order.leaves, order.state,
                            self.positions[order.symbol]))
        self._do("on_fill", order)

    def on_order_canceled(self, order):
        self.events.append(("canceled", order.client_order_id, order.state))

    def on_order_rejected(self, order, source, reason):
        self.events.append(("rejected", order.client_order_id, source, reject_reason_name(source, reason)))

    def on_cancel_rejected(self, order, source, reason):
        self.events.append(("cancel_rejected", order.client_order_id, order.state))

    def on_timer(self, now_ns):
        self.events.append(("timer",))
        self._do("on_timer")

    def on_stop(self):
        self.events.append(("stop",))
        self._do("on_stop")


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


@pytest.fixture
def small_ring_memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name, intent_capacity=8)))) as mem:
        yield mem


P = price_from_decimal


def test_callbacks_in_order_and_the_order_view_follows_the_execution_reports(memory):
    sent = {}

    def quote(s, book):
        if "buy" not in sent:
            sent["buy"] = s.buy("AAPL", 200, P("100.01"))
            sent["sell"] = s.sell("AAPL", 100, P("100.04"), tif=TIF_IOC)

    h = Harness(memory, Scripted, {"on_book": quote})
    startup = h.intents()
    assert [(i["action"], i["symbol_id"], i["strategy_id"]) for i in startup] == \
        [(Action.CANCEL_ALL, ALL_SYMBOLS, STRATEGY_ID)]              # whatever a previous run left open

    h.book("AAPL", [(P("100.00"), 500)], [(P("100.05"), 300)], last=(P("100.02"), 100), t_rx=555, t_feed=666)
    assert h.strategy.events == [("start",), ("trade", "AAPL", P("100.02"), 100),
                                 ("book", "AAPL", P("100.00"), P("100.05"))]
    buy, sell = h.intents()
    assert buy["client_order_id"] == sent["buy"] and sell["client_order_id"] == sent["sell"]
    assert sent["sell"] > sent["buy"] > startup[0]["client_order_id"] > 0
    assert (buy["action"], buy["side"], buy["shares"], buy["price"], buy["time_in_force"], buy["symbol_id"]) == \
        (Action.NEW, Side.BUY, 200, 1_000_100, TIF_DAY, 0)
    assert (sell["side"], sell["time_in_force"], sell["orig_client_order_id"]) == (Side.SELL, TIF_IOC, 0)
    assert (buy["t_rx_ns"], buy["t_feed_out_ns"]) == (555, 666)      # the hops of the update that caused it
    assert buy["t_strategy_out_ns"] >= buy["t_feed_out_ns"] and buy["strategy_id"] == STRATEGY_ID
    orders = h.strategy.orders
    assert len(orders) == 2 and orders[sent["buy"]].state is OrderState.PENDING_NEW
    with pytest.raises(AttributeError):
        orders[sent["buy"]].price = 1                                  # read-only

    h.report(ExecEvent.ACCEPTED, sent["buy"], shares=200, price=P("100.01"), leaves=200)
    assert orders[sent["buy"]].state is OrderState.LIVE
    h.report(ExecEvent.EXECUTED, sent["buy"], shares=50, price=P("100.01"), leaves=150, position=50)
    h.report(ExecEvent.EXECUTED, sent["buy"], shares=150, price=P("100.00"), leaves=0, position=200)
    assert h.strategy.events[-3:] == [
        ("accepted", sent["buy"], OrderState.LIVE, 0),
        ("fill", sent["buy"], 50, P("100.01"), 150, OrderState.LIVE, 50),
        ("fill", sent["buy"], 150, P("100.00"), 0, OrderState.FILLED, 200)]
    assert sent["buy"] not in orders and len(orders) == 1
    positions = h.strategy.positions
    assert (positions["AAPL"], positions.bought("AAPL"), positions.sold("AAPL")) == (200, 200, 0)
    assert positions.cost_basis("AAPL") == 200 * P("100.00")

    # replace from outside a book callback: no hop timestamps
    h.report(ExecEvent.ACCEPTED, sent["sell"], side=Side.SELL, shares=100, leaves=100, position=200)
    new_id = h.strategy.replace(sent["sell"], shares=300, price=P("100.06"))
    assert h.strategy.replace(sent["sell"], price=P("100.07")) is None          # already being replaced
    (intent,) = h.intents()
    assert (intent["action"], intent["client_order_id"], intent["orig_client_order_id"], intent["side"],
            intent["shares"], intent["price"], intent["t_rx_ns"], intent["t_feed_out_ns"]) == \
        (Action.REPLACE, new_id, sent["sell"], Side.SELL, 300, P("100.06"), 0, 0)
    assert orders[sent["sell"]].state is OrderState.PENDING_REPLACE and orders[new_id].replaces == sent["sell"]
    h.report(ExecEvent.REPLACED, new_id, orig=sent["sell"], side=Side.SELL, shares=300, price=P("100.06"),
             leaves=300, position=200)
    assert sent["sell"] not in orders and orders[new_id].state is OrderState.LIVE
    assert h.strategy.events[-1] == ("accepted", new_id, OrderState.LIVE, sent["sell"])

    assert h.strategy.cancel(new_id) is True
    assert h.strategy.cancel(new_id) is False                         # one cancel on its way is enough
    (cancel,) = h.intents()
    assert (cancel["action"], cancel["orig_client_order_id"], cancel["shares"], cancel["side"]) == \
        (Action.CANCEL, new_id, 0, Side.SELL)
    assert cancel["client_order_id"] > new_id                          # its own unique id
    assert orders[new_id].state is OrderState.PENDING_CANCEL
    h.report(ExecEvent.CANCELED, new_id, side=Side.SELL, shares=300, leaves=0, position=200)
    assert h.strategy.events[-1] == ("canceled", new_id, OrderState.CANCELED) and len(orders) == 0

    h.host.timer(123)
    h.host.stop()
    h.host.stop()                                                     # idempotent
    assert h.strategy.events[-2:] == [("timer",), ("stop",)]
    assert [(i["action"], i["symbol_id"]) for i in h.intents()] == [(Action.CANCEL_ALL, ALL_SYMBOLS)]
    stats = h.host.stats
    assert (stats.fills, stats.filled_shares, stats.book_updates, stats.errors, stats.rejects) == (2, 200, 1, 0, 0)


def test_rejects_from_risk_the_oms_and_the_exchange_with_their_names(memory):
    h = Harness(memory, Scripted)
    h.intents()
    s = h.strategy
    a = s.buy("AAPL", 100, P("10.00"))
    b = s.buy("MSFT", 100, P("20.00"))
    c = s.sell("SPY", 100, P("30.00"))
    h.risk_reject(a, RiskReason.MAX_SHARES)
    h.report(ExecEvent.REJECTED_LOCALLY, b, "MSFT", reason=OmsReason.GATE_CLOSED, source=RejectSource.OMS)
    h.report(ExecEvent.REJECTED, c, "SPY", side=Side.SELL, reason=ord("H"), source=RejectSource.EXCHANGE)
    assert s.events[1:] == [("rejected", a, RejectSource.RISK, "MAX_SHARES"),
                            ("rejected", b, RejectSource.OMS, "GATE_CLOSED"),
                            ("rejected", c, RejectSource.EXCHANGE, "HALTED(H)")]
    assert len(s.orders) == 0
    stats = h.host.stats
    assert (stats.rejects, stats.rejects_risk, stats.rejects_oms, stats.rejects_exchange) == (3, 1, 1, 1)

    # a failed replace leaves the original standing; a refused cancel makes the order live again
    d = s.buy("AAPL", 100, P("10.00"))
    h.report(ExecEvent.ACCEPTED, d, leaves=100)
    e = s.replace(d, price=P("10.01"))
    h.risk_reject(e, RiskReason.PRICE_COLLAR)
    assert s.orders[d].state is OrderState.LIVE and s.orders[d].replaced_by == 0 and e not in s.orders
    assert s.events[-1] == ("rejected", e, RejectSource.RISK, "PRICE_COLLAR")
    s.cancel(d)
    cancel_id = h.intents()[-1]["client_order_id"]
    h.risk_reject(cancel_id, RiskReason.UNKNOWN_ORDER)
    assert s.events[-1] == ("cancel_rejected", d, OrderState.LIVE)
    # the venue says an order is gone (cancel reject): it leaves the view
    s.cancel(d)
    h.report(ExecEvent.CANCEL_REJECTED, d, reason=0)
    assert d not in s.orders and s.events[-1] == ("canceled", d, OrderState.CANCELED)
    assert reject_reason_name(RejectSource.RISK, 999) == "RiskReason(999)"
    assert reject_reason_name(RejectSource.EXCHANGE, ord("Z")) == "SHARES_EXCEED_MAX(Z)"


def test_the_oms_no_such_order_reject_has_a_name():
    """The OMS rejects an order or its replacement that a Cancel Reject killed with reason 'I'
    (``codes.REJECT_REASON_NO_SUCH_ORDER``, e.g. a replace that arrived after the fill): its name, not
    UNKNOWN(I), in the strategy's log lines."""
    from appliance.messages.codes import REJECT_REASON_NO_SUCH_ORDER
    from appliance.oms import orders
    assert orders.REJECT_REASON_NO_SUCH_ORDER == REJECT_REASON_NO_SUCH_ORDER        # one fact, the OMS's too
    assert reject_reason_name(RejectSource.EXCHANGE, REJECT_REASON_NO_SUCH_ORDER) == "NO_SUCH_ORDER(I)"
    assert reject_reason_name(RejectSource.EXCHANGE, ord("q")) == "UNKNOWN(q)"


def test_refused_cancels_from_the_oms(memory):
    h = Harness(memory, Scripted)
    h.intents()
    s = h.strategy
    a = s.buy("AAPL", 100, P("10.00"))
    b = s.sell("MSFT", 100, P("20.00"))
    h.report(ExecEvent.ACCEPTED, a, leaves=100)
    h.report(ExecEvent.ACCEPTED, b, "MSFT", side=Side.SELL, leaves=100)
    h.intents()
    # the OMS's session is down: a CANCEL_ALL comes back with symbol id ALL_SYMBOLS, and the orders stand
    s.cancel_all()
    (cancel_all,) = h.intents()
    h.report(ExecEvent.REJECTED_LOCALLY, cancel_all["client_order_id"], symbol_id=ALL_SYMBOLS,
             reason=OmsReason.SESSION_DOWN, source=RejectSource.OMS)
    assert h.host.stats.bad_records == 0 and h.host.stats.rejects_oms == 1
    assert s.orders[a].state is OrderState.LIVE and s.orders[b].state is OrderState.LIVE
    assert s.events[-2:] == [("cancel_rejected", a, OrderState.LIVE), ("cancel_rejected", b, OrderState.LIVE)]
    # a cancel of an order the OMS does not know: nothing is left to cancel
    s.cancel(a)
    (cancel,) = h.intents()
    h.report(ExecEvent.REJECTED_LOCALLY, cancel["client_order_id"], orig=a, reason=OmsReason.UNKNOWN_ORDER,
             source=RejectSource.OMS)
    assert a not in s.orders and s.events[-1] == ("canceled", a, OrderState.CANCELED)
    with pytest.raises(ValueError, match="time in force"):
        s.buy("AAPL", 100, P("1.00"), tif=99999)                       # TIF_SYSTEM_HOURS: not in the contract


def test_records_for_others_and_malformed_records_are_counted_and_dropped(memory):
    h = Harness(memory, Scripted, traded=("AAPL", "SPY"))
    h.intents()
    s = h.strategy
    a = s.buy("AAPL", 100, P("10.00"))
    h.report(ExecEvent.EXECUTED, a, shares=100, price=P("10.00"), leaves=0, position=100, strategy_id=99)
    h.risk_reject(a, RiskReason.MAX_SHARES, strategy_id=99)
    h.report(ExecEvent.ACCEPTED, a, symbol_id=17)                       # symbol id outside the layout
    h.report(99, a)                                                     # no such event
    h.report(ExecEvent.EXECUTED, 424242, shares=100, price=P("10.00"), position=300)   # not ours (a restart?)
    h.book("AAPL", [(P("1.00"), 1)], [(P("1.01"), 1)], type_id=999)
    h.book("AAPL", [(P("1.00"), 1)], [(P("1.01"), 1)], symbol_id=50)
    h.book("MSFT", [(P("1.00"), 1)], [(P("1.01"), 1)])                 # not traded: ignored, no callback
    assert s.events == [("start",)]
    assert s.orders[a].state is OrderState.PENDING_NEW
    stats = h.host.stats
    assert (stats.foreign_records, stats.bad_records, stats.unknown_orders, stats.book_updates_ignored) == \
        (2, 4, 1, 1)
    assert s.positions["AAPL"] == 300                                   # the OMS's position still counts
    assert s.book("MSFT") is None and s.symbols == ("AAPL", "SPY")
    with pytest.raises(ValueError, match="not a symbol this strategy trades"):
        s.buy("MSFT", 100, P("1.00"))


def test_actions_check_their_arguments_and_send_nothing_when_wrong(memory):
    h = Harness(memory, Scripted)
    h.intents()
    s = h.strategy
    with pytest.raises(TypeError, match="4 implied decimals"):
        s.buy("AAPL", 100, 10.5)
    with pytest.raises(ValueError, match="shares must be"):
        s.buy("AAPL", 0, P("1.00"))
    with pytest.raises(ValueError, match="time in force"):
        s.buy("AAPL", 100, P("1.00"), tif=5)
    with pytest.raises(ValueError, match="not a symbol"):
        s.sell("NOPE", 100, P("1.00"))
    assert s.cancel(12345) is False and s.replace(12345, price=1) is None
    assert h.intents() == [] and len(s.orders) == 0
    assert format_price(1_900_100) == "190.0100" and format_price(-5) == "-0.0005"
    with pytest.raises(ValueError):
        price_from_decimal("1.00001")


def test_book_view_reads_levels_flags_and_state(memory):
    h = Harness(memory, Scripted)
    book = h.strategy.book("AAPL")
    assert not book.has_data and book.stale and book.halted and book.mid is None
    h.book("AAPL", [(P("10.00"), 100), (P("9.99"), 200)], [(P("10.02"), 300)], last=(P("10.01"), 50))
    assert book.bids == ((P("10.00"), 100), (P("9.99"), 200)) and book.asks == ((P("10.02"), 300),)
    assert (book.bid_price, book.bid_shares, book.ask_price, book.ask_shares, book.mid) == \
        (P("10.00"), 100, P("10.02"), 300, P("10.01"))
    assert not (book.stale or book.crossed or book.halted) and book.trading_state == "T"
    assert book.last_trade == (P("10.01"), 50) and book.t_rx_ns == 1111 and book.t_feed_out_ns == 2222
    h.book("AAPL", [(P("10.00"), 100)], [], flags=BOOK_FLAG_STALE | BOOK_FLAG_HALTED, state=b"H",
           last=(P("10.01"), 50))
    assert book.stale and book.halted and book.trading_state == "H" and book.ask_price == 0 and book.mid is None
    # the same last trade again is not a new trade
    assert [e[0] for e in h.strategy.events] == ["start", "trade", "book", "book"]


def test_the_book_stays_valid_after_its_ring_slot_is_reused(memory):
    h = Harness(memory, Scripted)
    book = h.strategy.book("AAPL")
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.02"), 300)], last=(P("10.01"), 50), seq=9)
    for i in range(80):                  # more than the ring's 64 slots: AAPL's slot is overwritten
        h.book("MSFT", [(P("20.00") + i, 1)], [(P("21.00"), 1)], seq=i)
    assert (book.bids, book.asks, book.last_trade, book.update_sequence) == \
        (((P("10.00"), 100),), ((P("10.02"), 300),), (P("10.01"), 50), 9)


def test_the_book_is_kept_when_on_book_raises_and_its_slot_is_reused(memory):
    def explode(s, book):
        raise RuntimeError("user bug")

    h = Harness(memory, Scripted, {"on_book": explode})
    book = h.strategy.book("AAPL")
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.02"), 300)], seq=9)
    assert h.host.failed
    for i in range(80):
        h.book("MSFT", [(P("20.00") + i, 1)], [(P("21.00"), 1)], seq=i)
    assert (book.bids, book.asks, book.update_sequence) == (((P("10.00"), 100),), ((P("10.02"), 300),), 9)


def test_a_malformed_update_is_dropped_before_it_reaches_the_book(memory):
    h = Harness(memory, Scripted)
    book = h.strategy.book("AAPL")
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.02"), 300)], last=(P("10.01"), 50))
    good = (book.bids, book.asks, book.last_trade, book.update_sequence)
    body = BOOK_UPDATE.body(symbol_id=0, trading_state=ord("T"), bid_levels=BOOK_DEPTH + 1, ask_levels=1,
                            bid_price_0=P("1.00"), ask_price_0=P("1.01"), last_trade_price=P("1.00"),
                            last_trade_shares=7, update_sequence=99)
    for version in (BOOK_UPDATE.version, BOOK_UPDATE.version + 1):     # too many levels; then a wrong version
        offset = h.feed.claim()
        h.buffer[offset:offset + BOOK_UPDATE.size] = BOOK_UPDATE.struct.pack(
            BOOK_UPDATE.type_id, version, BOOK_UPDATE.size, *body)
        h.feed.commit()
        body[BOOK_UPDATE.index_of["bid_levels"] - HEADER_COUNT] = 1
    h.step()
    assert (book.bids, book.asks, book.last_trade, book.update_sequence) == good
    assert h.host.stats.bad_records == 2 and [e[0] for e in h.strategy.events] == ["start", "trade", "book"]


def test_queued_updates_are_conflated_per_symbol_but_every_print_is_delivered_in_order(memory):
    def quote(s, book):
        s.buy(book.symbol, 100, book.bid_price)

    h = Harness(memory, Scripted, {"on_book": quote})
    h.intents()
    # queued at once: two prints and a quote change in AAPL, a print in MSFT, a malformed record between
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.05"), 100)], last=(P("10.01"), 10), t_rx=1, t_feed=2, step=False)
    h.book("MSFT", [(P("20.00"), 100)], [(P("20.05"), 100)], last=(P("20.01"), 20), t_rx=3, t_feed=4, step=False)
    h.book("AAPL", [(P("10.01"), 100)], [(P("10.05"), 100)], last=(P("10.02"), 30), t_rx=5, t_feed=6, step=False)
    h.book("SPY", [(P("30.00"), 1)], [], type_id=99, step=False)
    h.book("AAPL", [(P("10.02"), 100)], [(P("10.05"), 100)], last=(P("10.02"), 30), t_rx=7, t_feed=8, step=False)
    h.book("AAPL", [(P("10.03"), 100)], [(P("10.05"), 100)], last=(P("10.02"), 40), t_rx=9, t_feed=10, step=False)
    assert h.step() == 6
    assert h.strategy.events[1:] == [
        ("trade", "AAPL", P("10.01"), 10), ("trade", "MSFT", P("20.01"), 20), ("trade", "AAPL", P("10.02"), 30),
        ("trade", "AAPL", P("10.02"), 40),          # the same price, a new size: a new print
        ("book", "MSFT", P("20.00"), P("20.05")), ("book", "AAPL", P("10.03"), P("10.05"))]
    stats = h.host.stats
    assert (stats.book_updates, stats.book_updates_conflated, stats.bad_records) == (5, 3, 1)
    msft, aapl = h.intents()                        # each carries the hops of its symbol's latest update
    assert (msft["symbol_id"], msft["price"], msft["t_rx_ns"], msft["t_feed_out_ns"]) == (1, P("20.00"), 3, 4)
    assert (aapl["symbol_id"], aapl["price"], aapl["t_rx_ns"], aapl["t_feed_out_ns"]) == (0, P("10.03"), 9, 10)
    h.book("AAPL", [(P("10.04"), 100)], [(P("10.05"), 100)], last=(P("10.02"), 40))
    assert h.strategy.events[-1] == ("book", "AAPL", P("10.04"), P("10.05")) and stats.book_updates_conflated == 3


def test_an_exception_in_user_code_stops_the_strategy_and_cancels_through_risk(memory):
    def explode(s, book):
        s.buy("AAPL", 100, P("10.00"))
        raise ZeroDivisionError("user bug")

    h = Harness(memory, Scripted, {"on_book": explode})
    h.intents()
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.02"), 100)])
    new, cancel_all = h.intents()
    assert new["action"] == Action.NEW
    assert (cancel_all["action"], cancel_all["symbol_id"]) == (Action.CANCEL_ALL, ALL_SYMBOLS)
    rt = h.host
    assert rt.failed and not rt.running and "ZeroDivisionError in on_book" in rt.failure
    assert (rt.stats.errors, rt.stats.stopped, h.failed_calls) == (1, 1, 1)
    assert h.strategy.orders[new["client_order_id"]].state is OrderState.PENDING_CANCEL
    events = list(h.strategy.events)
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.03"), 100)])
    h.report(ExecEvent.CANCELED, new["client_order_id"], leaves=0)
    rt.timer(1)
    rt.stop()
    assert h.strategy.events == events                                   # never called again, not even on_stop
    assert h.intents() == []                                             # the CANCEL_ALL already went
    assert rt.stats.book_updates == 2 and len(h.strategy.orders) == 0   # the view is still kept


def test_an_exception_in_on_start_or_init_stops_the_strategy(memory):
    class BadInit(Strategy):
        def __init__(self, parameters):
            super().__init__(parameters)
            raise RuntimeError("no")

    h = Harness(memory, BadInit)
    assert h.host.failed and "RuntimeError in __init__" in h.host.failure
    assert [i["action"] for i in h.intents()] == [Action.CANCEL_ALL]     # no second CANCEL_ALL
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.03"), 100)])
    assert h.host.stats.errors == 1


def test_stopping_allows_cancels_only(memory):
    def on_stop(s):
        s.cancel(s.params["id"])
        with pytest.raises(StrategyStopping):
            s.buy("AAPL", 100, P("10.00"))

    params = {"on_stop": on_stop}
    h = Harness(memory, Scripted, params)
    h.intents()
    params["id"] = h.strategy.buy("AAPL", 100, P("10.00"))
    h.host.stop()
    assert [i["action"] for i in h.intents()] == [Action.NEW, Action.CANCEL, Action.CANCEL_ALL]
    assert not h.host.failed


def test_a_full_ring_queues_intents_in_order_and_then_refuses_new_orders(small_ring_memory):
    refused = []

    def flood(s):
        for i in range(30):
            try:
                s.buy("AAPL", 100, P("10.00") + i)
            except BackPressure:
                refused.append(i)
                break

    h = Harness(small_ring_memory, Scripted, {"on_start": flood}, max_pending=16)
    # ring of 8: the startup CANCEL_ALL and 7 orders went in, 16 wait, the 24th was refused
    assert refused == [23] and len(h.writer.pending) == 16 and h.writer.refused == 1
    assert len(h.strategy.orders) == 23                                  # the refused one was never recorded
    h.strategy.cancel(next(iter(h.strategy.orders)).client_order_id)    # cancels queue beyond the bound
    assert len(h.writer.pending) == 17
    received = []
    for _ in range(10):
        received += h.intents()                                          # drains the ring; step() flushes
    assert len(received) == 1 + 23 + 1 and not h.writer.pending
    assert [i["action"] for i in received] == [Action.CANCEL_ALL] + [Action.NEW] * 23 + [Action.CANCEL]
    prices = [i["price"] for i in received[1:-1]]
    assert prices == [P("10.00") + i for i in range(23)]                # nothing lost, order kept
    ids = [i["client_order_id"] for i in received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert h.writer.queued == 17 and h.writer.written == 25
    assert h.host.stats.errors == 0                                      # the strategy caught it and runs on


def test_back_pressure_that_escapes_user_code_stops_the_strategy_and_withdraws_queued_orders(small_ring_memory):
    def flood(s):
        for i in range(40):
            s.buy("AAPL", 100, P("10.00") + i)

    h = Harness(small_ring_memory, Scripted, {"on_start": flood}, max_pending=4)
    assert h.host.failed and "BackPressure in on_start" in h.host.failure
    received = []
    for _ in range(5):
        received += h.intents()
    # 7 orders were already in the ring; the 4 queued never leave; the CANCEL_ALL does
    assert [i["action"] for i in received] == [Action.CANCEL_ALL] + [Action.NEW] * 7 + [Action.CANCEL_ALL]
    assert h.writer.dropped_orders == 4 and len(h.strategy.orders) == 7


def test_client_order_ids_follow_the_clock_and_never_repeat():
    clock = [1_700_000_000_000_000_000]
    ids = ClientOrderIds(clock_ns=lambda: clock[0])
    first = ids.next()
    assert first == 1_700_000_000_000_000
    burst = [ids.next() for _ in range(1000)]                          # faster than the clock: +1 each
    assert burst == list(range(first + 1, first + 1001))
    clock[0] += 5_000_000                                               # 5 ms later
    assert ids.next() == first + 5000
    restarted = ClientOrderIds(clock_ns=lambda: clock[0] + 50_000_000)  # a new process 50 ms later
    assert restarted.next() > ids.last
    assert ClientOrderIds(floor=10**18, clock_ns=lambda: 0).next() == 10**18 + 1
    assert ClientOrderIds(clock_ns=lambda: 0).next() == 1               # never 0
