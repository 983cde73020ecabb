"""The control sockets fed garbage: every request line gets one JSON answer, nothing raises.

- the supervisor's ``ControlServer`` (``_handle`` with the real ``SupervisorAgent.handle``
  on a stand-in agent, and whole byte streams through a real UNIX socket and ``poll``);
- the exchange's ``ControlServer.handle_line`` on a real, open ``Venue``;
- ``appliance exchange ctl`` words (``parse_ctl_words``: a command line is untrusted too), and
  ``appliance audit --from/--to`` times (``parse_iso_ns``: ValueError, which the CLI reports).

Lines are damaged valid requests (every JSON type in every place, huge numbers, deep nesting,
NaN, lone surrogates), byte-level damage of them, and noise.
"""
from __future__ import annotations

import json
import os
import random
import socket
import tempfile

import pytest

from appliance.command_io.arguments import UsageError
from appliance.exchange import control as exchange_control
from appliance.exchange.cli import parse_ctl_words
from appliance.exchange.venue import Venue
from appliance.messages.catalog import RISK_COMMAND
from appliance.oms.audit import parse_iso_ns
from appliance.supervisor import control_server
from appliance.supervisor.agent import SupervisorAgent

import fuzzkit

THIS = "tests/fuzz/test_fuzz_control.py"


def _answer_ok(answer) -> str:
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
    json.dumps(answer)                      # what the server writes back
    return "ok" if answer["ok"] else "error answer"


# ------------------------------------------------------------------------------------ supervisor

class _Ring:
    def __init__(self):
        self.claims = 0

    def claim(self):
        self.claims += 1
        return 0 if self.claims % 5 else -1          # sometimes full

    def commit(self):
        pass


class _Counter:
    def inc(self, n: int = 1):
        pass


class _Supervisor:
    """What SupervisorAgent.handle touches, without shared memory or children."""
    handle = SupervisorAgent.handle
    send_risk_command = SupervisorAgent.send_risk_command
    request_stop = SupervisorAgent.request_stop

    def __init__(self):
        self.c_commands = _Counter()
        self.commands = _Ring()
        self.buffer = bytearray(RISK_COMMAND.size)
        self.operator_closed = False
        self.stop_requested = None
        self.exit_status = 0
        self.reasons = 0

    def summary(self) -> dict:
        return {"gate_open": False, "children": {}}

    def _write_gate(self, reasons) -> None:
        self.reasons = reasons


SUPERVISOR_SEEDS = [{"command": "status"}, {"command": "kill", "operator": "alice"}, {"command": "kill"},
                    {"command": "resume", "operator": "bob"}, {"command": "close-gate", "operator": "c"},
                    {"command": "open-gate", "operator": "d"}, {"command": "reload-limits"}, {"command": "down"},
                    {"command": "down", "operator": "e"}]


@pytest.fixture
def supervisor_server():
    directory = tempfile.mkdtemp(prefix="fz-ctl-")
    server = control_server.ControlServer(os.path.join(directory, "s.sock"), _Supervisor().handle)
    yield server
    server.close()
    os.rmdir(directory)


def test_fuzz_supervisor_control_requests(supervisor_server):
    def check(line: bytes) -> str:
        supervisor_server.handler = _Supervisor().handle       # a fresh agent: "down" is not sticky
        return _answer_ok(supervisor_server._handle(line))

    fuzzkit.run_cases("supervisor-control", 1500, lambda rng: fuzzkit.json_lines(rng, SUPERVISOR_SEEDS), check,
                      test_file=THIS, soak_share=0.35)


