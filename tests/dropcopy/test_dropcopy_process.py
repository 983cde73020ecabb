"""The drop copy as a process: its settings checked like every process's, off by default (the
supervisor does not start it, and it never closes the gate), and as an agent against a real
nats-server with its figures in shared-memory counters."""
from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from appliance.dropcopy.config import DropCopyConfigError, parse_dropcopy_params
from appliance.messages.codes import GateReason, RiskState
from appliance.runtime.counters import ProcessState
from appliance.runtime.layout import LayoutError, load_layout
from appliance.runtime.memory import SharedMemory
from appliance.supervisor.gate import GateInputs, ProcessHealth, gate_reasons
from appliance.supervisor.preflight_config import check_process_configs
from appliance.supervisor.status import build_status, one_line
from conftest import ROOT, layout_document, output_of, wait_until
from nats_server import nats_server   # noqa: F401  (the fixture)
from dropcopy_rig import JournalWriter

LAYOUT = SimpleNamespace(path="/srv/app/shm_layout.yaml", name="venue1", processes={})


@pytest.mark.parametrize("params,key,reason", [
    ({"nats": {"url": "http://127.0.0.1:4222"}}, "nats.url", "must be nats://HOST:PORT or tls://HOST:PORT"),
    ({"nats": {"url": "nats://10.1.2.3:4222"}}, "nats.url", "is not loopback: use tls://"),
    ({"nats": {"url": "tls://nats.firm:4222"}}, "nats.credentials", "needs its own credentials"),
    ({"nats": {"url": "nats://u:p@127.0.0.1:4222"}}, "nats.url", "no user or password in the URL"),
    ({"nats": {"url": "nats://127.0.0.1:4222"}, "appliance": "a.b"}, "appliance", "a NATS subject token"),
    ({"nats": {"url": "nats://127.0.0.1:4222", "stream": "A B"}}, "nats.stream", "must be 1..64 letters"),
    ({"nats": {"url": "nats://127.0.0.1:4222"}, "batch": 0}, "batch", "must be 1..65536"),
    ({"nats": {"url": "nats://127.0.0.1:4222"}, "retry": {"initial_ms": 500, "max_ms": 100}}, "retry.max_ms",
     "at least initial_ms"),
    ({"nats": {"url": "nats://127.0.0.1:4222", "tls": {"cert": "c.pem"}}}, "nats.tls.key", "needs both"),
    ({"nats": {"url": "nats://127.0.0.1:4222", "password": "x"}}, "nats.password", "unknown key"),
    ({"nats": {"url": "nats://127.0.0.1:4222,http://127.0.0.1:4223"}}, "nats.url", "must be nats://HOST:PORT"),
    ({"nats": {"url": "nats://127.0.0.1:4222,nats://10.0.0.2:4222"}}, "nats.url", "is not loopback"),
    ({"nats": {"url": "nats://127.0.0.1:4222", "replicas": 0}}, "nats.replicas", "must be 1..5"),
    ({"nats": {"url": "nats://127.0.0.1:4222"}, "firm": {"on_silence": "panic"}}, "firm.on_silence",
     "must be one of reduce, kill, none"),
    ({"nats": {"url": "nats://127.0.0.1:4222"}, "firm": {"heartbeat_timeout_ms": 10}}, "firm.heartbeat_timeout_ms",
     "must be 100..3600000"),
])
def test_bad_settings_name_the_key_and_the_reason(params, key, reason):
    with pytest.raises(DropCopyConfigError) as caught:
        parse_dropcopy_params(params, LAYOUT, "p")
    assert caught.value.key_path == f"p.{key}" and reason in caught.value.reason


def test_settings_default_to_the_oms_journal_and_the_layout_name_and_off_without_a_url():
    layout = load_layout(ROOT / "shm_layout.yaml")
    config = parse_dropcopy_params(layout.processes["dropcopy"].params, layout)
    assert not config.enabled
    assert config.journal == str(ROOT / "run" / "oms-journal.bin")
    assert config.subject == "appliance.appliance.events" and config.message_id(20260102, 7) == "appliance:20260102:7"
    remote = parse_dropcopy_params({"nats": {"url": "tls://nats.firm:4222", "credentials": "run/dc.creds"}}, LAYOUT)
    assert remote.enabled and remote.credentials == "/srv/app/run/dc.creds"
    assert (config.firm_commands, config.hub_timeout_ms, config.on_hub_silence, config.marks_ms, config.replicas) == \
        (False, 5000, "reduce", 1000, 1)
    cluster = parse_dropcopy_params({"nats": {"url": "nats://127.0.0.1:1, nats://127.0.0.1:2", "replicas": 3}}, LAYOUT)
    assert (cluster.url, cluster.replicas) == ("nats://127.0.0.1:1,nats://127.0.0.1:2", 3)


