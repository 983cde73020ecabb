"""The strategy as a process: the test plays the feed, risk and the OMS through the rings.

The test owns the shared memory, starts ``StrategyAgent`` with the reference market maker (or a
strategy file that raises), writes BookUpdates, OrderRejects and ExecutionReports, and reads the
OrderIntents, the counters and the ``strategy_ready`` control word.
"""
from __future__ import annotations

import signal
import textwrap

import pytest

from appliance.messages.catalog import (BOOK_FLAG_STALE, BOOK_UPDATE, EXECUTION_REPORT, ORDER_INTENT, ORDER_REJECT,
                                        RISK_SNAPSHOT)
from appliance.messages.codes import (ALL_SYMBOLS, Action, ExecEvent, GateReason, RejectSource, RiskReason, Side,
                                      SnapshotKind)
from appliance.runtime.counters import ProcessState
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import agent as strategy_agent
from appliance.strategy import price_from_decimal as P
from conftest import output_of, wait_until
from strategy_harness import strategy_layout

STRATEGY_ID = 7
MM_PARAMETERS = {"spread_ticks": 2, "size": 100, "max_position": 300, "skew_ticks": 1.0,
                 "widen_ticks": 0.0, "requote_threshold_ticks": 1, "reject_cooldown_ms": 60_000}


INSTRUMENTS = "version: 1\ninstruments:\n" + "".join(f"  - {{symbol: {symbol}, tick: 0.01, round_lot: 100}}\n"
                                                     for symbol in ("AAPL", "MSFT", "SPY"))


def agent_layout(name: str, **params) -> dict:
    doc = strategy_layout(name)
    doc["instruments"] = "instruments.yaml"          # beside the layout: the market maker's tick and lot
    for process in doc["processes"]:
        if process["name"] == "strategy":
            process["agent"] = "appliance.strategy.agent:StrategyAgent"
            process["idle"] = {"strategy": "backoff", "spins": 100, "yields": 10, "min_park_ns": 10_000,
                               "max_park_ns": 200_000}
            process["params"] = {"strategy_id": STRATEGY_ID, "timer_interval_ms": 20, "symbols": ["AAPL"], **params}
    return doc


