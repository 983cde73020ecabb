"""A ``nats-server -js`` of its own for the tests and ``appliance bench dropcopy``: a free loopback
port, a store in a given directory, stopped with the run.

``NatsServer(store_dir)``: ``start()`` waits (polling with a deadline, never a fixed sleep) until
the server answers its INFO line with JetStream on; ``stop()`` ends it (SIGTERM, then SIGKILL);
``kill()`` is a crash; ``start()`` again brings it back on the same port with the same store.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .ports import free_port

START_TIMEOUT_S = 20.0


def find_nats_server() -> str | None:
    """The ``nats-server`` binary (Debian package nats-server), or None."""
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None)


class NatsServer:
    """One single-node JetStream server on 127.0.0.1."""

    def __init__(self, store_dir: Path, port: int | None = None, binary: str | None = None):
        self.binary = binary or find_nats_server()
        if not self.binary:
            raise FileNotFoundError("nats-server is not installed (apt-get install nats-server)")
        self.store_dir = Path(store_dir)
        self.port = port or free_port(socket.SOCK_STREAM)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir / "js"),
                 "-n", f"test-{self.port}"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with status {self.proc.returncode}:\n{self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not answer on port {self.port} within {START_TIMEOUT_S} s:\n"
                           f"{self.log_tail()}")

    def _answers(self) -> bool:
        """The server's INFO line, with JetStream on (it is ready for the stream API)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                line = sock.makefile("rb").readline(65536)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        try:
            return bool(json.loads(line[5:]).get("jetstream"))
        except ValueError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no orderly shutdown (what a crashed server leaves)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
