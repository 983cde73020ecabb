"""Time, lifecycle and construction of a strategy, host-level (tests/support/strategy_harness.py):
timers on an injected clock, the event clock, normal construction, the restart snapshot (adopt or
cancel, the timeout), duplicate quotes after a restart, flatten in on_stop, request_reducing."""
from __future__ import annotations

import logging
import time

import pytest

from appliance.messages.codes import ALL_SYMBOLS, TIF_IOC, Action, ExecEvent, Side, SnapshotKind
from appliance.runtime.layout import load_layout
from appliance.runtime.memory import SharedMemory
from appliance.strategy import OrderState, Strategy, StrategyStopping, price_from_decimal
from strategy_harness import STRATEGY_ID, Harness, strategy_layout

P = price_from_decimal
S = 1_000_000_000


class FakeClock:
    """The host's injected clock (a backtest's event time): only the test moves it."""

    def __init__(self, start: int = 1_700_000_000 * S):
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture
def memory(write_layout, unique_name):
    with SharedMemory.create(load_layout(write_layout(strategy_layout(unique_name)))) as mem:
        yield mem


class Recorder(Strategy):
    """Runs ``params["on_start"](self)`` and records what its callbacks see."""

    def __init__(self, parameters=None):
        super().__init__(parameters)
        self.seen = []

    def on_start(self):
        self.seen.append(("start", len(self.orders), self.positions["AAPL"]))
        action = (self.params or {}).get("on_start")
        if action:
            action(self)

    def on_book(self, book):
        self.seen.append(("book", self.clock.event_exchange_ns, self.clock.event_rx_ns))

    def on_trade(self, trade):
        self.seen.append(("trade", self.clock.event_exchange_ns, self.clock.event_rx_ns))

    def on_fill(self, order, fill):
        self.seen.append(("fill", self.clock.event_exchange_ns, self.clock.event_rx_ns))

    def on_stop(self):
        action = (self.params or {}).get("on_stop")
        if action:
            action(self)


def actions(intents):
    return [i["action"] for i in intents]


# ---------------------------------------------------------------------------------------------- timers

def test_one_shot_and_repeating_timers_fire_in_deadline_order_on_the_injected_clock(memory):
    clock = FakeClock()
    fired = []

    def start(s):
        s.schedule(lambda now: fired.append(("late", now)), after=0.003)
        s.schedule(lambda now: fired.append(("tick", now)), every=0.002)          # first after one period
        s.schedule(lambda now: fired.append(("early", now)), after_ns=1_000_000)
        s.schedule(lambda now: fired.append(("tie", now)), after_ns=2_000_000)    # same deadline as tick: after it

    h = Harness(memory, Recorder, {"on_start": start}, clock_ns=clock)
    host = h.host
    t0 = clock.now
    assert host.next_timer_ns() == t0 + 1_000_000
    assert host.run_timers() == 0 and fired == []                                # nothing due yet
    clock.advance(999_999)
    assert host.run_timers() == 0
    clock.advance(1)
    assert host.run_timers() == 1 and fired == [("early", t0 + 1_000_000)]
    clock.advance(2_000_000)                                                     # t0 + 3 ms: tick, tie, late
    assert host.run_timers() == 3
    assert [name for name, _ in fired] == ["early", "tick", "tie", "late"]
    assert host.next_timer_ns() == t0 + 4_000_000                                # the tick keeps its phase
    clock.advance(7_500_000)                                                     # t0 + 10.5 ms: late by 3 periods
    assert host.run_timers() == 1 and fired[-1] == ("tick", t0 + 10_500_000)     # once, no burst
    assert host.next_timer_ns() == t0 + 12_000_000
    assert host.stats.errors == 0


def test_a_cancelled_timer_never_fires_and_timers_stop_with_the_strategy(memory):
    clock = FakeClock()
    fired = []
    handles = {}

    def start(s):
        handles["once"] = s.schedule(lambda now: fired.append("once"), after=1)
        handles["every"] = s.schedule(lambda now: fired.append("every"), every=1)

    h = Harness(memory, Recorder, {"on_start": start}, clock_ns=clock)
    assert h.strategy.cancel_timer(handles["once"]) is True
    assert handles["once"].cancel() is False and not handles["once"].active       # once is enough
    clock.advance(S)
    h.host.run_timers()
    assert fired == ["every"] and handles["every"].active
    h.host.stop()
    clock.advance(10 * S)
    assert h.host.run_timers() == 0 and fired == ["every"] and not handles["every"].active
    assert h.host.next_timer_ns() is None
    with pytest.raises(AttributeError, match="read-only"):
        handles["every"]._every_ns = 1


