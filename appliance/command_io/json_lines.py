"""The control protocol, one JSON object per line each way, and its one client.

Both control servers (the supervisor's, polled from its duty cycle, and the simulated exchange's,
on its event loop) read a request line ``{"command": NAME, ...}`` and write one answer line;
``parse_request`` is how both read a line (one answer to garbage, never an exception),
``request_json`` is the client of both, through ``private_socket.connect_checked`` so a command
never goes to a server run by another user, and ``control_socket_in`` is where both listen by default.
"""
from __future__ import annotations

import json
import os

from .private_socket import connect_checked


class BadRequest(ValueError):
    """A request line that is not a JSON object with a string ``command`` (the message is the answer's error)."""


def parse_request(line: bytes) -> dict:
    """One control request line -> its object. Raises ``BadRequest`` with the error to answer: not JSON
    (also an int of over 4300 digits and ``[[[[...`` nested too deeply, which raise ValueError and
    RecursionError inside ``json.loads``), or JSON that is not an object with a string ``command``."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"not a JSON object: {str(exc) or type(exc).__name__}") from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise BadRequest('a request is a JSON object with a string "command"')
    return request


def control_socket_in(base: str, server: str) -> str:
    """``run/control/<server>.sock`` under ``base``: the private (0700) directory every control socket
    shares, found from the layout's directory alone, never a guessable name in /tmp."""
    return os.path.join(os.path.abspath(base), "run", "control", f"{server}.sock")


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
