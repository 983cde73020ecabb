"""``request_json``, the one client of both control sockets (the supervisor's and the exchange's), and
``parse_request``, how both servers read a request line."""
from __future__ import annotations

import threading

import pytest

from appliance.command_io.json_lines import BadRequest, control_socket_in, parse_request, request_json
from appliance.command_io.private_socket import bind_private


def test_the_one_json_client_names_a_server_that_closes_without_answering_or_answers_garbage(tmp_path):
    """``request_json`` is the client of both control sockets (the supervisor's and the exchange's)."""
    path = str(tmp_path / "d" / "s.sock")
    listener = bind_private(path)
    listener.setblocking(True)
    listener.settimeout(10)
    replies = [b"", b"not json\n"]

    def serve():
        for reply in replies:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectionError, match="the supervisor at .* closed the connection without answering"):
            request_json(path, {"command": "status"}, 5, "the supervisor")
        with pytest.raises(ValueError):
            request_json(path, {"command": "status"}, 5, "the exchange")
    finally:
        thread.join(10)
        listener.close()


@pytest.mark.parametrize("line, error", [
    (b"not json", "not a JSON object: "),
    (b"[" * 5000, "not a JSON object: "),                                  # RecursionError inside json.loads
    (b'{"command": "status", "x": ' + b"9" * 5000 + b"}", "not a JSON object: "),   # over 4300 digits
    (b"[1, 2]", 'a request is a JSON object with a string "command"'),
    (b'{"command": 7}', 'a request is a JSON object with a string "command"'),
    (b"{}", 'a request is a JSON object with a string "command"'),
])
def test_parse_request_answers_garbage_with_the_error_both_servers_send(line, error):
    with pytest.raises(BadRequest) as caught:
        parse_request(line)
    assert str(caught.value).startswith(error)


def test_parse_request_returns_the_object_and_both_servers_use_it():
    from appliance.exchange import control as exchange_control
    from appliance.supervisor import control_server
    assert parse_request(b'{"command": "status", "n": 1}') == {"command": "status", "n": 1}
    assert exchange_control.parse_request is parse_request and control_server.parse_request is parse_request


def test_every_control_socket_sits_in_the_one_private_directory(tmp_path):
    from appliance.exchange.cli import default_control_socket as exchange_socket
    from appliance.supervisor.config import default_control_socket as supervisor_socket
    base = str(tmp_path)
    assert control_socket_in(base, "x") == str(tmp_path / "run" / "control" / "x.sock")
    assert exchange_socket(base) == control_socket_in(base, "exchange")
    assert supervisor_socket(str(tmp_path / "shm_layout.yaml")) == control_socket_in(base, "supervisor")
