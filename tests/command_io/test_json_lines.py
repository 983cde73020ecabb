"""``request_json``, the one client of both control sockets (the supervisor's and the exchange's)."""
from __future__ import annotations

import threading

import pytest

from appliance.command_io.json_lines import request_json
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
