"""The issue's firm, end to end: three appliances (``appliance up``, each with its drop copy) at two
venues (two simulated exchanges, each its own session and ports; two firms, ALGO1 and ALGO2, at
the first), a 3-node NATS cluster on loopback (the stream with 3 replicas) and ``appliance
risk-hub`` as a process of its own.

In order: the hub killed: every appliance goes REDUCING, saying why; restarted, it is heard again
and an operator's ACTIVATE from it reaches every appliance. One NATS node killed mid-session: the
appliances trade and publish on. Every node stopped for 10 s (``RISKHUB_E2E_LONG=1``; 2 s by
default) and started again: every drop copy catches up. A firm kill from the hub: every kill switch
latches with reason FIRM, every gate closes and every order at both venues is cancelled (the hub's
decision to the last gate closed, from the OMS journals, printed). Then: the stream holds every
record of every journal once (by message id); the hub's firm positions, per appliance and summed,
equal the venues' own end-of-day reports; the hub SIGKILLed and started again rebuilds the same
figures from the stream alone."""
from __future__ import annotations

import os
import time

import pytest

from appliance.messages.codes import PRICE_SCALE, ControlEventKind, RiskState
from appliance.oms import journal_records as jr
from appliance.oms.journal_format import read_records
from appliance.oms.journal_records import ControlKind, RecordType
from appliance.oms.positions import PositionLedger
from appliance.sim.sandbox import Sandbox
from conftest import wait_until
from dropcopy_rig import stream_messages
from nats_server import nats_cluster   # noqa: F401  (the fixture)
from riskhub_rig import HubProcess, ask_hub, write_hub_config

pytestmark = pytest.mark.e2e
LONG = os.environ.get("RISKHUB_E2E_LONG", "") not in ("", "0")
OUTAGE_S = 10.0 if LONG else 2.0           # every NATS node down this long (the 10 s behind the variable)
# appliance -> (venue, the venue's firm it logs in as, the OMS's MPID)
APPLIANCES = {"east-algo1": ("east", "ALGO1", "ALGO"), "east-algo2": ("east", "ALGO2", "ALG2"),
              "west-algo1": ("west", "ALGO1", "ALGO")}
SESSIONS = {"east": "EAST000001", "west": "WEST000001"}      # each venue's MoldUDP64 session


def firm_params(name: str, url: str, mpid: str) -> dict:
    return {"oms": {"firm": mpid}, "dropcopy": {
        "nats": {"url": url, "replicas": 3}, "appliance": name, "retry": {"initial_ms": 50, "max_ms": 500},
        "firm": {"commands": True, "heartbeat_timeout_ms": 3000, "marks_ms": 200}}}


def make_firm(tmp_path, url: str) -> dict[str, Sandbox]:
    """Each venue's first appliance owns its exchange; the second firm at east joins it."""
    made: dict[str, Sandbox] = {}
    owners: dict[str, Sandbox] = {}
    for name, (venue, _firm, mpid) in APPLIANCES.items():
        made[name] = Sandbox(tmp_path / name, seed=7 if venue == "east" else 11, venue=owners.get(venue),
                             params=firm_params(name, url, mpid),
                             exchange={"market_data": {"session": SESSIONS[venue]}})
        owners.setdefault(venue, made[name])
    return made


def control_records(sb: Sandbox):
    records, _, _ = read_records(str(sb.journal))
    return [(r.timestamp_ns, jr.CONTROL.parse(r.payload)) for r in records if r.type == RecordType.CONTROL]


def journal_sequences(sb: Sandbox) -> list[int]:
    """Every record's sequence in the appliance's OMS journal, in order."""
    records, _, _ = read_records(str(sb.journal))
    return [r.sequence for r in records]


