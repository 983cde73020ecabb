"""The OMS as a process against the simulated exchange as a process.

The test owns the shared memory and plays risk (approved orders, heartbeat, the supervisor's
gate word) and the strategy (reads the execution reports); a second firm (ALGO2, a blocking
``OrderClient``) trades against the OMS. At the end of the day the exchange's report must agree
with the OMS's positions table, fill for fill.
"""
from __future__ import annotations

import pytest

from appliance.messages.codes import TIF_IOC, Action, ExecEvent, OmsReason
from appliance.wire.venue_time import ns_since_midnight
from conftest import output_of, wait_until
from exchange_process import OrderClient, end_of_day, venue  # noqa: F401  (venue: the fixture)
from exchange_process import venue_messages
from oms_rig import SYMBOLS, Rig, journal_path, oms_layout, send_mixed

E = ExecEvent


@pytest.fixture
def rig_factory(write_layout, unique_name, tmp_path, spawner):
    made = []

    def make(exchange, **params) -> Rig:
        doc = oms_layout(unique_name, exchange.order_entry[1], journal_path(tmp_path), **params)
        rig = Rig(write_layout(doc))
        made.append(rig)
        return rig
    yield make
    spawner.cleanup()
    for rig in made:
        rig.close()


def next_answer(client: OrderClient) -> dict:
    """The next OUCH message other than a System Event."""
    while (message := client.next_message())["type"] == "S":
        pass
    return message


def assert_positions_match(rig: Rig, report: dict, firm: str = "ALGO1") -> None:
    ledger = report["firms"][firm]["ledger"]
    fills_by_symbol: dict[str, list] = {}
    for fill in ledger["fill_list"]:
        fills_by_symbol.setdefault(fill["symbol"], []).append(fill)
    for symbol in SYMBOLS:
        view = rig.position(symbol)
        fills = fills_by_symbol.get(symbol, [])
        assert view.position == ledger["positions"].get(symbol, 0), symbol
        assert view.fills == len(fills), symbol
        assert view.filled_shares == sum(f["shares"] for f in fills), symbol


def test_orders_replaces_cancels_and_fills_reconcile_with_the_exchange(venue, rig_factory, spawner):
    rig = rig_factory(venue)
    rig.start(spawner)
    rig.wait_ready()
    other = OrderClient(venue.order_entry, "ALGO2", "secret2")
    try:
        other.enter("S1", "S", 300, "AAPL", 1_900_000)
        assert next_answer(other)["type"] == "A"
        # 1. an IOC buy filled in full by the resting sell
        rig.new(1, "AAPL", "B", 100, 1_900_000, tif=TIF_IOC)
        wait_until(lambda: E.EXECUTED in rig.events(1), 10, message="fill of order 1")
        # 2. a day buy for 500: 200 fill, 300 rest (partially filled)
        rig.new(2, "AAPL", "B", 500, 1_900_000)
        wait_until(lambda: rig.events(2).count(E.EXECUTED) == 1, 10, message="partial fill of order 2")
        # 3. replace it: 400 at 189.00
        rig.replace(3, orig=2, shares=400, price=1_890_000)
        wait_until(lambda: E.REPLACED in rig.events(3), 10, message="replaced")
        replaced = rig.reports_of(3)[-1]
        assert replaced["orig_client_order_id"] == 2 and replaced["leaves_shares"] == 400
        # 4. the other firm sells 150 into it
        other.enter("S2", "S", 150, "AAPL", 1_890_000)
        wait_until(lambda: E.EXECUTED in rig.events(3), 10, message="fill of the replacement")
        # 5. cancel the rest
        rig.cancel(4, orig=3)
        wait_until(lambda: E.CANCELED in rig.events(3), 10, message="cancel")
        canceled = [r for r in rig.reports_of(3) if r["event"] == E.CANCELED][0]
        assert canceled["shares"] == 250 and canceled["leaves_shares"] == 0
        # 6. a resting sell in MSFT, filled in full by the other firm
        rig.new(5, "MSFT", "S", 100, 4_190_000)
        wait_until(lambda: E.ACCEPTED in rig.events(5), 10, message="accept of order 5")
        other.enter("B1", "B", 100, "MSFT", 4_190_000)
        wait_until(lambda: E.EXECUTED in rig.events(5), 10, message="fill of order 5")
        # 7. reduce a resting SPY buy from 100 to 40, then let the day end with it open
        rig.new(6, "SPY", "B", 100, 5_000_000)
        wait_until(lambda: E.ACCEPTED in rig.events(6), 10, message="accept of order 6")
        rig.cancel(7, orig=6, shares=40)
        wait_until(lambda: E.CANCELED in rig.events(6), 10, message="reduce")
        assert rig.reports_of(6)[-1]["leaves_shares"] == 40
        # 8. a cancel of an order the OMS does not know is refused locally
        rig.cancel(8, orig=999)
        wait_until(lambda: E.REJECTED_LOCALLY in rig.events(8), 10, message="local reject")
        assert rig.reports_of(8)[0]["reason"] == OmsReason.UNKNOWN_ORDER
        wait_until(lambda: rig.position("AAPL").position == 450, 10, message="AAPL position")
        aapl = rig.position("AAPL")
        assert aapl.cost_basis == 100 * 1_900_000 + 200 * 1_900_000 + 150 * 1_890_000
        assert rig.position("MSFT").position == -100
        assert rig.events(1) == [E.ACCEPTED, E.EXECUTED]
        assert rig.events(2) == [E.ACCEPTED, E.EXECUTED]
        assert rig.events(2, ring="risk") == rig.events(2)
        assert rig.control.get("oms_open_orders") == 1          # order 6 (40 shares)
        wait_until(lambda: rig.counter("lat.tick_to_trade.count") == 5, 5, message="latency counters")
        from appliance.oms.latency import histograms
        hops = histograms(rig.counters())                       # 4 new orders and a replace, each one sample
        assert all(hops[hop].count == 5 for hop in ("feed", "strategy", "risk", "oms", "tick_to_trade"))
        assert hops["feed"].percentile(50) <= 10_000 < hops["tick_to_trade"].percentile(50)
    finally:
        other.close()
    report = end_of_day(venue)
    wait_until(lambda: E.CANCELED in rig.events(6)[2:], 10, message="the day order expired")
    assert rig.control.get("oms_open_orders") == 0
    assert_positions_match(rig, report)
    inbound, outbound = venue_messages(venue)
    assert [m["type"] for m in inbound] == ["O", "O", "U", "X", "O", "O", "X"]
    # every fill's facts as the exchange sent them: match number, shares, price, liquidity flag, venue time
    executions = {m["match_number"]: m for m in outbound if m["type"] == "E"}
    reported = [r for r in rig.strategy_reports if r["event"] == E.EXECUTED]
    assert len(reported) == len(executions) == 4
    for r in reported:
        sent = executions[r["match_number"]]
        assert (r["shares"], r["price"], chr(r["liquidity_flag"]), ns_since_midnight(r["t_exchange_ns"])) == \
            (sent["executed_shares"], sent["execution_price"], sent["liquidity_flag"], sent["timestamp"])
    assert {r["client_order_id"]: chr(r["liquidity_flag"]) for r in reported} == {1: "R", 2: "R", 3: "A", 5: "A"}
    rig.proc.terminate()
    assert rig.proc.wait(10) == 0, output_of(rig.proc)