def test_a_timer_callback_that_raises_stops_the_strategy_and_cancels_everything(memory):
    clock = FakeClock()
    fired = []

    def start(s):
        s.schedule(lambda now: 1 / 0, after=1)
        s.schedule(lambda now: fired.append(now), after=1)          # due at the same time: never runs
        s.buy("AAPL", 100, P("10.00"))

    h = Harness(memory, Recorder, {"on_start": start}, clock_ns=clock)
    h.intents()
    clock.advance(S)
    h.host.run_timers()
    assert h.host.failed and "ZeroDivisionError in timer" in h.host.failure and h.failed_calls == 1
    assert fired == [] and h.host.next_timer_ns() is None
    assert actions(h.intents()) == [Action.CANCEL_ALL]


def test_schedule_refuses_bad_arguments_with_clear_errors(memory):
    errors = []

    def start(s):
        for kwargs in ({}, {"after": "1"}, {"after": -1}, {"every": 0}, {"every": float("nan")},
                       {"after": 1, "after_ns": 5}, {"every_ns": 1.5}, {"after": True}):
            try:
                s.schedule(lambda now: None, **kwargs)
            except (TypeError, ValueError) as exc:
                errors.append(type(exc).__name__)
        try:
            s.schedule("not callable", after=1)
        except TypeError as exc:
            errors.append(str(exc))

    h = Harness(memory, Recorder, {"on_start": start})
    assert errors[:8] == ["TypeError", "TypeError", "ValueError", "ValueError", "ValueError", "TypeError",
                          "TypeError", "TypeError"]
    assert "callback must be callable" in errors[8]
    assert not h.host.failed and h.host.timers.active == 0


def test_on_timer_is_a_repeating_timer_of_timer_interval(memory):
    clock = FakeClock()

    class Ticking(Strategy):
        def on_start(self):
            self.ticks = []

        def on_timer(self, now_ns):
            self.ticks.append(now_ns)

    h = Harness(memory, Ticking, clock_ns=clock, timer_interval_ns=100_000_000)
    t0 = clock.now
    clock.advance(250_000_000)
    h.host.run_timers()
    clock.advance(50_000_000)
    h.host.run_timers()
    assert h.strategy.ticks == [t0 + 250_000_000, t0 + 300_000_000] and h.host.stats.timers == 2
    # a strategy without on_timer gets no timer (no wake-ups for nothing)
    h2 = Harness(memory, Recorder, clock_ns=clock, timer_interval_ns=100_000_000)
    assert h2.host.next_timer_ns() is None


# ---------------------------------------------------------------------------------------------- the event clock

def test_the_event_clock_shows_the_stamps_of_the_event_being_handled(memory):
    clock = FakeClock()
    h = Harness(memory, Recorder, clock_ns=clock)
    s = h.strategy
    assert s.clock.now_ns() == clock.now and (s.clock.event_exchange_ns, s.clock.event_rx_ns) == (0, 0)
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.01"), 100)], last=(P("10.00"), 5), t_rx=1111, t_trade=7)
    # the harness writes the update's t_exchange_ns = 5 (see Harness.book); the print's own is 7
    assert s.seen[1:] == [("trade", 7, 1111), ("book", 5, 1111)]
    order = s.buy("AAPL", 100, P("10.00"))
    h.report(ExecEvent.EXECUTED, order, shares=100, price=P("10.00"), leaves=0, position=100)
    assert s.seen[-1] == ("fill", 1, 2)                          # the report's t_exchange_ns, t_oms_rx_ns
    assert (s.clock.event_exchange_ns, s.clock.event_rx_ns) == (0, 0)          # outside a callback
    with pytest.raises(AttributeError):
        s.clock._host = None


def test_now_ns_is_the_hosts_clock_injected_or_the_wall_clock_live(memory):
    """``Strategy.now_ns()`` reads the host's clock as ``clock.now_ns()`` does: a backtest's event time when
    injected (so the same inputs give the same answers), the wall clock by default (live)."""
    clock = FakeClock()
    s = Harness(memory, Recorder, clock_ns=clock).strategy
    assert s.now_ns() == s.clock.now_ns() == clock.now
    clock.advance(123)
    assert s.now_ns() == clock.now
    before = time.time_ns()
    live = Harness(memory, Recorder).strategy
    assert before <= live.now_ns() <= time.time_ns()
    with pytest.raises(RuntimeError, match="not attached"):
        Recorder({}).now_ns()                                    # in __init__: no clock yet, as for the rest