def stream_is_the_journals(node, journals: dict[str, list[int]]) -> bool:
    """The stream's events are every journal's records, each once, under its own message id."""
    events = stream_messages(node)
    ids = [message_id for _subject, message_id, _event in events]
    assert len(ids) == len(set(ids)), "an event twice in the stream"
    for _subject, message_id, event in events:
        assert message_id == f"{event['appliance']}:{event['trading_day']}:{event['sequence']}", message_id
    held = {name: sorted(e["sequence"] for _s, _i, e in events if e["appliance"] == name) for name in journals}
    return held == journals


def venue_realized(ledgers: dict, symbol: str) -> float:
    """The realized P&L (dollars) of ``symbol`` summed over the firms' venue ledgers' fills, each
    firm's through the OMS's position arithmetic."""
    total = 0
    for ledger in ledgers.values():
        book = PositionLedger(1)
        for fill in ledger["fill_list"]:
            if fill["symbol"] == symbol:
                book.fill(0, fill["shares"] if fill["side"] == "B" else -fill["shares"], fill["price"])
        total += book.realized_pnl[0]
    return total / PRICE_SCALE


def logs_of(sb: Sandbox) -> str:
    return sb.up_output() + "".join(p.read_text(errors="replace") for p in (sb.dir / "logs").glob("*.log"))


def published(sb: Sandbox) -> int:
    return sb.counters()["dropcopy.last_sequence"]


def all_in_stream(sb: Sandbox) -> bool:
    counters = sb.counters()
    return counters["dropcopy.lag_records"] == 0 and counters["dropcopy.connected"] == 1


