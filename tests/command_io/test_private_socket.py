"""The private control socket: a stale socket is replaced and a live one is not, and a client sends
nothing to a server another user runs. (The 0600 socket in a 0700 directory and the refused shared
directories are checked through the servers in tests/supervisor/test_control_sockets.py.)"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from appliance.command_io.json_lines import request_json
from appliance.command_io.private_socket import ControlSocketError, bind_private, connect_checked, peer_of


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a server as another user")
def test_a_client_refuses_a_server_run_by_another_user(tmp_path):
    """A socket someone else planted gets no command: the client checks the server's uid first."""
    script = ("import os, sys, tempfile, time\n"
              "from appliance.command_io.private_socket import bind_private\n"     # imported while it may read the venv
              "os.setgid(4242); os.setuid(4242)\n"
              "path = os.path.join(tempfile.mkdtemp(), 's.sock')\n"
              "sock = bind_private(path)\n"
              "print(path, flush=True)\n"
              "sys.stdin.read()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        path = proc.stdout.readline().strip()
        assert path, "the other user's server did not start"
        with pytest.raises(ControlSocketError, match="runs as uid 4242"):
            request_json(path, {"command": "kill"}, 5)
    finally:
        proc.stdin.close()
        proc.wait(10)
        subprocess.run(["rm", "-rf", os.path.dirname(path)] if path else ["true"], check=False)


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path):
    directory = tmp_path / "d"
    path = str(directory / "s.sock")
    first = bind_private(path)
    with pytest.raises(ControlSocketError, match="another server is listening"):
        bind_private(path)
    first.close()                          # its owner died without unlinking
    second = bind_private(path)
    with connect_checked(path, 5) as client:
        assert peer_of(client).pid == os.getpid()
    second.close()