class Peers:
    """The feed, risk and the OMS around one strategy process."""

    def __init__(self, memory: SharedMemory):
        self.memory = memory
        self.feed = memory.channel(strategy_agent.BOOK_RING.other_side(), "feed")
        self.risk_out = memory.channel(strategy_agent.REJECT_RING.other_side(), "risk")
        self.oms = memory.channel(strategy_agent.EXEC_RING.other_side(), "oms")
        self.risk_in = memory.channel(strategy_agent.INTENT_RING.other_side(), "risk")
        self.control = memory.control("*")           # plays the feed and the supervisor (feed_ready, gate_open)
        self.received: list[dict] = []
        self.sequence = 0

    def counters(self) -> dict[str, int]:
        return self.memory.counters_reader().by_label()

    def book(self, bids, asks, flags=0, state=b"T"):
        self.sequence += 1
        levels = []
        for side in (bids, asks):
            side = list(side) + [(0, 0)] * (5 - len(side))
            levels += [p for p, _ in side] + [s for _, s in side]
        offset = self.feed.claim()
        BOOK_UPDATE.pack_into(self.feed.buffer, offset, 0, flags, state[0], len(bids), len(asks), *levels, 0, 0,
                              self.sequence, self.sequence, 1, 1000 + self.sequence, 2000 + self.sequence, 1,
                              *[0] * (len(BOOK_UPDATE.fields) - BOOK_UPDATE.index_of["trade_sequence"]))
        self.feed.commit()

    def report(self, event, intent, *, shares=None, price=None, leaves=None, position=0, orig=0):
        shares = intent["shares"] if shares is None else shares
        offset = self.oms.claim()
        EXECUTION_REPORT.pack_into(self.oms.buffer, offset, intent["client_order_id"], orig, 0, 0, STRATEGY_ID, 0, event,
                                   intent["side"], 0, 0, shares, intent["price"] if price is None else price,
                                   shares if leaves is None else leaves, position, 0, 0, 1, 2, 0)
        self.oms.commit()

    def reject(self, intent, reason):
        offset = self.risk_out.claim()
        ORDER_REJECT.pack_into(self.risk_out.buffer, offset, intent["client_order_id"], STRATEGY_ID, 0, RejectSource.RISK,
                               reason, 3)
        self.risk_out.commit()

    def intents(self, count: int, timeout: float = 15, what: str = "intents") -> list[dict]:
        """Wait for ``count`` more intents and return them."""
        start = len(self.received)

        def more():
            while (offset := self.risk_in.peek()) >= 0:
                self.received.append(ORDER_INTENT.as_dict(self.risk_in.buffer, offset))
                self.risk_in.release()
            return len(self.received) - start >= count
        wait_until(more, timeout, message=what)
        return self.received[start:start + count]

    def nothing_more(self) -> bool:
        return self.risk_in.peek() < 0

    def answer_snapshot(self, request, orders=()) -> None:
        """The OMS's answer to the strategy's snapshot request: ``orders`` (client order id, side, leaves,
        price) in AAPL, then END with the request's id."""
        records = [(cid, 0, STRATEGY_ID, 0, SnapshotKind.ORDER, side, 0, leaves, price, 0, 0, 0, 1)
                   for cid, side, leaves, price in orders]
        records.append((request["client_order_id"], 0, STRATEGY_ID, ALL_SYMBOLS, SnapshotKind.END, 0, 0, 0, 0, 0, 0, 0,
                        1))
        for values in records:
            offset = self.oms.claim()
            RISK_SNAPSHOT.pack_into(self.oms.buffer, offset, *values)
            self.oms.commit()

    def start_up(self) -> dict:
        """The start: CANCEL_ALL for what an earlier run left, the snapshot request (answered: nothing
        open), then strategy_ready. Returns the CANCEL_ALL."""
        cancel_all, request = self.intents(2, what="the startup CANCEL_ALL and snapshot request")
        assert (request["action"], request["symbol_id"], request["strategy_id"]) == (Action.SNAPSHOT, ALL_SYMBOLS,
                                                                                    STRATEGY_ID)
        self.answer_snapshot(request)
        wait_until(lambda: self.control.get("strategy_ready") == 1, 15, message="strategy_ready")
        return cancel_all


@pytest.fixture(autouse=True)
def instruments_beside_the_layout(tmp_path):
    """Every layout here is written to tmp_path (conftest.write_layout) and names this file."""
    (tmp_path / "instruments.yaml").write_text(INSTRUMENTS)


@pytest.fixture
def running(write_layout, unique_name, spawner):
    started = []

    def start(**params):
        layout = load_layout(write_layout(agent_layout(unique_name, **params)))
        memory = SharedMemory.create(layout)
        peers = Peers(memory)
        started.append(peers)
        peers.control.set("feed_ready", 1)
        peers.control.write_gate(0)
        proc = spawner.start(layout.path, "strategy")
        table = memory.process_table()
        wait_until(lambda: table.read("strategy").state is ProcessState.RUNNING or proc.poll() is not None, 30,
                   message="the strategy agent running")
        assert proc.poll() is None, output_of(proc)
        return peers, proc
    yield start
    spawner.cleanup()
    for peers in started:
        peers.memory.close()
        peers.memory.unlink()


def summary(intents):
    return [(Action(i["action"]).name, Side(i["side"]).name if i["side"] else "", i["shares"], i["price"])
            for i in intents]


