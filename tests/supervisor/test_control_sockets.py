"""Both control sockets (the supervisor's and the simulated exchange's) are 0600 in a private
directory, name their callers (SO_PEERCRED), and keep serving under garbage, over-long lines,
silent clients and many clients."""
from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import pytest

from appliance.command_io.json_lines import request_json
from appliance.command_io.private_socket import ControlSocketError
from appliance.supervisor import control_server
from appliance.supervisor.control_server import ControlServer
from conftest import wait_until


# ------------------------------------------------------------------ the supervisor's server, polled here

class Polled:
    """A ControlServer polled from a thread, as the supervisor's duty cycle does; every request is
    answered with the caller the server saw."""

    def __init__(self, path: str, idle_timeout_s: float = 30.0):
        self.calls: list = []
        self.server = ControlServer(path, self._handler, idle_timeout_s=idle_timeout_s)
        self.longest_poll_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _handler(self, request, caller):
        self.calls.append((request, caller))
        return {"ok": True, "command": request["command"], "uid": caller.uid, "pid": caller.pid}

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            self.server.poll()
            self.longest_poll_s = max(self.longest_poll_s, time.monotonic() - started)
            time.sleep(0.001)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.server.close()


@pytest.fixture
def polled(tmp_path):
    servers = []

    def make(**kw):
        server = Polled(str(tmp_path / "ctl" / "supervisor.sock"), **kw)
        servers.append(server)
        return server
    yield make
    for server in servers:
        server.close()


def _connect(path: str) -> socket.socket:
    """A connection, retried while the listen backlog is full (the server accepts at its next poll)."""
    deadline = time.monotonic() + 10
    while True:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(10)
        try:
            client.connect(path)
            return client
        except BlockingIOError:
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _line(client: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = client.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return json.loads(data)


def _closed(client: socket.socket) -> bool:
    """True once the server closed the connection (whatever it said first is read and dropped)."""
    try:
        while client.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_the_socket_is_0600_in_a_0700_directory_it_creates(polled, tmp_path):
    old = os.umask(0)                    # even a careless umask gives no window
    try:
        server = polled()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "ctl").st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(server.server.path).st_mode) == 0o600


def test_a_directory_others_may_enter_or_a_predictable_tmp_name_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(ControlSocketError, match=r"open to group or others \(mode 0755\).*chmod 700"):
        ControlServer(str(shared / "s.sock"), lambda request, caller: {})
    with pytest.raises(ControlSocketError, match="open to group or others"):
        ControlServer(f"/tmp/appliance-{os.getpid()}.sock", lambda request, caller: {})
    assert not os.path.exists(f"/tmp/appliance-{os.getpid()}.sock")
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 4242, 4242)
        with pytest.raises(ControlSocketError, match="belongs to uid 4242"):
            ControlServer(str(theirs / "s.sock"), lambda request, caller: {})
    plain = tmp_path / "priv"
    plain.mkdir(mode=0o700)
    (plain / "s.sock").write_text("not a socket")
    with pytest.raises(ControlSocketError, match="not a socket"):
        ControlServer(str(plain / "s.sock"), lambda request, caller: {})


def test_every_request_reaches_the_handler_with_the_callers_uid_and_pid(polled):
    server = polled()
    answer = request_json(server.server.path, {"command": "kill", "operator": "alice"}, 10)
    assert answer == {"ok": True, "command": "kill", "uid": os.geteuid(), "pid": os.getpid()}


def test_garbage_gets_an_error_answer_and_the_connection_keeps_serving(polled):
    server = polled()
    client = _connect(server.server.path)
    for garbage in (b"\x00\xff\xfe garbage\n", b"[[[[[[[[[[[[[[[[[[[[\n", b"42\n", b'{"command": 7}\n'):
        client.sendall(garbage)
        assert _line(client)["ok"] is False
    client.sendall(b'{"command": "status"}\n')
    assert _line(client) == {"ok": True, "command": "status", "uid": os.geteuid(), "pid": os.getpid()}
    client.close()


def test_an_oversized_line_gets_an_error_and_a_close_and_others_are_served(polled):
    server = polled()
    client = _connect(server.server.path)
    try:
        client.sendall(b"x" * (control_server.MAX_LINE + 8192))
    except (BrokenPipeError, ConnectionResetError):
        pass                              # closed before the last bytes went: also bounded
    try:
        answer = _line(client)
        assert "longer than" in answer["error"]
    except (ConnectionError, OSError):
        pass
    assert _closed(client)
    assert request_json(server.server.path, {"command": "status"}, 10)["ok"] is True


def test_a_silent_client_holds_nobody_up_and_is_dropped_after_the_idle_timeout(polled):
    server = polled(idle_timeout_s=0.5)
    silent = _connect(server.server.path)
    started = time.monotonic()
    assert request_json(server.server.path, {"command": "status"}, 5)["ok"] is True
    assert time.monotonic() - started < 5
    silent.settimeout(10)
    assert silent.recv(1) == b""          # closed by the server after 0.5 s of silence
    assert server.server.dropped >= 1
    silent.close()


