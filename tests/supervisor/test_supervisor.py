"""The supervisor as `appliance up`, with stand-in risk and OMS agents: start order, the gate and
its reasons, restarts with backoff, fail-fast start, kill/resume, down (the rig: tests/support/supervisor_rig.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess

from appliance.messages.codes import GateReason, RiskState
from appliance.runtime.layout import load_layout
from appliance.runtime.segment import segment_path
from conftest import wait_until
from supervisor_rig import appliance, make_layout, up_factory  # noqa: F401 (up_factory: a fixture)


def test_gate_opens_when_every_process_is_ready_and_risk_death_closes_it_at_once(tmp_path, unique_name,
                                                                                 up_factory):
    up = up_factory(make_layout(tmp_path, unique_name)).attach()
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open")
    table = up.memory.process_table()
    risk_pid = table.read("risk").pid
    os.kill(risk_pid, signal.SIGKILL)
    wait_until(lambda: up.gate()[0] == 0, 5, message="gate closed after risk died")
    assert GateReason.RISK_UNHEALTHY in up.gate()[1]
    wait_until(lambda: table.read("risk").pid not in (0, risk_pid) and up.gate()[0] == 1, 30,
               message="risk restarted and the gate reopened")
    status = json.loads(appliance("status", "--layout", str(up.layout_path), "--json").stdout)
    assert status["gate"]["open"] and status["processes"]["risk"]["pid"] != risk_pid
    text = appliance("status", "--layout", str(up.layout_path)).stdout
    assert "gate: OPEN" in text and "risk" in text
    answer = appliance("down", "--layout", str(up.layout_path), "--operator", "tester")
    assert answer.returncode == 0, answer.stderr
    assert up.proc.wait(30) == 0
    output = up.output()
    assert "gate closed" in output and "risk exited" in output and "will restart" in output, output


def test_kill_latches_and_resume_needs_an_operator(tmp_path, unique_name, up_factory):
    up = up_factory(make_layout(tmp_path, unique_name)).attach()
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open")
    killed = appliance("kill", "--layout", str(up.layout_path), "--operator", "alice")
    assert killed.returncode == 0, killed.stderr
    assert "kill switch latched" in killed.stdout
    wait_until(lambda: GateReason.KILL_SWITCH in up.gate()[1], 5, message="gate closed by the kill switch")
    assert up.control.get("risk_state") == RiskState.HALTED
    no_name = appliance("resume", "--layout", str(up.layout_path), "--operator", " ")
    assert no_name.returncode == 2 and "needs a name" in no_name.stderr
    assert appliance("resume", "--layout", str(up.layout_path)).returncode == 2      # argparse: required
    resumed = appliance("resume", "--layout", str(up.layout_path), "--operator", "alice")
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: up.gate()[0] == 1, 10, message="gate reopened after the named reset")


def test_operator_commands_reduce_activate_and_hold_the_gate_each_with_a_name(tmp_path, unique_name, up_factory):
    up = up_factory(make_layout(tmp_path, unique_name)).attach()
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open")
    layout = ("--layout", str(up.layout_path), "--timeout", "10")
    for command in ("reduce", "activate", "close-gate", "open-gate"):
        unnamed = appliance(command, *layout, "--operator", "  ")
        assert unnamed.returncode == 2 and "needs a name" in unnamed.stderr, (command, unnamed.stderr)
    reduced = appliance("reduce", *layout, "--operator", "bob")
    assert reduced.returncode == 0 and "REDUCING" in reduced.stdout, reduced.stderr
    assert up.control.get("risk_state") == RiskState.REDUCING
    assert appliance("activate", *layout, "--operator", "bob").returncode == 0
    assert up.control.get("risk_state") == RiskState.ACTIVE
    closed = appliance("close-gate", *layout, "--operator", "carol")
    assert closed.returncode == 0 and "gate closed by carol" in closed.stdout, closed.stderr
    assert up.gate() == (0, GateReason.OPERATOR)
    assert appliance("open-gate", *layout, "--operator", "carol").returncode == 0
    wait_until(lambda: up.gate()[0] == 1, 10, message="gate reopened")
    unknown = appliance("kill", *layout, "--symbol", "NOPE", "--operator", "carol")
    assert unknown.returncode == 2 and "unknown symbol 'NOPE'" in unknown.stderr
    up.close()
    text = up.output(timeout=30)                    # the supervisor's log: every change with its operator
    for said in ("trading state REDUCING requested by bob", "gate closed by operator carol",
                 "gate reopened by operator carol"):
        assert said in text, said


def test_a_gate_change_wakes_a_process_parked_on_its_doorbell(tmp_path, unique_name, up_factory):
    """The OMS of the small profile parks on its doorbell between orders; a closed gate (a kill) must reach it
    at once, not a park timeout later: the supervisor rings every doorbell process's doorbell on a gate
    change. Here the park timeout is 10 s, and the OMS must see the close well before."""
    layout_path = make_layout(tmp_path, unique_name, oms="supervised_agents:GateWatchingOms",
                              oms_idle={"strategy": "doorbell", "spins": 10, "park_timeout_ns": 10_000_000_000},
                              supervisor_params={"heartbeat_timeout_ms": 60_000})
    up = up_factory(layout_path).attach()
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open")
    layout = ("--layout", str(up.layout_path), "--timeout", "10")
    closed = appliance("close-gate", *layout, "--operator", "carol")
    assert closed.returncode == 0, closed.stderr
    wait_until(lambda: up.control.get("oms_open_orders") == 1, 5,
               message="the parked OMS to see the closed gate (its park timeout is 10 s)")


def test_a_restarted_process_slow_to_start_is_not_taken_for_hung(tmp_path, unique_name, up_factory, monkeypatch):
    """Found by the chaos suite: the process record kept the dead process's last heartbeat, so a
    restart that took longer than the hung limit to start was killed again and again."""
    monkeypatch.setenv("SLOW_START_MARKER", str(tmp_path / "started-once"))
    monkeypatch.setenv("SLOW_START_S", "2")
    path = make_layout(tmp_path, unique_name, strategy="supervised_agents:SlowAfterRestart",
                       supervisor_params={"heartbeat_timeout_ms": 100})          # hung after 0.5 s of silence
    up = up_factory(path).attach()
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open")
    table = up.memory.process_table()
    pid = table.read("strategy").pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: table.read("strategy").pid not in (0, pid), 30, message="strategy restarted")
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open again after the slow start")
    up.close()
    out = up.output(timeout=30)
    assert "silent for" not in out, out
    assert out.count("restarting strategy") == 1, out


def test_a_process_failing_at_start_is_named_and_nothing_is_left_running(tmp_path, unique_name):
    path = make_layout(tmp_path, unique_name, risk="supervised_agents:FailsAtStart")
    result = appliance("up", "--layout", str(path), "--status-line", "off")
    assert result.returncode == 1
    assert "start failed: risk exited with status" in result.stderr and "deliberately broken" in result.stderr
    layout = load_layout(path)
    assert not os.path.exists(segment_path(layout.segments["main"]))
    alive = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True).stdout.split()
    assert not alive, alive


def test_bad_supervisor_config_stops_start_up_with_the_key(tmp_path, unique_name):
    path = make_layout(tmp_path, unique_name, supervisor_params={"restart": {"policy": "sometimes"}})
    result = appliance("up", "--layout", str(path))
    assert result.returncode == 2
    assert "processes.supervisor.params.restart.policy" in result.stderr and "sometimes" in result.stderr


def test_restart_policy_stop_takes_everything_down(tmp_path, unique_name, up_factory):
    path = make_layout(tmp_path, unique_name, strategy="supervised_agents:ExitsLater",
                       supervisor_params={"restart": {"policy": "stop"}})
    up = up_factory(path)
    out = up.output(timeout=60)
    assert up.proc.returncode == 1, out
    assert "strategy exited" in out and "restart policy is stop" in out


def test_the_restart_limit_counts_restarts_inside_its_window_not_since_the_start(tmp_path, unique_name, up_factory,
                                                                                  monkeypatch):
    """Found by the 200-kill chaos soak: a lifetime count took the appliance down after its 20th
    restart of a process, however far apart; a crash loop is many restarts in a short time."""
    monkeypatch.setenv("EXITS_LATER_S", "1.2")
    path = make_layout(tmp_path, unique_name, strategy="supervised_agents:ExitsLater",
                       supervisor_params={"restart": {"max_restarts": 1, "window_s": 1, "backoff_initial_ms": 50}})
    up = up_factory(path).attach()
    wait_until(lambda: up.memory.counters_reader().by_label().get("supervisor.restarts.strategy", 0) >= 3, 60,
               message="three restarts, each more than the window apart")
    assert up.proc.poll() is None, "the appliance stopped: the limit counted old restarts"
    up.close()


def test_a_crash_loop_inside_the_window_stops_everything(tmp_path, unique_name, up_factory, monkeypatch):
    monkeypatch.setenv("EXITS_LATER_S", "0.2")
    path = make_layout(tmp_path, unique_name, strategy="supervised_agents:ExitsLater",
                       supervisor_params={"restart": {"max_restarts": 2, "window_s": 600, "backoff_initial_ms": 50}})
    up = up_factory(path)
    out = up.output(timeout=90)
    assert up.proc.returncode == 1, out
    assert "2 restarts in 600 s reached the limit of 2" in out


def test_commands_without_an_appliance_say_so(tmp_path, unique_name):
    path = make_layout(tmp_path, unique_name)
    for command in (["status"], ["kill"], ["down"], ["resume", "--operator", "x"]):
        result = appliance(*command, "--layout", str(path), "--timeout", "2")
        assert result.returncode == 1 and "error:" in result.stderr, (command, result.stderr)


def test_firm_requests_are_checked_then_sent_to_risk_as_firm_commands_and_logged(tmp_path, unique_name, up_factory):
    """The drop copy's hand-off of a risk hub command (issue 19): ``source: FIRM`` with the hub's reason."""
    from appliance.command_io.json_lines import request_json
    up = up_factory(make_layout(tmp_path, unique_name)).attach()
    wait_until(lambda: up.gate()[0] == 1, 30, message="gate open")
    sock = str(tmp_path / "sup.sock")

    def ask(**request):
        return request_json(sock, {"operator": "risk-hub", **request}, 10, "the supervisor")
    assert ask(command="kill", source="HUB")["error"] == "source must be FIRM when given, got 'HUB'"
    assert "reason must be at most 200 printable" in ask(command="kill", source="FIRM", reason="a\nb")["error"]
    assert "reason must be at most 200" in ask(command="kill", source="FIRM", reason="x" * 201)["error"]
    assert "not 'close-gate'" in ask(command="close-gate", source="FIRM")["error"]
    assert "with a symbol" in ask(command="kill", source="FIRM", symbol="AAPL")["error"]
    assert ask(command="reduce", source="FIRM", reason="hub firm: FIRM_DAILY_LOSS")["sent"] == "firm-reduce"
    wait_until(lambda: up.control.get("risk_state") == RiskState.REDUCING, 10, message="REDUCING")
    assert ask(command="kill", source="FIRM", reason="hub firm: drill") == {"ok": True, "sent": "firm-kill"}
    up.close()
    text = up.output(timeout=30)
    assert "FIRM reduce from the risk hub, operator risk-hub" in text and "hub firm: FIRM_DAILY_LOSS" in text
    assert "FIRM kill from the risk hub, operator risk-hub" in text and "hub firm: drill" in text