def test_the_market_maker_process_quotes_fills_pulls_and_cancels_everything_on_sigterm(running):
    peers, proc = running(strategy="appliance.strategy.market_maker:MarketMaker", parameters=MM_PARAMETERS)
    startup = peers.start_up()
    assert (startup["action"], startup["symbol_id"], startup["strategy_id"]) == (Action.CANCEL_ALL, ALL_SYMBOLS,
                                                                                STRATEGY_ID)
    peers.book([(P("190.00"), 500)], [(P("190.04"), 500)])
    bid, ask = peers.intents(2, what="two quotes")
    assert summary([bid, ask]) == [("NEW", "BUY", 100, P("190.01")), ("NEW", "SELL", 100, P("190.03"))]
    assert (bid["t_rx_ns"], bid["t_feed_out_ns"]) == (1001, 2001) and bid["t_strategy_out_ns"] > 0
    peers.report(ExecEvent.ACCEPTED, bid)
    peers.report(ExecEvent.ACCEPTED, ask)
    peers.report(ExecEvent.EXECUTED, bid, leaves=0, position=100)
    (new_bid,) = peers.intents(1, what="a new bid after the fill")
    assert summary([new_bid]) == [("NEW", "BUY", 100, P("190.00"))]          # long 100: one tick lower
    peers.reject(new_bid, RiskReason.MAX_LONG)
    wait_until(lambda: peers.counters().get("strategy.rejects") == 1, 10, message="the reject counted")
    peers.book([(P("190.00"), 500)], [(P("190.04"), 500)], flags=BOOK_FLAG_STALE)
    (pull,) = peers.intents(1, what="the ask pulled on a stale book")
    assert (pull["action"], pull["orig_client_order_id"]) == (Action.CANCEL, ask["client_order_id"])
    peers.report(ExecEvent.CANCELED, ask, leaves=0, position=100)
    wait_until(lambda: peers.counters().get("strategy.open_orders") == 0, 10, message="no open orders")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, output_of(proc)
    (last,) = peers.intents(1, what="CANCEL_ALL on stop")
    assert (last["action"], last["symbol_id"]) == (Action.CANCEL_ALL, ALL_SYMBOLS)
    assert peers.nothing_more()
    assert peers.control.get("strategy_ready") == 0
    counters = peers.counters()
    assert (counters["strategy.book_updates"], counters["strategy.fills"], counters["strategy.errors"],
            counters["strategy.intents"], counters["strategy.backpressure"]) == (2, 1, 0, 7, 0)


def test_the_market_maker_pulls_its_quotes_while_the_gate_is_closed_and_quotes_again_after(running):
    peers, proc = running(strategy="appliance.strategy.market_maker:MarketMaker", parameters=MM_PARAMETERS)
    peers.start_up()
    peers.book([(P("190.00"), 500)], [(P("190.04"), 500)])
    bid, ask = peers.intents(2, what="two quotes")
    peers.report(ExecEvent.ACCEPTED, bid)
    peers.report(ExecEvent.ACCEPTED, ask)
    peers.control.write_gate(GateReason.OPERATOR)
    pulls = peers.intents(2, what="both quotes pulled (the timer sees the closed gate)")
    assert sorted((p["action"], p["orig_client_order_id"]) for p in pulls) == sorted(
        [(Action.CANCEL, bid["client_order_id"]), (Action.CANCEL, ask["client_order_id"])])
    peers.report(ExecEvent.CANCELED, bid, leaves=0, position=0)
    peers.report(ExecEvent.CANCELED, ask, leaves=0, position=0)
    seen = peers.counters()["strategy.book_updates"]
    peers.book([(P("190.00"), 600)], [(P("190.04"), 600)])
    wait_until(lambda: peers.counters()["strategy.book_updates"] > seen, 10, message="the book update handled")
    wait_until(lambda: peers.counters()["strategy.timers"] >= 2, 10, message="a timer after it")
    assert peers.nothing_more()                                  # no new quote while it is closed
    peers.control.write_gate(0)
    peers.book([(P("190.00"), 700)], [(P("190.04"), 700)])
    again = peers.intents(2, what="quotes again once the gate reopened")
    assert {i["action"] for i in again} == {Action.NEW}


