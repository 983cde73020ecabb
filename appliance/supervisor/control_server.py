"""The supervisor's control socket: one JSON object per line in, one per line out.

Polled from the supervisor's duty cycle (non-blocking; bounded work per cycle), so no thread
and no event loop. Commands: status, kill, resume (operator required), close-gate / open-gate
(operator required), down. Anything else, or a line that is not JSON, gets an error answer.

The socket is 0600 in a private directory (``command_io/private_socket.py``); the handler gets the
caller's uid and pid from ``SO_PEERCRED`` with each request. No client can hold the duty cycle:
reads and writes never block, a line over ``MAX_LINE`` gets an error answer and the connection
closes, a client silent for ``IDLE_TIMEOUT_S`` or one that does not read its answers (more than
``MAX_PENDING_OUT`` bytes unsent) is dropped, and beyond ``MAX_CLIENTS`` a new connection is told
so and closed.
"""
from __future__ import annotations

import json
import os
import socket
import time

from appliance.command_io.json_lines import BadRequest, parse_request
from appliance.command_io.private_socket import Caller, bind_private, peer_of

MAX_LINE = 64 * 1024
MAX_CLIENTS = 32
MAX_PENDING_OUT = 1 << 20
IDLE_TIMEOUT_S = 30.0


class _Client:
    __slots__ = ("caller", "inbuf", "outbuf", "last_active", "closing")

    def __init__(self, caller: Caller, now: float):
        self.caller = caller
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.last_active = now
        self.closing = False           # drop once the answers are out


class ControlServer:
    def __init__(self, path: str, handler, idle_timeout_s: float = IDLE_TIMEOUT_S):
        self.path = path
        self.handler = handler            # handler(request: dict, caller: Caller) -> dict
        self.idle_timeout_s = idle_timeout_s
        self.sock = bind_private(path)
        self.clients: dict[socket.socket, _Client] = {}
        self.errors = 0
        self.dropped = 0                  # clients closed for silence, an over-long line, not reading, too many

    def fds(self) -> tuple[int, ...]:
        """The listening socket and every client's: what the supervisor's nap waits on (``SleepIdle``)."""
        return (self.sock.fileno(), *(conn.fileno() for conn in self.clients))

    def poll(self) -> int:
        work = 0
        now = time.monotonic()
        try:
            while True:
                conn, _ = self.sock.accept()
                conn.setblocking(False)
                work += 1
                if len(self.clients) >= MAX_CLIENTS:
                    self.dropped += 1
                    try:
                        conn.send(b'{"ok": false, "error": "too many control connections"}\n')
                    except OSError:
                        pass
                    conn.close()
                    continue
                self.clients[conn] = _Client(peer_of(conn), now)
        except (BlockingIOError, InterruptedError):
            pass
        for conn, client in list(self.clients.items()):
            if not client.closing:
                work += self._read(conn, client, now)
            if conn in self.clients and client.outbuf:
                work += self._flush(conn, client)
            if conn not in self.clients:
                continue
            if client.closing and not client.outbuf:
                self._drop(conn)
            elif now - client.last_active > self.idle_timeout_s:
                self.dropped += 1
                self._drop(conn)
        return work

    def _read(self, conn, client: _Client, now: float) -> int:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self._drop(conn)
            return 0
        if not data:
            client.closing = True          # answer what came, then close
            return 1
        client.last_active = now
        buffer = client.inbuf
        buffer += data
        if len(buffer) > MAX_LINE:
            self.dropped += 1
            self._queue(conn, client, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
            client.closing = True
            buffer.clear()
            return 1
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            self._queue(conn, client, self._handle(line, client.caller))
        return 1

    def _handle(self, line: bytes, caller: Caller | None = None) -> dict:
        try:
            request = parse_request(line)
        except BadRequest as exc:
            self.errors += 1
            return {"ok": False, "error": str(exc)}
        try:
            return self.handler(request, caller)
        except Exception as exc:        # a bad request must never take the supervisor down
            self.errors += 1
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _queue(self, conn, client: _Client, answer: dict) -> None:
        client.outbuf += json.dumps(answer).encode() + b"\n"
        if len(client.outbuf) > MAX_PENDING_OUT:      # it sends and never reads: not our problem to buffer
            self.dropped += 1
            self._drop(conn)

    def _flush(self, conn, client: _Client) -> int:
        try:
            sent = conn.send(client.outbuf)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self._drop(conn)
            return 0
        del client.outbuf[:sent]
        return 1

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