def test_a_client_that_never_reads_cannot_stall_the_duty_cycle(polled):
    server = polled()
    flood = _connect(server.server.path)
    flood.setblocking(False)
    request = b'{"command": "status"}\n' * 1000
    sent = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sent < 20 * len(request):   # ~2 MB of answers owed, never read
        try:
            sent += flood.send(request)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break                          # dropped for not reading: what should happen
    assert request_json(server.server.path, {"command": "status"}, 5)["ok"] is True
    assert server.longest_poll_s < 0.5, server.longest_poll_s    # the old blocking answer: 1 s a poll
    flood.close()


def test_many_clients_the_one_over_the_limit_is_told_and_the_rest_served(polled):
    server = polled()
    clients = [_connect(server.server.path) for _ in range(control_server.MAX_CLIENTS)]
    try:
        wait_until(lambda: len(server.server.clients) == control_server.MAX_CLIENTS, 10, message="all accepted")
        extra = _connect(server.server.path)
        assert "too many" in _line(extra)["error"]
        extra.close()
        for client in clients:
            client.sendall(b'{"command": "status"}\n')
        assert all(_line(client)["ok"] for client in clients)
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: not server.server.clients, 10, message="closed clients dropped")
    assert request_json(server.server.path, {"command": "status"}, 10)["ok"] is True


# ------------------------------------------------------------------ the exchange's server, as a process

@pytest.fixture
def exchange():
    from exchange_process import RunningExchange, base_config
    ex = RunningExchange(base_config())
    yield ex
    ex.close()


def test_the_exchange_socket_is_private_and_names_the_caller_of_each_change(exchange):
    assert stat.S_IMODE(os.lstat(exchange.control_path).st_mode) == 0o600
    assert exchange.ctl("halt", symbol="AAPL", operator="dana")["ok"] is True
    assert exchange.ctl("status")["ok"] is True
    wait_until(lambda: any("control: halt symbol=AAPL by dana" in line for line in exchange.lines), 10,
               message="the halt's log line")
    line = next(line for line in exchange.lines if "control: halt" in line)
    assert f"(uid {os.geteuid()} pid {os.getpid()})" in line
    assert not any("control: status" in line for line in exchange.lines)      # reading is not logged
    assert exchange.ctl("halt", symbol="MSFT", operator="bad\nname")["ok"] is False


def test_the_exchange_keeps_serving_under_garbage_oversized_silent_and_many_clients(exchange):
    from appliance.exchange import control
    path = exchange.control_path
    garbage = _connect(path)
    garbage.sendall(b"\x00\x01\x02 not json\n")
    assert _line(garbage)["ok"] is False
    garbage.sendall(b'{"command": "status"}\n')
    assert _line(garbage)["ok"] is True
    huge = _connect(path)
    try:
        huge.sendall(b"y" * (control.MAX_LINE + 8192))
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert _closed(huge)
    silent = [_connect(path) for _ in range(control.MAX_CLIENTS - 2)]   # with `garbage`: one slot left
    try:
        started = time.monotonic()
        assert exchange.ctl("status")["ok"] is True
        assert time.monotonic() - started < 5
        wait_until(lambda: _over_limit(path), 30, message="a connection over the limit refused")
    finally:
        for client in silent:
            client.close()
    garbage.close()
    wait_until(lambda: _answers(path), 10, message="served again once the silent clients left")


def _over_limit(path: str) -> bool:
    """Holds one connection open and asks with another: True when the second is told 'too many'."""
    hold = _connect(path)
    try:
        extra = _connect(path)
        extra.settimeout(1)               # admitted (a closed client not yet counted out): ask again
        try:
            answer = _line(extra)
        except (ConnectionError, OSError):
            return False
        finally:
            extra.close()
        return "too many" in answer.get("error", "")
    finally:
        hold.close()


def _answers(path: str) -> bool:
    try:
        return request_json(path, {"command": "status"}, 5)["ok"] is True
    except OSError:
        return False


def test_a_supervisor_napping_on_its_sockets_answers_a_new_and_a_connected_client_at_once(tmp_path):
    """The supervisor's duty cycle naps in poll() on ControlServer.fds() (SleepIdle with the agent as
    waiter): a connection and a request on an open connection each end a nap 60 s long."""
    from appliance.runtime.idle import SleepIdle

    server = ControlServer(str(tmp_path / "ctl" / "supervisor.sock"), lambda request, caller: {"ok": True})
    waiter = type("Waiter", (), {"wait_fds": staticmethod(server.fds)})()
    nap = SleepIdle(60_000_000_000, waiter)
    stop = threading.Event()

    def duty_cycle():
        while not stop.is_set():
            nap.idle(server.poll())

    thread = threading.Thread(target=duty_cycle, daemon=True)
    thread.start()
    client = None
    try:
        client = _connect(server.path)        # recv timeout 10 s, far inside the nap
        for _ in range(3):                    # after each answer the loop naps again: each request ends it
            client.sendall(b'{"command": "status"}\n')
            assert _line(client) == {"ok": True}
    finally:
        stop.set()
        if client is not None:
            client.close()                    # readable: ends the last nap
        thread.join(10)
        server.close()
    assert not thread.is_alive()