def test_a_strategy_that_raises_is_stopped_and_cancelled_and_the_process_stays_alive(running, tmp_path):
    user_file = tmp_path / "fragile.py"
    user_file.write_text(textwrap.dedent("""
        from appliance.strategy import Strategy

        class Fragile(Strategy):
            def on_start(self):
                self.books = 0

            def on_book(self, book):
                self.books += 1
                if self.books == 1:
                    self.buy(book.symbol, 100, book.bid_price)
                else:
                    raise RuntimeError("deliberate failure in user code")
    """))
    peers, proc = running(strategy=f"{user_file}:Fragile")
    peers.start_up()
    peers.book([(P("10.00"), 500)], [(P("10.04"), 500)])
    (new,) = peers.intents(1, what="the first order")
    assert new["action"] == Action.NEW
    peers.book([(P("10.00"), 500)], [(P("10.05"), 500)])
    (cancel_all,) = peers.intents(1, what="CANCEL_ALL after the exception")
    assert (cancel_all["action"], cancel_all["symbol_id"]) == (Action.CANCEL_ALL, ALL_SYMBOLS)
    wait_until(lambda: peers.counters().get("strategy.stopped") == 1, 10, message="strategy.stopped")
    assert peers.counters()["strategy.errors"] == 1 and peers.control.get("strategy_ready") == 0
    table = peers.memory.process_table()
    beats = table.read("strategy").beats
    wait_until(lambda: table.read("strategy").beats > beats + 10, 10, message="the heartbeat going on")
    assert proc.poll() is None and table.read("strategy").state is ProcessState.RUNNING
    peers.book([(P("10.00"), 500)], [(P("10.06"), 500)])
    wait_until(lambda: peers.counters().get("strategy.book_updates") == 3, 10, message="updates still read")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    out = output_of(proc)
    assert "RuntimeError: deliberate failure in user code" in out and "stopped for good" in out
    assert peers.nothing_more()                                 # no second CANCEL_ALL, no on_stop


def test_a_restarted_process_adopts_its_quotes_and_a_timer_wakes_it_from_a_long_park(write_layout, unique_name,
                                                                                     spawner, tmp_path):
    """A strategy process restarted mid-session takes over the two quotes the OMS reports (no
    duplicates), and a timer fires although the process parks 10 s on its doorbell."""
    user_file = tmp_path / "adopter.py"
    user_file.write_text(textwrap.dedent("""
        from appliance.strategy import Strategy

        class Adopter(Strategy):
            restart_orders = "adopt"

            def on_start(self):
                self.quotes = {o.side: o.client_order_id for o in self.orders}
                self.log.info("adopted %d quotes", len(self.quotes))
                self.schedule(self.pull_bid, after=0.05)

            def on_book(self, book):
                if not self.quotes:
                    self.quotes = {1: self.buy("AAPL", 100, book.bid_price)}

            def pull_bid(self, now_ns):
                self.cancel(self.quotes[ord("B")])
    """))
    doc = agent_layout(unique_name, strategy=f"{user_file}:Adopter")
    for process in doc["processes"]:
        if process["name"] == "strategy":
            process["idle"] = {"strategy": "doorbell", "spins": 10, "park_timeout_ns": 10_000_000_000}
    layout = load_layout(write_layout(doc))
    with SharedMemory.create(layout) as memory:
        peers = Peers(memory)
        peers.control.set("feed_ready", 1)
        peers.control.write_gate(0)
        proc = spawner.start(layout.path, "strategy")
        try:
            (request,) = peers.intents(1, what="the snapshot request (adopting: no CANCEL_ALL)")
            assert request["action"] == Action.SNAPSHOT
            assert peers.control.get("strategy_ready") == 0                  # on_start waits for the answer
            peers.answer_snapshot(request, [(41, int(Side.BUY), 100, P("10.00")), (42, int(Side.SELL), 100, P("10.04"))])
            wait_until(lambda: peers.control.get("strategy_ready") == 1, 15, message="strategy_ready")
            (cancel,) = peers.intents(1, timeout=5, what="the timer's cancel, long before the 10 s park ends")
            assert (cancel["action"], cancel["orig_client_order_id"]) == (Action.CANCEL, 41)
            peers.book([(P("10.00"), 500)], [(P("10.04"), 500)])
            wait_until(lambda: peers.counters().get("strategy.book_updates") == 1, 10, message="the book handled")
            assert peers.nothing_more()                                      # the adopted quotes: no new ones
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert "adopted 2 quotes" in output_of(proc)
        finally:
            spawner.cleanup()


