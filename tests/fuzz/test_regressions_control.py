"""Control-socket and control command-line inputs the fuzz (test_fuzz_control.py) found: each
failed before its fix. Garbage gets an error answer; the server keeps serving."""
from __future__ import annotations

import os
import tempfile

import pytest

from appliance.exchange import control as exchange_control
from appliance.exchange.cli import parse_ctl_words
from appliance.exchange.venue import Venue
from appliance.supervisor import control_server

DEEP = b"[" * 5000                                              # RecursionError inside json.loads
HUGE_INT = b'{"command": "status", "x": ' + b"9" * 5000 + b"}"  # ValueError: over 4300 digits


def test_regression_supervisor_answers_a_deeply_nested_line():
    """The RecursionError left ControlServer.poll() and took the supervisor (the gate's keeper) down."""
    directory = tempfile.mkdtemp(prefix="fz-reg-")
    server = control_server.ControlServer(os.path.join(directory, "s.sock"), lambda request, caller: {"ok": True})
    try:
        answer = server._handle(DEEP)
        assert answer["ok"] is False and answer["error"].startswith("not a JSON object")
        assert server._handle(b'{"command": "status"}') == {"ok": True}
    finally:
        server.close()
        os.rmdir(directory)


class _Exchange:
    def __init__(self):
        self.venue = Venue([("AAPL", 100)], {"ALGO1": "ALGO"}, session="REG0000001", send_packet=lambda p: None)
        self.venue.open()

    def pump_touched(self):
        pass

    def disconnect(self, firm):
        return True


@pytest.mark.parametrize("line", [
    DEEP, HUGE_INT,                                                # escaped handle_line: no answer, a traceback
    b'{"command": "halt", "symbol": ["AAPL"]}', b'{"command": "resume", "symbol": {"a": 1}}',
    b'{"command": "disconnect", "firm": ["ALGO1"]}',               # TypeError: unhashable type
    b'{"command": "cancel-all", "firm": {"x": 1}}', b'{"command": "cancel-all", "symbol": [1]}',
])
def test_regression_exchange_control_answers_garbage(line):
    answer = exchange_control.ControlServer(_Exchange()).handle_line(line)
    assert answer["ok"] is False and answer["error"], answer


@pytest.mark.parametrize("words", [["burst", "count=" + "[" * 5000], ["drop-next", "9" * 5000]])
def test_regression_exchange_ctl_words_are_text_when_not_json(words):
    """`appliance exchange ctl burst count=[[[[...` raised RecursionError (ValueError for 5000 digits)."""
    request = parse_ctl_words(words)
    assert request["count"] == words[1].partition("=")[2] or request["count"] == words[1]
