"""The risk hub against a real nats-server, fed by real drop copies tailing OMS journals: firm
positions and P&L summed across appliances, a restarted hub agreeing, a breach becoming a firm
command the drop copies hand to their supervisor, a silent hub, and garbage on every subject."""
from __future__ import annotations

import json
import pytest

from appliance.cli import main
from appliance.riskhub.book import FIRM_MAX_POSITION
from conftest import wait_until
from nats_server import nats_server   # noqa: F401  (the fixture)
from riskhub_rig import D, Firm, RunningHub, publish_raw, write_hub_config

@pytest.fixture
def firm_factory(nats_server, tmp_path):
    made = []

    def make(**kwargs):
        made.append(Firm(nats_server, tmp_path, **kwargs))
        return made[-1]
    yield make
    for firm in made:
        firm.close()


def applied_all(hub, firm) -> bool:
    books = hub.hub.book.appliances
    return all(name in books and books[name].last_sequence == firm.journals[name].journal.next_sequence - 1
               for name in firm.journals)


def test_firm_positions_and_pnl_are_the_appliances_summed_and_a_restarted_hub_agrees(nats_server, firm_factory,
                                                                                     tmp_path):
    marks = {"venue1": lambda: {"AAPL": 193 * D, "MSFT": 420 * D}}
    firm = firm_factory(marks=marks, firm={"marks_ms": 50})
    v1, v2 = firm.journals["venue1"], firm.journals["venue2"]
    v1.fill("AAPL", "B", 100, 190 * D)
    v1.fill("AAPL", "S", 30, 191 * D)               # 30 closed: +$30 realized
    v1.fill("MSFT", "B", 10, 420 * D, broken=True)  # undone
    v2.fill("AAPL", "T", 50, 192 * D)               # sold short
    v2.fill("MSFT", "B", 20, 421 * D)
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url)
    hub = RunningHub(path).caught_up()
    try:
        wait_until(lambda: applied_all(hub, firm) and hub.hub.book.marks.get("AAPL") == 193 * D, 30,
                   message="every event and a mark")
        f = hub.hub.book.figures()
        assert {s: (v["position"], v["by_appliance"]) for s, v in f["symbols"].items()} == \
            {"AAPL": (20, {"venue1": 70, "venue2": -50}), "MSFT": (20, {"venue2": 20})}    # the broken trade undone
        assert f["realized_pnl"] == 30 * D
        # AAPL: 70 x (193 - 190) + (-50) x (193 - 192) = 160; MSFT: 20 x (420 - 421) = -20
        assert f["unrealized_pnl"] == 140 * D and f["pnl"] == 170 * D
        assert (f["gross_exposure"], f["net_exposure"]) == (20 * 193 * D + 20 * 420 * D,) * 2
        assert hub.hub.garbage == 0
        before = {s: v["position"] for s, v in f["symbols"].items()}, f["realized_pnl"], f["applied"]
    finally:
        hub.stop()
    v2.fill("AAPL", "S", 20, 193 * D)               # while no hub runs
    hub = RunningHub(path).caught_up()
    try:
        wait_until(lambda: applied_all(hub, firm), 30, message="the restarted hub reading the stream")
        f = hub.hub.book.figures()
        positions, realized, applied = before
        assert {s: v["position"] for s, v in f["symbols"].items()} == {**positions, "AAPL": 0}
        assert (f["realized_pnl"], f["applied"]) == (realized, applied + 2)
    finally:
        hub.stop()