def test_bad_parameters_stop_the_process_at_start_with_the_key_path(write_layout, unique_name, spawner):
    doc = agent_layout(unique_name, strategy="appliance.strategy.market_maker:MarketMaker",
                       parameters={"size": "big"})
    layout = load_layout(write_layout(doc))
    with SharedMemory.create(layout):
        proc = spawner.start(layout.path, "strategy")
        out = output_of(proc, timeout=30)
        assert proc.returncode == 2, out
        assert "processes.strategy.params.parameters.size: expected an integer, got a string" in out


def test_a_bad_fee_schedule_stops_the_process_at_start_with_its_file_line_and_key(write_layout, unique_name, spawner,
                                                                                   tmp_path):
    fees = tmp_path / "fees.yaml"
    fees.write_text("default:\n  A: -0.002\n  R: lots\n  other: 0\n")
    doc = agent_layout(unique_name, strategy="appliance.strategy.market_maker:MarketMaker", parameters=MM_PARAMETERS,
                       fees_file=str(fees))
    layout = load_layout(write_layout(doc))
    with SharedMemory.create(layout):
        proc = spawner.start(layout.path, "strategy")
        out = output_of(proc, timeout=30)
        assert proc.returncode == 2, out
        assert f"{fees}:3: default.R: 'lots' is not a decimal number of dollars per share" in out, out


def test_up_and_preflight_refuse_a_strategy_that_cannot_load_before_anything_starts(write_layout, unique_name):
    """The strategy's params were checked only when its process started (the supervisor already up, the
    gate shut): StrategyAgent.check_params, which ``up`` and ``preflight`` call for every process
    (supervisor/preflight_config.py), now loads it first."""
    from appliance.runtime.layout import LayoutError
    good = load_layout(write_layout(agent_layout(unique_name, strategy="appliance.strategy.market_maker:MarketMaker",
                                                 parameters=MM_PARAMETERS)))
    strategy_agent.StrategyAgent.check_params(good, good.processes["strategy"])
    for strategy, parameters, says in (
            ("appliance.strategy.market_maker:NoSuchClass", MM_PARAMETERS, "NoSuchClass"),
            ("appliance.strategy.market_maker:MarketMaker", {"size": "big"},
             "parameters.size: expected an integer, got a string")):
        bad = load_layout(write_layout(agent_layout(unique_name, strategy=strategy, parameters=parameters)))
        with pytest.raises(LayoutError, match=says):
            strategy_agent.StrategyAgent.check_params(bad, bad.processes["strategy"])


def test_the_control_readers_agree_with_the_control_words(write_layout, unique_name):
    """The market maker asks feed-live and gate-open on every update through one load each: same answers
    as ControlWords.get, for every value a writer may leave there."""
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as memory:
        control = memory.control("*")
        feed_live, gate_open = strategy_agent.control_readers(control)
        for value in (0, 1, 2, 0xFFFFFFFF):
            control.set("feed_ready", value)
            assert feed_live() is (control.get("feed_ready") == 1)
        for reasons in (0, int(GateReason.MARKET_DATA), 0):
            control.write_gate(reasons)
            assert gate_open() is (control.get("gate_open") == 1)
        assert gate_open() is True
