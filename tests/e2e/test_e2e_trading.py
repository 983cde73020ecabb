"""End to end: every process spawned by `appliance up` against the simulated exchange as a process.

Each test runs the repository's layout (renamed, on free ports, in a scratch directory: see
appliance/sim/sandbox.py) with the reference market maker trading against the
exchange's background flow, and checks what the exchange itself recorded: its OUCH logs and
its end-of-day report are the ground truth the appliance is reconciled against.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from appliance.exchange.records import read_ouch_log
from appliance.messages.codes import GateReason
from appliance.runtime.segment import segment_path
from appliance.sim.sandbox import ROOT, Sandbox
from conftest import wait_until

FIRM = "ALGO1"
pytestmark = pytest.mark.e2e


@pytest.fixture
def sandbox(tmp_path):
    made = []

    def make(**kwargs) -> Sandbox:
        sb = Sandbox(tmp_path / f"sb{len(made)}", **kwargs)
        made.append(sb)
        return sb.start()
    yield make
    for sb in made:
        sb.close()


def totals(sb: Sandbox) -> dict:
    return sb.status()["totals"]


def wait_fills(sb: Sandbox, count: int, timeout: float = 90) -> None:
    wait_until(lambda: totals(sb)["fills"] >= count, timeout, interval=0.2,
               message=f"{count} fills (now {totals(sb)})")


def flatten_and_report(sb: Sandbox) -> tuple[dict, dict]:
    """Kill switch (every open order cancelled), then the OMS's view and the exchange's report."""
    killed = sb.appliance("kill", "--operator", "e2e")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    wait_until(lambda: sb.control()["oms_open_orders"] == 0, 30, message="no open orders")
    status = sb.status()
    mine = {s: v["position"] for s, v in status["symbols"].items() if v["position"]}
    report = sb.end_exchange_day()
    return status, {"positions": {s: p for s, p in report["firms"][FIRM]["ledger"]["positions"].items() if p},
                    "ledger": report["firms"][FIRM]["ledger"], "mine": mine}


def audit_fills(sb: Sandbox) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "appliance", "audit", "--journal", str(sb.journal), "--jsonl"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=sb.env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return [e for e in events if e.get("event") == "EXECUTED"]


def ouch_inbound(sb: Sandbox) -> list:
    return [r for r in read_ouch_log(sb.records / f"ouch-{FIRM}.log") if r.direction == "I"]


def test_the_market_maker_trades_and_the_oms_matches_the_exchange_report(sandbox):
    sb = sandbox(background_rate=3000, seed=11)
    wait_fills(sb, 30)
    status, truth = flatten_and_report(sb)
    assert truth["mine"] == truth["positions"], (truth["mine"], truth["positions"])
    ledger = truth["ledger"]
    assert sum(v["fills"] for v in status["symbols"].values()) == ledger["fills"]
    assert ledger["open_orders"] == 0
    fills = audit_fills(sb)
    assert len(fills) == ledger["fills"], (len(fills), ledger["fills"])
    assert sb.down() == 0


def test_sigkill_risk_closes_the_gate_cancels_and_nothing_new_leaves_until_risk_is_rebuilt(sandbox):
    sb = sandbox(background_rate=3000, seed=12)
    wait_fills(sb, 5)
    wait_until(lambda: sb.control()["oms_open_orders"] > 0, 30, message="quotes resting at the exchange")
    risk_pid = sb.pid_of("risk")
    killed_at = time.time_ns()
    os.kill(risk_pid, signal.SIGKILL)
    wait_until(lambda: sb.control()["gate_open"] == 0, 5, message="gate closed")
    assert GateReason.RISK_UNHEALTHY & sb.control()["gate_reasons"]
    wait_until(lambda: sb.pid_of("risk") not in (0, risk_pid) and sb.control()["risk_ready"] == 1, 60,
               message="risk restarted and rebuilt")
    sb.wait_gate_open(60)
    reopened_at = sb.control()["gate_changed_ns"]          # when the supervisor reopened it, not when we looked
    wait_fills(sb, totals(sb)["fills"] + 3)
    status, truth = flatten_and_report(sb)
    records = ouch_inbound(sb)
    # The OMS's contract: it sends a new order only while risk's heartbeat is younger than its limit, so an
    # order risk approved just before dying may still leave within that limit (plus the wire and the
    # exchange's own processing, a few ms on a loaded 2-core box); nothing after.
    limit_ns = sb.layout.processes["oms"].params["risk_heartbeat_limit_ms"] * 1_000_000
    bound = killed_at + limit_ns + 100_000_000
    entered_while_down = [(r.timestamp - killed_at) / 1e6 for r in records
                          if r.message[:1] == b"O" and bound < r.timestamp < reopened_at]
    cancels_after = [r for r in records if r.message[:1] == b"X" and killed_at <= r.timestamp < reopened_at]
    assert not entered_while_down, \
        f"new orders reached the exchange {entered_while_down} ms after risk was killed (limit {limit_ns / 1e6} ms)"
    assert cancels_after, "the open orders were not cancelled when risk died"
    assert truth["mine"] == truth["positions"]
    assert sb.down() == 0


@pytest.mark.parametrize("victim", ["oms", "feed", "strategy"])
def test_sigkill_a_process_it_restarts_and_nothing_is_lost_or_doubled(sandbox, victim):
    sb = sandbox(background_rate=3000, seed={"oms": 13, "feed": 14, "strategy": 15}[victim])
    wait_fills(sb, 5)
    pid = sb.pid_of(victim)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: sb.control()["gate_open"] == 0, 10, message="gate closed after the kill")
    wait_until(lambda: sb.pid_of(victim) not in (0, pid), 60, message=f"{victim} restarted")
    sb.wait_gate_open(90)
    wait_fills(sb, totals(sb)["fills"] + 3)
    status, truth = flatten_and_report(sb)
    assert truth["mine"] == truth["positions"], (truth["mine"], truth["positions"])
    tokens = [r.message[1:15] for r in ouch_inbound(sb) if r.message[:1] == b"O"]
    assert len(tokens) == len(set(tokens)), "a token was reused"
    fills = audit_fills(sb)
    # (token, match) is one fill; a match number alone repeats when the market maker trades with itself
    keys = [(f.get("token"), f.get("match_number")) for f in fills]
    assert len(keys) == len(set(keys)), "a fill was applied twice"
    assert len(fills) == truth["ledger"]["fills"]
    assert f"{victim} exited" in sb.up_output()
    assert sb.down() == 0


def test_a_feed_gap_is_recovered_and_the_books_are_right(sandbox):
    sb = sandbox(background_rate=3000, seed=16)
    wait_fills(sb, 3)
    sb.ctl("drop-next", count=20)
    # The gap is counted when seen and its messages when re-requested and back: wait for both (the
    # counters are published every few ms, so a read right after the gap may not show the recovery yet).
    wait_until(lambda: sb.counters().get("feed.gaps", 0) >= 1 and sb.counters().get("feed.messages_recovered", 0) >= 20
               and not sb.status()["gate"]["reasons"], 30, message="gap seen, recovered, and trading on")
    c = sb.counters()
    assert c["feed.messages_lost"] == 0 and c["feed.gaps_abandoned"] == 0
    sb.ctl("background", rate=0)
    killed = sb.appliance("kill", "--operator", "e2e")
    assert killed.returncode == 0
    wait_until(lambda: sb.control()["oms_open_orders"] == 0, 30, message="flat")
    for symbol in sb.layout.symbols:
        truth = sb.ctl("book", symbol=symbol)

        def matches():
            m = sb.memory().market_state_reader().read(sb.layout.symbol_id(symbol))
            best_bid = truth["bids"][0] if truth["bids"] else [0, 0]
            best_ask = truth["asks"][0] if truth["asks"] else [0, 0]
            return [m.bid_price, m.bid_shares] == best_bid and [m.ask_price, m.ask_shares] == best_ask
        wait_until(matches, 10, message=f"{symbol} top of book equals the exchange's")
    assert sb.down() == 0


def test_kill_cancels_everything_at_the_exchange_and_resume_needs_a_name(sandbox):
    sb = sandbox(background_rate=2000, seed=17)
    wait_until(lambda: sb.control()["oms_open_orders"] > 0, 60, message="quotes resting")
    killed = sb.appliance("kill", "--operator", "alice")
    assert killed.returncode == 0, killed.stderr
    assert "every open order cancelled" in killed.stdout
    assert sb.ctl("status")["live_orders"].get(FIRM, 0) == 0          # the exchange agrees
    assert sb.control()["gate_open"] == 0
    sent = totals(sb)["orders_sent"]
    assert sb.appliance("resume").returncode == 2                       # --operator is required
    assert sb.appliance("resume", "--operator", " ").returncode == 2
    resumed = sb.appliance("resume", "--operator", "alice")
    assert resumed.returncode == 0, resumed.stderr
    sb.wait_gate_open(30)
    wait_until(lambda: totals(sb)["orders_sent"] > sent, 30, message="quoting again after the reset")
    assert sb.down() == 0


def test_down_cancels_logs_out_removes_segments_and_leaves_no_process(sandbox):
    sb = sandbox(background_rate=2000, seed=18)
    wait_until(lambda: sb.control()["oms_open_orders"] > 0, 60, message="quotes resting")
    assert sb.ctl("status")["sessions"][FIRM]["connected"]
    pids = [sb.pid_of(p) for p in ("feed", "strategy", "risk", "oms")]
    assert sb.down() == 0
    status = sb.ctl("status")
    assert status["live_orders"].get(FIRM, 0) == 0, "orders left at the exchange"
    assert not status["sessions"][FIRM]["connected"], "the OMS did not log out"
    for spec in sb.layout.segments.values():
        assert not os.path.exists(segment_path(spec))
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} left running"


def test_with_cancel_on_disconnect_a_killed_omss_orders_are_gone_and_its_replay_says_so(sandbox):
    from appliance.oms import journal_records as jr
    from appliance.oms.journal_records import RecordType, SessionEvent
    from appliance.oms.journal_format import read_records
    from appliance.oms.recovery import rebuild
    from appliance.wire import ouch
    sb = sandbox(background_rate=2000, seed=19, exchange={"firms": {FIRM: {"cancel_on_disconnect": True}}})
    wait_until(lambda: sb.control()["oms_open_orders"] > 0, 60, message="quotes resting")
    pid = sb.pid_of("oms")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: sb.pid_of("oms") not in (0, pid), 60, message="oms restarted")
    sb.wait_gate_open(90)
    records, _found, _header = read_records(str(sb.journal))
    starts = [i for i, r in enumerate(records)
              if r.type == RecordType.SESSION and jr.SESSION.parse(r.payload).event == SessionEvent.START]
    restart = starts[-1]
    open_at_restart = {o.token.decode() for o in rebuild(records[:restart], list(sb.layout.symbols)).orders
                       .open_orders_list()}
    assert open_at_restart, "nothing was resting when the OMS died: the test proves nothing"
    venue_cancels = {ouch.decode_outbound(r.message)["order_token"] for r in read_ouch_log(sb.records / f"ouch-{FIRM}.log")
                     if r.direction == "O" and r.message[:1] == b"C" and ouch.decode_outbound(r.message)["reason"] == "Z"}
    assert venue_cancels and venue_cancels <= open_at_restart, (venue_cancels, open_at_restart)
    recovered = next(i for i, r in enumerate(records) if i > restart and r.type == RecordType.SESSION
                     and jr.SESSION.parse(r.payload).event == SessionEvent.RECOVERED)
    still_open = {o.token.decode() for o in rebuild(records[:recovered], list(sb.layout.symbols)).orders.open_orders_list()}
    assert not still_open & open_at_restart, "ready before the replay said the dead OMS's orders were gone"
    assert sb.ctl("status")["sessions"][FIRM]["canceled_on_disconnect"] == len(venue_cancels)
    status, truth = flatten_and_report(sb)
    assert truth["mine"] == truth["positions"]
    assert sb.down() == 0


def test_a_latched_kill_switch_survives_down_and_up_until_a_named_reset(sandbox):
    sb = sandbox(background_rate=2000, seed=20)
    wait_until(lambda: sb.control()["oms_open_orders"] > 0, 60, message="quotes resting")
    killed = sb.appliance("kill", "--operator", "alice")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert sb.down() == 0
    sb.start_appliance()                                   # `appliance up` again, same day, same files
    wait_until(lambda: sb.control()["risk_ready"] == 1 and sb.control()["oms_ready"] == 1
               and not sb.control()["gate_reasons"] & GateReason.STARTING, 90, message="the appliance back up")
    for _ in range(20):                                    # and it stays shut: nobody reset it
        control = sb.control()
        assert control["gate_open"] == 0 and control["gate_reasons"] & GateReason.KILL_SWITCH, (control, sb.up_output()[-3000:])
        assert control["risk_kill_latched"] == 1
        time.sleep(0.05)
    assert "latched" in sb.appliance("status").stdout
    resumed = sb.appliance("resume", "--operator", "alice")
    assert resumed.returncode == 0, resumed.stderr
    sb.wait_gate_open(60)
    assert sb.down() == 0


def test_kill_one_symbol_cancels_its_orders_and_refuses_new_ones_until_its_named_reset(sandbox):
    sb = sandbox(background_rate=3000, seed=21)
    symbol = sb.layout.symbols[0]
    sid = 0
    wait_until(lambda: sb.memory().positions_reader().read(sid).open_orders > 0 and
               sb.control()["oms_open_orders"] > sb.memory().positions_reader().read(sid).open_orders, 60,
               message=f"quotes resting in {symbol} and elsewhere")
    killed_at = time.time_ns()
    killed = sb.appliance("kill", "--symbol", symbol, "--operator", "alice")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert f"latched for {symbol}" in killed.stdout
    assert sb.control()["risk_kill_latched"] == 0 and sb.control()["gate_open"] == 1     # the rest trades on
    others = sb.status()["totals"]["orders_sent"]
    wait_until(lambda: sb.status()["totals"]["orders_sent"] > others, 30, message="other symbols still quoted")
    assert sb.memory().positions_reader().read(sid).open_orders == 0
    assert sb.appliance("resume", "--symbol", symbol, "--operator", " ").returncode == 2
    reset_at = time.time_ns()
    resumed = sb.appliance("resume", "--symbol", symbol, "--operator", "alice")
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: sb.memory().positions_reader().read(sid).open_orders > 0, 60,
               message=f"quoting {symbol} again after its reset")
    from appliance.messages.codes import ControlEventKind
    from appliance.oms import journal_records as jr
    from appliance.oms.journal_records import RecordType
    from appliance.oms.journal_format import read_records
    from appliance.wire import ouch
    records, _found, _header = read_records(str(sb.journal))
    controls = [jr.CONTROL.parse(r.payload) for r in records if r.type == RecordType.CONTROL]
    latched = [c.t_ns for c in controls if c.kind == ControlEventKind.KILL_SYMBOL]     # risk's own times
    unlatched = [c.t_ns for c in controls if c.kind == ControlEventKind.RESET_SYMBOL]
    assert len(latched) == 1 and len(unlatched) == 1 and killed_at < latched[0] < unlatched[0] and reset_at < unlatched[0]
    entered = [r.timestamp for r in ouch_inbound(sb) if r.message[:1] == b"O"
               and ouch.decode_inbound(r.message)["stock"].strip() == symbol]
    # approved before the latch, an order may still be on its way (the wire, the OMS's cycle): 100 ms
    during = [(t - latched[0]) / 1e6 for t in entered if latched[0] + 100_000_000 < t < unlatched[0]]
    assert not during, f"{symbol} orders reached the venue {during} ms after its kill latched"
    assert sb.down() == 0