def test_a_restarted_hub_rebuilds_its_peak_and_drawdown_from_the_marks_in_the_stream(nats_server, firm_factory,
                                                                                     tmp_path):
    marks = {"AAPL": 200 * D}
    firm = firm_factory(marks={"venue1": lambda: dict(marks)}, firm={"marks_ms": 50})
    firm.journals["venue1"].fill("AAPL", "B", 100, 190 * D)
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url)
    hub = RunningHub(path).caught_up()
    try:
        wait_until(lambda: hub.hub.figures["peak_pnl"] == 1000 * D, 30, message="the peak at the $200 mark")
        marks["AAPL"] = 195 * D
        wait_until(lambda: hub.hub.figures["drawdown"] == 500 * D, 30, message="$500 below the peak")
    finally:
        hub.stop()
    hub = RunningHub(path).caught_up()                 # rebuilt from the stream alone
    try:
        f = hub.hub.figures
        assert (f["pnl"], f["peak_pnl"], f["drawdown"]) == (500 * D, 1000 * D, 500 * D)
    finally:
        hub.stop()


def test_a_stream_made_before_the_marks_and_commands_were_kept_is_given_them_by_the_drop_copy(nats_server, firm_factory, tmp_path):
    import asyncio

    import nats

    async def streams(subjects=None):
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            if subjects is not None:
                await js.add_stream(name="APPLIANCE_EVENTS", subjects=subjects)
            return (await js.stream_info("APPLIANCE_EVENTS")).config.subjects
        finally:
            await nc.close()
    asyncio.run(streams(["appliance.*.events"]))
    hub = RunningHub(write_hub_config(tmp_path / "hub.yaml", nats_server.url)).caught_up()
    try:                                                # marks taken live meanwhile (and said once)
        firm = firm_factory(marks={"venue1": lambda: {"AAPL": 200 * D}}, firm={"marks_ms": 50})
        wait_until(lambda: firm.copies["venue1"].copy.stats.connects >= 1, 30, message="the drop copy connected")
        assert asyncio.run(streams()) == ["appliance.*.events", "appliance.*.marks", "firm.commands"]
        firm.journals["venue1"].fill("AAPL", "B", 100, 190 * D)
        wait_until(lambda: hub.hub.figures["peak_pnl"] == 1000 * D, 30, message="the hub marking the fill")
    finally:
        hub.stop()


def test_a_breach_sends_a_firm_kill_that_each_drop_copy_hands_to_its_supervisor(nats_server, firm_factory, tmp_path,
                                                                                  capsys):
    firm = firm_factory(firm={"commands": True, "heartbeat_timeout_ms": 600_000})
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url,
                            limits={"max_position": {"default": 1000, "AAPL": 50}})
    hub = RunningHub(path).caught_up()
    try:
        firm.journals["venue1"].fill("AAPL", "B", 40, 190 * D)
        firm.journals["venue2"].fill("AAPL", "B", 40, 190 * D)       # firm +80 > 50
        wait_until(lambda: len(firm.supervisor.requests) == 2, 30, message="both drop copies handing on the kill")
        assert hub.hub.commands_sent[0]["command"] == "KILL"
        for request in firm.supervisor.requests:
            assert (request["command"], request["source"], request["operator"]) == ("kill", "FIRM", "risk-hub")
            assert f"{FIRM_MAX_POSITION}: firm position in AAPL +80 beyond 50 shares" in request["reason"]
        # the breach stands: not sent again; an operator's ACTIVATE accepts it as it stands
        assert main(["risk-hub", "activate", "--config", path, "--operator", "alice", "--reason", "hedged"]) == 0
        assert "FIRM ACTIVATE sent by hub firm" in capsys.readouterr().out
        wait_until(lambda: len(firm.supervisor.requests) == 6, 30, message="resume and activate at both")
        assert sorted(r["command"] for r in firm.supervisor.requests[2:]) == ["activate", "activate", "resume", "resume"]
        assert {(r["operator"], r["source"]) for r in firm.supervisor.requests[2:]} == {("alice", "FIRM")}
        firm.journals["venue1"].fill("MSFT", "B", 1, 420 * D)        # the standing breach does not fire again
        wait_until(lambda: applied_all(hub, firm), 30, message="the MSFT fill")
        assert [c["command"] for c in hub.hub.commands_sent] == ["KILL", "ACTIVATE"]
        assert main(["risk-hub", "kill", "--config", path, "--operator", "bob"]) == 0
        wait_until(lambda: len(firm.supervisor.requests) == 8, 30, message="the operator's firm kill")
        status = main(["risk-hub", "status", "--config", path, "--json"])
        assert status == 0
        shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
        assert shown["symbols"]["AAPL"]["position"] == 80 and shown["breaches"][0]["reason"] == FIRM_MAX_POSITION
    finally:
        hub.stop()