# ---------------------------------------------------------------------------------------------- construction

def test_a_strategy_is_built_as_cls_parameters_and_attached_after_its_init(memory):
    class Plain(Strategy):
        def __init__(self, parameters):
            super().__init__(parameters)
            self.size = parameters["size"]            # an ordinary constructor

        def on_start(self):
            self.started_with = (self.size, self.symbols)

    h = Harness(memory, Plain, {"size": 300})
    assert h.strategy.started_with == (300, ("AAPL", "MSFT", "SPY")) and type(h.strategy) is Plain
    standalone = Plain({"size": 1})                    # constructible without a host, like any class
    with pytest.raises(RuntimeError, match="use on_start|move this to on_start"):
        standalone.orders


def test_touching_the_host_in_init_fails_with_a_clear_message(memory, caplog):
    class Early(Strategy):
        def __init__(self, parameters):
            super().__init__(parameters)
            self.buy("AAPL", 100, P("10.00"))

    with caplog.at_level(logging.ERROR, logger="appliance.strategy"):
        h = Harness(memory, Early)
    assert h.host.failed and h.host.failure.startswith("RuntimeError in __init__")
    assert "move this to on_start" in h.host.failure
    assert actions(h.intents()) == [Action.CANCEL_ALL]            # nothing but the fail-closed cancel


# ---------------------------------------------------------------------------------------------- restart snapshot

class Adopting(Recorder):
    restart_orders = "adopt"


def test_on_start_waits_for_the_snapshot_and_sees_the_adopted_orders_and_positions(memory):
    clock = FakeClock()
    h = Harness(memory, Adopting, clock_ns=clock, snapshot_timeout_ns=5 * S)
    (request,) = h.intents()                                      # no CANCEL_ALL: the orders are adopted
    assert (request["action"], request["symbol_id"], request["strategy_id"]) == \
        (Action.SNAPSHOT, ALL_SYMBOLS, STRATEGY_ID)
    assert h.host.awaiting_snapshot and not h.host.running
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.01"), 100)])         # no callback before on_start
    assert h.strategy.seen == []
    h.snapshot(SnapshotKind.POSITION, symbol="AAPL", position=200)
    h.snapshot(SnapshotKind.ORDER, 11, side=Side.BUY, leaves=100, price=P("9.99"))
    h.snapshot(SnapshotKind.ORDER, 12, side=Side.SELL, leaves=300, price=P("10.02"))
    h.snapshot(SnapshotKind.ORDER, 13, side=Side.SELL, leaves=300, price=P("10.03"), orig=12)   # a pending replace
    h.snapshot(SnapshotKind.ORDER, 99, side=Side.BUY, leaves=100, price=P("9.00"), strategy_id=STRATEGY_ID + 1)
    h.snapshot(SnapshotKind.END, 12345)                           # an earlier incarnation's answer: not ours
    assert h.strategy.seen == []
    h.snapshot(SnapshotKind.ORDER, 11, side=Side.BUY, leaves=100, price=P("9.99"))
    h.snapshot(SnapshotKind.ORDER, 12, side=Side.SELL, leaves=300, price=P("10.02"))
    h.snapshot(SnapshotKind.ORDER, 13, side=Side.SELL, leaves=300, price=P("10.03"), orig=12)
    h.snapshot(SnapshotKind.END, request["client_order_id"])
    assert h.strategy.seen == [("start", 3, 200)] and h.host.running and h.host.adopted == 3
    orders = h.strategy.orders
    assert orders[11].state is OrderState.LIVE and (orders[11].leaves, orders[11].price) == (100, P("9.99"))
    assert orders[12].state is OrderState.PENDING_REPLACE and orders[12].replaced_by == 13
    assert orders[13].state is OrderState.PENDING_NEW and orders[13].replaces == 12
    # the adopted orders are the strategy's own: it can cancel them, reports for them apply
    assert h.strategy.cancel(11) is True
    (cancel,) = h.intents()
    assert (cancel["action"], cancel["orig_client_order_id"], cancel["side"]) == (Action.CANCEL, 11, Side.BUY)
    h.report(ExecEvent.EXECUTED, 12, side=Side.SELL, shares=300, price=P("10.02"), leaves=0, position=-100)
    assert 12 not in orders and h.strategy.positions["AAPL"] == -100 and h.host.stats.unknown_orders == 0


