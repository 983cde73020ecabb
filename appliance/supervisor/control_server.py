"""The supervisor's control socket: one JSON object per line in, one per line out.

Polled from the supervisor's duty cycle (non-blocking; bounded work per cycle), so no thread
and no event loop. Commands: status, kill, resume (operator required), close-gate / open-gate
(operator required), down. Anything else, or a line that is not JSON, gets an error answer.
"""
from __future__ import annotations

import json
import os
import socket

MAX_LINE = 64 * 1024


class ControlServer:
    def __init__(self, path: str, handler):
        self.path = path
        self.handler = handler            # handler(request: dict) -> dict
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)           # stale: its owner is gone
            else:
                probe.close()
                raise OSError(f"another supervisor is listening on {path}")
            finally:
                probe.close()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.clients: dict[socket.socket, bytearray] = {}
        self.errors = 0

    def poll(self) -> int:
        work = 0
        try:
            while True:
                conn, _ = self.sock.accept()
                conn.setblocking(False)
                self.clients[conn] = bytearray()
                work += 1
        except (BlockingIOError, InterruptedError):
            pass
        for conn in list(self.clients):
            buffer = self.clients[conn]
            try:
                data = conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self._drop(conn)
                continue
            if not data:
                self._drop(conn)
                continue
            buffer += data
            work += 1
            if len(buffer) > MAX_LINE:
                self._answer(conn, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                self._drop(conn)
                continue
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                self._answer(conn, self._handle(line))
        return work

    def _handle(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):           # RecursionError: [[[[... nested too deeply
            self.errors += 1
            return {"ok": False, "error": "not a JSON object"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            self.errors += 1
            return {"ok": False, "error": "expected an object with a 'command' string"}
        try:
            return self.handler(request)
        except Exception as exc:        # a bad request must never take the supervisor down
            self.errors += 1
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _answer(self, conn, answer: dict) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.sendall(json.dumps(answer).encode() + b"\n")
            conn.setblocking(False)
        except OSError:
            self._drop(conn)

    def _drop(self, conn) -> None:
        self.clients.pop(conn, None)
        try:
            conn.close()
        except OSError:
            pass

    def close(self) -> None:
        for conn in list(self.clients):
            self._drop(conn)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def send_command(path: str, request: dict, timeout: float = 10.0) -> dict:
    """One request to a running supervisor; raises OSError when none is listening."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise OSError("the supervisor closed the connection without answering")
    return json.loads(data)
