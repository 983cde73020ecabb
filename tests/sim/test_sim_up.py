"""`appliance up --sim` gives the OMS the simulated firm's login in a 0600 file when none exists,
leaves an operator's file alone, and refuses a layout that still holds a password."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from appliance.oms.credentials import load_venue_credentials
from appliance.runtime.layout import LayoutError, load_layout
from appliance.sim.up import sim_credentials
from conftest import ROOT


def _repository_layout() -> str:
    """The repository's layout text, its instruments file named by absolute path (it is written elsewhere)."""
    return (ROOT / "shm_layout.yaml").read_text().replace("instruments: config/instruments.yaml",
                                                          f"instruments: {ROOT}/config/instruments.yaml")


def _layout(tmp_path, text: str | None = None):
    path = tmp_path / "shm_layout.yaml"
    path.write_text(text or _repository_layout().replace("name: appliance", f"name: simc{os.getpid()}"))
    return load_layout(path)


def test_up_sim_writes_the_simulated_firms_login_0600_once(tmp_path):
    layout = _layout(tmp_path)
    sim_credentials(layout, None)
    path = tmp_path / "run" / "venue.credentials"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    creds = load_venue_credentials(str(path))
    assert (creds.username, creds.password) == ("ALGO1", "secret1")     # the embedded default's firm ALGO
    path.write_text("username = MINE\npassword = mine\n")               # the operator's own: left alone
    sim_credentials(layout, None)
    assert load_venue_credentials(str(path)).username == "MINE"


def test_up_sim_needs_a_simulated_firm_with_the_oms_mpid(tmp_path):
    text = _repository_layout().replace("firm: ALGO\n", "firm: ZZZZ\n")
    with pytest.raises(LayoutError, match="no firm of the simulated exchange has MPID 'ZZZZ'"):
        sim_credentials(_layout(tmp_path, text), None)


def test_a_password_left_in_the_layout_stops_up_with_where_it_goes(tmp_path):
    text = _repository_layout().replace("      firm: ALGO\n", "      firm: ALGO\n      password: hunter2\n")
    path = tmp_path / "shm_layout.yaml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "appliance", "up", "--sim", "--layout", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "processes.oms.params.password" in out.stderr and "credentials file" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout


def test_up_sim_lists_the_layouts_instruments_on_the_simulated_exchange(tmp_path):
    """Without --sim-config the exchange's embedded default lists exactly the layout's instruments; one
    the exchange cannot list (no reference price) stops `up` before anything starts."""
    from appliance.exchange.config import ConfigError
    from appliance.sim.up import SimulatedVenue
    layout = _layout(tmp_path)
    venue = SimulatedVenue(None)
    venue.prepare(layout)
    assert tuple(s.symbol for s in venue.listing.symbols) == layout.symbols
    assert [s.reference_price for s in venue.listing.symbols] == [i.reference_price for i in layout.instruments]
    (tmp_path / "instruments.yaml").write_text("version: 1\ninstruments:\n  - {symbol: ZZZ, tick: 0.01, round_lot: 100}\n")
    small = _layout(tmp_path, _repository_layout().replace(f"instruments: {ROOT}/config/instruments.yaml",
                                                           "instruments: instruments.yaml"))
    assert small.symbols == ("ZZZ",)
    with pytest.raises(ConfigError, match="ZZZ has no reference_price"):
        SimulatedVenue(None).prepare(small)
    assert SimulatedVenue(_sim_config(tmp_path)).listing is None        # an operator's own config: as it is


def _sim_config(tmp_path) -> str:
    """The exchange on free ports (the embedded default's fixed ports may be taken on a shared box)."""
    import yaml
    from exchange_process import base_config
    doc = base_config(firms=[{"username": "ALGO1", "password": "secret1", "mpid": "ALGO"}])
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_up_sim_starts_a_fresh_day_beside_the_layout_and_ends_it_on_stop(tmp_path):
    """The venue ``appliance up --sim`` hands the supervisor: yesterday's OMS journal moved into the
    new day's directory, the exchange answering on ``run/control``, its report written on stop."""
    from appliance.command_io.json_lines import request_json
    from appliance.sim.up import SimulatedVenue, sim_control_socket
    layout = _layout(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "oms-journal.bin").write_bytes(b"yesterday")
    venue = SimulatedVenue(_sim_config(tmp_path))
    try:
        venue.prepare(layout)
        venue.start(layout, tmp_path)
        assert (venue.day / "previous-oms-journal.bin").read_bytes() == b"yesterday"
        assert not (tmp_path / "run" / "oms-journal.bin").exists()
        assert request_json(sim_control_socket(tmp_path), {"command": "status"}, 10)["ok"] is True
        venue.stop()
        assert venue.exchange.proc.returncode == 0
        assert (venue.day / "exchange" / "report.json").exists()
    finally:
        venue.close()


