"""The takeover's pieces without processes of the layout: the fence's view of a process (alive, zombie,
reaped), the new primary's settings (the journals swap), and the standby's command line."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from appliance.oms.config import parse_oms_params
from appliance.oms.standby_cli import standby_config
from appliance.oms.takeover import fence, primary_unheard, process_gone, takeover_config
from conftest import wait_until


def test_a_live_process_is_not_gone_a_zombie_is_and_a_reaped_one_is():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert not process_gone(child.pid)
        assert not fence(child.pid, 0.05)                  # alive: the fence holds, no takeover
        child.stdin.close()                                # it exits; not reaped yet: a zombie, which cannot send
        wait_until(lambda: process_gone(child.pid), 10, message="the child a zombie")
        assert open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        assert fence(child.pid, 0.05)
    finally:
        child.wait(10)
    assert process_gone(child.pid) and process_gone(0)


def test_the_new_primary_writes_the_standby_journal_and_its_standby_the_old_primary_one(tmp_path):
    config = parse_oms_params({"journal": "p.bin", "replication": {"mode": "sync", "standby_journal": "s.bin"}},
                              str(tmp_path / "layout.yaml"))
    mine, primary = standby_config(config, None, str(tmp_path / "layout.yaml"))
    assert mine.replication.standby_journal_path == str(tmp_path / "s.bin") and primary == str(tmp_path / "p.bin")
    new = takeover_config(mine, mine.replication.standby_journal_path, primary)
    assert new.journal_path == str(tmp_path / "s.bin") and new.replication.standby_journal_path == primary
    swapped, other = standby_config(config, str(tmp_path / "p.bin"), str(tmp_path / "layout.yaml"))
    assert swapped.replication.standby_journal_path == str(tmp_path / "p.bin") and other == str(tmp_path / "s.bin")


def test_a_relative_standby_journal_is_beside_the_layout_as_the_layouts_own_paths(tmp_path, monkeypatch):
    """``oms-standby --journal p.bin`` run from elsewhere names the layout's ``journal: p.bin``: the standby
    writes where the old primary did (and takes the other file as the primary's), not a file of the
    working directory."""
    (tmp_path / "etc").mkdir()
    layout = str(tmp_path / "etc" / "layout.yaml")
    config = parse_oms_params({"journal": "run/p.bin", "replication": {"mode": "sync", "standby_journal": "run/s.bin"}},
                              layout)
    monkeypatch.chdir(tmp_path)
    mine, other = standby_config(config, "run/p.bin", layout)
    assert mine.replication.standby_journal_path == str(tmp_path / "etc" / "run" / "p.bin")
    assert other == str(tmp_path / "etc" / "run" / "s.bin")
    mine, other = standby_config(config, "../elsewhere/./x.bin", layout)     # normalised, beside the layout
    assert mine.replication.standby_journal_path == str(tmp_path / "elsewhere" / "x.bin")
    assert other == str(tmp_path / "etc" / "run" / "p.bin")


def test_a_remote_takeovers_new_primary_listens_on_every_address_of_its_box(tmp_path):
    """The layout's ``primary`` host is the other box's (where the standby connected): the new primary
    could not listen there; it takes the port on every address of its own box."""
    config = parse_oms_params({"journal": "p.bin", "replication": {"mode": "sync", "standby_journal": "s.bin",
                                                                   "primary": {"host": "10.77.3.1", "port": 15010}}},
                              str(tmp_path / "layout.yaml"))
    mine, primary = standby_config(config, None, str(tmp_path / "layout.yaml"))
    same_box = takeover_config(mine, mine.replication.standby_journal_path, primary)
    remote = takeover_config(mine, mine.replication.standby_journal_path, primary, remote=True)
    assert (same_box.replication.primary_host, same_box.replication.primary_port) == ("10.77.3.1", 15010)
    assert (remote.replication.primary_host, remote.replication.primary_port) == ("0.0.0.0", 15010)
    assert remote.journal_path == same_box.journal_path and remote.replication.standby_journal_path == primary


def test_remote_takes_over_only_from_a_stream_it_had_that_is_down_and_silent_for_the_peer_timeout():
    def replica(connections=1, sock=None, heard=0):
        return SimpleNamespace(connections=connections, sock=sock, last_received_ns=heard, peer_timeout_ns=500)
    assert primary_unheard(replica(), 500)
    assert not primary_unheard(replica(), 499)                    # silent, not yet for the timeout
    assert not primary_unheard(replica(sock=object()), 10_000)    # connected: its own timeout drops it first
    assert not primary_unheard(replica(connections=0), 10_000)    # never had the stream: nothing to take over
    assert not primary_unheard(replica(heard=9_800), 10_000)      # reconnected lately (a restarted primary)


def test_primary_names_the_primary_to_replicate_from_checked_and_a_restarted_remote_standby_listens_everywhere(
        tmp_path):
    """``oms-standby --primary HOST:PORT``: the new primary on another box after a takeover, instead of the layout's;
    a bad one is a usage error. ``--takeover now`` of a layout whose OMS was a remote standby (the supervisor's
    restart of the new primary) listens on every address, as the takeover did."""
    import pytest

    from appliance.command_io.arguments import UsageError
    from appliance.oms.standby_cli import primary_config
    layout = str(tmp_path / "layout.yaml")
    params = {"replication": {"mode": "sync", "primary": {"host": "10.77.3.1", "port": 15010}}}
    config = parse_oms_params(params, layout)
    other = primary_config(config, "10.77.3.2:15020", "off").replication
    assert (other.primary_host, other.primary_port) == ("10.77.3.2", 15020)
    assert primary_config(config, None, "off") == config
    for bad in ("10.77.3.2", "10.77.3.2:", "10.77.3.2:0", "10.77.3.2:65536", "host:15010", "0.0.0.0:15010",
                ":15010", "10.77.3.2:x", "10.77.3.2:15010:1"):
        with pytest.raises(UsageError, match="--primary must be HOST:PORT"):
            primary_config(config, bad, "off")
    shm = parse_oms_params({"replication": {"mode": "sync", "transport": "shm"}}, layout)
    with pytest.raises(UsageError, match="transport is shm"):
        primary_config(shm, "10.77.3.2:15020", "off")
    remote = parse_oms_params({"replication": {**params["replication"], "takeover": "remote"}}, layout)
    assert primary_config(remote, None, "now").replication.primary_host == "0.0.0.0"
    assert primary_config(remote, None, "remote").replication.primary_host == "10.77.3.1"   # it connects there
    assert primary_config(config, None, "now").replication.primary_host == "10.77.3.1"      # same box: as before