def journal_orders(rig: Rig) -> dict[str, int]:
    """token -> client order id of every order the OMS journaled as sent."""
    from appliance.oms.journal_records import ORDER_SENT, RecordType
    from appliance.oms.journal_format import read_records
    path = rig.layout.processes["oms"].params["journal"]
    records, _found, _header = read_records(path)
    out = {}
    for record in records:
        if record.type == RecordType.ORDER_SENT:
            sent = ORDER_SENT.parse(record.payload)
            if sent.action in (Action.NEW, Action.REPLACE):
                out[sent.token.decode()] = sent.client_order_id
    return out


def test_with_the_gate_closed_or_risk_stale_no_new_order_reaches_the_exchange_but_cancels_do(
        venue, rig_factory, spawner):
    rig = rig_factory(venue, risk_heartbeat_limit_ms=300)
    rig.start(spawner)
    rig.wait_ready()
    rig.new(1, "AAPL", "B", 100, 1_800_000)
    rig.new(3, "AAPL", "B", 100, 1_810_000)
    wait_until(lambda: E.ACCEPTED in rig.events(1) and E.ACCEPTED in rig.events(3), 10, message="two resting orders")
    # the supervisor closes the gate: new orders and replaces are refused, a cancel goes out
    rig.gate(False, 128)
    rig.new(2, "AAPL", "B", 100, 1_800_000)
    rig.replace(20, orig=3, shares=50, price=1_805_000)
    rig.cancel(21, orig=1)
    wait_until(lambda: E.CANCELED in rig.events(1) and E.REJECTED_LOCALLY in rig.events(20), 10,
               message="the cancel done, the replace refused")
    assert [r["reason"] for r in rig.reports_of(2)] == [OmsReason.GATE_CLOSED]
    assert [r["reason"] for r in rig.reports_of(20)] == [OmsReason.GATE_CLOSED]
    # the gate opens, but risk stops beating: refused again, and the other cancel goes out
    rig.gate(True)
    rig.heartbeat.beating.clear()
    table = rig.memory.process_table()
    wait_until(lambda: table.read("risk").heartbeat_age_ns() > 400_000_000, 10, message="risk heartbeat stale")
    rig.new(4, "AAPL", "B", 100, 1_800_000)
    rig.cancel(22, orig=3)
    wait_until(lambda: E.CANCELED in rig.events(3) and E.REJECTED_LOCALLY in rig.events(4), 10,
               message="the second cancel done, order 4 refused")
    assert [r["reason"] for r in rig.reports_of(4)] == [OmsReason.RISK_STALE]
    rig.heartbeat.beating.set()
    wait_until(lambda: table.read("risk").heartbeat_age_ns() < 100_000_000, 10, message="risk beating")
    rig.new(5, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(5), 10, message="order 5 accepted")
    counters = rig.counters()
    assert counters["oms.rejects.GATE_CLOSED"] == 2 and counters["oms.rejects.RISK_STALE"] == 1
    end_of_day(venue)
    inbound, _outbound = venue_messages(venue)
    sent = journal_orders(rig)
    assert sorted(sent[m["order_token"]] for m in inbound if m["type"] == "O") == [1, 3, 5]
    assert [m["type"] for m in inbound].count("X") == 2 and "U" not in [m["type"] for m in inbound]


