"""The risk hub's configuration file: checked by the one loader and checker (file, line, key path,
reason, exit 2 before anything connects), and the hub as a process of its own."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from appliance.cli import main
from appliance.messages.codes import PRICE_SCALE
from appliance.riskhub.config import RiskHubConfigError, load_hub_config
from conftest import ROOT, wait_until
from nats_server import nats_server   # noqa: F401  (the fixture)
from riskhub_rig import write_hub_config

GOOD = """\
version: 1
name: firm
nats: {url: "nats://127.0.0.1:4222"}
on_breach: reduce
limits:
  max_position: {default: 5000, AAPL: 3000}
  max_gross_exposure: 10000000
  max_daily_loss: 100000.5
"""


def test_a_good_file_reads_into_limits_in_price_units(tmp_path):
    path = tmp_path / "hub.yaml"
    path.write_text(GOOD)
    config = load_hub_config(str(path))
    assert (config.name, config.url, config.stream, config.on_breach, config.heartbeat_ms) == \
        ("firm", "nats://127.0.0.1:4222", "APPLIANCE_EVENTS", "reduce", 500)
    limits = config.limits
    assert (limits.position_limit("AAPL"), limits.position_limit("MSFT")) == (3000, 5000)
    assert limits.max_gross_exposure == 10_000_000 * PRICE_SCALE and limits.max_daily_loss == 1_000_005_000
    assert limits.max_net_exposure is None and limits.max_drawdown is None
    assert config.control_subject == "firm.hub.firm.control"


@pytest.mark.parametrize("text,key,reason,line", [
    ("version: 1\nname: firm\n", "nats", "missing required key", None),
    ("version: 2\nname: firm\nnats: {url: nats://127.0.0.1:1}\n", "version", "must be one of 1", 1),
    ("version: 1\nname: a.b\nnats: {url: nats://127.0.0.1:1}\n", "name", "a NATS subject token", 2),
    ("version: 1\nname: f\nnats:\n  url: http://x:1\n", "nats.url", "must be nats://HOST:PORT", 4),
    ("version: 1\nname: f\nnats:\n  url: nats://10.0.0.1:4222\n", "nats.url", "is not loopback", 4),
    ("version: 1\nname: f\nnats: {url: ''}\n", "nats.url", "must not be empty", 3),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\non_breach: halt\n", "on_breach", "must be one of kill, reduce", 4),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\nlimits:\n  max_drawdown: -5\n", "limits.max_drawdown",
     "must not be negative", 5),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\nlimits:\n  max_gross_exposure: x\n",
     "limits.max_gross_exposure", "expected", 5),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\nlimits:\n  max_position:\n    aapl: 5\n",
     "limits.max_position.aapl", "must be 'default' or a symbol", 6),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\nlimits:\n  max_position:\n    AAPL: 0\n",
     "limits.max_position.AAPL", "must be 1..", 6),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\nlimits:\n  max_loss: 5\n", "limits.max_loss",
     "unknown key", 5),
    ("version: 1\nname: f\nname: g\nnats: {url: nats://127.0.0.1:1}\n", "name", "duplicate key", 3),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\nheartbeat_ms: true\n", "heartbeat_ms",
     "expected an integer, got a boolean", 4),
    ("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\noperator: \"a\\nb\"\n", "operator", "printable", 4),
    ("[1, 2", "", "not valid YAML", None),
])
def test_a_bad_file_names_the_file_the_line_the_key_and_the_reason(tmp_path, text, key, reason, line):
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    with pytest.raises(RiskHubConfigError) as caught:
        load_hub_config(str(path))
    error = caught.value
    assert (error.file, error.key_path) == (str(path), key) and reason in error.reason, str(error)
    if line is not None:
        assert error.line == line, str(error)


def test_the_command_exits_2_on_a_bad_file_or_a_credentials_file_others_may_read(tmp_path, capsys):
    path = tmp_path / "hub.yaml"
    path.write_text("version: 1\nname: f\nnats: {url: nats://127.0.0.1:1}\nlimits: {max_drawdown: -5}\n")
    assert main(["risk-hub", "--config", str(path)]) == 2
    assert f"{path}:4: limits.max_drawdown: must not be negative" in capsys.readouterr().err
    assert main(["risk-hub", "status", "--config", str(tmp_path / "none.yaml")]) == 2
    creds = tmp_path / "hub.creds"
    creds.write_text("x")
    creds.chmod(0o644)
    path.write_text(f"version: 1\nname: f\nnats: {{url: nats://127.0.0.1:1, credentials: {creds}}}\n")
    assert main(["risk-hub", "--config", str(path)]) == 2
    assert "nats.credentials" in capsys.readouterr().err


def test_the_hub_runs_as_a_process_answers_status_and_stops_on_sigterm(nats_server, tmp_path, capsys):
    path = write_hub_config(tmp_path / "hub.yaml", nats_server.url)
    log = tmp_path / "hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "risk-hub", "--config", path], stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_until(lambda: "caught up with the stream" in log.read_text() or proc.poll() is not None, 30,
                   message="the hub caught up")
        assert proc.poll() is None, log.read_text()
        assert main(["risk-hub", "status", "--config", path]) == 0
        assert "hub firm: connected, caught up; 0 events from 0 appliances" in capsys.readouterr().out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