def test_by_default_a_restart_cancels_the_old_orders_and_shows_them_pending_cancel(memory):
    clock = FakeClock()
    h = Harness(memory, Recorder, clock_ns=clock, snapshot_timeout_ns=5 * S)
    cancel_all, request = h.intents()
    assert (cancel_all["action"], request["action"]) == (Action.CANCEL_ALL, Action.SNAPSHOT)  # cancels first
    h.snapshot(SnapshotKind.ORDER, 11, side=Side.BUY, leaves=100, price=P("9.99"))
    h.snapshot(SnapshotKind.END, request["client_order_id"])
    assert h.strategy.seen == [("start", 1, 0)] and h.strategy.orders[11].state is OrderState.PENDING_CANCEL
    h.report(ExecEvent.CANCELED, 11, shares=100, leaves=0)
    assert len(h.strategy.orders) == 0


def test_without_an_answer_the_strategy_starts_after_the_timeout_fail_closed(memory, caplog):
    clock = FakeClock()
    h = Harness(memory, Adopting, clock_ns=clock, snapshot_timeout_ns=5 * S)
    assert actions(h.intents()) == [Action.SNAPSHOT]
    clock.advance(5 * S - 1)
    assert h.host.check_snapshot_timeout() is False and h.strategy.seen == []
    clock.advance(1)
    with caplog.at_level(logging.WARNING, logger="appliance.strategy"):
        assert h.host.check_snapshot_timeout() is True
    assert "did not answer the snapshot request" in caplog.text
    assert actions(h.intents()) == [Action.CANCEL_ALL] and h.strategy.seen == [("start", 0, 0)]
    h.snapshot(SnapshotKind.END, 1)                               # a late answer changes nothing
    assert h.strategy.seen == [("start", 0, 0)] and h.host.stats.foreign_records == 1


class FakeOms:
    """Resting orders at the venue, per strategy, from the intents (risk approving everything), and
    the answer to a snapshot request: what a restarted strategy meets."""

    def __init__(self):
        self.resting: dict[int, tuple] = {}

    def process(self, h: Harness, intents) -> None:
        for i in intents:
            action, cid = i["action"], i["client_order_id"]
            if action == Action.NEW:
                self.resting[cid] = (i["symbol_id"], i["side"], i["shares"], i["price"])
                h.report(ExecEvent.ACCEPTED, cid, side=i["side"], shares=i["shares"], leaves=i["shares"])
            elif action == Action.CANCEL and i["orig_client_order_id"] in self.resting:
                sid, side, shares, _ = self.resting.pop(i["orig_client_order_id"])
                h.report(ExecEvent.CANCELED, i["orig_client_order_id"], side=side, shares=shares, leaves=0)
            elif action == Action.CANCEL_ALL:
                for old, (sid, side, shares, _) in list(self.resting.items()):
                    del self.resting[old]
                    h.report(ExecEvent.CANCELED, old, side=side, shares=shares, leaves=0)
            elif action == Action.SNAPSHOT:
                for old, (sid, side, shares, price) in self.resting.items():
                    h.snapshot(SnapshotKind.ORDER, old, side=side, leaves=shares, price=price, step=False)
                h.snapshot(SnapshotKind.END, cid)


class Quoter(Strategy):
    """One bid and one ask in AAPL; after a restart it takes over the quotes it finds (adopt)."""

    restart_orders = "adopt"

    def on_start(self):
        self.bid = next((o.client_order_id for o in self.orders if o.side == Side.BUY), 0)
        self.ask = next((o.client_order_id for o in self.orders if o.side != Side.BUY), 0)

    def on_book(self, book):
        if not self.bid:
            self.bid = self.buy("AAPL", 100, book.bid_price)
        if not self.ask:
            self.ask = self.sell("AAPL", 100, book.ask_price)


@pytest.mark.parametrize("policy", ["adopt", "cancel"])
def test_a_quoting_strategy_restarted_mid_session_leaves_no_duplicate_quotes(write_layout, unique_name, policy):
    oms = FakeOms()
    quoter = type("Quoter_" + policy, (Quoter,), {"restart_orders": policy})
    for incarnation in range(3):
        with SharedMemory.create(load_layout(write_layout(strategy_layout(f"{unique_name}{incarnation}")))) as mem:
            h = Harness(mem, quoter, snapshot_timeout_ns=5 * S)
            oms.process(h, h.intents())                     # the start: CANCEL_ALL and/or the snapshot request
            assert h.host.running
            h.book("AAPL", [(P("10.00"), 100)], [(P("10.01"), 100)])
            oms.process(h, h.intents())
            h.book("AAPL", [(P("10.00"), 200)], [(P("10.01"), 100)])
            oms.process(h, h.intents())
            sides = sorted(side for _, side, _, _ in oms.resting.values())
            assert sides == [Side.BUY, Side.SELL], (incarnation, oms.resting)      # one quote a side, never two
            assert len(h.strategy.orders) == 2
            # the process dies here (no on_stop, no cancels): the next incarnation finds the quotes


