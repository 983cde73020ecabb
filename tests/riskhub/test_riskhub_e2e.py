"""End to end: two appliances (``appliance up`` with the drop copy on, each against its own
simulated exchange: two venues), a real nats-server and the risk hub. The hub silent: both go
REDUCING, saying why. A firm kill from the hub's command line: both kill switches latch with
reason FIRM, both gates close, every order at both venues is cancelled (the latency from the
hub's decision to each gate closed, as the OMS journaled it, is printed). Then the hub's positions
and realized P&L equal the sum of what the two OMSes report, and a restarted hub agrees."""
from __future__ import annotations

import pytest

from appliance.cli import main
from appliance.messages.codes import PRICE_SCALE, ControlEventKind, RiskState
from appliance.oms import journal_records as jr
from appliance.oms.journal_format import read_records
from appliance.oms.journal_records import ControlKind, RecordType
from appliance.sim.sandbox import Sandbox
from conftest import wait_until
from nats_server import nats_server   # noqa: F401  (the fixture)
from riskhub_rig import RunningHub, write_hub_config

pytestmark = pytest.mark.e2e
VENUES = ("venue1", "venue2")


def firm_sandbox(tmp_path, name: str, url: str) -> Sandbox:
    return Sandbox(tmp_path / name, seed=7 if name == "venue1" else 11, params={"dropcopy": {
        "nats": {"url": url}, "appliance": name, "retry": {"initial_ms": 50, "max_ms": 500},
        "firm": {"commands": True, "heartbeat_timeout_ms": 3000, "marks_ms": 200}}})


def control_records(sb: Sandbox):
    records, _, _ = read_records(str(sb.journal))
    return [(r.timestamp_ns, jr.CONTROL.parse(r.payload)) for r in records if r.type == RecordType.CONTROL]


def logs_of(sb: Sandbox) -> str:
    """Every process's log and ``appliance up``'s output (the supervisor's)."""
    return sb.up_output() + "".join(p.read_text(errors="replace") for p in (sb.dir / "logs").glob("*.log"))


def settled(hub, sb: Sandbox, name: str) -> bool:
    """The hub has every record this appliance's drop copy published, and that is the whole journal."""
    counters = sb.counters()
    book = hub.hub.book.appliances.get(name)
    return counters.get("dropcopy.lag_records") == 0 and book is not None and \
        book.last_sequence == counters.get("dropcopy.last_sequence")


def test_two_appliances_a_silent_hub_a_firm_kill_and_the_hub_agreeing_with_both_omses(nats_server, tmp_path):
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url, heartbeat_ms=100)
    hub = RunningHub(path).caught_up()
    sandboxes = {}
    try:
        for name in VENUES:
            sandboxes[name] = firm_sandbox(tmp_path, name, nats_server.url)
            sandboxes[name].start()
        for name, sb in sandboxes.items():
            wait_until(lambda: sb.status()["totals"]["fills"] >= 2, 120, interval=0.2, message=f"fills at {name}")
            wait_until(lambda: name in hub.hub.book.appliances, 60, message=f"the hub reading {name}")
        assert all(sb.control()["risk_state"] == RiskState.ACTIVE for sb in sandboxes.values())

        hub.stop()                                           # silent: both go REDUCING, logged with the reason
        for name, sb in sandboxes.items():
            wait_until(lambda: sb.control()["risk_state"] == RiskState.REDUCING, 30, interval=0.1,
                       message=f"{name} REDUCING")
            # the drop copy publishes its counters every 50 ms: REDUCING may be seen before the gauge
            wait_until(lambda: sb.counters()["dropcopy.hub_silent"] == 1, 10, interval=0.05,
                       message=f"{name} showing the hub silent")
            wait_until(lambda: "risk hub silent for" in logs_of(sb) and
                       "FIRM reduce from the risk hub, operator firm-watchdog" in logs_of(sb), 10,
                       message=f"{name} saying why")

        hub = RunningHub(path).caught_up()
        wait_until(lambda: all(sb.counters()["dropcopy.hub_silent"] == 0 for sb in sandboxes.values()), 30,
                   message="the hub heard again")
        assert main(["risk-hub", "kill", "--config", path, "--operator", "alice", "--reason", "firm drill"]) == 0
        decision_ns = hub.hub.commands_sent[-1]["time_ns"]
        for name, sb in sandboxes.items():
            wait_until(lambda: sb.control()["gate_open"] == 0 and sb.control()["risk_kill_latched"] == 1
                       and sb.control()["oms_open_orders"] == 0, 60, interval=0.05, message=f"{name} killed and flat")
        latencies = {}
        for name, sb in sandboxes.items():
            controls = control_records(sb)
            kill = [c for t, c in controls if t >= decision_ns and c.kind == ControlEventKind.KILL]
            assert kill and kill[0].detail.rstrip(b"\0") == b"FIRM" and kill[0].operator.rstrip(b"\0") == b"alice"
            closed = [t for t, c in controls if t >= decision_ns and c.kind == ControlKind.GATE_CHANGED and c.state == 0]
            latencies[name] = (closed[0] - decision_ns) / 1e6
        print("firm kill, hub decision to gate closed (OMS journal): "
              + ", ".join(f"{n} {ms:.1f} ms" for n, ms in latencies.items()))
        for name, sb in sandboxes.items():
            wait_until(lambda: settled(hub, sb, name), 60, message=f"the hub holding all of {name}")
        figures = hub.hub.book.figures()
        statuses = {name: sb.status() for name, sb in sandboxes.items()}
        for symbol in set(figures["symbols"]) | set(statuses["venue1"]["symbols"]):
            held = sum(s["symbols"][symbol]["position"] for s in statuses.values())
            assert figures["symbols"].get(symbol, {"position": 0})["position"] == held, symbol
        realized = sum(s["totals"]["realized_pnl"] for s in statuses.values())
        assert figures["realized_pnl"] / PRICE_SCALE == pytest.approx(realized, abs=0.005)
        assert sum(s["totals"]["fills"] for s in statuses.values()) == \
            sum(b.ledger.fills[sid] for b in hub.hub.book.appliances.values() for sid in range(len(b.ledger.fills)))
        hub.stop()
        hub = RunningHub(path).caught_up()                    # restarted: rebuilt from the stream alone
        again = hub.hub.book.figures()
        assert {s: v["position"] for s, v in again["symbols"].items()} == \
            {s: v["position"] for s, v in figures["symbols"].items()}
        assert (again["realized_pnl"], again["applied"]) == (figures["realized_pnl"], figures["applied"])
        assert all(sb.down() == 0 for sb in sandboxes.values())
    finally:
        hub.stop()
        for sb in sandboxes.values():
            sb.close()
