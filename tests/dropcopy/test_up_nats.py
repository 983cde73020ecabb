"""``appliance up --sim --nats URL``: the drop copy on for one run without editing the layout; a URL
the drop copy would refuse stops ``up`` before anything starts, with the drop copy's words."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from appliance.dropcopy.config import DropCopyConfigError
from appliance.runtime.layout import load_layout
from appliance.sim.sandbox import Sandbox
from appliance.sim.up import write_run_layout
from conftest import ROOT, wait_until
from dropcopy_rig import stream_messages
from nats_server import nats_server   # noqa: F401  (the fixture)


def _layout_file(tmp_path):
    path = tmp_path / "shm_layout.yaml"
    path.write_text((ROOT / "shm_layout.yaml").read_text()
                    .replace("instruments: config/instruments.yaml", f"instruments: {ROOT}/config/instruments.yaml")
                    .replace("name: appliance", f"name: upn{os.getpid()}"))
    return path


def test_the_run_layout_carries_the_url_and_keeps_the_rest_of_the_drop_copys_params(tmp_path):
    path = _layout_file(tmp_path)
    written = write_run_layout(str(path), None, None, "nats://127.0.0.1:4333")
    try:
        layout = load_layout(str(written))
        params = layout.processes["dropcopy"].params
        assert params["nats"] == {"url": "nats://127.0.0.1:4333", "stream": "APPLIANCE_EVENTS"}
        assert params["firm"] == load_layout(str(path)).processes["dropcopy"].params["firm"]
        assert layout.processes["strategy"].params == load_layout(str(path)).processes["strategy"].params
        assert "NATS URL of `appliance up --nats`" in written.read_text().splitlines()[0]
    finally:
        written.unlink()


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:4222", "must be nats://HOST:PORT or tls://HOST:PORT"),
    ("nats://10.1.2.3:4222", "is not loopback: use tls://"),
    ("nats://user:secret@127.0.0.1:4222", "no user or password in the URL"),
    ("nats://127.0.0.1:99999", "bad port"),
])
def test_a_url_the_drop_copy_refuses_is_refused_before_anything_starts(tmp_path, url, words):
    path = _layout_file(tmp_path)
    with pytest.raises(DropCopyConfigError, match=words.replace("(", r"\(").replace("/", "/")):
        write_run_layout(str(path), None, None, url)
    assert not list(tmp_path.glob("*.strategy-*"))
    result = subprocess.run([sys.executable, "-m", "appliance", "up", "--sim", "--layout", str(path), "--nats", url],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "processes.dropcopy.params.nats.url" in result.stderr
    assert not list(tmp_path.glob("*.strategy-*")) and not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_up_sim_nats_publishes_the_sessions_events_to_the_stream(nats_server, tmp_path):
    sb = Sandbox(tmp_path / "sb", params={"dropcopy": {"appliance": "upnats"}}, up_args=("--nats", nats_server.url))
    try:
        sb.start()
        wait_until(lambda: sb.status()["totals"]["fills"] >= 1, 120, interval=0.2, message="a fill")
        wait_until(lambda: sb.counters().get("dropcopy.connected") == 1
                   and sb.counters().get("dropcopy.last_sequence", 0) > 0, 60, message="the drop copy publishing")
        assert sb.down() == 0, sb.up_output()[-3000:]
    finally:
        sb.close()
    events = {event["event"] for _subject, _id, event in stream_messages(nats_server)}
    assert {"SENT_NEW", "ACCEPTED", "EXECUTED"} <= events, events