def test_a_restarted_hub_fires_no_breach_again_that_it_fired_or_an_operator_accepted(nats_server, firm_factory,
                                                                                       tmp_path):
    """The firm's commands are in the stream: a hub reading it again knows what it sent for which
    breach and what an ACTIVATE accepted; only a breach new since fires (the sync point here)."""
    firm = firm_factory(firm={"commands": True, "heartbeat_timeout_ms": 600_000})
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url, limits={"max_position": {"default": 1000,
                                                                                             "AAPL": 50}})
    v1 = firm.journals["venue1"]

    def restarted_and_fired_for(symbol: str, shares: int) -> str:
        hub = RunningHub(path).caught_up()
        try:
            v1.fill(symbol, "B", shares, 100 * D)
            wait_until(lambda: hub.hub.commands_sent, 30, message=f"the hub firing for {symbol}")
            assert [c["command"] for c in hub.hub.commands_sent] == ["KILL"], hub.hub.commands_sent
            return hub.hub.commands_sent[0]["reason"]
        finally:
            hub.stop()
    assert "AAPL" in restarted_and_fired_for("AAPL", 80)
    assert restarted_and_fired_for("TSLA", 1500).startswith("FIRM_MAX_POSITION: firm position in TSLA")   # not AAPL
    hub = RunningHub(path).caught_up()
    try:
        assert main(["risk-hub", "activate", "--config", path, "--operator", "alice"]) == 0
    finally:
        hub.stop()
    reason = restarted_and_fired_for("MSFT", 1500)                          # AAPL and TSLA were accepted
    assert reason.startswith("FIRM_MAX_POSITION: firm position in MSFT") and ";" not in reason, reason


def test_operator_commands_need_a_name_and_a_hub(nats_server, tmp_path, capsys):
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url)
    with pytest.raises(SystemExit) as usage:
        main(["risk-hub", "kill", "--operator", "x"])                  # no --config
    assert usage.value.code == 2
    assert main(["risk-hub", "kill", "--config", path]) == 2
    assert "kill needs --operator NAME" in capsys.readouterr().err
    assert main(["risk-hub", "kill", "--config", path, "--operator", "alice"]) == 1   # no hub running
    assert "no risk hub 'firm' answering" in capsys.readouterr().err


def test_a_silent_hub_puts_the_appliance_in_reducing_once(nats_server, firm_factory, tmp_path):
    hub = RunningHub(write_hub_config(tmp_path / "hub.yaml", nats_server.url, heartbeat_ms=50)).caught_up()
    try:
        firm = firm_factory(firm={"commands": True, "heartbeat_timeout_ms": 2000})
        wait_until(lambda: all(r.copy.firm.heartbeats >= 3 for r in firm.copies.values()), 10, message="heartbeats")
        assert firm.supervisor.requests == [] and firm.copies["venue1"].copy.stats.hub_silent == 0
    finally:
        hub.stop()
    wait_until(lambda: len(firm.supervisor.requests) >= 2, 30, message="both reducing")
    reduces = firm.supervisor.requests
    assert {(r["command"], r["source"], r["operator"]) for r in reduces} == {("reduce", "FIRM", "firm-watchdog")}
    assert all("risk hub silent for" in r["reason"] for r in reduces)
    assert firm.copies["venue1"].copy.stats.hub_silent == 1 and firm.copies["venue1"].copy.stats.hub_silences == 1