def test_the_shipped_layout_leaves_the_drop_copy_off(write_layout, unique_name):
    """Nothing changes for a user without NATS: up's preflight names it as off, so it is not started;
    with a URL it is started."""
    import yaml
    shipped = next(p for p in yaml.safe_load((ROOT / "shm_layout.yaml").read_text())["processes"]
                   if p["name"] == "dropcopy")
    assert check_process_configs(load_layout(write_layout(layout_document(unique_name, [shipped], [])))) == \
        {"dropcopy"}
    shipped["params"]["nats"]["url"] = "nats://127.0.0.1:4222"
    assert check_process_configs(load_layout(write_layout(layout_document(unique_name, [shipped], [])))) == set()


def test_a_drop_copy_down_never_closes_the_gate():
    up = ProcessHealth(alive=True, heartbeat_age_ns=1_000, running=True)
    down = ProcessHealth(alive=False, heartbeat_age_ns=None, running=False)

    def reasons(processes):
        return gate_reasons(GateInputs(processes=processes, heartbeat_timeout_ns=10**9,
                                       risk_heartbeat_timeout_ns=10**9, risk_ready=True, risk_state=RiskState.ACTIVE,
                                       risk_kill_latched=False, oms_ready=True, feed_ready=True, clock_blocks=False,
                                       starting=False, operator_closed=False, stopping=False))
    assert reasons({"oms": up, "dropcopy": down}) == GateReason(0)
    assert reasons({"oms": down, "dropcopy": up}) == GateReason.PROCESS_DOWN


def test_the_agent_publishes_and_counts_in_shared_memory(nats_server, write_layout, unique_name, spawner, tmp_path):
    journal = JournalWriter(str(tmp_path / "journal.bin"))
    try:
        count = sum(journal.order_life() for _ in range(5))
        path = write_layout(layout_document(unique_name, processes=[{
            "name": "dropcopy", "agent": "appliance.dropcopy.agent:DropCopyAgent", "cpu": None,
            "idle": {"strategy": "sleep", "sleep_ns": 5_000_000},
            "params": {"nats": {"url": nats_server.url}, "journal": str(tmp_path / "journal.bin"),
                       "appliance": "venue1"}}], rings=[]))
        layout = load_layout(path)
        with SharedMemory.create(layout) as memory:
            proc = spawner.start(path, "dropcopy")
            counters = memory.counters_reader()
            wait_until(lambda: counters.by_label().get("dropcopy.last_sequence") == count or proc.poll() is not None,
                       30, message="the agent publishing the journal")
            assert proc.poll() is None, output_of(proc)
            count += journal.order_life()
            wait_until(lambda: counters.by_label().get("dropcopy.last_sequence") == count, 30,
                       message="the agent tailing the journal")
            wait_until(lambda: counters.by_label().get("dropcopy.lag_records") == 0, 10, message="no lag")
            figures = counters.by_label()
            assert (figures["dropcopy.published"], figures["dropcopy.connected"], figures["dropcopy.unreadable"]) == \
                (count, 1, 0)
            status = build_status(layout, memory)          # appliance status, and the live status line
            assert status["dropcopy"]["last_sequence"] == count
            assert one_line(status).endswith(" | drop copy up lag 0 rec 0.0 ms")
            nats_server.stop()
            wait_until(lambda: " | drop copy NATS DOWN lag " in one_line(build_status(layout, memory)), 30,
                       message="the status line saying NATS is down")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, output_of(proc)
            assert memory.process_table().read("dropcopy").state is ProcessState.STOPPED
    finally:
        journal.close()


def dropcopy_layout(write_layout, unique_name, params):
    return load_layout(write_layout(layout_document(unique_name, processes=[{
        "name": "dropcopy", "agent": "appliance.dropcopy.agent:DropCopyAgent", "cpu": None,
        "idle": {"strategy": "sleep", "sleep_ns": 5_000_000}, "params": params}], rings=[])))


@pytest.mark.parametrize("mode,refused", [(0o644, True), (0o640, True), (0o600, False)])
def test_a_credentials_file_others_may_read_stops_the_start(write_layout, unique_name, tmp_path, mode, refused):
    creds = tmp_path / "dropcopy.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n")
    creds.chmod(mode)
    layout = dropcopy_layout(write_layout, unique_name, {"nats": {"url": "nats://127.0.0.1:4222",
                                                                  "credentials": str(creds)}})
    if not refused:
        assert check_process_configs(layout) == set()
        return
    with pytest.raises(LayoutError) as caught:
        check_process_configs(layout)
    assert caught.value.key_path == "processes.dropcopy.params.nats.credentials"
    assert f"chmod 600 {creds}" in str(caught.value) and "JWT" not in str(caught.value)


def test_the_agent_without_a_url_or_with_bad_secrets_exits_as_bad_configuration(write_layout, unique_name,
                                                                                 spawner, tmp_path):
    creds = tmp_path / "open.creds"
    creds.write_text("x")
    creds.chmod(0o644)
    for params, says in (({"nats": {"url": ""}}, "no NATS server to publish to"),
                         ({"nats": {"url": "nats://127.0.0.1:4222", "credentials": str(creds)}}, "chmod 600")):
        layout = dropcopy_layout(write_layout, unique_name, params)
        with SharedMemory.create(layout):
            proc = spawner.start(layout.path, "dropcopy")
            out = output_of(proc, timeout=30)
            assert proc.returncode == 2 and says in out, out