def test_three_appliances_two_venues_a_nats_cluster_and_the_hub(nats_cluster, tmp_path):
    url = nats_cluster.url
    hub_config = write_hub_config(tmp_path / "hub.yaml", url, heartbeat_ms=100)
    hub = HubProcess(hub_config, tmp_path / "hub.log").start()
    firm = make_firm(tmp_path, url)
    try:
        hub.caught_up()
        for sb in firm.values():
            sb.start()
        for name, sb in firm.items():
            wait_until(lambda: sb.status()["totals"]["fills"] >= 2, 120, interval=0.2, message=f"fills at {name}")
        wait_until(lambda: set(APPLIANCES) <= set((hub.status() or {}).get("appliances", ())), 60, interval=0.2,
                   message="the hub reading every appliance")

        # the hub crashes: silent, every appliance goes REDUCING and says why
        hub.kill()
        for name, sb in firm.items():
            wait_until(lambda: sb.control()["risk_state"] == RiskState.REDUCING, 30, interval=0.1,
                       message=f"{name} REDUCING")
            wait_until(lambda: sb.counters()["dropcopy.hub_silent"] == 1 and "risk hub silent for" in logs_of(sb),
                       10, interval=0.1, message=f"{name} saying why")
        hub.start().caught_up()
        wait_until(lambda: all(sb.counters()["dropcopy.hub_silent"] == 0 for sb in firm.values()), 30,
                   message="the hub heard again")
        ask_hub(hub_config, "activate", operator="alice", reason="hub back")
        for name, sb in firm.items():
            wait_until(lambda: sb.control()["risk_state"] == RiskState.ACTIVE, 30, interval=0.1,
                       message=f"{name} ACTIVE again")

        # one node of three killed mid-session: everything goes on through the other two
        nats_cluster.nodes[0].kill()
        marks = {name: published(sb) for name, sb in firm.items()}
        for name, sb in firm.items():
            wait_until(lambda: published(sb) > marks[name] + 5, 90, interval=0.2,
                       message=f"{name} publishing on with a node down")

        # every node down, the appliances trading on; then back: every drop copy catches up
        for node in nats_cluster.nodes[1:]:
            node.stop()
        for name, sb in firm.items():
            wait_until(lambda: sb.counters()["dropcopy.connected"] == 0, 30, interval=0.1,
                       message=f"{name}'s drop copy seeing NATS gone")
        time.sleep(OUTAGE_S)              # the outage itself (nothing is waited for: the scenario's length)
        behind = {name: sb.counters()["dropcopy.lag_records"] for name, sb in firm.items()}
        nats_cluster.start()
        for name, sb in firm.items():
            wait_until(lambda: all_in_stream(sb), 120, interval=0.2, message=f"{name} caught up")
        print(f"journal records behind after {OUTAGE_S:g} s without NATS: {behind}")

        # a firm kill from the hub: every gate closed, every order at both venues cancelled
        hub.caught_up(120)
        decision_ns = ask_hub(hub_config, "kill", operator="alice", reason="firm drill")["command"]["time_ns"]
        for name, sb in firm.items():
            wait_until(lambda: sb.control()["gate_open"] == 0 and sb.control()["risk_kill_latched"] == 1
                       and sb.control()["oms_open_orders"] == 0, 60, interval=0.05, message=f"{name} killed and flat")
        closed_at = {}
        for name, sb in firm.items():
            controls = [(t, c) for t, c in control_records(sb) if t >= decision_ns]
            kill = [c for _t, c in controls if c.kind == ControlEventKind.KILL]
            assert kill and kill[0].detail.rstrip(b"\0") == b"FIRM" and kill[0].operator.rstrip(b"\0") == b"alice"
            closed_at[name] = next(t for t, c in controls if c.kind == ControlKind.GATE_CHANGED and c.state == 0)
        print("firm kill, hub decision to each gate closed (OMS journal): "
              + ", ".join(f"{n} {(t - decision_ns) / 1e6:.1f} ms" for n, t in closed_at.items())
              + f"; to the last {(max(closed_at.values()) - decision_ns) / 1e6:.1f} ms")

        # the venues' own end-of-day reports (the exchange's per-firm ledgers, not the OMSes'); then
        # every appliance down (its drop copy publishes the journal's last records as it stops)
        reports = {venue: firm[owner].end_exchange_day() for venue, owner in (("east", "east-algo1"),
                                                                              ("west", "west-algo1"))}
        assert all(sb.down() == 0 for sb in firm.values())

        # the stream holds every record of every journal, once, and the hub all of them
        journals = {name: journal_sequences(sb) for name, sb in firm.items()}
        wait_until(lambda: stream_is_the_journals(nats_cluster.nodes[1], journals), 30, interval=0.5,
                   message="the stream holding every journal record once")
        wait_until(lambda: all((hub.status() or {}).get("appliances", {}).get(n, {}).get("last_sequence")
                               == sequences[-1] for n, sequences in journals.items()), 60, interval=0.2,
                   message="the hub holding every event")
        figures = hub.status()
        assert {venue: report["session"] for venue, report in reports.items()} == SESSIONS
        ledgers = {name: reports[venue]["firms"][login]["ledger"] for name, (venue, login, _mpid) in APPLIANCES.items()}
        assert all(ledger["fills"] for ledger in ledgers.values()), {n: ledger["fills"] for n, ledger in ledgers.items()}
        symbols = set(figures["symbols"]) | {s for ledger in ledgers.values() for s in ledger["positions"]}
        for symbol in symbols:                # per appliance (each one with a fill in it) and summed
            held = figures["symbols"].get(symbol, {"position": 0, "by_appliance": {}, "realized_pnl": 0})
            assert held["by_appliance"] == {n: ledger["positions"][symbol] for n, ledger in ledgers.items()
                                            if symbol in ledger["positions"]}, symbol
            assert held["position"] == sum(ledger["positions"].get(symbol, 0) for ledger in ledgers.values()), symbol
            assert held["realized_pnl"] == pytest.approx(venue_realized(ledgers, symbol), abs=0.005), symbol
        print(f"venues' fills {({n: ledger['fills'] for n, ledger in ledgers.items()})}, firm realized "
              f"${figures['realized_pnl']:,.2f}, positions {({s: v['position'] for s, v in figures['symbols'].items()})}")

        # the hub crashes and starts again: the same figures, from the stream alone
        hub.kill()
        again = hub.start().caught_up()
        for key in ("symbols", "realized_pnl", "unrealized_pnl", "peak_pnl", "applied", "appliances"):
            assert again[key] == figures[key], key
    finally:
        hub.close()
        for sb in firm.values():
            sb.close()