def test_fuzz_supervisor_control_socket_streams(supervisor_server):
    """Bytes through the socket in pieces: each complete line one answer, an over-long line an
    error answer and a closed connection; the server keeps serving the next client."""
    def make(rng):
        lines = [fuzzkit.json_lines(rng, SUPERVISOR_SEEDS).replace(b"\n", b" ") for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.05:
            lines.append(b"x" * (control_server.MAX_LINE + 10))
        stream = b"\n".join(lines) + (b"\n" if rng.random() < 0.9 else b"")
        # pieces of at most 16 KiB (the socket buffer takes them without a poll), at most ~200 of them
        step = max(rng.choice((1, 7, 512, 4096, 16384)), len(stream) // 200 + 1)
        return [stream[i:i + min(step, 16384)] for i in range(0, len(stream), min(step, 16384))]

    def check(pieces) -> str:
        supervisor_server.handler = _Supervisor().handle
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(2.0)
        try:
            client.connect(supervisor_server.path)
            sent = b""
            for piece in pieces:
                try:
                    client.sendall(piece)
                except OSError:                 # the server closed an over-long line's connection
                    break
                sent += piece
                supervisor_server.poll()
            try:
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            for _ in range(1000):               # 4 KiB per client per poll
                if not supervisor_server.poll():
                    break
            data = b""
            try:
                while chunk := client.recv(1 << 20):
                    data += chunk
            except (socket.timeout, OSError):
                pass
            answers = [json.loads(line) for line in data.splitlines()]
            for answer in answers:
                _answer_ok(answer)
            complete = sent.count(b"\n")
            # the limit is on what is buffered: a partial line plus one 4 KiB read
            too_long = any(len(line) > control_server.MAX_LINE - 4096 for line in sent.split(b"\n"))
            assert len(answers) == complete or too_long, (len(answers), complete)
            return "closed" if too_long else "answered"
        finally:
            client.close()
            supervisor_server.poll()

    fuzzkit.run_cases("supervisor-socket", 100, make, check, test_file=THIS, soak_share=0.02)


# ------------------------------------------------------------------------------------ exchange

class _Clock:
    def __init__(self):
        self.now = 1_764_000_000_123_456_789

    def __call__(self):
        self.now += 1000
        return self.now


class _Flow:
    rate = 2000.0


class _Exchange:
    """What the exchange's ControlServer.execute touches, with a real open venue."""

    def __init__(self):
        self.venue = Venue([("AAPL", 100), ("MSFT", 1)], {"ALGO1": "ALGO", "ALGO2": "ALG2"}, session="FUZZ000001",
                           send_packet=lambda packet: None, clock=_Clock())
        self.venue.open()
        self.flow = _Flow()
        self.ended = None

    def status(self) -> dict:
        return {"venue": self.venue.state, "counters": self.venue.counters.__dict__.copy()}

    def pump_touched(self) -> None:
        pass

    def disconnect(self, firm: str) -> bool:
        return firm == "ALGO1"

    def request_end(self, why: str = "control") -> None:
        self.ended = why

    def log(self, text: str) -> None:
        pass


EXCHANGE_SEEDS = [{"command": "status"}, {"command": "halt", "symbol": "AAPL"}, {"command": "resume", "symbol": "AAPL"},
                  {"command": "faults", "drop": 0.1, "duplicate": 0, "reorder": 1},
                  {"command": "drop-next", "count": 3}, {"command": "burst", "count": 10},
                  {"command": "background", "rate": 100.5}, {"command": "disconnect", "firm": "ALGO1"},
                  {"command": "cancel-all", "firm": "ALGO2", "symbol": "MSFT"}, {"command": "cancel-all"},
                  {"command": "book", "symbol": "AAPL"}, {"command": "end"}]


def test_fuzz_exchange_control_requests():
    server = exchange_control.ControlServer(_Exchange())

    def check(line: bytes) -> str:
        return _answer_ok(server.handle_line(line))

    fuzzkit.run_cases("exchange-control", 1500, lambda rng: fuzzkit.json_lines(rng, EXCHANGE_SEEDS), check,
                      test_file=THIS, soak_share=0.35)


def _ctl_words(rng: random.Random) -> list[str]:
    seed = rng.choice(EXCHANGE_SEEDS)
    words = [seed["command"]] + [f"{k}={json.dumps(v)}" if rng.random() < 0.5 else str(v)
                                 for k, v in seed.items() if k != "command"]
    line = fuzzkit.json_lines(rng, [{"w": w} for w in words]).decode("utf-8", "surrogateescape")
    if rng.random() < 0.5:
        words.append(rng.choice(("count=" + "[" * 5000, "count=" + "9" * 5000, "rate=NaN", "count=1e999", "x=1",
                                 "symbol=", "=", "count={\"a\": [1]}", line[:200])))
    if words and rng.random() < 0.2:
        words[0] = rng.choice(("", "HALT", "halt ", line[:20]))
    return words


def test_fuzz_exchange_ctl_command_line():
    def check(words) -> str:
        try:
            request = parse_ctl_words(words)
        except UsageError as exc:
            assert str(exc)
            return "usage error"
        json.dumps(request)                  # what `ctl` sends
        return "request"

    fuzzkit.run_cases("exchange-ctl-words", 1500, _ctl_words, check, test_file=THIS, soak_share=0.18)


ISO_SEEDS = [b"2026-01-02T13:45:12.123456789Z", b"2026-01-02", b"2026-01-02 13:45", b"2026-01-02T13:45:12+05:30",
             b"2026-01-02T13:45:12-0800", b"1970-01-01T00:00:00Z", b"9999-12-31T23:59:59.999999999Z"]


def test_fuzz_audit_time_arguments():
    def check(raw: bytes) -> str:
        value = parse_iso_ns(raw.decode("utf-8", "surrogateescape"))
        assert isinstance(value, int)

    fuzzkit.run_cases("audit-time-args", 1500, lambda rng: fuzzkit.byte_inputs(rng, ISO_SEEDS, max_random=40), check,
                      expected=(ValueError,), test_file=THIS, soak_share=0.10)
