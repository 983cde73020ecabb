"""The control protocol, one JSON object per line each way, and its one client.

Both control servers (the supervisor's, polled from its duty cycle, and the simulated exchange's,
on its event loop) read a request line ``{"command": NAME, ...}`` and write one answer line;
``request_json`` is the client of both, through ``private_socket.connect_checked`` so a command
never goes to a server run by another user.
"""
from __future__ import annotations

import json

from .private_socket import connect_checked


def request_json(path: str, request: dict, timeout: float, server: str = "the server") -> dict:
    """One request line to the control server at ``path`` and its one answer line, decoded.
    Raises OSError when none is listening, the one listening is another user's, or it closed
    without answering (``server`` names it in that message); ValueError when the answer is not JSON."""
    with connect_checked(path, timeout) as sock:
        sock.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ConnectionError(f"{server} at {path} closed the connection without answering")
    return json.loads(data)
