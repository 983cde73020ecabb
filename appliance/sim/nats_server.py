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
    """One JetStream server on 127.0.0.1: alone, or a node of a cluster (``cluster``: its name,
    this node's route port and every node's route ports); or as a configuration file says
    (``config_file``, listening on ``port``: the deployment recipe's file, tried)."""

    def __init__(self, store_dir: Path, port: int | None = None, binary: str | None = None,
                 cluster: tuple[str, int, list[int]] | None = None, config_file: Path | None = None):
        self.binary = binary or find_nats_server()
        if not self.binary:
            raise FileNotFoundError("nats-server is not installed (apt-get install nats-server)")
        self.store_dir = Path(store_dir)
        self.port = port or free_port(socket.SOCK_STREAM)
        self.cluster = cluster
        self.config_file = config_file
        self.proc: subprocess.Popen | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def launch(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir / "js"),
                   "-n", f"test-{self.port}"]
        if self.config_file is not None:
            command = [self.binary, "-c", str(self.config_file)]
        elif self.cluster is not None:
            name, route_port, route_ports = self.cluster
            command += ["--cluster_name", name, "--cluster", f"nats://127.0.0.1:{route_port}", "--routes",
                        ",".join(f"nats://127.0.0.1:{p}" for p in route_ports if p != route_port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> "NatsServer":
        self.launch()
        return self.wait_ready()

    def wait_ready(self) -> "NatsServer":
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


class NatsCluster:
    """``size`` JetStream nodes on loopback routed to each other (one cluster); ``url`` names them
    all (a client fails over between them). ``nodes[i]`` stop, kill and start like a NatsServer."""

    def __init__(self, store_dir: Path, size: int = 3, binary: str | None = None, name: str = "appliance-test"):
        store_dir = Path(store_dir)
        route_ports = [free_port(socket.SOCK_STREAM) for _ in range(size)]
        self.nodes = [NatsServer(store_dir / f"node{i}", binary=binary, cluster=(name, route_ports[i], route_ports))
                      for i in range(size)]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> "NatsCluster":
        """Every node started, then waited for (a node answers once its routes are up)."""
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