def test_a_disconnect_is_healed_by_relogin_and_the_missed_fill_is_replayed_once(venue, rig_factory, spawner):
    rig = rig_factory(venue, reconnect_min_ms=1500, reconnect_max_ms=2000)
    rig.start(spawner)
    rig.wait_ready()
    rig.new(1, "MSFT", "B", 300, 4_190_000)
    wait_until(lambda: E.ACCEPTED in rig.events(1), 10, message="order 1 accepted")
    other = OrderClient(venue.order_entry, "ALGO2", "secret2")
    try:
        assert venue.ctl("disconnect", firm="ALGO1")["disconnected"]
        wait_until(lambda: rig.control.get("oms_session_up") == 0, 10, message="the OMS sees the disconnect")
        other.enter("S1", "S", 200, "MSFT", 4_190_000)          # fills the OMS's order while it is away
        assert next_answer(other)["type"] == "A"
        wait_until(lambda: E.EXECUTED in rig.events(1), 20, message="the fill replayed after the re-login")
    finally:
        other.close()
    wait_until(lambda: rig.counter("oms.session.logins") >= 2, 10, message="counters published")
    assert rig.events(1) == [E.ACCEPTED, E.EXECUTED]
    assert rig.position("MSFT").position == 200 and rig.control.get("oms_session_up") == 1
    assert rig.counter("oms.session.disconnects") >= 1
    report = end_of_day(venue)
    assert_positions_match(rig, report)


def test_sigkill_in_a_burst_of_orders_and_fills_loses_nothing_and_doubles_nothing(venue, rig_factory, spawner):
    import os
    import signal
    rig = rig_factory(venue, durability="group")
    rig.start(spawner)
    rig.wait_ready()
    other = OrderClient(venue.order_entry, "ALGO2", "secret2")
    try:
        other.enter("LIQ1", "S", 100_000, "AAPL", 1_900_000)
        other.enter("LIQ2", "B", 100_000, "MSFT", 4_190_000)
        assert next_answer(other)["type"] == "A" and next_answer(other)["type"] == "A"
    finally:
        other.close()

    def burst(first: int, count: int) -> None:
        for i in range(first, first + count):
            send_mixed(rig, i)

    burst(1, 400)
    wait_until(lambda: rig.counter("oms.orders_sent") >= 60 or rig.counter("oms.venue_messages") >= 120, 20,
               interval=0.001, message="the burst under way")
    os.kill(rig.proc.pid, signal.SIGKILL)
    assert rig.proc.wait(10) == -signal.SIGKILL
    sent_before_kill = rig.counter("oms.orders_sent")
    # restart; orders still in the ring are refused until recovery is done, the rest come after
    rig.start(spawner)
    rig.wait_ready()
    burst(1001, 200)
    wait_until(lambda: len(rig.events(1200)) >= 1 or len(rig.events(1199)) >= 2, 20, message="the second burst done")
    report = end_of_day(venue)
    wait_until(lambda: rig.control.get("oms_open_orders") == 0, 10, message="day orders expired")
    inbound, outbound = venue_messages(venue)
    enter_tokens = [m["order_token"] for m in inbound if m["type"] == "O"]
    assert len(enter_tokens) == len(set(enter_tokens)), "a token was reused"
    assert not [m for m in outbound if m["type"] == "J" and m["reason"] == "O"], "the venue saw a duplicate token"
    sent = journal_orders(rig)
    clients = [sent[token] for token in enter_tokens]
    assert len(clients) == len(set(clients)), "an order was sent twice"
    assert set(clients) <= set(range(1, 401)) | set(range(1001, 1201))
    matches = [m["match_number"] for m in outbound if m["type"] == "E"]
    assert len(matches) == len(set(matches))
    assert_positions_match(rig, report)
    assert rig.counter("oms.duplicate_fills") == 0
    ledger = report["firms"]["ALGO1"]["ledger"]
    print(f"killed after {sent_before_kill} orders sent; {len(enter_tokens)} Enter Orders at the venue, "
          f"{ledger['fills']} fills, {rig.counter('oms.rejects.NOT_RECOVERED')} refused while recovering, "
          f"{rig.counter('oms.redelivered')} redelivered, recovery records {rig.counter('oms.recovery.records')}")
    assert ledger["fills"] > 50 and rig.position("AAPL").fills + rig.position("MSFT").fills == ledger["fills"]