def test_garbage_on_every_subject_is_counted_and_dropped(nats_server, firm_factory, tmp_path):
    firm = firm_factory(firm={"commands": True, "heartbeat_timeout_ms": 600_000})
    firm.journals["venue1"].fill("AAPL", "B", 10, 190 * D)
    wait_until(lambda: firm.published("venue1") == 2, 30, message="the stream made")
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url)
    hub = RunningHub(path).caught_up()
    try:
        event = {"appliance": "venue1", "trading_day": 20260102, "sequence": 99, "event": "EXECUTED", "time_ns": 1}
        garbage = [b"", b"\xff\xfe", b"[" * 10000, b"1e999999", b"[]", b'"x"', json.dumps(event).encode(),
                   json.dumps({**event, "appliance": "venue2"}).encode(),
                   json.dumps({**event, "symbol": "AAPL", "side": "B", "shares": 10, "price": "-1.0000",
                               "match_number": 1}).encode()]
        publish_raw(nats_server.url, [("appliance.venue1.events", g) for g in garbage], stream="APPLIANCE_EVENTS")
        publish_raw(nats_server.url, [(s, g) for s in ("appliance.venue1.marks", "firm.commands", "firm.heartbeat",
                                                      "firm.hub.firm.control") for g in garbage[:7]]
                    + [("firm.commands", json.dumps({"command": "KILL", "reason": "x\n", "operator": "a", "hub": "h",
                                                     "id": 1, "time_ns": 1}).encode())])
        wait_until(lambda: hub.hub.garbage >= len(garbage) + 7 + 7, 30, message="the hub counting garbage")
        copy = firm.copies["venue1"].copy
        wait_until(lambda: copy.stats.firm_garbage == 7 + 7 + 1, 30, message="the drop copy counting garbage")
        assert firm.supervisor.requests == []
        firm.journals["venue1"].fill("AAPL", "B", 5, 190 * D)        # both still at work
        wait_until(lambda: hub.position("AAPL") == 15, 30, message="the next fill")
        assert main(["risk-hub", "reduce", "--config", path, "--operator", "carol"]) == 0
        wait_until(lambda: len(firm.supervisor.requests) == 2, 30, message="the next command")
    finally:
        hub.stop()


def test_a_hub_whose_consumer_is_lost_reads_the_stream_again(nats_server, firm_factory, tmp_path, monkeypatch):
    """The stream holds events the hub is not given (its consumer gone, as with a whole cluster
    restarted): after STALL_S it starts a new session and rebuilds the book from the stream."""
    import asyncio

    import nats

    from appliance.riskhub import hub as hub_module
    monkeypatch.setattr(hub_module, "STALL_S", 1.0)
    monkeypatch.setattr(hub_module, "STALL_LOOK_S", 0.2)
    firm = firm_factory()
    firm.journals["venue1"].fill("AAPL", "B", 10, 190 * D)
    wait_until(lambda: firm.published("venue1") == 2, 30, message="the stream made")
    hub = RunningHub(write_hub_config(tmp_path / "hub.yaml", nats_server.url)).caught_up()
    try:
        async def delete_consumers():
            nc = await nats.connect(nats_server.url)
            try:
                js = nc.jetstream()
                for consumer in await js.consumers_info("APPLIANCE_EVENTS"):
                    await js.delete_consumer("APPLIANCE_EVENTS", consumer.name)
            finally:
                await nc.close()
        asyncio.run(delete_consumers())
        firm.journals["venue1"].fill("AAPL", "B", 5, 190 * D)
        wait_until(lambda: firm.published("venue1") == 4, 30, message="the next fill in the stream")
        wait_until(lambda: hub.hub.caught_up and hub.position("AAPL") == 15, 30,
                   message="the hub reading the stream again")         # the book is empty while it is rebuilt
    finally:
        hub.stop()