# ---------------------------------------------------------------------------------------------- stopping

def test_flatten_in_on_stop_cancels_then_closes_the_position_at_the_touch_and_nothing_else_leaves(memory):
    refused = []

    def on_stop(s):
        s.flatten()
        try:
            s.buy("AAPL", 100, P("10.00"))                 # new risk: refused while stopping
        except StrategyStopping as exc:
            refused.append(str(exc))
        try:
            s.sell("MSFT", 100, P("20.00"))                # flat in MSFT: a sell would open a short
        except StrategyStopping:
            refused.append("short")

    h = Harness(memory, Recorder, {"on_stop": on_stop})
    h.intents()
    s = h.strategy
    resting = s.sell("AAPL", 100, P("10.05"))
    h.report(ExecEvent.ACCEPTED, resting, side=Side.SELL, shares=100, leaves=100)
    h.report(ExecEvent.EXECUTED, s.buy("AAPL", 300, P("10.00")), shares=300, price=P("10.00"), leaves=0, position=300)
    h.book("AAPL", [(P("9.98"), 500)], [(P("10.01"), 100)])
    h.intents()
    h.host.stop()
    cancel_all, sell, final_cancel_all = h.intents()
    assert cancel_all["action"] == Action.CANCEL_ALL and final_cancel_all["action"] == Action.CANCEL_ALL
    assert (sell["action"], sell["side"], sell["shares"], sell["price"], sell["time_in_force"]) == \
        (Action.NEW, Side.SELL, 300, P("9.98"), TIF_IOC)
    assert len(refused) == 2 and "reduce a position" in refused[0]
    assert not h.host.failed


def test_request_reducing_sends_one_reduce_intent(memory):
    h = Harness(memory, Recorder, {"on_start": lambda s: (s.request_reducing(), s.request_reducing())})
    cancel_all, reduce = h.intents()
    assert (reduce["action"], reduce["strategy_id"], reduce["symbol_id"]) == (Action.REDUCE, STRATEGY_ID, ALL_SYMBOLS)
    assert cancel_all["action"] == Action.CANCEL_ALL


# ---------------------------------------------------------------------------------------------- read-only views

def test_the_views_cannot_be_written_by_the_strategy(memory):
    h = Harness(memory, Recorder)
    s = h.strategy
    order_id = s.buy("AAPL", 100, P("10.00"))
    h.book("AAPL", [(P("10.00"), 100)], [(P("10.01"), 100)])
    order, book = s.orders[order_id], s.book("AAPL")
    views = {order: ("leaves", "_leaves", "_state", "state", "anything"),
             s.orders: ("_orders", "_by_symbol", "anything"),
             s.positions: ("_position", "_bought", "anything"),
             book: ("_src", "_at", "_buf", "bid_price", "anything"),
             s.clock: ("_host", "anything")}
    for view, names in views.items():
        for name in names:
            with pytest.raises(AttributeError, match="read-only|can't set|has no setter|object has no attribute"):
                setattr(view, name, 0)
            with pytest.raises(AttributeError):
                delattr(view, name)
    with pytest.raises(AttributeError, match="Order is read-only: '_leaves'"):
        order._leaves = 0
    assert (order.leaves, order.state, book.bid_price, len(s.orders)) == (100, OrderState.PENDING_NEW, P("10.00"), 1)
    # the host still moves them: a report and a book update change what the strategy reads
    h.report(ExecEvent.EXECUTED, order_id, shares=40, price=P("10.00"), leaves=60, position=40)
    h.book("AAPL", [(P("10.02"), 100)], [(P("10.03"), 100)])
    assert (order.leaves, order.filled, order.state, s.positions["AAPL"], book.bid_price) == \
        (60, 40, OrderState.LIVE, 40, P("10.02"))
    assert type(order).__name__ == "Order" and isinstance(order, type(s.orders[order_id]))


def test_an_unknown_restart_policy_stops_the_strategy_with_its_name(memory):
    class Confused(Strategy):
        restart_orders = "keep"

    h = Harness(memory, Confused)
    assert h.host.failed and "restart_orders must be one of ('cancel', 'adopt'), got 'keep'" in h.host.failure
    assert actions(h.intents()) == [Action.CANCEL_ALL]