def test_up_sim_fails_the_start_with_the_exchanges_words_when_it_cannot_start(tmp_path):
    from appliance.sim.up import SimulatedVenue
    from appliance.supervisor.up import StartFailed
    venue = SimulatedVenue(str(tmp_path / "missing.yaml"))
    try:
        with pytest.raises(StartFailed, match=r"the simulated exchange: the exchange exited 2 before it was ready"):
            venue.start(_layout(tmp_path), tmp_path)
    finally:
        venue.close()


def test_up_sim_replay_holds_the_day_until_the_gate_opens_and_ends_with_it(tmp_path):
    """``up --sim --replay``: the exchange replays the recorded day, held until the supervisor's gate
    callable says open (then started over the control socket), and exits with the end of the day; it got
    ``--answer-lead`` and ``--queue-model`` as given to ``up``."""
    import argparse
    import json
    from appliance.command_io.json_lines import request_json
    from appliance.runtime.polling import poll_until
    from appliance.sim.up import SimulatedVenue, add_arguments, replay_day, replay_options, sim_control_socket
    from recorded_day import quiet_day, write_day
    day_file = tmp_path / "day.bin"
    recorded = write_day(day_file, quiet_day())
    layout = _layout(tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--sim", "--replay", str(day_file), "--replay-speed", "max", "--answer-lead", "2.5",
                              "--queue-model", "prob-power:3"])
    venue = SimulatedVenue(_sim_config(tmp_path), replay=replay_day(args), replay_speed=args.replay_speed,
                           replay_options=replay_options(args))
    try:
        venue.prepare(layout)
        venue.start(layout, tmp_path)
        command = venue.exchange.proc.args
        at = command.index("--answer-lead")
        assert command[at:at + 4] == ["--answer-lead", "2.5", "--queue-model", "prob-power:3"]
        gate = []
        venue.children_started(lambda: bool(gate))
        status = request_json(sim_control_socket(tmp_path), {"command": "status"}, 10)
        assert status["replay"]["started"] is False and status["feed"]["messages"] <= 3     # the preamble at most
        gate.append(1)
        assert poll_until(lambda: venue.exchange.proc.poll() is not None, 30), "the replay did not end"
        assert venue.exchange.proc.returncode == 0
        report = json.loads((venue.day / "exchange" / "report.json").read_text())
        assert report["replay"]["recorded_messages"] == len(recorded) and report["replay"]["error"] is None
    finally:
        venue.close()


@pytest.mark.parametrize("arguments, message", [
    (["--replay", "DAY"], "--replay needs --sim"),
    (["--sim", "--replay-speed", "2"], "--replay-speed needs --replay"),
    (["--sim", "--replay", "MISSING"], "--replay: cannot read"),
    (["--sim", "--replay", "DAY", "--replay-speed", "fast"], "--replay-speed: 'fast' is not max or a speed"),
    (["--sim", "--answer-lead", "5"], "--answer-lead needs --replay"),
    (["--sim", "--queue-model", "fifo"], "--queue-model needs --replay"),
    (["--sim", "--replay", "DAY", "--answer-lead", "soon"], "--answer-lead: 'soon' is not a number"),
    (["--sim", "--replay", "DAY", "--answer-lead", "-1"], "--answer-lead: '-1' must be between 0 and 1000 ms"),
    (["--sim", "--replay", "DAY", "--answer-lead", "nan"], "--answer-lead: 'nan' must be between 0 and 1000 ms"),
    (["--sim", "--replay", "DAY", "--queue-model", "lifo"], "--queue-model: unknown queue model 'lifo' (known: "),
    (["--sim", "--replay", "DAY", "--queue-model", "prob-power:0"], "--queue-model: queue model 'prob-power:0': "),
])
def test_up_replay_arguments_are_checked_before_anything_starts(tmp_path, capsys, arguments, message):
    from appliance.cli import main
    (tmp_path / "day.bin").write_bytes(b"")
    arguments = [str(tmp_path / "day.bin") if a == "DAY" else str(tmp_path / "missing.bin") if a == "MISSING" else a
                 for a in arguments]
    assert main(["up", "--layout", str(tmp_path / "nowhere.yaml"), *arguments]) == 2
    assert message in capsys.readouterr().err
